// An in-memory etcd for unit tests of the etcd steps: the EtcdClient calls the code uses (range,
// txn with its compares, lease grant / keepalive / revoke, a revoke deleting the lease's keys), with
// etcd's revisions. Leases never run out by themselves. `refuse(op)` makes a transaction fail its
// compare (answered, not applied) when it returns true: etcd's answer to a lost compare-and-swap.
import type { Compare, EtcdClient, KeyValue, Op, TxnResult } from "../../src/consensus/etcd/client.ts";

export class FakeEtcd {
  readonly kv = new Map<string, KeyValue>();
  readonly leases = new Map<string, number>();
  revision = 1;
  private nextLease = 1;
  refuse: (success: readonly Op[]) => boolean = () => false;

  value(key: string): string | undefined {
    return this.kv.get(key)?.value;
  }

  client(): EtcdClient {
    return this as unknown as EtcdClient;
  }

  async range(key: string, opts: { prefix?: boolean } = {}): Promise<{ revision: number; kvs: KeyValue[] }> {
    return { revision: this.revision, kvs: this.read(key, opts.prefix) };
  }

  async txn(compare: Compare[], success: Op[], failure: Op[] = []): Promise<TxnResult> {
    const ok = compare.every((c) => this.holds(c)) && !this.refuse(success);
    const ops = ok ? success : failure;
    const ranges: KeyValue[][] = [];
    if (ops.some((o) => !("range" in o))) this.revision++;
    for (const o of ops) {
      if ("put" in o) {
        const was = this.kv.get(o.put.key);
        this.kv.set(o.put.key, { key: o.put.key, value: o.put.value, createRevision: was?.createRevision ?? this.revision, modRevision: this.revision, lease: o.put.lease ?? "0" });
      } else if ("del" in o) for (const k of this.read(o.del.key, o.del.prefix)) this.kv.delete(k.key);
      else ranges.push(this.read(o.range.key, o.range.prefix));
    }
    return { succeeded: ok, revision: this.revision, ranges };
  }

  async leaseGrant(ttlS: number): Promise<{ id: string; ttlS: number }> {
    const id = `L${this.nextLease++}`;
    this.leases.set(id, ttlS);
    return { id, ttlS };
  }

  async leaseKeepAlive(id: string): Promise<number> {
    return this.leases.get(id) ?? 0;
  }

  async leaseRevoke(id: string): Promise<void> {
    this.leases.delete(id);
    const bound = [...this.kv.values()].filter((k) => k.lease === id);
    if (bound.length > 0) this.revision++;
    for (const k of bound) this.kv.delete(k.key);
  }

  private read(key: string, prefix?: boolean): KeyValue[] {
    return [...this.kv.values()].filter((k) => (prefix ? k.key.startsWith(key) : k.key === key)).sort((a, b) => a.key.localeCompare(b.key)).map((k) => ({ ...k }));
  }

  private holds(c: Compare): boolean {
    const k = this.kv.get(c.key);
    if (c.target === "CREATE") return (k?.createRevision ?? 0) === c.createRevision;
    if (c.target === "MOD") return (k?.modRevision ?? 0) === c.modRevision;
    return k?.value === c.value;
  }
}
