// Operator actions on the leader, against an in-memory host (the agent's facts and controls are
// not the point here): a refused switchover does not block the next one, and the schedule.
import { describe, expect, test } from "bun:test";
import { ActionRunner, SCHEDULE_LATE_MS, type ActionHost } from "../../src/agent/actions.ts";
import type { ScheduledSwitchover } from "../../src/agent/flags.ts";
import type { HistoryEntry } from "../../src/agent/history.ts";
import type { Candidate } from "../../src/core/switchover.ts";
import { HANDOVER_CHECKPOINT_MS } from "../../src/core/handover.ts";
import { leaderOnlyPart, SWITCHOVER_ANSWER_MS, type ActionRequest, type ActionResult } from "../../src/api/actions-contract.ts";
import type { ClusterView, MemberRow } from "../../src/core/cluster-view.ts";
import type { PgReport } from "../../src/core/report.ts";
import { memoryLogger } from "../../src/log.ts";

function report(over: Partial<PgReport>): PgReport {
  return {
    port: 5432, data: "present", systemId: "1", running: true, up: true, inRecovery: true,
    position: { timeline: 1, lsn: "0/3000000" }, receiveLsn: "0/3000000", replayLsn: "0/3000000", upstream: null,
    streaming: true, replication: [], slots: [], action: "standby", note: "", error: null, haveSecrets: true,
    ...over,
  } as PgReport;
}

class FakeHost implements ActionHost {
  readonly nodeId = "L";
  readonly nodeName = "n1";
  maxLagBytes = 1 << 20;
  connected = new Set(["S"]);
  leading = true;
  wall = Date.parse("2026-12-01T12:00:00Z");
  sched: ScheduledSwitchover | null = null;
  history: Omit<HistoryEntry, "id" | "at">[] = [];
  stops = 0;
  resigned: string[] = [];
  promoted = false;
  pausedFlag = false;
  term = 3;
  leaderId = "L";
  /** Who wins the election after the resign: the target (it promotes), or another node. */
  winner = "S";
  /** This node is a voter (a member not yet approved is not). */
  voter: boolean | null = true;
  electionState() { return { role: this.leaderId === "L" ? "leader" : "follower", term: this.term, leader: this.leaderId, leading: this.leading && this.leaderId === "L", voter: this.voter }; }
  paused() { return this.pausedFlag; }
  async setPaused(p: boolean) {
    this.pausedFlag = p;
    return null;
  }
  candidates(): Candidate[] {
    return [
      { id: "L", name: "n1", voter: true, witness: false, neverPromoted: false, report: this.myReport() },
      { id: "S", name: "n2", voter: true, witness: false, neverPromoted: this.sNeverPromoted, report: this.reportOf("S") },
    ];
  }
  /** This leader's own PostgreSQL is down (a manual failover's case). */
  primaryDown = false;
  /** n2 is tagged nofailover or has priority 0. */
  sNeverPromoted = false;
  /** What the host was asked to do, in order (a resign's messages leave a moment after it is asked). */
  events: string[] = [];
  myReport() { return report({ up: !this.primaryDown, inRecovery: this.promoted, streaming: this.promoted, position: { timeline: 1, lsn: "0/3000000" } }); }
  backupChanged() {}
  reportOf(id: string) { return id === "S" ? report({ inRecovery: !this.promoted }) : this.myReport(); }
  nameOf(id: string) { return id === "S" ? "n2" : id === "X" ? "n3" : "n1"; }
  /** What was forwarded to the leader, and how long the forward waits for its answer. */
  forwarded: { req: ActionRequest; timeoutMs: number }[] = [];
  async forwardToLeader(req: ActionRequest, timeoutMs: number): Promise<ActionResult> {
    this.forwarded.push({ req, timeoutMs });
    return { status: 500, ok: false, message: "not used" };
  }
  targetConfirms = true;
  unconfirmed = 0;
  async handover() { return this.targetConfirms; }
  /** pg_control of the stopped server could not be read. */
  finalUnknown = false;
  floors: unknown[] = [];
  async publishFloor(pos: unknown) {
    this.floors.push(pos);
    return true;
  }
  isConnected(id: string) { return this.connected.has(id); }
  sendCampaign(to: string) {
    this.events.push(`campaign to ${to}`);
    return true;
  }
  campaignNow() {}
  async resign(reason: string) {
    this.resigned.push(reason);
    this.events.push("resign asked");
    await Promise.resolve(); // the fence, then the messages leave
    this.events.push("resign sent");
    this.term++;
    this.leaderId = this.winner;
    this.promoted = this.winner === "S"; // the target promotes once it leads
  }
  record(e: Omit<HistoryEntry, "id" | "at">) { this.history.push(e); }
  pg = {
    stopForHandover: async (beforeStopMs?: number): Promise<{ timeline: number; lsn: string } | null> => {
      this.stops++;
      this.beforeStop.push(beforeStopMs);
      return this.finalUnknown ? null : { timeline: 1, lsn: "0/3000000" };
    },
    handoverUnconfirmed: () => void this.unconfirmed++,
    release: () => {},
    requestRejoin: () => {},
    restartServer: async () => (this.restarts++, { ok: true, message: "restarted" }),
    reloadServer: async (note: string) => ({ ok: true, message: note }),
  };
  /** Restarts of this node's own server. */
  restarts = 0;
  /** What each stopForHandover was given: the time within which the clean stop must begin. */
  beforeStop: (number | undefined)[] = [];
  /** What was handed to a member over the mesh, and the answer (settled by the test when `holdAsks`). */
  asked: { id: string; req: ActionRequest }[] = [];
  holdAsks: ((r: ActionResult) => void)[] | null = null;
  async askNode(id: string, req: ActionRequest): Promise<ActionResult> {
    this.asked.push({ id, req });
    if (this.holdAsks) return new Promise((r) => this.holdAsks!.push(r));
    return { status: 501, ok: false, message: "not in this fake" };
  }
  /** The members as this agent's view shows them (name, role, state). */
  members: Pick<MemberRow, "name" | "role" | "state">[] = [{ name: "n1", role: "primary", state: "running" }, { name: "n2", role: "standby", state: "streaming" }];
  onSleep: (() => void) | null = null;
  clusterView() { return { members: this.members } as unknown as ClusterView; }
  changeConfig() { return Promise.resolve({ status: 200, ok: true, message: "" }); }
  scheduled() { return this.sched; }
  /** The cluster's copy refuses the next flag writes (an etcd error): the local copy changes, the answer says why. */
  schedRefusal: { status: number; message: string } | null = null;
  setScheduled(s: ScheduledSwitchover | null) {
    this.sched = s;
    return Promise.resolve(this.schedRefusal);
  }
  wallNow() { return this.wall; }
  async sleep(ms: number) {
    this.wall += ms;
    this.onSleep?.();
  }
}

const runner = (h: FakeHost) => new ActionRunner(h, memoryLogger());

describe("switchover", () => {
  test("one refused switchover does not block the next (defect 2: every later one answered 409)", async () => {
    const h = new FakeHost();
    h.connected.clear();
    const r = runner(h);
    const first = await r.run({ kind: "switchover", to: "n2" });
    expect(first.status).toBe(503);
    h.connected.add("S");
    const second = await r.run({ kind: "switchover", to: "n2" });
    expect(second.status).toBe(200);
    expect(h.resigned).toEqual(["switchover to n2"]);
  });

  test("a target that does not confirm the final WAL: handed over anyway, and the old primary's data counts as a primary's again (pg_rewind before it follows)", async () => {
    // Found by review: the clean-handover flag made the old primary follow without pg_rewind although
    // the target may have missed its last WAL.
    const confirmed = new FakeHost();
    expect((await runner(confirmed).run({ kind: "switchover", to: "n2" })).status).toBe(200);
    expect(confirmed.unconfirmed).toBe(0);
    const h = new FakeHost();
    h.targetConfirms = false;
    expect((await runner(h).run({ kind: "switchover", to: "n2" })).status).toBe(200);
    expect(h.unconfirmed).toBe(1);
    expect(h.resigned).toEqual(["switchover to n2"]);
  });

  test("the stopped server's final position unknown: the switchover stops, the guard is not lifted (no floor published), no resign", async () => {
    const h = new FakeHost();
    h.finalUnknown = true;
    const r = await runner(h).run({ kind: "switchover", to: "n2" });
    expect(r.status).toBe(500);
    expect(r.message).toContain("final position (pg_control) could not be read");
    expect(h.floors).toEqual([]);
    expect(h.resigned).toEqual([]);
    expect(h.unconfirmed).toBe(1);
  });

  test("another node wins the election instead of the target: the answer says so at once, not after 30 s", async () => {
    const h = new FakeHost();
    h.winner = "X";
    let slept = 0;
    h.sleep = async () => void slept++;
    const r = await runner(h).run({ kind: "switchover", to: "n2" });
    expect(r).toMatchObject({ ok: true, status: 202, detail: { target: "n2", winner: "n3" } });
    expect(r.message).toContain("n3 won term 4, not n2");
    expect(slept).toBeLessThanOrEqual(2); // the resign takes effect a moment after it is asked; before, 30 s of polls
  });

  test("manual failover from a leader without a primary: the campaign request follows the resign's messages, never overtakes them", async () => {
    // Found by review: the request went first on the same connection; the target stood before it was
    // handed the term, ignored the resign, and its rounds claimed no transfer (refused as leader-alive).
    const h = new FakeHost();
    h.primaryDown = true;
    const r = await runner(h).run({ kind: "failover", to: "n2" });
    expect(r).toMatchObject({ ok: true });
    expect(h.events).toEqual(["resign asked", "resign sent", "campaign to S"]);
  });

  test("manual failover run on a node that is not a voter, with no leader: refused at once (the target takes a request to stand from a voter only), not a 504 after 20 s", async () => {
    const h = new FakeHost();
    h.voter = false;
    h.leaderId = null as unknown as string;
    const r = await runner(h).run({ kind: "failover", to: "n2", force: true });
    expect(r).toMatchObject({ ok: false, status: 409, message: expect.stringContaining("not a voter") });
    expect(h.events).toEqual([]);
  });

  test("a target that is never promoted (nofailover, priority 0) is refused at once, forced or not: it would never stand", async () => {
    const h = new FakeHost();
    h.sNeverPromoted = true;
    const later = new Date(h.wall + 3_600_000).toISOString();
    for (const req of [{ kind: "switchover" as const, to: "n2", force: true }, { kind: "failover" as const, to: "n2", force: true }, { kind: "switchover" as const, to: "n2", at: later }]) {
      expect(await runner(h).run(req)).toMatchObject({ ok: false, status: 412, message: expect.stringContaining("cannot be promoted") });
    }
    h.primaryDown = true; // the leader without a primary: a manual failover would resign and ask n2 to stand
    expect(await runner(h).run({ kind: "failover", to: "n2", force: true })).toMatchObject({ ok: false, status: 412, message: expect.stringContaining("cannot be promoted") });
    expect(h.events).toEqual([]);
    expect(h.stops).toBe(0);
    expect(h.sched).toBeNull();
  });

  test("a named target without a copy of every permanent slot is refused; a stopping leader's handover takes it", async () => {
    const h = new FakeHost();
    const myReport = h.myReport.bind(h);
    h.myReport = () => ({ ...myReport(), ...(h.promoted ? {} : { permanent: [{ name: "cdc", type: "logical" as const, lsn: "0/3000000" }] }) });
    const r = runner(h);
    const refused = await r.run({ kind: "switchover", to: "n2" });
    expect(refused).toMatchObject({ status: 412, message: expect.stringContaining("permanent slot") });
    expect(h.stops).toBe(0);
    expect((await r.handover("S")).status).toBe(200);
    expect(h.resigned).toEqual(["switchover to n2"]);
  });

  test("a stopping leader's handover begins its primary's clean stop within HANDOVER_CHECKPOINT_MS; the operator's switchover keeps its own waits", async () => {
    const h = new FakeHost();
    expect((await runner(h).handover("S")).status).toBe(200);
    expect(h.beforeStop).toEqual([HANDOVER_CHECKPOINT_MS]);
    const o = new FakeHost();
    expect((await runner(o).run({ kind: "switchover", to: "n2" })).status).toBe(200);
    expect(o.beforeStop).toEqual([undefined]);
  });

  test("forwarded to the leader, a switchover (and a forced failover, which a leader turns into one once its primary runs) waits as long as one may run there (review: 60 s, shorter than its checkpoint and stop, answered a running switchover as failed, and a retry could switch over again)", async () => {
    const h = new FakeHost();
    h.leaderId = "S"; // this node follows
    await runner(h).run({ kind: "switchover", to: "n2" });
    await runner(h).run({ kind: "failover", to: "n1", force: true }); // forced: the leader makes it a switchover should its primary run by then
    expect(h.forwarded.map((f) => f.req.kind)).toEqual(["switchover", "failover"]);
    for (const f of h.forwarded) expect(f.timeoutMs).toBeGreaterThanOrEqual(SWITCHOVER_ANSWER_MS);
    expect(SWITCHOVER_ANSWER_MS).toBeGreaterThanOrEqual(30_000 + 60_000 + 60_000 + 5_000 + 5_000 + 30_000); // stopForHandover's bounds, the confirmation, the promotion's wait
  });

  test("a leader without a valid lease refuses", async () => {
    const h = new FakeHost();
    h.leading = false;
    const res = await runner(h).runAsLeader({ kind: "switchover", to: "n2" });
    expect(res.status).toBe(503);
    expect(h.stops).toBe(0);
  });
});

describe("scheduled switchover", () => {
  test("stored through the leader, refused twice, cancellable, recorded", async () => {
    const h = new FakeHost();
    const r = runner(h);
    const at = "2026-12-01T12:30:00Z";
    const res = await r.run({ kind: "switchover", to: "n2", at });
    expect(res.status).toBe(202);
    expect(h.sched).toEqual({ at: "2026-12-01T12:30:00.000Z", to: "S", requestedAt: "2026-12-01T12:00:00.000Z", force: false, from: "L" });
    expect(h.stops).toBe(0);
    expect((await r.run({ kind: "switchover", at })).status).toBe(409);
    expect((await r.run({ kind: "switchover-cancel" })).status).toBe(200);
    expect(h.sched).toBeNull();
    expect((await r.run({ kind: "switchover-cancel" })).status).toBe(404);
    expect(h.history.map((e) => e.kind)).toEqual(["schedule", "schedule"]);
  });

  test("an unknown target or a bad time is refused at once", async () => {
    const h = new FakeHost();
    expect((await runner(h).run({ kind: "switchover", to: "nope", at: "2026-12-01T13:00:00Z" })).status).toBe(404);
    expect((await runner(h).run({ kind: "switchover", at: "tomorrow-ish" })).status).toBe(400);
    expect(h.sched).toBeNull();
  });

  test("a time in the past or an empty one is refused, never run now (review: a script's stale or unset date switched over at once)", async () => {
    const h = new FakeHost();
    for (const at of ["2026-12-01T11:00:00Z", "2026-12-01T12:00:00Z", ""]) {
      const r = await runner(h).run({ kind: "switchover", to: "n2", at });
      expect(r).toMatchObject({ ok: false, status: 400 });
      expect(r.message).toContain(at === "" ? "is not a date/time" : "is in the past");
    }
    expect(h.stops).toBe(0);
    expect(h.sched).toBeNull();
  });

  test("the clear not stored in the cluster's copy: not run (the next leader would find it and run it again); run once it is", async () => {
    const h = new FakeHost();
    const r = runner(h);
    await r.run({ kind: "switchover", to: "n2", at: "2026-12-01T12:30:00Z" });
    const stored = h.sched;
    h.wall = Date.parse("2026-12-01T12:30:01Z");
    h.schedRefusal = { status: 503, message: "cluster flags write failed: etcd: request timed out" };
    await r.runDue();
    expect(h.stops).toBe(0);
    expect(h.sched).toEqual(stored); // put back: the clear may have landed, the schedule must not vanish unseen (re-review)
    h.schedRefusal = null;
    await r.runDue();
    expect(h.stops).toBe(1);
    expect(h.sched).toBeNull();
  });
});

describe("scheduled switchover: not after the primary moved, not long after its time", () => {
  const at = "2026-12-01T12:30:00.000Z";
  const stored = { at, to: null, requestedAt: "2026-12-01T12:00:00.000Z", force: false };

  test("scheduled on another leader (a failover moved the primary since): dropped and recorded, not run (review: the new leader switched over again, perhaps back to the node taken out for maintenance)", async () => {
    const h = new FakeHost();
    h.sched = { ...stored, from: "X" }; // adopted from the leader it was scheduled on, n3
    h.wall = Date.parse(at) + 1000;
    await runner(h).runDue();
    expect(h.stops).toBe(0);
    expect(h.resigned).toEqual([]);
    expect(h.sched).toBeNull(); // dropped for good: no later leader runs it either
    expect(h.history.map((e) => e.reason)).toEqual([expect.stringContaining("the primary changed since it was scheduled (n3 led then, n1 now)")]);
  });

  test("due while the cluster is paused: dropped, not run, even forced (review: a --force given when it was scheduled overrode a later pause)", async () => {
    for (const force of [false, true]) {
      const h = new FakeHost();
      h.sched = { ...stored, force, from: "L" };
      h.pausedFlag = true;
      h.wall = Date.parse(at) + 1000;
      await runner(h).runDue();
      expect(h.stops).toBe(0);
      expect(h.sched).toBeNull();
      expect(h.history.map((e) => e.reason)).toEqual([expect.stringContaining("the cluster is paused")]);
    }
  });

  test("found more than SCHEDULE_LATE_MS after its time (no leader held a lease then): dropped, not run; on time, and one an earlier version stored (no `from`), it runs", async () => {
    const h = new FakeHost();
    h.sched = { ...stored, from: "L" };
    h.wall = Date.parse(at) + SCHEDULE_LATE_MS + 1000;
    await runner(h).runDue();
    expect(h.stops).toBe(0);
    expect(h.sched).toBeNull();
    expect(h.history.map((e) => e.reason)).toEqual([expect.stringContaining("no leader with a valid lease ran it at its time")]);
    for (const s of [{ ...stored, from: "L" }, stored]) {
      const g = new FakeHost();
      g.sched = s;
      g.wall = Date.parse(at) + SCHEDULE_LATE_MS - 1000;
      await runner(g).runDue();
      expect(g.stops).toBe(1);
    }
  });
});

describe("node restart: through the leader, never more than one node down", () => {
  test("another member not healthy: refused once the leader's view has had 5 s to show it back", async () => {
    const h = new FakeHost();
    h.members.push({ name: "n3", role: "standby", state: "stopped" });
    const t0 = h.wall;
    const r = await runner(h).run({ kind: "node-restart", node: "n2" });
    expect(r.status).toBe(409);
    expect(r.message).toContain("n3 is standby, stopped: restarting n2 now would take a second node down");
    expect(h.wall - t0).toBeGreaterThanOrEqual(5_000);
    expect(h.asked).toEqual([]);
  });

  test("the view catches up while the leader waits: granted, handed to the member as an earlier version would send it", async () => {
    const h = new FakeHost();
    h.members.push({ name: "n3", role: "standby", state: "stopped" });
    h.onSleep = () => (h.members[2]!.state = "streaming");
    await runner(h).run({ kind: "node-restart", node: "n2" });
    expect(h.asked).toEqual([{ id: "S", req: { kind: "node-restart", node: "S" } }]);
  });

  test("the leadership lost while the leader waits: not granted (a member that has not heard of the new leader would take the grant)", async () => {
    const h = new FakeHost();
    h.members.push({ name: "n3", role: "standby", state: "stopped" });
    h.onSleep = () => {
      h.members[2]!.state = "streaming";
      h.leading = false;
    };
    const r = await runner(h).run({ kind: "node-restart", node: "n2" });
    expect(r).toMatchObject({ ok: false, status: 503, message: expect.stringContaining("no longer leads") });
    expect(h.asked).toEqual([]);
  });

  test("the member asked for may itself be down (restarting it is how it comes back)", async () => {
    const h = new FakeHost();
    h.members[1]!.state = "stopped";
    await runner(h).run({ kind: "node-restart", node: "n2" });
    expect(h.asked.map((a) => a.id)).toEqual(["S"]);
  });

  test("a switchover while the leader decides a restart is refused: it would take the member asked for down with the old primary (review)", async () => {
    const h = new FakeHost();
    h.members.push({ name: "n3", role: "standby", state: "stopped" });
    const r = runner(h);
    let switchover: Promise<ActionResult> | null = null;
    h.onSleep = () => {
      // While the leader waits for n3 to show healthy, the operator (or a schedule) asks for a switchover to n2.
      switchover ??= r.run({ kind: "switchover", to: "n2" });
      h.members[2]!.state = "streaming";
    };
    const restart = await r.run({ kind: "node-restart", node: "n2" });
    expect(await switchover!).toMatchObject({ ok: false, status: 409, message: expect.stringContaining("the restart of n2 is under way") });
    expect(h.stops).toBe(0);
    expect(restart.status).toBe(501); // granted, handed to n2 (the fake answers 501)
    expect(h.asked.map((a) => a.id)).toEqual(["S"]);
  });

  test("one at a time: a second restart while the first is under way is refused at once", async () => {
    const h = new FakeHost();
    h.holdAsks = [];
    const r = runner(h);
    const first = r.run({ kind: "node-restart", node: "n2" });
    await Promise.resolve();
    const second = await r.run({ kind: "node-restart", node: "n1" });
    expect(second.status).toBe(409);
    expect(second.message).toContain("the restart of n2 is under way");
    h.holdAsks[0]!({ status: 200, ok: true, message: "n2 restarted" });
    expect((await first).ok).toBe(true);
    // Done: the next one is granted (this node's own, run here).
    expect((await r.run({ kind: "node-restart", node: "n1" })).ok).toBe(true);
  });

  test("force goes to the member without the leader's check; a backup's run cannot come through the API", async () => {
    const h = new FakeHost();
    h.members.push({ name: "n3", role: "standby", state: "stopped" });
    const r = runner(h);
    expect((await r.run({ kind: "backup", run: { primary: null, leader: "n1" } })).status).toBe(400);
    expect(leaderOnlyPart({ kind: "node-restart", node: "n2" })).toBeNull();
    expect(leaderOnlyPart({ kind: "backup", run: { primary: null, leader: "n1" } })).toContain("run");
    await r.run({ kind: "node-restart", node: "n2", force: true });
    expect(h.asked).toEqual([{ id: "S", req: { kind: "node-restart", node: "S", force: true } }]);
  });

  test("over the mesh: the leader checks a forwarded restart; a member runs its own when the leader grants it; a node that no longer leads runs nothing unchecked", async () => {
    const h = new FakeHost();
    h.members.push({ name: "n3", role: "standby", state: "stopped" });
    const r = runner(h);
    // Forwarded to this leader by a member: checked (n3 is down).
    expect((await r.runAsLeader({ kind: "node-restart", node: "S" }, "S")).status).toBe(409);
    // This node no longer leads (S does): one naming another member is not carried further unchecked...
    h.leaderId = "S";
    expect((await r.runAsLeader({ kind: "node-restart", node: "S" }, "X")).status).toBe(503);
    expect(h.asked).toEqual([]);
    // ...nor one naming this node that a member forwarded for the leader's check before this node stepped down...
    const stale = await r.runAsLeader({ kind: "node-restart", node: "L" }, "X");
    expect(stale.status).toBe(503);
    expect(stale.message).toContain("not granted by the leader");
    expect(h.restarts).toBe(0);
    // ...one naming this node, handed over by the leader that granted it, runs here.
    expect((await r.runAsLeader({ kind: "node-restart", node: "L" }, "S")).ok).toBe(true);
    expect(h.restarts).toBe(1);
  });

  test("each agent's runner owns its grants: a restart one leader holds does not refuse another runner's (two agents in one process, as in tests)", async () => {
    const a = new FakeHost();
    a.holdAsks = [];
    const ra = runner(a);
    const held = ra.run({ kind: "node-restart", node: "n2" });
    await Promise.resolve();
    expect(a.asked).toHaveLength(1);
    const b = new FakeHost();
    const other = await runner(b).run({ kind: "node-restart", node: "n2" });
    expect(other.message).not.toContain("under way");
    expect(b.asked).toHaveLength(1); // granted and handed to the member
    a.holdAsks[0]!({ status: 200, ok: true, message: "n2 restarted" });
    expect((await held).ok).toBe(true);
  });

  test("a restart and a switchover never overlap: each is refused while the other runs", async () => {
    const h = new FakeHost();
    h.holdAsks = [];
    const r = runner(h);
    const restart = r.run({ kind: "node-restart", node: "n2" });
    await Promise.resolve();
    const sw = await r.run({ kind: "switchover", to: "n2" });
    expect(sw.status).toBe(409);
    expect(sw.message).toContain("the restart of n2 is under way");
    h.holdAsks[0]!({ status: 200, ok: true, message: "n2 restarted" });
    await restart;
    // A switchover holding the node: a restart asked meanwhile is refused.
    let release!: () => void;
    const held = new Promise<void>((res) => (release = res));
    const stop = h.pg.stopForHandover;
    h.pg.stopForHandover = async () => {
      await held;
      return stop();
    };
    const switching = r.run({ kind: "switchover", to: "n2" });
    await Promise.resolve();
    const during = await r.run({ kind: "node-restart", node: "n2" });
    expect(during.status).toBe(409);
    expect(during.message).toContain("a switchover is in progress");
    release();
    expect((await switching).status).toBe(200);
  });

  test("on a member that does not lead: forwarded to the leader, naming this node when no node was given", async () => {
    const h = new FakeHost();
    h.leaderId = "S";
    const sent: ActionRequest[] = [];
    h.forwardToLeader = async (req: ActionRequest) => {
      sent.push(req);
      return { status: 200, ok: true, message: "" };
    };
    await runner(h).run({ kind: "node-restart" });
    expect(sent).toEqual([{ kind: "node-restart", node: "L" }]);
    h.leaderId = null as unknown as string;
    expect((await runner(h).run({ kind: "node-restart" })).status).toBe(503);
  });
});
