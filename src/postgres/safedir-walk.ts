// SafeDir's walk from / to a directory as root (src/postgres/fsutil.ts): component by component with
// O_NOFOLLOW; a link is followed only inside a directory that only root can write. Plus the error
// helpers the file helpers share.
import { closeSync, constants as C, fstatSync, lstatSync, mkdirSync, openSync, readlinkSync, type Stats } from "node:fs";
import { normalize, resolve } from "node:path";

export const errno = (e: unknown) => (e as NodeJS.ErrnoException).code;
const MAX_LINKS = 40;

/** A link here could have been placed by someone other than root (owner not root, or group/other may write). */
const othersMayWrite = (st: { uid: number; mode: number }) => st.uid !== 0 || (st.mode & 0o022) !== 0;

/**
 * The open descriptor of directory `path`, reached from / without following a link that a user
 * other than root could have placed (create: missing components are made, root-owned 0755).
 */
export function walkNoFollow(path: string, create: boolean): number {
  let todo = resolve(path).split("/").filter(Boolean);
  let real = "";
  let fd = openSync("/", C.O_RDONLY | C.O_DIRECTORY);
  let links = 0;
  const openDir = (at: string): number | null => {
    try {
      return openSync(at, C.O_RDONLY | C.O_DIRECTORY | C.O_NOFOLLOW);
    } catch (e) {
      if (errno(e) === "ENOENT" && create) {
        try {
          mkdirSync(at, 0o755);
        } catch (e2) {
          if (errno(e2) !== "EEXIST") throw e2;
        }
        return openSync(at, C.O_RDONLY | C.O_DIRECTORY | C.O_NOFOLLOW);
      }
      if (errno(e) !== "ELOOP" && errno(e) !== "ENOTDIR") throw e;
      return null;
    }
  };
  try {
    while (todo.length > 0) {
      const c = todo.shift()!;
      const at = `/proc/self/fd/${fd}/${c}`;
      let next: number | null;
      try {
        next = openDir(at);
      } catch (e) {
        return named(`${real}/${c}`)(e);
      }
      if (next !== null) {
        closeSync(fd);
        fd = next;
        real += `/${c}`;
        continue;
      }
      let lst: Stats;
      try {
        lst = lstatSync(at);
      } catch (e) {
        return named(`${real}/${c}`)(e);
      }
      if (!lst.isSymbolicLink()) throw new Error(`${real}/${c} is not a directory`);
      if (othersMayWrite(fstatSync(fd))) {
        throw new Error(`${real}/${c} is a symbolic link in ${real || "/"}, which a user other than root can write: refusing to follow it as root (configure the real path)`);
      }
      if (++links > MAX_LINKS) throw new Error(`${path}: too many symbolic links`);
      const target = readlinkSync(at);
      todo = [...normalize(target.startsWith("/") ? target : `${real}/${target}`).split("/").filter(Boolean), ...todo];
      closeSync(fd);
      fd = openSync("/", C.O_RDONLY | C.O_DIRECTORY);
      real = "";
    }
  } catch (e) {
    try { closeSync(fd); } catch { /* already closed */ }
    throw e;
  }
  return fd;
}

/** Adds the path to a system error's message (Node's messages name /proc/self/fd/N otherwise). */
export function named(path: string) {
  return (e: unknown): never => {
    const err = e as NodeJS.ErrnoException;
    if (err?.code && !String(err.message).includes(path)) err.message = `${path}: ${err.message}`;
    throw err;
  };
}
