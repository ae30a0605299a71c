// A fake PostgreSQL server for the attack of issue 10: it listens where a standby looks for its
// primary and records what a client hands it. "tls": accepts SSLRequest and shows a certificate
// of its own (not the cluster CA's); "plain": refuses SSL and asks for a cleartext password.
// Speaks only the first messages of the protocol (SSLRequest, StartupMessage, PasswordMessage).
import { createServer, type Server, type Socket } from "node:net";
import { TLSSocket } from "node:tls";

export type FakeEvent =
  | { kind: "connect" }
  | { kind: "ssl-request" }
  | { kind: "tls-established" }
  | { kind: "tls-error"; message: string }
  | { kind: "startup"; user: string; tls: boolean }
  | { kind: "password"; password: string; tls: boolean };

export interface FakePg {
  port: number;
  events: FakeEvent[];
  close(): Promise<void>;
}

const SSL_REQUEST = 80877103;
const GSSENC_REQUEST = 80877104;

export async function fakePg(o: { mode: "tls" | "plain"; host?: string; cert?: { cert: string; key: string } }): Promise<FakePg> {
  const events: FakeEvent[] = [];
  const sockets = new Set<Socket>();

  /** Reads length-prefixed messages: first the untyped startup ones, then typed ones. */
  const converse = (s: Socket, tls: boolean, firstBytes: Buffer) => {
    let buf = firstBytes;
    let started = false;
    const onData = (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      for (;;) {
        if (!started) {
          if (buf.length < 8) return;
          const len = buf.readInt32BE(0);
          if (buf.length < len) return;
          const code = buf.readInt32BE(4);
          const body = buf.subarray(8, len);
          buf = buf.subarray(len);
          if (code === SSL_REQUEST || code === GSSENC_REQUEST) {
            if (code === SSL_REQUEST) events.push({ kind: "ssl-request" });
            if (code === SSL_REQUEST && o.mode === "tls" && !tls) {
              s.removeListener("data", onData);
              s.write("S");
              upgrade(s, buf);
              return;
            }
            s.write("N");
            continue;
          }
          const kv = body.toString("utf8").split("\0");
          const user = kv[kv.indexOf("user") + 1] ?? "";
          events.push({ kind: "startup", user, tls });
          started = true;
          // AuthenticationCleartextPassword: what the reproduced attack asked for.
          const r = Buffer.alloc(9);
          r.write("R", 0);
          r.writeInt32BE(8, 1);
          r.writeInt32BE(3, 5);
          s.write(r);
          continue;
        }
        if (buf.length < 5) return;
        const len = buf.readInt32BE(1);
        if (buf.length < len + 1) return;
        const type = String.fromCharCode(buf[0]!);
        const body = buf.subarray(5, len + 1);
        buf = buf.subarray(len + 1);
        if (type === "p") {
          events.push({ kind: "password", password: body.toString("utf8").replace(/\0$/, ""), tls });
          s.end();
          return;
        }
      }
    };
    s.on("data", onData);
    if (firstBytes.length) onData(Buffer.alloc(0));
  };

  const upgrade = (raw: Socket, rest: Buffer) => {
    const t = new TLSSocket(raw, { isServer: true, cert: o.cert?.cert, key: o.cert?.key });
    t.on("secure", () => events.push({ kind: "tls-established" }));
    t.on("error", (e) => events.push({ kind: "tls-error", message: e.message }));
    if (rest.length) t.unshift(rest);
    converse(t, true, Buffer.alloc(0));
  };

  const server: Server = createServer((s) => {
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
    s.on("error", () => {});
    events.push({ kind: "connect" });
    converse(s, false, Buffer.alloc(0));
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, o.host ?? "127.0.0.1", () => resolve());
  });
  const a = server.address();
  return {
    port: typeof a === "object" && a ? a.port : 0,
    events,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}
