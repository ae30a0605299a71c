// The agent's ambient capabilities (docs/vip.md: CAP_NET_ADMIN and CAP_NET_RAW for the virtual IP)
// stop at the agent: a program it starts through runTool (PostgreSQL via pg_ctl, initdb, pgBackRest…)
// or runHook has none. Runs test/security/ambient-caps-child.ts as postgres with exactly those two as
// ambient capabilities; its control child (a plain spawn) proves the setup really held them.
import { expect, test } from "bun:test";
import { join } from "node:path";
import { ROOT } from "../../scripts/build.ts";
import { isRoot, lookupOsUser } from "../../src/postgres/users.ts";
import { PG_OS_USER } from "../helpers/pg.ts";
import { run } from "../helpers/proc.ts";
import { requireReal } from "../helpers/require.ts";

const user = await lookupOsUser(PG_OS_USER).catch(() => null);
requireReal("ambient capabilities of the agent's children", !isRoot() ? "needs root (to become postgres with ambient capabilities)" : !user ? `needs the OS user ${PG_OS_USER}` : null);

const NONE = "0000000000000000";
const NET_ADMIN_RAW = "0000000000003000"; // bits 12 and 13

test("as postgres with ambient CAP_NET_ADMIN and CAP_NET_RAW: runTool's and runHook's children have no capability, a plain spawn's has both", async () => {
  // process.execPath: the bun that runs this test (node_modules/.bin/bun).
  const r = await run([process.execPath, join(ROOT, "test/security/ambient-caps-child.ts")], { user: PG_OS_USER, caps: ["net_admin", "net_raw"], timeoutMs: 30_000 });
  expect(r.stderr).toBe("");
  expect(r.code).toBe(0);
  const seen = JSON.parse(r.stdout.trim().split("\n").at(-1)!) as Record<string, string>;
  expect(seen).toEqual({ self: NET_ADMIN_RAW, control: NET_ADMIN_RAW, tool: NONE, hook: NONE });
});
