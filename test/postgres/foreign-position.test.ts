// A node whose data directory holds another cluster (a system identifier other than the one the
// cluster recorded) votes with no position, on a real data directory: its monitoring round
// publishes ZERO and forgets what it saw the directory hold, and nothing in the directory is
// touched. Review: it voted with the other cluster's position (here pg_control's checkpoint), so a
// voter holding another cluster refused every candidate behind it, won the election itself, and
// refused to run a primary on that data: the cluster had none, for good.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { ClusterContext } from "../../src/agent/pg/context.ts";
import { PgHost } from "../../src/agent/pg/host.ts";
import { MonitorRound, type RoundParts } from "../../src/agent/pg/round.ts";
import { parseConfig } from "../../src/config/load.ts";
import { ZERO_POSITION, type Position } from "../../src/core/position.ts";
import type { Fencer } from "../../src/fence/fencer.ts";
import { memoryLogger } from "../../src/log.ts";
import { initdb, type PgNode } from "../../src/postgres/ctl.ts";
import { inspectDataDir } from "../../src/postgres/datadir.ts";
import { PG_OS_USER, pgBins, pgScratch, pgSkipReason, type Scratch } from "../helpers/pg.ts";
import { requireReal } from "../helpers/require.ts";

requireReal("foreign-position tests", pgSkipReason);

const log = memoryLogger();
let s: Scratch;
let node: PgNode;

beforeAll(async () => {
  s = await pgScratch("foreignpos");
  node = s.node("other", log.withTag("other"));
  await initdb(node, { superuser: "postgres", noSync: true });
});

afterAll(async () => {
  if (process.env.PG_TEST_DUMP) console.log(log.lines.join("\n"));
  await s?.cleanup();
});

test("a stopped server of another cluster: the round publishes no position and touches nothing", async () => {
  const own = (await inspectDataDir(node.dataDir, node)).control!;
  expect(own.checkpointLsn).not.toBe("0/0");
  const clusterId = own.systemIdentifier === "1" ? "2" : "1";
  const cfg = parseConfig(`cluster = "c"\nsecret = "${"s".repeat(40)}"\nnode_name = "b"\nstate_dir = "${node.dataDir}.state"\n[postgres]\ndata_dir = "${node.dataDir}"\nos_user = "${PG_OS_USER}"\nsocket_dir = "${s.socketDir}"\n`, "test");
  const published: { data: string; position: Position }[] = [];
  const ctx = {
    nodeId: "b", secrets: () => ({ systemId: clusterId, replPassword: "r".repeat(20), monitorPassword: "m".repeat(20) }),
    leaderPg: () => null, candidates: () => [], nobodyHasData: () => false, othersHaveData: () => true,
    paused: () => false, guardState: () => ({ guard: null, committed: 0 }), record: () => {},
    leadership: () => ({ term: 3, leading: false, acquiringLease: false, leaderId: null, member: true }),
    publish: (r: { data: string }, p: Position) => published.push({ data: r.data, position: p }),
  } as unknown as ClusterContext;
  const host = new PgHost(cfg, pgBins!, ctx, log.withTag("agent"));
  host.fencer = { settle: () => {} } as unknown as Fencer;
  // What an earlier round saw while the cluster's identity was not known here yet (no secrets): the other cluster's checkpoint.
  host.heldPosition = { timeline: own.timeline, lsn: own.checkpointLsn };
  const parts = {
    maintenance: { guarantee: "", pending: [], ordered: [] }, slots: { slots: [], slotBytes: {}, permanentReport: [], archiver: { report: undefined } }, primary: {}, rebuild: {},
    rejoin: () => ({ request: null, progress: null }), observed: () => {}, failed: () => {}, promotionRequested: () => false, followingHeld: () => false, again: () => {},
  } as unknown as RoundParts;
  const confBefore = readFileSync(join(node.dataDir, "postgresql.conf"), "utf8");
  await new MonitorRound(host, parts).run();
  expect(published.at(-1)).toEqual({ data: "foreign", position: ZERO_POSITION });
  expect(host.heldPosition).toBeNull();
  expect(host.foreignData).toBe(true);
  expect(log.lines.some((l) => l.includes("refusing: the data directory holds another cluster"))).toBe(true);
  expect(readFileSync(join(node.dataDir, "postgresql.conf"), "utf8")).toBe(confBefore);
}, 60_000);
