// File helpers for everything PostgreSQL reads: atomic replace (tmp + fsync + rename + dir fsync)
// so a crash never leaves a half-written config, and explicit owner/mode because we usually run
// as root while the server runs as os_user.
import { randomBytes } from "node:crypto";
import { chmod, chown, lchown, lstat, mkdir, open, readdir, readFile, rename, rm, stat, unlink } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { isRoot } from "./users.ts";

export interface Owner { readonly uid: number; readonly gid: number }

/** Atomically replace `path`; returns false when the content was already identical (owner/mode still enforced). */
export async function writeFileAtomic(path: string, data: string, opts: { mode: number; owner?: Owner }): Promise<boolean> {
  const current = await readFile(path, "utf8").catch(() => null);
  if (current === data) {
    await setOwnerMode(path, opts.mode, opts.owner);
    return false;
  }
  const tmp = join(dirname(path), `.${basename(path)}.pgherd-${process.pid}-${randomBytes(4).toString("hex")}`);
  const fh = await open(tmp, "wx", opts.mode);
  try {
    await fh.writeFile(data, "utf8");
    if (opts.owner && isRoot()) await fh.chown(opts.owner.uid, opts.owner.gid);
    await fh.chmod(opts.mode); // umask-independent
    await fh.sync();
  } catch (e) {
    await fh.close().catch(() => {});
    await unlink(tmp).catch(() => {});
    throw e;
  }
  await fh.close();
  try {
    await rename(tmp, path);
  } catch (e) {
    await unlink(tmp).catch(() => {});
    throw e;
  }
  await fsyncDir(dirname(path));
  return true;
}

export async function fsyncDir(dir: string): Promise<void> {
  const fh = await open(dir, "r");
  try { await fh.sync(); } finally { await fh.close(); }
}

/** Remove a file if present; returns whether it existed. fsyncs the directory so the removal is durable. */
export async function removeFile(path: string): Promise<boolean> {
  try {
    await unlink(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return false;
    throw e;
  }
  await fsyncDir(dirname(path));
  return true;
}

/** mkdir -p, then owner and mode on the leaf. */
export async function ensureDir(path: string, mode: number, owner?: Owner): Promise<void> {
  await mkdir(path, { recursive: true, mode });
  await setOwnerMode(path, mode, owner);
}

export async function setOwnerMode(path: string, mode: number, owner?: Owner): Promise<void> {
  if (owner && isRoot()) {
    const st = await stat(path);
    if (st.uid !== owner.uid || st.gid !== owner.gid) await chown(path, owner.uid, owner.gid);
  }
  await chmod(path, mode);
}

/** chown every entry below (and including) `root` whose owner differs; symlinks are not followed. */
export async function chownTree(root: string, owner: Owner): Promise<number> {
  let changed = 0;
  const visit = async (p: string): Promise<void> => {
    const st = await lstat(p);
    if (st.uid !== owner.uid || st.gid !== owner.gid) {
      await lchown(p, owner.uid, owner.gid);
      changed++;
    }
    if (st.isDirectory()) for (const n of await readdir(p)) await visit(join(p, n));
  };
  await visit(root);
  return changed;
}

export async function exists(path: string): Promise<boolean> {
  return lstat(path).then(() => true, () => false);
}

export async function removeTree(path: string): Promise<void> {
  await rm(path, { recursive: true, force: true });
}
