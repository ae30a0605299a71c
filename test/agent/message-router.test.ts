// The router's handling of peers' state messages (src/agent/message-router.ts onState): a message
// older than the report held, by (epoch, seq), is dropped whole (core/cluster-facts.ts newerReport):
// no report replaced, no exclusion record handed to the cap. One from a peer's earlier run is
// warned about once per run.
import { expect, test } from "bun:test";
import { MessageRouter, type RouterDeps } from "../../src/agent/message-router.ts";
import { AgentMsgSchema, type AgentMsg } from "../../src/agent/messages.ts";
import type { PeerReport } from "../../src/core/cluster-facts.ts";
import { memoryLogger } from "../../src/log.ts";

const L = "aaaaaaaaaaaaaaaa";
const B = "bbbbbbbbbbbbbbbb";

function router() {
  const log = memoryLogger();
  const reports = new Map<string, PeerReport>();
  const heard: Array<{ epoch?: number; seq?: number; exclusion: unknown }> = [];
  const d = {
    log, self: B, reports, now: () => 1000, stopped: () => false, loop: () => null,
    consensus: { status: () => ({ leader: L }) },
    flags: { adopt: () => undefined },
    peers: { name: () => "n1" },
    exclusionHeard: (_leader: string, exclusion: unknown, msg: { epoch?: number; seq?: number }) => heard.push({ epoch: msg.epoch, seq: msg.seq, exclusion }),
  } as unknown as RouterDeps;
  return { r: new MessageRouter(d), reports, heard, log };
}

const state = (epoch: number, seq: number, exclusion?: unknown) =>
  ({ t: "state", role: "database", pg: null, nofailover: false, promotable: true, epoch, seq, ...(exclusion ? { exclusion } : {}) }) as unknown as AgentMsg;

test("a late state message of the leader (same run, or its earlier run) changes nothing; an earlier run is warned about once", () => {
  const { r, reports, heard, log } = router();
  const rec = { term: 4, at: { timeline: 1, lsn: "0/6000000" }, excluded: [{ id: "bbbbbbbbbbbbbbbb", epoch: 7 }] };
  r.route(L, state(12, 4));
  expect(reports.get(L)?.seq).toBe(4);
  expect(heard).toHaveLength(1);
  r.route(L, state(12, 3, rec)); // a late frame of the same run: dropped silently
  r.route(L, state(11, 90, rec)); // a frame of its previous run (a restart's old connection draining)
  r.route(L, state(11, 91, rec));
  expect(reports.get(L)).toMatchObject({ epoch: 12, seq: 4 });
  expect(heard).toHaveLength(1); // the cap never saw the stale records
  expect(log.lines.filter((l) => l.includes("dropped, older than its run 12"))).toHaveLength(1);
  r.route(L, state(12, 5));
  r.route(L, state(13, 1)); // its next run
  expect(reports.get(L)).toMatchObject({ epoch: 13, seq: 1 });
  expect(heard.map((h) => `${h.epoch}/${h.seq}`)).toEqual(["12/4", "12/5", "13/1"]);
});

test("a peer's reports of data it cannot read: unreadableSince from the first one, kept while they come, gone once it reads it (the slot's idle time)", () => {
  let now = 1000;
  const reports = new Map<string, PeerReport>();
  const d = {
    log: memoryLogger(), self: B, reports, now: () => now, stopped: () => false, loop: () => null,
    consensus: { status: () => ({ leader: L }) }, flags: { adopt: () => undefined }, peers: { name: () => "n3" },
    exclusionHeard: () => undefined,
  } as unknown as RouterDeps;
  const r = new MessageRouter(d);
  const pg = (running: boolean) => ({ port: 5432, data: running ? "present" : "unknown", systemId: "1", running, up: running, inRecovery: running ? true : null, position: { timeline: 1, lsn: "0/3000000" }, receiveLsn: null, replayLsn: null, upstream: null, streaming: false, replication: [], slots: [], action: "wait", note: "", error: null, haveSecrets: true });
  const C = "cccccccccccccccc";
  const send = (seq: number, running: boolean) => r.route(C, { t: "state", role: "database", pg: pg(running), epoch: 1, seq } as unknown as AgentMsg);
  send(1, true);
  expect(reports.get(C)?.unreadableSince).toBeUndefined();
  now = 2000;
  send(2, false);
  now = 3000;
  send(3, false);
  expect(reports.get(C)?.unreadableSince).toBe(2000);
  send(4, true);
  expect(reports.get(C)?.unreadableSince).toBeUndefined();
});

test("an action forwarded to this leader that fails here is answered with the error, not left to the asker's timeout", async () => {
  const sent: Array<{ peer: string; msg: unknown }> = [];
  const d = {
    log: memoryLogger(), stopped: () => false, consensus: { status: () => ({ leader: L }) }, peers: { name: () => "n2" },
    mesh: () => ({ send: (peer: string, msg: unknown) => sent.push({ peer, msg }) }),
    safe: (f: () => void) => f(),
    runAsLeader: async () => { throw new Error("ENOSPC: no space left on device, write 'flags.json.tmp'"); },
  } as unknown as RouterDeps;
  new MessageRouter(d).route("bbbbbbbbbbbbbbbb", { t: "action", id: 7, req: { kind: "pause" } } as unknown as AgentMsg);
  for (let i = 0; i < 10 && sent.length === 0; i++) await Promise.resolve();
  expect(sent).toEqual([{ peer: "bbbbbbbbbbbbbbbb", msg: { t: "action-resp", id: 7, result: { status: 500, ok: false, message: "pause failed on the leader: ENOSPC: no space left on device, write 'flags.json.tmp'" } } }]);
});

test("a forwarded action's answer carries its detail back (a switchover won by another node: the CLI on a follower exits 1)", async () => {
  const sent: Array<{ peer: string; msg: unknown }> = [];
  const detail = { target: "n2", winner: "n3", ms: 812 };
  const d = {
    log: memoryLogger(), stopped: () => false, consensus: { status: () => ({ leader: L }) }, peers: { name: () => "n2" },
    mesh: () => ({ send: (peer: string, msg: unknown) => sent.push({ peer, msg }) }),
    safe: (f: () => void) => f(),
    runAsLeader: async () => ({ status: 202, ok: true, message: "n3 won term 5, not n2 (after 812 ms)", detail }),
  } as unknown as RouterDeps;
  new MessageRouter(d).route(B, { t: "action", id: 8, req: { kind: "switchover", to: "n2" } } as unknown as AgentMsg);
  for (let i = 0; i < 10 && sent.length === 0; i++) await Promise.resolve();
  // What the asker gets: the frame as the mesh checks it on receipt.
  const got = AgentMsgSchema.parse(JSON.parse(JSON.stringify(sent[0]?.msg)));
  expect(got).toEqual({ t: "action-resp", id: 8, result: { status: 202, ok: true, message: "n3 won term 5, not n2 (after 812 ms)", detail } });
});

test("the leader's server first known here (a restarted agent, a new peer), or this node's slot just created there, starts a round at once; other reports do not", () => {
  let kicks = 0;
  const reports = new Map<string, PeerReport>();
  const d = {
    log: memoryLogger(), self: B, reports, now: () => 1000, stopped: () => false,
    loop: () => ({ kick: () => kicks++, primaryBack: () => undefined }),
    consensus: { status: () => ({ leader: L }) }, flags: { adopt: () => undefined }, peers: { name: () => "n1" }, exclusionHeard: () => undefined,
  } as unknown as RouterDeps;
  const r = new MessageRouter(d);
  const pg = { up: true, running: true, inRecovery: false, port: 5432, slots: [] as string[] };
  const withPg = (seq: number, p: unknown) => ({ ...(state(3, seq) as object), pg: p }) as unknown as AgentMsg;
  r.route("cccccccccccccccc", withPg(1, pg)); // not the leader
  expect(kicks).toBe(0);
  r.route(L, withPg(1, null)); // the leader, its server not known yet
  expect(kicks).toBe(0);
  r.route(L, withPg(2, pg));
  expect(kicks).toBe(1);
  r.route(L, withPg(3, pg));
  expect(kicks).toBe(1);
  // This node's slot created on the leader's server (a standby waiting for it clones now), once.
  r.route(L, withPg(4, { ...pg, slots: ["pgherd_cccccccccccccccc"] })); // another node's
  expect(kicks).toBe(1);
  r.route(L, withPg(5, { ...pg, slots: ["pgherd_cccccccccccccccc", "pgherd_bbbbbbbbbbbbbbbb"] }));
  expect(kicks).toBe(2);
  r.route(L, withPg(6, { ...pg, slots: ["pgherd_cccccccccccccccc", "pgherd_bbbbbbbbbbbbbbbb"] }));
  expect(kicks).toBe(2);
});

// handover and campaign-now start a promotion: taken only from the node entitled to ask, named by
// the mesh's authenticated peer id (never by a field of the message).
const W = "cccccccccccccccc"; // a member that is not a voter

function promoter(leader: string | null = L, term = 5) {
  const log = memoryLogger();
  const sent: Array<{ peer: string; msg: unknown }> = [];
  const calls = { promotions: 0, campaigns: 0 };
  const d = {
    log, stopped: () => false, peers: { name: (id: string) => `n-${id.slice(0, 1)}` },
    consensus: { status: () => ({ leader, term, membership: { voters: [L, B] } }), setPosition: () => undefined },
    loop: () => ({ requestPromotion: () => calls.promotions++, catchUp: async () => null }),
    host: () => ({ campaignNow: () => calls.campaigns++ }),
    mesh: () => ({ send: (peer: string, msg: unknown) => sent.push({ peer, msg }) }),
    safe: (f: () => void) => f(),
  } as unknown as RouterDeps;
  return { r: new MessageRouter(d), log, sent, calls };
}

const flush = async () => { for (let i = 0; i < 10; i++) await Promise.resolve(); };

test("a handover is taken from the leader only, and the old primary remembered is the authenticated sender", async () => {
  const { r, log, sent, calls } = promoter();
  r.route(B, { t: "handover", from: B, id: 1 } as AgentMsg); // a voter, not the leader
  r.route(W, { t: "handover", from: W, id: 2 } as AgentMsg); // not even a voter
  r.route(B, { t: "handover", from: L, id: 3 } as AgentMsg); // names the leader, comes from another node
  await flush();
  expect([calls.promotions, sent.length, r.takeHandoverFrom()]).toEqual([0, 0, null]);
  expect(log.lines.filter((l) => l.startsWith("warn") && /not the leader|names/.test(l))).toHaveLength(3);
  r.route(L, { t: "handover", from: L, id: 4 } as AgentMsg);
  await flush();
  expect(calls.promotions).toBe(1);
  expect(sent).toEqual([{ peer: L, msg: { t: "handover-ready", pos: null, id: 4 } }]);
  expect(r.takeHandoverFrom()).toBe(L);
});

test("a node that does not know the leader yet takes a handover from a voter, never from a non-voting member", async () => {
  const { r, sent, calls } = promoter(null);
  r.route(W, { t: "handover", from: W, id: 1 } as AgentMsg);
  await flush();
  expect([calls.promotions, sent.length]).toEqual([0, 0]);
  r.route(B, { t: "handover", from: B, id: 2 } as AgentMsg);
  await flush();
  expect(calls.promotions).toBe(1);
  expect(sent).toEqual([{ peer: B, msg: { t: "handover-ready", pos: null, id: 2 } }]);
  expect(r.takeHandoverFrom()).toBe(B);
});

test("a handover sent in a term older than this node's is refused (a deposed leader's, arriving late); one without a term is taken", async () => {
  const { r, log, sent, calls } = promoter(null, 7);
  r.route(B, { t: "handover", from: B, id: 1, term: 6 } as AgentMsg);
  await flush();
  expect([calls.promotions, sent.length, r.takeHandoverFrom()]).toEqual([0, 0, null]);
  expect(log.lines.filter((l) => l.startsWith("warn") && l.includes("sent in term 6, this node is in term 7"))).toHaveLength(1);
  r.route(B, { t: "handover", from: B, id: 2, term: 7 } as AgentMsg);
  await flush();
  expect(calls.promotions).toBe(1);
  expect(sent).toEqual([{ peer: B, msg: { t: "handover-ready", pos: null, id: 2 } }]);
  r.route(B, { t: "handover", from: B, id: 3 } as AgentMsg); // an agent from before the term was sent
  await flush();
  expect(calls.promotions).toBe(2);
  const late = promoter(L, 7);
  late.r.route(L, { t: "handover", from: L, id: 4, term: 6 } as AgentMsg);
  await flush();
  expect([late.calls.promotions, late.sent.length]).toEqual([0, 0]);
});

test("campaign-now is taken from a voter only (the leader included), never from a non-voting member", () => {
  const { r, log, calls } = promoter();
  r.route(W, { t: "campaign-now", reason: "manual failover" } as AgentMsg);
  expect(calls.campaigns).toBe(0);
  expect(log.lines.some((l) => l.startsWith("warn") && l.includes("not a voter"))).toBe(true);
  r.route(B, { t: "campaign-now", reason: "manual failover" } as AgentMsg);
  r.route(L, { t: "campaign-now", reason: "manual failover" } as AgentMsg);
  expect(calls.campaigns).toBe(2);
});
