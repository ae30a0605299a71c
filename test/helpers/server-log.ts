// Reading a node's PostgreSQL server log (the log collector's directory, <data_dir>.log/): what
// PostgreSQL itself spent time on, told apart from what pgherd did around it.
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import type { ClusterNode } from "./cluster.ts";

/** One server log line: its time (ms since the epoch; the log_line_prefix starts with %m) and its message. */
interface ServerLine { at: number; msg: string }

function serverLines(n: ClusterNode): ServerLine[] {
  const dir = `${n.dataDir}.log`;
  const files = readdirSync(dir).filter((f) => f.endsWith(".log")).sort();
  const out: ServerLine[] = [];
  for (const f of files) {
    for (const l of readFileSync(join(dir, f), "utf8").split("\n")) {
      const m = /^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}) UTC \[\d+\] \w+:\s+(.*)$/.exec(l);
      if (m) out.push({ at: Date.parse(`${m[1]!.replace(" ", "T")}Z`), msg: m[2]! });
    }
  }
  return out.sort((a, b) => a.at - b.at);
}

/**
 * How long the first crash recovery that began at or after `sinceWallMs` spent making the data
 * directory durable before it read any WAL (PostgreSQL's SyncDataDirectory: an fsync of every file,
 * or one syncfs, per recovery_init_sync_method): from "database system was interrupted" to "not
 * properly shut down; automatic recovery in progress". It is the disk's speed at that moment, not
 * the cluster manager's; null when no such recovery is in the log.
 */
export function crashRecoverySyncMs(n: ClusterNode, sinceWallMs: number): number | null {
  const lines = serverLines(n).filter((l) => l.at >= sinceWallMs);
  const from = lines.findIndex((l) => l.msg.startsWith("database system was interrupted;"));
  if (from < 0) return null;
  const to = lines.slice(from).find((l) => l.msg.includes("automatic recovery in progress"));
  return to ? to.at - lines[from]!.at : null;
}
