// composeView: the member state (a server that cannot work says so), the leader's scheduled
// switchover passed through, and the view's schema (what a follower accepts from the leader over
// the mesh) bounds it.
import { describe, expect, test } from "bun:test";
import { ClusterViewSchema, composeView, type ViewInput } from "../../src/core/cluster-view.ts";
import type { PgReport } from "../../src/core/report.ts";
import { renderTable } from "../../src/cli/cmd-cluster.ts";
import { chooseTargets, restartMember, restartRefusal } from "../../src/core/restart-plan.ts";

const base: ViewInput = { cluster: "c", term: 4, leader: "a", members: [{ id: "a", name: "n1", role: "database", host: "10.0.0.1", voter: true, reachable: true, report: null }], slotOf: (id) => `pgherd_${id}` };
const scheduled = { at: "2026-12-01T17:00:00.000Z", to: "n2", requestedAt: "2026-12-01T16:00:00.000Z" };

describe("scheduled switchover in the cluster view", () => {
  test("passed through when the leader has one, and valid for the schema", () => {
    const v = composeView({ ...base, scheduledSwitchover: scheduled });
    expect(v.scheduledSwitchover).toEqual(scheduled);
    expect(ClusterViewSchema.parse(v)).toEqual(v);
    const any = composeView({ ...base, scheduledSwitchover: { ...scheduled, to: null } });
    expect(any.scheduledSwitchover?.to).toBeNull();
  });

  test("absent when there is none", () => {
    expect("scheduledSwitchover" in composeView(base)).toBe(false);
    expect("scheduledSwitchover" in composeView({ ...base, scheduledSwitchover: null })).toBe(false);
  });

  test("the schema refuses a time that is not ISO 8601 with an offset, and over-long names", () => {
    const v = composeView(base);
    expect(ClusterViewSchema.safeParse({ ...v, scheduledSwitchover: { ...scheduled, at: "tomorrow" } }).success).toBe(false);
    expect(ClusterViewSchema.safeParse({ ...v, scheduledSwitchover: { ...scheduled, at: "2026-12-01T17:00:00" } }).success).toBe(false);
    expect(ClusterViewSchema.safeParse({ ...v, scheduledSwitchover: { ...scheduled, to: "x".repeat(65) } }).success).toBe(false);
    // A field of a newer build is dropped, not refused (test/core/wire-compat.test.ts).
    expect(ClusterViewSchema.parse({ ...v, scheduledSwitchover: { ...scheduled, extra: 1 } }).scheduledSwitchover).toEqual(scheduled);
    expect(ClusterViewSchema.safeParse({ ...v, scheduledSwitchover: null }).success).toBe(true);
  });
});

describe("member state", () => {
  const pg = (over: Partial<PgReport>): PgReport => ({
    port: 5432, data: "present", systemId: "7000000000000000001", running: true, up: true, inRecovery: false,
    position: { timeline: 1, lsn: "0/3000148" }, receiveLsn: null, replayLsn: null, upstream: null, streaming: false,
    replication: [], slots: [], action: "run as the primary", note: "", error: null, haveSecrets: true, ...over,
  });
  const health = (state: NonNullable<PgReport["health"]>["state"]): PgReport["health"] => ({ state, reason: `${state}: why`, since: "2026-12-01T17:00:00.000Z", disks: [], diskWarning: null });
  const stateOf = (r: PgReport) => composeView({ ...base, members: [{ ...base.members[0]!, report: r }] }).members[0]!.state;

  test("a running server that cannot work says so (stuck, disk-full, cannot-write), not running or starting", () => {
    expect(stateOf(pg({}))).toBe("running");
    expect(stateOf(pg({ health: health("busy") }))).toBe("running");
    expect(stateOf(pg({ health: health("stuck"), up: false }))).toBe("stuck");
    expect(stateOf(pg({ health: health("disk-full") }))).toBe("disk-full");
    expect(stateOf(pg({ health: health("cannot-write") }))).toBe("cannot-write");
    // A stopped (fenced) server is stopped, whatever the last verdict; a full disk stays full.
    expect(stateOf(pg({ health: health("stuck"), running: false, up: false, action: "wait" }))).toBe("stopped");
    expect(stateOf(pg({ health: health("disk-full"), running: false, up: false, action: "wait" }))).toBe("disk-full");
    expect(ClusterViewSchema.safeParse(composeView({ ...base, members: [{ ...base.members[0]!, report: pg({ health: health("stuck") }) }] })).success).toBe(true);
  });

  test("lag in seconds: PostgreSQL's NULL replay_lag is 0 only when nothing is left to replay, unknown during a catch-up (review: /replica?lag=10s said 200 for a standby 20 GiB behind)", () => {
    const row = (over: Partial<PgReport["replication"][number]>) => ({ name: "pgherd_b", clientAddr: "10.0.0.2", state: "streaming", syncState: "async", lagBytes: 0, replayLagSeconds: null, ...over });
    const lagOf = (repl: PgReport["replication"][number]) => composeView({ ...base, members: [
      { ...base.members[0]!, report: pg({ replication: [repl] }) },
      { ...base.members[0]!, id: "b", name: "n2", report: pg({ inRecovery: true, replayLsn: "0/3000148", streaming: true }) },
    ] }).members[1]!.lagSeconds;
    expect(lagOf(row({}))).toBe(0); // idle, caught up
    expect(lagOf(row({ state: "catchup", lagBytes: 20 * 2 ** 30 }))).toBeNull(); // catching up: unknown, not 0
    expect(lagOf(row({ lagBytes: 4096, replayLagSeconds: 0.25 }))).toBe(0.25); // measured
  });

  test("lag in bytes of a standby the primary does not stream to: from the reports on the primary's timeline only, never below 0 (review: a standby past the new primary's switch point on the old timeline showed lag 0 or less)", () => {
    const lagOf = (standby: Partial<PgReport>) => composeView({ ...base, members: [
      { ...base.members[0]!, report: pg({ position: { timeline: 3, lsn: "0/5010000" } }) },
      { ...base.members[0]!, id: "b", name: "n2", report: pg({ inRecovery: true, ...standby }) },
    ] }).members[1]!.lagBytes;
    expect(lagOf({ position: { timeline: 3, lsn: "0/500F000" }, replayLsn: "0/500F000" })).toBe(4096);
    expect(lagOf({ position: { timeline: 3, lsn: "0/5011000" }, replayLsn: "0/5011000" })).toBe(0); // its report newer than the primary's
    expect(lagOf({ position: { timeline: 2, lsn: "0/5000100" }, replayLsn: "0/5000100" })).toBeNull();
  });

  test("a standby lists the primary's permanent slots it holds no copy of", () => {
    const primary = pg({ permanent: [{ name: "cdc", type: "logical", lsn: "0/3000148" }, { name: "recv", type: "physical", lsn: "0/3000148" }] });
    const standby = (over: Partial<PgReport>) => pg({ inRecovery: true, replayLsn: "0/3000148", streaming: true, ...over });
    const members = [
      { ...base.members[0]!, report: primary },
      { ...base.members[0]!, id: "b", name: "n2", report: standby({ permanentCopies: ["recv"] }) },
      { ...base.members[0]!, id: "c", name: "n3", report: standby({ permanentCopies: ["cdc", "recv"] }) },
    ];
    const v = composeView({ ...base, members });
    expect(v.members.map((m) => m.missingSlotCopies)).toEqual([undefined, ["cdc"], undefined]);
    expect(ClusterViewSchema.parse(v)).toEqual(v);
    // `cluster ls` says it; `pgherd restart` plans with it.
    expect(renderTable(v, "leader")).toMatch(/n2 .*no copy of slot\(s\) cdc/);
    expect(renderTable(v, "leader")).not.toMatch(/n3 .*no copy/);
    expect(restartMember(v.members[1]!).missingSlotCopies).toEqual(["cdc"]);
  });

  test("a database member that is never promoted says so (promotable: false): cluster ls, and pgherd restart's plan", () => {
    const members = [
      { ...base.members[0]!, report: pg({}) },
      { ...base.members[0]!, id: "b", name: "n2", neverPromoted: true, report: pg({ inRecovery: true, streaming: true }) },
      { ...base.members[0]!, id: "w", name: "wit", role: "witness" as const, neverPromoted: true, report: null },
    ];
    const v = composeView({ ...base, members });
    expect(v.members.map((m) => m.promotable)).toEqual([undefined, false, undefined]);
    expect(ClusterViewSchema.parse(v)).toEqual(v);
    expect(renderTable(v, "leader")).toMatch(/n2 .*never promoted/);
    expect(restartMember(v.members[1]!).promotable).toBe(false);
    expect(restartMember(v.members[0]!).promotable).toBe(true);
  });

  test("a node pending approval is not a member pgherd restart restarts or waits for (review: its missing data held every restart until --timeout)", () => {
    const members = [
      { ...base.members[0]!, report: pg({}) },
      { ...base.members[0]!, id: "b", name: "n2", report: pg({ inRecovery: true, streaming: true }) },
      { ...base.members[0]!, id: "c", name: "n3", voter: false, reachable: true, report: null },
    ];
    const v = composeView({ ...base, members });
    expect(v.members[2]!.membership).toBe("pending");
    const plan = v.members.map(restartMember);
    expect(plan.map((m) => m.role)).toEqual(["primary", "standby", "other"]);
    expect(restartRefusal(plan, "n2", null)).toBeNull();
    expect(chooseTargets(plan, { pending: false })).toEqual({ ok: true, targets: ["n1", "n2"] });
  });
});

describe("a non-voter's note", () => {
  test("says why the leader does not make it a voter (its data), else what it waits for (review)", () => {
    const d = { id: "d", name: "n4", role: "database" as const, host: "10.0.0.4", voter: false, reachable: true, report: null };
    const blocked = "its data directory holds another cluster (system identifier 9, this cluster's is 7): empty it";
    const note = (m: Partial<typeof d> & { approved?: boolean; joinBlocked?: string | null }) => composeView({ ...base, members: [...base.members, { ...d, ...m }] }).members.find((x) => x.id === "d")!.note;
    expect(note({ joinBlocked: blocked })).toBe(`non-voter, not made a voter while ${blocked}`);
    expect(note({ approved: true, joinBlocked: blocked })).toBe(`non-voter, not made a voter while ${blocked}`);
    expect(note({})).toBe("non-voter, pending approval (pgherd member approve n4)");
    expect(note({ approved: true })).toBe("approved: the leader makes it a voter once it is connected");
  });
});
