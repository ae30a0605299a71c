// One PostgreSQL client per server (never multi-host: porsager/postgres#1188), every query under
// our own deadline. On a deadline the client is ended with timeout 0 and rebuilt on next use:
// the client can hang and reconnect in a hot loop when a peer accepts then closes during startup
// (porsager/postgres#1193), so its own timeouts are not trusted.
import { createConnection, type Socket } from "node:net";
import { join } from "node:path";
import postgres from "postgres";
import type { Logger } from "../log.ts";

export type Sql = postgres.Sql;

export interface DbOptions {
  /** Absolute socket directory (unix socket) or host name/IP (TCP). */
  host: string;
  port: number;
  user: string;
  database?: string;
  /** Only for TCP peers; never logged. */
  password?: string;
  applicationName?: string;
  connectTimeoutSec?: number;
  /** Default deadline for query(); default 5000 ms. */
  queryTimeoutMs?: number;
  ssl?: false | "require" | "prefer";
  /** Session settings sent at connection start (GUCs with user context). */
  settings?: Readonly<Record<string, string>>;
  /** A connection of this client closed (the server ended it, or the client was dropped). */
  onClose?: () => void;
  /**
   * Unix socket only: the server sent an error that ends the connection (SQLSTATE 57P0x: a
   * shutdown, the crash of another server process, its postmaster gone, among others). A backend
   * waiting for its client's next query sends it at once and exits a moment later (up to 100 ms
   * after its postmaster's death in the failover bench): the close comes then.
   */
  onEnding?: () => void;
  log: Logger;
}

export class DbTimeoutError extends Error {
  override readonly name = "DbTimeoutError";
}

/** `work`, or a DbTimeoutError ("`what`: no answer within `ms` ms") after `ms`; the loser never becomes an unhandled rejection (Bun exits on those). */
export async function withDeadline<T>(work: Promise<T>, ms: number, what: string): Promise<T> {
  work.catch(() => {});
  let timer: ReturnType<typeof setTimeout> | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new DbTimeoutError(`${what}: no answer within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([work, deadline]);
  } finally {
    clearTimeout(timer);
  }
}

export interface Db {
  /** "user@host:port", for log lines. */
  readonly target: string;
  /** Run `fn` with the client under a deadline; `what` names the operation in errors. */
  query<T>(what: string, fn: (sql: Sql) => Promise<T>, timeoutMs?: number): Promise<T>;
  close(): Promise<void>;
}

export function openDb(o: DbOptions): Db {
  const target = `${o.user}@${o.host}:${o.port}`;
  let client: Sql | null = null;
  let closed = false;
  const make = (): Sql =>
    postgres({
      host: o.host,
      port: o.port,
      user: o.user,
      database: o.database ?? "postgres",
      // A function, so an empty password never falls back to the agent's PGPASSWORD.
      pass: () => o.password ?? "",
      max: 1,
      ssl: o.ssl ?? false,
      connect_timeout: o.connectTimeoutSec ?? 5,
      idle_timeout: 0,
      max_lifetime: null,
      fetch_types: false,
      prepare: true,
      debug: false,
      connection: { application_name: o.applicationName ?? "pgherd", ...(o.settings ?? {}) },
      onnotice: (n) => o.log.debug(`${target}: notice: ${n.message}`),
      ...(o.onClose ? { onclose: o.onClose } : {}),
      ...(o.onEnding && o.host.startsWith("/") ? { socket: () => watchedSocket(join(o.host, `.s.PGSQL.${o.port}`), o.onEnding!) } : {}),
    });
  /** Ends `c` (default: the current connection); a newer connection made meanwhile stays. */
  const drop = async (c: Sql | null = client) => {
    if (client === c) client = null;
    if (c) await c.end({ timeout: 0 }).catch(() => {});
  };
  return {
    target,
    async query<T>(what: string, fn: (sql: Sql) => Promise<T>, timeoutMs?: number): Promise<T> {
      if (closed) throw new Error(`${target}: connection closed`);
      client ??= make();
      const c = client;
      const ms = timeoutMs ?? o.queryTimeoutMs ?? 5000;
      try {
        return await withDeadline(fn(c), ms, `${what} on ${target}`);
      } catch (e) {
        // The connection this query used: a query that outlived its caller (a round ended by a
        // freeze) must not end a connection made after it.
        if (e instanceof DbTimeoutError || isConnectionError(e)) await drop(c);
        throw e;
      }
    },
    async close() {
      closed = true;
      await drop();
    },
  };
}

/** Socket connection to the local server as the superuser (peer auth through the pgherd ident map). */
export function openLocalDb(o: { socketDir: string; port: number; superuser: string; log: Logger; queryTimeoutMs?: number; onClose?: () => void; onEnding?: () => void }): Db {
  // The agent's own writes (roles, grants) are idempotent and re-applied: they must never wait for
  // a synchronous standby (a new primary has none yet, and it would stall the monitoring loop).
  return openDb({ host: o.socketDir, port: o.port, user: o.superuser, log: o.log, queryTimeoutMs: o.queryTimeoutMs, applicationName: "pgherd", settings: { synchronous_commit: "local" }, onClose: o.onClose, onEnding: o.onEnding });
}

/**
 * An ErrorResponse's code field 57P0x (after the severity field's NUL): the server ends the
 * connection (a shutdown, the crash of another server process, its postmaster gone, refused while
 * it starts or stops, its database dropped, an idle session's timeout).
 */
const ENDING = Buffer.from("\0C57P0");

/**
 * The client's unix socket (postgres.js `socket` option), connected, with an eye on what the server
 * sends: a chunk with an error that ends the connection calls `ending`. A false alarm (a column of
 * exactly those bytes) only makes the caller look again. A failed connect rejects, as the client's
 * own socket would fail its query (ENOENT, ECONNREFUSED): postgres.js attaches its error listener
 * only to the socket this resolves with, and a socket that failed before then would throw its error
 * out of the event loop.
 */
function watchedSocket(path: string, ending: () => void): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = createConnection({ path });
    s.once("error", (e) => {
      s.destroy();
      reject(e);
    });
    s.once("connect", () => resolve(s)); // an error listener stays: postgres.js adds its own
    s.on("data", (chunk: Buffer) => {
      if (chunk.indexOf(ENDING) === -1) return;
      try {
        ending();
      } catch {
        // the client must still read this chunk
      }
    });
  });
}

/** Errors that mean the connection, not the statement, failed (no SQLSTATE, or class 08/57P). */
export function isConnectionError(e: unknown): boolean {
  const code = (e as { code?: unknown })?.code;
  if (typeof code !== "string") return true;
  return code.startsWith("08") || code.startsWith("57P") || /^[A-Z_]+$/.test(code);
}

/** SQLSTATE of a server error, if any. */
export function sqlState(e: unknown): string | null {
  const code = (e as { code?: unknown })?.code;
  return typeof code === "string" && /^[0-9A-Z]{5}$/.test(code) ? code : null;
}

/** "name" quoted as a SQL identifier. */
export function quoteIdent(name: string): string {
  if (name.includes("\0")) throw new Error("identifier contains NUL");
  return `"${name.replace(/"/g, '""')}"`;
}

/** A string literal that means the same whatever standard_conforming_strings is (E'' when it has a backslash). */
export function quoteLiteral(v: string): string {
  if (v.includes("\0")) throw new Error("literal contains NUL");
  const q = v.replace(/'/g, "''");
  return v.includes("\\") ? `E'${q.replace(/\\/g, "\\\\")}'` : `'${q}'`;
}
