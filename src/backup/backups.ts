// Backups in the pgBackRest repository: take one, list them, restore the latest into a new
// directory (a clone that never asks the primary for a base backup).
//
// archive_mode = always (see archiveSettings) is a mode pgBackRest's own WAL check refuses
// ("archive_mode=always not supported"), so backups run with --no-archive-check and pgherd does
// that check itself: a backup counts only once the WAL segment it stopped in is in the archive.
import { z } from "zod";
import { SafeDir } from "../postgres/fsutil.ts";
import { stripKeys } from "../postgres/managed-config.ts";
import { lookupOsUser } from "../postgres/users.ts";
import { ensureDir, removeTree } from "../postgres/fsutil.ts";
import { backrest, BackrestError, type BackrestPaths, type BackrestRun } from "./pgbackrest.ts";

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
  })).default([]),
}));

/** `pgbackrest info --output=json` of the stanza. */
export async function stanzaInfo(p: BackrestPaths, r: BackrestRun): Promise<StanzaInfo> {
  const res = await backrest(p, { ...r, quiet: true }, "info", ["--output=json"]);
  return parseInfo(res.stdout);
}

export function parseInfo(json: string): StanzaInfo {
  const all = InfoJson.parse(JSON.parse(json));
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
    })),
  };
}

/**
 * Take a backup of the primary this node runs, then wait (up to `walWaitMs`) until the WAL it needs
 * to be consistent is archived. Returns the new backup.
 */
export async function takeBackup(p: BackrestPaths, r: BackrestRun, type: BackupType, walWaitMs = 120_000): Promise<BackupInfo> {
  await backrest(p, r, "backup", [`--type=${type}`, "--no-archive-check"]);
  const end = Date.now() + walWaitMs;
  for (;;) {
    const info = await stanzaInfo(p, r);
    const b = info.backups.at(-1);
    if (!b) throw new BackrestError("pgbackrest backup exited 0 but lists no backup", 0);
    if (info.archiveMax && b.walStop && segmentOrder(info.archiveMax) >= segmentOrder(b.walStop)) return b;
    if (Date.now() > end) throw new BackrestError(`backup ${b.label}: WAL segment ${b.walStop} was not archived within ${walWaitMs} ms (is archive_command failing? see the server log)`, null);
    await new Promise((res) => setTimeout(res, 500));
  }
}

/** Segment names compare by log/seg; the timeline only orders after them (a later timeline continues the same log). */
function segmentOrder(seg: string): string {
  return seg.slice(8) + seg.slice(0, 8);
}

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
    await removeTree(target);
    throw e;
  }
  return { ms: Math.round(performance.now() - t0) };
}
