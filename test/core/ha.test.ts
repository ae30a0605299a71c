// The HA decision table, one case per rule.
import { describe, expect, test } from "bun:test";
import { controlSaysPrimary, dataWasPrimary, decideHa, failureMayLeavePrimary, followsLeader, type HaInput, roundAgainAfter, waitsForBackoff } from "../../src/core/ha.ts";

const base: HaInput = {
  witness: false, leading: false, acquiringLease: false,
  leader: { id: "L", addr: "10.0.0.1:5432", primaryReady: true, slotReady: true, timeline: 2, checkpointTimeline: 2 },
  local: { data: "present", systemId: "7", running: true, up: true, inRecovery: true, upstream: "10.0.0.1:5432", wasPrimary: false, timeline: 2, stuck: false },
  clusterSystemId: "7", haveSecrets: true, nobodyHasData: false, othersHaveData: false, member: true, fromExisting: false,
  rejoinAuto: true, rejoinRequested: null, paused: false,
};
const lead = (over: Partial<HaInput> = {}, local: Partial<HaInput["local"]> = {}): HaInput => ({ ...base, leading: true, leader: null, ...over, local: { ...base.local, ...local } });
const follow = (over: Partial<HaInput> = {}, local: Partial<HaInput["local"]> = {}): HaInput => ({ ...base, ...over, local: { ...base.local, ...local } });

describe("leader", () => {
  test("initdb only when no voter has data and the cluster never had any", () => {
    const empty = { data: "empty", systemId: null, running: false, up: false, inRecovery: null } as const;
    expect(decideHa(lead({ clusterSystemId: null, nobodyHasData: true }, empty))).toEqual({ kind: "initdb" });
    expect(decideHa(lead({ clusterSystemId: null, nobodyHasData: false }, empty)).kind).toBe("wait");
    expect(decideHa(lead({ clusterSystemId: "7" }, empty)).kind).toBe("resign");
    // a leader cut off during initdb may have created data: the empty leader gives way to it
    expect(decideHa(lead({ clusterSystemId: null, othersHaveData: true }, empty)).kind).toBe("resign");
  });
  test("starts, promotes, or leaves a healthy primary alone", () => {
    expect(decideHa(lead({}, { running: false, up: false, wasPrimary: true }))).toEqual({ kind: "start-primary", adopt: false });
    expect(decideHa(lead({}, { inRecovery: true }))).toEqual({ kind: "promote" });
    expect(decideHa(lead({}, { inRecovery: false }))).toEqual({ kind: "none", role: "primary" });
  });
  test("a stopped former primary restarts in place only when no reservation went past its timeline; otherwise it is promoted", () => {
    const stopped = { running: false, up: false, inRecovery: null, wasPrimary: true, timeline: 3 } as const;
    expect(decideHa(lead({}, stopped))).toEqual({ kind: "start-primary", adopt: false }); // no reservation known (older clusters)
    expect(decideHa(lead({ reservedTimeline: 3 }, stopped))).toEqual({ kind: "start-primary", adopt: false }); // its own promotion's
    // Another leader reserved 4 (and may have promoted to it, cut off before anyone followed):
    // writing on timeline 3 again would compare as part of that history, or ahead of it.
    expect(decideHa(lead({ reservedTimeline: 4 }, stopped))).toEqual({ kind: "start-standby", upstream: null, ownTimeline: 3 });
    expect(decideHa(lead({ reservedTimeline: 4 }, { ...stopped, timeline: null }))).toEqual({ kind: "start-standby", upstream: null });
    // the first primary of a cluster being adopted has no reservation to go past
    expect(decideHa(lead({ clusterSystemId: null, fromExisting: true, nobodyHasData: true, reservedTimeline: 4 }, { ...stopped, systemId: "9" }))).toEqual({ kind: "start-primary", adopt: true });
  });
  test("a stopped standby's data is started as a standby without an upstream, then promoted: never as a primary on the old timeline", () => {
    // Without standby.signal PostgreSQL would finish crash recovery on the old primary's timeline:
    // same timeline, same LSNs as the old primary's unacknowledged WAL, different data.
    expect(decideHa(lead({}, { running: false, up: false, inRecovery: null, wasPrimary: false }))).toEqual({ kind: "start-standby", upstream: null });
    expect(decideHa(lead({ prePromote: "unchecked" }, { running: false, up: false, inRecovery: null, wasPrimary: false }))).toEqual({ kind: "start-standby", upstream: null });
    // running in recovery under the leader: the promotion (pre_promote first) opens a new timeline
    expect(decideHa(lead({ prePromote: "unchecked" }, { running: true, up: true, inRecovery: true, upstream: null }))).toEqual({ kind: "check-promote" });
    expect(decideHa(lead({}, { running: true, up: true, inRecovery: true, upstream: null }))).toEqual({ kind: "promote" });
    // paused: only a human's `failover --to` this node starts it (then promotes it)
    expect(decideHa(lead({ paused: true }, { running: false, up: false, inRecovery: null, wasPrimary: false })).kind).toBe("wait");
    expect(decideHa(lead({ paused: true, promotionRequested: true }, { running: false, up: false, inRecovery: null, wasPrimary: false }))).toEqual({ kind: "start-standby", upstream: null });
  });
  test("adopts a standalone server only with bootstrap.from_existing", () => {
    expect(decideHa(lead({ clusterSystemId: null }, { running: false })).kind).toBe("refuse");
    expect(decideHa(lead({ clusterSystemId: null, fromExisting: true, nobodyHasData: true }, { running: false }))).toEqual({ kind: "start-primary", adopt: true });
    expect(decideHa(lead({ clusterSystemId: null, fromExisting: true, nobodyHasData: true }, { inRecovery: false }))).toEqual({ kind: "none", role: "primary" }); // running: kept, its identity recorded
  });
  test("bootstrap.from_existing adopts only while every other voter reported an empty data directory (review: a second host with data, given from_existing too, was adopted and the real primary rewound onto it)", () => {
    // Another voter has data (a replica of this server, another copy): refused, nothing started or promoted.
    for (const local of [{ running: false, up: false, inRecovery: null }, { inRecovery: false }, { inRecovery: true }] as const) {
      expect(decideHa(lead({ clusterSystemId: null, fromExisting: true, othersHaveData: true }, local))).toMatchObject({ kind: "refuse", reason: expect.stringContaining("only one server may be adopted") });
    }
    // A voter not heard from (or not fresh) yet: waited for.
    expect(decideHa(lead({ clusterSystemId: null, fromExisting: true }, { inRecovery: true }))).toMatchObject({ kind: "wait", reason: expect.stringContaining("before adopting") });
    // Once adopted (the identity recorded), the others' data no longer matters here.
    expect(decideHa(lead({ fromExisting: true, othersHaveData: true }, { inRecovery: false }))).toEqual({ kind: "none", role: "primary" });
  });
  test("a leader whose data directory it did not create is refused also while the other voters' are empty; one it created (initdb, then a failed start) goes on (review)", () => {
    // Review: once every other voter reported an empty directory, a stray cluster in data_dir (a
    // distribution's default cluster, an old database) was started and made the cluster's primary.
    const stray = { systemId: "9", wasPrimary: true, upstream: null } as const;
    expect(decideHa(lead({ clusterSystemId: null, nobodyHasData: true }, { ...stray, running: false, up: false, inRecovery: null }))).toMatchObject({ kind: "refuse", reason: expect.stringContaining("did not create") });
    expect(decideHa(lead({ clusterSystemId: null, nobodyHasData: true }, { ...stray, inRecovery: false }))).toMatchObject({ kind: "refuse" }); // running: not made the primary either
    const created = { ...stray, createdHere: true } as const;
    expect(decideHa(lead({ clusterSystemId: null, nobodyHasData: true }, { ...created, running: false, up: false, inRecovery: null }))).toEqual({ kind: "start-primary", adopt: false });
    expect(decideHa(lead({ clusterSystemId: null, nobodyHasData: true }, { ...created, inRecovery: false }))).toEqual({ kind: "none", role: "primary" });
    // another voter has data (or creates it): this node's own creation gives way as before
    expect(decideHa(lead({ clusterSystemId: null, nobodyHasData: false }, { ...created, running: false, up: false, inRecovery: null })).kind).toBe("refuse");
  });
  test("a primary that cannot work (stuck, disk full, cannot write) makes its leader resign, handing over to the successor", () => {
    for (const state of ["stuck", "disk-full", "cannot-write"] as const) {
      const d = decideHa(lead({ successor: "S2" }, { inRecovery: null, up: state !== "stuck", health: { state, reason: "why" } }));
      expect(d).toEqual({ kind: "resign", reason: `PostgreSQL ${state}: why`, to: "S2" });
    }
    expect(decideHa(lead({ successor: null }, { health: { state: "stuck", reason: "x" } }))).toEqual({ kind: "resign", reason: "PostgreSQL stuck: x" });
    // busy or ok: nothing; a server that does not answer yet (not judged stuck) is waited for, within the verdict's bound
    expect(decideHa(lead({}, { inRecovery: false, health: { state: "busy", reason: "slow" } }))).toEqual({ kind: "none", role: "primary" });
    expect(decideHa(lead({}, { up: false, inRecovery: null, health: { state: "busy", reason: "slow" } })).kind).toBe("wait");
    // maintenance mode: no automatic failover
    expect(decideHa(lead({ paused: true }, { health: { state: "stuck", reason: "x" } })).kind).toBe("wait");
  });
  test("a stopped primary on a full disk is not restarted in place: the leader resigns", () => {
    expect(decideHa(lead({ successor: "S2" }, { running: false, up: false, diskFull: "data file system /pg: 0 B free" }))).toMatchObject({ kind: "resign", to: "S2" });
    expect(decideHa(lead({}, { running: false, up: false, diskFull: null, wasPrimary: true })).kind).toBe("start-primary");
  });
  test("a full disk with no standby streaming to take over: no resign, which would stop the server and lead again (review: a loop that never started it, its temporary files never removed)", () => {
    // running: left running, said why
    const d = decideHa(lead({ successor: null }, { inRecovery: false, health: { state: "disk-full", reason: "data file system /pg: 1.0 MB free" } }));
    expect(d).toEqual({ kind: "wait", reason: expect.stringContaining("no standby runs to take over") });
    // stopped: started (its start removes the temporary files of the queries the stop ended)
    expect(decideHa(lead({ successor: null }, { running: false, up: false, wasPrimary: true, diskFull: "data file system /pg: 0 B free" })).kind).toBe("start-primary");
    // a standby that runs but does not stream (none streams from a stopped primary: re-review) can take over: resign
    const stoppedFull = { running: false, up: false, wasPrimary: true, diskFull: "data file system /pg: 0 B free" } as const;
    expect(decideHa(lead({ successor: null, takeoverPossible: true }, stoppedFull))).toMatchObject({ kind: "resign" });
    expect(decideHa(lead({ successor: null, takeoverPossible: true }, { inRecovery: false, health: { state: "disk-full", reason: "x" } }))).toMatchObject({ kind: "resign" });
    // stuck or unable to write: still resigns (the election may find a standby that holds every write)
    expect(decideHa(lead({ successor: null }, { inRecovery: false, health: { state: "cannot-write", reason: "x" } })).kind).toBe("resign");
  });
  describe("a restore from a backup that has not ended at its target (store/restore-marker.ts)", () => {
    // Review: a bootstrap from a backup whose wait gave up (or whose agent restarted) left a server in
    // archive recovery toward its target; the next round promoted it as a standby, whose files drop
    // the target, and the start after the fence replayed the whole archive, past the target.
    const restoring = (local: Partial<HaInput["local"]>, over: Partial<HaInput> = {}, restore: HaInput["local"]["restore"] = { target: "to 2026-01-31 12:00:00+00" }) =>
      decideHa(lead({ clusterSystemId: null, nobodyHasData: true, haveSecrets: false, ...over }, { systemId: "9", wasPrimary: true, upstream: null, ...local, restore }));
    test("replaying: its own recovery goes on (the shell waits while it advances); never promoted", () => {
      expect(restoring({ running: true, up: true, inRecovery: true })).toEqual({ kind: "resume-restore" });
      expect(restoring({ running: true, up: true, inRecovery: true }, { prePromote: "unchecked" })).toEqual({ kind: "resume-restore" });
      // a human's `failover --to` while paused promotes a standby; a restore stays a restore
      expect(restoring({ running: true, up: true, inRecovery: true }, { paused: true, promotionRequested: true }).kind).toBe("wait");
    });
    test("stopped (an agent or host restart): started again with the same target, never as a primary without it", () => {
      expect(restoring({ running: false, up: false, inRecovery: null })).toEqual({ kind: "resume-restore" });
      expect(restoring({ running: false, up: false, inRecovery: null, wasPrimary: false })).toEqual({ kind: "resume-restore" });
    });
    test("PostgreSQL ended it short of its target: refused, naming why and what to do", () => {
      const failed = { target: "to 2026-01-31 12:00:00+00", failed: "FATAL: recovery ended before configured recovery target was reached" };
      const d = restoring({ running: false, up: false, inRecovery: null }, {}, failed);
      expect(d).toEqual({ kind: "refuse", reason: expect.stringContaining("recovering to 2026-01-31 12:00:00+00") });
      expect((d as { reason: string }).reason).toContain(failed.failed);
      expect((d as { reason: string }).reason).toContain("empty the data directory");
    });
    test("not answering yet (replaying to a consistent state): waited for, not resigned (no other node has data)", () => {
      expect(restoring({ running: true, up: false, inRecovery: null })).toEqual({ kind: "wait", reason: expect.stringContaining("nothing promotes it before its target") });
      expect(restoring({ running: true, up: false, inRecovery: null, health: { state: "stuck", reason: "x" } }).kind).toBe("wait");
    });
    test("out of recovery (PostgreSQL promoted itself at the target): the bootstrap's rest, not a primary without the cluster's identity", () => {
      expect(restoring({ running: true, up: true, inRecovery: false })).toEqual({ kind: "resume-restore" });
      expect(restoring({ running: true, up: true, inRecovery: false }, {}, { target: "to LSN 0/3000060", failed: "x" })).toEqual({ kind: "resume-restore" });
    });
  });
  test("a leader still acquiring its lease leaves the server alone", () => {
    expect(decideHa(follow({ acquiringLease: true, leader: null }, { inRecovery: false })).kind).toBe("wait");
  });
});

describe("follower", () => {
  test("a primary without the lease is fenced, a standalone server awaiting adoption is not", () => {
    expect(decideHa(follow({}, { inRecovery: false })).kind).toBe("fence");
    expect(decideHa(follow({ leader: null }, { inRecovery: false })).kind).toBe("fence");
    expect(decideHa(follow({ leader: null, member: false, clusterSystemId: null }, { inRecovery: false })).kind).toBe("fence");
    expect(decideHa(follow({ leader: null, member: false, clusterSystemId: null, fromExisting: true }, { inRecovery: false })).kind).toBe("wait");
  });
  test("clones only from a ready primary with its slot, as a member with credentials", () => {
    const empty = { data: "empty", systemId: null, running: false, up: false, inRecovery: null } as const;
    expect(decideHa(follow({}, empty))).toEqual({ kind: "clone", from: "10.0.0.1:5432" });
    expect(decideHa(follow({ member: false }, empty)).kind).toBe("wait");
    expect(decideHa(follow({ haveSecrets: false }, empty)).kind).toBe("wait");
    expect(decideHa(follow({ leader: { ...base.leader!, primaryReady: false } }, empty)).kind).toBe("wait");
    expect(decideHa(follow({ leader: { ...base.leader!, slotReady: false } }, empty)).kind).toBe("wait");
  });
  test("starts as a standby of the leader, repoints when the leader moved", () => {
    expect(decideHa(follow({}, { running: false, up: false }))).toEqual({ kind: "start-standby", upstream: "10.0.0.1:5432" });
    expect(decideHa(follow({}, { upstream: "10.0.0.9:5432" }))).toEqual({ kind: "repoint", upstream: "10.0.0.1:5432" });
    expect(decideHa(follow())).toEqual({ kind: "none", role: "standby" });
  });
  test("a standby whose replay paused for settings its primary raised is restarted (only a restart raises them); paused, it waits", () => {
    expect(decideHa(follow({}, { replayPausedFor: ["max_connections"] }))).toEqual({ kind: "restart-standby", reason: "replay paused: the primary runs max_connections higher than this standby, which only a restart raises" });
    expect(decideHa(follow({}, { replayPausedFor: [] }))).toEqual({ kind: "none", role: "standby" }); // paused by someone: left alone
    expect(decideHa(follow({ paused: true }, { replayPausedFor: ["max_connections"] })).kind).toBe("wait");
    // The leader's own paused standby: restarted before the promotion (pg_promote would wait and fail).
    const standbyHere = { inRecovery: true, replayPausedFor: ["max_wal_senders"] };
    expect(decideHa(lead({}, standbyHere)).kind).toBe("restart-standby");
    expect(decideHa(lead({ paused: true, promotionRequested: true }, standbyHere)).kind).toBe("restart-standby");
    expect(decideHa(lead({}, { inRecovery: true, replayPausedFor: [] })).kind).toBe("promote");
    // Followers paused together restart in turn: each after its stagger (a leader never waits).
    expect(decideHa(follow({ restartStagger: 10_000 }, { replayPausedFor: ["max_connections"], replayPausedMs: 4_000 }))).toMatchObject({ kind: "wait", reason: expect.stringContaining("restarting in turn, in 6 s") });
    expect(decideHa(follow({ restartStagger: 10_000 }, { replayPausedFor: ["max_connections"], replayPausedMs: 10_000 })).kind).toBe("restart-standby");
    expect(decideHa(lead({ restartStagger: 10_000 }, { ...standbyHere, replayPausedMs: 0 })).kind).toBe("restart-standby");
  });
  test("a former primary is rewound before it follows (pg_rewind decides whether anything diverged)", () => {
    const former = { running: false, up: false, inRecovery: null, wasPrimary: true, timeline: 1 } as const;
    expect(decideHa(follow({}, former))).toEqual({ kind: "rewind", from: "10.0.0.1:5432" });
    expect(decideHa(follow({ rejoinAuto: false }, former)).kind).toBe("wait");
    expect(decideHa(follow({ leader: { ...base.leader!, primaryReady: false } }, former)).kind).toBe("wait");
    expect(decideHa(follow({}, { stuck: true }))).toEqual({ kind: "rewind", from: "10.0.0.1:5432" });
    expect(decideHa(follow({ rejoinRequested: { clone: true } }))).toEqual({ kind: "clone", from: "10.0.0.1:5432" });
    expect(decideHa(follow({ rejoinRequested: { clone: false } }))).toEqual({ kind: "rewind", from: "10.0.0.1:5432" });
  });
  test("a rewind waits until the new primary's last checkpoint names its timeline (pg_rewind before 16 reads it there); a clone does not", () => {
    // Promoted a moment ago, its checkpoint still running: pg_rewind would see timeline 1 on both
    // sides and find "no rewind required", leaving the former primary's diverged WAL in place.
    const fresh = { leader: { ...base.leader!, timeline: 2, checkpointTimeline: 1 } };
    const former = { running: false, up: false, inRecovery: null, wasPrimary: true, timeline: 1 } as const;
    expect(decideHa(follow(fresh, former))).toMatchObject({ kind: "wait", reason: expect.stringContaining("last checkpoint still names timeline 1") });
    expect(decideHa(follow(fresh, { stuck: true })).kind).toBe("wait"); // else "no rewind required": a needless fresh clone
    expect(decideHa(follow({ ...fresh, rejoinRequested: { clone: false } })).kind).toBe("wait");
    expect(decideHa(follow({ ...fresh, rejoinRequested: { clone: true } }))).toEqual({ kind: "clone", from: "10.0.0.1:5432" });
    expect(decideHa(follow(fresh))).toEqual({ kind: "none", role: "standby" }); // a streaming standby just follows
    // Checkpointed, or an agent that does not report it (it checkpointed before reporting the promotion).
    expect(decideHa(follow({ leader: { ...base.leader!, checkpointTimeline: 2 } }, former))).toEqual({ kind: "rewind", from: "10.0.0.1:5432" });
    expect(decideHa(follow({ leader: { ...base.leader!, checkpointTimeline: null } }, former))).toEqual({ kind: "rewind", from: "10.0.0.1:5432" });
  });
  test("a data directory a pg_rewind began to write and did not finish is cloned afresh: never started, never rewound again", () => {
    // Found by review: a stuck standby's half-rewound directory (standby.signal, "shut down in recovery") was started,
    // a former primary's rewound again.
    const halfStandby = { running: false, up: false, inRecovery: null, wasPrimary: false, rewindUnfinished: true } as const;
    const halfPrimary = { ...halfStandby, wasPrimary: true } as const;
    for (const local of [halfStandby, halfPrimary]) {
      expect(decideHa(follow({}, local))).toEqual({ kind: "clone", from: "10.0.0.1:5432" });
      expect(decideHa(follow({ rejoinRequested: { clone: false } }, local))).toEqual({ kind: "clone", from: "10.0.0.1:5432" }); // a rewind asked for: a clone
      expect(decideHa(follow({ rejoinAuto: false }, local))).toMatchObject({ kind: "wait", reason: expect.stringContaining("pgherd rejoin --force-clone") });
      expect(decideHa(follow({ rejoinAuto: false, rejoinRequested: { clone: true } }, local)).kind).toBe("clone");
      expect(decideHa(follow({ leader: { ...base.leader!, primaryReady: false } }, local))).toMatchObject({ kind: "wait", reason: expect.stringContaining("did not finish") });
      expect(decideHa(follow({ paused: true }, local)).kind).toBe("wait"); // automatic: not while paused
      // As leader it is not started: another node must lead.
      expect(decideHa(lead({}, local))).toMatchObject({ kind: "resign", reason: expect.stringContaining("did not finish") });
    }
    // Started by hand since: rebuilt all the same (PostgreSQL's documentation: likely not recoverable).
    expect(decideHa(follow({}, { rewindUnfinished: true }))).toEqual({ kind: "clone", from: "10.0.0.1:5432" });
  });
  test("never touches another cluster's data", () => {
    expect(decideHa(follow({}, { data: "foreign", systemId: "9" })).kind).toBe("refuse");
    expect(decideHa(follow({}, { systemId: "9" })).kind).toBe("refuse");
  });
  test("a leader holding another cluster's data resigns: another node must lead (review: it held the leadership and refused, no primary for good)", () => {
    expect(decideHa(lead({}, { data: "foreign", systemId: "9" }))).toMatchObject({ kind: "resign", reason: expect.stringContaining("another node must lead") });
    expect(decideHa(lead({ successor: "S2" }, { data: "foreign", systemId: "9" }))).toMatchObject({ kind: "resign", to: "S2" });
  });
  test("never rewinds nor clones over a directory whose pg_control it cannot read; an operator's --force-clone replaces it", () => {
    // Another OS user's stopped cluster, a wrong data_dir: no standby.signal made it look like a
    // former primary, a failed pg_rewind fell back to a clone, and the directory was pruned.
    const unknown = { data: "unknown", systemId: null, running: false, up: false, inRecovery: null, wasPrimary: true, timeline: null } as const;
    expect(decideHa(follow({}, unknown))).toMatchObject({ kind: "refuse", reason: expect.stringContaining("no pg_control this node can read") });
    expect(decideHa(follow({ rejoinRequested: { clone: false, auto: false } }, unknown)).kind).toBe("refuse"); // a rewind asked for: no
    expect(decideHa(follow({ rejoinRequested: { clone: true, auto: true } }, unknown)).kind).toBe("refuse"); // the automatic rejoin: no
    expect(decideHa(follow({ rejoinRequested: { clone: true, auto: false } }, unknown))).toEqual({ kind: "clone", from: "10.0.0.1:5432" });
    // As leader: not started as the cluster's primary; before the cluster exists, refused.
    expect(decideHa(lead({ successor: "S2" }, unknown))).toMatchObject({ kind: "resign", to: "S2" });
    expect(decideHa(lead({ clusterSystemId: null, fromExisting: true }, unknown)).kind).toBe("refuse");
    expect(decideHa(lead({ clusterSystemId: null, nobodyHasData: true }, unknown)).kind).toBe("refuse");
  });
  test("rejoin.auto = false: the loop's own rebuild request (a standby whose starts fail) clones nothing; it is started again, and an operator's request still rebuilds", () => {
    // Found by review: it took a fresh clone and moved the data directory aside all the same.
    const stopped = { running: false, up: false, inRecovery: null, wasPrimary: false } as const;
    const auto = { clone: true, auto: true } as const;
    expect(decideHa(follow({ rejoinAuto: false, rejoinRequested: auto }, stopped))).toEqual({ kind: "start-standby", upstream: "10.0.0.1:5432" });
    expect(decideHa(follow({ rejoinAuto: false, rejoinRequested: auto }, { rewindUnfinished: true, ...stopped }))).toMatchObject({ kind: "wait", reason: expect.stringContaining("pgherd rejoin --force-clone") });
    expect(decideHa(follow({ rejoinAuto: false, rejoinRequested: { clone: true } }, stopped))).toEqual({ kind: "clone", from: "10.0.0.1:5432" });
    expect(decideHa(follow({ rejoinAuto: true, rejoinRequested: auto }, stopped))).toEqual({ kind: "clone", from: "10.0.0.1:5432" });
  });
  test("paused: no automatic action, but fencing and a requested rejoin still happen", () => {
    expect(decideHa(follow({ paused: true }, { running: false, up: false })).kind).toBe("wait");
    expect(decideHa(lead({ paused: true }, { inRecovery: true })).kind).toBe("wait");
    expect(decideHa(follow({ paused: true }, { inRecovery: false })).kind).toBe("fence");
    expect(decideHa(follow({ paused: true, rejoinRequested: { clone: true } })).kind).toBe("clone");
    // The loop's own request (a standby that failed to start three times) is no human's: it waits for the pause to end.
    expect(decideHa(follow({ paused: true, rejoinRequested: { clone: true, auto: true } }))).toEqual({ kind: "wait", reason: "paused: would clone from 10.0.0.1:5432" });
    expect(decideHa(follow({ rejoinRequested: { clone: true, auto: true } })).kind).toBe("clone");
    expect(decideHa(lead({ paused: true, promotionRequested: true }, { inRecovery: true })).kind).toBe("promote");
  });
  test("after a failed action: a fence never waits for the backoff; a failed start or promotion counts as a primary the fence must stop", () => {
    // Found by review: the backoff held the round's own fence back 1–4 s, and a resign after a start
    // whose pg_ctl timed out fenced nothing (the round had seen no primary) while crash recovery went on.
    expect(waitsForBackoff({ kind: "fence", reason: "r" })).toBe(false);
    for (const d of [{ kind: "promote" }, { kind: "clone", from: "a" }, { kind: "start-standby", upstream: "a" }] as const) expect(waitsForBackoff(d)).toBe(true);
    for (const d of [{ kind: "start-primary", adopt: false }, { kind: "promote" }, { kind: "start-standby", upstream: null }, { kind: "resume-restore" }] as const) expect(failureMayLeavePrimary(d)).toBe(true);
    for (const d of [{ kind: "check-promote" }, { kind: "start-standby", upstream: "a" }, { kind: "clone", from: "a" }, { kind: "rewind", from: "a" }, { kind: "fence", reason: "r" }] as const) expect(failureMayLeavePrimary(d)).toBe(false);
  });
  test("a decision that follows the leader it was decided on (checked again before the round acts): a repoint, a start as its standby, a rewind or a clone from it", () => {
    // Found by review: a rewind or clone decided on a leader that had moved by the time the round acted went ahead.
    for (const d of [{ kind: "repoint", upstream: "a" }, { kind: "start-standby", upstream: "a" }, { kind: "rewind", from: "a" }, { kind: "clone", from: "a" }] as const) expect(followsLeader(d)).toBe(true);
    for (const d of [{ kind: "start-standby", upstream: null }, { kind: "promote" }, { kind: "start-primary", adopt: false }, { kind: "fence", reason: "r" }, { kind: "restart-standby", reason: "r" }, { kind: "initdb" }] as const) expect(followsLeader(d)).toBe(false);
  });
  test("after a start as the primary, a promotion, or a leader's start to promote: the next round runs at once (its report says primary)", () => {
    // CI (pgpool.e2e): the report of a promoted server waited a period (500 ms) for its round, and
    // pgpool was told of the new primary that much later.
    for (const d of [{ kind: "start-primary", adopt: false }, { kind: "promote" }, { kind: "start-standby", upstream: null }, { kind: "resume-restore" }] as const) expect(roundAgainAfter(d)).toBe(true);
    for (const d of [{ kind: "start-standby", upstream: "a" }, { kind: "repoint", upstream: "a" }, { kind: "clone", from: "a" }, { kind: "rewind", from: "a" }, { kind: "fence", reason: "r" }, { kind: "check-promote" }, { kind: "initdb" }] as const) expect(roundAgainAfter(d)).toBe(false);
  });
  test("a promotion that failed before pg_promote was sent left a standby: the fence after it stops nothing", () => {
    // Noticed at review: after three failed attempts (a reservation no majority stored, a barrier
    // timeout) the resign's fence stopped a healthy standby, as if it could have become a primary.
    expect(failureMayLeavePrimary({ kind: "promote" }, true)).toBe(false);
    expect(failureMayLeavePrimary({ kind: "promote" }, false)).toBe(true);
    expect(failureMayLeavePrimary({ kind: "start-primary", adopt: false }, true)).toBe(true);
  });
  test("a witness runs no PostgreSQL", () => {
    expect(decideHa(follow({ witness: true }))).toEqual({ kind: "none", role: "witness" });
  });
  test("a stopped server was a primary unless pg_control says a standby's state (a primary left in crash recovery is rewound)", () => {
    for (const st of ["in production", "shut down", "in crash recovery", "shutting down"]) expect(controlSaysPrimary(st)).toBe(true);
    for (const st of ["in archive recovery", "shut down in recovery"]) expect(controlSaysPrimary(st)).toBe(false);
  });
  test("a former primary is recognised from durable facts (standby.signal and pg_control), in every pg_control state", () => {
    // without standby.signal the data was a primary's, whatever pg_control says
    for (const st of ["in production", "shut down", "in crash recovery", "shutting down", "in archive recovery", "shut down in recovery"]) expect(dataWasPrimary(st, false)).toBe(true);
    // with it, only a standby's states are a standby's (a primary's state: a standby start that never happened)
    for (const st of ["in production", "shut down", "in crash recovery", "shutting down"]) expect(dataWasPrimary(st, true)).toBe(true);
    for (const st of ["in archive recovery", "shut down in recovery"]) expect(dataWasPrimary(st, true)).toBe(false);
    // pg_control unreadable (pg_controldata failed or timed out): the signal file decides; no signal is a primary's data.
    expect(dataWasPrimary(null, false)).toBe(true);
    expect(dataWasPrimary(null, true)).toBe(false);
    // a copy not started yet (a clone, a restore, a rewound directory): standby.signal with backup_label,
    // its source's pg_control state; without standby.signal backup_label changes nothing
    for (const st of ["in production", "shut down", "in crash recovery", "in archive recovery", null]) expect(dataWasPrimary(st, true, true)).toBe(false);
    for (const st of ["in production", "shut down", "in archive recovery", null]) expect(dataWasPrimary(st, false, true)).toBe(true);
    // and such a node is rewound before it streams
    for (const st of ["in production", "shut down", "in crash recovery"]) {
      const former = { running: false, up: false, inRecovery: null, wasPrimary: dataWasPrimary(st, false), timeline: 1 } as const;
      expect(decideHa(follow({}, former))).toEqual({ kind: "rewind", from: "10.0.0.1:5432" });
    }
  });
  test("a former primary started on its own timeline and stopped before its promotion is still a former primary's data (review: its standby files made the next start follow the newest timeline over pages flushed past the fork)", () => {
    // Its files once started so: standby.signal, pg_control "in archive recovery" or "shut down in recovery".
    for (const st of ["in archive recovery", "shut down in recovery", null]) {
      expect(dataWasPrimary(st, true)).toBe(false); // what its files alone say
      expect(dataWasPrimary(st, true, false, true)).toBe(true);
    }
    // a clone swapped in before the marker went (standby.signal and backup_label): a standby's copy
    expect(dataWasPrimary("in production", true, true, true)).toBe(false);
    const stopped = { running: false, up: false, inRecovery: null, wasPrimary: dataWasPrimary("in archive recovery", true, false, true), timeline: 1 } as const;
    // a follower rewinds it; the leader starts it on its own timeline again (not the newest one)
    expect(decideHa(follow({}, stopped))).toEqual({ kind: "rewind", from: "10.0.0.1:5432" });
    expect(decideHa(lead({ reservedTimeline: 2 }, stopped))).toEqual({ kind: "start-standby", upstream: null, ownTimeline: 1 });
    // without the marker: a plain standby start, along the newest timeline
    expect(decideHa(lead({ reservedTimeline: 2 }, { ...stopped, wasPrimary: false }))).toEqual({ kind: "start-standby", upstream: null });
  });
});
