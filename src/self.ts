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

export function selfCommand(): PgherdCommand {
  const compiled = Bun.main.startsWith("/$bunfs/") || Bun.main.includes("~BUN");
  if (compiled) return { argv: [process.execPath], display: shortPath(process.execPath) };
  return { argv: [process.execPath, Bun.main], display: `bun ${shortPath(Bun.main)}` };
}

/** `path` relative to the working directory when it is inside it, else absolute. */
export function shortPath(path: string): string {
  const r = relative(process.cwd(), path);
  return r && !r.startsWith("..") && !r.startsWith("/") ? r : path;
}
