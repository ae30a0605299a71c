// The credential scrubber of GET /config (without the token), debug output and Sentry: each shape
// it recognises, and what it leaves alone.
import { expect, test } from "bun:test";
import { mapStrings, scrubCredentials, scrubStrings } from "../../src/config/redact.ts";

const PW = "S3cr3t-pw_99";

test("each credential shape loses its value; what surrounds it stays", () => {
  const cases: [string, string][] = [
    [`PGPASSWORD=${PW} pg_basebackup -h db2`, "PGPASSWORD=<redacted> pg_basebackup -h db2"],
    [`host=db2 user=repl password='${PW}' sslmode=require`, "host=db2 user=repl password=<redacted> sslmode=require"],
    [`api_key: ${PW}`, "api_key: <redacted>"],
    [`postgres://repl:${PW}@db2:5432/postgres`, "postgres://repl:<redacted>@db2:5432/postgres"],
    [`Authorization: Bearer ${PW}`, "Authorization: Bearer <redacted>"],
    [`Authorization: Basic ${btoa(`u:${PW}`)}`, "Authorization: Basic <redacted>"],
    [`curl -H 'Authorization: basic ${btoa(`u:${PW}`)}' https://x`, "curl -H 'Authorization: basic <redacted>' https://x"],
    [`curl -u admin:${PW} https://vault/x`, "curl -u admin:<redacted> https://vault/x"],
    [`curl -uadmin:${PW} https://vault/x`, "curl -uadmin:<redacted> https://vault/x"],
    [`curl --user admin:${PW} https://vault/x`, "curl --user admin:<redacted> https://vault/x"],
    [`curl --user=admin:${PW} https://vault/x`, "curl --user=admin:<redacted> https://vault/x"],
    [`curl --user 'admin:${PW}' https://vault/x`, "curl --user 'admin:<redacted>' https://vault/x"],
    [`curl --proxy-user admin:${PW} -x p:3128 https://x`, "curl --proxy-user admin:<redacted> -x p:3128 https://x"],
    [`curl -U proxy:${PW} -x p:3128 https://x`, "curl -U proxy:<redacted> -x p:3128 https://x"],
    [`curl -sSfu admin:${PW} https://x`, "curl -sSfu admin:<redacted> https://x"],
    [`curl -u 'admin:pa ss ${PW}' https://x`, "curl -u 'admin:<redacted>' https://x"],
    [`curl -u "admin:pa'ss${PW}" https://x`, `curl -u "admin:<redacted>" https://x`],
  ];
  for (const [input, want] of cases) {
    expect(scrubCredentials(input)).toBe(want);
    expect(scrubCredentials(input)).not.toContain(PW);
  }
});

test("ordinary commands and settings are left as they are", () => {
  for (const s of [
    "pgbackrest --stanza=main archive-push %p",
    "cp %p /mnt/archive/%f",
    "test ! -f /a/%f && cp %p /a/%f",
    "rsync -a --timeout=30 %p backup:/wal/%f",
    "ssh -o ConnectTimeout=5 -p 2222 backup true",
    "sort -u file",
    "host=db2 port=5432 user=repl",
    "Basic auth failed for user repl",
    "date -u +%H:%M:%S",
    "pg_dump -U postgres -h db2 postgres",
  ]) expect(scrubCredentials(s)).toBe(s);
});

test("long input costs linear time (the scrubber runs on the agent's event loop: Sentry events, GET /config)", () => {
  for (const s of ["a".repeat(300_000), "password".repeat(40_000), "x://".repeat(75_000), ` -u${"a".repeat(300_000)}`, "bearer ".repeat(40_000)]) {
    const t0 = performance.now();
    scrubCredentials(s);
    expect(performance.now() - t0).toBeLessThan(2000); // quadratic: tens of seconds at this length
  }
});

test("scrubStrings walks a JSON value, keys kept; mapStrings can hide a key's whole value", () => {
  const v = { archive_command: `curl -u a:${PW} -T %p https://x/%f`, list: [`password=${PW}`, 3], n: null };
  expect(scrubStrings(v)).toEqual({ archive_command: "curl -u a:<redacted> -T %p https://x/%f", list: ["password=<redacted>", 3], n: null });
  expect(mapStrings<unknown>({ auth: { a: 1 }, other: "x" }, (s) => s.toUpperCase(), (k) => k === "auth", "[r]")).toEqual({ auth: "[r]", other: "X" });
});

test("words that only contain pass, key or sig are left alone (re-review: \"resigned: …\", \"primary key: …\" lost their text in the logs and Sentry)", () => {
  for (const s of ["resigned: switchover to n2", "primary key: id", "passed: 3", "signal: 9", "assigned: n1", "keepalives=1 monkey=3"]) expect(scrubCredentials(s)).toBe(s);
  expect(scrubCredentials("--repo1-cipher-pass=Zk3q9 AZURE_STORAGE_KEY=Qm9v sv=2022&sig=U2ln&se=2030")).toBe("--repo1-cipher-pass=<redacted> AZURE_STORAGE_KEY=<redacted> sv=2022&sig=<redacted>&se=2030");
  // Signed URLs and key names with a prefix (re-review: shown after the first change of the patterns).
  for (const [s, out] of [
    ["https://b.s3.amazonaws.com/k?X-Amz-Credential=AK&X-Amz-Signature=abc123&X-Amz-Expires=60", "https://b.s3.amazonaws.com/k?X-Amz-Credential=<redacted>&X-Amz-Signature=<redacted>&X-Amz-Expires=60"],
    ["X-Goog-Signature=f00", "X-Goog-Signature=<redacted>"], ["private_key: MIIB", "private_key: <redacted>"], ["signing_key: s3cr", "signing_key: <redacted>"],
    ["Ocp-Apim-Subscription-Key: 0123", "Ocp-Apim-Subscription-Key: <redacted>"], ["encryptionkey=xyz", "encryptionkey=<redacted>"],
  ]) expect(scrubCredentials(s!)).toBe(out!);
});
