// The state directory holds the node id and election state: private to the agent's user.
import { chmodSync, lstatSync, mkdirSync, statSync } from "node:fs";
import { dirname } from "node:path";
import { StoreError } from "./durable.ts";

/**
 * Creates `dir` (and parents) if missing; a directory this call creates gets exactly `mode`. One
 * that exists must not be writable by group or others, nor belong to another user (root
 * included): the files written there (the lease file, the watchdog's address record, their
 * temporary files) are opened by fixed names, and another user who can write there could put a
 * link in their place.
 */
export function ensurePrivateDir(dir: string, mode = 0o700): void {
  linkProblem(dir);
  let created: string | undefined;
  try {
    created = mkdirSync(dir, { recursive: true, mode });
  } catch (e) {
    throw new StoreError(`${dir}: cannot create state directory: ${(e as Error).message}`);
  }
  if (created !== undefined) chmodSync(dir, mode); // mkdir's mode is masked by the umask
  const st = statSync(dir);
  if (!st.isDirectory()) throw new StoreError(`${dir}: state directory path is not a directory`);
  if (st.mode & 0o022) throw new StoreError(`${dir}: state directory has mode ${(st.mode & 0o777).toString(8).padStart(4, "0")}: group and others must not write to it (chmod go-w ${dir})`);
  // Root too: a root agent writing through a link the directory's owner planted would overwrite any file.
  const uid = process.getuid?.() ?? 0;
  if (st.uid !== uid) throw new StoreError(`${dir}: state directory belongs to uid ${st.uid}, not to this user (uid ${uid}): chown it to the agent's user`);
}

/**
 * A link in the state directory's place is followed only when it lies in a directory no other user
 * could have put it in: owned by root or this user, writable by neither group nor others (review: a
 * root agent whose state_dir lay under the PostgreSQL user's directory wrote its files wherever a
 * link that user planted pointed, /root say, whose owner and mode pass the checks below).
 */
function linkProblem(dir: string): void {
  let l;
  try {
    l = lstatSync(dir);
  } catch {
    return; // not there yet: mkdir makes a real directory
  }
  if (!l.isSymbolicLink()) return;
  const parent = dirname(dir);
  const p = statSync(parent);
  const uid = process.getuid?.() ?? 0;
  if ((p.uid !== 0 && p.uid !== uid) || p.mode & 0o022) {
    throw new StoreError(`${dir}: state directory is a link in ${parent}, which ${p.mode & 0o022 ? "group or others may write" : `belongs to uid ${p.uid}`}: another user could point it anywhere; set state_dir to the real directory`);
  }
}
