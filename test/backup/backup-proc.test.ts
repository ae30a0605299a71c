// A `pgbackrest backup` left running by an earlier run of the agent (the unit stops the agent alone,
// and pgBackRest runs detached): the restarted agent reports it as this node's backup and refuses a
// second one, so the leader does not start another backup of the stanza on a host whose pgBackRest
// lock does not see this one (review of 7 December). The "pgbackrest" here is a python3 process
// whose argv[0] is pgbackrest, with a backup's command line.
import { afterAll, expect, test } from "bun:test";
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { ActionHost } from "../../src/agent/actions.ts";
import { BackupDesk } from "../../src/backup/backup-action.ts";
import { findBackup, ourBackup } from "../../src/backup/backup-proc.ts";
import { backrestPaths } from "../../src/backup/pgbackrest.ts";
import { parseConfig } from "../../src/config/load.ts";
import { memoryLogger } from "../../src/log.ts";
import { ConfigReloader } from "../../src/ops/reload.ts";
import { lookupOsUser } from "../../src/postgres/users.ts";
import { PG_OS_USER } from "../helpers/pg.ts";
import { waitFor } from "../helpers/proc.ts";
import { requireReal } from "../helpers/require.ts";

requireReal("the leftover backup test", process.getuid?.() !== 0 ? "needs root (the backups here run as the postgres OS user)" : null);
const pg = await lookupOsUser(PG_OS_USER);

const dir = mkdtempSync(join(tmpdir(), "pgherd-bkproc-"));
const kids: ChildProcess[] = [];
let reloader: ConfigReloader | null = null;
afterAll(() => {
  reloader?.close(); // runningConfig() is process-wide: the files after this one must not see this config
  for (const k of kids) k.kill("SIGKILL");
  rmSync(dir, { recursive: true, force: true });
});

const cfg = parseConfig(`cluster = "c"\nsecret = "${"s".repeat(40)}"\nnode_name = "n1"\nstate_dir = "${dir}/state"\n[postgres]\ndata_dir = "${dir}/pgdata"\nos_user = "${PG_OS_USER}"\n[backup]\ntool = "pgbackrest"\nrepo_path = "${dir}/repo"\n`, "pgherd.toml");
const conf = backrestPaths(cfg).conf;

function fakeBackup(args: string[]): ChildProcess {
  const k = spawn("/usr/bin/python3", ["-c", "import time; time.sleep(60)", ...args], { argv0: "pgbackrest", stdio: "ignore", uid: pg.uid, gid: pg.gid, cwd: "/" });
  kids.push(k);
  return k;
}

test("a pgbackrest backup of this configuration left running is found and reported until it ends; a second backup is refused meanwhile", async () => {
  const other = fakeBackup(["backup", "--config=/elsewhere/pgbackrest.conf", "--type=full"]); // another node's config on this host
  const sub = fakeBackup(["backup:local", `--config=${conf}`]); // one of pgBackRest's own workers
  await waitFor(() => other.pid !== undefined && sub.pid !== undefined, { timeoutMs: 2000, what: "the decoys" });
  expect(findBackup(pg.uid, conf)).toBeNull();
  const left = fakeBackup(["backup", `--config=${conf}`, "--stanza=c", "--type=full"]);
  await waitFor(() => findBackup(pg.uid, conf) !== null, { timeoutMs: 3000, what: "the leftover found" });
  expect(findBackup(pg.uid, conf)).toEqual({ pid: left.pid!, type: "full" });
  expect(ourBackup(left.pid!, 0, conf)).toBeNull(); // another OS user's process is not ours

  reloader = new ConfigReloader(cfg, { log: memoryLogger(), path: join(dir, "pgherd.toml") } as never);
  let changes = 0;
  const h = { nodeName: "n1", myReport: () => ({ up: true, inRecovery: false }), backupChanged: () => void changes++ } as unknown as ActionHost;
  const desk = new BackupDesk(h, memoryLogger());
  await waitFor(() => desk.running() !== null, { timeoutMs: 3000, what: "the leftover reported" }); // before: null, and the leader chose another host
  expect(desk.running()?.type).toBe("full");
  const r = await desk.runHere({ kind: "backup", type: "incr" });
  expect(r.status).toBe(409);
  expect(r.message).toContain(`pgbackrest pid ${left.pid}`);
  left.kill("SIGKILL");
  await waitFor(() => desk.running() === null, { timeoutMs: 3000, what: "the ended leftover no longer reported" });
  expect(changes).toBeGreaterThanOrEqual(2); // found, ended: each sent in the state reports at once
});
