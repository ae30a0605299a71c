// GET /events: server-sent events for the dashboard. One shared timer builds a snapshot once per
// interval while anyone listens and fans it out; a client that stops reading is dropped instead of
// buffering without bound.
import type { Logger } from "../log.ts";
import { error } from "./http.ts";

const MAX_QUEUED = 20;

/** How often a snapshot is sent; each one says so (`intervalMs`), and the dashboard calls itself stale after a few missed (web/live.js). */
export const EVENTS_INTERVAL_MS = 1000;

/** Streams one client address may hold open: one address cannot take every stream from the others. */
const PER_ADDRESS = 4;

export class EventHub {
  /** Open streams, oldest first, with the address of each. */
  private readonly clients = new Map<ReadableStreamDefaultController<Uint8Array>, string>();
  /** Called once a stream ends, however it ends. */
  private readonly ended = new Map<ReadableStreamDefaultController<Uint8Array>, () => void>();
  private timer: ReturnType<typeof setInterval> | undefined;
  private busy = false;
  private readonly enc = new TextEncoder();

  constructor(private readonly snapshot: () => Promise<unknown>, private readonly log: Logger, private readonly intervalMs = EVENTS_INTERVAL_MS, private readonly maxClients = 16) {}

  /**
   * The SSE response for a client at `addr`, or a 503: PER_ADDRESS streams from that address are
   * open, or all are and no address holds more than one (else the oldest stream of the address
   * holding the most is closed for it). The caller lifts the idle timeout of an open stream
   * (server.timeout(req, 0)); `onEnd` is called once the stream ends (the API's front then counts
   * the connection as idle again).
   */
  open(addr: string, onEnd?: () => void): Response {
    const held = this.byAddress();
    if ((held.get(addr) ?? 0) >= PER_ADDRESS) return error(503, `too many event streams open from ${addr} (${PER_ADDRESS}); close a dashboard tab`);
    if (this.clients.size >= this.maxClients) {
      const [busiest, n] = [...held].reduce((a, b) => (b[1] > a[1] ? b : a));
      if (n <= 1) return error(503, `too many event streams open (${this.maxClients}); close a dashboard tab`);
      const oldest = [...this.clients].find(([, a]) => a === busiest)![0];
      this.log.warn(`event streams full (${this.maxClients}): closing the oldest of ${busiest}'s ${n} for one from ${addr}`);
      this.drop(oldest, true);
    }
    let self: ReadableStreamDefaultController<Uint8Array> | undefined;
    const stream = new ReadableStream<Uint8Array>({
      start: (c) => {
        self = c;
        this.clients.set(c, addr);
        if (onEnd) this.ended.set(c, onEnd);
        c.enqueue(this.enc.encode(`retry: 2000\n\n`));
        this.ensureTimer();
        void this.tick();
      },
      cancel: () => {
        if (self) this.drop(self);
      },
    });
    return new Response(stream, {
      headers: { "content-type": "text/event-stream; charset=utf-8", "cache-control": "no-store", "x-accel-buffering": "no" },
    });
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
    for (const c of [...this.clients.keys()]) this.drop(c, true);
  }

  private byAddress(): Map<string, number> {
    const n = new Map<string, number>();
    for (const a of this.clients.values()) n.set(a, (n.get(a) ?? 0) + 1);
    return n;
  }

  get size(): number {
    return this.clients.size;
  }

  private ensureTimer(): void {
    this.timer ??= setInterval(() => void this.tick(), this.intervalMs);
  }

  private async tick(): Promise<void> {
    if (this.busy) return; // a slow snapshot (cluster view from the leader) must not pile up
    this.busy = true;
    try {
      const data = JSON.stringify(await this.snapshot());
      const frame = this.enc.encode(`event: snapshot\ndata: ${data}\n\n`);
      for (const c of [...this.clients.keys()]) {
        if ((c.desiredSize ?? 0) < -MAX_QUEUED) {
          this.log.warn("dropping a dashboard event stream that stopped reading");
          this.drop(c, true);
          continue;
        }
        try {
          c.enqueue(frame);
        } catch {
          this.drop(c);
        }
      }
    } catch (e) {
      this.log.error(`event snapshot failed: ${(e as Error).message}`);
    } finally {
      this.busy = false;
      if (this.clients.size === 0) {
        clearInterval(this.timer);
        this.timer = undefined;
      }
    }
  }

  private drop(c: ReadableStreamDefaultController<Uint8Array>, close = false): void {
    this.clients.delete(c);
    const onEnd = this.ended.get(c);
    this.ended.delete(c);
    onEnd?.();
    if (close) try { c.close(); } catch { /* already closed */ }
  }
}
