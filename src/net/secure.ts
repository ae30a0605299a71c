// Mesh handshake and frame protection. Pure functions over node:crypto so every step is
// unit-testable; the connection state machine lives in conn.ts.
//
// Handshake: the dialer sends a hello, the acceptor answers with its hello and its proof, the
// dialer verifies that proof and sends its own. Each proof is an HMAC over every field of both
// hellos (the advertised address and name included, so the mesh address a peer reports is
// authenticated) keyed by the cluster secret and bound to the sender's role, so a proof can't be
// reflected back. Version 2 of the hello: version 1 left name and addr outside the proof.
// Afterwards each direction has its own HKDF-derived AES-256-GCM key and a strict sequence number.
import { createCipheriv, createDecipheriv, createHmac, hkdfSync, randomBytes, timingSafeEqual } from "node:crypto";
import { z } from "zod";
import { wireNodeNameSchema } from "../config/hostport.ts";
import { NodeIdSchema } from "../core/messages.ts";

export type Role = "dialer" | "acceptor";

const ident = z.string().min(1).max(64);
export const helloSchema = z.strictObject({
  t: z.literal("hello"),
  v: z.literal(2),
  cluster: ident,
  nodeId: NodeIdSchema, // the one node id schema: an id the state files could not hold never gets in
  name: wireNodeNameSchema, // a name is written into logs, hooks' environment, pgpool.conf
  nonce: z.string().regex(/^[0-9a-f]{64}$/, "nonce must be 32 bytes of lowercase hex"),
  addr: z.string().min(1).max(300),
  dialer: z.boolean(),
});
export type Hello = z.infer<typeof helloSchema>;

export const proofSchema = z.strictObject({
  t: z.literal("proof"),
  mac: z.string().regex(/^[0-9a-f]{64}$/, "mac must be 32 bytes of lowercase hex"),
});
export type Proof = z.infer<typeof proofSchema>;

/** A sealed frame on the wire: sequence number and base64 of ciphertext + GCM tag (checked by asSealed). */
export type Sealed = { s: number; d: string };

export function makeHello(o: { cluster: string; nodeId: string; name: string; addr: string; dialer: boolean }): Hello {
  return { t: "hello", v: 2, cluster: o.cluster, nodeId: o.nodeId, name: o.name, nonce: randomBytes(32).toString("hex"), addr: o.addr, dialer: o.dialer };
}

/**
 * Why a well-formed remote hello is unacceptable to us, or undefined if it is fine. Our own node id
 * is not a problem here: hellos are plaintext, so only the proofs can show that a connection runs
 * from this node to itself (conn.ts).
 */
export function helloProblem(own: { cluster: string }, remote: Hello, expectDialer: boolean): string | undefined {
  if (remote.cluster !== own.cluster) return "wrong-cluster";
  if (remote.dialer !== expectDialer) return "wrong-role";
  return undefined;
}

// JSON array encoding keeps the fields unambiguous whatever characters they contain.
function fields(h: Hello): unknown[] {
  return [h.v, h.cluster, h.nodeId, h.name, h.nonce, h.addr, h.dialer];
}

function transcript(dialer: Hello, acceptor: Hello): string {
  return JSON.stringify([fields(dialer), fields(acceptor)]);
}

/** The proof the side playing `role` sends for this handshake. */
export function proofFor(secret: string, role: Role, dialer: Hello, acceptor: Hello): string {
  return createHmac("sha256", secret).update(`pgherd-mesh-v2|${role}|${transcript(dialer, acceptor)}`).digest("hex");
}

/** Constant-time check of a proof claimed by the side playing `role`. */
export function verifyProof(secret: string, role: Role, dialer: Hello, acceptor: Hello, mac: string): boolean {
  const want = Buffer.from(proofFor(secret, role, dialer, acceptor), "hex");
  const got = Buffer.from(mac, "hex");
  return got.length === want.length && timingSafeEqual(got, want);
}

export interface SessionKeys {
  d2a: Buffer; // dialer → acceptor
  a2d: Buffer; // acceptor → dialer
}

export function deriveKeys(secret: string, dialerNonce: string, acceptorNonce: string): SessionKeys {
  const salt = Buffer.concat([Buffer.from(dialerNonce, "hex"), Buffer.from(acceptorNonce, "hex")]);
  const key = (info: string) => Buffer.from(hkdfSync("sha256", secret, salt, info, 32));
  return { d2a: key("pgherd mesh v1 d2a"), a2d: key("pgherd mesh v1 a2d") };
}

export class SealError extends Error {
  readonly reason = "bad-seal";
  constructor(message: string) {
    super(message);
    this.name = "SealError";
  }
}

const TAG = 16;

function iv(seq: number): Buffer {
  const out = Buffer.alloc(12);
  out.writeBigUInt64BE(BigInt(seq), 4);
  return out;
}

/** Encrypts the JSON of `msg` under `key` with sequence number `seq`. */
export function seal(key: Buffer, seq: number, msg: unknown): Sealed {
  const json = JSON.stringify(msg);
  if (json === undefined) throw new TypeError("message is not JSON-serialisable");
  const c = createCipheriv("aes-256-gcm", key, iv(seq));
  const body = Buffer.concat([c.update(json, "utf8"), c.final(), c.getAuthTag()]);
  return { s: seq, d: body.toString("base64") };
}

/**
 * `frame` as a Sealed, or null: exactly the keys s (a safe integer >= 0) and d (canonical base64,
 * as seal() writes it), checked by hand: it runs for every frame.
 */
function asSealed(frame: unknown): { s: number; d: string; raw: Buffer } | null {
  if (typeof frame !== "object" || frame === null || Array.isArray(frame)) return null;
  const o = frame as Record<string, unknown>;
  let n = 0;
  for (const k in o) if (k !== "s" && k !== "d") return null; else n++;
  const { s, d } = o;
  if (n !== 2 || !Number.isSafeInteger(s) || (s as number) < 0 || typeof d !== "string" || d.length % 4 !== 0) return null;
  const raw = Buffer.from(d, "base64");
  return raw.toString("base64") === d ? { s: s as number, d, raw } : null;
}

/** Decrypts a sealed frame that must carry exactly `expectedSeq`; throws SealError otherwise. */
export function open(key: Buffer, expectedSeq: number, frame: unknown): unknown {
  const sealed = asSealed(frame);
  if (!sealed) throw new SealError("frame is not a sealed message");
  const { s, raw } = sealed;
  if (s !== expectedSeq) throw new SealError(`sequence ${s} where ${expectedSeq} was expected (replay, reorder or injection)`);
  if (raw.length < TAG) throw new SealError("sealed body shorter than its tag");
  let json: string;
  try {
    const dc = createDecipheriv("aes-256-gcm", key, iv(s));
    dc.setAuthTag(raw.subarray(raw.length - TAG));
    json = Buffer.concat([dc.update(raw.subarray(0, raw.length - TAG)), dc.final()]).toString("utf8");
  } catch {
    throw new SealError("authentication tag mismatch (tampered or wrong key)");
  }
  try {
    return JSON.parse(json);
  } catch {
    throw new SealError("sealed body is not JSON");
  }
}

/** Sequence-tracking wrapper for one authenticated session, from one side's point of view. */
export class Channel {
  private sendSeq = 0;
  private recvSeq = 0;
  private readonly sendKey: Buffer;
  private readonly recvKey: Buffer;

  constructor(keys: SessionKeys, role: Role) {
    this.sendKey = role === "dialer" ? keys.d2a : keys.a2d;
    this.recvKey = role === "dialer" ? keys.a2d : keys.d2a;
  }

  seal(msg: unknown): Sealed {
    return this.sealWith(msg, (s) => s);
  }

  /** Seals and hands the result to `encode`; the sequence advances only if both succeed, so a
   *  refused message (e.g. too large to frame) leaves no gap the receiver would treat as an attack. */
  sealWith<T>(msg: unknown, encode: (sealed: Sealed) => T): T {
    const out = encode(seal(this.sendKey, this.sendSeq, msg));
    this.sendSeq++;
    return out;
  }

  /** Throws SealError on any tampering or sequence gap; the caller must then close the connection. */
  open(frame: unknown): unknown {
    const msg = open(this.recvKey, this.recvSeq, frame);
    this.recvSeq++;
    return msg;
  }
}
