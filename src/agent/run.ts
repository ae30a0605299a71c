// PLACEHOLDER written by the Foundation issue so the CLI builds; the lead replaces this file.
import type { Config } from "../config/schema.ts";

export async function runAgent(cfg: Config, opts: { configPath: string }): Promise<void> {
  throw new Error(`agent not implemented yet (config ${opts.configPath} for cluster "${cfg.cluster}" is valid)`);
}
