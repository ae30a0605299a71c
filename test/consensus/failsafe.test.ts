// The failsafe shell (src/consensus/etcd/failsafe.ts) between a leader and two voters: messages go
// through the real mesh schema, time is a variable. Decisions are tested in failsafe-core.test.ts;
// this checks the wiring: who is asked when, that a promise is recorded before the answer leaves,
// and that the leader's deadline follows the earliest confirmation.
import { expect, test } from "bun:test";
import { AgentMsgSchema } from "../../src/agent/messages.ts";
import { Failsafe, type FailsafeMsg, type FailsafeView } from "../../src/consensus/etcd/failsafe.ts";
import { memoryLogger } from "../../src/log.ts";

const USABLE = 4300; // ttl_s 5, max_drift 0, fence_ms 700
function world(enabled: Record<string, boolean> = {}) {
  let now = 1000;
  const queue: { from: string; to: string; msg: FailsafeMsg }[] = [];
  const views: Record<string, FailsafeView> = {};
  const extended: number[] = [];
  const log = memoryLogger();
  const nodes: Record<string, Failsafe> = {};
  for (const id of ["L", "a", "b"]) {
    views[id] = { leading: null, etcdUntil: null, voters: ["L", "a", "b"], leader: { id: "L", term: 7 }, taking: false };
    nodes[id] = new Failsafe({
      enabled: enabled[id] ?? true, self: id, promiseMs: 5000, pollMs: 250, maxDrift: 0, fenceMs: 700, usableMs: USABLE,
      send: (to, msg) => queue.push({ from: id, to, msg: AgentMsgSchema.parse(msg) as FailsafeMsg }),
      view: () => views[id]!, extended: (u) => extended.push(u), nameOf: (x) => x, log, clock: () => now,
    });
  }
  views.L!.leading = { term: 7, until: 5300 };
  views.L!.etcdUntil = 5300;
  const deliver = (drop = "") => {
    while (queue.length > 0) {
      const m = queue.shift()!;
      if (m.to !== drop && m.from !== drop) nodes[m.to]!.receive(m.from, m.msg);
    }
  };
  // The asking timer's body, run by hand (start() would arm a real interval).
  const tick = (n: Failsafe) => (n as unknown as { ask(): void }).ask();
  return { nodes, views, queue, extended, deliver, tick, log, at: (t: number) => (now = t), now: () => now };
}

test("nothing is asked while the etcd lease is fresh; once half of it is gone every other voter is asked", () => {
  const w = world();
  w.at(2000);
  w.tick(w.nodes.L!);
  expect(w.queue).toEqual([]);
  w.at(3200);
  w.tick(w.nodes.L!);
  expect(w.queue.map((m) => `${m.msg.t}→${m.to}`)).toEqual(["failsafe-req→a", "failsafe-req→b"]);
});

test("both voters confirm: each has promised before answering, and the leader's deadline is counted from its send time", () => {
  const w = world();
  w.at(3200);
  w.tick(w.nodes.L!);
  w.at(3210); // delivered 10 ms later
  w.deliver();
  expect(w.nodes.a!.promised()).toContain("promised (failsafe)");
  expect(w.nodes.L!.deadline(7)).toBe(3200 + 5000 - 700);
  expect(w.extended.at(-1)).toBe(7500);
  expect(w.nodes.L!.deadline(8)).toBeNull();
  w.at(3210 + 5000);
  expect(w.nodes.a!.promised()).toBeNull();
});

test("a voter that does not answer leaves no failsafe deadline; the fence names it", () => {
  const w = world();
  w.at(3200);
  w.tick(w.nodes.L!);
  w.deliver("b");
  expect(w.nodes.L!.deadline(7)).toBeNull();
  expect(w.extended).toEqual([]);
  expect(w.nodes.L!.missing()).toEqual(["b"]);
});

test("a voter with failsafe off, or following another leader, refuses; the leader logs why", () => {
  const w = world({ b: false });
  w.views.a!.leader = { id: "b", term: 9 };
  w.at(3200);
  w.tick(w.nodes.L!);
  w.deliver();
  expect(w.nodes.L!.deadline(7)).toBeNull();
  expect(w.log.lines.join("\n")).toContain("failsafe: a does not confirm: this node follows b");
  expect(w.log.lines.join("\n")).toContain("failsafe: b does not confirm: failsafe is off on this node");
  // Neither promised anything (b may take the key at once; a as soon as its start-up promise ends).
  expect(w.nodes.b!.promised()).toBeNull();
});

test("an agent with failsafe on takes no key during its first ttl_s (a promise given before a restart)", () => {
  const w = world();
  expect(w.nodes.a!.promised()).toContain("promised");
  w.at(1000 + 5000);
  expect(w.nodes.a!.promised()).toBeNull();
});

test("a take whose answer was lost: the node confirms nothing for the given time", () => {
  const w = world();
  w.nodes.a!.takeUncertain(5000);
  w.at(3200);
  w.tick(w.nodes.L!);
  w.deliver();
  expect(w.nodes.L!.deadline(7)).toBeNull();
});

test("answers to a request of an earlier term are ignored after a new term begins", () => {
  const w = world();
  w.at(3200);
  w.tick(w.nodes.L!);
  w.views.L!.leading = { term: 8, until: 9000 };
  w.tick(w.nodes.L!);
  w.queue.splice(2); // only the term-7 requests reach the voters
  w.deliver();
  expect(w.nodes.L!.deadline(8)).toBeNull();
  expect(w.nodes.L!.deadline(7)).toBeNull();
});
