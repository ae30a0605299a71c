// The position a switchover target answers with (and votes with): a standby's probe gives its
// receive and replay positions; after a standby restart the receive position starts again at its
// segment's start, behind what it already replayed. (The catch-up's answer is also never below the
// rounds' heldPosition, src/agent/pg/loop.ts catchUp: not exercised here.)
import { expect, test } from "bun:test";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { memoryLogger } from "../../src/log.ts";
import type { PgBins } from "../../src/postgres/binaries.ts";
import { agentHost } from "../helpers/agent-host.ts";

const host = () => agentHost(join(mkdtempSync(join(tmpdir(), "pgherd-standby-pos-")), "data"), {
  bins: { dir: "/nonexistent" } as unknown as PgBins, log: memoryLogger(), pg: { name: "postgres", uid: 0, gid: 0, home: "/" }, replPassword: "x".repeat(24),
});

test("a standby's position is the further of its receive and replay positions", () => {
  const h = host();
  expect(h.standbyPosition({ up: true, inRecovery: true, timeline: 2, receiveLsn: "0/3000000", replayLsn: "0/3A00128" })).toEqual({ timeline: 2, lsn: "0/3A00128" });
  expect(h.standbyPosition({ up: true, inRecovery: true, timeline: 2, receiveLsn: "0/3B00000", replayLsn: "0/3A00128" })).toEqual({ timeline: 2, lsn: "0/3B00000" });
  expect(h.standbyPosition({ up: true, inRecovery: true, timeline: 2, receiveLsn: null, replayLsn: "0/3A00128" })).toEqual({ timeline: 2, lsn: "0/3A00128" });
  expect(h.standbyPosition({ up: false })).toBeNull();
});
