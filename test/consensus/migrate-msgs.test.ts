// The migration's mesh messages are checked with zod at receipt (src/consensus/migrate-msgs.ts):
// the epoch and built-in term each voter reports, which the leader's next epoch and resumed term rest on.
import { describe, expect, test } from "bun:test";
import { AgentMsgSchema } from "../../src/agent/messages.ts";

const ok = (m: unknown) => AgentMsgSchema.safeParse(m).success;

describe("migration messages at receipt", () => {
  test("an epoch message carries the backend, the epoch (≥ 1) and the stored built-in term (≥ 0, optional from older agents)", () => {
    expect(ok({ t: "migrate-epoch", backend: "etcd", epoch: 3, term: 12 })).toBe(true);
    expect(ok({ t: "migrate-epoch", backend: "etcd", epoch: 3 })).toBe(true);
    expect(ok({ t: "migrate-epoch", backend: "etcd", epoch: 3, term: -1 })).toBe(false);
    expect(ok({ t: "migrate-epoch", backend: "etcd", epoch: 3, term: 1.5 })).toBe(false);
    expect(ok({ t: "migrate-epoch", backend: "etcd", epoch: 0, term: 1 })).toBe(false);
    expect(ok({ t: "migrate-epoch", backend: "zk", epoch: 3, term: 1 })).toBe(false);
  });

  test("an acknowledgement or refusal carries the voter's own backend, epoch (≥ 0) and term", () => {
    expect(ok({ t: "migrate-ack", epoch: 2, ok: false, reason: "no", own: { backend: "builtin", epoch: 0, term: 7 } })).toBe(true);
    expect(ok({ t: "migrate-ack", epoch: 2, ok: true, reason: "" })).toBe(true);
    expect(ok({ t: "migrate-ack", epoch: 2, ok: false, reason: "no", own: { backend: "builtin", epoch: -1, term: 7 } })).toBe(false);
    expect(ok({ t: "migrate-ack", epoch: 2, ok: false, reason: "no", own: { backend: "builtin", epoch: 1, term: Number.MAX_SAFE_INTEGER + 2 } })).toBe(false);
    expect(ok({ t: "migrate-ack", epoch: 2, ok: false, reason: "no", own: { backend: "builtin", epoch: 1 } })).toBe(false);
  });
});
