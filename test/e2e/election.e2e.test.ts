// Real compiled agents in network namespaces, configured with nothing but cluster, secret and
// bootstrap_expect (plus per-host name, state and data dirs: helpers/agents.ts says why): broadcast discovery, mesh, bootstrap, election, a partitioned leader that
// fences before anyone else leads, healing without a new election, a wrong-secret intruder that
// is ignored, and a late node that joins as a voter. The steps share one cluster and run in order.
// Log timestamps of different agents are comparable: all namespaces share one wall clock.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { randomBytes } from "node:crypto";
import { join } from "node:path";
import { ensureBuilt, ROOT } from "../../scripts/build.ts";
import { artifactsDir, lineTime, startAgent, stopAgents, type NodeStatus, type RunningAgent } from "../helpers/agents.ts";
import { clusterSkipReason } from "../helpers/cluster.ts";
import { createLab, type Host, type Lab } from "../helpers/lab.ts";
import { waitFor } from "../helpers/proc.ts";
import { requireReal } from "../helpers/require.ts";
import { blockingGuards } from "../helpers/writer.ts";

// Default timers (pgherd.toml.example): the bounds below are derived from them.
const LEASE_MS = 1500;
const TIMEOUT_MS = 2500;
const JITTER_MS = 500;
const MESH_PORT = 7401;

const CLUSTER = "e2e";
const SECRET = randomBytes(36).toString("base64url");
const WRONG_SECRET = randomBytes(36).toString("base64url");
const POLL = { intervalMs: 250 };

// Database agents run PostgreSQL (each in its own namespace, default port), so PostgreSQL must be here too.
requireReal("election e2e", clusterSkipReason());

/** Status of every agent, taken concurrently. */
const statuses = (agents: RunningAgent[]) => Promise.all(agents.map((a) => a.status()));
const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
const voterIds = (s: NodeStatus) => s.election.voters.map((v) => v.id).sort();

/** All report the same leader and term, and exactly one of them holds the lease. */
function agreedLeader(ss: NodeStatus[]): { leader: string; term: number } | undefined {
  const first = ss[0]!.election;
  if (first.leader === null || ss.some((s) => s.election.leader !== first.leader || s.election.term !== first.term)) return undefined;
  if (ss.filter((s) => s.election.leading).length !== 1) return undefined;
  return { leader: first.leader, term: first.term };
}

describe("election with real agents", () => {
  let lab: Lab;
  let dir: string;
  const agents: RunningAgent[] = []; // n1..n3, the founding members, in host order
  const all: RunningAgent[] = []; // every agent started, for cleanup
  const ids = new Map<RunningAgent, string>();
  let leader: { agent: RunningAgent; id: string; term: number };
  let newLeader: { agent: RunningAgent; id: string; term: number };
  let t2: Date;

  const spawn = async (host: Host, name: string, secret = SECRET) => {
    // auto_join: a node with the secret becomes a voter without an operator's approval (approval: membership.e2e).
    const a = await startAgent(host, { name, secret, cluster: CLUSTER, bootstrapExpect: 3, dir, extra: "[election]\nauto_join = true" });
    all.push(a);
    return a;
  };
  const byId = (id: string) => agents.find((a) => ids.get(a) === id);

  beforeAll(async () => {
    ensureBuilt();
    dir = artifactsDir("election");
    lab = await createLab({ hosts: 3, tag: "elect" });
  }, 180_000);

  afterAll(async () => {
    await stopAgents(all);
    await lab?.destroy();
    if (dir) console.log(`agent logs: ${dir}`);
  }, 60_000);

  test("three agents discover each other by broadcast and elect exactly one leader", async () => {
    const started = Date.now();
    agents.push(...(await Promise.all(lab.hosts.map((h, i) => spawn(h, `n${i + 1}`)))));
    const agreed = await waitFor(async () => {
      const ss = await statuses(agents);
      const a = agreedLeader(ss);
      return a && ss.every((s) => voterIds(s).length === 3) ? { ...a, ss } : undefined;
    }, { timeoutMs: 20_000, what: "one leader named by all three agents", ...POLL });
    agents.forEach((a, i) => ids.set(a, agreed.ss[i]!.node.id));
    const everyone = [...ids.values()].sort();
    for (const s of agreed.ss) {
      expect(voterIds(s)).toEqual(everyone);
      expect(s.peers.filter((p) => p.connected).map((p) => p.id).sort()).toEqual(everyone.filter((id) => id !== s.node.id));
      expect(s.rejects.mesh).toEqual({}); // nothing but our own peers talked to the mesh
    }
    const agent = byId(agreed.leader)!;
    leader = { agent, id: agreed.leader, term: agreed.term };
    const firstLead = agent.timeOf(new RegExp(`leading term ${agreed.term} with a valid lease`));
    expect(firstLead).toBeDefined();
    console.log(`time to first leader: ${firstLead!.getTime() - started} ms from starting the agents (${agent.name}, term ${agreed.term})`);
    // The agents run PostgreSQL too: let the leader's primary and two streaming standbys form
    // before cutting anyone, so the failover below is the ordinary one (a cluster cut during its
    // own initdb rightly waits for the node that has the data).
    await waitFor(async () => {
      const ss = await statuses(agents);
      return ss.every((st) => (st.node.id === leader.id ? st.postgres?.action === "primary" : st.postgres?.action === "standby" && st.postgres.streaming));
    }, { timeoutMs: 90_000, what: "one primary and two streaming standbys", ...POLL });
    // Streaming is not yet synchronous: until the primary is back on quorum commit and the voters
    // store that, a cut leader must NOT be replaced (it may hold writes no one else has).
    await waitFor(async () => blockingGuards(agents).length === 0, { timeoutMs: 30_000, what: "no voter's durability guard to block failover", ...POLL });
  }, 150_000);

  test("a cut-off leader fences before another node leads", async () => {
    // It still leads the term the first test saw, with its lease, right before the cut: the bounds
    // below are upper bounds only, so a leadership that ended before the cut would pass them unseen.
    const before = await leader.agent.status();
    expect({ role: before.election.role, leading: before.election.leading, term: before.election.term }).toEqual({ role: "leader", leading: true, term: leader.term });
    const old = leader;
    const rest = agents.filter((a) => a !== old.agent);
    const t0 = new Date(); // taken before the cut starts: every measured delay is an upper bound
    await old.agent.host!.cut();

    const elected = await waitFor(async () => {
      const ss = await statuses(rest);
      const a = agreedLeader(ss);
      return a && a.term > old.term ? a : undefined;
    }, { timeoutMs: 15_000, what: `a new leader among ${rest.map((a) => a.name).join(", ")}`, ...POLL });
    newLeader = { agent: byId(elected.leader)!, id: elected.leader, term: elected.term };

    const fenced = await old.agent.proc.waitForLine(new RegExp(`fenced: no longer leading term ${old.term}\\b`), 5_000);
    const t1 = lineTime(fenced);
    t2 = newLeader.agent.timeOf(new RegExp(`leading term ${elected.term} with a valid lease`))!;
    expect(t2).toBeDefined();
    console.log(
      `failover: cut ${old.agent.name} at T0; it fenced at T0+${t1.getTime() - t0.getTime()} ms (bound ${LEASE_MS + 500}); ` +
        `${newLeader.agent.name} leads term ${elected.term} at T0+${t2.getTime() - t0.getTime()} ms ` +
        `(bound ${TIMEOUT_MS + JITTER_MS + 1500}); gap between the two leases ${t2.getTime() - t1.getTime()} ms`,
    );
    expect(t1.getTime()).toBeGreaterThanOrEqual(t0.getTime());
    expect(t1.getTime()).toBeLessThan(t2.getTime());
    expect(t1.getTime() - t0.getTime()).toBeLessThanOrEqual(LEASE_MS + 500);
    expect(t2.getTime() - t0.getTime()).toBeLessThanOrEqual(TIMEOUT_MS + JITTER_MS + 1500);
    // It stepped down because its lease ran out (if not, the failure shows each step-down it logged since the cut).
    const downs = old.agent.linesMatching(/stepped-down: /).filter((l) => lineTime(l) >= t0);
    expect(downs.length).toBeGreaterThan(0);
    expect(downs.some((l) => /stepped-down: lease expired in term/.test(l)) ? [] : downs).toEqual([]);

    // Pre-vote: the cut-off node campaigns, but cannot raise its term without a majority.
    const cutOff = await waitFor(async () => {
      const s = await old.agent.status();
      return s.election.role === "precandidate" ? s : undefined;
    }, { timeoutMs: 10_000, what: `${old.agent.name} to start a pre-vote while cut off`, ...POLL });
    expect(cutOff.election.term).toBe(old.term);
    expect(cutOff.election.leading).toBe(false);
  }, 40_000);

  test("after healing, the old leader follows the new one without a new election", async () => {
    const old = leader;
    await old.agent.host!.heal();
    await waitFor(async () => {
      const s = await old.agent.status();
      return s.election.role === "follower" && s.election.leader === newLeader.id;
    }, { timeoutMs: 20_000, what: `${old.agent.name} to follow ${newLeader.agent.name}`, ...POLL });
    const ss = await statuses(agents);
    expect(agreedLeader(ss)).toEqual({ leader: newLeader.id, term: newLeader.term });
    const after = (a: RunningAgent, re: RegExp) => a.linesMatching(re).filter((l) => lineTime(l) > t2);
    expect(after(newLeader.agent, /stepped-down|fenced:/)).toEqual([]);
    for (const a of agents) expect(after(a, /became-leader|leading term/)).toEqual([]);
    leader = newLeader;
  }, 30_000);

  test("an agent with the wrong secret is ignored", async () => {
    const before = await statuses(agents);
    const h4 = await lab.addHost();
    const intruder = await spawn(h4, "intruder", WRONG_SECRET);

    // It rejects every member's beacons, and every member rejects its beacons.
    for (const h of lab.hosts.slice(0, 3)) {
      await intruder.proc.waitForLine(new RegExp(`\\[intruder:beacon\\] rejected ${esc(h.ip)}:\\d+: bad-mac`), 10_000);
    }
    for (const a of agents) await a.proc.waitForLine(new RegExp(`:beacon\\] rejected ${esc(h4.ip)}:\\d+: bad-mac`), 10_000);
    await waitFor(async () => (await statuses(agents)).every((s, i) => (s.rejects.beacon["bad-mac"] ?? 0) > (before[i]!.rejects.beacon["bad-mac"] ?? 0)), {
      timeoutMs: 5_000, what: "bad-mac counted in every member's status", ...POLL,
    });

    // A beacon is only an invitation: the mesh checks the secret again. Hand-driven handshake from h4.
    const meshBefore = (await leader.agent.status()).rejects.mesh["bad-proof"] ?? 0;
    const r = await h4.exec([process.execPath, "-e", WRONG_SECRET_HANDSHAKE], {
      env: { TO: leader.agent.host!.ip, PORT: String(MESH_PORT), CLUSTER, SECRET: WRONG_SECRET }, timeoutMs: 15_000,
    });
    expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 0, stderr: "" });
    expect(r.stdout.trim()).toBe("acceptor-proof-not-verifiable closed-by-agent");
    await waitFor(async () => ((await leader.agent.status()).rejects.mesh["bad-proof"] ?? 0) === meshBefore + 1, {
      timeoutMs: 5_000, what: "the leader to count the bad proof", ...POLL,
    });
    const badProof = new RegExp(`:mesh\\] rejected ${esc(h4.ip)}:\\d+: bad-proof`);
    await leader.agent.proc.waitForLine(badProof, 5_000);
    expect(leader.agent.linesMatching(badProof).length).toBe(1);

    const me = await intruder.status();
    expect(me.peers).toEqual([]);
    expect(me.election.voters).toEqual([]);
    expect(me.election.leader).toBeNull();
    const ss = await statuses(agents);
    expect(agreedLeader(ss)).toEqual({ leader: leader.id, term: leader.term });
    for (const s of ss) {
      expect(s.election.voters.map((v) => v.id)).not.toContain(me.node.id);
      expect(s.peers.map((p) => p.id)).not.toContain(me.node.id);
    }
  }, 40_000);

  test("a fifth agent with the right secret joins as a voter ([election] auto_join)", async () => {
    const h5 = await lab.addHost();
    const n5 = await spawn(h5, "n5");
    await leader.agent.proc.waitForLine(/membership-committed: voters (\S+,){3}\S+ /, 20_000);
    const joined = await waitFor(async () => {
      const ss = await statuses([...agents, n5]);
      return ss.every((s) => s.election.voters.length === 4) && agreedLeader(ss) ? ss : undefined;
    }, { timeoutMs: 10_000, what: "all four agents to agree on four voters and the leader", ...POLL });
    const mine = joined[3]!;
    const intruderId = (await all.find((a) => a.name === "intruder")!.status()).node.id;
    expect(voterIds(mine)).toEqual([...ids.values(), mine.node.id].sort());
    expect(voterIds(mine)).not.toContain(intruderId);
    for (const s of joined) {
      expect(voterIds(s)).toEqual(voterIds(mine));
      expect(s.election.leader).toBe(leader.id);
      expect(s.election.term).toBe(leader.term); // adding a voter is no election
    }
    expect(leader.agent.linesMatching(new RegExp(`membership-committed: voters \\S*${mine.node.id}`)).length).toBeGreaterThan(0);
  }, 40_000);
});

// Dialer side of the mesh handshake with the wrong secret, run inside the intruder's namespace.
// Prints what happened; the agent must close the connection on our proof.
const WRONG_SECRET_HANDSHAKE = `
import net from "node:net";
import { FrameDecoder, encodeFrame } from ${JSON.stringify(join(ROOT, "src/net/framing.ts"))};
import { makeHello, proofFor, verifyProof } from ${JSON.stringify(join(ROOT, "src/net/secure.ts"))};
const { TO, PORT, CLUSTER, SECRET } = process.env;
const out = [];
const mine = makeHello({ cluster: CLUSTER, nodeId: "00000000000000ee", name: "intruder-raw", addr: TO + ":1", dialer: true });
const dec = new FrameDecoder(1 << 20);
const frames = [];
const s = net.connect({ host: TO, port: Number(PORT) });
const timer = setTimeout(() => { console.error("agent did not close the connection"); process.exit(1); }, 10000);
s.on("connect", () => s.write(encodeFrame(mine, 4096)));
s.on("data", (c) => {
  for (const f of dec.push(c)) frames.push(f);
  if (frames.length === 2 && out.length === 0) {
    const [theirs, proof] = frames;
    out.push(verifyProof(SECRET, "acceptor", mine, theirs, proof.mac) ? "acceptor-proof-verified" : "acceptor-proof-not-verifiable");
    s.write(encodeFrame({ t: "proof", mac: proofFor(SECRET, "dialer", mine, theirs) }, 4096));
  }
});
s.on("error", () => {});
s.on("close", () => { clearTimeout(timer); out.push("closed-by-agent"); console.log(out.join(" ")); });
`;
