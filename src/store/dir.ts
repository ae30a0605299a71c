// The state directory holds the node id and election state: private to the agent's user.
import { chmodSync, lstatSync, mkdirSync, statSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { untrustedDir } from "../hooks/trusted-path.ts";
import { StoreError } from "./durable.ts";

/**
 * Creates `dir` (and parents) if missing; a directory this call creates gets exactly `mode`. One
 * that exists must not be writable by group or others, nor belong to another user (root
 * included): the files written there (the lease file, the watchdog's address record, their
 * temporary files) are opened by fixed names, and another user who can write there could put a
 * link in their place.
 */
export function ensurePrivateDir(dir: string, mode = 0o700, o: { checkPlace?: boolean } = {}): void {
  // Where it lies: checked when the agent starts (node-id.ts), not at each later write; before
  // mkdir, and after it (a parent another user made meanwhile, under /tmp say: re-review).
  if (o.checkPlace) linkProblem(dir);
  let created: string | undefined;
  try {
    created = mkdirSync(dir, { recursive: true, mode });
  } catch (e) {
    throw new StoreError(`${dir}: cannot create state directory: ${(e as Error).message}`);
  }
  if (o.checkPlace && created !== undefined) linkProblem(dir);
  if (created !== undefined) chmodSync(dir, mode); // mkdir's mode is masked by the umask
  const st = statSync(dir);
  if (!st.isDirectory()) throw new StoreError(`${dir}: state directory path is not a directory`);
  if (st.mode & 0o022) throw new StoreError(`${dir}: state directory has mode ${(st.mode & 0o777).toString(8).padStart(4, "0")}: group and others must not write to it (chmod go-w ${dir})`);
  // Root too: a root agent writing through a link the directory's owner planted would overwrite any file.
  const uid = process.getuid?.() ?? 0;
  if (st.uid !== uid) throw new StoreError(`${dir}: state directory belongs to uid ${st.uid}, not to this user (uid ${uid}): chown it to the agent's user`);
}

/**
 * Where the state directory lies must be a place no other user can change: its files are written
 * by path, so whoever may rename entries on the way could put a link in its place, now or later
 * (review: a root agent whose state_dir lay under the PostgreSQL user's directory wrote its files
 * wherever a link that user planted pointed, /root say, whose owner and mode pass the checks
 * above). For a root agent every directory from / down to it (and where links on the way lead)
 * must belong to root and be writable by no one else (sticky ones, like /tmp, aside:
 * hooks/trusted-path.ts, as for the programs it runs); the path is resolved first, so "/." or a
 * trailing slash changes nothing. Any agent follows a link in its place only in a directory owned
 * by root or itself that neither group nor others may write.
 */
function linkProblem(dir: string): void {
  const d = resolve(dir);
  const uid = process.getuid?.() ?? 0;
  let link: { uid: number } | null = null;
  try {
    const l = lstatSync(d);
    if (l.isSymbolicLink()) link = l;
  } catch {
    // not there yet
  }
  const isLink = link !== null;
  // A link of another user's in its place (in a sticky /tmp, say): its owner may point it elsewhere at any time (re-review).
  if (link && link.uid !== 0 && link.uid !== uid) {
    throw new StoreError(`${d}: state directory is a link that belongs to uid ${link.uid}: another user could point it anywhere; set state_dir to the real directory`);
  }
  if (uid === 0) {
    // Its parents (the directory itself has its own checks below), and where a link in its place leads.
    const why = untrustedDir(dirname(d), 0) ?? (isLink ? untrustedDir(d, 0) : null);
    if (why) throw new StoreError(`${d}: a root agent's state directory must lie where only root can change it: ${why}; use a directory whose parents only root may change (the default /var/lib/pgherd)`);
    return;
  }
  const parent = dirname(d);
  let p;
  try {
    p = statSync(parent);
  } catch {
    return; // not there yet: mkdir makes real directories, this user's own
  }
  const foreign = p.uid !== 0 && p.uid !== uid;
  if (isLink && (foreign || p.mode & 0o022)) {
    throw new StoreError(`${d}: state directory is a link in ${parent}, which ${foreign ? `belongs to uid ${p.uid}` : "group or others may write"}: another user could point it anywhere; set state_dir to the real directory`);
  }
}
