// Failsafe when etcd is healthy but the leader alone cannot reach it: the etcd backend on a real
// three-member etcd on loopback, without PostgreSQL, three consensus objects with failsafe on whose
// mesh messages are passed in-process (through the real mesh schema). The leader reaches etcd
// through a TCP relay this test cuts. The others confirm while they still read the leader's key,
// refuse once etcd deleted it, and take the key only after their promises ended: the old leader is
// fenced (at the deadline of its last confirmation) before another node leads. When the relay is
// back, the old leader's lease is gone and it does not lead again.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer, connect, type Server, type Socket } from "node:net";
import { join } from "node:path";
import { AgentMsgSchema } from "../../src/agent/messages.ts";
import { EtcdConsensus } from "../../src/consensus/etcd/backend.ts";
import { EtcdClient } from "../../src/consensus/etcd/client.ts";
import { clusterKeys } from "../../src/consensus/etcd/elect-core.ts";
import type { FailsafeMsg } from "../../src/consensus/etcd/failsafe.ts";
import { memoryLogger } from "../../src/log.ts";
import { ElectionStore } from "../../src/store/election-state.ts";
import { EtcdCluster, etcdSkipReason } from "../helpers/etcd.ts";
import { waitFor } from "../helpers/proc.ts";
import { requireReal } from "../helpers/require.ts";

const TTL_S = 2;
const FENCE_MS = 200;
const MAX_DRIFT = 0.02;
const POLL_MS = 100;

/** A TCP relay to one etcd member; cut(): every connection is dropped and new ones are held unanswered (a network cut, not a refusal). */
class Relay {
  private readonly pairs = new Set<Socket>();
  private cutOff = false;
  private constructor(private readonly server: Server, readonly url: string) {}

  static async start(target: string): Promise<Relay> {
    const t = new URL(target);
    const holder: { r?: Relay } = {};
    const server = createServer((inbound) => {
      const r = holder.r!;
      r.pairs.add(inbound);
      inbound.on("close", () => r.pairs.delete(inbound));
      inbound.on("error", () => {});
      if (r.cutOff) return; // held: the request never reaches etcd
      const out = connect(Number(t.port), t.hostname);
      r.pairs.add(out);
      out.on("close", () => { r.pairs.delete(out); inbound.destroy(); });
      out.on("error", () => inbound.destroy());
      inbound.on("close", () => out.destroy());
      inbound.pipe(out);
      out.pipe(inbound);
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const port = (server.address() as { port: number }).port;
    holder.r = new Relay(server, `http://127.0.0.1:${port}`);
    return holder.r;
  }

  cut(): void {
    this.cutOff = true;
    for (const s of this.pairs) s.destroy();
  }

  heal(): void {
    this.cutOff = false;
    for (const s of this.pairs) s.destroy();
  }

  close(): void {
    this.cut();
    this.server.close();
  }
}

interface Event { kind: "held" | "lost"; at: number; until?: number; reason?: string }

class FsNode {
  readonly events: Event[] = [];
  readonly log = memoryLogger();
  readonly c: EtcdConsensus;
  readonly client: EtcdClient;
  stopped = false;

  constructor(readonly id: string, readonly name: string, endpoints: string[], lsn: string, dir: string, mesh: Map<string, FsNode>, cluster = "fs") {
    this.client = new EtcdClient({ endpoints, requestTimeoutMs: 300 });
    this.c = new EtcdConsensus({
      client: this.client,
      keys: clusterKeys("/pgherd", cluster),
      self: { id, name, role: "database", canLead: true, priority: 100 },
      ttlS: TTL_S, pollMs: POLL_MS, maxDrift: MAX_DRIFT, fenceMs: FENCE_MS, deferMs: 500,
      store: new ElectionStore(mkdtempSync(join(dir, `${name}-`))), log: this.log,
      hooks: {
        send: () => {},
        leaseHeld: (_term, until) => void this.events.push({ kind: "held", at: performance.now(), until }),
        leaseLost: async (reason) => void this.events.push({ kind: "lost", at: performance.now(), reason }),
        leadershipChanged: () => {},
        detach: async () => ({ ok: true, position: null }),
        fatal: (m) => { throw new Error(m); },
      },
    });
    // The mesh: every message through the agent's schema, delivered on the next turn.
    this.c.attachFailsafe(true, (to, msg) => {
      const parsed = AgentMsgSchema.parse(msg) as FailsafeMsg;
      setTimeout(() => { const peer = mesh.get(to); if (peer && !peer.stopped) peer.c.failsafeMessage(this.id, parsed); }, 1);
    }, (x) => mesh.get(x)?.name ?? x);
    void this.c.setPosition({ timeline: 1, lsn });
    mesh.set(id, this);
  }

  leads(): boolean { return !this.stopped && this.c.lease() !== null; }
  stop(): void {
    this.stopped = true;
    this.c.stop();
  }
}

requireReal("etcd failsafe backend", etcdSkipReason());
describe("failsafe with etcd healthy and the leader alone cut off from it", () => {
  let etcd: EtcdCluster;
  const relays: Relay[] = [];
  let tmp: string;
  const mesh = new Map<string, FsNode>();
  const mesh2 = new Map<string, FsNode>();
  const [A, B, C] = ["aaaaaaaaaaaaaaa1", "bbbbbbbbbbbbbbb2", "ccccccccccccccc3"];

  beforeAll(async () => {
    tmp = mkdtempSync("/tmp/pgherd-failsafe-test-");
    etcd = await EtcdCluster.start({ dir: join(tmp, "etcd") });
    // Every node reaches etcd through its own relay: the test cuts the leader's, whichever node leads.
    for (const e of etcd.endpoints()) relays.push(await Relay.start(e));
  }, 60_000);

  afterAll(async () => {
    for (const n of mesh.values()) n.stop();
    for (const r of relays) r.close();
    for (const n of mesh2.values()) n.stop();
    await etcd?.destroy();
    rmSync(tmp, { recursive: true, force: true });
  }, 30_000);

  test("confirmed while the key lives, refused once etcd deleted it; the old leader fences before anyone else leads and never leads again", async () => {
    const all = [new FsNode(A, "a", [relays[0]!.url], "0/300", tmp, mesh), new FsNode(B, "b", [relays[1]!.url], "0/200", tmp, mesh), new FsNode(C, "c", [relays[2]!.url], "0/200", tmp, mesh)];
    for (const n of all) n.c.start();
    await Promise.all(all.map((n) => n.c.bootstrap({ term: 0, index: 1, voters: [A, B, C] })));
    // Failsafe: nobody stands during its first ttl_s (a promise given before a restart).
    await waitFor(() => all.some((n) => n.leads() && all.every((m) => m.c.status().leader === n.id)), { timeoutMs: 15_000, what: "a leader every node sees" });
    const a = all.find((n) => n.leads())!;
    const [b, c] = all.filter((n) => n !== a) as [FsNode, FsNode];
    const relay = relays[all.indexOf(a)]!;
    await Bun.sleep(3 * POLL_MS); // steady renewals
    const etcdUntil = a.events.filter((e) => e.kind === "held").at(-1)!.until!;
    const t0 = performance.now();
    relay.cut();
    await waitFor(() => !a.leads(), { timeoutMs: 20_000, what: "a to fence" });
    const lost = a.events.find((e) => e.kind === "lost")!;
    await waitFor(() => b.leads() || c.leads(), { timeoutMs: 20_000, what: "b or c to lead" });
    const next = [b, c].find((n) => n.leads())!;
    const won = next.events.find((e) => e.kind === "held")!;
    const lastUntil = a.events.filter((e) => e.kind === "held").at(-1)!.until!;
    console.log(`${a.name} cut off from etcd: its etcd deadline ${Math.round(etcdUntil - t0)} ms after the cut, kept leading on confirmations until ` +
      `${Math.round(lost.at - t0)} ms (${lost.reason}); ${next.name} leads ${Math.round(won.at - t0)} ms after the cut`);
    const logs = [...b.log.lines, ...c.log.lines].join("\n");
    expect(logs).toContain(`failsafe: confirming leader ${a.name}`);
    expect(a.log.lines.join("\n")).toMatch(/does not confirm: this node sees no leader key in etcd/);
    // The confirmations kept a past its own lease, and it fenced at their deadline.
    expect(lastUntil).toBeGreaterThan(etcdUntil);
    expect(lost.at).toBeGreaterThan(etcdUntil);
    expect(lost.reason).toContain("failsafe: no confirmation from");
    // Nobody else led before a's last deadline plus its fence.
    expect(won.at).toBeGreaterThan(lastUntil + FENCE_MS);
    // The relay is back: a's lease is gone in etcd; it follows the new leader and never leads again.
    relay.heal();
    await waitFor(() => a.c.status().leader === next.id, { timeoutMs: 10_000, what: "the old leader to see the new one" });
    expect(a.events.filter((e) => e.kind === "held" && e.at > lost.at)).toEqual([]);
  }, 60_000);

  test("renewals answered but reads failing: the leader's verified deadline runs low, so it asks its peers and leads on their confirmations", async () => {
    // A never-migrated etcd cluster: a renewal alone no longer moves the leader's deadline (its read must show etcd open too),
    // so the failsafe must ask from that verified deadline, not from the last answered renewal.
    const eps = etcd.endpoints();
    const all = [new FsNode(A, "a2", eps, "0/300", tmp, mesh2, "fs2"), new FsNode(B, "b2", eps, "0/200", tmp, mesh2, "fs2"), new FsNode(C, "c2", eps, "0/200", tmp, mesh2, "fs2")];
    for (const n of all) n.c.start();
    await Promise.all(all.map((n) => n.c.bootstrap({ term: 0, index: 1, voters: [A, B, C] })));
    await waitFor(() => all.some((n) => n.leads() && all.every((m) => m.c.status().leader === n.id)), { timeoutMs: 15_000, what: "a leader every node sees" });
    const a = all.find((n) => n.leads())!;
    await Bun.sleep(3 * POLL_MS);
    const etcdUntil = a.events.filter((e) => e.kind === "held").at(-1)!.until!;
    // The leader's reads fail; its keepalives (the same client, the same etcd) still answer.
    const range = a.client.range.bind(a.client);
    a.client.range = () => Promise.reject(new Error("test: reads fail"));
    try {
      await waitFor(() => performance.now() > etcdUntil + FENCE_MS + 2 * POLL_MS, { timeoutMs: 10_000, what: "the verified etcd deadline to pass" });
      const lines = a.log.lines.join("\n");
      expect(lines).toMatch(/failsafe: the etcd lease is not being renewed; asking/);
      expect(a.events.filter((e) => e.kind === "lost")).toEqual([]);
      expect(a.leads()).toBe(true);
      expect(a.events.filter((e) => e.kind === "held").at(-1)!.until!).toBeGreaterThan(etcdUntil);
    } finally {
      a.client.range = range;
    }
  }, 60_000);
});
