// SIGHUP: reread pgherd.toml, apply what can change live, report what needs a restart. A file
// that does not load (syntax, a bad value, a mode others may read) changes nothing: the agent
// keeps running on the config it has and logs why.
import { deepFreeze } from "../config/freeze.ts";
import { loadConfig } from "../config/load.ts";
import type { Config } from "../config/schema.ts";
import { type Logger, type LogLevel, setLogFormat } from "../log.ts";
import { setAccessRules } from "./access.ts";
import { applyLive, describePlan, planReload, type ReloadPlan } from "./reload-plan.ts";

export interface ReloadHooks {
  path: string;
  log: Logger;
  setLevel(l: LogLevel): void;
  /** false: --log-format was given and wins over [log] format. */
  formatFromConfig: boolean;
  /** Serve the API with this config (stop the old server first; nothing to do before it first started); throws when it cannot. */
  restartApi(cfg: Config): Promise<void>;
}

/** The agent's reloader (one per process): `pgherd reload` reloads through it. */
let active: ConfigReloader | null = null;

/** The config in effect (start config plus live reloads), or null before the agent built its reloader. */
export function runningConfig(): Config | null {
  return active?.current() ?? null;
}

/** Reload pgherd.toml as SIGHUP does; null when no agent runs in this process. */
export function reloadConfigNow(): Promise<ReloadPlan | null> | null {
  return active ? active.reload() : null;
}

export class ConfigReloader {
  private chain: Promise<unknown> = Promise.resolve();

  constructor(private running: Config, private readonly h: ReloadHooks) {
    setAccessRules(running.access);
    active = this;
  }

  /** This reloader no longer stands for the process's config (runningConfig() is null again). */
  close(): void {
    if (active === this) active = null;
  }

  /** The config in effect: the start config with the live keys of the last good reload. */
  current(): Config {
    return this.running;
  }

  /** One reload at a time, in signal order. Resolves with the plan, or null when the file was refused. */
  reload(): Promise<ReloadPlan | null> {
    const next = this.chain.then(() => this.once());
    this.chain = next.catch(() => undefined);
    return next;
  }

  private async once(): Promise<ReloadPlan | null> {
    const { log } = this.h;
    let next: Config;
    try {
      next = loadConfig(this.h.path, { ownerOnly: true });
    } catch (e) {
      log.error(`SIGHUP: ${this.h.path} not reloaded, the agent keeps its running configuration: ${(e as Error).message}`);
      return null;
    }
    const planned = planReload(this.running, next);
    // --log-format wins over the file: a changed [log] format is then neither applied nor pending.
    const fixed = (k: string) => !this.h.formatFromConfig && k === "log.format";
    const plan = { ...planned, changed: planned.changed.filter((k) => !fixed(k)), live: planned.live.filter((k) => !fixed(k)) };
    const before = this.running;
    const now = applyLive(before, next);
    if (now.log.format !== before.log.format && this.h.formatFromConfig) setLogFormat(now.log.format);
    if (now.log.level !== before.log.level) this.h.setLevel(now.log.level);
    setAccessRules(now.access); // the next monitoring round writes pg_hba.conf and reloads PostgreSQL
    // The API restarts only for its own settings (address, token, certificate): GET /config reads the
    // configuration in force, and a restart would cut the `pgherd reload` request that asked for this.
    if (plan.live.some((k) => k.startsWith("api."))) {
      try {
        await this.h.restartApi(now);
      } catch (e) {
        log.error(`SIGHUP: the API cannot serve the new [api] settings (${(e as Error).message}): keeping the old ones`);
        await this.h.restartApi(before).catch((e2: Error) => log.error(`SIGHUP: the API could not be restarted either: ${e2.message}`));
        this.running = deepFreeze({ ...now, api: before.api }) as Config;
        log.info(`SIGHUP: ${describePlan({ ...plan, live: plan.live.filter((k) => !k.startsWith("api.")) })}`);
        return plan;
      }
    }
    this.running = now;
    if (plan.restart.length) log.warn(`SIGHUP: ${describePlan(plan)}`);
    else log.info(`SIGHUP: ${describePlan(plan)}`);
    return plan;
  }
}
