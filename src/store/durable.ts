// Crash-safe file replacement: write a temp file in the same directory, fsync it, rename it
// over the target, fsync the directory. After a crash the file is either the old or the new
// content, never a torn mix, and a vote that was answered is on disk. BunFile has no sync(),
// hence node:fs. The sync variant exists because the election persists before it replies.
import { randomBytes } from "node:crypto";
import {
  closeSync, fchmodSync, fsyncSync, linkSync, openSync, readFileSync, renameSync, unlinkSync, writeFileSync,
} from "node:fs";
import { link, open, readFile, rename, unlink } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import type { z } from "zod";

export class StoreError extends Error {
  override readonly name = "StoreError";
}

export type DurableWriteOptions = {
  /** Fail with EEXIST instead of replacing an existing file (atomically: link, not check-then-write). */
  exclusive?: boolean;
};

function tmpPathFor(path: string): string {
  return join(dirname(path), `.${basename(path)}.tmp-${process.pid}-${randomBytes(4).toString("hex")}`);
}

function ignore(f: () => unknown): void {
  try {
    f();
  } catch {
    // best-effort cleanup of a temp file; the original error is what matters
  }
}

function fsyncDirSync(dir: string): void {
  const fd = openSync(dir, "r");
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

export function writeFileDurableSync(
  path: string, data: string | Uint8Array, mode = 0o600, opts: DurableWriteOptions = {},
): void {
  const tmp = tmpPathFor(path);
  const fd = openSync(tmp, "wx", mode);
  try {
    try {
      fchmodSync(fd, mode); // open()'s mode is masked by the umask
      writeFileSync(fd, data);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    if (opts.exclusive) {
      linkSync(tmp, path);
      unlinkSync(tmp);
    } else {
      renameSync(tmp, path);
    }
  } catch (e) {
    ignore(() => unlinkSync(tmp));
    throw e;
  }
  fsyncDirSync(dirname(path));
}

export async function writeFileDurable(
  path: string, data: string | Uint8Array, mode = 0o600, opts: DurableWriteOptions = {},
): Promise<void> {
  const tmp = tmpPathFor(path);
  const fh = await open(tmp, "wx", mode);
  try {
    try {
      await fh.chmod(mode);
      await fh.writeFile(data);
      await fh.sync();
    } finally {
      await fh.close();
    }
    if (opts.exclusive) {
      await link(tmp, path);
      await unlink(tmp);
    } else {
      await rename(tmp, path);
    }
  } catch (e) {
    await unlink(tmp).catch(() => undefined);
    throw e;
  }
  const dir = await open(dirname(path), "r");
  try {
    await dir.sync();
  } finally {
    await dir.close();
  }
}

/** Removes `path` (gone already is fine) and fsyncs its directory: after a crash it is gone or still there, as before the call. */
export function removeFileDurableSync(path: string): void {
  try {
    unlinkSync(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return;
    throw e;
  }
  fsyncDirSync(dirname(path));
}

export function writeJsonDurableSync(path: string, value: unknown, mode = 0o600): void {
  writeFileDurableSync(path, `${JSON.stringify(value, null, 2)}\n`, mode);
}

export async function writeJsonDurable(path: string, value: unknown, mode = 0o600): Promise<void> {
  await writeFileDurable(path, `${JSON.stringify(value, null, 2)}\n`, mode);
}

function isMissing(e: unknown): boolean {
  return (e as NodeJS.ErrnoException).code === "ENOENT";
}

/** Missing → undefined. Anything unreadable, unparsable or off-schema → StoreError naming the file:
 * persisted election state is never silently reset. */
function decode<S extends z.ZodType>(path: string, text: string, schema: S): z.output<S> {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new StoreError(`${path}: corrupt state file: not valid JSON (${(e as Error).message})`);
  }
  const r = schema.safeParse(raw);
  if (!r.success) {
    const why = r.error.issues.map((i) => `${i.path.join(".") || "(top level)"}: ${i.message}`).join("; ");
    throw new StoreError(`${path}: corrupt state file: ${why}`);
  }
  return r.data;
}

function readFailed(path: string, e: unknown): StoreError {
  return new StoreError(`${path}: cannot read state file: ${(e as Error).message}`);
}

export function readJsonSync<S extends z.ZodType>(path: string, schema: S): z.output<S> | undefined {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (e) {
    if (isMissing(e)) return undefined;
    throw readFailed(path, e);
  }
  return decode(path, text, schema);
}

export async function readJson<S extends z.ZodType>(path: string, schema: S): Promise<z.output<S> | undefined> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (e) {
    if (isMissing(e)) return undefined;
    throw readFailed(path, e);
  }
  return decode(path, text, schema);
}
