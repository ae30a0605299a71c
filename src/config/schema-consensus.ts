// [consensus]: which store elects the leader. "builtin" (the default) is the agents' own election
// over the mesh; "etcd" is an external etcd v3 cluster reached through its gRPC JSON gateway
// (docs/etcd.md). The etcd password is read from a file at start, never from argv or the env.
import { z } from "zod";
import { etcdLeaseMargins } from "../consensus/etcd/lease-core.ts";
import { isLoopbackUrlHost } from "./hostport.ts";
import { absPath } from "./pg-values.ts";

const absPathOrEmpty = () => z.union([z.literal(""), absPath('an absolute path or ""')]);

/** An etcd client URL: http(s)://host:port with nothing after the port. */
const endpoint = () => z.string().superRefine((v, ctx) => {
  let u: URL;
  try {
    u = new URL(v);
  } catch {
    return ctx.addIssue({ code: "custom", message: `"${v.slice(0, 80)}" is not a URL (e.g. "https://10.0.0.1:2379")` });
  }
  if (u.protocol !== "http:" && u.protocol !== "https:") ctx.addIssue({ code: "custom", message: `"${v}" must start with http:// or https://` });
  else if (!u.port || (u.pathname !== "/" && u.pathname !== "") || u.search || u.hash || u.username || u.password) {
    ctx.addIssue({ code: "custom", message: `"${v}" must be scheme://host:port and nothing else (credentials go in username/password_file)` });
  }
});

export const consensusSection = () => z
  .strictObject({
    backend: z.enum(["builtin", "etcd"], 'must be "builtin" or "etcd"').default("builtin"),
    /** etcd client URLs; the agent uses the first that answers and moves on when one fails. */
    endpoints: z.array(endpoint()).max(16).default(() => []),
    /** Every key of this cluster lives under <prefix>/<cluster>/. */
    prefix: z.string().regex(/^\/[A-Za-z0-9_\-/]{0,100}[A-Za-z0-9_-]$/, 'must be an absolute key prefix like "/pgherd"').default("/pgherd"),
    tls_ca: absPathOrEmpty().default(""),
    tls_cert: absPathOrEmpty().default(""),
    tls_key: absPathOrEmpty().default(""),
    username: z.string().regex(/^[\x21-\x7e]{0,128}$/, "must be printable ASCII without spaces").default(""),
    /** A file holding the etcd password (only its owner may read it); never the password inline. */
    password_file: absPathOrEmpty().default(""),
    /** TTL of this agent's etcd lease (seconds): the leader key vanishes this long after the leader stops renewing. */
    ttl_s: z.int().min(2, "must be at least 2").max(60, "must be at most 60").default(5),
    /** How often the lease is renewed and the leader key, the members and the guard are read. */
    poll_ms: z.int().min(50, "must be at least 50").max(10_000, "must be at most 10000").default(250),
    /** Deadline of one request to etcd. */
    request_timeout_ms: z.int().min(100, "must be at least 100").max(30_000, "must be at most 30000").default(1000),
    /** While the leader cannot renew its etcd lease, keep the primary as long as every other voter confirms over the mesh (docs/etcd.md). */
    failsafe: z.boolean("must be true or false").default(false),
    /** `pgherd consensus migrate` runs only with true (on the leader); false forbids it (docs/etcd.md, "Migration"). */
    allow_migration: z.boolean("must be true or false").default(true),
  })
  .superRefine((c, ctx) => {
    if (c.failsafe && c.backend !== "etcd") ctx.addIssue({ code: "custom", path: ["failsafe"], message: 'needs backend = "etcd" (the built-in election has no external store to lose)' });
    if (c.backend === "etcd" && c.endpoints.length === 0) ctx.addIssue({ code: "custom", path: ["endpoints"], message: 'needs at least one etcd URL with backend = "etcd"' });
    if (!!c.tls_cert !== !!c.tls_key) ctx.addIssue({ code: "custom", path: ["tls_key"], message: "consensus.tls_cert and consensus.tls_key go together" });
    if (!!c.username !== !!c.password_file) ctx.addIssue({ code: "custom", path: ["password_file"], message: "consensus.username and consensus.password_file go together" });
    const tls = c.tls_ca || c.tls_cert;
    if (tls && c.endpoints.some((e) => e.startsWith("http://"))) ctx.addIssue({ code: "custom", path: ["endpoints"], message: "must all be https:// when consensus.tls_ca or tls_cert is set" });
    // The password goes to etcd in an authenticate request, its token in every request after it.
    const clear = c.endpoints.filter((e) => e.startsWith("http://") && !isLoopbackUrlHost(new URL(e).hostname));
    if (c.username && clear.length) ctx.addIssue({ code: "custom", path: ["endpoints"], message: `${clear.join(", ")}: must be https:// with consensus.username (the password and etcd's token would cross the network in clear; plain http only to a loopback address)` });
  }, { when: (p) => p.issues.length === 0 });

export type ConsensusConfig = z.output<ReturnType<typeof consensusSection>>;

/**
 * Cross-section rule (run from the config's top-level check): with etcd, the lease this node may
 * act on must outlast a renewal round, or a leader would fence itself between two renewals.
 */
export function consensusIssues(
  c: { consensus: ConsensusConfig; election: { max_drift: number; fence_ms: number } },
  add: (path: (string | number)[], message: string) => void,
): void {
  if (c.consensus.backend !== "etcd") return;
  const m = etcdLeaseMargins({ ttlS: c.consensus.ttl_s, maxDrift: c.election.max_drift, fenceMs: c.election.fence_ms, pollMs: c.consensus.poll_ms, requestTimeoutMs: c.consensus.request_timeout_ms });
  if (!m.ok) {
    add(["consensus", "ttl_s"], `${c.consensus.ttl_s} is too small: with election.max_drift ${c.election.max_drift}, election.fence_ms ${c.election.fence_ms}, ` +
      `poll_ms ${c.consensus.poll_ms} and request_timeout_ms ${c.consensus.request_timeout_ms} the usable lease is ${Math.floor(m.usableMs)} ms, ` +
      `less than two renewal rounds (${m.renewRoundMs * 2} ms); raise ttl_s to at least ${m.minTtlS}`);
  }
}
