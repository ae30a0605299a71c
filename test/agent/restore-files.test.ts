// The agent's managed files over a data directory restored from a backup whose recovery has not
// ended at its target (store/restore-marker.ts): whoever writes them as a standby's (a promotion the
// rules now hold back, `pgherd reload`), the target stays. Review: a promotion's files dropped it, and
// the start after the fence replayed the whole archive, past the target (a DROP TABLE included).
import { afterAll, beforeAll, expect, test } from "bun:test";
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { memoryLogger } from "../../src/log.ts";
import { isRoot, lookupOsUser, type OsUser } from "../../src/postgres/users.ts";
import { agentHost } from "../helpers/agent-host.ts";
import { PG_OS_USER } from "../helpers/pg.ts";
import { requireReal } from "../helpers/require.ts";

const log = memoryLogger();
let top: string;
let pg: OsUser;

beforeAll(async () => {
  requireReal("restore files", isRoot() ? null : "needs root (the files are the postgres OS user's)");
  pg = await lookupOsUser(PG_OS_USER);
  top = mkdtempSync("/tmp/pgherd-restore-files-");
  chmodSync(top, 0o755);
});

afterAll(() => {
  if (top) rmSync(top, { recursive: true, force: true });
});

test("while a restore is under way in the data directory its recovery target survives a standby's files; once it ended, a standby's files drop it", async () => {
  const data = join(top, "data");
  const host = agentHost(data, { bins: { dir: "/nonexistent", version: 15, versionString: "15" }, log, pg, replPassword: "repl-password-0123456789", existing: true });
  const targets = "recovery_target_time = '2026-01-31 12:00:00+00'\nrecovery_target_action = 'promote'\n";
  const auto = join(data, "postgresql.auto.conf");
  writeFileSync(auto, targets);
  host.restoreMarker.set("to 2026-01-31 12:00:00+00");
  await host.writeConfig(true);
  expect(readFileSync(auto, "utf8")).toBe(targets);
  host.restoreMarker.clear();
  await host.writeConfig(true);
  expect(readFileSync(auto, "utf8")).toBe("");
});
