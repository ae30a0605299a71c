// The programs the configuration names (the hooks, pgpool's PCP tools), checked at the agent's start
// and by `pgherd config check` as they are checked before each run (trusted-path.ts): a hook that
// would be refused otherwise shows only at the first role change, and a refused pre_promote is a veto
// on every node with the same install, so no primary at the first failover (re-review).
import { existsSync } from "node:fs";
import { join } from "node:path";
import type { Config } from "../config/schema.ts";
import { untrustedProgram } from "./trusted-path.ts";

/** The PCP tools the pgpool keeper runs (src/integrations/pgpool.ts). */
export const PCP_TOOLS = ["pcp_node_info", "pcp_promote_node", "pcp_attach_node", "pcp_detach_node"] as const;

/** Where the PCP tools are: pgpool.bin_dir, else /usr/sbin when they are there, else "" (PATH). */
export function pcpBinDir(pgpool: Config["pgpool"]): string {
  return pgpool.bin_dir || (existsSync("/usr/sbin/pcp_node_info") ? "/usr/sbin" : "");
}

/** [config key, path] of every program the configuration has the agent run. */
export function configuredPrograms(cfg: Config): [string, string][] {
  const out: [string, string][] = [];
  for (const k of ["on_start", "on_stop", "on_role_change", "pre_promote"] as const) if (cfg.hooks[k]) out.push([`hooks.${k}`, cfg.hooks[k]]);
  if (cfg.pgpool.pcp_host && cfg.role !== "witness") { // a witness never leads, so never runs them
    const bin = pcpBinDir(cfg.pgpool);
    if (bin) for (const t of PCP_TOOLS) out.push([cfg.pgpool.bin_dir ? "pgpool.bin_dir" : "pgpool (/usr/sbin)", join(bin, t)]);
  }
  return out;
}

/** "key: why" for each configured program this agent would refuse to run. */
export function programProblems(cfg: Config, uid?: number): string[] {
  return configuredPrograms(cfg).flatMap(([key, path]) => {
    const p = untrustedProgram(path, uid);
    return p ? [`${key}: ${p}`] : [];
  });
}
