// A stop of the server must not wait on an archive push to a repository host that does not answer.
// PostgreSQL's shutdown waits for the archiver, and the archiver for the archive_command it runs:
// against a silent repository host pgBackRest's archive-push takes 2 x io-timeout to give up on a
// connection (20 s) and longer on one that went silent mid-transfer, and the archiver's last round
// tries each segment three times. A switchover's stop of the old primary ran out of its 60 s that
// way. So while the agent stops its server (fast) with a repository host that takes no connection,
// it ends the pushes under way (SIGTERM to wal-push and its pgbackrest, found by their working
// directory, the data directory, as PostgreSQL runs them): the archiver exits on a command ended by
// a signal and is not started again during a shutdown. The segments stay ready and are pushed after
// the next start; every standby has them too. wal-push itself gives up at once while the server
// stops and the repository host does not answer (wal-push.ts), for stops not made by the agent.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { osUserProcessesIn, signalEach } from "../postgres/orphans.ts";

/**
 * Processes of an archive push for `dataDir`: `pgherd backup wal-push` and the pgbackrest
 * archive-push it runs, as the server runs them: as `osUid`, the OS user (osUserProcessesIn).
 */
export function archivePushProcesses(dataDir: string, osUid: number): number[] {
  return osUserProcessesIn(dataDir, osUid, (cmdline) => {
    const argv = cmdline.split("\0");
    return (argv.includes("backup") && argv.includes("wal-push")) || argv.includes("archive-push");
  });
}

/** SIGTERM to each; the number signalled. */
export function endArchivePushes(dataDir: string, osUid: number): number {
  return signalEach(archivePushProcesses(dataDir, osUid), "SIGTERM");
}

/** postmaster.pid says the server of `dataDir` shuts down (its status line, "stopping"). */
export function serverStopping(dataDir: string): boolean {
  try {
    return readFileSync(join(dataDir, "postmaster.pid"), "utf8").split("\n")[7]?.trim() === "stopping";
  } catch {
    return false;
  }
}
