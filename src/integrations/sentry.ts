// [sentry]: role changes (failover, switchover, fence, rejoin, …) and every logged error, sent to
// Sentry's envelope endpoint with fetch (no SDK: it would load ~1 MB of modules into an agent
// that otherwise waits in ~15 MB, for one POST). Tagged with cluster, node, role and term;
// every string is scrubbed of the cluster secret, the API token, the cluster's passwords and
// anything shaped like a credential before it leaves. Nothing is sent without a DSN.
import { randomBytes } from "node:crypto";
import { VERSION } from "../cli/version-info.ts";
import type { Config } from "../config/schema.ts";
import { mapStrings, scrubCredentials } from "../config/redact.ts";
import { parseDsn, type ParsedDsn } from "../config/schema-hooks.ts";
import type { Logger } from "../log.ts";

export type SentryLevel = "error" | "warning" | "info";

export interface SentryContext { role: string; term: number }

/** Events per minute; more are dropped (counted, and said once per minute in the log). */
const MAX_PER_MINUTE = 30;
const SEND_TIMEOUT_MS = 5000;
const REDACTED = "[redacted]";


export class Scrubber {
  private more: () => readonly string[] = () => [];

  constructor(private readonly fixed: readonly string[]) {}

  /** Secrets known only later (the cluster's role passwords, from the leader). */
  also(more: () => readonly string[]): void {
    this.more = more;
  }

  private secrets(): string[] {
    return [...this.fixed, ...this.more()].filter((v) => v.length >= 4).sort((a, b) => b.length - a.length);
  }

  text(s: string): string {
    let out = s;
    for (const v of this.secrets()) out = out.split(v).join(REDACTED);
    return scrubCredentials(out, REDACTED);
  }

  /** Every string in a JSON value; keys that name a credential lose their value. */
  value(v: unknown): unknown {
    return mapStrings(v, (s) => this.text(s), (k) => /pass|secret|token|auth|key$/i.test(k) && k !== "sentry_key", REDACTED);
  }
}

export class SentryClient {
  private readonly dsn: ParsedDsn;
  private windowStart = 0;
  private sentInWindow = 0;
  private dropped = 0;
  private inFlight = 0;
  private pending: Promise<unknown>[] = [];

  /** This node's role and term for the tags (set by the agent's integrations once they exist). */
  context: () => SentryContext = () => ({ role: "unknown", term: 0 });
  readonly scrub: Scrubber;

  constructor(private readonly cfg: Pick<Config, "cluster" | "node_name" | "sentry" | "secret" | "api">, private readonly log: Logger) {
    const p = parseDsn(cfg.sentry.dsn);
    if (typeof p === "string") throw new Error(`sentry.dsn: ${p}`); // validated at load already
    this.dsn = p;
    this.scrub = new Scrubber([cfg.secret, cfg.api.token]);
  }

  /** Queues one event (never throws, never waits). */
  capture(level: SentryLevel, message: string, extra: { kind?: string; [k: string]: unknown } = {}, tags: Record<string, string> = {}): void {
    const now = Date.now();
    if (now - this.windowStart > 60_000) {
      if (this.dropped) this.log.warn(`sentry: ${this.dropped} event(s) dropped in the last minute (at most ${MAX_PER_MINUTE} a minute)`);
      this.windowStart = now;
      this.sentInWindow = 0;
      this.dropped = 0;
    }
    if (this.sentInWindow >= MAX_PER_MINUTE || this.inFlight >= 8) {
      this.dropped++;
      return;
    }
    this.sentInWindow++;
    const body = this.envelope(level, message, extra, now, tags);
    this.inFlight++;
    const p = fetch(this.dsn.envelopeUrl, {
      method: "POST", body, signal: AbortSignal.timeout(SEND_TIMEOUT_MS),
      headers: {
        "content-type": "application/x-sentry-envelope",
        "x-sentry-auth": `Sentry sentry_version=7, sentry_key=${this.dsn.publicKey}, sentry_client=pgherd/${VERSION}`,
      },
    }).then(async (r) => {
      await r.arrayBuffer().catch(() => undefined);
      // The Logger given here is the untapped one: a failed send never reports itself.
      if (!r.ok) this.log.warn(`sentry: the envelope endpoint answered ${r.status}`);
    }, (e: Error) => this.log.warn(`sentry: could not send an event: ${e.message}`)).finally(() => {
      this.inFlight--;
      this.pending = this.pending.filter((x) => x !== p);
    });
    this.pending.push(p);
  }

  /** Resolves when every event queued so far was sent or failed (shutdown, tests). */
  async flush(): Promise<void> {
    await Promise.allSettled(this.pending);
  }

  /** The envelope: a header line, an item header line, the event (docs: develop.sentry.dev/sdk/envelopes). */
  envelope(level: SentryLevel, message: string, extra: { kind?: string; [k: string]: unknown }, now: number, tags: Record<string, string> = {}): string {
    const eventId = randomBytes(16).toString("hex");
    const ctx = this.context();
    const { kind, ...rest } = extra;
    const event = this.scrub.value({
      event_id: eventId,
      timestamp: now / 1000,
      platform: "javascript",
      level,
      logger: "pgherd",
      server_name: this.cfg.node_name,
      release: `pgherd@${VERSION}`,
      environment: this.cfg.sentry.environment,
      message: { formatted: message.slice(0, 8000) },
      tags: { cluster: this.cfg.cluster, node: this.cfg.node_name, role: ctx.role, term: String(ctx.term), ...(kind ? { kind } : {}), ...tags },
      extra: rest,
    }) as Record<string, unknown>;
    const payload = JSON.stringify(event);
    const header = JSON.stringify({ event_id: eventId, sent_at: new Date(now).toISOString() });
    const item = JSON.stringify({ type: "event", content_type: "application/json", length: Buffer.byteLength(payload) });
    return `${header}\n${item}\n${payload}\n`;
  }
}

/** A logger whose error lines also go to Sentry (warnings and the rest only to the log). */
export function tapErrors(log: Logger, client: SentryClient): Logger {
  const wrap = (l: Logger, tag: string): Logger => new Proxy(l, {
    get(target, prop, recv) {
      if (prop === "error") {
        return (...args: unknown[]) => {
          (target.error as (...a: unknown[]) => void)(...args);
          client.capture("error", args.map((a) => (a instanceof Error ? a.stack ?? a.message : typeof a === "string" ? a : JSON.stringify(a))).join(" "), { kind: "error", ...(tag ? { component: tag } : {}) });
        };
      }
      if (prop === "withTag") return (t: string) => wrap(target.withTag(t), tag ? `${tag}:${t}` : t);
      return Reflect.get(target, prop, recv);
    },
  });
  return wrap(log, "");
}

/** The client for [sentry] (null: no DSN, nothing is ever sent). `log` must be the untapped logger. */
export function createSentry(cfg: Pick<Config, "cluster" | "node_name" | "sentry" | "secret" | "api">, log: Logger): SentryClient | null {
  if (cfg.sentry.dsn === "") return null;
  const c = new SentryClient(cfg, log.withTag("sentry"));
  log.info(`sentry: reporting role changes and errors (environment ${cfg.sentry.environment})`);
  return c;
}
