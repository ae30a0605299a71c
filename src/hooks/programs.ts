// The programs the configuration names (the hooks, pgpool's PCP tools), checked at the agent's start
// and by `pgherd config check` as they are checked before each run (trusted-path.ts): a hook that
// would be refused otherwise shows only at the first role change, and a refused pre_promote is a veto
// on every node with the same install, so no primary at the first failover (re-review).
import { join } from "node:path";
import type { Config } from "../config/schema.ts";
import { untrustedProgram } from "./trusted-path.ts";

/** The PCP tools the pgpool keeper runs (src/integrations/pgpool.ts). */
export const PCP_TOOLS = ["pcp_node_info", "pcp_promote_node", "pcp_attach_node", "pcp_detach_node"] as const;

/** The PATH the PCP tools are looked up in when pgpool.bin_dir is empty, and run with: the system's directories, never the agent's environment. */
export const PCP_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/**
 * The PCP tool the keeper runs: under pgpool.bin_dir, else the first found in PCP_PATH (Debian's
 * pgpool2 puts them in /usr/sbin), else the bare name (refused: it does not exist). Resolved here so
 * the tool found through PATH is checked like one under bin_dir (review: it was run unchecked).
 */
export function pcpToolPath(pgpool: Pick<Config["pgpool"], "bin_dir">, tool: (typeof PCP_TOOLS)[number], path = PCP_PATH): string {
  return pgpool.bin_dir ? join(pgpool.bin_dir, tool) : Bun.which(tool, { PATH: path }) ?? tool;
}

/** [config key, path] of every program the configuration has the agent run. */
export function configuredPrograms(cfg: Config): [string, string][] {
  const out: [string, string][] = [];
  for (const k of ["on_start", "on_stop", "on_role_change", "pre_promote"] as const) if (cfg.hooks[k]) out.push([`hooks.${k}`, cfg.hooks[k]]);
  if (cfg.pgpool.pcp_host && cfg.role !== "witness") { // a witness never leads, so never runs them
    for (const t of PCP_TOOLS) out.push([cfg.pgpool.bin_dir ? "pgpool.bin_dir" : `pgpool.pcp_host (${t} looked up in ${PCP_PATH}; pgpool.bin_dir names another place)`, pcpToolPath(cfg.pgpool, t)]);
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
