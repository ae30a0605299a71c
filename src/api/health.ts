// Health checks with Patroni's paths, query parameters and 200/503 semantics, so HAProxy,
// check_patroni and vip-manager setups work unchanged. Pure: facts in, status and reason out.
//
// Stricter than Patroni in two places, both on purpose: /primary also needs PostgreSQL up as a
// primary (Patroni answers 200 for the lock holder alone), and a `lag` limit with an unknown lag
// (no leader report) answers 503 (Patroni ignores the limit then). Wider in one: /sync also counts
// quorum standbys (sync_state quorum, what pgherd's `ANY k (...)` makes), where Patroni in quorum
// mode answers /sync 503 and only /quorum 200; /quorum itself is Patroni's. Looser in one:
// /liveness answers 200 whenever the agent answers, where Patroni's also wants its HA loop to have
// run within ttl (a clone holds pgherd's monitoring rounds for hours; docs/api.md).
import { parseLag, type Lag } from "./lag.ts";
import type { HealthFacts } from "./source.ts";

// /master: Patroni's name before 3.0, still in many HAProxy configs (`option httpchk OPTIONS /master`).
const PRIMARY = ["/", "/primary", "/master", "/read-write"];
const SYNC = ["/sync", "/synchronous"];
const ASYNC = ["/async", "/asynchronous"];
export const HEALTH_PATHS: ReadonlySet<string> = new Set([
  ...PRIMARY, ...SYNC, ...ASYNC, "/leader", "/standby-leader", "/standby_leader", "/replica", "/read-only",
  "/read-only-sync", "/read-only-synchronous", "/quorum", "/read-only-quorum", "/health", "/liveness", "/readiness",
]);

/** Patroni's default maximum_lag_on_failover: the /readiness limit without `?lag=` when the node does not say its failover.max_lag_bytes. */
export const READINESS_DEFAULT_LAG = 1024 * 1024;

export interface HealthQuery {
  lag: Lag | null;
  replicationState: string | null;
  mode: "apply" | "write";
  /** `tag_<key>=<value>` pairs. */
  tags: [string, string][];
}

export interface HealthResult {
  status: 200 | 503;
  reason: string;
}

/** Query parameters of a health check; unknown ones are ignored (as Patroni does), bad values are errors. */
export function parseHealthQuery(params: URLSearchParams): HealthQuery | string {
  const q: HealthQuery = { lag: null, replicationState: params.get("replication_state"), mode: "apply", tags: [] };
  const lag = params.get("lag");
  if (lag !== null) {
    const l = parseLag(lag);
    if (typeof l === "string") return l;
    q.lag = l;
  }
  const mode = params.get("mode");
  if (mode !== null) {
    if (mode !== "apply" && mode !== "write") return `mode=${JSON.stringify(mode.slice(0, 20))} must be "apply" or "write"`;
    q.mode = mode;
  }
  for (const [k, v] of params) if (k.startsWith("tag_")) q.tags.push([k.slice(4), v]);
  return q;
}

/** Role and state in Patroni's words, for the response body. */
export function describe(f: HealthFacts): { role: string; state: string; replicationState: string | null } {
  const pg = f.pg;
  if (!pg) return { role: "witness", state: "no postgres", replicationState: null };
  const role = !pg.up || pg.inRecovery === null ? "unknown" : pg.inRecovery ? "replica" : "primary";
  const state = pg.up ? "running" : pg.running ? "starting" : "stopped";
  const replicationState = role === "replica" ? (pg.streaming ? "streaming" : "in archive recovery") : null;
  return { role, state, replicationState };
}

const ok: HealthResult = { status: 200, reason: "ok" };
const no = (reason: string): HealthResult => ({ status: 503, reason });

/** `lagSeconds`: this standby's replay lag in seconds as the primary sees it (needed for time limits only). */
export function checkHealth(path: string, q: HealthQuery, f: HealthFacts, lagSeconds: number | null = null): HealthResult {
  if (path === "/liveness") return ok; // answering at all means the agent's event loop runs
  if (path === "/leader") return f.leading ? ok : no("this node does not hold the leader lease");
  if (path === "/standby-leader" || path === "/standby_leader") return no("pgherd runs no standby clusters");
  if (PRIMARY.includes(path)) return primary(f);
  if (path === "/health") return f.pg?.up ? ok : no("PostgreSQL is not running");
  if (path === "/readiness") return readiness(q, f);

  const p = primary(f);
  let r: HealthResult;
  if (path === "/replica") r = replica(q, f, lagSeconds);
  else if (path === "/read-only") r = p.status === 200 ? p : replica(q, f, lagSeconds);
  else if (SYNC.includes(path)) r = f.pg?.sync ? replica(q, f, lagSeconds) : no("not a synchronous standby");
  else if (ASYNC.includes(path)) r = f.pg?.sync ? no("a synchronous standby") : replica(q, f, lagSeconds);
  else if (path === "/read-only-sync" || path === "/read-only-synchronous") r = p.status === 200 ? p : f.pg?.sync ? replica(q, f, lagSeconds) : no("neither the primary nor a synchronous standby");
  else if (path === "/quorum") r = f.pg?.quorum ? replica(q, f, lagSeconds) : no("not a quorum standby");
  else if (path === "/read-only-quorum") r = p.status === 200 ? p : f.pg?.quorum ? replica(q, f, lagSeconds) : no("neither the primary nor a quorum standby");
  else r = no(`unknown health check ${path}`);
  return r.status === 200 ? tags(q, f) : r;
}

function primary(f: HealthFacts): HealthResult {
  if (!f.leading) return no("this node does not hold the leader lease");
  if (!f.pg?.up) return no("PostgreSQL is not running");
  if (f.pg.inRecovery !== false) return no("PostgreSQL is not running as the primary yet");
  // Alive but unable to commit (disk full, cannot write): a load balancer must not send writes here.
  if (f.pg.cannotWork) return no(`PostgreSQL cannot write: ${f.pg.cannotWork}`);
  return ok;
}

function replica(q: HealthQuery, f: HealthFacts, lagSeconds: number | null): HealthResult {
  const pg = f.pg;
  if (!pg?.up) return no("PostgreSQL is not running");
  if (pg.inRecovery !== true) return no("not a standby");
  if (f.tags.noloadbalance === true) return no("tag noloadbalance is set");
  const d = describe(f);
  if (q.replicationState !== null && q.replicationState !== d.replicationState) {
    return no(`replication state is ${d.replicationState}, not ${q.replicationState}`);
  }
  if (q.lag) return withinLag(q.lag, pg.lagBytes, lagSeconds);
  return ok;
}

function withinLag(limit: Lag, bytes: number | null, seconds: number | null): HealthResult {
  if (limit.kind === "bytes") {
    if (bytes === null) return no("replication lag unknown (no report from the leader's primary, or this standby is on another timeline than it)");
    return bytes > limit.bytes ? no(`replication lag ${bytes} bytes exceeds ${limit.bytes}`) : ok;
  }
  if (seconds === null) return no("replication lag unknown (the primary reports none for this standby)");
  return seconds > limit.seconds ? no(`replication lag ${seconds} s exceeds ${limit.seconds} s`) : ok;
}

function readiness(q: HealthQuery, f: HealthFacts): HealthResult {
  if (f.leading) return ok;
  const pg = f.pg;
  if (!pg?.up) return no("PostgreSQL is not running");
  if (!pg.streaming) return no("PostgreSQL replication state is not streaming");
  const lag = q.mode === "write" ? pg.receiveLagBytes : pg.lagBytes;
  if (lag === null) return no("the leader's WAL position is unknown");
  // Patroni's default is its maximum_lag_on_failover; pgherd's is failover.max_lag_bytes (review).
  const max = q.lag?.kind === "bytes" ? q.lag.bytes : (f.maxLagBytes ?? READINESS_DEFAULT_LAG);
  if (q.lag?.kind === "seconds") return no("readiness takes a lag in bytes (e.g. 16MB), not a time");
  return lag > max ? no(`replication ${q.mode} lag ${lag} exceeds maximum allowable ${max}`) : ok;
}

function tags(q: HealthQuery, f: HealthFacts): HealthResult {
  for (const [k, want] of q.tags) {
    const have = Object.hasOwn(f.tags, k) ? f.tags[k] : undefined;
    if (have === undefined) return no(`tag ${k} is not set on this node`);
    const s = typeof have === "string" ? have : String(have).toLowerCase();
    if (s !== want) return no(`tag ${k} is ${s}, not ${want}`);
  }
  return ok;
}
