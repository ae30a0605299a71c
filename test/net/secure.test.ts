import { describe, expect, test } from "bun:test";
import { Channel, SealError, deriveKeys, helloProblem, helloSchema, makeHello, open, proofFor, seal, verifyProof } from "../../src/net/secure.ts";
import { nid } from "./helpers.ts";

const secret = "correct horse battery staple";
const d = makeHello({ cluster: "c1", nodeId: nid("node-a"), name: "a", addr: "127.0.0.1:1", dialer: true });
const a = makeHello({ cluster: "c1", nodeId: nid("node-b"), name: "b", addr: "127.0.0.1:2", dialer: false });

function sealError(fn: () => unknown): SealError {
  try {
    fn();
  } catch (e) {
    if (e instanceof SealError) return e;
    throw e;
  }
  throw new Error("expected a SealError");
}

describe("handshake", () => {
  test("hello has the documented shape and a fresh 32-byte nonce", () => {
    expect(helloSchema.parse(d)).toEqual(d);
    expect(d.nonce).toMatch(/^[0-9a-f]{64}$/);
    expect(makeHello({ cluster: "c1", nodeId: nid("x"), name: "x", addr: "h:1", dialer: true }).nonce).not.toBe(d.nonce);
  });

  test("a hello whose node id is outside NodeIdSchema fails the schema (issue 10: any string up to 64 was taken)", () => {
    for (const bad of ["evil node", "a", "node-a", "ABCDEF0123456789", "0".repeat(17), ""]) {
      const r = helloSchema.safeParse({ ...d, nodeId: bad });
      expect(r.success).toBe(false);
      expect(r.error?.issues.map((i) => i.path.join("."))).toEqual(["nodeId"]);
    }
    expect(helloSchema.safeParse({ ...d, nodeId: "0123456789abcdef" }).success).toBe(true);
  });

  test("both proofs verify with the shared secret", () => {
    expect(verifyProof(secret, "dialer", d, a, proofFor(secret, "dialer", d, a))).toBe(true);
    expect(verifyProof(secret, "acceptor", d, a, proofFor(secret, "acceptor", d, a))).toBe(true);
  });

  test("a proof made with another secret fails", () => {
    expect(verifyProof(secret, "acceptor", d, a, proofFor("wrong", "acceptor", d, a))).toBe(false);
  });

  test("reflection: the acceptor's proof is not a valid dialer proof and vice versa", () => {
    expect(verifyProof(secret, "dialer", d, a, proofFor(secret, "acceptor", d, a))).toBe(false);
    expect(verifyProof(secret, "acceptor", d, a, proofFor(secret, "dialer", d, a))).toBe(false);
    // Swapping the hellos' order (same nonces, other roles) doesn't verify either.
    expect(verifyProof(secret, "dialer", d, a, proofFor(secret, "dialer", a, d))).toBe(false);
  });

  test("a proof is bound to both nonces", () => {
    const d2 = { ...d, nonce: "00".repeat(32) };
    expect(verifyProof(secret, "acceptor", d2, a, proofFor(secret, "acceptor", d, a))).toBe(false);
  });

  test("a proof covers the advertised address and name of both hellos (issue 10: they were outside it)", () => {
    const good = proofFor(secret, "acceptor", d, a);
    for (const [dd, aa] of [[{ ...d, addr: "127.0.0.99:1" }, a], [d, { ...a, addr: "127.0.0.99:1" }], [{ ...d, name: "evil" }, a], [d, { ...a, name: "evil" }]] as const) {
      expect(verifyProof(secret, "acceptor", dd, aa, good)).toBe(false);
    }
  });

  test("malformed macs are rejected without throwing", () => {
    expect(verifyProof(secret, "dialer", d, a, "")).toBe(false);
    expect(verifyProof(secret, "dialer", d, a, "zz")).toBe(false);
  });

  test("hello problems: wrong cluster, role; our own node id is none (only the proofs can show it is us)", () => {
    const me = { cluster: "c1", nodeId: nid("node-b") };
    expect(helloProblem(me, d, true)).toBeUndefined();
    expect(helloProblem(me, { ...d, cluster: "other" }, true)).toBe("wrong-cluster");
    expect(helloProblem(me, { ...d, nodeId: nid("node-b") }, true)).toBeUndefined();
    expect(helloProblem(me, d, false)).toBe("wrong-role");
  });
});

describe("sealing", () => {
  const keys = deriveKeys(secret, d.nonce, a.nonce);

  test("keys: 32 bytes, one per direction, depend on the secret and both nonces", () => {
    expect(keys.d2a.length).toBe(32);
    expect(keys.d2a.equals(keys.a2d)).toBe(false);
    expect(deriveKeys("other", d.nonce, a.nonce).d2a.equals(keys.d2a)).toBe(false);
    expect(deriveKeys(secret, a.nonce, d.nonce).d2a.equals(keys.d2a)).toBe(false);
  });

  test("round trip and confidentiality", () => {
    const msg = { t: "app", password: "s3cret-repl-pw" };
    const f = seal(keys.d2a, 0, msg);
    expect(f.s).toBe(0);
    expect(Buffer.from(f.d, "base64").toString("latin1")).not.toContain("s3cret");
    expect(open(keys.d2a, 0, f)).toEqual(msg);
  });

  test("tampered ciphertext, tag or wrong key is rejected", () => {
    const f = seal(keys.d2a, 0, { x: 1 });
    const raw = Buffer.from(f.d, "base64");
    for (const i of [0, raw.length - 1]) {
      const t = Buffer.from(raw);
      t[i]! ^= 1;
      expect(sealError(() => open(keys.d2a, 0, { s: 0, d: t.toString("base64") })).reason).toBe("bad-seal");
    }
    expect(sealError(() => open(keys.a2d, 0, f)).reason).toBe("bad-seal");
    expect(sealError(() => open(keys.d2a, 0, { s: 0, d: "" })).reason).toBe("bad-seal");
    expect(sealError(() => open(keys.d2a, 0, { hello: 1 })).reason).toBe("bad-seal");
  });

  test("the sequence number is authenticated: relabelling a frame fails", () => {
    const f = seal(keys.d2a, 1, { x: 1 });
    expect(sealError(() => open(keys.d2a, 0, { ...f, s: 0 })).reason).toBe("bad-seal");
  });

  test("channel: in-order frames pass; replayed, reordered and skipped frames fail", () => {
    const dialer = new Channel(keys, "dialer");
    const acceptor = new Channel(keys, "acceptor");
    const f0 = dialer.seal({ n: 0 });
    const f1 = dialer.seal({ n: 1 });
    const f2 = dialer.seal({ n: 2 });
    expect(acceptor.open(f0)).toEqual({ n: 0 });
    expect(sealError(() => acceptor.open(f0)).message).toContain("replay"); // replay
    expect(sealError(() => acceptor.open(f2)).reason).toBe("bad-seal"); // skip/reorder
    expect(acceptor.open(f1)).toEqual({ n: 1 }); // a rejected frame does not advance the sequence
    expect(dialer.open(acceptor.seal("back"))).toBe("back");
    expect(sealError(() => dialer.open(dialer.seal("own"))).reason).toBe("bad-seal"); // own direction's key
  });

  test("a message that can't be framed does not consume a sequence number", () => {
    const dialer = new Channel(keys, "dialer");
    const acceptor = new Channel(keys, "acceptor");
    expect(() => dialer.sealWith({ big: 1 }, () => { throw new Error("too large"); })).toThrow("too large");
    expect(acceptor.open(dialer.seal({ ok: 1 }))).toEqual({ ok: 1 });
  });
});
