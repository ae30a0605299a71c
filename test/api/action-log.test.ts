// The agent logs every action it is asked for: a config change's values go through the credential
// scrubber first (`pgherd config set postgres.parameters.restore_command='PGPASSWORD=… …'` put the
// password into the agent's log while GET /config and Sentry hid it).
import { expect, test } from "bun:test";
import { createApiAuth, runAction } from "../../src/api/actions.ts";
import type { ApiSource } from "../../src/api/source.ts";
import { memoryLogger } from "../../src/log.ts";
import { RejectLog } from "../../src/net/rejects.ts";

test("a config change is logged with its credentials hidden", async () => {
  const log = memoryLogger();
  const PW = "Sup3r-s3cret-pw";
  const source = { action: async () => ({ status: 200, ok: true, message: `set restore_command = PGPASSWORD=${PW} pgbackrest …` }) } as unknown as ApiSource;
  const req = new Request("http://127.0.0.1:7402/config", {
    method: "PATCH", headers: { authorization: "Bearer tok-0123456789abcdef0123", "content-type": "application/json" },
    body: JSON.stringify({ set: { "postgres.parameters.restore_command": `PGPASSWORD=${PW} pgbackrest --stanza=main archive-get %f "%p"` } }),
  });
  const r = await runAction({ req, kind: "config", auth: createApiAuth("tok-0123456789abcdef0123"), source, log, rejects: new RejectLog(log), remote: "127.0.0.1:5000" });
  expect(r.status).toBe(200);
  const text = log.lines.join("\n");
  expect(text).toContain("action config requested from 127.0.0.1:5000");
  expect(text).toContain(`"postgres.parameters.restore_command":"<redacted>"`); // a command: hidden whole, as GET /config without the token
  expect(text).toContain("PGPASSWORD=<redacted>"); // the answer's message, scrubbed
  expect(text).not.toContain(PW);
});

test("a parameter named as a credential is logged hidden whole (review: its value is the secret itself, which the scrubber does not see)", async () => {
  const log = memoryLogger();
  const JWT = "jwt-signing-key-0123456789abcdef";
  const source = { action: async () => ({ status: 200, ok: true, message: "cluster-wide configuration version 4 stored" }) } as unknown as ApiSource;
  const req = new Request("http://127.0.0.1:7402/config", {
    method: "PATCH", headers: { authorization: "Bearer tok-0123456789abcdef0123", "content-type": "application/json" },
    body: JSON.stringify({ set: { "postgres.parameters.app.jwt_secret": JWT, "postgres.parameters.work_mem": "16MB" } }),
  });
  const r = await runAction({ req, kind: "config", auth: createApiAuth("tok-0123456789abcdef0123"), source, log, rejects: new RejectLog(log), remote: "127.0.0.1:5000" });
  expect(r.status).toBe(200);
  const text = log.lines.join("\n");
  expect(text).not.toContain(JWT);
  expect(text).toContain(`"postgres.parameters.app.jwt_secret":"<redacted>","postgres.parameters.work_mem":"16MB"`);
});
