// PostgreSQL's server log: where it goes and how it is rotated ([log] postgres_*). Pure: the
// settings rendered into pgherd.conf and the directory the host prepares before a start.
// pg_ctl's -l file keeps only what the postmaster writes before its log collector runs
// (with some versions not even a start error such as a port in use: a failed start reads the
// collector's newest file too, src/postgres/ctl.ts); everything after goes to the collector's files.
import type { Config } from "../config/schema.ts";
import type { ParamValue } from "../postgres/pgconf.ts";

/** The collector's directory: [log] postgres_dir, else "<data_dir>.log" (outside the data directory: clones and rewinds copy it). */
export function serverLogDir(cfg: Pick<Config, "log" | "postgres">): string {
  return cfg.log.postgres_dir || `${cfg.postgres.data_dir.replace(/\/+$/, "")}.log`;
}

/** The settings that turn on the log collector with rotation; an operator's [postgres.parameters] still win. */
export function serverLogParameters(cfg: Pick<Config, "log" | "postgres">): Record<string, ParamValue> {
  return {
    logging_collector: true,
    log_directory: serverLogDir(cfg),
    log_filename: cfg.log.postgres_filename,
    log_rotation_age: cfg.log.postgres_rotation_age,
    // Size rotation would append to a same-named file; time rotation truncates it: a bounded set of files.
    log_rotation_size: 0,
    log_truncate_on_rotation: true,
    log_file_mode: "0600",
  };
}
