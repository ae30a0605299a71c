// The agent's HTTP API (docs/api.md): Patroni-compatible health checks, status, token-protected
// actions, Prometheus metrics, server-sent events and the dashboard. Routing only; each concern
// lives in its own module.
import type { Server } from "bun";
import os from "node:os";
import { isLoopbackHost } from "../config/hostport.ts";
import type { Config } from "../config/schema.ts";
import { redactConfig, redactDynamic } from "../config/redact.ts";
import type { Logger } from "../log.ts";
import { CappedFront } from "../net/capped-front.ts";
import { RejectLog } from "../net/rejects.ts";
import { ACTION_ROUTES, actionRoute, carriesToken, createApiAuth, runAction } from "./actions.ts";
import type { HistoryEntry } from "./actions-contract.ts";
import { EVENTS_INTERVAL_MS, EventHub } from "./events.ts";
import { checkHealth, describe, HEALTH_PATHS, parseHealthQuery } from "./health.ts";
import { error, hostProblem, json, MAX_BODY_BYTES, varyOnAccept, withCommonHeaders } from "./http.ts";
import { METRICS_TYPE, renderMetrics } from "./metrics.ts";
import { patroniCluster, patroniNode, replicaSyncKeys } from "./patroni.ts";
import { healthFacts, type ApiSource } from "./source.ts";
import { asset, badPath, dashboard, rawPath } from "./static.ts";
import { NONCE_TTL_MS } from "./request-signing.ts";

export type { ApiSource } from "./source.ts";

/** The API's certificate and private key, PEM text. */
export type ApiTls = { cert: string; key: string };

export interface ApiOptions {
  host: string;
  port: number;
  source: ApiSource;
  log: Logger;
  /** The agent's config: api.token for actions, GET /config. Without it actions are refused (403). */
  config?: Config;
  /** The configuration in force now (after SIGHUP reloads) for GET /config; else `config`. */
  currentConfig?: () => Config;
  /** PEM text of the certificate and its key: serve HTTPS instead of HTTP. */
  tls?: ApiTls;
  /** Dashboard event interval (tests shorten it). */
  eventsIntervalMs?: number;
}

export interface ApiServer {
  url: string;
  stop(): Promise<void>;
}

const STATUS_ONLY = new Set(["HEAD", "OPTIONS"]);

/** Connections held at once (each costs three descriptors: client, front → server, server side)
 *  and from one address: 2,000 slow clients must not exhaust the agent's file descriptors. */
export const MAX_API_CONNECTIONS = 128;
export const MAX_API_CONNECTIONS_PER_SOURCE = 32;
/** Connections closed to make room for a newcomer and not yet released, at most (beyond, newcomers are refused). */
export const MAX_API_CLOSING = 16;

export function startApi(opts: ApiOptions): ApiServer {
  const { source, log } = opts;
  const rejects = new RejectLog(log);
  const token = opts.config?.api.token ?? "";
  const auth = createApiAuth(token);
  const history = async () => (source.history ? await source.history() : []);
  const eventsIntervalMs = opts.eventsIntervalMs ?? EVENTS_INTERVAL_MS;
  const events = new EventHub(async () => snapshot(source, await history(), eventsIntervalMs), log, eventsIntervalMs);

  const names = [os.hostname(), ...(opts.config ? [opts.config.node_name] : [])];

  /**
   * GET /config: the secret and the token never; the cluster-wide document's values as they are
   * only to a request with the API token (`pgherd config edit` writes them back), else with
   * whatever looks like a credential replaced and every command parameter (archive_command…)
   * hidden whole (`redacted: true`).
   */
  const configDoc = (req: Request) => {
    const full = carriesToken(req, auth);
    const dynamic = source.dynamicConfig?.();
    const hidden = dynamic && !full ? redactDynamic(dynamic) : dynamic;
    return { ...redactConfig(opts.currentConfig?.() ?? opts.config!, !full), ...(hidden ? { dynamic: hidden } : {}), redacted: !full };
  };

  const handle = async (req: Request, server: Server<undefined>): Promise<Response> => {
    const ip = server.requestIP(req);
    const client = ip && front?.clientOf(ip.address, ip.port);
    // Bun's parser handed over a whole request: the connection is not a slow or idle one (the front closes those first to make room).
    const arrived = (kind?: "authorized" | "stream") => void (ip && client && front?.requestArrived(ip.address, ip.port, kind));
    arrived();
    const remote = client ?? ip?.address ?? "unknown";
    // Bun listens on a loopback port that only the front should use: a local process that found it
    // would go around the front's caps.
    if (front && !client) {
      rejects.add("bypassed-front", remote, `${req.method} not through the API's address`);
      return error(403, "connect to the API's address, not to its internal port");
    }
    // Health checks, /patroni (what they say, in Patroni's shape) and /metrics answer whatever name
    // they are reached by (check_patroni, Prometheus and load balancers use DNS names: review); the
    // rest (the dashboard, /config, actions) only by an address or one of this node's names. Not
    // with TLS: a page that rebinds its DNS name cannot get the browser past the certificate, which
    // names this host, and its DNS name is what the operator reaches it by (review: every action
    // by the certificate's full name answered 421).
    // HAProxy's checks are HTTP/1.0 without a Host header: Bun then passes a bare path. Bun builds
    // the URL from the Host header as sent: one such as "[::1" or "a:b:c" makes none (review: with
    // TLS, where no Host check refuses it first, every such request logged an internal error with
    // its stack, unauthenticated and without limit, and a health check so sent answered 500): 421, as
    // the Host check answers it without TLS.
    let url: URL;
    try {
      url = new URL(req.url, "http://localhost");
    } catch {
      const why = `Host ${JSON.stringify((req.headers.get("host") ?? "").slice(0, 100))} is malformed`;
      rejects.add("bad-host", remote, why);
      return error(421, why);
    }
    const path = url.pathname;
    const checkOnly = (HEALTH_PATHS.has(path) && path !== "/") || path === "/metrics" || path === "/patroni";
    const wrongHost = checkOnly || opts.tls ? undefined : hostProblem(req.headers.get("host"), names);
    if (wrongHost) {
      rejects.add("bad-host", remote, wrongHost);
      return error(421, wrongHost);
    }
    const bad = badPath(rawPath(req.url));
    if (bad) {
      rejects.add("bad-path", remote, bad);
      return error(400, bad);
    }
    const m = req.method;

    // `/` is the dashboard for a browser and the primary check for anything else: both say so (Vary).
    if (path === "/" && m === "GET" && (req.headers.get("accept") ?? "").includes("text/html")) return varyOnAccept(dashboard());
    if (path === "/" && (m === "GET" || STATUS_ONLY.has(m))) return varyOnAccept(await health(path, url, m, source));
    if (HEALTH_PATHS.has(path) && (m === "GET" || STATUS_ONLY.has(m))) return health(path, url, m, source);
    const kind = actionRoute(m, path);
    // A backup takes as long as it takes: the idle timeout is lifted once the request is authorized.
    // An authorized action is never closed by the front to make room.
    if (kind) return runAction({ req, kind, auth, source, log, rejects, remote, authorized: () => { arrived("authorized"); if (kind === "backup") server.timeout(req, 0); } });
    if ((m !== "GET" && m !== "HEAD") || (Object.hasOwn(ACTION_ROUTES, path) && path !== "/config")) {
      const allow = allowed(path);
      if (allow.length === 0) return notFound(m, path);
      if (m === "OPTIONS") return new Response(null, { status: 204, headers: { allow: allow.join(", ") } });
      return error(405, `${m} ${path} is not supported; use ${allow.join(" or ")}`, { allow: allow.join(", ") });
    }
    if (path.startsWith("/ui/")) return asset(path);
    switch (path) {
      case "/node": return json(source.status());
      case "/cluster": {
        const cv = await source.clusterView();
        return json({ ...cv, ...patroniCluster(cv.view, { scheme: opts.tls ? "https" : "http", port: front?.port ?? opts.port }) });
      }
      case "/patroni": return json(patroniNode(source.status()));
      case "/history": return json(await history());
      // A nonce for a signed request (request-signing.ts): the CLI never sends the token itself.
      case "/auth/nonce": return token === "" ? error(403, "actions are disabled on this agent: set api.token in its pgherd.toml") : json({ nonce: auth.nonces.issue(auth.now()), ttl_ms: NONCE_TTL_MS }, 200, { "cache-control": "no-store" });
      case "/clusters": return source.clusters ? json(await source.clusters()) : error(501, "this agent cannot list clusters");
      case "/config": return opts.config ? json(configDoc(req)) : error(501, "this agent was started without its configuration");
      case "/metrics": return new Response(await metrics(source, await history(), rejects.snapshot()), { headers: { "content-type": METRICS_TYPE, "cache-control": "no-store" } });
      case "/events": {
        // While it lasts the stream is a request in progress (at most 16: events.ts), not an idle connection.
        const stream = events.open(remote, () => void (ip && client && front?.streamEnded(ip.address, ip.port)));
        if (stream.ok) {
          server.timeout(req, 0); // SSE: Bun's idle timeout would cut the stream after 10 s (a refusal keeps it)
          arrived("stream");
        }
        return stream;
      }
    }
    return notFound(m, path);
  };

  // Bun.serve cannot cap its connections: it listens on loopback behind a capped TCP front.
  let front: CappedFront | undefined;
  const server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    development: false,
    // Bun's own ceiling; actions refuse anything above MAX_BODY_BYTES with a clear 413 first.
    maxRequestBodySize: 16 * MAX_BODY_BYTES,
    ...(opts.tls ? { tls: { cert: opts.tls.cert, key: opts.tls.key } } : {}),
    fetch: async (req, srv) => {
      try {
        return withCommonHeaders(await handle(req, srv));
      } catch (e) {
        log.error(`api: ${req.method} ${rawPath(req.url).slice(0, 200)}: ${(e as Error).stack ?? e}`);
        return withCommonHeaders(error(500, "internal error (logged by the agent)"));
      }
    },
    error: (e) => {
      log.error(`api: ${e.message}`);
      return withCommonHeaders(error(500, "internal error (logged by the agent)"));
    },
  });
  try {
    front = new CappedFront({
      host: opts.host, port: opts.port, target: { host: "127.0.0.1", port: server.port! },
      max: MAX_API_CONNECTIONS, perSource: MAX_API_CONNECTIONS_PER_SOURCE, maxClosing: MAX_API_CLOSING,
      onRefused: (reason, remote) => rejects.add(reason, remote),
    });
  } catch (e) {
    void server.stop(true);
    throw new Error(`api: ${(e as Error).message}`);
  }
  const scheme = opts.tls ? "https" : "http";
  const url = `${scheme}://${opts.host.includes(":") ? `[${opts.host}]` : opts.host}:${front.port}`;
  log.info(`api listening on ${url}${token === "" ? " (actions disabled: api.token is empty)" : ""}`);
  if (token !== "" && !opts.tls && !isLoopbackHost(opts.host)) {
    log.warn(`api: actions are enabled on ${url} without TLS: a bearer token (the dashboard, curl; not the CLI, which signs its requests) crosses the network in clear (set api.tls_cert and api.tls_key, or listen on 127.0.0.1)`);
  }
  return {
    url,
    stop: async () => {
      events.stop();
      await front!.stop();
      await server.stop(true);
    },
  };
}

function notFound(method: string, path: string): Response {
  return error(404, `no route ${method} ${path.slice(0, 200)} (see docs/api.md)`);
}

function allowed(path: string): string[] {
  if (HEALTH_PATHS.has(path)) return ["GET", "HEAD", "OPTIONS"];
  if (path === "/config") return ["GET", "PATCH"];
  if (Object.hasOwn(ACTION_ROUTES, path)) return Object.keys(ACTION_ROUTES[path]!);
  if (["/node", "/cluster", "/patroni", "/clusters", "/auth/nonce", "/history", "/metrics", "/events"].includes(path) || path.startsWith("/ui/")) return ["GET", "HEAD"];
  return [];
}

async function health(path: string, url: URL, method: string, source: ApiSource): Promise<Response> {
  const q = parseHealthQuery(url.searchParams);
  if (typeof q === "string") return STATUS_ONLY.has(method) ? new Response(null, { status: 400 }) : error(400, q);
  const s = source.status();
  const facts = healthFacts(s);
  let lagSeconds: number | null = null;
  if (q.lag?.kind === "seconds" && facts.pg?.inRecovery) {
    const { view } = await source.clusterView();
    lagSeconds = view.members.find((x) => x.id === s.node.id)?.lagSeconds ?? null;
  }
  const r = checkHealth(path, q, facts, lagSeconds);
  // HAProxy and friends read the status line only (Patroni sends no body for HEAD/OPTIONS either).
  if (STATUS_ONLY.has(method)) return new Response(null, { status: r.status });
  const d = describe(facts);
  const pg = s.postgres;
  return json({
    check: path, ok: r.status === 200, reason: r.reason,
    node: s.node.name, cluster: s.cluster, role: d.role, state: d.state, replication_state: d.replicationState,
    leader: s.election.leaderName, leading: s.election.leading, term: s.election.term,
    timeline: pg?.data === "present" ? pg.position.timeline : null,
    xlog: pg ? { location: pg.position.lsn, received_location: pg.receiveLsn, replayed_location: pg.replayLsn } : null,
    lag_bytes: pg?.lagBytes ?? null, ...(lagSeconds === null ? {} : { lag_seconds: lagSeconds }),
    tags: s.tags, ...replicaSyncKeys(s),
  }, r.status);
}

async function metrics(source: ApiSource, history: readonly HistoryEntry[], apiRejects: Record<string, number>): Promise<string> {
  const s = source.status();
  // Cluster-wide series come from the leader's own view only (no mesh round trip, no duplicates).
  const view = s.election.leader === s.node.id ? (await source.clusterView()).view : null;
  return renderMetrics({ status: s, facts: healthFacts(s), view, history, failovers: source.failovers?.(), apiRejects });
}

/** What the dashboard gets every `intervalMs` (stated in it: the dashboard judges staleness by it). */
async function snapshot(source: ApiSource, history: readonly HistoryEntry[], intervalMs: number): Promise<unknown> {
  const s = source.status();
  const cluster = await source.clusterView();
  return { at: new Date().toISOString(), intervalMs, node: s, cluster, history };
}
