// Backups in the pgBackRest repository: take one, list them, restore the latest into a new
// directory (a clone that never asks the primary for a base backup).
//
// archive_mode = always (see archiveSettings) is a mode pgBackRest's own WAL check refuses
// ("archive_mode=always not supported"), so backups run with --no-archive-check and pgherd does
// that check itself: a backup counts only once the WAL segment it stopped in is in the archive.
// Without pgBackRest's check, its expire after the backup (expire-auto) would count a backup whose WAL
// is not archived and remove the older ones: with archiving failing, every backup the repository could
// restore from. So backups run with --no-expire-auto, and pgherd runs `pgbackrest expire` itself once
// the new backup's WAL is archived.
import { z } from "zod";
import { SafeDir } from "../postgres/fsutil.ts";
import { stripKeys } from "../postgres/managed-config.ts";
import { lookupOsUser } from "../postgres/users.ts";
import { ensureDir, removeTree } from "../postgres/fsutil.ts";
import { backrest, BackrestError, type BackrestPaths, type BackrestRun } from "./pgbackrest.ts";
import { MAX_STDOUT } from "../postgres/exec.ts";

export type BackupType = "full" | "diff" | "incr";

export interface BackupInfo {
  label: string;
  type: BackupType;
  /** Unix seconds. */
  start: number;
  stop: number;
  walStart: string;
  walStop: string;
  lsnStart: string;
  lsnStop: string;
  sizeBytes: number;
  repoBytes: number;
  /** The node that took it and whether from a standby (pgherd's annotation; absent on older backups). */
  node?: string;
  fromStandby?: boolean;
}

export interface StanzaInfo {
  status: string;
  /** Oldest and newest archived segment of the current database. */
  archiveMin: string | null;
  archiveMax: string | null;
  backups: BackupInfo[];
}

const InfoJson = z.array(z.object({
  status: z.object({ code: z.number(), message: z.string() }),
  archive: z.array(z.object({ id: z.string(), min: z.string().nullable(), max: z.string().nullable() })).default([]),
  backup: z.array(z.object({
    label: z.string(),
    type: z.enum(["full", "diff", "incr"]),
    timestamp: z.object({ start: z.number(), stop: z.number() }),
    archive: z.object({ start: z.string().nullable(), stop: z.string().nullable() }),
    lsn: z.object({ start: z.string(), stop: z.string() }).optional(),
    info: z.object({ size: z.number(), repository: z.object({ size: z.number() }) }),
    error: z.boolean().optional(),
    annotation: z.record(z.string(), z.string()).optional(),
  })).default([]),
}));

/**
 * pgbackrest backup succeeded, but the WAL segment the backup stopped in was not archived in time: the
 * backup is in the repository (restorable once its WAL arrives), so it is not taken again elsewhere.
 */
export class WalNotArchived extends BackrestError {
  constructor(message: string) {
    super(message, null);
  }
}

/** `pgbackrest info --output=json` of the stanza. */
export async function stanzaInfo(p: BackrestPaths, r: BackrestRun): Promise<StanzaInfo> {
  const res = await backrest(p, { ...r, quiet: true }, "info", ["--output=json"]);
  if (res.stdoutCut) throw new Error(`pgbackrest info --output=json printed more than ${MAX_STDOUT} characters (the repository's backup list): not read`);
  return parseInfo(res.stdout);
}

export function parseInfo(json: string): StanzaInfo {
  let doc: unknown;
  try {
    doc = JSON.parse(json);
  } catch (e) {
    throw new Error(`pgbackrest info --output=json printed no JSON (${(e as Error).message}): ${JSON.stringify(json.slice(0, 200))}`);
  }
  const r = InfoJson.safeParse(doc);
  if (!r.success) throw new Error(`pgbackrest info --output=json: unexpected shape: ${r.error.issues.slice(0, 3).map((i) => `${i.path.join(".") || "(top)"} ${i.message}`).join("; ")}`);
  const all = r.data;
  const s = all[0];
  if (!s) return { status: "no stanza", archiveMin: null, archiveMax: null, backups: [] };
  const cur = s.archive.at(-1);
  return {
    status: s.status.message,
    archiveMin: cur?.min ?? null,
    archiveMax: cur?.max ?? null,
    backups: s.backup.filter((b) => !b.error).map((b) => ({
      label: b.label, type: b.type, start: b.timestamp.start, stop: b.timestamp.stop,
      walStart: b.archive.start ?? "", walStop: b.archive.stop ?? "", lsnStart: b.lsn?.start ?? "", lsnStop: b.lsn?.stop ?? "",
      sizeBytes: b.info.size, repoBytes: b.info.repository.size,
      ...(b.annotation?.[NODE_KEY] ? { node: b.annotation[NODE_KEY], fromStandby: b.annotation[STANDBY_KEY] === "y" } : {}),
    })),
  };
}

/** pgBackRest annotation keys (shown by `pgbackrest info`, read back by `pgherd backup ls`). */
const NODE_KEY = "pgherd-node";
const STANDBY_KEY = "pgherd-from-standby";

/** The primary as a standby's backup reaches it: its host (the one the standby streams from) and pgBackRest TLS server, and its server's settings. */
export interface PrimaryRemote {
  host: string;
  tlsPort: number;
  path: string;
  port: number;
  socketPath: string;
  user: string;
}

/** Where a backup runs: this node's name, and the primary when this node is a standby (backup-standby). */
export interface BackupSiteArgs {
  node: string;
  primary?: { remote: PrimaryRemote; caFile: string; certFile: string; keyFile: string };
}

/**
 * `pgbackrest backup` arguments beyond the type. From a standby: pg1 is this standby (the stanza),
 * pg2 the primary through its pgBackRest TLS server; pgBackRest copies the files from pg1 and runs
 * only pg_backup_start/stop (and a few queries) on pg2.
 */
export function backupArgs(type: BackupType, site?: BackupSiteArgs): string[] {
  const args = [`--type=${type}`, "--no-archive-check", "--no-expire-auto"];
  if (!site) return args;
  args.push(`--annotation=${NODE_KEY}=${site.node}`, `--annotation=${STANDBY_KEY}=${site.primary ? "y" : "n"}`);
  const pr = site.primary;
  if (!pr) return args;
  const m = pr.remote;
  return [
    ...args, "--backup-standby",
    `--pg2-host=${m.host}`, "--pg2-host-type=tls", `--pg2-host-port=${m.tlsPort}`,
    `--pg2-host-ca-file=${pr.caFile}`, `--pg2-host-cert-file=${pr.certFile}`, `--pg2-host-key-file=${pr.keyFile}`,
    `--pg2-path=${m.path}`, `--pg2-port=${m.port}`, `--pg2-socket-path=${m.socketPath}`, `--pg2-user=${m.user}`,
  ];
}

/**
 * Take a backup (of the primary this node runs, or from this standby: `site.primary`), then wait
 * (up to `walWaitMs`) until the WAL it needs to be consistent is archived, and only then expire what
 * retention no longer keeps (`pgbackrest expire`). Returns the new backup.
 */
export async function takeBackup(p: BackrestPaths, r: BackrestRun, type: BackupType, walWaitMs = 120_000, site?: BackupSiteArgs): Promise<BackupInfo> {
  await backrest(p, r, "backup", backupArgs(type, site));
  const end = Date.now() + walWaitMs;
  for (;;) {
    const info = await stanzaInfo(p, r);
    const b = info.backups.at(-1);
    if (!b) throw new BackrestError("pgbackrest backup exited 0 but lists no backup", 0);
    if (stopArchived(info.archiveMax, b.walStop)) {
      // The backup is complete: older backups and their WAL may go now. A failed expire leaves them
      // (the repository grows; the next backup's expire removes them): the backup itself stands.
      await backrest(p, r, "expire").catch((e: Error) => r.log.warn(`backup ${b.label} taken, but expiring older backups failed (they are kept until the next backup): ${e.message}`));
      return b;
    }
    if (Date.now() > end) throw new WalNotArchived(`backup ${b.label}: WAL segment ${b.walStop} was not archived within ${walWaitMs} ms (is archive_command failing? see the server log); no older backup was expired`);
    await new Promise((res) => setTimeout(res, 500));
  }
}

/**
 * The archive reaches the segment a backup stopped in: its newest segment (`pgbackrest info`'s archive
 * max, the last file of the last directory, directories sorted by timeline first) is on the backup's
 * timeline, at or past that segment. One on another timeline says nothing about this one: after a
 * failover the old timeline's segments may run past the new timeline's (a former primary archived
 * writes the new primary never had), and before the new timeline's first segment is archived the
 * archive's newest is one of those (review: a log/seg comparison that ignored the timeline counted
 * the backup's WAL as archived then). A failover right after the backup (the archive on a later
 * timeline) is not counted either: the backup waits, then stays unconfirmed (WalNotArchived).
 */
export function stopArchived(archiveMax: string | null, walStop: string): boolean {
  if (!archiveMax || !SEGMENT.test(archiveMax) || !SEGMENT.test(walStop)) return false;
  return archiveMax.slice(0, 8) === walStop.slice(0, 8) && archiveMax.slice(8) >= walStop.slice(8);
}

const SEGMENT = /^[0-9A-F]{24}$/;

/**
 * Restore the latest backup into `target` (new or empty) as a standby that replays the archive
 * (restore_command comes from pgherd.conf, so pgBackRest's copy in postgresql.auto.conf is removed).
 */
export async function restoreLatest(p: BackrestPaths, r: BackrestRun, target: string, o: { standby: boolean; targetTime?: string; targetLsn?: string } = { standby: true }): Promise<{ ms: number }> {
  const u = await lookupOsUser(r.osUser);
  await ensureDir(target, 0o700, { uid: u.uid, gid: u.gid });
  const t0 = performance.now();
  const how = o.targetTime ? ["--type=time", `--target=${o.targetTime}`, "--target-action=promote"]
    : o.targetLsn ? ["--type=lsn", `--target=${o.targetLsn}`, "--target-action=promote"]
    : o.standby ? ["--type=standby"] : ["--type=default"];
  try {
    await backrest(p, r, "restore", [`--pg1-path=${target}`, ...how]);
    const dir = await SafeDir.open(target, { osUser: { uid: u.uid, gid: u.gid } });
    try {
      const auto = (await dir.readText("postgresql.auto.conf")) ?? "";
      // restore_command: pgherd.conf has it. Recovery targets stay until the bootstrap clears them.
      const clean = stripKeys(auto, ["restore_command"]);
      if (clean.removed.length) await dir.writeAtomic("postgresql.auto.conf", clean.text, { mode: 0o600, owner: { uid: u.uid, gid: u.gid } });
    } finally {
      await dir.close();
    }
  } catch (e) {
    // Stopped on purpose: the next clone's preparation removes it (a large tree takes a while).
    if (!r.signal?.aborted) await removeTree(target);
    throw e;
  }
  return { ms: Math.round(performance.now() - t0) };
}
