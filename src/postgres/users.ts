// Resolve the OS account PostgreSQL runs as. getent goes through NSS (LDAP/SSSD accounts
// work); /etc/passwd is the fallback on minimal systems without getent.
import { execFile } from "node:child_process";
import { readFile } from "node:fs/promises";
import { z } from "zod";
import { withoutAmbientCaps } from "../caps.ts";

export interface OsUser {
  readonly name: string;
  readonly uid: number;
  readonly gid: number;
  readonly home: string;
}

// Validated because Bun.spawn/chown with a NaN uid silently means root (stack-pitfalls).
const Id = z.number().int().min(0).max(2 ** 32 - 2);
const Entry = z.object({ name: z.string().min(1), uid: Id, gid: Id, home: z.string() });

const cache = new Map<string, OsUser>();

export const isRoot = (): boolean => process.getuid?.() === 0;

/** Look up `name`; throws an Error naming the user when it does not exist. */
export async function lookupOsUser(name: string): Promise<OsUser> {
  const hit = cache.get(name);
  if (hit) return hit;
  if (!/^[A-Za-z0-9_][A-Za-z0-9_.-]*\$?$/.test(name)) throw new Error(`invalid OS user name ${JSON.stringify(name)}`);
  const line = (await getent(name)) ?? (await fromPasswdFile(name));
  if (!line) throw new Error(`OS user "${name}" does not exist (looked up with getent and /etc/passwd)`);
  const f = line.split(":");
  const parsed = Entry.safeParse({ name: f[0], uid: Number(f[2]), gid: Number(f[3]), home: f[5] ?? "/" });
  if (!parsed.success) throw new Error(`OS user "${name}": unparsable passwd entry`);
  const user = Object.freeze(parsed.data);
  cache.set(name, user);
  return user;
}

/** The uid of OS user `name` (lookupOsUser, cached): whose processes and files a root agent may touch for the server. */
export async function osUidOf(name: string): Promise<number> {
  return (await lookupOsUser(name)).uid;
}

/** Throws (no fallback to /etc/passwd) when it may not start without the agent's ambient capabilities (caps.ts). */
function getent(name: string): Promise<string | null> {
  const [file, ...args] = withoutAmbientCaps(["getent", "passwd", name]);
  return new Promise((resolve) => {
    execFile(file, args, { timeout: 5000 }, (err, stdout) => {
      resolve(err ? null : (String(stdout).split("\n")[0] ?? null));
    });
  });
}

async function fromPasswdFile(name: string): Promise<string | null> {
  const text = await readFile("/etc/passwd", "utf8").catch(() => "");
  return text.split("\n").find((l) => l.startsWith(`${name}:`)) ?? null;
}
