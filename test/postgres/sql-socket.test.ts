// The local client's watched unix socket (src/postgres/sql.ts onEnding): an error that ends the
// connection is heard before the close; a socket that cannot connect fails the query at once with
// the connect error, as the client's own socket does (never an error thrown out of the event loop,
// never a query left to its deadline). A fake server stands in for PostgreSQL: no root needed.
import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { memoryLogger } from "../../src/log.ts";
import { DbTimeoutError, isConnectionError, openLocalDb } from "../../src/postgres/sql.ts";

const dir = mkdtempSync(join(tmpdir(), "pgherd-sqlsock-"));
const servers: Server[] = [];
afterAll(() => {
  for (const s of servers) s.close();
  rmSync(dir, { recursive: true, force: true });
});
const log = memoryLogger();

/** An ErrorResponse as a backend sends it when its postmaster died. */
function fatal57P01(): Buffer {
  const fields = Buffer.from("SFATAL\0VFATAL\0C57P01\0Mterminating connection due to unexpected postmaster exit\0\0");
  const head = Buffer.alloc(5);
  head.write("E", 0);
  head.writeInt32BE(fields.length + 4, 1);
  return Buffer.concat([head, fields]);
}

async function failure(socketDir: string): Promise<unknown> {
  let ending = 0;
  const db = openLocalDb({ socketDir, port: 5432, superuser: "postgres", log, queryTimeoutMs: 10_000, onEnding: () => ending++ });
  try {
    await db.query("select", (sql) => sql`SELECT 1`);
    return null;
  } catch (e) {
    return e;
  } finally {
    await db.close();
    expect(ending).toBe(0);
  }
}

test("no socket file: the query fails with the connect error (ENOENT), not at its deadline", async () => {
  const e = await failure(join(dir, "none"));
  expect(e).not.toBeInstanceOf(DbTimeoutError);
  expect((e as { code?: string }).code).toBe("ENOENT");
  expect(isConnectionError(e)).toBe(true);
});

test("a file that takes no connection (a stale socket path): the query fails with the connect error", async () => {
  const d = mkdtempSync(join(dir, "stale-"));
  writeFileSync(join(d, ".s.PGSQL.5432"), "");
  const e = await failure(d);
  expect(e).not.toBeInstanceOf(DbTimeoutError);
  expect(e).not.toBeNull();
  expect(isConnectionError(e)).toBe(true);
});

test("the server's FATAL 57P01 calls onEnding, not after the connection closes", async () => {
  const d = mkdtempSync(join(dir, "srv-"));
  let closeServerSide: (() => void) | null = null;
  const server = createServer((c) => {
    c.once("data", () => {
      c.write(fatal57P01()); // the backend's error, then its exit a moment later
      closeServerSide = () => c.end();
    });
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(join(d, ".s.PGSQL.5432"), r));
  let [endingAt, closedAt] = [0, 0];
  const db = openLocalDb({
    socketDir: d, port: 5432, superuser: "postgres", log, queryTimeoutMs: 10_000,
    onEnding: () => (endingAt ||= performance.now()), onClose: () => (closedAt ||= performance.now()),
  });
  const q = db.query("select", (sql) => sql`SELECT 1`).then(() => null, (e: unknown) => e);
  const deadline = Date.now() + 5000;
  while (endingAt === 0 && Date.now() < deadline) await Bun.sleep(5);
  expect(endingAt).toBeGreaterThan(0);
  // The client may end the connection itself on the error (a FATAL during its start): the error
  // still comes first, heard in the chunk's 'data' event before the client reads it.
  (closeServerSide as (() => void) | null)?.();
  const e = await q;
  expect((e as { code?: string }).code).toBe("57P01");
  while (closedAt === 0 && Date.now() < deadline) await Bun.sleep(5);
  expect(closedAt).toBeGreaterThanOrEqual(endingAt);
  await db.close();
});
