// File helpers for everything PostgreSQL reads: atomic replace (tmp + fsync + rename + dir fsync)
// so a crash never leaves a half-written config, and explicit owner/mode because the agent may
// run as root while the server runs as os_user.
//
// As root, every path here lies in a directory the OS user can write (the data directory, the
// socket directory, the server log's directory): the OS user can put a link where we expect a
// file. So, as root, nothing here follows a link the OS user could have made: a directory is
// reached component by component with O_NOFOLLOW (a link is followed only inside a directory
// that only root can write), and every file operation happens relative to that open directory
// (/proc/self/fd/N/name) with O_NOFOLLOW, owner and mode set through the open descriptor. A file
// the OS user could not read itself is never read into a place it can read.
import { randomBytes } from "node:crypto";
import { closeSync, constants as C, fchmodSync, fchownSync, fstatSync, fsync, lstatSync, mkdirSync, openSync, readdirSync, readSync, type Stats } from "node:fs";
import { lchown, lstat, open, readdir, rename, rmdir, unlink, type FileHandle } from "node:fs/promises";
import { basename, dirname } from "node:path";
import { promisify } from "node:util";
import { errno, named, walkNoFollow } from "./safedir-walk.ts";
import { isRoot } from "./users.ts";

export interface Owner { readonly uid: number; readonly gid: number }

type Stat = Stats;
const fsyncAsync = promisify(fsync);

/** May `u` read a file with this stat (owner, group, other bits; supplementary groups are not counted)? */
function mayRead(st: Stat, u: Owner): boolean {
  if (st.uid === u.uid) return (st.mode & 0o400) !== 0;
  if (st.gid === u.gid) return (st.mode & 0o040) !== 0;
  return (st.mode & 0o004) !== 0;
}

/**
 * An open directory, reached without following a link its writer could have placed (as root). All
 * operations take a plain file name inside it and never follow a link at that name.
 */
export class SafeDir {
  /** The open directory; -1 once closed. */
  private fd: number;

  private constructor(readonly path: string, fd: number, private readonly osUser?: Owner) {
    this.fd = fd;
  }

  /**
   * Open `path` (create: missing components are made, root-owned 0755). `osUser`: the account
   * whose files these are: as root, files it could not read are refused. Synchronous calls (as
   * read() is): the monitoring round opens a handful of directories every round.
   */
  static async open(path: string, o: { osUser?: Owner; create?: boolean } = {}): Promise<SafeDir> {
    if (!isRoot()) {
      try {
        if (o.create) mkdirSync(path, { recursive: true, mode: 0o755 });
        return new SafeDir(path, openSync(path, C.O_RDONLY | C.O_DIRECTORY), o.osUser);
      } catch (e) {
        return named(path)(e);
      }
    }
    return new SafeDir(path, walkNoFollow(path, o.create === true), o.osUser);
  }

  /** Kernel path of `name` inside this directory (no lookup of the directory's own path). */
  at(name: string): string {
    if (!name || name.includes("/") || name === "." || name === "..") throw new Error(`invalid file name ${JSON.stringify(name)}`);
    return isRoot() ? `/proc/self/fd/${this.fd}/${name}` : `${this.path}/${name}`;
  }

  /** Path for messages. */
  show(name: string): string {
    return `${this.path.replace(/\/+$/, "")}/${name}`;
  }

  /** Open an existing file without following a link; null when absent. Refuses non-regular files and, as root, files the OS user could not read. */
  async openFile(name: string, flags = C.O_RDONLY): Promise<{ fh: FileHandle; st: Stat } | null> {
    let fh: FileHandle;
    try {
      fh = await open(this.at(name), flags | C.O_NOFOLLOW | C.O_NONBLOCK);
    } catch (e) {
      return this.openFailed(name, e);
    }
    try {
      return { fh, st: this.usable(name, await fh.stat()) };
    } catch (e) {
      await fh.close().catch(() => {});
      throw e;
    }
  }

  private openFailed(name: string, e: unknown): null {
    if (errno(e) === "ENOENT") return null;
    if (errno(e) === "ELOOP") throw new Error(`${this.show(name)} is a symbolic link: refusing to follow it`);
    return named(this.show(name))(e);
  }

  /** `st` of the opened `name` if it may be used: a regular file and, as root, one the OS user could read. */
  private usable(name: string, st: Stat): Stat {
    if (!st.isFile()) throw new Error(`${this.show(name)} is not a regular file`);
    if (isRoot() && this.osUser && !mayRead(st, this.osUser)) {
      throw new Error(`${this.show(name)} (owner uid ${st.uid}, mode ${(st.mode & 0o777).toString(8)}) is not readable by uid ${this.osUser.uid}: refusing to use it`);
    }
    return st;
  }

  /**
   * Content of `name` from byte `offset`, null when absent (refused as in openFile). Synchronous
   * calls, like the round's other small reads in the data directory: each of Bun's async file calls
   * costs a trip through its thread pool (two thread wake-ups and an event-loop turn), and the
   * monitoring round reads about twenty small files every postgres.loop_ms (docs/design.md, Footprint).
   */
  async read(name: string, offset = 0, max = Infinity): Promise<{ text: string; st: Stat } | null> {
    const r = await this.bytes(name, offset, max);
    return r && { text: r.bytes.toString("utf8"), st: r.st };
  }

  /** Like read(), the bytes as they are (a binary header). */
  async bytes(name: string, offset = 0, max = Infinity): Promise<{ bytes: Buffer; st: Stat } | null> {
    let fd: number;
    try {
      fd = openSync(this.at(name), C.O_RDONLY | C.O_NOFOLLOW | C.O_NONBLOCK);
    } catch (e) {
      return this.openFailed(name, e);
    }
    try {
      const st = this.usable(name, fstatSync(fd));
      const len = Math.max(0, Math.min(st.size - offset, max));
      const buf = Buffer.alloc(len);
      const bytesRead = len > 0 ? readSync(fd, buf, 0, len, offset) : 0;
      return { bytes: buf.subarray(0, bytesRead), st };
    } finally {
      closeSync(fd);
    }
  }

  async readText(name: string): Promise<string | null> {
    return (await this.read(name))?.text ?? null;
  }

  /** Atomically replace `name`; false when the content was already identical (owner and mode are still enforced). */
  async writeAtomic(name: string, data: string, o: { mode: number; owner?: Owner }): Promise<boolean> {
    const cur = await this.read(name);
    const ownerOk = !o.owner || !isRoot() || (cur?.st.uid === o.owner.uid && cur.st.gid === o.owner.gid);
    if (cur && cur.text === data && ownerOk && (cur.st.mode & 0o7777) === o.mode && cur.st.nlink === 1) return false;
    // Owner or mode differ too: a new file replaces it, the existing one (maybe not ours) is never chowned.
    const tmp = `.${name}.pgherd-${process.pid}-${randomBytes(4).toString("hex")}`;
    const fh = await open(this.at(tmp), C.O_WRONLY | C.O_CREAT | C.O_EXCL | C.O_NOFOLLOW, o.mode);
    try {
      await fh.writeFile(data, "utf8");
      if (o.owner && isRoot()) await fh.chown(o.owner.uid, o.owner.gid);
      await fh.chmod(o.mode); // umask-independent
      await fh.sync();
      await fh.close();
      await rename(this.at(tmp), this.at(name));
    } catch (e) {
      await fh.close().catch(() => {});
      await unlink(this.at(tmp)).catch(() => {});
      throw e;
    }
    await this.sync();
    return cur?.text !== data;
  }

  /** Remove `name` if present (a link itself, never its target); whether it existed. Durable. */
  async remove(name: string): Promise<boolean> {
    try {
      await unlink(this.at(name));
    } catch (e) {
      if (errno(e) === "ENOENT") return false;
      throw named(this.show(name))(e);
    }
    await this.sync();
    return true;
  }

  /** Synchronous, as read() is. */
  async has(name: string): Promise<boolean> {
    try {
      lstatSync(this.at(name));
      return true;
    } catch {
      return false;
    }
  }

  /** Call `fn` for every entry of subdirectory `name`, opened without following a link. */
  eachIn(name: string, fn: (sub: SafeDir, entry: string) => Promise<void>): Promise<void> {
    return this.within(name, async (sub, entries) => {
      for (const n of entries) await fn(sub, n);
    });
  }

  /** Call `fn` once with subdirectory `name`, opened without following a link, and its entries. */
  async within(name: string, fn: (sub: SafeDir, entries: string[]) => Promise<void>): Promise<void> {
    let fd: number;
    try {
      fd = openSync(this.at(name), C.O_RDONLY | C.O_DIRECTORY | C.O_NOFOLLOW);
    } catch (e) {
      return named(this.show(name))(e);
    }
    const sub = new SafeDir(this.show(name), fd, this.osUser);
    try {
      await fn(sub, await readdir(isRoot() ? `/proc/self/fd/${fd}` : sub.path));
    } finally {
      await sub.close();
    }
  }

  async rename(from: string, to: string): Promise<void> {
    await rename(this.at(from), this.at(to));
  }

  /** fsync of the directory: asynchronous, it may wait for the disk. */
  async sync(): Promise<void> {
    await fsyncAsync(this.fd);
  }

  async close(): Promise<void> {
    if (this.fd < 0) return;
    const fd = this.fd;
    this.fd = -1;
    try { closeSync(fd); } catch { /* nothing to do */ }
  }

  /**
   * Make directory `name` here (mode, owner) unless it exists. Refuses a link and an existing
   * directory every user may write to; as root, takes over (chown) only a directory it just made,
   * one the owner already has, or an empty root-owned one.
   */
  async ensureSubdir(name: string, mode: number, owner?: Owner): Promise<void> {
    // Synchronous, as read() is: the monitoring round makes sure of two directories every round.
    let created = true;
    try {
      mkdirSync(this.at(name), mode);
    } catch (e) {
      if (errno(e) !== "EEXIST") named(this.show(name))(e);
      created = false;
    }
    let fd: number;
    try {
      fd = openSync(this.at(name), C.O_RDONLY | C.O_DIRECTORY | C.O_NOFOLLOW);
    } catch (e) {
      if ((errno(e) === "ELOOP" || errno(e) === "ENOTDIR") && lstatSync(this.at(name)).isSymbolicLink()) {
        throw new Error(`${this.show(name)} is a symbolic link: refusing to follow it`);
      }
      return named(this.show(name))(e);
    }
    try {
      const st = fstatSync(fd);
      // A shared directory (others may write to it: /tmp, /run/postgresql) is never taken over or
      // narrowed: chmod 0700 of /tmp, say, breaks every other user of the host.
      const change = (owner && isRoot() && (st.uid !== owner.uid || st.gid !== owner.gid)) || (st.mode & 0o7777) !== mode;
      if (!created && change && (st.mode & 0o1022) !== 0) {
        throw new Error(`${this.show(name)} is a shared directory (mode ${(st.mode & 0o7777).toString(8).padStart(4, "0")}: others may write to it): refusing to change its owner or mode; use a directory of its own`);
      }
      if (owner && isRoot() && (st.uid !== owner.uid || st.gid !== owner.gid)) {
        const empty = st.uid === 0 && readdirSync(`/proc/self/fd/${fd}`).length === 0;
        if (!created && st.uid !== owner.uid && !empty) {
          throw new Error(`${this.show(name)} is owned by uid ${st.uid}, not ${owner.uid}, and not empty: refusing to take it over`);
        }
        fchownSync(fd, owner.uid, owner.gid);
      }
      if ((st.mode & 0o7777) !== mode) fchmodSync(fd, mode);
    } finally {
      closeSync(fd);
    }
  }
}

/** Run `fn` with the open parent directory of `path` and its base name. */
export async function inParent<T>(path: string, fn: (d: SafeDir, name: string) => Promise<T>, o: { osUser?: Owner; create?: boolean } = {}): Promise<T> {
  const d = await SafeDir.open(dirname(path), o);
  try {
    return await fn(d, basename(path));
  } finally {
    await d.close();
  }
}

/** Atomically replace `path`; returns false when the content was already identical (owner/mode still enforced). */
export function writeFileAtomic(path: string, data: string, opts: { mode: number; owner?: Owner }): Promise<boolean> {
  return inParent(path, (d, n) => d.writeAtomic(n, data, opts), { osUser: opts.owner });
}

/** Read `path` without following a link at any place the OS user could have put one; null when absent. */
export function readFileSafe(path: string, osUser?: Owner, offset = 0, max = Infinity): Promise<string | null> {
  return inParent(path, async (d, n) => (await d.read(n, offset, max))?.text ?? null, { osUser });
}

export async function fsyncDir(dir: string): Promise<void> {
  const d = await SafeDir.open(dir);
  try { await d.sync(); } finally { await d.close(); }
}

/** Remove a file if present; returns whether it existed. fsyncs the directory so the removal is durable. */
export function removeFile(path: string): Promise<boolean> {
  return inParent(path, (d, n) => d.remove(n));
}

/** mkdir -p, then owner and mode on the leaf (see SafeDir.ensureSubdir for what is refused). */
export function ensureDir(path: string, mode: number, owner?: Owner): Promise<void> {
  return inParent(path, (d, n) => d.ensureSubdir(n, mode, owner), { create: true });
}

/**
 * A file the OS user writes (the server log): created 0600 for `owner` if absent, else it must be
 * a regular file, not a link, and (as root) already owned by `owner`. Returns its size.
 */
export function prepareOwnedFile(path: string, mode: number, owner: Owner): Promise<number> {
  return inParent(path, async (d, n) => {
    const made = await open(d.at(n), C.O_WRONLY | C.O_CREAT | C.O_EXCL | C.O_NOFOLLOW, mode).catch((e) => (errno(e) === "EEXIST" ? null : Promise.reject(named(path)(e))));
    const f = made ? { fh: made, st: await made.stat() } : await d.openFile(n, C.O_WRONLY | C.O_APPEND);
    if (!f) throw new Error(`${path} vanished while being opened`);
    try {
      if (isRoot() && (f.st.uid !== owner.uid || f.st.gid !== owner.gid)) {
        if (!made && f.st.uid !== owner.uid) throw new Error(`${path} is owned by uid ${f.st.uid}, not ${owner.uid}: refusing to hand it over`);
        await f.fh.chown(owner.uid, owner.gid);
      }
      if ((f.st.mode & 0o7777) !== mode) await f.fh.chmod(mode);
      return f.st.size;
    } finally {
      await f.fh.close();
    }
  }, { osUser: owner });
}

/** chown every entry below (and including) `root` whose owner differs; links are never followed (fd-relative walk), a foreign file with more than one hard link is refused. */
export async function chownTree(root: string, owner: Owner): Promise<number> {
  let changed = 0;
  const visit = async (d: SafeDir, name: string): Promise<void> => {
    const st = await lstat(d.at(name));
    if (st.uid !== owner.uid || st.gid !== owner.gid) {
      // A second hard link to a file another user owns (a root file linked in where
      // fs.protected_hardlinks is off) is not handed over: the file is not only this tree's.
      if (!st.isDirectory() && st.nlink > 1 && st.uid !== owner.uid) throw new Error(`${d.show(name)} has ${st.nlink} hard links and belongs to uid ${st.uid}: refusing to hand it to uid ${owner.uid}`);
      await lchown(d.at(name), owner.uid, owner.gid);
      changed++;
    }
    if (st.isDirectory()) await d.eachIn(name, visit);
  };
  await inParent(root, visit);
  return changed;
}

export async function exists(path: string): Promise<boolean> {
  return lstat(path).then(() => true, () => false);
}

/** rm -rf that never follows a link (fd-relative walk); absent is fine. */
export async function removeTree(path: string): Promise<void> {
  const rmAt = async (d: SafeDir, name: string): Promise<void> => {
    const st = await lstat(d.at(name)).catch((e) => (errno(e) === "ENOENT" ? null : Promise.reject(e)));
    if (!st) return;
    if (st.isDirectory()) {
      await d.eachIn(name, rmAt);
      await rmdir(d.at(name));
    } else await unlink(d.at(name));
  };
  await inParent(path, rmAt).catch((e) => (errno(e) === "ENOENT" ? undefined : Promise.reject(e)));
}

/** How many entries treeBytes looks at between two calls of its `stop` (a few milliseconds of lstat). */
export const STOP_EVERY = 256;

/**
 * Bytes of the regular files under `path` (fd-relative walk, never through a link; a `path` that is
 * a link counts as absent), the entries `leaveOut` names left out (it sees each entry's name, the
 * names beside it and its depth, 0 at the top); null when `path` is absent. Files that vanish
 * meanwhile count 0. `stop` is called every STOP_EVERY entries and before the first: a walk of a large
 * directory takes seconds, and what `stop` throws ends it (the caller's task gives way to another).
 */
export async function treeBytes(path: string, leaveOut: (name: string, siblings: ReadonlySet<string>, depth: number) => boolean = () => false, stop: () => void = () => {}): Promise<number | null> {
  let total = 0;
  let seen = 0;
  stop();
  const walk = (d: SafeDir, name: string, depth: number): Promise<void> => d.within(name, async (sub, names) => {
    const siblings = new Set(names);
    for (const n of names) {
      if (++seen % STOP_EVERY === 0) stop();
      if (leaveOut(n, siblings, depth)) continue;
      const st = await lstat(sub.at(n)).catch((e) => (errno(e) === "ENOENT" ? null : Promise.reject(e)));
      if (st?.isDirectory()) await walk(sub, n, depth + 1).catch((e) => (errno(e) === "ENOENT" ? undefined : Promise.reject(e)));
      else if (st?.isFile()) total += st.size;
    }
  });
  return inParent(path, async (d, name) => {
    const st = await lstat(d.at(name)).catch((e) => (errno(e) === "ENOENT" ? null : Promise.reject(e)));
    if (!st?.isDirectory()) return null;
    await walk(d, name, 0);
    return total;
  }).catch((e) => (errno(e) === "ENOENT" ? null : Promise.reject(e)));
}
