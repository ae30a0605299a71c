// `pgherd restart` / `pgherd reload` requests: carried to the member named, or run here.
import { expect, test } from "bun:test";
import type { ActionRequest } from "../../src/api/actions-contract.ts";
import { runNodeOp } from "../../src/agent/restart-actions.ts";
import type { ActionHost } from "../../src/agent/actions.ts";

function host(connected: boolean, pg = true) {
  const asked: Array<{ id: string; req: ActionRequest }> = [];
  const local: string[] = [];
  const h = {
    nodeId: "A", nodeName: "n1",
    candidates: () => [{ id: "A", name: "n1" }, { id: "B", name: "n2" }].map((c) => ({ ...c, voter: true, witness: false, neverPromoted: false, report: null })),
    isConnected: () => connected,
    askNode: async (id: string, req: ActionRequest) => {
      asked.push({ id, req });
      return { status: 200, ok: true, message: `ran on ${id}` };
    },
    pg: pg ? { restartServer: async () => (local.push("restart"), { ok: true, message: "n1 restarted" }), reloadServer: async (n: string) => (local.push("reload"), { ok: true, message: n }) } : null,
  } as unknown as ActionHost;
  return { h, asked, local };
}

test("another member's restart goes to that member by id; this node's runs here", async () => {
  const a = host(true);
  expect((await runNodeOp(a.h, { kind: "node-restart", node: "n2" })).message).toBe("ran on B");
  expect(a.asked).toEqual([{ id: "B", req: { kind: "node-restart", node: "B" } }]);
  expect(await runNodeOp(a.h, { kind: "node-restart", node: "n1" })).toEqual({ status: 200, ok: true, message: "n1 restarted" });
  expect(await runNodeOp(a.h, { kind: "node-restart" })).toMatchObject({ ok: true });
  expect(a.local).toEqual(["restart", "restart"]);
});

test("an unknown or unconnected member, or a witness, is refused", async () => {
  expect(await runNodeOp(host(true).h, { kind: "node-reload", node: "n9" })).toMatchObject({ status: 404, ok: false });
  expect(await runNodeOp(host(false).h, { kind: "node-reload", node: "n2" })).toMatchObject({ status: 503, ok: false });
  expect(await runNodeOp(host(true, false).h, { kind: "node-restart" })).toMatchObject({ status: 400, ok: false });
});
