// [sentry] against a loopback receiver of the envelope endpoint (real HTTP): a failover entry and a
// logged error arrive as well-formed envelopes, tagged, with no secret, token or password left
// anywhere in the payload; nothing is sent without a DSN; a bad DSN stops the config load.
import { afterAll, expect, test } from "bun:test";
import { parseConfig } from "../../src/config/load.ts";
import { Integrations } from "../../src/integrations/index.ts";
import { createSentry, tapErrors } from "../../src/integrations/sentry.ts";
import { memoryLogger } from "../../src/log.ts";
import { parseEnvelope } from "./envelope.ts";

const KEY = "0123456789abcdef0123456789abcdef";
const SECRET = "cluster-secret-" + "s".repeat(40);
const TOKEN = "api-token-" + "t".repeat(40);
const REPL = "ReplPassw0rdXYZ";
const MONITOR = "MonitorPassw0rdQRS";

interface Received { path: string; auth: string | null; type: string | null; body: string }
const received: Received[] = [];
const server = Bun.serve({
  hostname: "127.0.0.1", port: 0,
  fetch: async (req) => {
    received.push({ path: new URL(req.url).pathname, auth: req.headers.get("x-sentry-auth"), type: req.headers.get("content-type"), body: await req.text() });
    return new Response("{}", { status: 200 });
  },
});
afterAll(() => server.stop(true));

const cfgWith = (sentry: string) => parseConfig(
  `cluster = "main"\nsecret = "${SECRET}"\nnode_name = "n1"\n[api]\ntoken = "${TOKEN}"\n[sentry]\n${sentry}\n`, "pgherd.toml");

test("a failover and an error: well-formed envelopes, tagged, nothing secret in them", async () => {
  const cfg = cfgWith(`dsn = "http://${KEY}@127.0.0.1:${server.port}/42"`);
  const log = memoryLogger();
  const client = createSentry(cfg, log)!;
  expect(client).not.toBeNull();
  const recorded: unknown[] = [];
  const integ = new Integrations(cfg, log, {
    nodeId: "id1", leadership: () => ({ term: 7, leading: true, leaderId: "id1" }), nameOf: () => "n1",
    record: (e) => recorded.push(e), secrets: () => ({ replPassword: REPL, monitorPassword: MONITOR }),
    localView: () => ({ cluster: "main", leader: "id1", leaderName: "n1", term: 7, primary: "id1", members: [] }),
  }, () => {});
  integ.useSentry(client);
  integ.observe({
    port: 5432, data: "present", systemId: "1", running: true, up: true, inRecovery: false, position: { timeline: 3, lsn: "0/3000000" },
    receiveLsn: null, replayLsn: null, upstream: null, streaming: false, replication: [], slots: [], action: "primary", note: "", error: null, haveSecrets: true,
  });
  integ.recorded({
    id: "x", at: new Date().toISOString(), term: 7, kind: "failover", node: "n1", oldPrimary: "n2", newPrimary: "n1", timeline: 3, lsn: "0/3000000",
    reason: `elected leader of term 7 after n2 lost its lease; conninfo host=n2 user=pgherd_repl password=${REPL} (secret ${SECRET})`,
  });
  const tapped = tapErrors(log, client).withTag("pg");
  tapped.error(`promote failed: postgres://pgherd_monitor:${MONITOR}@10.0.0.2:5432/postgres Authorization: Bearer ${TOKEN} token=${TOKEN}`);
  integ.recorded({ id: "y", at: new Date().toISOString(), term: 7, kind: "hook", node: "n1", oldPrimary: null, newPrimary: null, timeline: 3, lsn: null, reason: "hook on_start (-> primary) exit 0 in 3 ms" });
  await client.flush();

  expect(received).toHaveLength(2); // the successful hook run is not an event
  for (const r of received) {
    expect(r.path).toBe("/api/42/envelope/");
    expect(r.type).toBe("application/x-sentry-envelope");
    expect(r.auth).toMatch(new RegExp(`^Sentry sentry_version=7, sentry_key=${KEY}, sentry_client=pgherd/\\d+\\.\\d+\\.\\d+$`));
    for (const s of [SECRET, TOKEN, REPL, MONITOR]) expect(r.body).not.toContain(s);
  }
  const failover = parseEnvelope(received[0]!.body).event;
  expect(failover).toMatchObject({
    level: "warning", platform: "javascript", logger: "pgherd", server_name: "n1", environment: "production",
    tags: { cluster: "main", node: "n1", role: "primary", term: "7", kind: "failover" },
    extra: { oldPrimary: "n2", newPrimary: "n1", timeline: 3, lsn: "0/3000000" },
  });
  expect(failover.message.formatted).toStartWith("failover: elected leader of term 7 after n2 lost its lease");
  expect(failover.message.formatted).toContain("password=[redacted]");
  expect(typeof failover.timestamp).toBe("number");
  const error = parseEnvelope(received[1]!.body).event;
  expect(error).toMatchObject({ level: "error", tags: { kind: "error", role: "primary", term: "7" }, extra: { component: "pg" } });
  expect(error.message.formatted).toBe("promote failed: postgres://pgherd_monitor:[redacted]@10.0.0.2:5432/postgres Authorization: Bearer [redacted] token=[redacted]");
  // The error still reached the log.
  expect(log.lines.some((l) => l.startsWith("error [pg] promote failed"))).toBe(true);
});

test("no DSN: no client, nothing sent", () => {
  expect(createSentry(cfgWith(""), memoryLogger())).toBeNull();
});

test("the DSN is validated at load", () => {
  const bad = (dsn: string) => () => cfgWith(`dsn = "${dsn}"`);
  expect(bad("sentry.example.com/1")).toThrow(/sentry\.dsn.*not a URL/);
  expect(bad(`http://${KEY}@sentry.example.com/1`)).toThrow(/sentry\.dsn.*loopback/);
  expect(bad(`https://${KEY}:oldsecret@sentry.example.com/1`)).toThrow(/sentry\.dsn.*secret key/);
  expect(bad(`https://${KEY}@sentry.example.com/project`)).toThrow(/sentry\.dsn.*project id/);
  expect(bad("https://nothex@sentry.example.com/1")).toThrow(/sentry\.dsn.*public key/);
  expect(() => cfgWith(`dsn = "https://${KEY}@o1.ingest.sentry.io/4"`)).not.toThrow();
});
