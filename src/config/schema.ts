// The pgherd.toml schema: one strict zod object per [section], each with its own cross-field
// rules, so a section changes without touching the others. Keys stay snake_case end to end.
// Every section (here and in schema-*.ts) is a function that builds its schema: a load or reload
// builds the whole tree, parses one file and drops it, so a running agent holds none of it
// (~530 zod schemas, ~8,500 heap objects; an idle agent's heap 8.2 -> 7.6 MB, docs/design.md "Footprint").
import { hostname } from "node:os";
import { isIPv4 } from "node:net";
import { z } from "zod";
import type { DeepReadonly } from "./freeze.ts";
import { nodeNameSchema, parseHostPort } from "./hostport.ts";
import { electionMargins, kernelTimeoutS } from "./margins.ts";
import { LIVENESS_DEFAULTS } from "../core/liveness.ts";
import { postgresTlsKeys } from "./schema-tls.ts";
import { logSection } from "./schema-log.ts";
import { shutdownSection } from "./schema-shutdown.ts";
import { accessRules, shadowedAccessRule } from "./schema-access.ts";
import { consensusIssues, consensusSection } from "./schema-consensus.ts";
import { absPath, listenAddresses, noControl, parameters, pgIdent, socketDirOf, socketDirProblem } from "./pg-values.ts";
import { hooksSection, sentrySection } from "./schema-hooks.ts";
import { pgpoolSection } from "./schema-pgpool.ts";
import { vipSection } from "./schema-vip.ts";
import { backupSection, bootstrapFromBackup, crossCheckBackup, permanentSlots } from "./schema-backup.ts";

/** The smallest election.fence_ms: the time the watchdog needs to stop PostgreSQL after a lapsed lease (SIGQUIT, then SIGKILL after 100 ms). */
export const MIN_FENCE_MS = 100;

const intIn = (min: number, max: number) =>
  z.int().min(min, `must be at least ${min}`).max(max, `must be at most ${max}`);
const ms = (min: number) => intIn(min, 3_600_000);

// Cross-field rules run only on a section whose fields are all valid: comparing an
// out-of-range value would add a second, misleading line.
const whenValid = { when: (p: { issues: readonly unknown[] }) => p.issues.length === 0 };

/** "host:port"; with `defaultPort` the port may be omitted; `orEmpty` also accepts "". */
const hostPort = (defaultPort?: number, orEmpty = false) =>
  z.string().superRefine((v, ctx) => {
    if (orEmpty && v === "") return;
    const r = parseHostPort(v, defaultPort);
    if (typeof r === "string") ctx.addIssue({ code: "custom", message: `is invalid: ${r}` });
  });

/** Placeholder in pgherd.toml.example: a copied example must not run with a published secret. */
export const EXAMPLE_SECRET_MARKER = "CHANGE-ME";

export const discoverySection = () => z
  .strictObject({
    port: intIn(1, 65535).default(7400),
    broadcast: z
      .array(z.string().refine((s) => s === "auto" || isIPv4(s), 'must be "auto" or an IPv4 broadcast address'))
      .default(() => ["auto"]),
    peers: z.array(hostPort(0)).default(() => []),
    interval_ms: ms(10).default(1000),
    max_age_ms: ms(100).default(30000),
  })
  .superRefine((d, ctx) => {
    if (d.interval_ms >= d.max_age_ms) {
      ctx.addIssue({ code: "custom", path: ["interval_ms"], message: "must be less than discovery.max_age_ms" });
    }
  }, whenValid);

export const meshSection = () => z
  .strictObject({
    listen: hostPort().default("0.0.0.0:7401"),
    advertise: hostPort(undefined, true).default(""),
    max_frame_bytes: intIn(1024, 1 << 30).default(1048576),
    ping_ms: ms(10).default(500),
    dead_ms: ms(10).default(3000),
    handshake_ms: ms(10).default(3000),
    max_buffered_bytes: intIn(1024, 1 << 30).default(8388608),
  })
  .superRefine((m, ctx) => {
    if (m.ping_ms >= m.dead_ms) {
      ctx.addIssue({ code: "custom", path: ["ping_ms"], message: "must be less than mesh.dead_ms" });
    }
    if (m.max_buffered_bytes < m.max_frame_bytes) {
      ctx.addIssue({ code: "custom", path: ["max_buffered_bytes"], message: "must be at least mesh.max_frame_bytes" });
    }
  }, whenValid);

export const electionSection = () => z
  .strictObject({
    heartbeat_ms: ms(1).default(150),
    lease_ms: ms(1).default(1000),
    timeout_ms: ms(1).default(1500),
    jitter_ms: ms(0).default(300),
    max_drift: z.number().min(0, "must be at least 0").max(0.5, "must be at most 0.5").default(0.02),
    // PostgreSQL is not stopped the instant the lease ends: the watchdog notices the deadline and
    // sends SIGQUIT, then SIGKILL 100 ms later (measured 10–50 ms to stopped). Below this the lease
    // arithmetic would count on a stop that cannot happen (review).
    fence_ms: ms(MIN_FENCE_MS).default(400),
    /**
     * true: the leader makes every authenticated node that connects a voter. false (default): a node
     * that joins after bootstrap stays a non-voter until `pgherd member approve NAME`.
     */
    auto_join: z.boolean().default(false),
  })
  .superRefine((e, ctx) => {
    if (e.heartbeat_ms >= e.lease_ms) {
      ctx.addIssue({ code: "custom", path: ["heartbeat_ms"], message: "must be less than election.lease_ms" });
    }
    if (e.lease_ms >= e.timeout_ms) {
      ctx.addIssue({ code: "custom", path: ["lease_ms"], message: "must be less than election.timeout_ms" });
      return; // the margin message would only restate this
    }
    const m = electionMargins(e);
    if (!m.ok) {
      ctx.addIssue({
        code: "custom",
        path: ["timeout_ms"],
        message:
          `${e.timeout_ms} is too small: with max_drift ${e.max_drift} a lease of ${e.lease_ms} ms plus ` +
          `fence_ms ${e.fence_ms} needs timeout_ms >= ${m.minTimeoutMs}`,
      });
    }
  }, whenValid);

/** Shortest api.token accepted: guessing it must be as hopeless as guessing the cluster secret. */
const MIN_TOKEN_LENGTH = 32;

/** api.token: "" (actions off) or ≥ 32 visible ASCII characters; `Authorization: Bearer` cannot carry a space. */
const apiToken = () => z.string().superRefine((t, ctx) => {
  if (t === "") return;
  if (!/^[\x21-\x7e]*$/.test(t)) ctx.addIssue({ code: "custom", message: "must be printable ASCII without spaces (it is sent in an HTTP header), or \"\" to disable actions" });
  else if (t.length < MIN_TOKEN_LENGTH) ctx.addIssue({ code: "custom", message: `must be at least ${MIN_TOKEN_LENGTH} characters (e.g. \`openssl rand -base64 32\`), or "" to disable actions` });
});

const absPathOrEmpty = () => z.union([z.literal(""), absPath('an absolute path or ""')]);

export const apiSection = () => z
  .strictObject({
    listen: hostPort().default("127.0.0.1:7402"),
    token: apiToken().default(""),
    tls_cert: absPathOrEmpty().default(""),
    tls_key: absPathOrEmpty().default(""),
  })
  .superRefine((a, ctx) => {
    if (!!a.tls_cert !== !!a.tls_key) ctx.addIssue({ code: "custom", path: ["tls_key"], message: "api.tls_cert and api.tls_key go together" });
  }, whenValid);

export const postgresSection = () => z
  .strictObject({
    data_dir: absPath().default("/var/lib/postgresql/pgherd"),
    bin_dir: z.string().refine(noControl, "must not contain control characters (newline, tab …)").default(""),
    port: intIn(1, 65535).default(5432),
    listen_addresses: listenAddresses.default("*"),
    socket_dir: z.string().refine(noControl, "must not contain control characters (newline, tab …)").default(""),
    os_user: z.string().regex(/^[a-z_][a-z0-9_-]{0,31}$/, "must be an OS user name")
      .refine((u) => u !== "root", "must not be root (PostgreSQL refuses to run as root, and pgherd runs its tools as this user)").default("postgres"),
    superuser: pgIdent.default("postgres"),
    repl_user: pgIdent.default("pgherd_repl"),
    monitor_user: pgIdent.default("pgherd_monitor"),
    loop_ms: ms(50).default(500),
    start_timeout_s: intIn(1, 3600).default(120),
    max_wal_senders: intIn(1, 1000).default(10),
    max_replication_slots: intIn(1, 1000).default(10),
    wal_level: z.enum(["replica", "logical"], 'must be "replica" or "logical"').default("replica"),
    parameters: parameters.default(() => ({})),
    ...postgresTlsKeys(),
  })
  .superRefine((p, ctx) => {
    if (p.socket_dir && !p.socket_dir.startsWith("/")) ctx.addIssue({ code: "custom", path: ["socket_dir"], message: "must be an absolute path (or empty for <data_dir>.sock)" });
    if (p.bin_dir && !p.bin_dir.startsWith("/")) ctx.addIssue({ code: "custom", path: ["bin_dir"], message: "must be an absolute path (or empty to discover it)" });
    const sock = socketDirProblem(socketDirOf(p), p.port);
    if (sock) ctx.addIssue({ code: "custom", path: [p.socket_dir ? "socket_dir" : "data_dir"], message: `${p.socket_dir ? "" : "(with socket_dir empty, the socket directory is <data_dir>.sock) "}${sock}` });
    // The replication password travels to every peer: it must never be the superuser's.
    const roles = [["superuser", p.superuser], ["repl_user", p.repl_user], ["monitor_user", p.monitor_user]] as const;
    for (const [i, [key, name]] of roles.entries()) {
      const same = roles.slice(0, i).find(([, other]) => other === name);
      if (same) ctx.addIssue({ code: "custom", path: [key], message: `must differ from postgres.${same[0]}: each role has its own password and pg_hba rows` });
    }
  }, whenValid);

export const bootstrapSection = () => z.strictObject({
  from_existing: z.boolean().default(false),
  ...bootstrapFromBackup(),
});

export const rejoinSection = () => z.strictObject({
  auto: z.boolean().default(true),
  keep_old: intIn(0, 100).default(1),
  /** pg_basebackup --max-rate in kB/s (0: none); its range is 32 kB/s to 1 GB/s. */
  clone_max_rate_kb: intIn(0, 1048576).refine((v) => v === 0 || v >= 32, "must be 0 (no limit) or at least 32 (pg_basebackup's least rate, kB/s)").default(0),
});

export const failoverSection = () => z.strictObject({
  max_lag_bytes: intIn(0, 2 ** 40).default(1048576),
});

/** How long the leader's primary may be stuck, unable to write or on a full disk before the leader hands over (core/liveness.ts). */
export const livenessSection = () => z.strictObject({
  stuck_ms: intIn(1000, 600_000).default(LIVENESS_DEFAULTS.stuckMs),
  cannot_write_ms: intIn(500, 600_000).default(LIVENESS_DEFAULTS.cannotWriteMs),
  disk_full_ms: intIn(500, 600_000).default(LIVENESS_DEFAULTS.diskFullMs),
});

export const slotsSection = () => z.strictObject({
  retain_minutes: intIn(0, 525600).default(30),
  max_slot_wal_keep_size: z.string().regex(/^(\d+ *(kB|MB|GB|TB)|-1)?$/, 'must be a size like "8GB", "-1" or ""').default(""),
  permanent: permanentSlots(),
});

export const tagsSection = () => z.strictObject({
  nofailover: z.boolean().default(false),
  noloadbalance: z.boolean().default(false),
});

/** With a kernel watchdog: time for the user-space fence (SIGQUIT, at worst SIGKILL after 100 ms) before the reset. */
const MIN_KERNEL_FENCE_MS = 300;

export const watchdogSection = () => z.strictObject({
  mode: z.enum(["off", "auto"], 'must be "off" or "auto"').default("off"),
  device: absPath().default("/dev/watchdog"),
});

export { logSection } from "./schema-log.ts";

/** `hostName`: node_name's default, validated as a set one is (a host name with '_' is refused at load, naming node_name). */
export const configSchema = (hostName: () => string = hostname) => z.strictObject({
  cluster: z.string().regex(/^[a-z0-9_-]{1,63}$/, "must be 1-63 characters of a-z, 0-9, _ and -"),
  secret: z
    .string()
    .min(32, "must be at least 32 characters (generate one with `pgherd init`)")
    .refine((s) => !s.includes(EXAMPLE_SECRET_MARKER), "is still the placeholder from pgherd.toml.example: generate one with `pgherd init`"),
  node_name: nodeNameSchema.prefault(() => hostName()),
  role: z.enum(["database", "witness"], 'must be "database" or "witness"').default("database"),
  state_dir: absPath().default("/var/lib/pgherd"),
  bootstrap_expect: intIn(1, 1000).default(3),
  priority: intIn(0, 1000).default(100),
  durability: z.enum(["quorum", "strict", "async"], 'must be "quorum", "strict" or "async"').default("quorum"),
  discovery: discoverySection().prefault({}),
  mesh: meshSection().prefault({}),
  election: electionSection().prefault({}),
  api: apiSection().prefault({}),
  postgres: postgresSection().prefault({}),
  bootstrap: bootstrapSection().prefault({}),
  rejoin: rejoinSection().prefault({}),
  failover: failoverSection().prefault({}),
  liveness: livenessSection().prefault({}),
  slots: slotsSection().prefault({}),
  tags: tagsSection().prefault({}),
  watchdog: watchdogSection().prefault({}),
  log: logSection().prefault({}),
  shutdown: shutdownSection().prefault({}),
  hooks: hooksSection().prefault({}),
  sentry: sentrySection().prefault({}),
  pgpool: pgpoolSection().prefault({}),
  vip: vipSection().prefault({}),
  access: accessRules,
  consensus: consensusSection().prefault({}),
  backup: backupSection().prefault({}),
}).superRefine((c, ctx) => {
  crossCheckBackup(c, ctx);
  for (const [i, r] of c.access.entries()) {
    const why = shadowedAccessRule(r, c.postgres.repl_user);
    if (why) ctx.addIssue({ code: "custom", path: ["access", i, "user"], message: why });
  }
  consensusIssues(c, (path, message) => ctx.addIssue({ code: "custom", path, message }));
  if (c.slots.max_slot_wal_keep_size && Object.keys(c.postgres.parameters).some((k) => k.toLowerCase() === "max_slot_wal_keep_size")) {
    ctx.addIssue({ code: "custom", path: ["postgres", "parameters"], message: "sets max_slot_wal_keep_size, and so does slots.max_slot_wal_keep_size: keep one" });
  }
  if (c.watchdog.mode !== "off" && c.election.fence_ms < MIN_KERNEL_FENCE_MS) {
    ctx.addIssue({
      code: "custom", path: ["watchdog", "mode"],
      message: `needs election.fence_ms >= ${MIN_KERNEL_FENCE_MS} (now ${c.election.fence_ms}): the kernel resets the host fence_ms after the lease end, and the watchdog process must have stopped PostgreSQL before that`,
    });
  } else if (c.watchdog.mode !== "off" && kernelTimeoutS(c.election) < 1) {
    ctx.addIssue({
      code: "custom", path: ["watchdog", "mode"],
      message: `needs election.lease_ms + election.fence_ms - 2 * election.heartbeat_ms >= 1000 (the kernel watchdog counts whole seconds; now ${c.election.lease_ms + c.election.fence_ms - 2 * c.election.heartbeat_ms} ms)`,
    });
  }
}, whenValid);

export type Config = DeepReadonly<z.output<ReturnType<typeof configSchema>>>;
export type DiscoveryConfig = Config["discovery"];
export type MeshConfig = Config["mesh"];
export type ElectionConfig = Config["election"];
export type ApiConfig = Config["api"];
export type LogConfig = Config["log"];
export type PostgresConfig = Config["postgres"];

/** Every key as a dotted path ("mesh.listen"), for docs and the example-file drift test. */
export function configKeys(schema: z.ZodType = configSchema(), prefix = ""): string[] {
  let s: z.ZodType = schema;
  // Unwrap default/prefault/optional wrappers down to the object.
  while ("innerType" in s.def) s = s.def.innerType as z.ZodType;
  if (!(s instanceof z.ZodObject)) return prefix ? [prefix.slice(0, -1)] : [];
  return Object.entries(s.shape).flatMap(([k, v]) => configKeys(v as z.ZodType, `${prefix}${k}.`));
}
