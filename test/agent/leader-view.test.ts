import { describe, expect, test } from "bun:test";
import type { ClusterView } from "../../src/core/cluster-view.ts";
import { LEADER_VIEW_REUSE_MS, LeaderView } from "../../src/agent/leader-view.ts";

/** A LeaderView with a hand-moved clock and a sender that records each view-req (or refuses: not connected). */
function setup(connected = true) {
  let t = 1000;
  const sent: { to: string; id: number }[] = [];
  const lv = new LeaderView((to, msg) => {
    sent.push({ to, id: msg.id });
    return connected;
  }, () => t);
  return { lv, sent, advance: (ms: number) => { t += ms; } };
}

const view = (n: number) => ({ leader: `v${n}` }) as unknown as ClusterView;

describe("LeaderView", () => {
  test("concurrent callers share one request to the leader", async () => {
    const { lv, sent } = setup();
    const all = Promise.all([lv.get("L", 2000), lv.get("L", 2000), lv.get("L", 2000)]);
    expect(sent).toHaveLength(1);
    lv.answer(sent[0]!.id, view(1), sent[0]!.to);
    expect(await all).toEqual([view(1), view(1), view(1)]);
  });

  test(`an answer is reused for ${LEADER_VIEW_REUSE_MS} ms after it arrived, then the leader is asked again`, async () => {
    const { lv, sent, advance } = setup();
    const first = lv.get("L", 2000);
    advance(300); // the answer takes a while: reuse counts from its arrival
    lv.answer(sent[0]!.id, view(1), sent[0]!.to);
    await first;
    advance(LEADER_VIEW_REUSE_MS - 1);
    expect(await lv.get("L", 2000)).toEqual(view(1));
    expect(sent).toHaveLength(1);
    advance(1);
    const again = lv.get("L", 2000);
    expect(sent).toHaveLength(2);
    lv.answer(sent[1]!.id, view(2), sent[1]!.to);
    expect(await again).toEqual(view(2));
  });

  test("no answer (deadline, or the leader not connected) is reused too: a burst does not ask again", async () => {
    const slow = setup();
    expect(await slow.lv.get("L", 5)).toBeNull();
    expect(await slow.lv.get("L", 5)).toBeNull();
    expect(slow.sent).toHaveLength(1);
    const cut = setup(false);
    expect(await cut.lv.get("L", 2000)).toBeNull();
    expect(await cut.lv.get("L", 2000)).toBeNull();
    expect(cut.sent).toHaveLength(1);
  });

  test("another leader is asked at once; a late answer of the former one is not kept", async () => {
    const { lv, sent } = setup();
    const old = lv.get("L1", 2000);
    const now = lv.get("L2", 2000);
    expect(sent.map((s) => s.to)).toEqual(["L1", "L2"]);
    lv.answer(sent[1]!.id, view(2), sent[1]!.to);
    lv.answer(sent[0]!.id, view(1), sent[0]!.to);
    expect([await old, await now]).toEqual([view(1), view(2)]);
    expect(await lv.get("L2", 2000)).toEqual(view(2));
    expect(sent).toHaveLength(2);
  });

  test("ask() (handover's 'does it answer now') always sends, whatever is cached or in flight", async () => {
    const { lv, sent } = setup();
    const g = lv.get("L", 2000);
    lv.answer(sent[0]!.id, view(1), sent[0]!.to);
    await g;
    const a1 = lv.ask("L", 2000);
    const a2 = lv.ask("L", 2000);
    expect(sent).toHaveLength(3);
    lv.answer(sent[1]!.id, view(3), sent[1]!.to);
    lv.answer(sent[2]!.id, view(4), sent[2]!.to);
    expect([await a1, await a2]).toEqual([view(3), view(4)]);
    expect(await lv.get("L", 2000)).toEqual(view(1)); // and it leaves the cache alone
  });

  test("an answer from another peer than the one asked is ignored (ids are sequential: a member could guess them)", async () => {
    const { lv, sent } = setup();
    const g = lv.get("L", 2000);
    lv.answer(sent[0]!.id, view(9), "M");
    lv.answer(sent[0]!.id, view(1), "L");
    expect(await g).toEqual(view(1));
  });

  test("cancelAll answers every waiter with null", async () => {
    const { lv } = setup();
    const g = lv.get("L", 2000);
    const a = lv.ask("M", 2000);
    lv.cancelAll();
    expect([await g, await a]).toEqual([null, null]);
  });
});
