// <state_dir>/consensus.json (the backend a migration put a node on) and `pgherd consensus migrate`
// end to end through a real API server on loopback: usage checked by the CLI, the body by the API,
// then the request reaches the agent and its answer decides the exit code.
import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { ActionRequest } from "../../src/api/actions-contract.ts";
import { startApi } from "../../src/api/server.ts";
import { runCli } from "../../src/cli/run.ts";
import { parseConfig } from "../../src/config/load.ts";
import { BackendStore, CONSENSUS_FILE, startingBackend } from "../../src/consensus/migrate-state.ts";
import { memoryLogger } from "../../src/log.ts";
import { statusText } from "../../src/ops/status-text.ts";
import { fakeSource, nodeStatus } from "../api/fake-source.ts";

const TOKEN = "migrate-cli-test-0123456789-abcdefghijklmnop";
const dirs: string[] = [];
const tmp = () => {
  const d = mkdtempSync(join(tmpdir(), "pgherd-migrate-"));
  dirs.push(d);
  return d;
};
const config = (dir: string, consensus = "") =>
  parseConfig(`cluster = "c"\nsecret = "${"s".repeat(40)}"\nstate_dir = "${dir}"\n[api]\ntoken = "${TOKEN}"\n${consensus}`, "pgherd.toml");

const requests: ActionRequest[] = [];
const api = startApi({
  host: "127.0.0.1", port: 0, log: memoryLogger(), config: config(tmp()),
  source: {
    ...fakeSource(),
    action: async (req: ActionRequest) => {
      requests.push(req);
      return req.kind === "consensus-migrate" && req.to === "builtin" ? { status: 409, ok: false, message: "consensus migrate --to builtin: the cluster already runs on builtin" } : { status: 200, ok: true, message: "the cluster moved to etcd (epoch 1)" };
    },
  },
});
afterAll(() => {
  void api.stop();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

test("the record is durable, owner-only, never goes back an epoch; a corrupt one is an error naming the file", () => {
  const dir = tmp();
  const s = new BackendStore(dir);
  expect(s.get()).toBeNull();
  s.save({ backend: "etcd", epoch: 1 });
  expect(new BackendStore(dir).get()).toEqual({ backend: "etcd", epoch: 1 });
  expect(statSync(join(dir, CONSENSUS_FILE)).mode & 0o777).toBe(0o600);
  expect(() => s.save({ backend: "builtin", epoch: 0 })).toThrow("refusing to go back from epoch 1 to 0");
  s.save({ backend: "builtin", epoch: 2 });
  expect(JSON.parse(readFileSync(join(dir, CONSENSUS_FILE), "utf8"))).toEqual({ backend: "builtin", epoch: 2 });
  writeFileSync(join(dir, CONSENSUS_FILE), '{"backend":"zookeeper","epoch":3}');
  expect(() => new BackendStore(dir)).toThrow(`${join(dir, CONSENSUS_FILE)}: corrupt state file`);
});

test("the backend a node starts on: the config file's, unless a migration recorded another (checked like the file)", () => {
  const dir = tmp();
  expect(startingBackend(config(dir))).toEqual({ backend: "builtin", epoch: 0 });
  new BackendStore(dir).save({ backend: "etcd", epoch: 1 });
  expect(() => startingBackend(config(dir))).toThrow("records backend etcd (epoch 1), but the config file's [consensus] does not fit it: consensus.endpoints: is empty");
  expect(() => startingBackend(config(dir, '[consensus]\nendpoints = ["http://127.0.0.1:2379"]\nttl_s = 2\npoll_ms = 1000\n'))).toThrow("consensus.ttl_s: 2 is too small");
  expect(startingBackend(config(dir, '[consensus]\nendpoints = ["http://127.0.0.1:2379"]\n'))).toEqual({ backend: "etcd", epoch: 1 });
});

async function pgherd(argv: string[]) {
  let out = "";
  let err = "";
  const code = await runCli([...argv, "--api", api.url], { env: { PGHERD_CONFIG: "/nonexistent/pgherd.toml", PGHERD_TOKEN: TOKEN }, out: (t) => void (out += t), err: (t) => void (err += t) });
  return { code, out, err };
}

test("pgherd consensus migrate: usage checked first, bad or anonymous requests refused by the API, then the agent answers", async () => {
  expect(await pgherd(["consensus", "migrate", "--to", "zk", "--yes"])).toMatchObject({ code: 2 });
  const noYes = await pgherd(["consensus", "migrate", "--to", "etcd"]);
  expect(noYes.code).toBe(2);
  expect(noYes.err).toContain("run again with --yes");
  expect(requests).toEqual([]);
  const r = await pgherd(["consensus", "migrate", "--to", "etcd", "--yes"]);
  expect(r).toMatchObject({ code: 0, out: "the cluster moved to etcd (epoch 1)\n" });
  const j = await pgherd(["consensus", "migrate", "--to", "builtin", "--yes", "--json"]);
  expect(j.code).toBe(1);
  expect(JSON.parse(j.out)).toMatchObject({ status: 409, ok: false });
  const bad = await fetch(`${api.url}/consensus/migrate`, { method: "POST", body: '{"to":"zk"}', headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" } });
  expect(bad.status).toBe(400);
  const anon = await fetch(`${api.url}/consensus/migrate`, { method: "POST", body: '{"to":"etcd"}', headers: { "content-type": "application/json" } });
  expect(anon.status).toBe(401);
  expect(requests).toEqual([{ kind: "consensus-migrate", to: "etcd" }, { kind: "consensus-migrate", to: "builtin" }]);
});

test("/node and pgherd status show the backend in force", () => {
  const base = nodeStatus();
  const s = nodeStatus({ election: { ...base.election, backend: { backend: "etcd", epoch: 1 } } });
  expect(statusText(s)).toContain("election  follower (etcd), term 3");
  expect(statusText(base)).toContain("election  follower, term 3");
});
