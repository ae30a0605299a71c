// Locate the PostgreSQL server binaries. Order: configured postgres.bin_dir (no fallback if it
// is wrong: a typo must not silently pick another major version), then `pg_config --bindir`,
// then the newest versioned install under the usual package roots.
import { constants } from "node:fs";
import { access, readdir } from "node:fs/promises";
import { join } from "node:path";
import type { Logger } from "../log.ts";
import { runTool } from "./exec.ts";

export interface PgBins {
  readonly dir: string;
  /** Major version, e.g. 15 (from `postgres --version`). */
  readonly version: number;
  readonly versionString: string;
}

export class BinDirError extends Error {
  override readonly name = "BinDirError";
}

export interface FindOptions {
  log?: Logger;
  /** pg_config to ask; default "pg_config" from PATH. */
  pgConfig?: string;
  /** Roots holding one directory per version: Debian /usr/lib/postgresql/<v>/bin, PGDG RPM /usr/pgsql-<v>/bin. */
  versionedRoots?: ReadonlyArray<{ root: string; prefix: string; suffix: string }>;
  /** Run the probes as this OS user (postgres.os_user): a root agent never runs a configured program as root. */
  osUser?: string;
}

const DEFAULT_ROOTS = [
  { root: "/usr/lib/postgresql", prefix: "", suffix: "bin" },
  { root: "/usr", prefix: "pgsql-", suffix: "bin" },
];

const silent: Logger = {
  debug() {}, info() {}, warn() {}, error() {}, success() {}, withTag: () => silent,
} as unknown as Logger;

/** Path of a tool inside the bin dir. */
export const pgTool = (bins: PgBins, tool: string): string => join(bins.dir, tool);

export async function findBinDir(configured?: string, opts: FindOptions = {}): Promise<PgBins> {
  const log = opts.log ?? silent;
  if (configured !== undefined && configured !== "") {
    const v = await probeDir(configured, log, opts.osUser);
    if (typeof v === "string") throw new BinDirError(`postgres.bin_dir "${configured}": ${v}`);
    return v;
  }
  const tried: string[] = [];
  const pgConfig = opts.pgConfig ?? "pg_config";
  const fromConfig = await askPgConfig(pgConfig, log, opts.osUser);
  if (typeof fromConfig === "string") tried.push(`${pgConfig} --bindir (${fromConfig})`);
  else {
    const v = await probeDir(fromConfig.dir, log, opts.osUser);
    if (typeof v !== "string") return v;
    tried.push(`${fromConfig.dir} from ${pgConfig} (${v})`);
  }
  for (const r of opts.versionedRoots ?? DEFAULT_ROOTS) {
    const names = await readdir(r.root).catch(() => [] as string[]);
    const versions = names
      .filter((n) => n.startsWith(r.prefix) && /^\d+(\.\d+)?$/.test(n.slice(r.prefix.length)))
      .sort((a, b) => Number(b.slice(r.prefix.length)) - Number(a.slice(r.prefix.length)));
    for (const n of versions) {
      const dir = join(r.root, n, r.suffix);
      const v = await probeDir(dir, log, opts.osUser);
      if (typeof v !== "string") return v;
      tried.push(`${dir} (${v})`);
    }
    if (versions.length === 0) tried.push(`${join(r.root, r.prefix + "<version>", r.suffix)} (none)`);
  }
  throw new BinDirError(`no PostgreSQL binaries found; set postgres.bin_dir. Tried: ${tried.join("; ")}`);
}

/** PgBins for a directory, or a reason string when it is not usable. */
async function probeDir(dir: string, log: Logger, user?: string): Promise<PgBins | string> {
  const postgres = join(dir, "postgres");
  try {
    await access(postgres, constants.X_OK);
  } catch {
    return `no executable ${postgres}`;
  }
  const res = await runTool({ bin: postgres, args: ["--version"], timeoutMs: 10_000, log, quiet: true, ...(user ? { user } : {}) }).catch((e: Error) => e);
  if (res instanceof Error) return res.message;
  const m = /\(PostgreSQL\)\s+(\d+)(?:\.(\d+))?/.exec(res.stdout);
  if (res.code !== 0 || !m) return `"postgres --version" gave no version (exit ${res.code})`;
  const major = Number(m[1]);
  return { dir, version: major >= 10 ? major : Number(`${m[1]}.${m[2] ?? 0}`), versionString: res.stdout.trim() };
}

async function askPgConfig(pgConfig: string, log: Logger, user?: string): Promise<{ dir: string } | string> {
  const res = await runTool({ bin: pgConfig, args: ["--bindir"], timeoutMs: 10_000, log, quiet: true, ...(user ? { user } : {}) }).catch((e: Error) => e);
  if (res instanceof Error) return "not found";
  if (res.code !== 0 || !res.stdout.trim().startsWith("/")) return `exit ${res.code}`;
  return { dir: res.stdout.trim() };
}
