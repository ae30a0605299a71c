// Writes every file pgherd manages inside a data directory.
//
// Why an include file (pgherd.conf via one include_if_exists line in postgresql.conf) and not
// ALTER SYSTEM/postgresql.auto.conf: ALTER SYSTEM needs a running server, but we must set port,
// primary_conninfo and slot BEFORE the first start of a fresh clone or after pg_rewind (which
// copies the source's postgresql.conf, auto.conf, pg_hba.conf and pg_ident.conf over ours). A
// file we render ourselves can be written while the server is down, atomically, and is easy to
// diff. Because rewind/clone overwrite all of these files, call writeManagedConfig after every
// initdb, clone and rewind, before starting. Managed keys found in postgresql.auto.conf are
// removed (auto.conf is read after our include and would silently override it).
//
// Every file is read and replaced relative to the data directory opened once, never through a
// link (the OS user owns the data directory and could put one there; see fsutil.ts).
import { userInfo } from "node:os";
import type { Logger } from "../log.ts";
import { SafeDir, type Owner } from "./fsutil.ts";
import { mergeManagedBlock, renderHbaBlock, renderIdentBlock, type HbaParams } from "./hba.ts";
import { LOCATION_KEYS, MANAGED_KEYS, PGHERD_CONF, RECOVERY_END_KEYS, renderPgherdConf, withIncludeLine, type PgherdConfParams } from "./pgconf.ts";
import { isRoot, lookupOsUser } from "./users.ts";

export interface ManagedConfig {
  dataDir: string;
  osUser: string;
  conf: PgherdConfParams;
  hba: HbaParams;
  /** OS users allowed to connect locally as the superuser (peer map). Default: os_user, the agent's own user and root (who can become os_user anyway). */
  localOsUsers?: ReadonlyArray<string>;
  /** true → standby.signal present; false → removed. */
  standby: boolean;
  /**
   * A restore from a backup whose recovery has not ended at its target (store/restore-marker.ts):
   * its recovery target stays in postgresql.auto.conf whatever `standby` says. Dropped, the next
   * start would replay the whole archive, past the target (review).
   */
  keepRecoveryTargets?: boolean;
  log: Logger;
}

export interface WriteResult {
  /** Files whose content changed (relative to the data dir). */
  changed: string[];
}

export async function writeManagedConfig(m: ManagedConfig): Promise<WriteResult> {
  const u = await lookupOsUser(m.osUser);
  const owner: Owner = { uid: u.uid, gid: u.gid };
  const dir = await SafeDir.open(m.dataDir, { osUser: owner });
  try {
    return await writeIn(dir, m, owner);
  } finally {
    await dir.close();
  }
}

async function writeIn(dir: SafeDir, m: ManagedConfig, owner: Owner): Promise<WriteResult> {
  const changed: string[] = [];
  const put = async (name: string, text: string, mode: number) => {
    if (await dir.writeAtomic(name, text, { mode, owner })) changed.push(name);
  };
  const read = async (name: string) => (await dir.readText(name)) ?? "";

  if (!(await dir.has("PG_VERSION"))) throw new Error(`${m.dataDir} is not a PostgreSQL data directory (no PG_VERSION)`);
  // Render everything first: a validation error must not leave half the files rewritten.
  const conf = renderPgherdConf(m.conf);
  const agentUser = isRoot() ? "root" : userInfo().username;
  const ident = renderIdentBlock(m.hba.superuser, m.localOsUsers ?? [m.osUser, agentUser, "root"]);
  const hbaText = mergeManagedBlock(await read("pg_hba.conf"), renderHbaBlock(m.hba));
  const identText = mergeManagedBlock(await read("pg_ident.conf"), ident);
  const pgConf = withIncludeLine(await read("postgresql.conf"));
  const auto = await read("postgresql.auto.conf");
  // Also the locations of the files pgherd manages: an `ALTER SYSTEM SET hba_file` would have the
  // server ignore its pg_hba.conf block, in every clone too (review). Recovery targets stay for a
  // primary's start: a restore from a backup puts them there for the recovery that follows
  // (backup/bootstrap.ts, which removes them once it promoted). Never for a standby's: one left by a
  // restore cut short travels in every clone, and a standby would end its recovery there, and
  // promote itself with recovery_target_action = 'promote' (review). Kept while that restore is
  // still under way in this directory (keepRecoveryTargets): its recovery ends there and nowhere else.
  const autoClean = stripKeys(auto, [...MANAGED_KEYS, ...LOCATION_KEYS, ...(m.standby && !m.keepRecoveryTargets ? RECOVERY_END_KEYS : [])]);

  // 0600: pgherd.conf names the passfile and peers; nothing here is for other users.
  await put(PGHERD_CONF, conf, 0o600);
  await put("pg_hba.conf", hbaText, 0o600);
  await put("pg_ident.conf", identText, 0o600);
  await put("postgresql.conf", pgConf, 0o600);
  if (autoClean.removed.length) {
    m.log.warn(`postgresql.auto.conf set ${autoClean.removed.join(", ")} (managed by pgherd): removed`);
    await put("postgresql.auto.conf", autoClean.text, 0o600);
  }
  if (await standbySignalIn(dir, m.standby, owner)) changed.push("standby.signal");
  if (changed.length) m.log.info(`managed config in ${m.dataDir}: updated ${changed.join(", ")}`);
  return { changed };
}

/** Create or remove standby.signal; returns whether anything changed. */
export async function setStandbySignal(dataDir: string, standby: boolean, owner?: Owner): Promise<boolean> {
  const dir = await SafeDir.open(dataDir, { osUser: owner });
  try {
    return await standbySignalIn(dir, standby, owner);
  } finally {
    await dir.close();
  }
}

async function standbySignalIn(dir: SafeDir, standby: boolean, owner?: Owner): Promise<boolean> {
  if (!standby) return dir.remove("standby.signal");
  if (await dir.has("standby.signal")) return false;
  await dir.writeAtomic("standby.signal", "", { mode: 0o600, owner });
  return true;
}

/** Drop `key = ...` lines for the given keys (auto.conf is machine-written: one setting per line). */
export function stripKeys(text: string, keys: ReadonlyArray<string>): { text: string; removed: string[] } {
  const removed: string[] = [];
  const kept = text.split("\n").filter((l) => {
    const m = /^\s*([A-Za-z_][A-Za-z0-9_.]*)\s*=/.exec(l);
    const k = m?.[1]?.toLowerCase();
    if (k && keys.includes(k)) {
      removed.push(k);
      return false;
    }
    return true;
  });
  return { text: kept.join("\n"), removed };
}
