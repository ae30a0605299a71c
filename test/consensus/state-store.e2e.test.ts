// The etcd cluster-state store (src/consensus/etcd/state.ts) against a real three-member etcd on
// loopback, without PostgreSQL: a write is stored only while the writer's leader key of its term
// exists and the key's revision is the base it names; a refusal says which; every reader sees the
// value within a poll; a value that does not validate is logged, never handed on, and replaced by
// the leader's next write naming its revision; a poll that started before a write never puts the
// older value back.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { join } from "node:path";
import { dynamicDoc } from "../../src/config/schema-dynamic.ts";
import { EtcdClient } from "../../src/consensus/etcd/client.ts";
import { clusterKeys } from "../../src/consensus/etcd/elect-core.ts";
import { EtcdClusterState } from "../../src/consensus/etcd/state.ts";
import { type SharedFlags, SharedFlagsSchema } from "../../src/agent/flags.ts";
import { StoredHistorySchema } from "../../src/agent/history.ts";
import { memoryLogger } from "../../src/log.ts";
import { EtcdCluster, etcdSkipReason } from "../helpers/etcd.ts";
import { waitFor } from "../helpers/proc.ts";
import { requireReal } from "../helpers/require.ts";

const SCHEMAS = { flags: SharedFlagsSchema, config: dynamicDoc, history: StoredHistorySchema };

requireReal("etcd cluster-state store", etcdSkipReason());
describe("cluster state in a real etcd", () => {
  let etcd: EtcdCluster;
  let tmp: string;
  let client: EtcdClient;
  const keys = clusterKeys("/pgherd", "state");
  const stores: EtcdClusterState[] = [];
  const open = () => {
    const log = memoryLogger();
    const s = new EtcdClusterState({ client: new EtcdClient({ endpoints: etcd.endpoints(), requestTimeoutMs: 500 }), keys, pollMs: 100, log }, SCHEMAS);
    stores.push(s);
    return { s, log };
  };

  beforeAll(async () => {
    tmp = mkdtempSync("/tmp/pgherd-etcd-state-");
    etcd = await EtcdCluster.start({ dir: join(tmp, "etcd") });
    client = new EtcdClient({ endpoints: etcd.endpoints(), requestTimeoutMs: 1000 });
  }, 60_000);

  afterAll(async () => {
    for (const s of stores) s.stop();
    await etcd?.destroy();
    rmSync(tmp, { recursive: true, force: true });
  }, 30_000);

  test("compare-and-swap on the leader key of the term and the key's revision; readers follow", async () => {
    const { s: leader } = open();
    const { s: reader } = open();
    reader.start();
    const seen: SharedFlags[] = [];
    reader.slots.flags.onChange((v) => seen.push(v.value));
    const paused: SharedFlags = { paused: true, scheduled: null };

    // No leader key: refused as not the leader.
    expect(await leader.slots.flags.write(paused, 0, 1)).toEqual({ ok: false, why: "not-leader" });
    const lk = await client.txn([], [{ put: { key: keys.leader, value: "aaaaaaaaaaaaaaa1" } }]);
    const term = lk.revision; // the leader key's create revision
    expect(await leader.slots.flags.write(paused, 0, term + 1)).toEqual({ ok: false, why: "not-leader" });

    const w1 = await leader.slots.flags.write(paused, 0, term);
    expect(w1.ok).toBe(true);
    await waitFor(() => seen.length === 1, { timeoutMs: 3000, what: "the reader to see the flags" });
    expect(seen).toEqual([paused]);
    expect(reader.slots.flags.current()).toEqual({ value: paused, mod: w1.ok ? w1.mod : -1 });

    // A write naming an older base is refused and says the revision now.
    const stale = await leader.slots.flags.write({ paused: false, scheduled: null }, 0, term);
    expect(stale).toEqual({ ok: false, why: "moved", current: w1.ok ? w1.mod : -1 });
    const raw = await client.range(`${keys.root}flags`);
    expect(JSON.parse(raw.kvs[0]!.value)).toEqual(paused);
  }, 20_000);

  test("a value that does not validate is logged and not handed on; a write naming its revision replaces it", async () => {
    const { s, log } = open();
    s.start();
    const seen: unknown[] = [];
    s.slots.config.onChange((v) => seen.push(v.value));
    await client.txn([], [{ put: { key: `${keys.root}config`, value: '{"version":"two"}' } }]);
    await waitFor(() => log.lines.some((l) => /ignoring \/pgherd\/state\/config \(revision \d+\): version/.test(l)), { timeoutMs: 3000, what: "the bad value to be logged" });
    expect(s.slots.config.current()).toBeNull();
    expect(seen).toEqual([]);
    const term = (await client.range(keys.leader)).kvs[0]!.createRevision;
    const doc = { version: 3, term, at: new Date().toISOString(), by: "a", settings: { durability: "quorum" as const, postgres: { parameters: {} }, access: [], failover: { max_lag_bytes: 1048576 } } };
    const w = await s.slots.config.write(doc, s.slots.config.revision(), term);
    expect(w.ok).toBe(true);
    expect((await s.slots.config.read())?.value.version).toBe(3);
    expect(log.lines.filter((l) => /ignoring/.test(l))).toHaveLength(1); // once per bad revision
  }, 20_000);

  test("a poll that started before a write does not put the older value back", async () => {
    const { s } = open();
    const term = (await client.range(keys.leader)).kvs[0]!.createRevision;
    await s.refresh();
    const before = s.slots.flags.current()!;
    const polling = s.refresh(); // in flight while the write lands
    const w = await s.slots.flags.write({ paused: false, scheduled: null }, before.mod, term);
    await polling;
    expect(w.ok).toBe(true);
    expect(s.slots.flags.current()?.value).toEqual({ paused: false, scheduled: null });
  }, 20_000);
});
