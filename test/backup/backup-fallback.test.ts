// A standby's backup that pgBackRest took but whose WAL was not archived within pgherd's wait is in
// the repository: the leader does not take a second one on the primary (found by review: it did, a
// second full backup read from the primary, waiting for the same archiving, and before expire waited
// for the WAL check each of the two expired an older, restorable backup). A standby's backup that
// failed otherwise is still taken on the primary.
import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { ActionHost } from "../../src/agent/actions.ts";
import type { ActionRequest, ActionResult } from "../../src/api/actions-contract.ts";
import { BACKUP_WAL_PENDING, BackupDesk } from "../../src/backup/backup-action.ts";
import { parseConfig } from "../../src/config/load.ts";
import type { Candidate } from "../../src/core/switchover.ts";
import type { PgReport } from "../../src/core/report.ts";
import { memoryLogger } from "../../src/log.ts";
import { ConfigReloader } from "../../src/ops/reload.ts";
import { PG_OS_USER } from "../helpers/pg.ts";

const dir = mkdtempSync(join(tmpdir(), "pgherd-bkfallback-"));
let reloader: ConfigReloader | null = null;
afterAll(() => {
  reloader?.close(); // runningConfig() is process-wide
  rmSync(dir, { recursive: true, force: true });
});

const cfg = parseConfig(`cluster = "c"\nsecret = "${"s".repeat(40)}"\nnode_name = "n1"\nstate_dir = "${dir}/state"\n[postgres]\ndata_dir = "${dir}/pgdata"\nos_user = "${PG_OS_USER}"\n` +
  `[backup]\ntool = "pgbackrest"\nrepo_path = "${dir}/repo"\nfrom_standby = true\n`, "pgherd.toml");

const report = (over: Partial<PgReport>): PgReport => ({
  port: 5432, data: "present", systemId: "1", running: true, up: true, inRecovery: true,
  position: { timeline: 1, lsn: "0/3000000" }, receiveLsn: "0/3000000", replayLsn: "0/3000000", upstream: "10.0.0.1:5432",
  streaming: true, replication: [], slots: [], action: "standby", note: "", error: null, haveSecrets: true, ...over,
} as PgReport);

function host(standbyAnswer: ActionResult) {
  const asked: ActionRequest[] = [];
  const history: string[] = [];
  let primaryRuns = 0;
  const primary = report({ inRecovery: false, upstream: null, streaming: false });
  const h = {
    nodeId: "L", nodeName: "n1", maxLagBytes: 1 << 20,
    myReport: () => primary,
    candidates: (): Candidate[] => [{ id: "S", name: "n2", voter: true, witness: false, neverPromoted: false, report: report({}) }],
    askNode: async (_id: string, req: ActionRequest) => {
      asked.push(req);
      return standbyAnswer;
    },
    electionState: () => ({ term: 3 }),
    record: (e: { reason: string }) => void history.push(e.reason),
    backupChanged: () => void primaryRuns++, // runHere on this node: the backup's start and end
  } as unknown as ActionHost;
  return { h, asked, history, primaryRuns: () => primaryRuns };
}

test("the standby's backup was taken and only its WAL is not archived yet: not taken again on the primary", async () => {
  reloader = new ConfigReloader(cfg, { log: memoryLogger(), path: join(dir, "pgherd.toml") } as never);
  const pending: ActionResult = { status: BACKUP_WAL_PENDING, ok: false, message: "n2: backup 20261207-010000F: WAL segment 000000010000000000000009 was not archived within 120000 ms" };
  const f = host(pending);
  const log = memoryLogger();
  const r = await new BackupDesk(f.h, log).lead({ kind: "backup", type: "full" });
  expect(f.asked).toHaveLength(1);
  expect(r.status).toBe(BACKUP_WAL_PENDING);
  expect(f.primaryRuns()).toBe(0); // before: the primary took a second full backup
  expect(log.lines.join("\n")).not.toContain("taking it on the primary");
  expect(f.history).toEqual([`full backup failed on standby n2: ${pending.message}`]);

  // A backup that failed on the standby (pgbackrest exited non-zero) is still taken on the primary.
  const g = host({ status: 500, ok: false, message: "n2: pgbackrest backup exited 56: ..." });
  const log2 = memoryLogger();
  await new BackupDesk(g.h, log2).lead({ kind: "backup", type: "full" });
  expect(log2.lines.join("\n")).toContain("taking it on the primary");
  expect(g.primaryRuns()).toBeGreaterThan(0);
}, 30_000);
