import { expect, test } from "bun:test";
import {
  type ConfirmInput, confirmationDeadline, decideConfirm, effectiveDeadline, failsafeDeadline, FailsafeReqSchema, FailsafeRespSchema, mayTake, missing, shouldAsk,
} from "../../src/consensus/etcd/failsafe-core.ts";
import { AgentMsgSchema } from "../../src/agent/messages.ts";
import { ConfigError, parseConfig } from "../../src/config/load.ts";

const ask: ConfirmInput = {
  now: 10_000, enabled: true, from: "L", term: 7, leader: { id: "L", term: 7 }, leading: false, uncertainUntil: -Infinity, promiseMs: 5000,
};

test("confirm: a follower of the asking leader in its term promises not to take the key for promiseMs on its own clock", () => {
  expect(decideConfirm(ask)).toEqual({ ok: true, promisedUntil: 15_000 });
});

test("confirm: refused with failsafe off on the confirmer (it never promised anything)", () => {
  expect(decideConfirm({ ...ask, enabled: false })).toEqual({ ok: false, reason: "failsafe is off on this node" });
});

test("confirm: refused while the confirmer leads or is taking the key itself", () => {
  expect(decideConfirm({ ...ask, leading: true }).ok).toBe(false);
});

test("confirm: refused while a take of the confirmer's may have succeeded without an answer", () => {
  expect(decideConfirm({ ...ask, uncertainUntil: 10_001 }).ok).toBe(false);
  expect(decideConfirm({ ...ask, uncertainUntil: 10_000 }).ok).toBe(true);
});

test("confirm: refused when the confirmer's etcd view has no leader key (etcd let the asker's key go)", () => {
  expect(decideConfirm({ ...ask, leader: null })).toEqual({ ok: false, reason: "this node sees no leader key in etcd" });
});

test("confirm: refused when the confirmer follows another node, or the asker in another term", () => {
  expect(decideConfirm({ ...ask, leader: { id: "X", term: 9 } })).toEqual({ ok: false, reason: "this node follows X" });
  expect(decideConfirm({ ...ask, term: 6 })).toEqual({ ok: false, reason: "this node sees term 7, not 6" });
});

test("a node that promised takes no key and publishes no final position before its promise ends", () => {
  expect(mayTake(14_999, 15_000)).toBe(false);
  expect(mayTake(15_000, 15_000)).toBe(true);
});

test("a confirmation's deadline plus the fence ends, in real time, before the promise can end, at worst drift", () => {
  for (const promiseMs of [2000, 5000, 60_000]) {
    for (const drift of [0, 0.02, 0.1]) {
      for (const fenceMs of [0, 500]) {
        for (const delayMs of [0, 3, 800]) {
          const sentAt = 1000;
          const until = confirmationDeadline(sentAt, promiseMs, drift, fenceMs);
          if (until === null) continue;
          // Leader's clock slow by drift: its span takes longer in real time. The confirmer receives
          // `delayMs` (real) after the send and its clock is fast: the promise ends soonest.
          const fencedReal = (until - sentAt + fenceMs) / (1 - drift);
          const promiseEndsReal = delayMs + promiseMs / (1 + drift);
          expect(fencedReal).toBeLessThanOrEqual(promiseEndsReal + 1e-6);
        }
      }
    }
  }
  expect(confirmationDeadline(0, 5000, 0, 500)).toBe(4500);
  expect(confirmationDeadline(0, 400, 0, 500)).toBeNull();
});

test("the failsafe deadline is the earliest of every other voter's; one missing voter gives none", () => {
  const c = new Map([["a", 5000], ["b", 4000]]);
  expect(failsafeDeadline(["a", "b"], c)).toBe(4000);
  expect(failsafeDeadline(["a", "b", "w"], c)).toBeNull();
  expect(missing(["a", "b", "w"], c, 4500)).toEqual(["b", "w"]);
});

test("with no other voter failsafe gives nothing (nobody could bound the leader)", () => {
  expect(failsafeDeadline([], new Map())).toBeNull();
});

test("the leader acts until the later of its etcd lease and its failsafe deadline", () => {
  expect(effectiveDeadline(3000, 4000)).toBe(4000);
  expect(effectiveDeadline(5000, 4000)).toBe(5000);
  expect(effectiveDeadline(3000, null)).toBe(3000);
  expect(effectiveDeadline(null, 4000)).toBe(4000);
});

test("the leader asks once half of the usable lease is gone without a renewal", () => {
  expect(shouldAsk(1000, 1000 + 4300, 4300)).toBe(false);
  expect(shouldAsk(1000, 1000 + 2149, 4300)).toBe(true);
  expect(shouldAsk(1000, null, 4300)).toBe(true);
});

test("messages are validated at receipt: a malformed one does not parse (the mesh logs and drops it)", () => {
  expect(AgentMsgSchema.safeParse({ t: "failsafe-req", id: 1, term: 3 }).success).toBe(true);
  expect(AgentMsgSchema.safeParse({ t: "failsafe-resp", id: 1, term: 3, ok: true, promiseMs: 5000, reason: "" }).success).toBe(true);
  expect(FailsafeReqSchema.safeParse({ t: "failsafe-req", id: -1, term: 3 }).success).toBe(false);
  expect(FailsafeRespSchema.safeParse({ t: "failsafe-resp", id: 1, term: 3, ok: true, promiseMs: 3_600_000, reason: "" }).success).toBe(false);
  expect(AgentMsgSchema.safeParse({ t: "failsafe-resp", id: 1, term: 3, ok: "yes", promiseMs: 5000, reason: "" }).success).toBe(false);
});

test("config: failsafe only with backend etcd, checked at load", () => {
  const base = `cluster = "main"\nsecret = "${"k".repeat(40)}"\n`;
  expect(parseConfig(`${base}[consensus]\nbackend = "etcd"\nendpoints = ["http://127.0.0.1:2379"]\nfailsafe = true\n`, "pgherd.toml").consensus.failsafe).toBe(true);
  expect(parseConfig(base, "pgherd.toml").consensus.failsafe).toBe(false);
  try {
    parseConfig(`${base}[consensus]\nfailsafe = true\n`, "pgherd.toml");
    throw new Error("accepted");
  } catch (e) {
    expect((e as ConfigError).lines).toEqual(['pgherd.toml: consensus.failsafe needs backend = "etcd" (the built-in election has no external store to lose)']);
  }
});
