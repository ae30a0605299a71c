// Fewer than k promotable standbys (docs/design.md, "Standbys that cannot lead", the fill): three
// database nodes, n2 and n3 both tagged nofailover, quorum commit, compiled agents on loopback.
// The primary names the standbys that cannot lead once each echoed one of its state messages
// without a record naming it, and commits are synchronous on them. Before the fill the names were
// ANY 1 ("pgherd_none") for good: quorum degraded (asynchronous commits, no failover), strict
// blocked every write.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { http, settled, startLoopCluster, until, type LoopCluster, type LoopNode } from "../api/loopback.ts";
import { restartAgent } from "../helpers/agents.ts";
import { pgSkipReason } from "../helpers/pg.ts";
import { requireReal } from "../helpers/require.ts";

requireReal("nofailover-fill e2e", pgSkipReason);

let c: LoopCluster;
const one = async (n: LoopNode, sql: string) => (await n.query(sql))[0] ?? {};
const idOf = async (n: LoopNode) => ((await http(`${n.api}/node`)).json() as { node: { id: string } }).node.id;
const syncNames = async (p: LoopNode) => String((await one(p, "SELECT current_setting('synchronous_standby_names') AS v")).v);

describe("every standby cannot lead: they fill the synchronous set", () => {
  beforeAll(async () => {
    c = await startLoopCluster({ test: "nofailover-fill", size: 3, nodeExtra: (name) => (name === "n1" ? "" : "[tags]\nnofailover = true") });
  }, 180_000);

  afterAll(async () => {
    await c?.destroy();
    if (c) console.log(`nofailover-fill e2e logs: ${c.dir}`);
  }, 60_000);

  test("the names name both standbys and a write commits synchronously", async () => {
    const { primary } = await settled(c);
    expect(primary.name).toBe("n1");
    const slots = (await Promise.all(["n2", "n3"].map((n) => idOf(c.node(n))))).map((id) => `pgherd_${id}`).sort();
    const want = `ANY 1 (${slots.map((s) => `"${s}"`).join(", ")})`;
    // Named as soon as they echo, which may be while they are still being cloned: a fresh primary
    // then degrades at once (as before the fill) and re-enables the names once they stream.
    const guarantee = async () => JSON.stringify((await http(`${primary.api}/node`)).json()).match(/"guarantee":"([^"]*)"/)?.[1] ?? "";
    await until(async () => ((await syncNames(primary)) === want && (await guarantee()).startsWith("zero-loss")) || undefined, `${primary.name} to run synchronous_standby_names = ${want}, zero-loss`, 30_000);
    const states = await primary.query("SELECT application_name AS n, sync_state AS s FROM pg_stat_replication ORDER BY 1");
    expect(states.map((r) => String(r.s))).toEqual(["quorum", "quorum"]);
    await primary.query("CREATE TABLE fill (id int PRIMARY KEY)");
    await primary.query("INSERT INTO fill VALUES (1)", 10_000);
    // Synchronous: not degraded (degrading would have set the names to '').
    expect(await syncNames(primary)).toBe(want);
    const node = (await http(`${primary.api}/node`)).json() as Record<string, unknown>;
    console.log(`guarantee: ${JSON.stringify(node).match(/zero-loss[^"]*/)?.[0] ?? "(none reported)"}`);
    expect(JSON.stringify(node)).toContain("zero-loss");
  }, 120_000);

  test("an agent restart of a standby the fill names keeps it named: the names never change", async () => {
    const { primary } = await settled(c);
    const slots = (await Promise.all(["n2", "n3"].map((n) => idOf(c.node(n))))).map((id) => `pgherd_${id}`).sort();
    const want = `ANY 1 (${slots.map((s) => `"${s}"`).join(", ")})`;
    await until(async () => (await syncNames(primary)) === want || undefined, `${primary.name} to run synchronous_standby_names = ${want}`, 30_000);
    const seen = new Set<string>();
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        seen.add(await syncNames(primary).catch((e: Error) => `(query failed: ${e.message})`));
        await Bun.sleep(25);
      }
    })();
    const rounds = async () => Number((await http(`${primary.api}/metrics`)).body.match(/^pgherd_loops_total (\d+)/m)?.[1] ?? NaN);
    try {
      const n2 = c.node("n2");
      n2.agent = await restartAgent(n2.agent);
      // The new run has heard the leader (its first state message carries the echo); then three of
      // the primary's rounds, each planning the names from what it heard of n2 (the defect this
      // guards against showed at the first round after n2's first message).
      await until(async () => n2.agent.linesMatching(/processed a first state message of the leader/).length > 0, "n2's new run to process a leader message", 20_000);
      const from = await rounds();
      await until(async () => (await rounds()) >= from + 3 || undefined, `${primary.name} to run three more rounds`, 20_000);
      await primary.query("INSERT INTO fill VALUES (2)", 10_000);
    } finally {
      sampling = false;
      await sampler;
    }
    console.log(`names seen while n2's agent restarted: ${[...seen].join(" | ")}`);
    expect([...seen]).toEqual([want]);
  }, 120_000);
});
