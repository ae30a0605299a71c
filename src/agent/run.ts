// `pgherd agent`: wires the agent, its PostgreSQL loop, its API and the process signals together.
import type { Config } from "../config/schema.ts";
import { readFileSync } from "node:fs";
import { readPrivateFile } from "../config/load.ts";
import { parseHostPort } from "../config/hostport.ts";
import { createLogControl } from "../log.ts";
import { type ApiServer, type ApiTls, startApi } from "../api/server.ts";
import { findBinDir, lookupOsUser } from "../postgres/index.ts";
import { rootWithoutPtrace } from "../postgres/orphans.ts";
import { Agent } from "./agent.ts";
import { handOverBeforeStop } from "./handover.ts";
import { PostgresLoop } from "./pg/loop.ts";
import { LeaseFile } from "../fence/lease-file.ts";
import { HostClock, hostMonotonicMs } from "../fence/clock.ts";
import { kernelTimeoutS } from "../config/margins.ts";
import { createSentry, tapErrors } from "../integrations/sentry.ts";
import { createVip } from "../integrations/vip.ts";
import { ConfigReloader } from "../ops/reload.ts";
import { programProblems } from "../hooks/programs.ts";

export class AgentStartError extends Error {
  override readonly name = "AgentStartError";
}

/** `handover`: --handover / --no-handover; absent: [shutdown] handover. */
export async function runAgent(cfg: Config, opts: { configPath: string; logFormatFixed?: boolean; handover?: boolean }): Promise<void> {
  const { log: base, setLevel } = createLogControl(cfg.log.level, cfg.node_name);
  const sentry = createSentry(cfg, base); // [sentry]: errors and role changes (src/integrations/sentry.ts)
  const log = sentry ? tapErrors(base, sentry) : base;
  // Before anything else: a SIGHUP's default action would end the process. Until the API runs,
  // a reload applies log and access settings, and the API starts with the reloaded [api].
  let api: ApiServer | null = null;
  const reloader = new ConfigReloader(cfg, {
    path: opts.configPath, log, setLevel, formatFromConfig: !opts.logFormatFixed,
    restartApi: async (c) => {
      if (!api) return;
      const tls = apiTls(c); // read before the running API stops: a refused key keeps it serving
      await api.stop();
      api = serveApi(c, tls);
    },
  });
  const onHup = () => void reloader.reload();
  process.on("SIGHUP", onHup);
  log.info(`pgherd agent starting with ${opts.configPath}`);
  // Root limited to a capability set without CAP_SYS_PTRACE cannot read the /proc links of the
  // server's processes, which the agent and its watchdog check before they signal one.
  if (cfg.role === "database" && rootWithoutPtrace()) throw new AgentStartError("running as root without CAP_SYS_PTRACE: the agent and its fencing watchdog cannot read the /proc links of the server's processes, so a primary whose lease ended would not be fenced; add CAP_SYS_PTRACE to the unit's CapabilityBoundingSet (docs/install.md, the root drop-in) or run the agent as postgres.os_user");
  const listen = parseHostPort(cfg.api.listen);
  if (typeof listen === "string") throw new AgentStartError(`${opts.configPath}: api.listen: ${listen}`);
  const programs = programProblems(cfg);
  if (programs.length) throw new AgentStartError(programs.map((p) => `${opts.configPath}: ${p}`).join("\n"));

  // The API's certificate and key (the key as every secret is read: only its owner may read it, no
  // link followed), read now to fail before joining anything; kept to serve again with the same [api].
  let served: { api: Config["api"]; tls: ApiTls | undefined };
  const apiTls = (c: Config): ApiTls | undefined => {
    if (served && c.api === served.api) return served.tls;
    if (!c.api.tls_cert || !c.api.tls_key) return undefined;
    let cert: string;
    try {
      cert = readFileSync(c.api.tls_cert, "utf8");
    } catch (e) {
      throw new Error(`api.tls_cert: ${(e as Error).message}`);
    }
    return { cert, key: readPrivateFile(c.api.tls_key, "api.tls_key") };
  };
  try {
    served = { api: cfg.api, tls: apiTls(cfg) };
  } catch (e) {
    throw new AgentStartError(`${opts.configPath}: ${(e as Error).message}`);
  }

  // Fail before joining anything when this host cannot run PostgreSQL as configured.
  const bins = cfg.role === "database"
    ? await findBinDir(cfg.postgres.bin_dir || undefined, { log, osUser: cfg.postgres.os_user }).catch((e: Error) => {
        throw new AgentStartError(`${opts.configPath}: postgres.bin_dir: ${e.message}`);
      })
    : null;
  if (bins) log.info(`PostgreSQL ${bins.versionString} binaries in ${bins.dir}`);

  let loop: PostgresLoop | null = null;
  const kernel = cfg.watchdog.mode === "off" ? null : { device: cfg.watchdog.device, timeoutS: kernelTimeoutS(cfg.election), fenceMs: cfg.election.fence_ms };
  // The fencer (loop.fencer) owns the lease file, the stop on a lost lease and the watchdog process.
  // One host clock for the lease file's deadlines and the election's suspend check (clock.ts): after a
  // suspend, lease ends up to the longest lease this node can hold keep the offset from before it
  // (etcd's ttl_s, where etcd can be in force: endpoints are set).
  const keepMs = Math.max(cfg.election.lease_ms, cfg.consensus.endpoints.length > 0 ? cfg.consensus.ttl_s * 1000 : 0);
  const hostClock = new HostClock(1000, hostMonotonicMs, () => performance.now(), keepMs);
  const vip = createVip(cfg, log); // [vip]: follows the lease (src/integrations/vip.ts)
  await vip?.release("the agent starts (not leading yet)");
  const agent = new Agent(cfg, log, {
    onLead: (term, until) => {
      // A lease the watchdog does not guard is no lease: give the leadership to a node that can hold one.
      if (loop && !loop.fencer.arm(term, until)) return void queueMicrotask(() => agent.loopContext.resign("this node cannot write its lease file"));
      vip?.hold(until);
    },
    // The address gets the fence budget, not more: a slow `ip` must not hold this node's votes.
    onFence: async (reason) => (await Promise.all([vip?.releaseWithin(reason, cfg.election.fence_ms), loop?.fencer.fence(reason)]))[1] ?? true,
    // A database node only: a witness never leads, so never holds a lease a suspend could outlast.
    ...(bins ? { suspended: () => hostClock.suspended() } : {}),
  });
  if (bins) {
    // The fence and the watchdog signal only the OS user's processes (orphans.ts isServerOf).
    const osUid = (await lookupOsUser(cfg.postgres.os_user).catch((e: Error) => {
      throw new AgentStartError(`${opts.configPath}: postgres.os_user: ${e.message}`);
    })).uid;
    if (osUid === 0) throw new AgentStartError(`${opts.configPath}: postgres.os_user "${cfg.postgres.os_user}" is uid 0 (root); it must be the PostgreSQL server's own user`);
    loop = new PostgresLoop(cfg, bins, agent.loopContext, log.withTag("pg"), new LeaseFile(cfg.state_dir, cfg.postgres.data_dir, osUid, log.withTag("fence"), kernel, hostClock));
    loop.fencer.start(); // the watchdog process before the election can arm anything
    agent.attachLoop(loop);
  }
  agent.integrations.useSentry(sentry);
  await agent.start();
  if (loop) loop.start();
  else agent.startWitnessReports();
  // The API is the one part a reload restarts ([api] listen, token, TLS change live).
  const serveApi = (c: Config, tls: ApiTls | undefined): ApiServer => {
    const at = parseHostPort(c.api.listen);
    if (typeof at === "string") throw new Error(`api.listen: ${at}`);
    const server = startApi({ host: at.host, port: at.port, source: agent, log: log.withTag("api"), config: c, currentConfig: () => reloader.current(), tls });
    served = { api: c.api, tls };
    return server;
  };
  api = serveApi(reloader.current(), apiTls(reloader.current()));

  await new Promise<void>((resolve) => {
    let stopping = false;
    const stop = async (sig: string) => {
      if (stopping) return log.warn(`${sig}: already stopping`);
      stopping = true;
      // A leader hands over first (src/agent/handover.ts); every other agent stops at once.
      const enabled = opts.handover ?? reloader.current().shutdown.handover;
      await handOverBeforeStop(sig, { cfg, agent, database: loop !== null, enabled, log }).catch((e: Error) => log.error(`${sig}: handover: ${e.message}`));
      log.info(`${sig}: stopping the agent (PostgreSQL is left running)`);
      await Promise.allSettled([loop?.stop(), agent.stop(), api?.stop(), sentry?.flush(), vip?.stop(`${sig}: the agent stops`)]);
      await agent.historyLog.flushed(); // what the stop itself recorded (a fence, a hook run)
      resolve();
    };
    process.on("SIGTERM", () => void stop("SIGTERM"));
    process.on("SIGINT", () => void stop("SIGINT"));
  });
  process.off("SIGHUP", onHup);
}
