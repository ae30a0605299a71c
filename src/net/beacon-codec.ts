// Beacon datagram format (pure, no I/O): { b: "<body JSON>", mac: hex HMAC-SHA256(secret, "pgherd-beacon-v1|" + b) }.
// The MAC covers the exact body string, so no canonical JSON is needed.
import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import { z } from "zod";

export type BeaconRole = "database" | "witness";

export interface Announcement {
  cluster: string; nodeId: string; name: string; mesh: string; role: BeaconRole;
  ts: number; nonce: string; extra: Record<string, unknown>;
}

const ident = z.string().min(1).max(64);
const bodySchema = z.strictObject({
  v: z.literal(1),
  cluster: ident,
  nodeId: ident,
  name: z.string().max(64),
  mesh: z.string().min(1).max(300),
  role: z.enum(["database", "witness"]),
  ts: z.number().int().nonnegative(),
  nonce: z.string().regex(/^[0-9a-f]{32}$/),
  extra: z.record(z.string().max(64), z.unknown()),
});
const outerSchema = z.strictObject({
  b: z.string().max(65536),
  mac: z.string().regex(/^[0-9a-f]{64}$/),
});

function mac(secret: string, body: string): Buffer {
  return createHmac("sha256", secret).update(`pgherd-beacon-v1|${body}`).digest();
}

/** Builds a datagram; `fields` gets a fresh nonce and version added. */
export function encodeAnnouncement(secret: string, fields: Omit<Announcement, "nonce"> & { nonce?: string }): Buffer {
  const body = JSON.stringify({
    v: 1, cluster: fields.cluster, nodeId: fields.nodeId, name: fields.name, mesh: fields.mesh, role: fields.role,
    ts: fields.ts, nonce: fields.nonce ?? randomBytes(16).toString("hex"), extra: fields.extra,
  });
  return Buffer.from(JSON.stringify({ b: body, mac: mac(secret, body).toString("hex") }), "utf8");
}

export type Decoded =
  | { ok: true; a: Announcement }
  | { ok: false; reason: "malformed" | "wrong-cluster" | "bad-mac"; detail: string };

/**
 * Parses and authenticates a datagram (size, freshness, replay and self are the caller's checks).
 * The cluster name is compared BEFORE the MAC: a neighbouring cluster on the same LAN (another
 * secret) then shows up as benign "wrong-cluster" while "bad-mac" keeps meaning "claims to be
 * ours but has the wrong secret" (misconfiguration or forgery) — worth a warning. There is no
 * probing oracle either way: the beacon never answers datagrams, and the name is broadcast anyway.
 */
export function decodeAnnouncement(secret: string, cluster: string, data: Buffer): Decoded {
  let outerRaw: unknown;
  try {
    outerRaw = JSON.parse(data.toString("utf8"));
  } catch {
    return { ok: false, reason: "malformed", detail: "not JSON" };
  }
  const outer = outerSchema.safeParse(outerRaw);
  if (!outer.success) return { ok: false, reason: "malformed", detail: "envelope does not match { b, mac }" };
  let bodyRaw: unknown;
  try {
    bodyRaw = JSON.parse(outer.data.b);
  } catch {
    return { ok: false, reason: "malformed", detail: "body is not JSON" };
  }
  const body = bodySchema.safeParse(bodyRaw);
  if (!body.success) return { ok: false, reason: "malformed", detail: body.error.issues.slice(0, 5).map((i) => `${i.path.join(".") || "(root)"}: ${i.code}`).join("; ") };
  if (body.data.cluster !== cluster) return { ok: false, reason: "wrong-cluster", detail: `cluster ${JSON.stringify(body.data.cluster)}` };
  const want = mac(secret, outer.data.b);
  const got = Buffer.from(outer.data.mac, "hex");
  if (got.length !== want.length || !timingSafeEqual(got, want)) {
    return { ok: false, reason: "bad-mac", detail: `claims node ${JSON.stringify(body.data.nodeId)}; secret differs or datagram forged` };
  }
  const { v: _v, ...a } = body.data;
  return { ok: true, a };
}
