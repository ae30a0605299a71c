// The argv that runs this executable again: how `pgherd demo` starts agents, and the
// archive_command pgherd writes (backup/wal-settings.ts). A compiled binary's entry point is
// virtual (/$bunfs/…), so it re-execs process.execPath; under `bun src/main.ts` it needs bun plus
// the entry file.
import { relative } from "node:path";

export interface PgherdCommand {
  /** argv prefix that runs pgherd. */
  argv: string[];
  /** How to show it to the user in printed commands. */
  display: string;
}

/**
 * The executable's path as it was named: Bun reads /proc/self/exe when execPath is first used, and
 * after an upgrade replaced the file (install renames the new one over it) the kernel names the
 * running image "<path> (deleted)" (review: an archive_command written then ran nothing). Read at
 * startup, when this module loads, and the suffix dropped in any case: the path names the
 * installed binary, the new one after an upgrade, which is what a restart would run too.
 */
export function liveExecPath(raw: string): string {
  return raw.replace(/ \(deleted\)$/, "");
}
const EXEC_PATH = liveExecPath(process.execPath);

export function selfCommand(): PgherdCommand {
  const compiled = Bun.main.startsWith("/$bunfs/") || Bun.main.includes("~BUN");
  if (compiled) return { argv: [EXEC_PATH], display: shortPath(EXEC_PATH) };
  return { argv: [EXEC_PATH, Bun.main], display: `bun ${shortPath(Bun.main)}` };
}

/** `path` relative to the working directory when it is inside it, else absolute. */
export function shortPath(path: string): string {
  const r = relative(process.cwd(), path);
  return r && !r.startsWith("..") && !r.startsWith("/") ? r : path;
}
