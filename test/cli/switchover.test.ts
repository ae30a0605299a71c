// `pgherd switchover --cancel` and the scheduled switchover in `pgherd cluster ls`, run in-process
// against a real API server (loopback) whose source is a fake: the agent is not the point here.
import { afterAll, describe, expect, test } from "bun:test";
import type { ActionResult } from "../../src/api/actions-contract.ts";
import { startApi } from "../../src/api/server.ts";
import { runCli } from "../../src/cli/run.ts";
import { parseConfig } from "../../src/config/load.ts";
import type { ClusterView } from "../../src/core/cluster-view.ts";
import { memoryLogger } from "../../src/log.ts";
import { clusterView, fakeSource } from "../api/fake-source.ts";

const TOKEN = "t0ken-for-the-cli-tests-at-least-32-characters";
const config = parseConfig(`cluster = "test"\nsecret = "${"s".repeat(40)}"\n[api]\ntoken = "${TOKEN}"\n`, "test.toml");
let view: ClusterView = clusterView();
let answer: ActionResult = { status: 200, ok: true, message: "scheduled switchover cancelled" };
const source = fakeSource({ answer: () => answer });
source.clusterView = async () => ({ source: "leader", view });
const api = startApi({ host: "127.0.0.1", port: 0, source, log: memoryLogger(), config });
afterAll(() => api.stop());

async function pgherd(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = "";
  let err = "";
  const code = await runCli(argv, { env: { PGHERD_TOKEN: TOKEN }, out: (t) => void (out += t), err: (t) => void (err += t) });
  return { code, out, err };
}

describe("pgherd switchover --cancel", () => {
  test("sends DELETE /switchover with the token and prints the agent's answer", async () => {
    source.requests.length = 0;
    expect(await pgherd("switchover", "--cancel", "--api", api.url)).toEqual({ code: 0, out: "scheduled switchover cancelled\n", err: "" });
    expect(source.requests).toEqual([{ kind: "switchover-cancel" }]);
  });

  test("exit 1 with the agent's reason when nothing is scheduled", async () => {
    answer = { status: 404, ok: false, message: "no switchover is scheduled" };
    try {
      expect(await pgherd("switchover", "--cancel", "--api", api.url)).toMatchObject({ code: 1, out: "no switchover is scheduled\n" });
    } finally {
      answer = { status: 200, ok: true, message: "scheduled switchover cancelled" };
    }
  });

  test("--cancel with --to or --at is a usage error and sends nothing", async () => {
    source.requests.length = 0;
    const r = await pgherd("switchover", "--cancel", "--to", "n3", "--api", api.url);
    expect(r.code).toBe(2);
    expect(r.err).toContain("--cancel takes no --to");
    expect(source.requests).toEqual([]);
  });

  test("--help says where a scheduled switchover lives", async () => {
    const r = await pgherd("switchover", "--help");
    expect(r.code).toBe(0);
    expect(r.out).toContain("--cancel");
    expect(r.out).toContain("Stored through the leader: survives an agent's restart, runs only on a leader with a valid lease");
    expect(r.out).toContain("dropped unrun when a failover moved the primary first");
  });
});

describe("pgherd cluster ls", () => {
  const scheduled = { at: "2026-12-01T17:00:00.000Z", to: "n3", requestedAt: "2026-12-01T16:00:00.000Z" };

  test("prints the scheduled switchover and how to cancel it", async () => {
    view = clusterView({ scheduledSwitchover: scheduled });
    const r = await pgherd("cluster", "ls", "--api", api.url);
    expect(r.code).toBe(0);
    expect(r.out).toContain("scheduled switchover to n3 at 2026-12-01T17:00:00.000Z (cancel: pgherd switchover --cancel)\n");
    view = clusterView({ scheduledSwitchover: { ...scheduled, to: null } });
    expect((await pgherd("cluster", "ls", "--api", api.url)).out).toContain("scheduled switchover to the most caught-up standby at 2026-12-01T17:00:00.000Z");
  });

  test("--json includes it; without one there is no line", async () => {
    view = clusterView({ scheduledSwitchover: scheduled });
    const j = JSON.parse((await pgherd("cluster", "ls", "--json", "--api", api.url)).out) as { view: ClusterView };
    expect(j.view.scheduledSwitchover).toEqual(scheduled);
    view = clusterView();
    expect((await pgherd("cluster", "ls", "--api", api.url)).out).not.toContain("scheduled switchover");
  });
});
