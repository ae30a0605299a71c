// This node's part of `pgherd restart` and `pgherd reload`: a fast restart of its own PostgreSQL
// (run inside the loop's serial executor, so no monitoring round sees the planned stop and takes
// it for a crash), a reload of its managed files, and the values core/restart-plan.ts orders.
import { existsSync } from "node:fs";
import { join } from "node:path";
import { z } from "zod";
import { ORDERED_SETTINGS, startFloor, type OrderedName, type OrderedValue } from "../../core/restart-plan.ts";
import { inspectDataDir, pendingRestart, pgTool, probe, runTool, type PgNode } from "../../postgres/index.ts";
import type { PgHost } from "./host.ts";

export interface NodeOpResult {
  ok: boolean;
  message: string;
}

/** pg_controldata's names for the ordered settings (what the primary last WAL-logged, on a standby). */
const CONTROL_KEYS: Record<(typeof ORDERED_SETTINGS)[number], string> = {
  max_connections: "max_connections setting",
  max_worker_processes: "max_worker_processes setting",
  max_wal_senders: "max_wal_senders setting",
  max_prepared_transactions: "max_prepared_xacts setting",
  max_locks_per_transaction: "max_locks_per_xact setting",
};

/** The ordered settings a data directory's pg_control holds (a pg_controldata process); null when it cannot be read. */
async function controlOrdered(node: PgNode): Promise<Partial<Record<OrderedName, number>> | null> {
  const raw = (await inspectDataDir(node.dataDir, node)).control?.raw;
  if (!raw) return null;
  const out: Partial<Record<OrderedName, number>> = {};
  for (const name of ORDERED_SETTINGS) {
    const c = Number(raw[CONTROL_KEYS[name]]);
    if (Number.isInteger(c)) out[name] = c;
  }
  return out;
}

/**
 * core/restart-plan.ts startFloor for a data directory whose start as a standby (standby.signal) failed:
 * its pg_control (pg_controldata) against what its configuration files give (`postgres -C`, which
 * reads them as the server will, postgresql.auto.conf included). {} when nothing is to be raised
 * or a value cannot be read (the start then goes ahead as configured).
 */
export async function readStartFloor(node: PgNode): Promise<Partial<Record<OrderedName, number>>> {
  if (!existsSync(join(node.dataDir, "standby.signal"))) return {};
  const control = await controlOrdered(node);
  if (!control) return {};
  const next: Partial<Record<OrderedName, number>> = {};
  // Zero (max_prepared_transactions' default) is never too low: no process for it.
  await Promise.all(ORDERED_SETTINGS.filter((n) => (control[n] ?? 0) > 0).map(async (name) => {
    const r = await runTool({ bin: pgTool(node.bins, "postgres"), args: ["-C", name, "-D", node.dataDir], user: node.osUser, timeoutMs: 15_000, log: node.log, quiet: true }).catch(() => null);
    const v = Number(r?.stdout.trim());
    if (r?.code === 0 && Number.isInteger(v)) next[name] = v;
  }));
  return startFloor(next, control);
}

/**
 * A standby whose replay PostgreSQL paused (14+: the startup process waits on RecoveryPause): the
 * ordered settings its pg_control holds higher than the server runs (a primary that raised them,
 * replayed). Empty when the pause is someone's pg_wal_replay_pause() or pg_control cannot be read.
 */
export async function pausedForSettings(h: PgHost): Promise<string[]> {
  const control = await controlOrdered(h.node);
  if (!control) return [];
  const rows = await h.localDb().query("ordered settings", (sql) => sql`SELECT name, setting FROM pg_settings WHERE name IN ${sql([...ORDERED_SETTINGS])}`);
  return rows.map((r) => ({ name: String(r.name) as OrderedName, running: Number(r.setting) }))
    .filter((v) => (control[v.name] ?? Number.NaN) > v.running)
    .map((v) => v.name).sort();
}

/** How often a standby whose replay stays paused looks again at why (a pg_controldata process each time). */
const PAUSE_CHECK_MS = 5000;
/** Paused standbys restart one after another, this far apart (core/ha.ts restartStagger). */
export const PAUSE_STAGGER_MS = 5000;

/** The round's look at a paused replay: its cause (pausedForSettings, at most every PAUSE_CHECK_MS) and for how long. */
export class ReplayPauseWatch {
  private checked: { at: number; names: string[] } | null = null;
  private since: number | null = null;

  async look(h: PgHost, paused: boolean): Promise<{ names: string[]; ms: number }> {
    const now = h.clock.now();
    if (!paused) {
      this.reset();
      return { names: [], ms: 0 };
    }
    if (!this.checked || now - this.checked.at >= PAUSE_CHECK_MS) {
      const names = await pausedForSettings(h).catch((e: Error) => {
        h.log.warn(`replay is paused; reading why: ${e.message}`);
        return [] as string[];
      });
      this.checked = { at: now, names };
      this.since = names.length ? (this.since ?? now) : null;
    }
    return { names: this.checked.names, ms: this.since === null ? 0 : now - this.since };
  }

  /** After a restart: look afresh. */
  reset(): void {
    this.checked = null;
    this.since = null;
  }
}

/**
 * One query a round: the settings pending a restart (pg_settings.pending_restart), and the ordered
 * settings: running (pg_settings), next (the last line of the configuration files that sets it, as
 * pg_file_settings reads them now; the default when no line does), and on a standby with a
 * decrease pending, the primary's value from its pg_control.
 */
export async function readSettings(h: PgHost, standby: boolean): Promise<{ pending: string[]; ordered: OrderedValue[] }> {
  const rows = await h.localDb().query("pending and ordered settings", (sql) => sql`
    SELECT s.name, s.pending_restart AS pending, s.setting AS running, COALESCE(f.setting, CASE WHEN s.pending_restart THEN s.boot_val ELSE s.setting END) AS next
    FROM pg_settings s
    LEFT JOIN LATERAL (SELECT setting FROM pg_file_settings x WHERE x.name = s.name ORDER BY x.seqno DESC LIMIT 1) f ON true
    WHERE s.pending_restart OR s.name IN ${sql([...ORDERED_SETTINGS])} ORDER BY s.name`);
  const pending = rows.filter((r) => r.pending === true).map((r) => z.string().parse(r.name));
  const values = rows.map((r) => ({ name: String(r.name), running: Number(r.running), next: Number(r.next) }))
    .filter((v): v is { name: (typeof ORDERED_SETTINGS)[number]; running: number; next: number } =>
      (ORDERED_SETTINGS as readonly string[]).includes(v.name) && Number.isInteger(v.running) && Number.isInteger(v.next));
  const control = standby && values.some((v) => v.next < v.running) ? await controlOrdered(h.node) : null;
  const ordered = values.map((v) => ({ ...v, control: control?.[v.name] ?? null }));
  return { pending, ordered };
}

/**
 * `pg_ctl restart -m fast` of this node's PostgreSQL with its managed files rewritten first.
 * A primary checkpoints while still serving (the shutdown checkpoint then has little to do), and
 * comes back only under this agent's lease; its standbys get the reconnect grace of a restart.
 */
export async function restartHere(h: PgHost, o: { startGrace(): void }): Promise<NodeOpResult> {
  const primary = h.lastReportUp && !h.lastInRecovery;
  if (!h.lastReportUp) return { ok: false, message: `${h.cfg.node_name}: PostgreSQL is not running here` };
  if (!primary && !h.upstream) return { ok: false, message: `${h.cfg.node_name}: this standby follows no known primary yet` };
  const pending = await pendingRestart(h.localDb()).catch(() => [] as string[]);
  if (primary) await h.localDb().query("checkpoint before restart", (sql) => sql`CHECKPOINT`, 60_000);
  await h.writeConfig(!primary, h.upstream ?? undefined);
  const t0 = h.clock.now();
  h.log.warn(`restarting PostgreSQL (${primary ? "primary, in place" : "standby"}) for the operator${pending.length ? `: ${pending.join(", ")}` : ""}`);
  await h.stopServer("fast", 60);
  if (primary) {
    await h.fencer.asPrimary("restart in place", (still) => h.startServer(undefined, still));
    o.startGrace();
  } else await h.startServer();
  const ms = Math.round(h.clock.now() - t0);
  // A standby is back once it streams again: the next one may go down only then (the report a
  // round publishes could lag behind; this answer does not).
  // The primary: answering again (this also replaces the local client's connection the restart cut).
  const streams = await backWithin(h, primary, STREAM_WAIT_MS);
  h.record("restart", `${primary ? "primary restarted in place" : "standby restarted"} by the operator${pending.length ? ` to apply ${pending.join(", ")}` : ""} (down ${ms} ms)`);
  const back = streams ? (primary ? "" : ", streaming again") : `, NOT ${primary ? "answering as a primary" : "streaming"} within ${STREAM_WAIT_MS / 1000} s`;
  // Not back (a standby not streaming, a primary not answering): not done, and the rolling restart
  // must not take the next node down.
  return { ok: streams, message: `${h.cfg.node_name}: PostgreSQL ${primary ? "primary" : "standby"} restarted in ${ms} ms${pending.length ? ` (applied ${pending.join(", ")})` : ""}${back}` };
}

/** How long a restarted standby's answer waits for it to stream again. */
const STREAM_WAIT_MS = 60_000;

async function backWithin(h: PgHost, primary: boolean, ms: number): Promise<boolean> {
  const end = h.clock.now() + ms;
  while (h.clock.now() < end) {
    const p = await probe(h.localDb()).catch(() => null);
    if (p?.up && (primary ? !p.inRecovery : p.walReceiver?.status === "streaming")) return true;
    await h.clock.sleep(100);
  }
  return false;
}

/** Rewrite the managed files from the running configuration and reload PostgreSQL; what still waits for a restart. */
export async function reloadHere(h: PgHost, configNote: string): Promise<NodeOpResult> {
  if (!h.lastReportUp) return { ok: false, message: `${h.cfg.node_name}: ${configNote}; PostgreSQL is not running here` };
  const standby = h.lastInRecovery;
  const loadTime = async () => String((await h.localDb().query("pg_conf_load_time", (sql) => sql`SELECT pg_conf_load_time()::text AS t`))[0]?.t);
  const before = await loadTime();
  const changed = await h.writeConfig(standby, standby ? (h.upstream ?? undefined) : undefined);
  await h.reload();
  // The postmaster reads the files on SIGHUP asynchronously: wait until it has (2 s at most).
  for (let i = 0; i < 40 && (await loadTime()) === before; i++) await h.clock.sleep(50);
  const pending = await pendingRestart(h.localDb()).catch(() => [] as string[]);
  const files = changed.length ? `rewrote ${changed.join(", ")}` : "managed files unchanged";
  return { ok: true, message: `${h.cfg.node_name}: ${configNote}; ${files}; PostgreSQL reloaded; ${pending.length ? `pending restart: ${pending.join(", ")}` : "nothing pending a restart"}` };
}
