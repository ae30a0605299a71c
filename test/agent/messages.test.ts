// The mesh checks application messages with a union whose hot members are compiled by zod (z.compile): it
// must answer exactly as the schema as written does. Good messages of every kind an idle and a busy cluster
// send, and thousands of bad ones made from them (each field removed, replaced by another type, moved
// out of range, a key added), go to both; acceptance, the parsed value and the issues must be the same.
import { expect, test } from "bun:test";
import { z } from "zod";
import { AgentMsgRuntimeSchema, AgentMsgSchema } from "../../src/agent/messages.ts";

const ids = ["1c04db9adf64a401", "6b3ac9454356397d", "7d6467ff40c40453"];
const pos = { timeline: 1, lsn: "0/4000880" };
const membership = { term: 1, index: 2, voters: ids, approved: ["0123456789abcdef"] };
const guard = { term: 1, seq: 3, block: false, holder: null, floor: { timeline: 1, lsn: "0/4000050" } };
const ordered = ["max_connections", "max_locks_per_transaction", "max_prepared_transactions", "max_wal_senders", "max_worker_processes"]
  .map((name, i) => ({ name, running: 10 * i, next: 10 * i, control: i % 2 ? null : 10 * i }));
const health = {
  state: "ok", reason: "", since: "2026-12-02T10:32:17.893Z",
  disks: [{ what: "data", path: "/var/lib/postgresql/15/main", sizeBytes: 270553174016, availBytes: 84360740864 }],
  diskWarning: null,
};
const primaryReport = {
  port: 5432, data: "present", systemId: "7714652627403131537", running: true, up: true, inRecovery: false,
  position: pos, receiveLsn: null, replayLsn: null, upstream: null, streaming: false,
  replication: [
    { name: "pgherd_6b3ac9454356397d", clientAddr: "127.0.0.1", state: "streaming", syncState: "quorum", lagBytes: 0, replayLagSeconds: null },
    { name: "pgherd_7d6467ff40c40453", clientAddr: null, state: "streaming", lagBytes: 120, replayLagSeconds: 0.02 },
  ],
  slots: ["pgherd_6b3ac9454356397d", "pgherd_7d6467ff40c40453"],
  slotBytes: { pgherd_6b3ac9454356397d: 0, pgherd_7d6467ff40c40453: 4096 },
  permanent: [{ name: "cdc", type: "logical", lsn: "0/3000000", restartLsn: "0/2000000", state: "AAEC+/8=" }, { name: "arch", type: "physical", lsn: null }],
  action: "primary", guarantee: "zero-loss: every commit is on the primary and 1 synchronous standby", note: "", error: null,
  haveSecrets: true, rejoin: { seq: 1, state: "streaming", error: null, passed: ["rewinding", "starting"] },
  health, pendingRestart: ["shared_buffers"], ordered,
};
const standbyReport = {
  ...primaryReport, inRecovery: true, receiveLsn: "0/4000880", replayLsn: "0/4000880", upstream: "127.0.0.1:5432", streaming: true,
  replication: [], slots: [], slotBytes: {}, permanent: undefined, guarantee: undefined, action: "standby", rejoin: undefined, pendingRestart: undefined,
  health: { ...health, state: "unknown", since: null },
};
const member = {
  id: ids[1], name: "node1", host: "127.0.0.1", port: 5432, role: "standby", state: "streaming", leader: false, voter: true,
  membership: "voter", timeline: 1, lsn: "0/4000078", lagBytes: 0, lagSeconds: 0.020488, syncState: "quorum", note: "", error: null, ordered,
};
const pem = (label: string) => `-----BEGIN ${label}-----\nMIIBgzCCASqgAwIBAgIQKjRljyYkrHZWm0MhIgRsrTAKBggqhkjOPQQDAjAiMSAw\n-----END ${label}-----\n`;

const good: Record<string, unknown>[] = [
  { t: "hb", term: 1, seq: 34288.816988, left: 849, membership, pos, guard },
  { t: "hb", term: 7, seq: 1, membership: { term: 1, index: 0, voters: [ids[0]] }, pos: { timeline: 0, lsn: "0/0" } },
  { t: "hb-resp", term: 1, seq: 34288.816988, ok: true, cfg: { term: 1, index: 2 }, guardSeq: 3 },
  { t: "prevote", term: 2, cfg: { term: 0, index: 1 }, pos, force: true, guard },
  { t: "vote", term: 2, cfg: { term: -1, index: -1 }, pos },
  { t: "prevote-resp", term: 2, granted: false, reason: "behind", membership },
  { t: "vote-resp", term: 2, granted: true },
  { t: "resign", term: 3, transferTo: ids[2] },
  { t: "state", role: "database", pg: primaryReport, paused: false, durability: "quorum", nofailover: false, scheduled: null },
  { t: "state", role: "database", pg: standbyReport, nofailover: true, scheduled: { at: "2026-12-02T12:00:00Z", to: null, requestedAt: "2026-12-02T11:00:00Z", force: false } },
  { t: "state", role: "witness", pg: null },
  { t: "secrets", systemId: "7714652627403131537", replPassword: "5Q-HBdn1NHud3jlszLpi1s", monitorPassword: "gswv54RLTQG-apls4buIw6", ca: { cert: pem("CERTIFICATE"), key: pem("PRIVATE KEY") } },
  { t: "secrets", systemId: null, replPassword: "5Q-HBdn1NHud3jlszLpi1s", monitorPassword: "gswv54RLTQG-apls4buIw6" },
  { t: "view-req", id: 16 },
  {
    t: "view", id: 16, view: {
      cluster: "demo", leader: ids[0], leaderName: "node3", term: 1, primary: ids[0],
      durability: "quorum: zero-loss: every commit is on the primary and 1 synchronous standby", members: [member, { ...member, id: ids[2], lagSeconds: null }],
    },
  },
  { t: "action", id: 1, req: { kind: "switchover", to: "node2", force: true } },
  { t: "action", id: 2, req: { kind: "config", durability: "strict", base: 3, set: { "postgres.parameters.work_mem": "64MB", "failover.max_lag_bytes": 10 } } },
  { t: "action-resp", id: 1, result: { status: 200, ok: true, message: "done" } },
  {
    t: "history", entries: [{
      id: "8ed7b9bd-e1c3-4d7d-b4c2-10a2eb1f7bef", at: "2026-12-02T10:32:18.967Z", term: 1, kind: "config", node: "node3",
      reason: "cluster configuration version 1 created", oldPrimary: null, newPrimary: null, timeline: null, lsn: null,
    }],
  },
  { t: "campaign-now", reason: "failover --to", force: true },
  { t: "handover", from: "node3", final: pos, id: 4 },
  { t: "handover-ready", pos: null, id: 4 },
  { t: "config-req" },
  { t: "config-req", read: 7 },
  { t: "config-version", version: 1, term: 1 },
  { t: "config-doc", doc: { version: 1, term: 1, at: "2026-12-02T10:32:18.954Z", by: "node3", settings: { durability: "quorum" } } },
  { t: "config-doc", doc: null, read: 7 },
  { t: "config-ack", version: 2, term: 1 },
  { t: "failsafe-req", id: 1, term: 2 },
  { t: "failsafe-resp", id: 1, term: 2, ok: true, promiseMs: 30000, reason: "" },
  { t: "migrate-epoch", backend: "builtin", epoch: 2 },
];

/** The value with the node at `path` replaced (`undefined` removes a key), copied on the way down. */
function setAt(v: unknown, path: (string | number)[], r: unknown, remove = false): unknown {
  if (path.length === 0) return r;
  const [k, ...rest] = path;
  if (Array.isArray(v)) {
    const out = [...v];
    if (remove && rest.length === 0) out.splice(k as number, 1);
    else out[k as number] = setAt(v[k as number], rest, r, remove);
    return out;
  }
  const out = { ...(v as Record<string, unknown>) };
  if (remove && rest.length === 0) delete out[k as string];
  else out[k as string] = setAt(out[k as string], rest, r, remove);
  return out;
}

const REPLACEMENTS: unknown[] = [null, undefined, true, false, 0, -1, 1.5, 2 ** 31, 2 ** 53, -0, "", "x", "0/0", "AB/CD", {}, [], [1], Infinity, NaN];

/** Bad (and some still good) messages made from a good one: every node of it changed in every way above. */
function* variants(root: unknown): Generator<unknown> {
  const walk = function* (v: unknown, path: (string | number)[]): Generator<unknown> {
    for (const r of REPLACEMENTS) yield setAt(root, path, r);
    if (typeof v === "string") {
      for (const s of [v + "x", v.toUpperCase(), v.slice(1), " " + v, v.repeat(40), `${v}\n`]) yield setAt(root, path, s);
    } else if (typeof v === "number") {
      for (const n of [v + 0.5, -v - 1, v + 1, v * 1e6, 65536, 60_001]) yield setAt(root, path, n);
    } else if (Array.isArray(v)) {
      yield setAt(root, path, [...v, v[0] ?? "x"]);
      yield setAt(root, path, Array.from({ length: 300 }, () => v[0] ?? 1));
      for (let i = 0; i < v.length; i++) {
        yield setAt(root, [...path, i], undefined, true);
        yield* walk(v[i], [...path, i]);
      }
    } else if (v !== null && typeof v === "object") {
      yield setAt(root, path, { ...v, zz: 1 });
      for (const k of Object.keys(v)) {
        yield setAt(root, [...path, k], undefined, true);
        yield* walk((v as Record<string, unknown>)[k], [...path, k]);
      }
    }
  };
  yield* walk(root, []);
}

function same(x: unknown): boolean {
  const a = AgentMsgRuntimeSchema.safeParse(x);
  const b = AgentMsgSchema.safeParse(x);
  expect(b.success).toBe(a.success);
  if (a.success) expect(b.data).toStrictEqual(a.data);
  else expect(b.error!.issues).toStrictEqual(a.error.issues);
  return a.success;
}

test("the messages every node receives each second are compiled whole: no part falls back to the runtime parser", () => {
  const compiled = (t: string) => AgentMsgSchema.options.find((o) => o._zod.propValues?.t?.has(t))!;
  for (const t of ["hb", "hb-resp", "prevote", "vote", "state", "config-version"]) {
    expect((compiled(t) as unknown as { _zod: { bag: { fallbackRun?: unknown } } })._zod.bag.fallbackRun).toBeFunction();
  }
  for (const o of AgentMsgRuntimeSchema.options) expect(() => z.compile(o, { strict: true })).not.toThrow();
});

test("the compiled schema accepts the good messages with the same values as the schema as written", () => {
  for (const m of good) {
    const r = AgentMsgRuntimeSchema.safeParse(m);
    if (!r.success) throw new Error(`fixture ${m.t}: ${r.error.message}`);
    expect(same(m)).toBe(true);
  }
  // Keys this build does not know (a newer peer's) are dropped by both, at every level.
  const hb = { ...good[0]!, future: 1, pos: { ...pos, later: true } };
  expect(same(hb)).toBe(true);
  expect(AgentMsgSchema.parse(hb)).toStrictEqual(AgentMsgRuntimeSchema.parse(good[0]));
});

test("the compiled schema accepts and refuses exactly what the schema as written does (mutated messages)", () => {
  let accepted = 0;
  let refused = 0;
  for (const m of good) {
    for (const v of variants(m)) {
      if (same(v)) accepted++;
      else refused++;
    }
  }
  console.log(`mutated messages: ${accepted} accepted, ${refused} refused by both`);
  expect(refused).toBeGreaterThan(5000);
  expect(accepted).toBeGreaterThan(500);
}, 60_000); // ~11,000 parses by both forms: ~4 s on an idle machine, longer beside a loaded one (the default 5 s is the runner's budget, not a bound)

test("a parsed message is a fresh value: changing it changes neither the input nor the next parse", () => {
  const input = structuredClone(good[0]!);
  const a = AgentMsgSchema.parse(input) as { membership: { voters: string[] }; pos: { lsn: string } };
  a.membership.voters.push("ffffffffffffffff");
  a.pos.lsn = "changed";
  expect(input).toStrictEqual(good[0]!);
  expect(AgentMsgSchema.parse(input)).toStrictEqual(AgentMsgRuntimeSchema.parse(good[0]));
});

test("keys JSON.parse makes own properties (__proto__, constructor) get the same answer from both", () => {
  for (const m of good) {
    const json = JSON.stringify(m);
    for (const extra of ['"__proto__":{"t":"x","polluted":1}', '"constructor":{"prototype":{"polluted":1}}', '"__proto__":null']) {
      same(JSON.parse(`{${extra},${json.slice(1)}`));
      same(JSON.parse(json.replace(/\{"timeline"/g, `{${extra},"timeline"`)));
    }
  }
  expect(({} as Record<string, unknown>).polluted).toBeUndefined();
});
