// For status output and debug logs: the config with every credential replaced.
import type { Config } from "./schema.ts";

const HIDDEN = "<redacted>";

export function redactConfig(cfg: Config): Config {
  return {
    ...cfg,
    secret: HIDDEN,
    api: { ...cfg.api, token: cfg.api.token === "" ? "" : HIDDEN },
  };
}
