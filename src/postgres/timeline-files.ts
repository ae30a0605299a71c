// The history files in pg_wal that a promotion's timeline number depends on (core/timelines.ts):
// which numbers have one, and the placeholders pgherd puts there for numbers another node's
// promotion took. A placeholder below a real history file stays: a standby following across the
// numbers asks its upstream for each one's history file. One above every real history file (an
// agent that died between placing it and pg_promote) is removed before the server starts: a
// standby would otherwise recover towards it and wait for its WAL forever.
import { readdirSync, realpathSync, statSync } from "node:fs";
import { join } from "node:path";
import { isPlaceholder, placeholderText } from "../core/timelines.ts";
import { historyEnds } from "../core/wal-history.ts";
import { SafeDir, type Owner } from "./fsutil.ts";
import { isRoot, lookupOsUser } from "./users.ts";

const HISTORY = /^([0-9A-F]{8})\.history$/;

export const historyFileName = (n: number): string => `${n.toString(16).toUpperCase().padStart(8, "0")}.history`;

async function inWal<T>(dataDir: string, osUser: string, fn: (d: SafeDir, owner: Owner, names: string[]) => Promise<T>): Promise<T> {
  const u = await lookupOsUser(osUser);
  const owner: Owner = { uid: u.uid, gid: u.gid };
  // pg_wal may be a link to another file system (initdb --waldir). The link is in the data
  // directory, which only the OS user can write, so it is followed; the directory it names is then
  // opened as any other (as root: no link on that path, files the OS user could read).
  const wal = realpathSync(join(dataDir, "pg_wal"));
  const st = statSync(wal);
  if (isRoot() && (st.uid !== owner.uid || (st.mode & 0o022) !== 0)) {
    throw new Error(`${wal} (pg_wal of ${dataDir}) is owned by uid ${st.uid} with mode ${(st.mode & 0o777).toString(8)}: refusing to write in it as root (it must be the OS user's, writable by nobody else)`);
  }
  const d = await SafeDir.open(wal, { osUser: owner });
  try {
    return await fn(d, owner, readdirSync(wal).filter((n) => HISTORY.test(n)));
  } finally {
    await d.close();
  }
}

/** The placeholders among pg_wal's history files, and the highest real one's number (0: none). */
async function classify(d: SafeDir, names: string[]): Promise<{ placeholders: number[]; real: number }> {
  const placeholders: number[] = [];
  let real = 0;
  for (const name of names) {
    const text = (await d.read(name, 0, 200))?.text;
    if (text === undefined) continue;
    const n = parseInt(HISTORY.exec(name)![1]!, 16);
    if (isPlaceholder(text)) placeholders.push(n);
    else real = Math.max(real, n);
  }
  return { placeholders, real };
}

/** Timeline numbers with a history file in pg_wal (placeholders included). */
export function historyNumbers(dataDir: string, osUser: string): Promise<Set<number>> {
  return inWal(dataDir, osUser, async (_d, _o, names) => new Set(names.map((n) => parseInt(HISTORY.exec(n)![1]!, 16))));
}

/** Placeholder history files for `numbers` (each durable before this returns). */
export function placePlaceholders(dataDir: string, osUser: string, numbers: number[], term: number): Promise<void> {
  return inWal(dataDir, osUser, async (d, owner) => {
    for (const n of numbers) await d.writeAtomic(historyFileName(n), placeholderText(n, term), { mode: 0o600, owner });
  });
}

/**
 * When pgherd runs the archive_command: each placeholder below the highest real history file that
 * has no archive status yet is marked ready, as PostgreSQL marks its own history files, so that a
 * restore's walk over the archive passes its number too (PostgreSQL's findNewestTimeLine stops at
 * the first number the archive lacks, and would recover the old timeline only). Not only this
 * promotion's: a retried promotion finds its placeholders in pg_wal already, and an agent may die
 * between pg_promote and the marking. One with a status is left alone: PostgreSQL marked it
 * (a copy received by streaming, under archive_mode = always) or it was archived already, and
 * pgBackRest's archive-push replaces a history file the repository holds. Never one above every
 * real history file (an interrupted promotion's: it must not reach the archive). The numbers marked.
 */
export function markPlaceholdersReady(dataDir: string, osUser: string): Promise<number[]> {
  return inWal(dataDir, osUser, async (d, owner, names) => {
    const { placeholders, real } = await classify(d, names);
    const below = placeholders.filter((n) => n < real).sort((a, b) => a - b);
    if (below.length === 0) return [];
    const status = await SafeDir.open(join(d.path, "archive_status"), { osUser: owner });
    try {
      const marked: number[] = [];
      for (const n of below) {
        const name = historyFileName(n);
        if ((await status.has(`${name}.ready`)) || (await status.has(`${name}.done`))) continue;
        await status.writeAtomic(`${name}.ready`, "", { mode: 0o600, owner });
        marked.push(n);
      }
      return marked;
    } finally {
      await status.close();
    }
  });
}

/**
 * Removes the placeholder history files above every real one and above `timeline()` (the server's
 * own, from pg_control; read only when a placeholder is above every real one): those a walk would end on. The numbers removed; real files are never touched.
 */
export function removeDanglingPlaceholders(dataDir: string, osUser: string, timeline: () => Promise<number>): Promise<number[]> {
  return inWal(dataDir, osUser, async (d, _o, names) => {
    const { placeholders, real: top } = await classify(d, names);
    if (!placeholders.some((n) => n > top)) return []; // the usual case: no pg_controldata
    const real = Math.max(top, await timeline());
    const removed = placeholders.filter((n) => n > real).sort((a, b) => a - b);
    for (const n of removed) await d.remove(historyFileName(n));
    return removed;
  });
}

/**
 * The timelines above `base` whose real history file in pg_wal descends from `base`, highest first:
 * those a stopped server may hold WAL of beyond what its pg_control names (a standby that followed a
 * promotion names the old timeline until its first restartpoint on the new one; a former primary,
 * until the first checkpoint after its promotion). Placeholders are not histories.
 */
export function timelinesAbove(dataDir: string, osUser: string, base: number): Promise<number[]> {
  return inWal(dataDir, osUser, async (d, _o, names) => {
    const found: number[] = [];
    for (const name of names) {
      const n = parseInt(HISTORY.exec(name)![1]!, 16);
      if (n <= base) continue;
      const text = (await d.read(name, 0, 4 << 20))?.text; // whole: the newest parents are on the last lines
      if (text !== undefined && !isPlaceholder(text) && historyEnds(text)?.has(base) === true) found.push(n);
    }
    return found.sort((a, b) => b - a);
  });
}

/**
 * The highest timeline with a real history file in pg_wal (0: none, timeline 1). A stopped former
 * primary's own timeline: its promotion wrote that file at once, while pg_control names the new
 * timeline only from the first checkpoint after it.
 */
export function highestRealHistory(dataDir: string, osUser: string): Promise<number> {
  return inWal(dataDir, osUser, async (d, _o, names) => (await classify(d, names)).real);
}
