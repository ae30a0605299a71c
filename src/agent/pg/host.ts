// The local PostgreSQL as every part of the loop uses it: its files, a client, the managed
// configuration, start/stop, and the facts the last monitoring round observed.
import { endArchivePushes, serverStopping } from "../../backup/stuck-push.ts";
import { RepoDownFlag } from "../../backup/repo-down.ts";
import { OwnTimelineMarker } from "../../store/own-timeline-marker.ts";
import { RestoreMarker } from "../../store/restore-marker.ts";
import { CreationMarker } from "../../store/creation-marker.ts";
import { RewindMarker } from "../../store/rewind-marker.ts";
import { join } from "node:path";
import { parseHostPort } from "../../config/hostport.ts";
import type { Config } from "../../config/schema.ts";
import { type CatchUp, NOT_STUCK } from "../../core/catch-up.ts";
import type { Position } from "../../core/position.ts";
import type { Logger } from "../../log.ts";
import { ensureDir } from "../../postgres/fsutil.ts";
import { buildConninfo, inspectDataDir, lsnCompare, openLocalDb, PgCtlError, reload, start, stop, writeManagedConfig, writePassfile, type Db, type PgBins, type PgNode } from "../../postgres/index.ts";
import { removeDanglingPlaceholders } from "../../postgres/timeline-files.ts";
import { lookupOsUser, osUidOf } from "../../postgres/users.ts";
import { NodeTls } from "../../tls/node-tls.ts";
import { conninfoExtra, walSettings } from "../../backup/wal-settings.ts";
import type { Fencer } from "../../fence/fencer.ts";
import { type Clock, realClock } from "../../fence/clock.ts";
import type { ClusterContext } from "./context.ts";
import { slotFor } from "./context.ts";
import { serverLogDir, serverLogParameters } from "../../ops/pg-log.ts";
import { accessRowsInForce } from "../../ops/access.ts";
import { runningConfig } from "../../ops/reload.ts";
import { pgParametersInForce } from "../dynamic-config.ts";
import { readStartFloor } from "./restart-node.ts";

/** PostgreSQL's refusal of a standby whose ordered settings are below its pg_control (14+, and ≤ 13's wording). */
const INSUFFICIENT = /insufficient parameter settings|is a lower setting than on the (primary|master) server/;

/** Default deadline of a query on the local server. */
export const LOCAL_QUERY_MS = 3000;

export class PgHost {
  readonly node: PgNode;
  readonly socketDir: string;
  readonly passfile: string;
  /** Replication TLS files (CA, this node's certificate) and the client's libpq keywords. */
  readonly tls: NodeTls;
  /** A pg_rewind that started and did not finish (store/rewind-marker.ts): the data directory is rebuilt, never started. */
  readonly rewindMarker: RewindMarker;
  /** A former primary started as a standby on its own timeline, not promoted yet (store/own-timeline-marker.ts): still a former primary's data. */
  readonly ownTimelineMarker: OwnTimelineMarker;
  /** A restore from a backup whose recovery has not ended at its target (store/restore-marker.ts): only its own recovery ends it. */
  readonly restoreMarker: RestoreMarker;
  /** This node creates the cluster in its data directory, identity not recorded yet (store/creation-marker.ts). */
  readonly creationMarker: CreationMarker;
  /** restore_command's view of the repository host (backup/repo-down.ts). */
  readonly repoDown: RepoDownFlag;
  private db: Db | null = null;
  /** host:port primary_conninfo points to, as last written. */
  upstream: string | null = null;
  private names = "";
  /**
   * Bumped whenever the names in force may have changed: syncNames takes another value, every
   * reload, every promotion or start as primary. A confirmation of the names in force (the
   * exclusion of standbys that cannot lead, sync-exclusion.ts) holds for one generation only: the
   * same string after A -> B -> A between two checks is not the same confirmation.
   */
  syncNamesGen = 0;
  /** synchronous_standby_names of the managed files: a primary's durability plan; on a standby, the names it would be promoted with. */
  get syncNames(): string {
    return this.names;
  }
  set syncNames(v: string) {
    if (v !== this.names) this.syncNamesGen++;
    this.names = v;
  }
  /** The names in force may have changed (a reload, a promotion, a start as primary): confirmations made before count no more. */
  namesMayHaveChanged(): void {
    this.syncNamesGen++;
  }
  /** Reload the server's configuration (postgres/ctl.ts reload: a SIGHUP to its postmaster); the names in force may change with it. */
  async reload(): Promise<void> {
    this.namesMayHaveChanged();
    await reload(this.node);
    this.namesMayHaveChanged(); // a check that ran during the reload does not count either
  }
  /**
   * The checkpointer took non-empty names (it alone sets the flag a commit checks before waiting
   * for a standby) since the files last said none: set by a barrier (postgres/promote.ts), cleared
   * whenever empty names are written. Unknown (false) when the agent starts.
   */
  syncNamesTaken = false;
  /** Counts writes of empty names: a barrier that began before one does not count. */
  syncNamesEmptied = 0;

  /** The checkpointer may run with empty names (written, or found in force): no barrier before this counts. */
  namesMayBeEmpty(): void {
    this.syncNamesTaken = false;
    this.syncNamesEmptied++;
  }
  /** Highest timeline this standby was seen streaming on (reset when its data is replaced). */
  knownTli = 0;
  /**
   * The furthest position this data directory was seen to hold (null once its data was replaced):
   * what the server answered while it ran, the end of its WAL while it was stopped (wal-end.ts). A
   * server that stops (a fence, a crash) keeps at least that much WAL on disk, while pg_control read
   * during or after the stop can say less (the last checkpoint), and a standby that starts again
   * reports its replay position until it streams: the voting position never falls below it.
   */
  heldPosition: Position | null = null;
  /** Progress note of a long action (clone). */
  note = "";
  /**
   * Last round: a (possibly hung) primary runs here (also after a task that made one, until the
   * next round: Fencer.primaryStarted). Before the first round nothing is known: a primary an
   * earlier run of the agent left may run, so a fence then stops whatever server runs.
   */
  wasPrimary = true;
  lastReportUp = false;
  lastInRecovery = false;
  /** Stopped cleanly for a switchover: its WAL is all on the new primary, no rewind needed. */
  handedOver = false;
  /** The last round found another cluster's data here (core/ha.ts "foreign"): never touched, it votes with no position. */
  foreignData = false;
  /** Since when a standby has neither streamed nor replayed while a primary was ready (core/catch-up.ts). */
  catchUp: CatchUp = NOT_STUCK;
  /** The monitoring client's connection closed, or its server said it ends it (the postmaster watch listens: loop.ts). */
  onLocalClose: (() => void) | null = null;
  /** Set once the loop is built (the fencer needs a stop that uses this host). */
  fencer!: Fencer;

  constructor(readonly cfg: Config, bins: PgBins, readonly ctx: ClusterContext, readonly log: Logger, readonly clock: Clock = realClock) {
    this.node = { bins, dataDir: cfg.postgres.data_dir, osUser: cfg.postgres.os_user, log };
    // Not inside the data directory: pg_rewind copies every file of the source's data directory
    // and fails on a socket there.
    this.socketDir = cfg.postgres.socket_dir || `${cfg.postgres.data_dir}.sock`;
    // Not inside the data directory either: base backups copy it (the password would travel with every clone).
    this.passfile = passfileFor(cfg.postgres.data_dir);
    this.tls = new NodeTls({ cfg, secrets: ctx, log });
    this.rewindMarker = new RewindMarker(cfg.state_dir, cfg.postgres.data_dir);
    this.ownTimelineMarker = new OwnTimelineMarker(cfg.state_dir, cfg.postgres.data_dir);
    this.restoreMarker = new RestoreMarker(cfg.state_dir, cfg.postgres.data_dir);
    this.creationMarker = new CreationMarker(cfg.state_dir, cfg.postgres.data_dir);
    this.repoDown = new RepoDownFlag(cfg, log);
  }

  /** The local client's deadline for a query that names none; the leader's round upkeep lowers it (durability.ts). */
  queryDeadlineMs = LOCAL_QUERY_MS;
  private dbView: Db | null = null;

  localDb(): Db {
    if (!this.dbView) {
      const db = openLocalDb({ socketDir: this.socketDir, port: this.cfg.postgres.port, superuser: this.cfg.postgres.superuser, log: this.log, queryTimeoutMs: LOCAL_QUERY_MS, onClose: () => this.onLocalClose?.(), onEnding: () => this.onLocalClose?.() });
      this.db = db;
      this.dbView = { target: db.target, close: () => db.close(), query: (what, fn, ms) => db.query(what, fn, ms ?? this.queryDeadlineMs) };
    }
    return this.dbView;
  }

  /** A connection of its own for a task that may take long (a CHECKPOINT), so the rounds' is not held; the caller closes it. */
  sideDb(): Db {
    return openLocalDb({ socketDir: this.socketDir, port: this.cfg.postgres.port, superuser: this.cfg.postgres.superuser, log: this.log, queryTimeoutMs: LOCAL_QUERY_MS });
  }

  async close(): Promise<void> {
    await this.db?.close().catch(() => undefined);
    await this.repoDown.close();
  }

  withKnownTli(pos: Position, standby: boolean): Position {
    return standby && pos.lsn !== "0/0" && this.knownTli > pos.timeline ? { ...pos, timeline: this.knownTli } : pos;
  }

  /** A standby's position from a probe (received, else replayed), remembering its timeline. */
  standbyPosition(p: { up: boolean; inRecovery?: boolean; timeline?: number; receiveLsn?: string | null; replayLsn?: string | null }): Position | null {
    if (!p.up || p.timeline === undefined) return null;
    if (p.inRecovery) this.knownTli = Math.max(this.knownTli, p.timeline);
    // The further of the two: after a restart the receive position starts again at its segment's start.
    const lsn = p.receiveLsn && p.replayLsn ? (lsnCompare(p.receiveLsn, p.replayLsn) >= 0 ? p.receiveLsn : p.replayLsn) : (p.receiveLsn ?? p.replayLsn ?? null);
    return lsn ? this.withKnownTli({ timeline: p.timeline, lsn }, true) : null;
  }

  record(kind: "fence" | "rejoin" | "restart", reason: string): void {
    this.ctx.record({ term: this.ctx.leadership().term, kind, node: this.cfg.node_name, reason, oldPrimary: null, newPrimary: null, timeline: null, lsn: null });
  }

  /** `mayStart`: called right before each pg_ctl start (a task under the lease passes Fencer.asPrimary's still). */
  async startServer(timeoutSec = this.cfg.postgres.start_timeout_s, mayStart?: () => void): Promise<void> {
    try {
      await this.startInPlace(timeoutSec, undefined, mayStart);
    } catch (e) {
      if (!(e instanceof PgCtlError) || e.kind !== "start-failed" || !INSUFFICIENT.test(`${e.message}\n${e.detail}`)) throw e;
      // A standby whose configuration runs an ordered setting below its pg_control (a lowered
      // setting before the primary runs it: a switchover's old primary, a rewind, a clone, a crash)
      // is refused by PostgreSQL. Started once more with pg_control's values (restart-node.ts).
      const floor = await readStartFloor(this.node).catch((err: Error) => {
        this.log.warn(`reading the ordered settings after a failed start: ${err.message}`);
        return {};
      });
      if (Object.keys(floor).length === 0) throw e;
      this.log.warn(`starting as a standby with ${Object.entries(floor).map(([k, v]) => `${k} = ${v}`).join(", ")} from its pg_control for this start: the configured value is lower, which PostgreSQL refuses on a standby until its primary runs it (the configured value applies at a restart after that)`);
      await this.startInPlace(timeoutSec, floor, mayStart);
    }
  }

  private async startInPlace(timeoutSec: number, settings?: Readonly<Record<string, number>>, mayStart?: () => void): Promise<void> {
    // A promotion's placeholder history files (core/timelines.ts) left by an agent that died while
    // it ran: a standby would take the newest of them for its recovery target and wait forever for
    // WAL on that timeline (test/postgres/promote.test.ts).
    const controlTimeline = async () => (await inspectDataDir(this.node.dataDir, this.node)).control?.timeline ?? 1;
    const stale = await removeDanglingPlaceholders(this.node.dataDir, this.cfg.postgres.os_user, controlTimeline).catch((e: Error) => {
      this.log.warn(`looking for placeholder history files in pg_wal: ${e.message}`);
      return [];
    });
    if (stale.length > 0) this.log.warn(`removed placeholder history files for timeline(s) ${stale.join(", ")} left by an interrupted promotion`);
    return start(this.node, { logFile: this.serverLog(), collectorDir: serverLogDir(this.cfg), timeoutSec, ...(settings ? { settings } : {}), ...(mayStart ? { mayStart } : {}) });
  }

  /** Stop the server; false when none was running. */
  stopServer(mode: "fast" | "immediate", timeoutSec: number): Promise<boolean> {
    const stopping = stop(this.node, mode, timeoutSec);
    if (mode === "fast") void this.unblockArchiver(stopping);
    return stopping;
  }

  /**
   * Beside a fast stop: with a repository host that takes no connection, the archiver's push under
   * way must not hold the shutdown (backup/stuck-push.ts). Only once postmaster.pid says the server
   * stops (not a server started again meanwhile), and the flag for restore_command is set after.
   */
  private async unblockArchiver(stopping: Promise<boolean>): Promise<void> {
    let done = false;
    void stopping.then(() => (done = true), () => (done = true));
    try {
      if (!(await this.repoDown.silent())) return;
      const osUid = await osUidOf(this.node.osUser);
      while (!done && !serverStopping(this.node.dataDir)) await this.clock.sleep(20);
      const n = done ? 0 : endArchivePushes(this.node.dataDir, osUid);
      if (n > 0) this.log.warn(`stopping PostgreSQL: ended ${n} archive push process(es) under way, the repository host does not answer (the segments stay ready and are pushed after the next start)`);
      await this.repoDown.check();
    } catch (e) {
      this.log.warn(`looking at the repository host while stopping: ${(e as Error).message}`);
    }
  }

  /**
   * Rewrite the managed files (config, hba, passfile); the names of those that changed. A standby
   * carries this.syncNames too (the names it would run with as a primary, durability.ts): a
   * standby ignores them, and a promotion finds them in force from its first commit.
   */
  async writeConfig(standby: boolean, upstream?: string, o: { ownTimeline?: number } = {}): Promise<string[]> {
    if (this.syncNames === "") this.namesMayBeEmpty();
    const s = this.ctx.secrets();
    const pg = this.cfg.postgres;
    const params = runningConfig()?.postgres.parameters ?? pg.parameters; // [postgres.parameters] change on reload
    let conninfo: string | undefined;
    const u = await lookupOsUser(pg.os_user);
    const tls = await this.tls.prepare(!standby);
    if (standby && upstream) {
      const [host, port] = splitAddr(upstream);
      if (s) await this.writePassfile(host, port);
      conninfo = buildConninfo({ host, port, user: pg.repl_user, passfile: this.passfile, applicationName: slotFor(this.ctx.nodeId), extra: { ...(await this.tls.client()), ...conninfoExtra(this.cfg, this.node.bins.version) } });
      this.upstream = upstream;
    } else this.upstream = null; // a primary, or a standby with no upstream (detached, or started to be promoted)
    await ensureDir(this.socketDir, 0o700, { uid: u.uid, gid: u.gid });
    await ensureDir(serverLogDir(this.cfg), 0o700, { uid: u.uid, gid: u.gid }); // day-2: the log collector's directory
    // A restore's recovery ends only where the archive ends, not where archive-get failed (backup/pgbackrest.ts strictGet).
    const restoring = this.restoreMarker.get() !== null;
    const wal = await walSettings(this.cfg, this.socketDir, standby, this.node.bins.version, this.log, restoring);
    // While a start on its own timeline is not promoted (store/own-timeline-marker.ts), every start
    // as a standby stays on that timeline, whoever writes the files (a repoint, `pgherd restart`,
    // a paused replay's restart): following the newest timeline would replay another history over
    // pages flushed past the fork (re-review). It then cannot follow the leader, is found stuck and
    // rewound, which ends the marker.
    const ownTimeline = standby ? (o.ownTimeline || this.ownTimelineMarker.get()?.timeline || undefined) : undefined;
    const res = await writeManagedConfig({
      dataDir: this.node.dataDir, osUser: pg.os_user, standby, log: this.log,
      // Whoever writes the files (a reload, a repoint, a promotion the rules hold back): a restore's
      // target stays until its recovery ended there (store/restore-marker.ts).
      keepRecoveryTargets: restoring,
      conf: {
        listenAddresses: [pg.listen_addresses], port: pg.port, unixSocketDir: this.socketDir,
        maxWalSenders: pg.max_wal_senders, maxReplicationSlots: pg.max_replication_slots, hotStandby: true, walLogHints: true,
        clusterName: this.cfg.cluster, primaryConninfo: conninfo, synchronousStandbyNames: this.syncNames, primarySlotName: standby && upstream ? slotFor(this.ctx.nodeId) : undefined,
        ...(ownTimeline ? { recoveryTargetTimeline: ownTimeline } : {}),
        serverLog: serverLogParameters(this.cfg),
        ...wal,
        parameters: this.cfg.slots.max_slot_wal_keep_size ? { max_slot_wal_keep_size: this.cfg.slots.max_slot_wal_keep_size, ...pgParametersInForce(params) } : pgParametersInForce(params),
        ssl: tls.ssl ?? undefined,
      },
      hba: { superuser: pg.superuser, replUser: pg.repl_user, monitorUser: pg.monitor_user, peers: this.ctx.peerAddresses(), tls: this.tls.enabled, accessRows: accessRowsInForce() },
    });
    return [...res.changed, ...tls.changed];
  }

  /** The passfile (0600, os_user's, outside the data directory) with the replication password for host:port; its path. */
  async writePassfile(host: string, port: number): Promise<string> {
    const s = this.ctx.secrets();
    if (!s) throw new Error("no replication credentials");
    const u = await lookupOsUser(this.cfg.postgres.os_user);
    await writePassfile(this.passfile, [{ host, port, database: "*", user: this.cfg.postgres.repl_user, password: s.replPassword }], { uid: u.uid, gid: u.gid });
    return this.passfile;
  }

  serverLog(): string {
    return join(this.node.dataDir, "..", `${this.cfg.cluster}-${this.cfg.node_name}-postgresql.log`);
  }
}

/** Beside the data directory, like the socket directory: `<data_dir>.pgpass`. */
export function passfileFor(dataDir: string): string {
  return `${dataDir.replace(/\/+$/, "")}.pgpass`;
}

/** "host:port" of a peer's PostgreSQL (formatted by the agent, so always valid). */
export function splitAddr(addr: string): [string, number] {
  const hp = parseHostPort(addr);
  if (typeof hp === "string") throw new Error(`bad PostgreSQL address ${JSON.stringify(addr)}: ${hp}`);
  return [hp.host, hp.port];
}
