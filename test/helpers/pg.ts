// Scratch PostgreSQL clusters for tests: a private dir under /tmp owned by postgres, free
// loopback ports, and cleanup that stops every server and removes the dir, also when the test
// process dies (synchronous exit hook: SIGQUIT to the postmaster = immediate shutdown).
import { chownSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { freeTcpPorts } from "../../src/demo/ports.ts";
import type { Logger } from "../../src/log.ts";
import { findBinDir, type PgBins } from "../../src/postgres/binaries.ts";
import { stop, type PgNode } from "../../src/postgres/ctl.ts";
import { isServerOf } from "../../src/postgres/orphans.ts";
import { isRoot, lookupOsUser } from "../../src/postgres/users.ts";
import { onExitCleanup } from "./proc.ts";
import { rootWithPtraceMissing } from "./require.ts";

export const PG_OS_USER = "postgres";

export const pgBins: PgBins | null = await findBinDir().catch(() => null);
const hasUser = await lookupOsUser(PG_OS_USER).then(() => true, () => false);

/** Why PostgreSQL tests cannot run here, or null (tests fail with it: see require.ts). */
export const pgSkipReason: string | null = !isRoot()
  ? "PostgreSQL tests need root (servers run as the postgres OS user)"
  : !pgBins
    ? "no PostgreSQL binaries found (pg_config / /usr/lib/postgresql/*/bin)"
    : !hasUser ? `OS user ${PG_OS_USER} does not exist`
      // The servers' processes are checked through /proc before any signal (src/postgres/orphans.ts).
      : rootWithPtraceMissing();

export interface Scratch {
  root: string;
  /** Short socket dir (unix socket paths are limited to ~107 bytes). */
  socketDir: string;
  node(name: string, log: Logger): PgNode;
  cleanup(): Promise<void>;
}

export async function pgScratch(tag: string): Promise<Scratch> {
  if (!pgBins) throw new Error("no PostgreSQL binaries");
  const bins = pgBins;
  const u = await lookupOsUser(PG_OS_USER);
  const root = mkdtempSync(`/tmp/pgherd-${tag}-`);
  chownSync(root, u.uid, u.gid);
  const socketDir = root;
  const nodes: PgNode[] = [];
  const killAll = () => {
    for (const n of nodes) {
      try {
        // Only the server of this data directory: a file a killed postmaster left names a pid the
        // kernel may have given to another process since (the suite's other worker runs servers).
        const pid = Number(readFileSync(join(n.dataDir, "postmaster.pid"), "utf8").split("\n")[0]);
        if (pid > 1 && isServerOf(pid, n.dataDir, u.uid)) process.kill(pid, "SIGQUIT");
      } catch { /* not running */ }
    }
    rmSync(root, { recursive: true, force: true });
  };
  const unregister = onExitCleanup(killAll);
  return {
    root,
    socketDir,
    node(name, log) {
      const n: PgNode = { bins, dataDir: join(root, name), osUser: PG_OS_USER, log };
      nodes.push(n);
      return n;
    },
    async cleanup() {
      for (const n of nodes) await stop(n, "immediate", 30).catch(() => {});
      unregister();
      killAll();
    },
  };
}

/** A port nobody listens on right now (bind to 0, read it, close). */
/**
 * A TCP port free on 127.0.0.1 now, below the kernel's ephemeral range (src/demo/ports.ts). One
 * from that range, released and bound seconds later, can meanwhile become the source port of any
 * outgoing connection (an agent's mesh dial, a replication connection): the server's start then
 * fails with "port already in use" for as long as that connection lives (CI44's api-cluster test).
 */
export async function freePort(exclude: number[] = []): Promise<number> {
  for (;;) {
    const [port] = await freeTcpPorts(1);
    if (port && !exclude.includes(port)) return port;
  }
}
