// Standbys that can never lead are never synchronous standbys, and vote with a capped position
// once the primary confirmed they no longer acknowledge commits (docs/design.md, "Durability").
import { expect, test } from "bun:test";
import { canLead, capFor, exclusionRecord, heardRecord, keepRecord, knownPromotable, laterMessage, mayNameCannotLead, namedIn, syncCandidates, syncSet, votingPosition, WITHHOLD_STATE_MS, withholdState, type Announcement, type Exclusion } from "../../src/core/sync-exclusion.ts";
import { planDurability, syncNamesFor } from "../../src/core/durability.ts";
import { syncMembers, type FactsSnapshot } from "../../src/core/cluster-facts.ts";

const A = "aaaaaaaaaaaaaaaa", B = "bbbbbbbbbbbbbbbb", C = "cccccccccccccccc";
const pos = (lsn: string, timeline = 1) => ({ timeline, lsn });

test("a node can lead only as a database node without nofailover and with priority > 0", () => {
  expect(canLead({ role: "database", nofailover: false, priority: 100 })).toBe(true);
  expect(canLead({ role: "database", nofailover: true, priority: 100 })).toBe(false);
  expect(canLead({ role: "database", nofailover: false, priority: 0 })).toBe(false);
  expect(canLead({ role: "witness", nofailover: false, priority: 100 })).toBe(false);
});

test("only standbys known promotable may be synchronous: unknown left out, an older peer judged by nofailover", () => {
  expect(knownPromotable(undefined)).toBe(false); // no state message yet
  expect(knownPromotable({ role: "database", nofailover: false, promotable: false, epoch: 1 })).toBe(false); // priority 0
  expect(knownPromotable({ role: "database", nofailover: false, promotable: true, epoch: 1 })).toBe(true);
  expect(knownPromotable({ role: "database", nofailover: false })).toBe(true); // older version: compares fully
  expect(knownPromotable({ role: "database", nofailover: true })).toBe(false);
  expect(knownPromotable({ role: "witness", nofailover: false, promotable: true })).toBe(false);
  const said = new Map([[B, { role: "database" as const, nofailover: true, promotable: false, epoch: 7 }], [C, { role: "database" as const, nofailover: false, promotable: true, epoch: 9 }]]);
  expect(syncCandidates([B, C, A], (id) => said.get(id))).toEqual([C]);
});

test("the primary's facts: sync members are the standby members known promotable", () => {
  const s: FactsSnapshot = {
    self: { id: A, name: "a", role: "database", neverPromoted: false, report: null }, now: 0, startedAt: 0, freshMs: 5000,
    voters: [A, B, C], leader: A, peers: [],
    reports: new Map([[B, { report: null, role: "database", at: 0, nofailover: true, promotable: false, epoch: 3 }], [C, { report: null, role: "database", at: 0, nofailover: false, promotable: true, epoch: 4 }]]),
  };
  expect(syncMembers(s)).toEqual([C]);
});

test("without a standby that may be synchronous, commits still wait (a placeholder name, never '' while failover is allowed)", () => {
  expect(syncNamesFor(1, [])).toBe('ANY 1 ("pgherd_none")');
  expect(syncNamesFor(0, [])).toBe("");
  const base = { mode: "quorum" as const, voters: 3, standbyNames: [] as string[], streaming: ["pgherd_b"], degraded: false, blockCommitted: false, position: pos("0/5000000"), maxLagBytes: 0 };
  // grace period: writes wait, the guard does not block
  const grace = planDurability({ ...base, shortForMs: 100, degradeAfterMs: 3000 });
  expect(grace.guard).toBe("keep");
  expect(grace.syncNames).toBe('ANY 1 ("pgherd_none")');
  // telling the voters first: still waiting
  const telling = planDurability(base);
  expect(telling.guard).toEqual({ block: true, floor: null });
  expect(telling.syncNames).toBe('ANY 1 ("pgherd_none")');
  // a standby that cannot lead streams: it does not count toward k
  expect(planDurability({ ...base, standbyNames: ["pgherd_c"], streaming: ["pgherd_b"], shortForMs: 100, degradeAfterMs: 3000 }).syncNames).toBe('ANY 1 ("pgherd_c")');
  expect(planDurability({ ...base, mode: "strict" }).syncNames).toBe('ANY 1 ("pgherd_none")');
});

test("the leader's record names every standby left out of the names in force, with the epoch it saw; none without confirmed names", () => {
  const names = 'ANY 1 ("pgherd_c")';
  expect(namedIn(names, "pgherd_c")).toBe(true);
  expect(namedIn(names, "pgherd_b")).toBe(false);
  const members = [{ id: B, slot: "pgherd_b", epoch: 7 }, { id: C, slot: "pgherd_c", epoch: 9 }, { id: A, slot: "pgherd_a" }];
  expect(exclusionRecord({ term: 4, at: pos("0/6000000"), names, members })).toEqual({ term: 4, at: pos("0/6000000"), excluded: [{ id: B, epoch: 7 }] });
  expect(exclusionRecord({ term: 4, at: null, names, members })).toBeNull();
  expect(exclusionRecord({ term: 4, at: pos("0/6000000"), names: "", members })).toBeNull();
  expect(exclusionRecord({ term: 4, at: pos("0/6000000"), names: 'ANY 1 ("pgherd_b", "pgherd_c")', members })).toBeNull();
});

const rec: Exclusion = { term: 4, at: pos("0/6000000"), excluded: [{ id: B, epoch: 7 }] };

test("a node that cannot lead caps with its leader's record for its own current epoch only", () => {
  const x = { canLead: false, self: B, epoch: 7, record: { from: A, term: 4, exclusion: rec }, now: { leader: A, term: 4 } };
  expect(capFor(x)).toEqual(pos("0/6000000"));
  expect(capFor({ ...x, canLead: true })).toBeNull(); // a node that can lead never caps
  expect(capFor({ ...x, epoch: 8 })).toBeNull(); // computed for another announcement (an earlier run of this node)
  expect(capFor({ ...x, self: C })).toBeNull();
  expect(capFor({ ...x, record: { from: A, term: 4, exclusion: null } })).toBeNull(); // the leader's latest message carries none
  expect(capFor({ ...x, record: null })).toBeNull();
});

test("a record counts only from the current leader and for this node's current term", () => {
  const held = { from: A, term: 4, exclusion: rec };
  expect(heardRecord(null, A, rec, { leader: A, term: 4 })).toEqual(held);
  // computed in another term than the one this node is in: held as none (full comparison)
  expect(heardRecord(held, A, { ...rec, term: 3 }, { leader: A, term: 4 })).toEqual({ from: A, term: 4, exclusion: null });
  expect(heardRecord(null, A, { ...rec, term: 5 }, { leader: A, term: 4 })?.exclusion).toBeNull();
  // from a node that is not the leader: nothing changes
  expect(heardRecord(held, C, { ...rec, excluded: [{ id: B, epoch: 7 }] }, { leader: A, term: 4 })).toBe(held);
  expect(heardRecord(null, C, rec, { leader: null, term: 5 })).toBeNull();
});

test("the cap holds through the election after its leader's term, and dies once a leader of a later term is heard", () => {
  const held = { from: A, term: 4, exclusion: rec };
  const cap = (now: { leader: string | null; term: number }) => capFor({ canLead: false, self: B, epoch: 7, record: held, now });
  expect(cap({ leader: null, term: 4 })).toEqual(pos("0/6000000"));
  expect(cap({ leader: null, term: 5 })).toEqual(pos("0/6000000")); // voting for the next term
  expect(cap({ leader: null, term: 7 })).toEqual(pos("0/6000000")); // elections that failed: still no leader of a later term
  expect(cap({ leader: C, term: 5 })).toBeNull();
  expect(cap({ leader: A, term: 5 })).toBeNull(); // the same leader in a later term: its primary may name this node now
  expect(keepRecord(held, { leader: C, term: 5 })).toBeNull(); // ... and stays gone when C is gone too
  expect(keepRecord(held, { leader: null, term: 6 })).toBe(held);
  expect(keepRecord(held, { leader: A, term: 4 })).toBe(held);
  expect(keepRecord(held, { leader: C, term: 4 })).toBeNull();
});

test("the voting position is min(position, cap)", () => {
  expect(votingPosition(pos("0/7000000"), pos("0/6000000"))).toEqual(pos("0/6000000"));
  expect(votingPosition(pos("0/5000000"), pos("0/6000000"))).toEqual(pos("0/5000000"));
  expect(votingPosition(pos("0/7000000"), null)).toEqual(pos("0/7000000"));
  expect(votingPosition(pos("0/1000000", 2), pos("0/6000000", 1))).toEqual(pos("0/6000000", 1)); // a later timeline is further
});

// The fill: fewer than k promotable standbys known (every standby nofailover or priority 0).
const D = "dddddddddddddddd";
const run = { id: A, epoch: 11 };
const tagged = (heard?: { leader: string; epoch: number; seq: number }): Announcement => ({ role: "database", nofailover: true, promotable: false, epoch: 7, ...(heard ? { heard } : {}) });
const promotable: Announcement = { role: "database", nofailover: false, promotable: true, epoch: 9 };

test("the fill: standbys that cannot lead are named only when fewer than k promotable standbys are known", () => {
  const said = new Map<string, Announcement>([[B, tagged({ leader: A, epoch: 11, seq: 3 })], [C, promotable]]);
  const set = (k: number, m = said) => syncSet({ k, members: [B, C, D], announced: (id) => m.get(id), run, lastNamed: () => undefined });
  // k = 1, one promotable standby known: no fill (the rule of 74fa051 stands)
  expect(set(1)).toEqual({ names: [C], wanted: [], pending: [] });
  // k = 2 with one promotable: B fills (its echo is fresh); D is unknown, never named
  expect(set(2)).toEqual({ names: [C, B], wanted: [B], pending: [] });
  // both standbys nofailover (primary + two tagged replicas, or + DR replica + witness): before, ANY 1 ("pgherd_none") for good
  const both = new Map<string, Announcement>([[B, tagged({ leader: A, epoch: 11, seq: 3 })], [C, tagged()]]);
  expect(set(1, both)).toEqual({ names: [B], wanted: [B, C], pending: [C] });
  expect(set(0, both)).toEqual({ names: [], wanted: [], pending: [] });
  // a witness is never a standby
  const witness = new Map<string, Announcement>([[B, { role: "witness", nofailover: false, promotable: false, epoch: 2 }]]);
  expect(set(1, witness).names).toEqual([]);
});

test("only reporting promotable standbys count toward k: a dead one stays named, the fill adds those that cannot lead", () => {
  const said = new Map<string, Announcement>([[B, tagged({ leader: A, epoch: 11, seq: 3 })], [C, promotable]]);
  const set = (up: string[]) => syncSet({ k: 1, members: [B, C], announced: (id) => said.get(id), run, lastNamed: () => undefined, reporting: (id) => up.includes(id) });
  expect(set([B, C])).toEqual({ names: [C], wanted: [], pending: [] });
  expect(set([B])).toEqual({ names: [C, B], wanted: [B], pending: [] });
  // a wanted standby that no longer reports is not waited for (it cannot echo)
  const both = new Map<string, Announcement>([[B, tagged()], [C, tagged()]]);
  const bothSet = (up: string[]) => syncSet({ k: 1, members: [B, C], announced: (id) => both.get(id), run, lastNamed: () => undefined, reporting: (id) => up.includes(id) });
  expect(bothSet([B])).toEqual({ names: [], wanted: [B, C], pending: [B] });
});

test("a new run of a standby that cannot lead keeps its state messages back until its echo, bounded", () => {
  const x = { canLead: false, role: "database" as const, echoed: false, sinceStartMs: 100 };
  expect(withholdState(x)).toBe(true);
  expect(withholdState({ ...x, echoed: true })).toBe(false);
  expect(withholdState({ ...x, sinceStartMs: WITHHOLD_STATE_MS })).toBe(false);
  expect(withholdState({ ...x, canLead: true })).toBe(false);
  expect(withholdState({ ...x, role: "witness" })).toBe(false);
});

test("the fill waits while a standby member is not heard yet (it may be promotable)", () => {
  const said = new Map<string, Announcement>([[B, tagged({ leader: A, epoch: 11, seq: 3 })]]);
  const set = (hearing: boolean) => syncSet({ k: 1, members: [B, C], announced: (id) => said.get(id), run, lastNamed: () => undefined, hearing });
  expect(set(true)).toEqual({ names: [], wanted: [B], pending: [B] });
  expect(set(false)).toEqual({ names: [B], wanted: [B], pending: [] });
});

test("the fill never names a standby that cannot lead without a fresh echo of this leader run", () => {
  expect(mayNameCannotLead(tagged(), run, undefined)).toBe(false); // never processed a message of ours
  expect(mayNameCannotLead(tagged({ leader: C, epoch: 11, seq: 50 }), run, undefined)).toBe(false); // another leader's message last
  expect(mayNameCannotLead(tagged({ leader: A, epoch: 10, seq: 50 }), run, undefined)).toBe(false); // an earlier run of this leader (its record may linger)
  expect(mayNameCannotLead(tagged({ leader: A, epoch: 11, seq: 5 }), run, 5)).toBe(false); // the message it processed last named it
  expect(mayNameCannotLead(tagged({ leader: A, epoch: 11, seq: 4 }), run, 5)).toBe(false);
  expect(mayNameCannotLead(tagged({ leader: A, epoch: 11, seq: 6 }), run, 5)).toBe(true); // processed a later one, which did not name it
  expect(mayNameCannotLead(tagged({ leader: A, epoch: 11, seq: 1 }), run, undefined)).toBe(true); // no message of this run named it
  expect(mayNameCannotLead({ role: "database", nofailover: true }, run, 99)).toBe(true); // an older peer never caps
  // not leading (no run): only older peers
  const said = new Map<string, Announcement>([[B, tagged({ leader: A, epoch: 11, seq: 3 })], [C, { role: "database", nofailover: true }]]);
  expect(syncSet({ k: 1, members: [B, C], announced: (id) => said.get(id), run: null, lastNamed: () => undefined }).names).toEqual([C]);
});

test("the record leaves out every standby the fill wants, so that it drops its cap and can be named", () => {
  const members = [{ id: B, slot: "pgherd_b", epoch: 7 }, { id: C, slot: "pgherd_c", epoch: 8 }];
  const names = 'ANY 1 ("pgherd_none")';
  expect(exclusionRecord({ term: 4, at: pos("0/6000000"), names, members })?.excluded).toEqual([{ id: B, epoch: 7 }, { id: C, epoch: 8 }]);
  expect(exclusionRecord({ term: 4, at: pos("0/6000000"), names, members, keepOut: [B] })?.excluded).toEqual([{ id: C, epoch: 8 }]);
  expect(exclusionRecord({ term: 4, at: pos("0/6000000"), names, members, keepOut: [B, C] })).toBeNull();
});

test("a standby drops its cap on the leader's next message without it, and ignores an older message arriving late", () => {
  const now = { leader: A, term: 4 };
  const capOf = (r: ReturnType<typeof heardRecord>) => capFor({ canLead: false, self: B, epoch: 7, record: r, now });
  let held = heardRecord(null, A, rec, now); // seq 5: the record names B
  let echo = { leader: A, epoch: 11, seq: 5 };
  expect(capOf(held)).toEqual(pos("0/6000000"));
  expect(laterMessage(echo, A, 11, 6)).toBe(true);
  held = heardRecord(held, A, null, now); // seq 6: the fill wants B, the record leaves it out
  echo = { leader: A, epoch: 11, seq: 6 };
  expect(capOf(held)).toBeNull();
  expect(mayNameCannotLead(tagged(echo), run, 5)).toBe(true);
  // seq 5 delivered again late (another connection): ignored, or B would cap again while named
  expect(laterMessage(echo, A, 11, 5)).toBe(false);
  expect(laterMessage(echo, A, 11, 6)).toBe(false);
  expect(laterMessage(echo, A, 12, 1)).toBe(true); // the leader's next run
  expect(laterMessage({ leader: A, epoch: 12, seq: 1 }, A, 11, 9)).toBe(false); // a late frame of its run before (same term after a restart)
  expect(laterMessage(echo, C, 3, 1)).toBe(true);
  expect(laterMessage(echo, A, undefined, undefined)).toBe(true); // an older leader: no numbers
  expect(laterMessage(null, A, 11, 1)).toBe(true);
});
