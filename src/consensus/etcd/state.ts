// The shared cluster state in etcd (src/agent/cluster-state.ts): each item one key under the
// cluster's prefix, read by every agent every poll (one transaction reading every item's key),
// written by the leader only by compare-and-swap on the key's revision and its leader key.
// It owns its poll timer and the last value read of each key.
import type { ZodType } from "zod";
import type { CasOutcome, SharedSlots, StateSlot, Stored } from "../../agent/cluster-state.ts";
import type { Logger } from "../../log.ts";
import type { EtcdClient, KeyValue } from "./client.ts";
import type { ClusterKeys } from "./elect-core.ts";
import { casOutcome, casTxn, decodeStored, STATE_KEYS } from "./state-core.ts";

export interface EtcdStateOptions {
  client: EtcdClient;
  keys: ClusterKeys;
  pollMs: number;
  log: Logger;
}

class EtcdSlot<T> implements StateSlot<T> {
  private cur: Stored<T> | null | undefined = undefined;
  private readonly listeners: ((v: Stored<T>) => void)[] = [];
  /** Bumped when a write starts and when it ends: a read that started before or during one must not put back the older value. */
  writes = 0;
  private invalidSeen = -1;
  /**
   * Reads in the order they were sent: one answered after a read sent later was taken is not taken
   * (review: a poll and a refresh overlapping put an older value back). A local count, not etcd's
   * revision, which goes back when etcd is restored from a snapshot.
   */
  private sentReads = 0;
  private takenRead = 0;

  /** Numbers a read about to be sent (accept takes it). */
  nextRead(): number {
    return ++this.sentReads;
  }
  /** The key's revision as last read, valid or not (0: absent). */
  private rev = 0;

  constructor(readonly key: string, private readonly schema: ZodType<T>, private readonly o: EtcdStateOptions) {}

  current(): Stored<T> | null | undefined {
    return this.cur;
  }

  revision(): number {
    return this.rev;
  }

  /**
   * A read of the key (kv undefined: absent), numbered by nextRead(); ignored when a write started
   * after the read did, or a read sent after it was taken already.
   */
  accept(kv: KeyValue | undefined, writesAtStart: number, read: number): Stored<T> | null {
    if (writesAtStart !== this.writes || read < this.takenRead) return this.cur ?? null;
    this.takenRead = read;
    const d = decodeStored(this.schema, kv);
    this.rev = kv?.modRevision ?? 0;
    if (d.kind === "invalid") {
      if (this.invalidSeen !== d.mod) this.o.log.error(`etcd: ignoring ${this.key} (revision ${d.mod}): ${d.error}`);
      this.invalidSeen = d.mod;
      this.cur = null;
      return null;
    }
    const next = d.kind === "ok" ? d.stored : null;
    const changed = next !== null && next.mod !== (this.cur?.mod ?? 0);
    this.cur = next;
    if (changed) for (const cb of this.listeners) {
      try {
        cb(next);
      } catch (e) {
        this.o.log.error(`etcd: applying ${this.key}: ${(e as Error).stack ?? e}`);
      }
    }
    return next;
  }

  async read(): Promise<Stored<T> | null> {
    const at = this.writes;
    const n = this.nextRead();
    const r = await this.o.client.range(this.key);
    return this.accept(r.kvs[0], at, n);
  }

  async write(value: T, base: number, term: number): Promise<CasOutcome> {
    this.writes++;
    try {
      const t = casTxn(this.o.keys.leader, term, this.key, base, value);
      const r = await this.o.client.txn(t.compare, t.success, t.failure).catch(async (e: Error) => {
        // Sent without an answer (OutcomeUnknown) or failed: the key read again shows what etcd holds; the error is passed on.
        await this.read().catch(() => null);
        throw e;
      });
      const out = casOutcome(r, term);
      if (out.ok) {
        this.cur = { value, mod: out.mod };
        this.rev = out.mod;
      }
      return out;
    } finally {
      this.writes++;
    }
  }

  onChange(cb: (v: Stored<T>) => void): void {
    this.listeners.push(cb);
  }
}

export class EtcdClusterState {
  readonly slots: SharedSlots;
  private readonly all: EtcdSlot<unknown>[];
  private timer: ReturnType<typeof setTimeout> | undefined;
  private stopped = false;
  private lastError = "";

  constructor(private readonly o: EtcdStateOptions, schemas: { [K in keyof SharedSlots]: ZodType<SharedSlots[K] extends StateSlot<infer T> ? T : never> }) {
    const slot = <T>(name: string, schema: ZodType<T>) => new EtcdSlot<T>(`${o.keys.root}${name}`, schema, o);
    this.slots = {
      flags: slot(STATE_KEYS.flags, schemas.flags),
      config: slot(STATE_KEYS.config, schemas.config),
      history: slot(STATE_KEYS.history, schemas.history),
    };
    this.all = Object.values(this.slots) as EtcdSlot<unknown>[];
  }

  readonly kind = "shared" as const;

  start(): void {
    this.schedule(0);
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
  }

  private schedule(ms: number): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => void this.poll().finally(() => this.schedule(this.o.pollMs)), ms);
  }

  refresh(): Promise<void> {
    return this.poll();
  }

  /** One transaction reads every item's key (one revision); each slot takes its value. */
  async poll(): Promise<void> {
    const at = this.all.map((s) => s.writes);
    const n = this.all.map((s) => s.nextRead());
    try {
      const r = await this.o.client.txn([], this.all.map((s) => ({ range: { key: s.key } })));
      this.all.forEach((s, i) => s.accept(r.ranges[i]?.[0], at[i]!, n[i]!));
      if (this.lastError) this.o.log.info("etcd: reading the cluster state again");
      this.lastError = "";
    } catch (e) {
      const msg = (e as Error).message;
      if (msg !== this.lastError) this.o.log.warn(`etcd: cannot read the cluster state: ${msg}`);
      this.lastError = msg;
    }
  }
}
