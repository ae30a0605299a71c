import { afterAll, expect, test } from "bun:test";
import { chmodSync, chownSync, lchownSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { StoreError } from "../../src/store/durable.ts";
import { loadOrCreateNodeId } from "../../src/store/node-id.ts";

const root = mkdtempSync(join(tmpdir(), "pgherd-nodeid-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));
const mode = (p: string) => statSync(p).mode & 0o777;

test("creates the state dir 0700 and a 0600 id file, then keeps the id", () => {
  mkdirSync(join(root, "a"));
  const stateDir = join(root, "a", "state");
  // A umask that strips owner bits: the modes must come from explicit chmods.
  const old = process.umask(0o277);
  let id: string;
  try {
    id = loadOrCreateNodeId(stateDir);
  } finally {
    process.umask(old);
  }
  expect(id).toMatch(/^[0-9a-f]{16}$/);
  expect(mode(stateDir)).toBe(0o700);
  expect(mode(join(stateDir, "node-id"))).toBe(0o600);
  expect(readFileSync(join(stateDir, "node-id"), "utf8")).toBe(`${id}\n`);
  expect(loadOrCreateNodeId(stateDir)).toBe(id);
});

test("two state dirs get different ids", () => {
  expect(loadOrCreateNodeId(join(root, "b"))).not.toBe(loadOrCreateNodeId(join(root, "c")));
});

test("a corrupt id file is an error naming it and is left untouched", () => {
  const stateDir = join(root, "d");
  loadOrCreateNodeId(stateDir);
  const file = join(stateDir, "node-id");
  writeFileSync(file, "not-an-id\n");
  expect(() => loadOrCreateNodeId(stateDir)).toThrow(new StoreError(`${file}: corrupt node id: expected 16 lowercase hex characters`));
  expect(readFileSync(file, "utf8")).toBe("not-an-id\n");
});

test("a state dir path that is a file is a clear error", () => {
  const file = join(root, "plainfile");
  writeFileSync(file, "");
  expect(() => loadOrCreateNodeId(file)).toThrow(StoreError);
  expect(() => loadOrCreateNodeId(file)).toThrow(file);
});

test("an existing state dir that group or others may write to is refused, naming it and the fix; a read-only one for them is kept", () => {
  for (const m of [0o777, 0o770, 0o702, 0o1777]) {
    const dir = join(root, `shared-${m.toString(8)}`);
    mkdirSync(dir);
    chmodSync(dir, m);
    expect(() => loadOrCreateNodeId(dir)).toThrow(`${dir}: state directory has mode ${(m & 0o777).toString(8).padStart(4, "0")}: group and others must not write to it (chmod go-w ${dir})`);
  }
  const readable = join(root, "readable-755");
  mkdirSync(readable);
  chmodSync(readable, 0o755);
  expect(loadOrCreateNodeId(readable)).toMatch(/^[0-9a-f]{16}$/);
});

test.skipIf(process.getuid?.() !== 0)("as root too, an existing state dir another user owns is refused (a link its owner planted would be written through as root)", () => {
  const dir = join(root, "theirs");
  mkdirSync(dir, { mode: 0o700 });
  chownSync(dir, 65534, 65534);
  expect(() => loadOrCreateNodeId(dir)).toThrow(`${dir}: state directory belongs to uid 65534, not to this user (uid 0): chown it to the agent's user`);
});

test.skipIf(process.getuid?.() !== 0)("as root, a link in the state dir's place is refused when it lies in another user's directory (review: it led a root agent's files into /root); a link in a directory of root's is followed", () => {
  const theirs = join(root, "pg-home");
  mkdirSync(theirs, { mode: 0o755 });
  chownSync(theirs, 65534, 65534);
  const target = join(root, "roots-own");
  mkdirSync(target, { mode: 0o700 });
  const planted = join(theirs, "pgherd");
  symlinkSync(target, planted);
  const refused = `a root agent's state directory must lie where only root can change it: ${theirs} belongs to uid 65534`;
  expect(() => loadOrCreateNodeId(planted)).toThrow(refused);
  expect(() => loadOrCreateNodeId(`${planted}/`)).toThrow(refused); // a trailing slash: lstat would follow it
  expect(() => loadOrCreateNodeId(`${planted}/.`)).toThrow(refused); // "/.": the parent would be the link's target
  expect(readdirSync(target)).toEqual([]);
  // Not a link yet, but its owner could rename it and plant one later: refused too.
  const real = join(theirs, "real");
  mkdirSync(real, { mode: 0o700 });
  expect(() => loadOrCreateNodeId(real)).toThrow(refused);
  // Nor under a directory that does not exist yet (root would make it, and its owner could swap it later).
  expect(() => loadOrCreateNodeId(join(theirs, "sub", "pgherd"))).toThrow(refused);
  // In a sticky /tmp-like directory, a link of another user's (re-review: accepted, and its owner can repoint it later)
  const sticky = join(root, "sticky");
  mkdirSync(sticky);
  chmodSync(sticky, 0o1777);
  const theirLink = join(sticky, "pgherd");
  symlinkSync(target, theirLink);
  lchownSync(theirLink, 65534, 65534);
  expect(() => loadOrCreateNodeId(theirLink)).toThrow(`${theirLink}: state directory is a link that belongs to uid 65534`);
  // ... nor one of another user's on the way down (re-review: /tmp/x/state with /tmp/x theirs)
  const mid = join(sticky, "mid");
  symlinkSync(target, mid);
  lchownSync(mid, 65534, 65534);
  expect(() => loadOrCreateNodeId(join(mid, "state"))).toThrow(`${mid} is a link that belongs to uid 65534`);
  // A parent another user made before the agent's mkdir (/tmp/x by someone else): refused once seen.
  const made = join(sticky, "made-by-them");
  mkdirSync(made, { mode: 0o755 });
  chownSync(made, 65534, 65534);
  expect(() => loadOrCreateNodeId(join(made, "pgherd"))).toThrow("a root agent's state directory must lie where only root can change it");
  expect(readdirSync(target)).toEqual([]);
  const mine = join(root, "by-root");
  symlinkSync(target, mine);
  expect(loadOrCreateNodeId(mine)).toMatch(/^[0-9a-f]{16}$/);
});
