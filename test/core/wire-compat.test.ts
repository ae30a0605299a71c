// Agents of two builds talk during a rolling upgrade (docs/upgrade.md): a field a newer peer adds is
// ignored (dropped before use), while a field this build needs is still required and checked.
import { expect, test } from "bun:test";
import { AgentMsgSchema } from "../../src/agent/messages.ts";
import { ElectionMsgSchema } from "../../src/core/messages.ts";
import { ClusterViewSchema } from "../../src/core/cluster-view.ts";

const hb = {
  t: "hb", term: 3, seq: 10, left: 1200,
  membership: { term: 1, index: 1, voters: ["aaaaaaaaaaaaaaa1"] },
  pos: { timeline: 1, lsn: "0/3000148" },
};

test("a heartbeat with a field this build does not know is accepted without it; a missing or bad field is refused", () => {
  const base = ElectionMsgSchema.safeParse(hb);
  if (!base.success) throw new Error(`fixture: ${base.error.message}`);
  const newer = ElectionMsgSchema.safeParse({ ...hb, future: { anything: 1 }, pos: { ...hb.pos, future: true } });
  expect(newer.success).toBe(true);
  expect(newer.data).toEqual(base.data);
  expect("future" in (newer.data as object)).toBe(false);
  const { pos: _pos, ...noPos } = hb;
  expect(ElectionMsgSchema.safeParse(noPos).success).toBe(false);
  expect(ElectionMsgSchema.safeParse({ ...hb, term: -1 }).success).toBe(false);
  expect(AgentMsgSchema.safeParse({ ...hb, future: 1 }).success).toBe(true);
});

test("a cluster view with a member field this build does not know is accepted without it", () => {
  const view = {
    cluster: "c", leader: null, leaderName: null, term: 1, primary: null,
    members: [{ id: "aaaaaaaaaaaaaaa1", name: "n1", host: "10.0.0.1", port: 5432, role: "primary", state: "running", leader: false, voter: true, timeline: 1, lsn: "0/1", lagBytes: null, lagSeconds: null, note: "", error: null }],
  };
  const base = ClusterViewSchema.safeParse(view);
  if (!base.success) throw new Error(`fixture: ${base.error.message}`);
  const newer = ClusterViewSchema.parse({ ...view, later: 1, members: [{ ...view.members[0], later: "x" }] });
  expect(newer).toEqual(base.data);
  expect(ClusterViewSchema.safeParse({ ...view, members: [{ ...view.members[0], role: "boss" }] }).success).toBe(false);
});

test("a state message without the promotability fields (an older agent) is accepted; with them, a bad exclusion is refused", () => {
  const state = { t: "state", role: "database", pg: null, nofailover: true };
  expect(AgentMsgSchema.safeParse(state).success).toBe(true);
  const newer = { ...state, promotable: false, epoch: 12345, exclusion: { term: 3, at: { timeline: 1, lsn: "0/3000148" }, excluded: [{ id: "aaaaaaaaaaaaaaa1", epoch: 12345 }] } };
  expect(AgentMsgSchema.safeParse(newer).success).toBe(true);
  expect(AgentMsgSchema.safeParse({ ...newer, exclusion: { ...newer.exclusion, excluded: [{ id: "not-an-id", epoch: 1 }] } }).success).toBe(false);
});

// Review (agent lifecycle): two nested schemas of hot messages were strict, so a newer agent adding a
// field there had every state message of it dropped by an agent of the version before.
test("a state message whose ordered values or scheduled switchover carry a field this build does not know, or an ordered setting it does not know, is accepted", () => {
  const pg = { port: 5432, data: "present", systemId: "7", running: true, up: true, inRecovery: true, position: { timeline: 1, lsn: "0/3000148" }, receiveLsn: null, replayLsn: null, upstream: null, streaming: false, replication: [], slots: [], action: "none", note: "", error: null, haveSecrets: true };
  const ordered = [{ name: "max_connections", running: 100, next: 100, control: 100 }];
  const scheduled = { at: "2026-12-08T10:00:00Z", to: null, requestedAt: "2026-12-07T10:00:00Z", force: false };
  const state = { t: "state", role: "database", pg: { ...pg, ordered }, scheduled };
  const base = AgentMsgSchema.safeParse(state);
  if (!base.success) throw new Error(`fixture: ${base.error.message}`);
  const newer = AgentMsgSchema.safeParse({
    ...state,
    pg: { ...pg, ordered: [{ ...ordered[0], future: 1 }, { name: "max_future_things", running: 1, next: 1, control: null }] },
    scheduled: { ...scheduled, by: "operator" },
  });
  if (!newer.success) throw new Error(newer.error.message);
  expect(newer.data).toEqual(base.data);
  // What this build reads is still checked.
  expect(AgentMsgSchema.safeParse({ ...state, scheduled: { ...scheduled, force: "yes" } }).success).toBe(false);
});
