// A one-shot session on the local server's unix socket, in PostgreSQL's wire protocol (version 3,
// simple queries only), for the leader's fresh-connection check every round (liveness-obs.ts).
// The client library costs 2.2–2.6 ms of CPU for that check (a client, a node:net socket, the
// extended protocol: BEGIN, SELECT, COMMIT each a round trip); this costs about 0.5 ms (measured
// against the idle demo's primary), about 0.35 % of a core less on the primary's host at the
// default postgres.loop_ms. Only what the check needs: trust or peer authentication (the local
// rule pgherd writes), statements whose results are not read, and the server's errors with their
// SQLSTATE. Every other use of the server goes through the client library (sql.ts).
import type { Socket } from "bun";

/** Largest message accepted from the server; the check reads nothing bigger than an error text. */
const MAX_MESSAGE = 1 << 20;
const PROTOCOL_3 = 196608;

/** An error the server sent (ErrorResponse): `code` is its SQLSTATE, as the client library's errors. */
export class ServerError extends Error {
  override readonly name = "ServerError";
  constructor(message: string, readonly code: string, readonly severity: string) {
    super(message);
  }
}

/** The session failed without a server error (refused, closed, a protocol problem): no `code`, so no answer. */
export class SessionError extends Error {
  override readonly name = "SessionError";
}

export interface LocalSessionOptions {
  /** Directory of the server's unix socket. */
  socketDir: string;
  port: number;
  user: string;
  database?: string;
  /** Settings sent in the startup message (GUCs with user context). */
  settings?: Readonly<Record<string, string>>;
}

type Pending = { resolve: () => void; reject: (e: Error) => void; error: Error | null };

export class LocalSession {
  private socket: Socket<undefined> | null = null;
  private buf: Buffer = Buffer.alloc(0);
  /** The startup (until the first ReadyForQuery), then each query in turn. */
  private pending: Pending | null = null;
  private failure: Error | null = null;
  private closed = false;

  private constructor() {}

  /**
   * Connects and authenticates; resolves once the server is ready for a query. A server error
   * during the startup (too many connections, starting up, no such role) rejects as ServerError.
   * `signal` ends the session whenever it aborts, before it is ready too (a startup the server never
   * answers must not keep its socket).
   */
  static async open(o: LocalSessionOptions, signal?: AbortSignal): Promise<LocalSession> {
    const startup = startupMessage(o); // before connecting: a bad parameter leaves no socket behind
    if (signal?.aborted) throw new SessionError("session closed");
    const s = new LocalSession();
    const ready = s.expect();
    ready.catch(() => undefined); // awaited below; a failure while connecting must not go unhandled
    signal?.addEventListener("abort", () => s.close(), { once: true });
    try {
      s.socket = await Bun.connect({
        unix: `${o.socketDir}/.s.PGSQL.${o.port}`,
        socket: {
          data: (_sock, chunk) => s.onData(chunk),
          close: () => s.fail(new SessionError("the server closed the connection")),
          error: (_sock, e) => s.fail(new SessionError(`socket error: ${e.message}`)),
        },
      });
    } catch (e) {
      s.closed = true;
      throw new SessionError(`cannot connect to ${o.socketDir}/.s.PGSQL.${o.port}: ${(e as Error).message}`);
    }
    if (s.closed) s.socket.end(); // failed or closed while connecting
    else if (s.socket.write(startup) !== startup.length) s.fail(new SessionError("cannot send the startup message")); // Bun's write is unbuffered
    await ready;
    return s;
  }

  /** Runs `text` (one or more statements); resolves at ReadyForQuery, rejects with the server's first error. */
  query(text: string): Promise<void> {
    if (text.includes("\0")) throw new SessionError("query contains NUL");
    const done = this.expect();
    const body = Buffer.from(`${text}\0`, "utf8");
    const m = Buffer.alloc(5 + body.length);
    m[0] = 0x51; // 'Q'
    m.writeInt32BE(4 + body.length, 1);
    body.copy(m, 5);
    if (this.socket!.write(m) !== m.length) this.fail(new SessionError("cannot send the query")); // unbuffered: a short write never completes
    return done;
  }

  /** Ends the session (Terminate, then close) without waiting for the server; any pending call rejects. */
  close(): void {
    if (this.closed) return;
    try {
      this.socket?.write(Buffer.from([0x58, 0, 0, 0, 4])); // 'X' Terminate
    } catch {
      // already gone
    }
    // fail() ends the socket; Bun runs the close handler inside end(), so the reason is set first.
    this.fail(new SessionError("session closed"));
  }

  private expect(): Promise<void> {
    if (this.failure) return Promise.reject(this.failure);
    if (this.pending) return Promise.reject(new SessionError("a query is still running"));
    return new Promise<void>((resolve, reject) => {
      this.pending = { resolve, reject, error: null };
    });
  }

  private fail(e: Error): void {
    this.failure ??= e;
    const p = this.pending;
    this.pending = null;
    p?.reject(p.error ?? this.failure);
    if (!this.closed) {
      this.closed = true;
      this.socket?.end();
    }
  }

  private onData(chunk: Buffer): void {
    if (this.closed) return; // what arrives after the end is nobody's answer
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    while (this.buf.length >= 5) {
      const len = this.buf.readInt32BE(1);
      if (len < 4 || len > MAX_MESSAGE) return this.fail(new SessionError(`bad message length ${len} from the server`));
      if (this.buf.length < 1 + len) return;
      const type = this.buf[0]!;
      const body = this.buf.subarray(5, 1 + len);
      this.buf = this.buf.subarray(1 + len);
      this.onMessage(type, body);
      if (this.failure) return;
    }
  }

  private onMessage(type: number, body: Buffer): void {
    switch (type) {
      case 0x52: { // 'R' authentication request
        const kind = body.length >= 4 ? body.readInt32BE(0) : -1;
        if (kind !== 0) this.fail(new SessionError(`the server asks for authentication (method ${kind}); the local socket needs trust or peer`));
        return;
      }
      case 0x45: { // 'E' ErrorResponse: a FATAL one during the startup ends the session, the server closes it
        const e = parseError(body);
        if (this.pending) this.pending.error ??= e;
        // FATAL or PANIC ends the session: the answer counts now, not when (if) the close arrives.
        if (!this.pending || (e instanceof ServerError && (e.severity === "FATAL" || e.severity === "PANIC"))) this.fail(e);
        return;
      }
      case 0x5a: { // 'Z' ReadyForQuery
        const p = this.pending;
        this.pending = null;
        if (!p) return this.fail(new SessionError("unexpected ReadyForQuery"));
        if (p.error) p.reject(p.error);
        else p.resolve();
        return;
      }
      default: // ParameterStatus, BackendKeyData, notices, rows, CommandComplete: not needed here
        return;
    }
  }
}

function startupMessage(o: LocalSessionOptions): Buffer {
  const pairs: [string, string][] = [["user", o.user], ["database", o.database ?? "postgres"], ...Object.entries(o.settings ?? {})];
  for (const [k, v] of pairs) if (k.includes("\0") || v.includes("\0")) throw new SessionError(`startup parameter ${k} contains NUL`);
  const body = Buffer.from(`${pairs.map(([k, v]) => `${k}\0${v}\0`).join("")}\0`, "utf8");
  const m = Buffer.alloc(8 + body.length);
  m.writeInt32BE(m.length, 0);
  m.writeInt32BE(PROTOCOL_3, 4);
  body.copy(m, 8);
  return m;
}

/** ErrorResponse fields: S (severity), C (SQLSTATE), M (message), each a NUL-terminated string. */
function parseError(body: Buffer): ServerError | SessionError {
  const f: Record<string, string> = {};
  let i = 0;
  while (i < body.length && body[i] !== 0) {
    const key = String.fromCharCode(body[i]!);
    const end = body.indexOf(0, i + 1);
    if (end < 0) break;
    f[key] = body.toString("utf8", i + 1, end);
    i = end + 1;
  }
  const message = (f.M ?? "error without a message").slice(0, 1000);
  // PostgreSQL always sends a SQLSTATE; without one it is no answer to classify (never a made-up class).
  if (!/^[0-9A-Z]{5}$/.test(f.C ?? "")) return new SessionError(`server error without a SQLSTATE: ${message}`);
  return new ServerError(message, f.C!, f.V ?? f.S ?? "ERROR");
}
