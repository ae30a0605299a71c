// Shared by the durability e2e tests, scripts/chaos.ts and bench/durability.ts: the parts of
// `cluster ls --json` that say what the cluster guarantees (the shared schema in cluster.ts
// strips them), a seeded random source, and a one-line table printer.
import { rng } from "../core/sim.ts";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { z } from "zod";
import { BINARY } from "../../scripts/build.ts";
import type { ClusterNode } from "./cluster.ts";

const lsSchema = z.object({
  view: z.object({
    leader: z.string().nullable(),
    leaderName: z.string().nullable(),
    term: z.number(),
    durability: z.string().optional(),
    note: z.string().optional(),
    members: z.array(z.object({ name: z.string(), role: z.string(), state: z.string(), note: z.string() })),
  }),
});
export type DurabilityView = z.infer<typeof lsSchema>["view"];

/** `cluster ls --json` on a node's host, keeping `durability` and `note` (zod-checked: another process's output). */
export async function durabilityView(node: ClusterNode, timeoutMs = 10_000): Promise<DurabilityView> {
  const r = await node.host.exec([BINARY, "cluster", "ls", "--config", node.configPath, "--json"], { timeoutMs });
  let raw: unknown;
  try {
    raw = JSON.parse(r.stdout);
  } catch {
    throw new Error(`cluster ls on ${node.name} exited ${r.code} without JSON: ${(r.stderr || r.stdout).trim().slice(0, 300)}`);
  }
  return lsSchema.parse(raw).view;
}

/** A deterministic generator (mulberry32) from a seed; the seed is printed so a run can be replayed. */
export const seededRandom = rng;

/** The seed from `env` (replay) or a fresh one. */
export function seedFrom(env: string | undefined): number {
  const n = Number(env);
  return env !== undefined && Number.isInteger(n) && n >= 0 ? n : Math.floor(Math.random() * 2 ** 31);
}

/** A plain text table (numbers are printed, so readers can compare runs). */
export function table(head: string[], rows: (string | number)[][]): string {
  const cells = [head, ...rows.map((r) => r.map(String))];
  const w = head.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? "").length)));
  return cells.map((r) => r.map((c, i) => c.padEnd(w[i]!)).join("  ").trimEnd()).join("\n");
}

/** Waits until `cluster ls` (through `node`) reports a guarantee matching `re`; returns the line. */
export async function waitGuarantee(node: ClusterNode, re: RegExp, timeoutMs: number): Promise<string> {
  let last = "";
  const end = performance.now() + timeoutMs;
  for (;;) {
    try {
      last = (await durabilityView(node)).durability ?? "(none)";
      if (re.test(last)) return last;
    } catch (e) {
      last = (e as Error).message;
    }
    if (performance.now() > end) throw new Error(`cluster ls on ${node.name} did not report ${re} within ${timeoutMs} ms; last: ${last}`);
    await Bun.sleep(250);
  }
}

/** "X/Y" → bytes. */
export function lsnBytes(lsn: string): bigint {
  const m = /^([0-9A-F]+)\/([0-9A-F]+)$/i.exec(lsn.trim());
  if (!m) throw new Error(`not an LSN: ${JSON.stringify(lsn)}`);
  return (BigInt(`0x${m[1]}`) << 32n) + BigInt(`0x${m[2]}`);
}

const storedSchema = z.object({
  guard: z.object({
    seq: z.number(), block: z.boolean(), holder: z.string().nullable(),
    floor: z.object({ timeline: z.number(), lsn: z.string() }).nullable(),
    timeline: z.number().optional(),
  }).nullable(),
});
export type StoredGuard = NonNullable<z.infer<typeof storedSchema>["guard"]>;

/** The durability guard a node's agent stored (state_dir/election.json; the hosts share a filesystem). */
export function storedGuard(node: Pick<ClusterNode, "stateDir">): StoredGuard | null {
  return storedSchema.parse(JSON.parse(readFileSync(join(node.stateDir, "election.json"), "utf8"))).guard;
}

/**
 * cluster ls on the primary says "quorum: zero-loss" AND its server really runs with
 * synchronous_standby_names = ANY k (...): the claim and the setting must agree.
 */
export async function waitSynchronous(primary: ClusterNode, timeoutMs = 60_000): Promise<string> {
  const line = await waitGuarantee(primary, /^quorum: zero-loss/, timeoutMs);
  let ssn = "";
  const end = performance.now() + 10_000;
  for (;;) {
    try {
      ssn = String((await primary.query("show synchronous_standby_names"))[0]?.synchronous_standby_names ?? "");
      if (/^ANY \d+ \(/.test(ssn)) return `${line} [synchronous_standby_names = '${ssn}']`;
    } catch (e) {
      ssn = `(${(e as Error).message})`;
    }
    if (performance.now() > end) throw new Error(`${primary.name}: cluster ls says "${line}" but the server runs with synchronous_standby_names = '${ssn}' (10 s later still)`);
    await Bun.sleep(200);
  }
}
