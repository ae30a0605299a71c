import { afterAll, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
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
