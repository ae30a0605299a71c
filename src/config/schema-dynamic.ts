// The cluster-wide (dynamic) configuration: the settings that must agree on every node, agreed
// through the leader, versioned and kept by every node (src/agent/dynamic-config.ts). The same
// schema checks `config set`/`config edit` in the CLI, PATCH /config and a document received over
// the mesh. Keys mirror pgherd.toml's (postgres.parameters, access, durability, failover).
import { z } from "zod";
import { accessRules } from "./schema-access.ts";
import { parameters, storedParameters } from "./pg-values.ts";

export const durabilityMode = z.enum(["quorum", "strict", "async"], 'must be "quorum", "strict" or "async"');

export const dynamicSettings = z.strictObject({
  durability: durabilityMode,
  postgres: z.strictObject({ parameters }),
  access: accessRules,
  failover: z.strictObject({ max_lag_bytes: z.int().min(0, "must be at least 0").max(2 ** 40, `must be at most ${2 ** 40}`) }),
});
export type DynamicSettings = z.output<typeof dynamicSettings>;

/** As a document stores them: settings refused since it was written are left out (pg-values.ts LEFT_OUT_WHEN_STORED). */
const storedSettings = dynamicSettings.extend({ postgres: z.strictObject({ parameters: storedParameters }) });

/** One version of the document as every node stores it. Versions only grow; (version, term) orders them. */
export const dynamicDoc = z.strictObject({
  version: z.int().min(1, "must be at least 1").max(Number.MAX_SAFE_INTEGER, "is too large"),
  /** The leader's term when it made this version (one leader per term: (version, term) names one content). */
  term: z.int().min(0, "must be at least 0"),
  /** ISO time and the node that made it, for `config show` and the history. */
  at: z.string().max(40),
  by: z.string().max(64),
  settings: storedSettings,
});
export type DynamicDoc = z.output<typeof dynamicDoc>;

/** The dotted keys `config set` accepts (a parameter is postgres.parameters.<name>). */
export const DYNAMIC_KEYS = ["durability", "postgres.parameters.", "access", "failover.max_lag_bytes"] as const;
