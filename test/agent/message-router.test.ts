// The router's handling of peers' state messages (src/agent/message-router.ts onState): a message
// older than the report held, by (epoch, seq), is dropped whole (core/cluster-facts.ts newerReport):
// no report replaced, no exclusion record handed to the cap. One from a peer's earlier run is
// warned about once per run.
import { expect, test } from "bun:test";
import { MessageRouter, type RouterDeps } from "../../src/agent/message-router.ts";
import type { AgentMsg } from "../../src/agent/messages.ts";
import type { PeerReport } from "../../src/core/cluster-facts.ts";
import { memoryLogger } from "../../src/log.ts";

const L = "aaaaaaaaaaaaaaaa";

function router() {
  const log = memoryLogger();
  const reports = new Map<string, PeerReport>();
  const heard: Array<{ epoch?: number; seq?: number; exclusion: unknown }> = [];
  const d = {
    log, reports, now: () => 1000, stopped: () => false, loop: () => null,
    consensus: { status: () => ({ leader: L }) },
    flags: { adopt: () => undefined },
    peers: { name: () => "n1" },
    exclusionHeard: (_leader: string, exclusion: unknown, msg: { epoch?: number; seq?: number }) => heard.push({ epoch: msg.epoch, seq: msg.seq, exclusion }),
  } as unknown as RouterDeps;
  return { r: new MessageRouter(d), reports, heard, log };
}

const state = (epoch: number, seq: number, exclusion?: unknown) =>
  ({ t: "state", role: "database", pg: null, nofailover: false, promotable: true, epoch, seq, ...(exclusion ? { exclusion } : {}) }) as unknown as AgentMsg;

test("a late state message of the leader (same run, or its earlier run) changes nothing; an earlier run is warned about once", () => {
  const { r, reports, heard, log } = router();
  const rec = { term: 4, at: { timeline: 1, lsn: "0/6000000" }, excluded: [{ id: "bbbbbbbbbbbbbbbb", epoch: 7 }] };
  r.route(L, state(12, 4));
  expect(reports.get(L)?.seq).toBe(4);
  expect(heard).toHaveLength(1);
  r.route(L, state(12, 3, rec)); // a late frame of the same run: dropped silently
  r.route(L, state(11, 90, rec)); // a frame of its previous run (a restart's old connection draining)
  r.route(L, state(11, 91, rec));
  expect(reports.get(L)).toMatchObject({ epoch: 12, seq: 4 });
  expect(heard).toHaveLength(1); // the cap never saw the stale records
  expect(log.lines.filter((l) => l.includes("dropped, older than its run 12"))).toHaveLength(1);
  r.route(L, state(12, 5));
  r.route(L, state(13, 1)); // its next run
  expect(reports.get(L)).toMatchObject({ epoch: 13, seq: 1 });
  expect(heard.map((h) => `${h.epoch}/${h.seq}`)).toEqual(["12/4", "12/5", "13/1"]);
});

test("an action forwarded to this leader that fails here is answered with the error, not left to the asker's timeout", async () => {
  const sent: Array<{ peer: string; msg: unknown }> = [];
  const d = {
    log: memoryLogger(), stopped: () => false, consensus: { status: () => ({ leader: L }) }, peers: { name: () => "n2" },
    mesh: () => ({ send: (peer: string, msg: unknown) => sent.push({ peer, msg }) }),
    safe: (f: () => void) => f(),
    runAsLeader: async () => { throw new Error("ENOSPC: no space left on device, write 'flags.json.tmp'"); },
  } as unknown as RouterDeps;
  new MessageRouter(d).route("bbbbbbbbbbbbbbbb", { t: "action", id: 7, req: { kind: "pause" } } as unknown as AgentMsg);
  for (let i = 0; i < 10 && sent.length === 0; i++) await Promise.resolve();
  expect(sent).toEqual([{ peer: "bbbbbbbbbbbbbbbb", msg: { t: "action-resp", id: 7, result: { status: 500, ok: false, message: "pause failed on the leader: ENOSPC: no space left on device, write 'flags.json.tmp'" } } }]);
});

test("the leader's server first known here (a restarted agent, a new peer) starts a round at once; later reports do not", () => {
  let kicks = 0;
  const reports = new Map<string, PeerReport>();
  const d = {
    log: memoryLogger(), reports, now: () => 1000, stopped: () => false,
    loop: () => ({ kick: () => kicks++, primaryBack: () => undefined }),
    consensus: { status: () => ({ leader: L }) }, flags: { adopt: () => undefined }, peers: { name: () => "n1" }, exclusionHeard: () => undefined,
  } as unknown as RouterDeps;
  const r = new MessageRouter(d);
  const pg = { up: true, running: true, inRecovery: false, port: 5432 };
  const withPg = (seq: number, p: unknown) => ({ ...(state(3, seq) as object), pg: p }) as unknown as AgentMsg;
  r.route("bbbbbbbbbbbbbbbb", withPg(1, pg)); // not the leader
  expect(kicks).toBe(0);
  r.route(L, withPg(1, null)); // the leader, its server not known yet
  expect(kicks).toBe(0);
  r.route(L, withPg(2, pg));
  expect(kicks).toBe(1);
  r.route(L, withPg(3, pg));
  expect(kicks).toBe(1);
});
