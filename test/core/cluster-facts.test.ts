// Cluster facts derived from what an agent heard: one test per rule.
import { describe, expect, test } from "bun:test";
import * as F from "../../src/core/cluster-facts.ts";
import { HEAR_STANDBYS_MS } from "../../src/core/durability.ts";
import type { PgReport } from "../../src/core/report.ts";

const rep = (over: Partial<PgReport> = {}): PgReport => ({
  port: 5432, data: "present", systemId: "1", running: true, up: true, inRecovery: true,
  position: { timeline: 1, lsn: "0/3000000" }, receiveLsn: null, replayLsn: null, upstream: null,
  streaming: true, replication: [], slots: [], action: "standby", note: "", error: null, haveSecrets: true, ...over,
} as PgReport);

function snap(over: Partial<F.FactsSnapshot> = {}): F.FactsSnapshot {
  return {
    self: { id: "a", name: "n1", role: "database", neverPromoted: false, report: rep({ inRecovery: false }) },
    now: 100_000, startedAt: 0, freshMs: 5000, voters: ["a", "b", "c"], leader: "b",
    reports: new Map([
      ["b", { report: rep({ inRecovery: false, port: 5433 }), role: "database", at: 99_000, nofailover: false }],
      ["c", { report: rep(), role: "database", at: 90_000, nofailover: true }],
    ]),
    peers: [
      { id: "b", name: "n2", role: "database", mesh: "10.0.0.2:7401", address: "10.0.0.2", connected: true },
      { id: "c", name: "n3", role: "database", mesh: "[fd00::3]:7401", address: "fd00::3", connected: true },
      { id: "d", name: "n4", role: "database", mesh: "10.0.0.4:7401", address: "", connected: false },
      { id: "w", name: "wit", role: "witness", mesh: "10.0.0.9:7401", address: "10.0.0.9", connected: true },
    ],
    ...over,
  };
}

describe("cluster facts", () => {
  test("joinBlocker: a database node becomes a voter only once its report shows an empty data directory or this cluster's; a witness at once (review)", () => {
    const with_ = (r: PgReport | null, role: "database" | "witness" = "database") => snap({ reports: new Map([["d", { report: r, role, at: 99_000, nofailover: false }]]) });
    expect(F.joinBlocker(snap(), "d", "1")).toBe("no report of its data directory yet");
    expect(F.joinBlocker(with_(null), "d", "1")).toBe("no report of its data directory yet");
    expect(F.joinBlocker(with_(rep({ data: "empty", systemId: null })), "d", "1")).toBeNull();
    expect(F.joinBlocker(with_(rep({ systemId: "1" })), "d", "1")).toBeNull();
    // It holds no secrets yet, so it says "present" for another cluster's data: its system identifier tells
    expect(F.joinBlocker(with_(rep({ systemId: "9" })), "d", "1")).toContain("another cluster (system identifier 9, this cluster's is 1)");
    expect(F.joinBlocker(with_(rep({ data: "foreign", systemId: "9" })), "d", "1")).toContain("another cluster");
    expect(F.joinBlocker(with_(rep({ systemId: "9" })), "d", null)).toContain("not recorded yet");
    expect(F.joinBlocker(with_(rep({ systemId: null, running: false, up: false })), "d", "1")).toContain("not known yet");
    expect(F.joinBlocker(with_(rep({ data: "unknown", systemId: null })), "d", "1")).toContain("no pg_control");
    expect(F.joinBlocker(with_(null, "witness"), "d", "1")).toBeNull();
    expect(F.joinBlocker(snap(), "w", "1")).toBeNull(); // a witness known by its beacon
  });
  test("a report is fresh for freshMs; at least 5 s, five monitoring rounds", () => {
    expect(F.freshMs(500)).toBe(5000);
    expect(F.freshMs(2000)).toBe(10_000);
    const s = snap();
    expect(F.freshReport(s, "b")?.port).toBe(5433);
    expect(F.freshReport(s, "c")).toBeNull();
    expect(F.freshReport(s, "a")).toBe(s.self.report);
  });
  test("down for: 0 while reporting, the report's age after, since start when never heard", () => {
    const s = snap();
    expect(F.downForMs(s, "b")).toBe(0);
    expect(F.downForMs(s, "c")).toBe(10_000);
    expect(F.downForMs(s, "x")).toBe(100_000);
  });
  test("a slot's idle time: the member down; or, while its reports cannot read its data, since the first such report; a member that reports otherwise is here whatever its server does", () => {
    const unknown = rep({ running: false, up: false, data: "unknown", action: "refuse" });
    let held: F.PeerReport | undefined;
    const report = (r: PgReport, at: number) => (held = { report: r, role: "database", at, nofailover: false, ...(F.unreadableSince(held, r, at) !== undefined ? { unreadableSince: F.unreadableSince(held, r, at) } : {}) });
    const idle = (now: number) => F.slotIdleForMs(snap({ now, reports: new Map([["b", held!]]) }), "b");
    report(rep(), 10_000);
    expect(idle(11_000)).toBe(0);
    report(unknown, 20_000);
    report(unknown, 21_000);
    expect(idle(22_000)).toBe(2_000); // from the first report of data it cannot read
    report(unknown, 20_000 + 31 * 60_000);
    expect(idle(20_000 + 31 * 60_000)).toBe(31 * 60_000);
    report(rep(), 20_000 + 32 * 60_000);
    expect(idle(20_000 + 32 * 60_000)).toBe(0);
    // A stopped server that reports (waiting for its slot, paused, cloning, rewinding, starting): here
    // (re-review: a long clone lost its slot, a returning standby waited for one that never came).
    for (const r of [rep({ running: false, up: false, action: "wait" }), rep({ running: false, up: false, data: "empty", action: "clone" }), rep({ running: false, up: false, action: "rewind" }), rep({ running: false, up: false, action: "start-standby", error: "could not start" })]) {
      held = undefined;
      for (let t = 0; t <= 40 * 60_000; t += 60_000) report(r, t);
      expect(idle(40 * 60_000)).toBe(0);
    }
  });

  test("a member whose data the last report could not read keeps its existing slot (not made, not dropped as gone)", () => {
    const unknown = snap({ reports: new Map([["b", { report: rep({ data: "unknown", running: false }), role: "database", at: 99_000, nofailover: false }]]) });
    expect(F.slotKeptMembers(unknown)).toEqual(["b"]);
    expect(F.slotKeptMembers(snap())).toEqual([]);
  });

  test("standby members: voters but ourselves, witnesses, and data they refuse (foreign, unreadable)", () => {
    const s = snap({ voters: ["a", "b", "c", "w"] });
    expect(F.standbyMembers(s)).toEqual(["b", "c"]);
    const foreign = snap({ reports: new Map([["b", { report: rep({ data: "foreign" }), role: "database", at: 99_000, nofailover: false }]]) });
    expect(F.standbyMembers(foreign)).toEqual(["c"]);
    const unknown = snap({ reports: new Map([["b", { report: rep({ data: "unknown" }), role: "database", at: 99_000, nofailover: false }]]) });
    expect(F.standbyMembers(unknown)).toEqual(["c"]); // its data refused until an operator acts: no slot holding WAL meanwhile
    expect(F.reachableStandbys(s)).toBe(1);
  });

  test("unheard standbys: members without a state message since this agent started", () => {
    expect(F.unheardStandbys(snap({ voters: ["a", "b", "c", "d", "w"] }))).toEqual(["d"]);
    expect(F.unheardStandbys(snap({ reports: new Map() }))).toEqual(["b", "c"]);
  });
  test("a peer's state message older than the report held (a late frame, or of its previous run) is dropped, also after a silence", () => {
    const held = { report: rep(), role: "database" as const, at: 1000, nofailover: false, epoch: 12, seq: 4 };
    expect(F.newerReport(held, "b", { epoch: 12, seq: 5 })).toBe(true);
    expect(F.newerReport(held, "b", { epoch: 13, seq: 1 })).toBe(true); // its next run
    expect(F.newerReport(held, "b", { epoch: 12, seq: 4 })).toBe(false);
    expect(F.newerReport(held, "b", { epoch: 11, seq: 90 })).toBe(false); // its previous run, delivered late
    expect(F.newerReport(held, "b", {})).toBe(true); // an older version numbers nothing
    expect(F.newerReport(undefined, "b", { epoch: 1, seq: 1 })).toBe(true);
  });
  test("the fill counts a promotable standby while it reports, whatever its connection; not once its report is stale", () => {
    const tagged = { report: rep(), role: "database" as const, at: 99_000, nofailover: true, promotable: false, epoch: 7, heard: { leader: "a", epoch: 11, seq: 3 } };
    const prom = (at: number) => ({ report: rep(), role: "database" as const, at, nofailover: false, promotable: true, epoch: 9 });
    const s = (at: number, connected: boolean) => snap({
      voters: ["a", "b", "c"], reports: new Map([["b", prom(at)], ["c", tagged]]),
      peers: snap().peers.map((p) => (p.id === "b" ? { ...p, connected } : p)),
    });
    const set = (at: number, connected: boolean) => F.syncSet(s(at, connected), { k: 1, run: { id: "a", epoch: 11 }, lastNamed: () => undefined }).names;
    expect(set(99_000, false)).toEqual(["b"]); // its link dropped (an agent restart, a blip): still counted
    expect(set(90_000, true)).toEqual(["b", "c"]); // silent for freshMs: the tagged standby fills in
  });
  test("the fill waits for unheard standby members within HEAR_STANDBYS_MS of the agent's start", () => {
    // b and c cannot lead, d is a member not heard yet: k = 1 is short of promotable standbys
    const tagged = { report: rep(), role: "database" as const, at: 99_000, nofailover: true, promotable: false, epoch: 7, heard: { leader: "a", epoch: 11, seq: 3 } };
    const s = (now: number) => snap({ now, voters: ["a", "b", "c", "d"], reports: new Map([["b", tagged], ["c", tagged]]) });
    const set = (now: number) => F.syncSet(s(now), { k: 1, run: { id: "a", epoch: 11 }, lastNamed: () => undefined });
    expect(set(HEAR_STANDBYS_MS - 1)).toEqual({ names: [], wanted: ["b", "c"], pending: ["b", "c"] });
    expect(set(HEAR_STANDBYS_MS)).toEqual({ names: ["b", "c"], wanted: ["b", "c"], pending: [] });
  });
  test("reachable standbys: a fresh report over a live mesh connection; a crashed host's fresh last report does not count", () => {
    const s = snap({ voters: ["a", "b", "c"] });
    expect(F.reachableStandbys(s)).toBe(1); // b: fresh and connected; c: stale
    const gone = snap({ voters: ["a", "b", "c"], peers: s.peers.map((p) => (p.id === "b" ? { ...p, connected: false } : p)) });
    expect(F.downForMs(gone, "b")).toBe(0);
    expect(F.reachableStandbys(gone)).toBe(0);
  });
  test("the leader's PostgreSQL: the authenticated address only (IPv6 bracketed), its port", () => {
    expect(F.leaderPg(snap())?.addr).toBe("10.0.0.2:5433");
    const s = snap({ leader: "c", reports: new Map([["c", { report: rep({ inRecovery: false }), role: "database", at: 99_000, nofailover: false }]]) });
    expect(F.leaderPg(s)?.addr).toBe("[fd00::3]:5432");
    expect(F.leaderPg(snap({ leader: "a" }))).toBeNull();
    expect(F.leaderPg(snap({ leader: null }))).toBeNull();
    // A peer known by beacon alone has no address to trust: no upstream, no pg_hba line.
    const d = snap({ leader: "d", reports: new Map([["d", { report: rep({ inRecovery: false }), role: "database", at: 99_000, nofailover: false }]]) });
    expect(F.leaderPg(d)).toBeNull();
  });
  test("nobody has data only when every voter freshly reported an empty directory and is not creating one", () => {
    const empty = (action = "wait") => ({ report: rep({ data: "empty", action }), role: "database" as const, at: 99_000, nofailover: false });
    expect(F.nobodyHasData(snap({ reports: new Map([["b", empty()], ["c", empty()]]) }))).toBe(true);
    expect(F.nobodyHasData(snap({ reports: new Map([["b", empty()], ["c", empty("clone")]]) }))).toBe(false);
    expect(F.nobodyHasData(snap({ reports: new Map([["b", empty()]]) }))).toBe(false);
    expect(F.othersHaveData(snap())).toBe(true);
    expect(F.othersHaveData(snap({ reports: new Map([["b", empty()]]) }))).toBe(false);
  });
  test("a candidate whose agent is not connected has no report, however fresh its last one", () => {
    const s = snap({ reports: new Map([["d", { report: rep(), role: "database", at: 99_900, nofailover: false }]]) });
    expect(F.freshReport(s, "d")).not.toBeNull();
    expect(F.candidates(s).find((c) => c.id === "d")?.report).toBeNull();
  });
  test("candidates carry names, witness and nofailover flags, fresh reports only", () => {
    const c = F.candidates(snap());
    expect(c.map((x) => [x.name, x.voter, x.witness, x.neverPromoted, x.report !== null])).toEqual([
      ["n1", true, false, false, true], ["n2", true, false, false, true], ["n3", true, false, true, false], ["n4", false, false, false, false], ["wit", false, true, false, false],
    ]);
    // Priority 0 is announced as promotable: false (no tag): such a node is never a target either.
    // Found by review: a leader resigning to it waited a whole election timeout for a random winner.
    const zero = snap({ reports: new Map([["b", { report: rep(), role: "database", at: 99_000, nofailover: false, promotable: false }]]) });
    expect(F.candidates(zero).find((x) => x.id === "b")?.neverPromoted).toBe(true);
    const older = snap({ reports: new Map([["b", { report: rep(), role: "database", at: 99_000, nofailover: false }]]) });
    expect(F.candidates(older).find((x) => x.id === "b")?.neverPromoted).toBe(false); // an older peer without the field
  });
  test("this node's slot created: only an edge between two reports of the leader, from without it to with it", () => {
    const without = rep({ slots: ["pgherd_c"] });
    const withIt = rep({ slots: ["pgherd_c", "pgherd_b"] });
    expect(F.leaderSlotCreated(without, withIt, "pgherd_b")).toBe(true);
    expect(F.leaderSlotCreated(withIt, withIt, "pgherd_b")).toBe(false); // nothing changed
    expect(F.leaderSlotCreated(without, withIt, "pgherd_d")).toBe(false); // another node's slot
    expect(F.leaderSlotCreated(withIt, without, "pgherd_b")).toBe(false); // dropped: nothing to wait for
    expect(F.leaderSlotCreated(undefined, withIt, "pgherd_b")).toBe(false); // a first report kicks the loop anyway
    expect(F.leaderSlotCreated(without, null, "pgherd_b")).toBe(false);
  });
  test("the leader's primary is back: only an edge from a report of its server down to one of it writable", () => {
    const down = rep({ up: false, running: false, inRecovery: null });
    const primary = rep({ inRecovery: false });
    expect(F.leaderPrimaryBack(down, primary)).toBe(true);
    expect(F.leaderPrimaryBack(rep({ up: false, running: true, inRecovery: null }), primary)).toBe(true); // running, in crash recovery before
    expect(F.leaderPrimaryBack(rep({ inRecovery: true }), primary)).toBe(false); // a promotion: its standbys re-point
    expect(F.leaderPrimaryBack(down, rep({ inRecovery: true }))).toBe(false); // back as a standby: nothing to stream from
    expect(F.leaderPrimaryBack(primary, primary)).toBe(false); // nothing changed
    expect(F.leaderPrimaryBack(down, down)).toBe(false);
    expect(F.leaderPrimaryBack(primary, down)).toBe(false); // it went down: nothing to stream from
    expect(F.leaderPrimaryBack(down, null)).toBe(false);
    // A first report (a connection just made), or none before: no stream is known to have broken.
    expect(F.leaderPrimaryBack(undefined, primary)).toBe(false);
    expect(F.leaderPrimaryBack(null, primary)).toBe(false);
  });
});
