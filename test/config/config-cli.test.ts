// `pgherd config show|set|edit` in-process against a real API server on loopback whose source keeps
// the cluster-wide document in memory and decides changes with the leader's pure code (the mesh
// and the agent are covered by test/e2e/config-cluster.e2e.test.ts).
import { afterAll, beforeEach, expect, test } from "bun:test";
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { ActionRequest } from "../../src/api/actions-contract.ts";
import { startApi } from "../../src/api/server.ts";
import { runCli } from "../../src/cli/run.ts";
import { decideChange } from "../../src/config/dynamic.ts";
import { parseConfig } from "../../src/config/load.ts";
import type { DynamicDoc } from "../../src/config/schema-dynamic.ts";
import { memoryLogger } from "../../src/log.ts";
import { fakeSource } from "../api/fake-source.ts";

const TOKEN = "config-cli-test-0123456789-abcdefghijklmnop";
const config = parseConfig(`cluster = "test"\nsecret = "${"s".repeat(40)}"\n[api]\ntoken = "${TOKEN}"\n[postgres.parameters]\nwork_mem = "8MB"\n`, "test.toml");
const first: DynamicDoc = { version: 4, term: 2, at: "2026-12-01T00:00:00Z", by: "n1", settings: { durability: "quorum", postgres: { parameters: { work_mem: "4MB" } }, access: [], failover: { max_lag_bytes: 1048576 } } };
let doc = first;
const requests: ActionRequest[] = [];
const source = {
  ...fakeSource(),
  dynamicConfig: () => ({ cluster: doc, conflicts: [{ key: "postgres.parameters.work_mem", local: '"8MB"', cluster: JSON.stringify(doc.settings.postgres.parameters.work_mem ?? null) }] }),
  action: async (req: ActionRequest) => {
    requests.push(req);
    if (req.kind !== "config") return { status: 400, ok: false, message: "no" };
    const r = decideChange(doc, { base: req.base, ...(req.replace ? { replace: req.replace } : { set: { ...req.set } }) }, { term: 2, at: "now", by: "n1" });
    if (!r.ok) return { status: r.status, ok: false, message: r.error };
    doc = r.doc;
    return { status: 200, ok: true, message: `cluster configuration version ${doc.version}: ${r.changed.join(", ")}` };
  },
};
const api = startApi({ host: "127.0.0.1", port: 0, source, log: memoryLogger(), config });
const dir = mkdtempSync(join(tmpdir(), "pgherd-config-cli-"));
afterAll(() => {
  void api.stop();
  rmSync(dir, { recursive: true, force: true });
});
beforeEach(() => {
  requests.length = 0;
  doc = first;
});

async function pgherd(argv: string[], env: Record<string, string> = {}) {
  let out = "";
  let err = "";
  const code = await runCli([...argv, "--api", api.url], { env: { PGHERD_CONFIG: join(dir, "none.toml"), PGHERD_TOKEN: TOKEN, ...env }, out: (t) => void (out += t), err: (t) => void (err += t) });
  return { code, out, err };
}

function editor(name: string, sedExpr: string): string {
  const path = join(dir, `${name}.sh`);
  writeFileSync(path, `#!/bin/sh\nexec sed -i '${sedExpr}' "$1"\n`);
  chmodSync(path, 0o755);
  return path;
}

test("show: the cluster's version and values, its conflicts, then the local file (TOML; --json as GET /config)", async () => {
  const r = await pgherd(["config", "show"]);
  expect(r.code).toBe(0);
  expect(r.out).toContain("# cluster-wide configuration: version 4 (made by n1 at 2026-12-01T00:00:00Z, term 2)");
  expect(r.out).toContain('# CONFLICT postgres.parameters.work_mem: pgherd.toml says "8MB", the cluster says "4MB"');
  expect(r.out).toContain('secret = "<redacted>"');
  const j = JSON.parse((await pgherd(["config", "show", "--json"])).out) as { cluster: string; dynamic: { cluster: { version: number } } };
  expect(j).toMatchObject({ cluster: "test", dynamic: { cluster: { version: 4 } } });
});

test("set: several keys in one change based on the version shown; a bad value is refused before any request", async () => {
  const r = await pgherd(["config", "set", "postgres.parameters.work_mem=64MB", "durability=strict"]);
  expect(r).toMatchObject({ code: 0, out: "cluster configuration version 5: durability, postgres.parameters.work_mem\n" });
  expect(requests).toEqual([{ kind: "config", base: 4, set: { "postgres.parameters.work_mem": "64MB", durability: "strict" } }]);
  const bad = await pgherd(["config", "set", "postgres.parameters.port=1"]);
  expect(bad.code).toBe(2);
  expect(bad.err).toContain('postgres.parameters "port" is managed by pgherd');
  expect(requests).toHaveLength(1);
  // The old form still works.
  expect((await pgherd(["config", "set", "durability=async"])).code).toBe(0);
});

test("edit: the diff, then the whole document on top of the version it was based on; an invalid edit sends nothing", async () => {
  const ok = await pgherd(["config", "edit", "--yes"], { EDITOR: editor("ok", 's/^work_mem = .*/work_mem = "32MB"/'), VISUAL: "" });
  expect(ok.code).toBe(0);
  expect(ok.out).toBe('- postgres.parameters.work_mem = "4MB"\n+ postgres.parameters.work_mem = "32MB"\ncluster configuration version 5: postgres.parameters.work_mem\n');
  expect(requests[0]).toMatchObject({ kind: "config", base: 4, replace: { postgres: { parameters: { work_mem: "32MB" } } } });
  const bad = await pgherd(["config", "edit", "--yes"], { EDITOR: editor("bad", 's/^durability = .*/durability = "sometimes"/'), VISUAL: "" });
  expect(bad.code).toBe(2);
  expect(bad.err).toContain("edited configuration: durability must be");
  expect(bad.err).toContain("nothing changed");
  const same = await pgherd(["config", "edit", "--yes"], { EDITOR: "true", VISUAL: "" });
  expect(same).toMatchObject({ code: 0, out: "no change (version 5)\n" });
  expect(requests).toHaveLength(1);
});

test("PATCH /config: a change based on an older version is a 409; an invalid document a 400 naming the key", async () => {
  const r = await runCli(["config", "set", "durability=async", "--api", api.url], { env: { PGHERD_CONFIG: join(dir, "none.toml"), PGHERD_TOKEN: TOKEN }, out: () => {}, err: () => {} });
  expect(r).toBe(0);
  const res = await fetch(`${api.url}/config`, { method: "PATCH", headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" }, body: JSON.stringify({ base: 4, set: { durability: "strict" } }) });
  expect(res.status).toBe(409);
  expect(((await res.json()) as { error?: string; message?: string }).message ?? "").toContain("based on version 4, the cluster is at version 5");
  const invalid = await fetch(`${api.url}/config`, { method: "PATCH", headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" }, body: JSON.stringify({ replace: { durability: "x" } }) });
  expect(invalid.status).toBe(400);
  expect(await invalid.text()).toContain("replace.durability");
});
