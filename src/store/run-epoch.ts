// Each run of the agent gets an epoch ordered across the runs of this node: a peer that compares
// two state messages of this node can tell a late frame of an earlier run from one of the current
// run (core/sync-exclusion.ts laterMessage). Kept in <state_dir>/run-epoch, written durably before
// the run announces it.
import { join } from "node:path";
import { z } from "zod";
import { readJsonSync, writeJsonDurableSync } from "./durable.ts";

export const RUN_EPOCH_FILE = "run-epoch.json";

const schema = z.strictObject({ epoch: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER - 1) });

/**
 * The epoch of this run: above every earlier run's, and at least the wall clock in milliseconds (a
 * state directory whose file was removed still orders after the runs before, unless the clock went
 * back). A file that does not validate stops the start, naming it (StoreError), like the node id.
 */
export function nextRunEpoch(stateDir: string, wallMs = Date.now()): number {
  const file = join(stateDir, RUN_EPOCH_FILE);
  const last = readJsonSync(file, schema)?.epoch ?? 0;
  const epoch = Math.max(last + 1, Math.floor(wallMs));
  writeJsonDurableSync(file, { epoch }, 0o600);
  return epoch;
}
