// The liveness verdict of the primary's work, one case per rule (src/core/liveness.ts).
import { describe, expect, test } from "bun:test";
import { type Attempt, broken, diskWarning, frozenLongEnough, initialLiveness, LIVENESS_DEFAULTS as T, type Liveness, type LivenessObs, stepLiveness, successorOf, takeoverPossible } from "../../src/core/liveness.ts";
import type { PgReport } from "../../src/core/report.ts";
import type { Candidate } from "../../src/core/switchover.ts";

const ok = (ms = 5): Attempt => ({ kind: "ok", ms });
const timeout = (ms = 1500): Attempt => ({ kind: "timeout", ms, error: "no answer within 1500 ms" });
const err = (error: string, sqlstate: string | null): Attempt => ({ kind: "error", ms: 3, error, sqlstate });
const MB = 1024 * 1024;
const disk = (availBytes: number, sizeBytes = 256 * MB) => ({ what: "data" as const, path: "/pg", sizeBytes, availBytes });

/** Rounds every 500 ms from t=0; `o` may override any observation of the round. */
function run(rounds: Array<Partial<LivenessObs>>, start: Liveness = initialLiveness(0)): Liveness {
  let l = start;
  let t = 0;
  let wal = 1;
  for (const r of rounds) {
    const dur = r.now !== undefined ? r.now - t : 20;
    const o: LivenessObs = {
      startedAt: t, now: t + dur, stoppedSince: null, allStoppedSince: null, stoppedAtEnd: "", answeredAt: null,
      probe: ok(), fresh: ok(), write: ok(), walWrittenAt: wal++, disks: [disk(200 * MB)], ...r,
    };
    // Unless the round says otherwise, what answered did so at its end.
    if (r.answeredAt === undefined && [o.probe, o.fresh, o.write].some((a) => a !== null && a.kind !== "timeout")) o.answeredAt = o.now;
    l = stepLiveness(l, o);
    t = o.now + 500;
  }
  return l;
}
const healthy = Array.from({ length: 4 }, () => ({}));

describe("liveness", () => {
  test("ok: answers and commits in time", () => {
    const l = run(healthy);
    expect(l.verdict.state).toBe("ok");
    expect(broken(l.verdict)).toBe(false);
  });

  test("busy: slow answers, or a timeout while something else answers or WAL is written, is never broken", () => {
    expect(run([...healthy, { probe: ok(2500) }]).verdict.state).toBe("busy");
    // both connections time out for far longer than stuckMs, but clients' WAL keeps being written
    const l = run(Array.from({ length: 12 }, () => ({ probe: timeout(), fresh: timeout(), write: timeout() })));
    expect(l.verdict.state).toBe("busy");
    expect(l.verdict.reason).toContain("slow but progressing");
    // the heartbeat commit times out (slow disk) while the probe answers and WAL is written
    expect(run(Array.from({ length: 12 }, () => ({ write: timeout() }))).verdict.state).toBe("busy");
    // a client holding every connection slot: the fresh connection is refused with an error (an answer)
    expect(run(Array.from({ length: 12 }, () => ({ probe: timeout(), fresh: err("sorry, too many clients already", "53300"), write: null, walWrittenAt: 7 }))).verdict.state).toBe("busy");
  });

  test("stuck: no answer on either connection and no WAL written for stuckMs", () => {
    const frozen = { probe: timeout(), fresh: timeout(), write: timeout(), walWrittenAt: 99 };
    // 3 rounds of 1.5 s: 0..1.5, 2..3.5 (quiet 3.5 s since the last answer at 0) → stuck
    const before = run([{ ...frozen, now: 1500 }]);
    expect(before.verdict.state).toBe("busy");
    const l = run([{ ...frozen, now: 1500 }, { ...frozen, now: 3500 }]);
    expect(l.verdict.state).toBe("stuck");
    expect(l.verdict.reason).toContain("no WAL written");
    expect(l.verdict.since).toBe(0);
    expect(broken(l.verdict)).toBe(true);
  });

  test("stuck: processes stopped (SIGSTOP) through a whole round with nothing answering, after frozenMs", () => {
    const stopped = { stoppedSince: 0, stoppedAtEnd: "postmaster 41 T", probe: timeout(), fresh: timeout(), write: timeout(), walWrittenAt: 5 };
    const l = run([{ ...stopped, now: T.frozenMs + 200 }]);
    expect(l.verdict.state).toBe("stuck");
    expect(l.verdict.reason).toContain("stopped");
    expect(l.verdict.since).toBe(0);
    // stopped only at the end of a short round: not yet
    expect(run([{ ...stopped, stoppedSince: 300, now: 300 }]).verdict.state).not.toBe("stuck");
    // a stopped process while the server still answers (one backend under a debugger): busy at most
    expect(run([{ stoppedSince: 0, stoppedAtEnd: "backend 77 t", now: 2000 }]).verdict.state).toBe("busy");
  });

  test("stuck: a freeze of the whole server that begins during a round counts from its first sighting; an answer before it is no progress after it", () => {
    // The probe answered at 5 ms, the postmaster and every child were sighted stopped at 200 ms while the fresh connection hung.
    const mid = { probe: ok(5), answeredAt: 5, fresh: timeout(), write: null, stoppedSince: 200, allStoppedSince: 200, stoppedAtEnd: "postmaster 41 and 10 of 10 children stopped (state T)", walWrittenAt: 5 };
    expect(run([{ ...mid, now: 200 + T.frozenMs - 100 }]).verdict.state).toBe("busy");
    const l = run([{ ...mid, now: 200 + T.frozenMs }]);
    expect(l.verdict.state).toBe("stuck");
    expect(l.verdict.since).toBe(200);
    // Something answered after the sighting: progress.
    expect(run([{ ...mid, answeredAt: 900, now: 1500 }]).verdict.state).toBe("busy");
  });

  test("not stuck: some processes stopped (a backend under a debugger, the postmaster alone) while an answer came earlier in the round and the commit hangs", () => {
    const some = { probe: ok(5), answeredAt: 5, fresh: ok(), write: timeout(), stoppedSince: 100, allStoppedSince: null, walWrittenAt: 5 };
    expect(run([{ ...some, stoppedAtEnd: "postmaster 41 running and 1 of 12 children stopped (state T)", now: 1600 }]).verdict.state).toBe("busy");
    expect(run([{ ...some, stoppedAtEnd: "postmaster 41 stopped (state T)", fresh: timeout(), write: null, now: 1600 }]).verdict.state).toBe("busy");
    // ... but through a whole round with nothing answering, it is stuck.
    expect(run([{ ...some, probe: timeout(), answeredAt: null, fresh: timeout(), write: null, stoppedSince: 0, stoppedAtEnd: "postmaster 41 stopped (state T)", now: 1600 }]).verdict.state).toBe("stuck");
  });

  test("stuck: an answer read just after the whole server was sighted stopped only moves the count's start", () => {
    const mid = { probe: ok(5), answeredAt: 250, fresh: timeout(), write: null, stoppedSince: 200, allStoppedSince: 200, stoppedAtEnd: "postmaster 41 and 3 of 3 children stopped (state T)", walWrittenAt: 5 };
    expect(run([{ ...mid, now: 250 + T.frozenMs - 50 }]).verdict.state).toBe("busy");
    const l = run([{ ...mid, now: 250 + T.frozenMs }]);
    expect(l.verdict.state).toBe("stuck");
    expect(l.verdict.since).toBe(250);
  });

  test("some processes stopped: the count carries over rounds, and WAL written since is progress", () => {
    const first = { probe: ok(5), fresh: ok(), write: ok(), stoppedSince: 300.25, stoppedAtEnd: "postmaster 41 running and 1 of 3 children stopped (state T)", walWrittenAt: 5, now: 400.75 };
    // The next round starts at 900.75, stopped from its first sample, nothing answering.
    const next = { probe: timeout(500), fresh: timeout(500), write: null, stoppedSince: 900.75, stoppedAtEnd: first.stoppedAtEnd, now: 1400.75 };
    const l = run([first, { ...next, walWrittenAt: 5 }]);
    expect(l.verdict.state).toBe("stuck");
    expect(l.verdict.since).toBe(300.25);
    // Clients' WAL moved meanwhile: a backend stopped, the server working.
    expect(run([first, { ...next, walWrittenAt: 6 }]).verdict.state).toBe("busy");
    // Not stopped at the next round's start (resumed, then stopped again at 1000): counted anew.
    expect(run([first, { ...next, stoppedSince: 1000, walWrittenAt: 5 }]).verdict.state).toBe("busy");
  });

  test("the whole-server count never carries over the unsampled gap between rounds", () => {
    const first = { probe: ok(5), fresh: ok(), write: ok(), stoppedSince: 300.25, allStoppedSince: 300.25, stoppedAtEnd: "postmaster 41 and 3 of 3 children stopped (state T)", walWrittenAt: 5, now: 400.75 };
    // Sighted at the next round's start again (it may have run in between): 600 ms of this round
    // count, not 1.1 s since the first round's sighting (WAL moved: the other rule stays out of it).
    const next = { probe: timeout(600), fresh: timeout(600), write: null, stoppedSince: 900.75, allStoppedSince: 900.75, stoppedAtEnd: first.stoppedAtEnd, walWrittenAt: 6, now: 1500.75 };
    expect(run([first, next]).verdict.state).toBe("busy");
    expect(run([first, { ...next, now: 900.75 + T.frozenMs }]).verdict.state).toBe("stuck");
    expect(frozenLongEnough(300, 10, 300 + T.frozenMs)).toBe(true);
    expect(frozenLongEnough(300, 301, 300 + T.frozenMs)).toBe(false);
    expect(frozenLongEnough(300, 301, 301 + T.frozenMs)).toBe(true);
    expect(frozenLongEnough(300, 10, 300 + T.frozenMs - 1)).toBe(false);
    expect(frozenLongEnough(null, 10, 5000)).toBe(false);
  });

  test("cannot-write: the heartbeat commit fails with a resource error for cannotWriteMs", () => {
    const enospc = { write: err("could not extend file: No space left on device", "53100") };
    expect(run([enospc]).verdict.state).toBe("busy");
    const l = run([enospc, enospc, enospc]);
    expect(l.verdict.state).toBe("cannot-write");
    expect(l.verdict.reason).toContain("No space left");
    // an error that is not about resources (a permission, say) is not the server's inability to write
    expect(run([{ write: err("permission denied", "42501") }, { write: err("permission denied", "42501") }, { write: err("permission denied", "42501") }]).verdict.state).toBe("ok");
  });

  test("cannot-write: commits time out and no WAL is written while the server answers queries", () => {
    const l = run(Array.from({ length: 4 }, (_, i) => ({ write: timeout(), walWrittenAt: 3, now: i * 2000 + 1500 })));
    expect(l.verdict.state).toBe("cannot-write");
    expect(l.verdict.reason).toContain("no commit completes");
  });

  test("cannot-write: a commit timed out, and the next cannot even be tried (the fresh connection refused with every slot taken, or hung) while no WAL is written (review: read as ok for good)", () => {
    const refused = { fresh: err("sorry, too many clients already", "53300"), write: null, walWrittenAt: 3 };
    const l = run([{ write: timeout(), walWrittenAt: 3 }, ...Array.from({ length: 8 }, () => refused)]);
    expect(l.verdict.state).toBe("cannot-write");
    expect(l.verdict.reason).toContain("a fresh connection for another failed: sorry, too many clients already");
    expect(run([{ write: timeout(), walWrittenAt: 3 }, ...Array.from({ length: 8 }, () => ({ fresh: timeout(), write: null, walWrittenAt: 3 }))]).verdict.state).toBe("cannot-write");
    // without a commit that timed out first: an idle server whose slots are all taken is not broken
    expect(run(Array.from({ length: 9 }, () => refused)).verdict.state).not.toBe("cannot-write");
    // a commit that completes in between clears it; WAL written is progress
    expect(run([{ write: timeout(), walWrittenAt: 3 }, ...Array.from({ length: 3 }, () => refused), { walWrittenAt: 3 }, ...Array.from({ length: 5 }, () => refused)]).verdict.state).not.toBe("cannot-write");
    expect(run([{ write: timeout() }, ...Array.from({ length: 8 }, () => ({ fresh: err("sorry, too many clients already", "53300"), write: null }))]).verdict.state).not.toBe("cannot-write");
    // a round that tries no commit on purpose (the fresh connection answered: not the leader, in recovery) clears it
    expect(run([{ write: timeout(), walWrittenAt: 3 }, { write: null, walWrittenAt: 3 }, ...Array.from({ length: 8 }, () => refused)]).verdict.state).not.toBe("cannot-write");
  });

  test("cannot-write: commits time out and no WAL is written while the fresh connection answers, the probe timing out too (review: read as busy for good)", () => {
    const hung = { probe: timeout(2000), write: timeout(), walWrittenAt: 3 };
    const l = run(Array.from({ length: 4 }, (_, i) => ({ ...hung, now: i * 2500 + 2000 })));
    expect(l.verdict.state).toBe("cannot-write");
    expect(l.verdict.reason).toContain("no commit completes");
    // WAL written meanwhile is progress: busy
    expect(run(Array.from({ length: 4 }, (_, i) => ({ probe: timeout(2000), write: timeout(), now: i * 2500 + 2000 }))).verdict.state).toBe("busy");
  });

  test("cannot-write is counted from the first failure, not the round's start: one failure after a slow connection is not enough (review)", () => {
    const slowThenFails = { startedAt: 0, now: 1200, fresh: ok(1100), write: err("out of shared memory", "53200") };
    expect(run([slowThenFails]).verdict.state).toBe("busy");
    const again = { write: err("out of shared memory", "53200") };
    expect(run([slowThenFails, again]).verdict.state).toBe("busy");
    expect(run([slowThenFails, again, again]).verdict.state).toBe("cannot-write");
  });

  test("disk-full: less than min(fullBytes, fullRatio × size) available for diskFullMs; a warning before", () => {
    const full = { disks: [disk(MB)] };
    expect(run([full]).verdict.state).toBe("ok"); // one observation: not yet
    const l = run([full, full, full]);
    expect(l.verdict.state).toBe("disk-full");
    expect(l.verdict.reason).toContain("1.0 MB free of 256.0 MB");
    // 20 MB of 256 MB (under 10%, over 2%) is only a warning
    expect(diskWarning([disk(20 * MB)])).toEqual({ full: false, text: expect.stringContaining("20.0 MB free") });
    expect(run([{ disks: [disk(20 * MB)] }]).verdict).toMatchObject({ state: "ok", reason: expect.stringContaining("disk space low") });
    // on a large disk 16 MB is the limit, not 2%
    expect(diskWarning([disk(100 * MB, 100 * 1024 * MB)])?.full).toBe(false);
    expect(diskWarning([disk(10 * MB, 100 * 1024 * MB)])?.full).toBe(true);
    // pg_wal on its own file system counts too, and the fuller one is named
    const w = diskWarning([disk(200 * MB), { what: "pg_wal", path: "/wal", sizeBytes: 64 * MB, availBytes: 0 }]);
    expect(w).toEqual({ full: true, text: expect.stringContaining("pg_wal") });
  });

  test("the verdict keeps its since while it holds, and recovers", () => {
    const enospc = { write: err("No space left on device", "53100") };
    const l = run([enospc, enospc, enospc, enospc]);
    expect(l.verdict.state).toBe("cannot-write");
    expect(l.verdict.since).toBe(20); // the first failure's answer
    expect(run([enospc, enospc, enospc, {}]).verdict.state).toBe("ok");
  });
});

describe("successor", () => {
  const rep = (lsn: string, over: Partial<PgReport> = {}) => ({ up: true, inRecovery: true, streaming: true, position: { timeline: 3, lsn }, ...over }) as PgReport;
  const c = (id: string, report: PgReport | null, over: Partial<Candidate> = {}): Candidate => ({ id, name: id.toLowerCase(), voter: true, witness: false, neverPromoted: false, report, ...over });
  test("the streaming voter standby with the highest position; never a witness, a nofailover, a non-voter or one not streaming", () => {
    const all = [c("P", rep("0/9000", { inRecovery: false })), c("A", rep("0/5000")), c("B", rep("0/7000")), c("W", null, { witness: true })];
    expect(successorOf(all, "P")).toBe("B");
    expect(successorOf([...all.slice(0, 2), c("B", rep("0/7000"), { neverPromoted: true })], "P")).toBe("A");
    expect(successorOf([c("A", rep("0/5000")), c("B", rep("0/7000", { streaming: false }))], "P")).toBe("A");
    expect(successorOf([c("A", rep("0/5000"), { voter: false }), c("B", null)], "P")).toBeNull();
  });
  test("a takeover is possible with a promotable voter standby running, streaming or not (none streams from a stopped primary)", () => {
    expect(takeoverPossible([c("P", rep("0/9000", { inRecovery: false })), c("A", rep("0/5000", { streaming: false }))], "P")).toBe(true);
    expect(successorOf([c("A", rep("0/5000", { streaming: false }))], "P")).toBeNull();
    expect(takeoverPossible([c("A", rep("0/5000", { up: false })), c("B", rep("0/7000"), { neverPromoted: true }), c("W", null, { witness: true }), c("N", rep("0/1"), { voter: false })], "P")).toBe(false);
    expect(takeoverPossible([c("P", rep("0/9000"))], "P")).toBe(false);
    // only one the voters would elect (re-review): not while the guard blocks failover to anyone but
    // the holder, nor one behind the guard's floor
    const a = [c("A", rep("0/5000", { streaming: false }))];
    expect(takeoverPossible(a, "P", { block: true, holder: "P", floor: null })).toBe(false);
    expect(takeoverPossible(a, "P", { block: true, holder: "A", floor: null })).toBe(true);
    expect(takeoverPossible(a, "P", { block: false, holder: null, floor: { timeline: 3, lsn: "0/6000" } })).toBe(false);
    expect(takeoverPossible(a, "P", { block: false, holder: null, floor: { timeline: 3, lsn: "0/5000" } })).toBe(true);
    // and the successor a resign hands over to, the same (re-review: a streaming one behind a block resigned into the loop)
    const s = [c("A", rep("0/5000"))];
    expect(successorOf(s, "P", { block: true, holder: "P", floor: null })).toBeNull();
    expect(successorOf(s, "P", { block: false, holder: null, floor: { timeline: 3, lsn: "0/6000" } })).toBeNull();
    expect(successorOf(s, "P", null)).toBe("A");
  });
});
