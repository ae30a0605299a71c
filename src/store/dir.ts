// The state directory holds the node id and election state: private to the agent's user.
import { chmodSync, mkdirSync, statSync } from "node:fs";
import { StoreError } from "./durable.ts";

/** Creates `dir` (and parents) if missing; a directory this call creates gets exactly `mode`. */
export function ensurePrivateDir(dir: string, mode = 0o700): void {
  let created: string | undefined;
  try {
    created = mkdirSync(dir, { recursive: true, mode });
  } catch (e) {
    throw new StoreError(`${dir}: cannot create state directory: ${(e as Error).message}`);
  }
  if (created !== undefined) chmodSync(dir, mode); // mkdir's mode is masked by the umask
  if (!statSync(dir).isDirectory()) throw new StoreError(`${dir}: state directory path is not a directory`);
}
