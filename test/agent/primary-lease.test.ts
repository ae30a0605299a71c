// The steps that make this node's PostgreSQL the primary check the lease right before they are
// taken (Fencer.asPrimary's still): a fence, or a lease that ran out, during a task's slow
// preparation (writing the files, the timeline reservation, a stalled event loop) never lets the
// pg_ctl start or pg_promote follow. The fence found no primary to stop then, and the watchdog
// fences once per deadline: before this check the task started a primary after the lease.
// A real Fencer and lease file in a temp dir; the host around PrimaryStarter is a fake.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PrimaryStarter } from "../../src/agent/pg/primary.ts";
import type { PgHost } from "../../src/agent/pg/host.ts";
import { Fencer, NoLease } from "../../src/fence/fencer.ts";
import { LeaseFile } from "../../src/fence/lease-file.ts";
import { createLogger } from "../../src/log.ts";
import { start } from "../../src/postgres/ctl.ts";
import { promote } from "../../src/postgres/promote.ts";
import type { Db } from "../../src/postgres/sql.ts";
import { fakeWatchdog, killFakeWatchdogs } from "../helpers/fake-watchdog.ts";
import { FakeClock } from "./_clock.ts";

let dir: string;
const log = createLogger("error");
let n = 0;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "pgherd-primary-lease-"));
});
afterAll(() => {
  killFakeWatchdogs();
  rmSync(dir, { recursive: true, force: true });
});

/** A PrimaryStarter over a fake host; `slowStep` runs where the files are written (the task's preparation). */
function setup(slowStep: (fencer: Fencer) => Promise<void>) {
  const d = join(dir, `s${n++}`);
  mkdirSync(d);
  fakeWatchdog(d);
  const lease = new LeaseFile(d, "/data", process.getuid!(), log, null);
  const state = { running: false, primary: false, starts: 0, stops: 0 };
  const fencer = new Fencer({
    lease, log, clock: new FakeClock(),
    stopPostgres: async () => {
      state.stops++;
      const was = state.running;
      state.running = false;
      state.primary = false;
      return was;
    },
    primaryMayRun: () => state.primary,
    primaryStarted: () => {
      state.primary = true;
    },
    record: () => {},
  });
  const h = {
    fencer, log,
    ctx: { secrets: () => ({ systemId: "7000000000000000001" }) },
    syncNames: "",
    namesMayHaveChanged: () => {},
    writeConfig: async () => {
      await slowStep(fencer);
      return [];
    },
    // What host.startServer does: the check (mayStart) right before pg_ctl start, then the start.
    startServer: async (_t?: number, mayStart?: () => void) => {
      mayStart?.();
      state.starts++;
      state.running = true;
    },
    record: () => {},
  } as unknown as PgHost;
  const starter = new PrimaryStarter(h);
  starter.sync = { initialSyncNames: () => "", startGrace: () => {}, promoting: () => {}, rolesEnsured: () => {} };
  return { fencer, starter, state };
}

test("a fence during the start's preparation: the server is not started as the primary", async () => {
  const s = setup(async (fencer) => {
    await fencer.fence("lease expired in term 4"); // nothing runs yet: nothing to stop
  });
  s.fencer.arm(4, performance.now() + 5000);
  await expect(s.starter.startPrimary(false, false)).rejects.toBeInstanceOf(NoLease);
  expect(s.state.starts).toBe(0); // the old code started it, and stopped it only once the start returned
  expect(s.state.running).toBe(false);
});

test("a lease that ran out during the start's preparation (no fence yet: a stalled event loop): not started", async () => {
  const s = setup(async (fencer) => {
    while (fencer.holds()) await Bun.sleep(5); // the lease's end passes while the files are written
  });
  s.fencer.arm(5, performance.now() + 30);
  await expect(s.starter.startPrimary(false, false)).rejects.toBeInstanceOf(NoLease);
  expect(s.state.starts).toBe(0);
});

test("with the lease held throughout, the start goes ahead", async () => {
  const s = setup(async () => {});
  s.fencer.arm(6, performance.now() + 5000);
  await s.starter.startPrimary(false, false);
  expect(s.state.starts).toBe(1);
  expect(s.state.running).toBe(true);
});

test("promote: what mayPromote throws ends the promotion before pg_promote is sent", async () => {
  const sent: string[] = [];
  const db = {
    target: "fake",
    close: async () => {},
    query: async (what: string) => {
      sent.push(what);
      return what === "startup process" ? [{ pid: 0 }] : [{ ok: true, r: false }];
    },
  } as unknown as Db;
  const node = { bins: { dir: "/nonexistent", version: 16 }, dataDir: join(dir, "nodata"), osUser: execFileSync("id", ["-un"], { encoding: "utf8" }).trim(), log } as never;
  const refuse = () => {
    throw new NoLease("promote: the lease was lost");
  };
  await expect(promote(db, node, 1, refuse)).rejects.toBeInstanceOf(NoLease);
  expect(sent).not.toContain("pg_promote");
});

test("pg_ctl start: what mayStart throws ends the start before pg_ctl runs", async () => {
  const dataDir = join(dir, "start-data");
  mkdirSync(dataDir, { recursive: true });
  const ran: string[] = [];
  const node = { bins: { dir: join(dir, "no-bins"), version: 16 }, dataDir, osUser: execFileSync("id", ["-un"], { encoding: "utf8" }).trim(), log } as never;
  const refuse = () => {
    ran.push("mayStart");
    throw new NoLease("start as primary: the lease was lost");
  };
  await expect(start(node, { logFile: join(dir, "start.log"), timeoutSec: 1, mayStart: refuse })).rejects.toBeInstanceOf(NoLease);
  expect(ran).toEqual(["mayStart"]);
});
