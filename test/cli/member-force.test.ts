// `pgherd member force` end to end through the CLI on a state directory of its own (the agent's
// store read back after it): what it writes, what it refuses, and that it never writes while
// anything answers on the agent's API address. With real agents: test/e2e/member-force.e2e.test.ts.
import { afterAll, beforeEach, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runCli } from "../../src/cli/run.ts";
import { ElectionStore } from "../../src/store/election-state.ts";
import { NODE_ID_FILE } from "../../src/store/node-id.ts";

const [A, B, C] = ["a000000000000001", "b000000000000002", "c000000000000003"];
const dir = mkdtempSync(join(tmpdir(), "pgherd-force-"));
const state = join(dir, "state");
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A port nothing listens on (bound, then closed). */
async function closedPort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  const port = (s.address() as { port: number }).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

let cfg = "";
beforeEach(async () => {
  rmSync(state, { recursive: true, force: true });
  mkdirSync(state, { mode: 0o700 });
  writeFileSync(join(state, NODE_ID_FILE), `${C}\n`, { mode: 0o600 });
  new ElectionStore(state).saveElection({ term: 9, votedFor: B, membership: { term: 8, index: 2, voters: [A, B, C] }, ledTerm: null, guard: null });
  cfg = await config(await closedPort());
});

async function config(port: number, extra = ""): Promise<string> {
  const path = join(dir, `pgherd-${port}.toml`);
  writeFileSync(path, `cluster = "c"\nsecret = "${"s".repeat(40)}"\nnode_name = "n3"\nstate_dir = "${state}"\n${extra}[api]\nlisten = "127.0.0.1:${port}"\n`, { mode: 0o600 });
  return path;
}

async function pgherd(argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = "";
  let err = "";
  const code = await runCli(argv, { env: {}, out: (t) => void (out += t), err: (t) => void (err += t) });
  return { code, out, err };
}

const stored = () => new ElectionStore(state).get();

test("without --others-lost it shows the change and writes nothing (exit 2)", async () => {
  const before = readFileSync(join(state, "election.json"), "utf8");
  const r = await pgherd(["member", "force", "--voters", "n3", "--config", cfg]);
  expect(r.code).toBe(2);
  expect(r.out).toContain(`voters after: ${C} (membership 10/3); removed: ${A}, ${B}`);
  expect(r.out).toContain("nothing written");
  expect(readFileSync(join(state, "election.json"), "utf8")).toBe(before);
});

test("with it: the survivors are the voters in a later term and version, no vote, no led term; the agent's store reads it back", async () => {
  const r = await pgherd(["member", "force", "--voters", C, "--others-lost", "--config", cfg]);
  expect(r.code).toBe(0);
  expect(r.out).toContain("written to");
  expect(stored()).toMatchObject({ term: 10, votedFor: null, ledTerm: null, membership: { term: 10, index: 3, voters: [C], removed: [A, B] } });
  // Run again: one voter of one is a majority: refused, nothing changes.
  const again = await pgherd(["member", "force", "--voters", C, "--others-lost", "--config", cfg]);
  expect(again.code).toBe(2);
  expect(again.err).toContain("1 of 1 voters are a majority");
  expect(stored().term).toBe(10);
});

test("never while something answers on the agent's API address (the agent must be stopped)", async () => {
  const api = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => Response.json({ id: C, node: { id: C, name: "n3", role: "database", mesh: "127.0.0.1:1" } }) });
  try {
    const r = await pgherd(["member", "force", "--voters", "n3", "--others-lost", "--config", await config(api.port!)]);
    expect(r.code).toBe(1);
    expect(r.err).toContain(`the agent of node n3 (${C}) answers on http://127.0.0.1:${api.port}: stop this host's agent first`);
    expect(stored()).toMatchObject({ term: 9, votedFor: B, membership: { voters: [A, B, C] } });
  } finally {
    void api.stop(true);
  }
});

test("a durability guard is kept (a survivor stands only past it) unless --accept-data-loss clears it, in the forced term", async () => {
  const guard = { term: 8, seq: 4, block: false, holder: null, floor: { timeline: 2, lsn: "0/5000000" }, timeline: 3 };
  new ElectionStore(state).saveElection({ term: 9, votedFor: null, membership: { term: 8, index: 2, voters: [A, B, C] }, ledTerm: null, guard });
  const r = await pgherd(["member", "force", "--voters", "n3", "--others-lost", "--config", cfg]);
  expect(r.code).toBe(0);
  expect(r.out).toContain("a new primary must hold WAL up to 0/5000000 on timeline 2: kept: a survivor stands only past it");
  expect(stored()).toMatchObject({ term: 10, membership: { voters: [C] }, guard });
  new ElectionStore(state).saveElection({ term: 9, votedFor: null, membership: { term: 8, index: 2, voters: [A, B, C] }, ledTerm: null, guard });
  const forced = await pgherd(["member", "force", "--voters", "n3", "--others-lost", "--accept-data-loss", "--config", cfg]);
  expect(forced.code).toBe(0);
  expect(forced.out).toContain("cleared (--accept-data-loss)");
  // Stamped in the forced term (a survivor that did not run it takes it as newer), the reservation kept.
  expect(stored()).toMatchObject({ term: 10, membership: { voters: [C] }, guard: { term: 10, seq: 5, block: false, holder: null, floor: null, timeline: 3 } });
});

test("names that are neither node ids nor this node's name, and voters that are not voters, are refused naming them", async () => {
  expect((await pgherd(["member", "force", "--voters", "n3,n1", "--config", cfg])).err).toContain('"n1" is neither a node id');
  expect((await pgherd(["member", "force", "--voters", `n3,${"f".repeat(16)}`, "--config", cfg])).err).toContain(`not a voter of the membership this node holds: ${"f".repeat(16)}`);
});

test("with etcd it refuses: the voters are kept there", async () => {
  const r = await pgherd(["member", "force", "--voters", "n3", "--others-lost", "--config", await config(await closedPort(), '[consensus]\nbackend = "etcd"\nendpoints = ["http://127.0.0.1:2379"]\n')]);
  expect(r.code).toBe(2);
  expect(r.err).toContain("the voters are kept in etcd");
  expect(stored().term).toBe(9);
});
