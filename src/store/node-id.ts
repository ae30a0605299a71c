// A node's identity survives restarts and renames: peers, votes and history refer to it.
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { NODE_ID_PATTERN } from "../core/messages.ts";
import { ensurePrivateDir } from "./dir.ts";
import { StoreError, writeFileDurableSync } from "./durable.ts";

export const NODE_ID_FILE = "node-id";

function readNodeId(file: string): string | undefined {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw new StoreError(`${file}: cannot read node id: ${(e as Error).message}`);
  }
  const id = text.trim();
  // Regenerating would make this host a stranger to its own cluster: refuse instead.
  if (!NODE_ID_PATTERN.test(id)) throw new StoreError(`${file}: corrupt node id: expected 16 lowercase hex characters`);
  return id;
}

/** Returns the persisted node id, creating `stateDir` (0700) and the id file (0600) on first use. */
export function loadOrCreateNodeId(stateDir: string): string {
  ensurePrivateDir(stateDir, 0o700, { checkPlace: true }); // the agent's start: where it lies too
  const file = join(stateDir, NODE_ID_FILE);
  const existing = readNodeId(file);
  if (existing !== undefined) return existing;
  const id = randomBytes(8).toString("hex"); // NODE_ID_PATTERN (core/messages.ts): one schema everywhere
  try {
    writeFileDurableSync(file, `${id}\n`, 0o600, { exclusive: true });
    return id;
  } catch (e) {
    // Another process created it between our read and write: theirs wins.
    if ((e as NodeJS.ErrnoException).code === "EEXIST") {
      const theirs = readNodeId(file);
      if (theirs !== undefined) return theirs;
    }
    throw e;
  }
}

/** The persisted node id of `stateDir`, or undefined when it has none (never creates either). */
export function existingNodeId(stateDir: string): string | undefined {
  return readNodeId(join(stateDir, NODE_ID_FILE));
}
