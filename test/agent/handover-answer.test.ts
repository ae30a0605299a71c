// The old primary's side of a switchover's handover (action-host.ts): the target's answer counts as
// "holds the final WAL" only when the position it sends is at or past the final one, and only an
// answer from the target itself counts.
import { expect, test } from "bun:test";
import { AgentActionHost, type ActionHostDeps } from "../../src/agent/action-host.ts";

function host(lease: { term: number; until: number } | null = { term: 9, until: Infinity }) {
  const sent: { to: string; id: number; term?: number }[] = [];
  const deps = {
    mesh: { send: (to: string, msg: { id: number; term?: number }) => (sent.push({ to, id: msg.id, term: msg.term }), true) }, nodeId: "L",
    consensus: { status: () => ({ term: 11 }), lease: () => lease },
    facts: () => ({ self: { id: "L", name: "n1" }, peers: [{ id: "S", name: "n2" }] }),
  } as unknown as ActionHostDeps;
  return { h: new AgentActionHost(deps), sent };
}

const FINAL = { timeline: 1, lsn: "0/3000100" };

test("the target at or past the final position: confirmed", async () => {
  const { h, sent } = host();
  const at = h.handover("S", FINAL, 1000);
  // The term it leads in (the lease's), not its current one: the target refuses a handover sent in a
  // term older than its own, and one from a deposed leader that took a newer term is never sent.
  expect(sent[0]?.term).toBe(9);
  h.handovers.answer(sent[0]!.id, { timeline: 1, lsn: "0/3000100" }, "S");
  expect(await at).toBe(true);
  const past = h.handover("S", FINAL, 1000);
  h.handovers.answer(sent[1]!.id, { timeline: 1, lsn: "0/4000000" }, "S");
  expect(await past).toBe(true);
});

test("the target behind the final position, or without a position: not confirmed (the old primary is rewound before it follows)", async () => {
  const { h, sent } = host();
  const behind = h.handover("S", FINAL, 1000);
  h.handovers.answer(sent[0]!.id, { timeline: 1, lsn: "0/30000F8" }, "S");
  expect(await behind).toBe(false);
  const none = h.handover("S", FINAL, 1000);
  h.handovers.answer(sent[1]!.id, null, "S");
  expect(await none).toBe(false);
});

test("an answer from another member than the target is ignored", async () => {
  const { h, sent } = host();
  const r = h.handover("S", FINAL, 50);
  h.handovers.answer(sent[0]!.id, { timeline: 1, lsn: "0/4000000" }, "M");
  expect(await r).toBe(false); // the deadline, not M's answer
});

test("the target's connection closes while it is asked: answered at once as not confirmed; a forwarded request as not answered (504)", async () => {
  const { h } = host();
  const handover = h.handover("S", FINAL, 60_000);
  const action = h.askNode("S", { kind: "backup", type: "full" }, 24 * 3600_000);
  h.peerGone("S");
  expect(await handover).toBe(false);
  expect(await action).toMatchObject({ status: 504, ok: false });
});

test("a node without a lease (deposed while it stopped its server) sends no handover: not confirmed", async () => {
  const { h, sent } = host(null);
  expect(await h.handover("S", FINAL, 1000)).toBe(false);
  expect(sent).toEqual([]);
});
