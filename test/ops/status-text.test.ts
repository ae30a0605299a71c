import { expect, test } from "bun:test";
import { statusText } from "../../src/ops/status-text.ts";
import { nodeStatus, standbyPg } from "../api/fake-source.ts";

test("a standby: role, state, timeline, LSN, upstream, lag, pending restart", () => {
  const t = statusText(nodeStatus({ postgres: standbyPg({ lagBytes: 4096, syncState: "quorum", pendingRestart: ["max_connections", "shared_buffers"] }) }));
  expect(t).toContain("postgres  replica, running, timeline 1, LSN 0/3000148 (port 5432)\n");
  expect(t).toContain("          streaming from n1, replayed 0/3000148, lag 4096 bytes, quorum\n");
  expect(t).toContain("restart   pending for max_connections, shared_buffers\n");
});

test("a primary lists its standbys; no pending restart says so", () => {
  const pg = standbyPg({ inRecovery: false, upstream: null, position: { timeline: 3, lsn: "0/5000000" }, lagBytes: null,
    replication: [{ name: "pgherd_2", clientAddr: "10.0.0.2", state: "streaming", syncState: "quorum", lagBytes: 0, replayLagSeconds: 0 }] });
  const t = statusText(nodeStatus({ postgres: pg }));
  expect(t).toContain("postgres  primary, running, timeline 3, LSN 0/5000000");
  expect(t).toContain("standbys  pgherd_2 streaming/quorum lag 0\n");
  expect(t).toContain("restart   not pending\n");
});

test("a stopped server and a witness", () => {
  expect(statusText(nodeStatus({ postgres: standbyPg({ up: false, running: false, inRecovery: null }) }))).toContain("postgres  unknown, stopped, timeline 1");
  expect(statusText(nodeStatus({ postgres: null, node: { id: "0000000000000009", name: "w", role: "witness", mesh: "x:1" } }))).toContain("postgres  none (witness)\n");
});

test("with [backup] tool set: the archiver, FAILING once said, with what waits and the last files", () => {
  const archive = { at: "2025-03-01T10:02:00.000Z", archived: 40, failed: 12, lastArchivedWal: "000000010000000000000028", lastArchivedAt: "2025-03-01T09:59:50.000Z",
    lastFailedWal: "000000010000000000000029", lastFailedAt: "2025-03-01T10:01:58.000Z", ready: 3, failingSince: "2025-03-01T10:00:00.000Z" };
  expect(statusText(nodeStatus({ postgres: standbyPg({ archive }) }))).toContain(
    "archive   FAILING since 2025-03-01T10:00:00.000Z, 3 file(s) waiting, last archived 000000010000000000000028 at 2025-03-01T09:59:50.000Z, last failed 000000010000000000000029 at 2025-03-01T10:01:58.000Z\n");
  const works = { ...archive, failed: 0, lastFailedWal: null, lastFailedAt: null, ready: 0, failingSince: null };
  expect(statusText(nodeStatus({ postgres: standbyPg({ archive: works }) }))).toContain("archive   0 file(s) waiting, last archived 000000010000000000000028 at 2025-03-01T09:59:50.000Z\n");
  // Without [backup] tool, or with the server down: no line.
  expect(statusText(nodeStatus())).not.toContain("archive ");
  expect(statusText(nodeStatus({ postgres: standbyPg({ archive, up: false, running: false }) }))).not.toContain("archive ");
});
