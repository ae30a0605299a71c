// A small etcd v3 client over etcd's gRPC JSON gateway (POST /v3/kv/range, /v3/kv/txn,
// /v3/lease/grant|keepalive|revoke, /v3/auth/authenticate) with fetch: no dependency, no gRPC
// stack. Keys and values travel base64-encoded, 64-bit integers as decimal strings; every answer
// is parsed with zod before use. Every request runs under its own deadline. A request that was not
// delivered (no connection) or that a member refused before raft (a learner, no leader, too many
// requests: transport-core.ts) moves on to the next endpoint; one that was sent and got no answer
// saying whether it applied (a timeout, a 5xx, a page that is not etcd's JSON, JSON that is not an
// etcd answer: no header with the store's revision, even with HTTP 200) does too when it is
// safe to repeat (a read, a lease renewal), while a write (a transaction that puts or deletes, a
// lease grant or revoke) is never sent twice: it fails with OutcomeUnknown, and the caller decides
// from what a read shows. Either way the next request starts at the next endpoint.
import { z } from "zod";
import { type AttemptFailure, classifyAnswer, tryNext } from "./transport-core.ts";

/** A read answered "leader changed" is asked this many times in all (50, 100 ms apart). */
const RANGE_ATTEMPTS = 3;

const int64 = z.union([z.string().regex(/^-?\d{1,20}$/), z.number().int()]).transform((v) => String(v));
const revision = int64.transform((v) => Number(v)).pipe(z.number().int().min(0).max(Number.MAX_SAFE_INTEGER));
/** Every answer of etcd's gateway carries the header with the store's revision: one without is not etcd's. */
const Header = z.object({ revision }).loose();
const KvWire = z.object({
  key: z.string(),
  value: z.string().optional(),
  create_revision: revision.optional(),
  mod_revision: revision.optional(),
  version: revision.optional(),
  lease: int64.optional(),
}).loose();
const RangeWire = z.object({ header: Header, kvs: z.array(KvWire).optional(), more: z.boolean().optional() }).loose();
/** A range inside a transaction's answer: etcd gives it a header with the revision only. */
const InnerRangeWire = z.object({ kvs: z.array(KvWire).optional() }).loose();
const TxnWire = z.object({
  header: Header,
  succeeded: z.boolean().optional(),
  responses: z.array(z.object({ response_range: InnerRangeWire.optional() }).loose()).optional(),
}).loose();
const GrantWire = z.object({ header: Header, ID: int64, TTL: int64.optional(), error: z.string().optional() }).loose();
const KeepAliveWire = z.object({ result: z.object({ header: Header, ID: int64.optional(), TTL: int64.optional() }).loose() }).loose();
const RevokeWire = z.object({ header: Header }).loose();
const AuthWire = z.object({ token: z.string().min(1).max(4096) }).loose();
const ErrorWire = z.object({ error: z.string().optional(), message: z.string().optional(), code: z.number().optional() }).loose();
/** A streamed answer's error (keepalive): {error: {grpc_code, http_code, message}}. */
const StreamErrorWire = z.object({ error: z.object({ message: z.string().optional(), http_code: z.number().optional(), grpc_code: z.number().optional() }).loose() }).loose();

export interface KeyValue {
  key: string;
  value: string;
  createRevision: number;
  modRevision: number;
  /** The lease the key is bound to ("0": none). */
  lease: string;
}

export type Compare =
  | { key: string; target: "CREATE"; createRevision: number }
  | { key: string; target: "MOD"; modRevision: number }
  | { key: string; target: "VALUE"; value: string };

export type Op =
  | { put: { key: string; value: string; lease?: string } }
  | { del: { key: string; prefix?: boolean } }
  | { range: { key: string; prefix?: boolean } };

export interface TxnResult {
  succeeded: boolean;
  revision: number;
  /** The answers of range operations, in order (others are left out). */
  ranges: KeyValue[][];
}

export class EtcdError extends Error {
  override readonly name: string = "EtcdError";
  constructor(message: string, readonly code?: number) {
    super(message);
  }
}

/**
 * A write was sent and its answer never came (a timeout, a dropped connection): etcd may have
 * applied it, or may still. It is not sent again; the caller reads what is there and decides from
 * that, never taking it as "not applied" (nor as applied) by itself.
 */
export class OutcomeUnknown extends EtcdError {
  override readonly name: string = "OutcomeUnknown";
  constructor(message: string) {
    super(`${message} (sent without an answer: it may have applied)`);
  }
}

/** One attempt at one endpoint failed: what that means for the request (transport-core.ts). */
class AttemptError extends Error {
  constructor(message: string, readonly failure: AttemptFailure, readonly code?: number) {
    super(message);
  }
}

/** Connection errors by which nothing of the request was sent. */
const NOT_CONNECTED = new Set(["ECONNREFUSED", "ENOTFOUND", "EHOSTUNREACH", "ENETUNREACH", "EAI_AGAIN"]);

export interface EtcdClientOptions {
  endpoints: readonly string[];
  requestTimeoutMs: number;
  /** PEM contents (read by the caller from the configured files). */
  tls?: { ca?: string; cert?: string; key?: string };
  auth?: { username: string; password: string };
}

/** A refused login is not asked again for this long, doubling up to the max while refusals go on. */
const AUTH_RETRY_MS = 1000;
const AUTH_RETRY_MAX_MS = 30_000;

const enc = (s: string) => Buffer.from(s, "utf8").toString("base64");
const dec = (s: string | undefined) => (s ? Buffer.from(s, "base64").toString("utf8") : "");

/** The first key after every key that starts with `prefix` (etcd's range_end for a prefix). */
export function prefixEnd(prefix: string): string {
  const b = Buffer.from(prefix, "utf8");
  for (let i = b.length - 1; i >= 0; i--) {
    if (b[i]! < 0xff) {
      const out = Buffer.from(b.subarray(0, i + 1));
      out[i]!++;
      return out.toString("base64");
    }
  }
  return enc("\0");
}

function kv(w: z.infer<typeof KvWire>): KeyValue {
  return { key: dec(w.key), value: dec(w.value), createRevision: w.create_revision ?? 0, modRevision: w.mod_revision ?? 0, lease: w.lease ?? "0" };
}

function opWire(op: Op): Record<string, unknown> {
  if ("put" in op) return { request_put: { key: enc(op.put.key), value: enc(op.put.value), ...(op.put.lease ? { lease: op.put.lease } : {}) } };
  if ("del" in op) return { request_delete_range: { key: enc(op.del.key), ...(op.del.prefix ? { range_end: prefixEnd(op.del.key) } : {}) } };
  return { request_range: { key: enc(op.range.key), ...(op.range.prefix ? { range_end: prefixEnd(op.range.key) } : {}) } };
}

function compareWire(c: Compare): Record<string, unknown> {
  const base = { key: enc(c.key), result: "EQUAL" };
  if (c.target === "CREATE") return { ...base, target: "CREATE", create_revision: String(c.createRevision) };
  if (c.target === "MOD") return { ...base, target: "MOD", mod_revision: String(c.modRevision) };
  return { ...base, target: "VALUE", value: enc(c.value) };
}

const MAX_BODY = 8 << 20;

export class EtcdClient {
  private current = 0;
  private token: string | null = null;
  /** The login under way: concurrent calls without a token share it (each login costs etcd a bcrypt check). */
  private authenticating: Promise<string> | null = null;
  /**
   * etcd refused the credentials (a wrong or rotated password): each login is a bcrypt check on
   * etcd, and every request of three clients per agent logged in again (review). Until `until` the
   * refusal is the answer, without asking; the wait doubles from 1 s to 30 s while it lasts.
   */
  private authRefused: { until: number; waitMs: number; error: EtcdError } | null = null;

  constructor(private readonly o: EtcdClientOptions) {
    if (o.endpoints.length === 0) throw new EtcdError("no etcd endpoints");
  }

  /** The endpoint the last request went to. */
  endpoint(): string {
    return this.o.endpoints[this.current]!;
  }

  async range(key: string, opts: { prefix?: boolean } = {}): Promise<{ revision: number; kvs: KeyValue[] }> {
    const body = { key: enc(key), ...(opts.prefix ? { range_end: prefixEnd(key) } : {}) };
    for (let attempt = 1; ; attempt++) {
      try {
        const r = await this.call("/v3/kv/range", body, RangeWire);
        return { revision: r.header.revision, kvs: (r.kvs ?? []).map(kv) };
      } catch (e) {
        // A linearizable read etcd cut short because its leader changed (etcd 3.4 without pre-vote
        // elects again after a partition heals): nothing was read or changed, so it is asked again.
        if (attempt >= RANGE_ATTEMPTS || !(e instanceof EtcdError) || !/leader changed/.test(e.message)) throw e;
        await Bun.sleep(50 * attempt);
      }
    }
  }

  async txn(compare: Compare[], success: Op[], failure: Op[] = []): Promise<TxnResult> {
    const body = { compare: compare.map(compareWire), success: success.map(opWire), failure: failure.map(opWire) };
    // A transaction of reads only is a read: it may be asked again.
    const write = [...success, ...failure].some((op) => !("range" in op));
    const r = await this.call("/v3/kv/txn", body, TxnWire, { write });
    const ranges = (r.responses ?? []).flatMap((x) => (x.response_range ? [(x.response_range.kvs ?? []).map(kv)] : []));
    return { succeeded: r.succeeded === true, revision: r.header.revision, ranges };
  }

  async leaseGrant(ttlS: number): Promise<{ id: string; ttlS: number }> {
    const r = await this.call("/v3/lease/grant", { TTL: ttlS }, GrantWire, { write: true });
    if (r.error) throw new EtcdError(`lease grant: ${r.error}`);
    return { id: r.ID, ttlS: Number(r.TTL ?? 0) };
  }

  /** One renewal; the TTL etcd granted from now on (0: the lease does not exist any more). */
  async leaseKeepAlive(id: string): Promise<number> {
    const r = await this.call("/v3/lease/keepalive", { ID: id }, KeepAliveWire, { stream: true });
    return Number(r.result.TTL ?? 0);
  }

  async leaseRevoke(id: string): Promise<void> {
    try {
      await this.call("/v3/lease/revoke", { ID: id }, RevokeWire, { write: true });
    } catch (e) {
      if (!(e instanceof EtcdError && /lease not found/.test(e.message))) throw e;
    }
  }

  // ------------------------------------------------------------------ transport

  /**
   * `wire`: the answer etcd gives (an answer of another shape, with HTTP 200 too, is no answer: sent
   * without knowing whether it applied); `write`: never sent twice (OutcomeUnknown once sent without
   * an answer); `stream`: a keepalive's streamed answer.
   */
  private async call<T>(path: string, body: unknown, wire: z.ZodType<T>, o: { write?: boolean; stream?: boolean } = {}): Promise<T> {
    let lastError: Error = new EtcdError("no endpoint tried");
    const n = this.o.endpoints.length;
    const start = this.current;
    for (let i = 0; i < n; i++) {
      const idx = (start + i) % n;
      const at = `${this.o.endpoints[idx]}${path}`;
      try {
        const out = await this.callOnce(this.o.endpoints[idx]!, path, body, wire, o.stream ?? false);
        this.current = idx;
        return out;
      } catch (e) {
        // etcd's own decision is final; else the next endpoint, unless a write may have applied here.
        if (e instanceof EtcdError) throw e;
        const f = e instanceof AttemptError ? e.failure : "unknown"; // a transport failure after sending
        if (f === "final") throw new EtcdError(`${path}: ${(e as Error).message}`, (e as AttemptError).code);
        this.current = (idx + 1) % n; // the next request starts at the next endpoint
        if (!tryNext(f, o.write ?? false)) throw new OutcomeUnknown(`${at}: ${(e as Error).message}`);
        lastError = new EtcdError(`${at}: ${(e as Error).message}`, e instanceof AttemptError ? e.code : undefined);
      }
    }
    throw lastError;
  }

  private async callOnce<T>(base: string, path: string, body: unknown, wire: z.ZodType<T>, stream: boolean, retried = false): Promise<T> {
    if (this.o.auth && !this.token) {
      const refused = this.authRefused;
      if (refused && performance.now() < refused.until) throw refused.error;
      const login = this.authenticating ??= this.authenticate(base).then((token) => {
        this.authRefused = null;
        return token;
      }, (e: Error) => {
        if (e instanceof EtcdError) {
          const waitMs = Math.min(AUTH_RETRY_MAX_MS, (this.authRefused?.waitMs ?? AUTH_RETRY_MS / 2) * 2);
          this.authRefused = { until: performance.now() + waitMs, waitMs, error: new EtcdError(`${e.message} (asked again in ${waitMs / 1000} s at the earliest)`, e.code) };
        }
        throw e;
      }).finally(() => {
        if (this.authenticating === login) this.authenticating = null;
      });
      this.token = await login.catch((e: Error) => {
        throw e instanceof EtcdError ? e : new AttemptError(`authenticate: ${e.message}`, "not-applied");
      });
    }
    const ac = new AbortController();
    const timer = setTimeout(() => ac.abort(new Error(`no answer within ${this.o.requestTimeoutMs} ms`)), this.o.requestTimeoutMs);
    try {
      const res = await fetch(base + path, {
        method: "POST",
        headers: { "content-type": "application/json", ...(this.token ? { authorization: this.token } : {}) },
        body: JSON.stringify(body),
        signal: ac.signal,
        redirect: "error",
        ...(this.o.tls ? { tls: this.o.tls } : {}),
      } as RequestInit).catch((e: Error & { code?: string }) => {
        throw !ac.signal.aborted && NOT_CONNECTED.has(e.code ?? "") ? new AttemptError(e.message, "not-applied") : e;
      });
      const text = stream ? await firstLine(res, ac) : await boundedText(res);
      let json: unknown;
      try {
        json = JSON.parse(text);
      } catch {
        // A proxy's page, or a member cut off mid-answer: not etcd's answer.
        throw new AttemptError(`HTTP ${res.status}, not JSON: ${text.slice(0, 120)}`, "unknown");
      }
      const err = ErrorWire.safeParse(json);
      const streamErr = stream ? StreamErrorWire.safeParse(json) : null;
      const message = streamErr?.success ? streamErr.data.error.message : err.success ? (err.data.message ?? err.data.error) : undefined;
      if (!res.ok || (stream ? streamErr!.success : message !== undefined && message !== "")) {
        if (this.o.auth && !retried && /auth token|token/i.test(message ?? "")) {
          this.token = null; // expired simple token: authenticate again once
          return this.callOnce(base, path, body, wire, stream, true);
        }
        const status = (streamErr?.success ? streamErr.data.error.http_code : undefined) ?? res.status;
        const code = streamErr?.success ? streamErr.data.error.grpc_code : err.success ? err.data.code : undefined;
        throw new AttemptError(message || `HTTP ${status}`, classifyAnswer(status, message), code);
      }
      const answer = wire.safeParse(json);
      // A proxy's or another server's JSON: not etcd's answer, whatever its status.
      if (!answer.success) throw new AttemptError(`HTTP ${res.status}, not an etcd answer: ${text.slice(0, 120)}`, "unknown");
      return answer.data;
    } finally {
      clearTimeout(timer);
    }
  }

  private async authenticate(base: string): Promise<string> {
    const a = this.o.auth!;
    const res = await fetch(`${base}/v3/auth/authenticate`, {
      method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ name: a.username, password: a.password }),
      signal: AbortSignal.timeout(this.o.requestTimeoutMs), redirect: "error", ...(this.o.tls ? { tls: this.o.tls } : {}),
    } as RequestInit);
    const text = await boundedText(res);
    if (!res.ok) {
      const why = `authenticate as ${a.username}: HTTP ${res.status}: ${text.slice(0, 200)}`;
      // A refusal of this member (a learner, no leader, a proxy's 5xx): the request was not sent, the next endpoint is tried.
      throw classifyAnswer(res.status, text) === "final" ? new EtcdError(why) : new Error(why);
    }
    return AuthWire.parse(JSON.parse(text)).token;
  }
}

/** The answer's body, read as a stream and refused once past MAX_BODY (a chunked answer has no Content-Length to check first). */
async function boundedText(res: Response): Promise<string> {
  const len = Number(res.headers.get("content-length") ?? 0);
  if (len > MAX_BODY) {
    await res.body?.cancel().catch(() => {}); // not read on in the background
    throw new AttemptError(`answer of ${len} bytes refused (at most ${MAX_BODY})`, "unknown");
  }
  if (!res.body) return "";
  const reader = res.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      size += value.byteLength;
      if (size > MAX_BODY) {
        void reader.cancel().catch(() => {});
        throw new AttemptError(`answer of more than ${MAX_BODY} bytes refused`, "unknown");
      }
      chunks.push(value);
    }
  } finally {
    reader.releaseLock();
  }
  return new TextDecoder().decode(Buffer.concat(chunks));
}

/** A streaming answer (keepalive): the first newline-terminated JSON object, then the stream is closed. */
async function firstLine(res: Response, ac: AbortController): Promise<string> {
  if (!res.ok || !res.body) return boundedText(res);
  const reader = res.body.getReader();
  let buf = "";
  const decoder = new TextDecoder();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (value) buf += decoder.decode(value, { stream: true });
      const nl = buf.indexOf("\n");
      if (nl >= 0) return buf.slice(0, nl);
      if (done) return buf;
      if (buf.length > 1 << 20) throw new EtcdError("keepalive answer too long");
    }
  } finally {
    ac.abort();
    reader.releaseLock();
  }
}
