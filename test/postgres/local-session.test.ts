// The one-shot local session (src/postgres/local-session.ts) against servers that misbehave: what
// arrives on the socket is never trusted, and a wrong answer ends the session with an error that
// names it, never the process. The real server's answers are checked in cluster.test.ts.
import { afterEach, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freshCheck } from "../../src/postgres/liveness-obs.ts";
import { LocalSession } from "../../src/postgres/local-session.ts";

const PORT = 5999;
let dir = "";
let server: { stop(closeActive?: boolean): void } | null = null;
/** The fake server's connections: opened, and closed (by either side). */
const conns = { opened: 0, closed: 0 };

/** A unix server at dir/.s.PGSQL.5999 answering each client's bytes with `reply` ("close": it hangs up). */
function fakeServer(reply: (first: Buffer) => Buffer | "close" | null): void {
  dir = mkdtempSync(join(tmpdir(), "pgherd-session-"));
  conns.opened = conns.closed = 0;
  server = Bun.listen({
    unix: join(dir, `.s.PGSQL.${PORT}`),
    socket: {
      open() {
        conns.opened++;
      },
      close() {
        conns.closed++;
      },
      data(sock, chunk) {
        const r = reply(Buffer.from(chunk));
        if (r === "close") sock.end();
        else if (r) sock.write(r);
      },
    },
  });
}

afterEach(() => {
  server?.stop(true);
  server = null;
  if (dir) rmSync(dir, { recursive: true, force: true });
  dir = "";
});

const msg = (type: string, body: Buffer) => {
  const m = Buffer.alloc(5 + body.length);
  m.write(type, 0, "latin1");
  m.writeInt32BE(4 + body.length, 1);
  body.copy(m, 5);
  return m;
};
const int32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeInt32BE(n);
  return b;
};
const open = () => LocalSession.open({ socketDir: dir, port: PORT, user: "postgres" });

test("a server asking for a password is refused with the method named", async () => {
  fakeServer(() => msg("R", int32(10))); // SASL
  await expect(open()).rejects.toThrow("the server asks for authentication (method 10); the local socket needs trust or peer");
});

test("a message length out of bounds ends the session with an error", async () => {
  fakeServer(() => Buffer.from([0x52, 0x7f, 0xff, 0xff, 0xff]));
  await expect(open()).rejects.toMatchObject({ name: "SessionError", message: "bad message length 2147483647 from the server" });
  fakeServerReset();
  fakeServer(() => Buffer.from([0x52, 0, 0, 0, 2]));
  await expect(open()).rejects.toMatchObject({ name: "SessionError", message: "bad message length 2 from the server" });
});

test("a server that hangs up during the startup, or sends an error without a SQLSTATE, gave no answer", async () => {
  // The client library hangs and reconnects in a loop on this one (porsager/postgres#1193).
  fakeServer(() => "close");
  await expect(open()).rejects.toMatchObject({ name: "SessionError", message: "the server closed the connection" });
  fakeServerReset();
  let n = 0;
  fakeServer(() => (n++ === 0 ? Buffer.concat([msg("R", int32(0)), msg("Z", Buffer.from("I"))]) : Buffer.concat([msg("E", Buffer.from("SERROR\0Mno code\0\0")), msg("Z", Buffer.from("I"))])));
  const s = await open();
  const q = s.query("SELECT 1");
  await expect(q).rejects.toMatchObject({ name: "SessionError" });
  expect((await q.catch((e) => e)).code).toBeUndefined();
  s.close();
});

test("the startup's parameters and a query reach the server as the protocol says; ReadyForQuery ends each", async () => {
  const seen: Buffer[] = [];
  fakeServer((b) => {
    seen.push(b);
    return seen.length === 1 ? Buffer.concat([msg("R", int32(0)), msg("S", Buffer.from("a\0b\0")), msg("K", Buffer.alloc(8)), msg("Z", Buffer.from("I"))]) : Buffer.concat([msg("C", Buffer.from("SELECT 1\0")), msg("Z", Buffer.from("I"))]);
  });
  const s = await LocalSession.open({ socketDir: dir, port: PORT, user: "postgres", settings: { synchronous_commit: "local" } });
  await s.query("SELECT 1");
  s.close();
  const startup = seen[0]!;
  expect(startup.readInt32BE(0)).toBe(startup.length);
  expect(startup.readInt32BE(4)).toBe(196608);
  expect(startup.subarray(8).toString()).toBe("user\0postgres\0database\0postgres\0synchronous_commit\0local\0\0");
  expect(seen[1]!.toString("latin1")).toBe(`Q\0\0\0\rSELECT 1\0`);
  expect(() => s.query("SELECT 1\0")).toThrow("query contains NUL");
});

function fakeServerReset(): void {
  server?.stop(true);
  server = null;
  rmSync(dir, { recursive: true, force: true });
}

test("a startup the server never answers is ended at the deadline, not left open", async () => {
  // Counted on the server's side: the process's descriptor count also moved with sockets of the
  // tests before this one closing meanwhile (CI201: 16 before, 13 after).
  fakeServer(() => null);
  for (let i = 0; i < 5; i++) expect((await freshCheck({ socketDir: dir, port: PORT, superuser: "postgres" }, true, 20)).fresh.kind).toBe("timeout");
  const end = performance.now() + 2000;
  while (conns.closed < 5 && performance.now() < end) await Bun.sleep(5);
  expect(conns).toEqual({ opened: 5, closed: 5 }); // every session the client opened, it closed at its deadline
});

test("a FATAL error is the server's answer at once, before it closes", async () => {
  fakeServer(() => msg("E", Buffer.from("SFATAL\0VFATAL\0C53300\0Msorry, too many clients already\0\0"))); // and no close
  const fc = await freshCheck({ socketDir: dir, port: PORT, superuser: "postgres" }, true, 500);
  expect(fc.fresh).toMatchObject({ kind: "error", sqlstate: "53300" });
});
