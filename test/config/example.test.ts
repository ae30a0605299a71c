// pgherd.toml.example is the reference for every key: it must list each one with its default,
// so docs cannot drift from the schema.
import { expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { parse } from "smol-toml";
import { ConfigError, parseConfig } from "../../src/config/load.ts";
import { electionMargins } from "../../src/config/margins.ts";
import { configKeys } from "../../src/config/schema.ts";

const text = readFileSync(join(import.meta.dir, "..", "..", "pgherd.toml.example"), "utf8");
const raw = parse(text) as Record<string, unknown>;
const usable = text.replace(/^secret = ".*"$/m, `secret = "${"k".repeat(48)}"`);

function lookup(obj: Record<string, unknown>, dotted: string): unknown {
  return dotted.split(".").reduce<unknown>((o, k) => (o as Record<string, unknown> | undefined)?.[k], obj);
}

test("configKeys lists nested keys", () => {
  const keys = configKeys();
  expect(keys).toContain("cluster");
  expect(keys).toContain("election.max_drift");
  expect(keys).toContain("mesh.listen");
  expect(keys.length).toBeGreaterThan(25);
});

test("every schema key is set in the example, and nothing else", () => {
  const missing = configKeys().filter((k) => lookup(raw, k) === undefined);
  expect(missing).toEqual([]);
  // Unknown keys would make the parse below fail, but name them here for a clearer failure.
  expect(() => parseConfig(usable, "pgherd.toml.example")).not.toThrow();
});

test("every key in the example shows its default value", () => {
  const defaults = parseConfig(`cluster = "x"\nsecret = "${"k".repeat(48)}"\n`, "defaults");
  const perSite = new Set(["cluster", "secret", "node_name"]); // required or host-specific
  const differing = configKeys()
    .filter((k) => !perSite.has(k))
    .filter((k) => JSON.stringify(lookup(raw, k)) !== JSON.stringify(lookup(defaults as never, k)));
  expect(differing).toEqual([]);
});

test("the example's secret is a placeholder that is refused", () => {
  expect(() => parseConfig(text, "pgherd.toml.example")).toThrow(
    new ConfigError([
      "pgherd.toml.example: secret is still the placeholder from pgherd.toml.example: generate one with `pgherd init`",
    ]),
  );
});

test("the minimum timeout quoted in the example matches the arithmetic", () => {
  const defaults = parseConfig(usable, "pgherd.toml.example");
  const quoted = /timeout_ms must be >= (\d+)/.exec(text)?.[1];
  expect(Number(quoted)).toBe(electionMargins(defaults.election).minTimeoutMs);
});
