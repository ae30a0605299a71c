// `pgherd agent`: wires the agent, its API and the process signals together.
import type { Config } from "../config/schema.ts";
import { parseHostPort } from "../config/hostport.ts";
import { createLogger } from "../log.ts";
import { startApi } from "../api/server.ts";
import { Agent } from "./agent.ts";

export async function runAgent(cfg: Config, opts: { configPath: string }): Promise<void> {
  const log = createLogger(cfg.log.level, cfg.node_name);
  log.info(`pgherd agent starting with ${opts.configPath}`);
  const agent = new Agent(cfg, log);
  await agent.start();
  const listen = parseHostPort(cfg.api.listen);
  if (typeof listen === "string") throw new Error(`api.listen: ${listen}`);
  const api = startApi({ host: listen.host, port: listen.port, source: agent, log: log.withTag("api") });
  await new Promise<void>((resolve) => {
    const stop = (sig: string) => {
      log.info(`${sig}: stopping (PostgreSQL, when managed, is left running)`);
      void Promise.allSettled([agent.stop(), api.stop()]).then(() => resolve());
    };
    process.once("SIGTERM", () => stop("SIGTERM"));
    process.once("SIGINT", () => stop("SIGINT"));
  });
}
