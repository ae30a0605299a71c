import { afterAll, beforeEach, describe, expect, test } from "bun:test";
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { z } from "zod";
import {
  readJson, readJsonSync, StoreError, writeFileDurable, writeFileDurableSync, writeJsonDurableSync,
} from "../../src/store/durable.ts";

const root = mkdtempSync(join(tmpdir(), "pgherd-store-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));
let dir = "";
let n = 0;
beforeEach(() => {
  dir = join(root, String(n++));
  mkdirSync(dir);
});

const mode = (p: string) => statSync(p).mode & 0o777;

/** Runs `f` under a restrictive umask: proves the mode comes from fchmod, not from open(). */
function withUmask<T>(mask: number, f: () => T): T {
  const old = process.umask(mask);
  try {
    return f();
  } finally {
    process.umask(old);
  }
}

describe.each([
  ["sync", (p: string, d: string | Uint8Array, m?: number, o?: { exclusive?: boolean }) => writeFileDurableSync(p, d, m, o)],
  ["async", writeFileDurable],
] as const)("writeFileDurable (%s)", (_name, write) => {
  test("writes the content with mode 0600 and leaves no temp file", async () => {
    const p = join(dir, "state.json");
    await write(p, '{"term":1}');
    expect(readFileSync(p, "utf8")).toBe('{"term":1}');
    expect(mode(p)).toBe(0o600);
    expect(readdirSync(dir)).toEqual(["state.json"]);
  });

  test("replaces an existing file and applies the requested mode despite the umask", async () => {
    const p = join(dir, "f");
    writeFileSync(p, "old");
    chmodSync(p, 0o644);
    const bytes = new Uint8Array([0, 1, 2, 255]);
    await withUmask(0o077, () => write(p, bytes, 0o640));
    expect(new Uint8Array(readFileSync(p))).toEqual(bytes);
    expect(mode(p)).toBe(0o640);
    expect(readdirSync(dir)).toEqual(["f"]);
  });

  test("exclusive refuses to replace, keeps the original, cleans up", async () => {
    const p = join(dir, "node-id");
    writeFileSync(p, "original");
    let code: string | undefined;
    try {
      await write(p, "new", 0o600, { exclusive: true });
    } catch (e) {
      code = (e as NodeJS.ErrnoException).code;
    }
    expect(code).toBe("EEXIST");
    expect(readFileSync(p, "utf8")).toBe("original");
    expect(readdirSync(dir)).toEqual(["node-id"]);
    await write(join(dir, "fresh"), "x", 0o600, { exclusive: true });
    expect(readFileSync(join(dir, "fresh"), "utf8")).toBe("x");
  });

  test("a failed write leaves no temp file behind", async () => {
    const target = join(dir, "sub"); // rename over a non-empty directory fails
    mkdirSync(join(target, "x"), { recursive: true });
    let failed = false;
    try {
      await write(target, "data");
    } catch {
      failed = true;
    }
    expect(failed).toBe(true);
    expect(readdirSync(dir)).toEqual(["sub"]);
  });
});

describe("readJson", () => {
  const schema = z.strictObject({ term: z.int().min(0), voted_for: z.string().nullable() });

  test("missing file → undefined; a written value round-trips", async () => {
    const p = join(dir, "election.json");
    expect(readJsonSync(p, schema)).toBeUndefined();
    expect(await readJson(p, schema)).toBeUndefined();
    writeJsonDurableSync(p, { term: 7, voted_for: "a1b2" });
    expect(readJsonSync(p, schema)).toEqual({ term: 7, voted_for: "a1b2" });
    expect(await readJson(p, schema)).toEqual({ term: 7, voted_for: "a1b2" });
  });

  test.each([
    ["truncated JSON", '{"term": 3, "voted_', "not valid JSON"],
    ["an empty file", "", "not valid JSON"],
    ["a wrong field", '{"term": -1, "voted_for": null}', "term:"],
    ["a missing field", '{"term": 1}', "voted_for:"],
  ])("%s is an error naming the file, never a reset", async (_what, content, detail) => {
    const p = join(dir, "election.json");
    writeFileSync(p, content);
    for (const read of [() => readJsonSync(p, schema), () => readJson(p, schema)]) {
      let err: unknown;
      try {
        await read();
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(StoreError);
      expect((err as Error).message).toStartWith(`${p}: corrupt state file: `);
      expect((err as Error).message).toContain(detail);
    }
    expect(readFileSync(p, "utf8")).toBe(content);
  });

  test("an unreadable path is an error naming it", () => {
    expect(() => readJsonSync(dir, schema)).toThrow(`${dir}: cannot read state file`);
  });
});
