// pg_rewind a former primary onto the new primary's timeline. PostgreSQL ≥ 13 finishes crash
// recovery of an uncleanly stopped target by itself first. pg_rewind copies the source's
// configuration files too: the caller rewrites every managed file afterwards, before starting.
import type { Logger } from "../log.ts";
import { pgTool, type PgBins } from "./binaries.ts";
import { runTool, stderrTail } from "./exec.ts";
import { buildConninfo } from "./pgconf.ts";

export class RewindError extends Error {
  override readonly name = "RewindError";
  /**
   * Whether pg_rewind may have written into the target: it prints "need to copy" (--progress,
   * LC_ALL=C) right before it starts changing files, its point of no return. Without that line it
   * stopped during its checks and reads, and the data directory is as it was.
   */
  readonly targetTouched: boolean;
  /** It could not connect to the source server (libpq's connection failure; core/rewind-retry.ts). */
  readonly couldNotConnect: boolean;
  constructor(message: string, readonly stderr: string, output = stderr) {
    super(message);
    this.targetTouched = rewindTouchedTarget(output);
    this.couldNotConnect = rewindCouldNotConnect(stderr);
  }
}

/**
 * pg_rewind's stderr (LC_ALL=C) says libpq could not connect to the source: `connection to server
 * at "h", port p failed: …` (libpq of PostgreSQL 14 and later) or `could not connect to server`
 * (earlier), after `pg_rewind: error:` (15 and later) or `pg_rewind: fatal:` (13, 14). A refusal
 * once connected (wal_log_hints off, no common timeline) is not this.
 */
export function rewindCouldNotConnect(stderr: string): boolean {
  return /pg_rewind: (?:error|fatal): (?:connection to server .* failed|could not connect to server)/.test(stderr);
}

/** pg_rewind's output (LC_ALL=C, --progress) says it reached the writes into the target. */
export function rewindTouchedTarget(output: string): boolean {
  return /need to copy \d+ MB/.test(output);
}

export interface RewindOptions {
  bins: PgBins;
  osUser: string;
  log: Logger;
  dataDir: string;
  host: string;
  port: number;
  user: string;
  /** libpq passfile with the password (outside the data directory); never PGPASSWORD. */
  passfile: string;
  /** libpq TLS keywords (NodeTls.client(): verify-full, sslrootcert, channel_binding); absent: plain. */
  tls?: Readonly<Record<string, string>>;
  timeoutMs: number;
}

/** Returns "rewound" or "not-needed" (same timeline history: nothing to undo). */
export async function rewind(o: RewindOptions): Promise<"rewound" | "not-needed"> {
  const source = buildConninfo({ host: o.host, port: o.port, user: o.user, applicationName: "pgherd_rewind", connectTimeoutSec: 10, extra: o.tls });
  const res = await runTool({
    bin: pgTool(o.bins, "pg_rewind"),
    args: [`--target-pgdata=${o.dataDir}`, `--source-server=${source} dbname=postgres`, "--progress"],
    env: { PGPASSFILE: o.passfile },
    user: o.osUser, timeoutMs: o.timeoutMs, log: o.log,
  });
  const out = `${res.stdout}\n${res.stderr}`;
  if (res.code !== 0 || res.timedOut) throw new RewindError(`pg_rewind of ${o.dataDir} from ${o.host}:${o.port} failed: ${stderrTail(res.stderr) || `exit ${res.code}`}`, res.stderr, out);
  return /no rewind required/i.test(out) ? "not-needed" : "rewound";
}
