// Beacon datagram format (pure, no I/O): { b: "<body JSON>", mac: hex HMAC-SHA256(secret, "pgherd-beacon-v1|" + b) }.
// The MAC covers the exact body string, so no canonical JSON is needed.
import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import { z } from "zod";
import { wireNodeNameSchema } from "../config/hostport.ts";
import { NodeIdSchema } from "../core/messages.ts";

export type BeaconRole = "database" | "witness";

export interface Announcement {
  cluster: string; nodeId: string; name: string; mesh: string; role: BeaconRole;
  ts: number; nonce: string; extra: Record<string, unknown>;
}

const ident = z.string().min(1).max(64);
const bodySchema = z.strictObject({
  v: z.literal(1),
  cluster: ident,
  nodeId: NodeIdSchema, // the one node id schema: an id the state files could not hold never gets in
  name: wireNodeNameSchema, // a name is written into logs, hooks' environment, pgpool.conf
  mesh: z.string().min(1).max(300),
  role: z.enum(["database", "witness"]),
  ts: z.number().int().nonnegative(),
  nonce: z.string().regex(/^[0-9a-f]{32}$/),
  extra: z.record(z.string().max(64), z.unknown()),
});
const MAC_HEX = /^[0-9a-f]{64}$/;

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
 * Cheap checks first: the envelope, then the MAC over the raw body string; only an authentic body
 * is schema-validated. A failed MAC is classified by a plain parse of the body: a neighbouring
 * cluster on the same LAN (another secret) then shows up as benign "wrong-cluster" while "bad-mac"
 * keeps meaning "claims to be ours but has the wrong secret" (misconfiguration or forgery) — worth
 * a warning. There is no probing oracle either way: the beacon never answers datagrams.
 */
export function decodeAnnouncement(secret: string, cluster: string, data: Buffer): Decoded {
  let outerRaw: unknown;
  try {
    outerRaw = JSON.parse(data.toString("utf8"));
  } catch {
    return { ok: false, reason: "malformed", detail: "not JSON" };
  }
  // Checked by hand, not by a schema: this runs for every datagram anyone sends.
  const o = outerRaw as { b?: unknown; mac?: unknown } | null;
  if (typeof o !== "object" || o === null || Array.isArray(o) || Object.keys(o).length !== 2
    || typeof o.b !== "string" || o.b.length > 65536 || typeof o.mac !== "string" || !MAC_HEX.test(o.mac)) {
    return { ok: false, reason: "malformed", detail: "envelope does not match { b, mac }" };
  }
  const want = mac(secret, o.b);
  const got = Buffer.from(o.mac, "hex");
  if (got.length !== want.length || !timingSafeEqual(got, want)) return unauthentic(o.b, cluster);
  let bodyRaw: unknown;
  try {
    bodyRaw = JSON.parse(o.b);
  } catch {
    return { ok: false, reason: "malformed", detail: "body is not JSON" };
  }
  const body = bodySchema.safeParse(bodyRaw);
  if (!body.success) return { ok: false, reason: "malformed", detail: body.error.issues.slice(0, 5).map((i) => `${i.path.join(".") || "(root)"}: ${i.code}`).join("; ") };
  if (body.data.cluster !== cluster) return { ok: false, reason: "wrong-cluster", detail: `cluster ${JSON.stringify(body.data.cluster)}` };
  const { v: _v, ...a } = body.data;
  return { ok: true, a };
}

/** Why a body with a wrong MAC was refused, from a plain parse (no schema: it is not ours to trust). */
function unauthentic(b: string, cluster: string): Decoded {
  let body: unknown;
  try {
    body = JSON.parse(b);
  } catch {
    return { ok: false, reason: "malformed", detail: "body is not JSON" };
  }
  const f = body as { cluster?: unknown; nodeId?: unknown } | null;
  if (typeof f !== "object" || f === null || typeof f.cluster !== "string" || typeof f.nodeId !== "string") {
    return { ok: false, reason: "malformed", detail: "body has no cluster and node id" };
  }
  if (f.cluster !== cluster) return { ok: false, reason: "wrong-cluster", detail: `cluster ${JSON.stringify(f.cluster.slice(0, 64))}` };
  return { ok: false, reason: "bad-mac", detail: `claims node ${JSON.stringify(f.nodeId.slice(0, 64))}; secret differs or datagram forged` };
}
