// Worker half of test/core/election.sim.test.ts: runs the seeds it is sent (runSim, the same
// deterministic simulation as on the main thread) and posts back their results, or the first
// violation's message. The test splits the seeds over one worker per core.
import { paramsFor, runSim, SimViolation, type SimResult } from "./sim.ts";

export type SimJob = { seeds: number[] };
export type SimReply = { ok: true; results: SimResult[] } | { ok: false; violation: boolean; message: string };

declare const self: Worker;

self.onmessage = (e: MessageEvent<SimJob>) => {
  let reply: SimReply;
  try {
    reply = { ok: true, results: e.data.seeds.map((seed) => runSim(paramsFor(seed))) };
  } catch (err) {
    reply = { ok: false, violation: err instanceof SimViolation, message: err instanceof Error ? (err.stack ?? err.message) : String(err) };
  }
  self.postMessage(reply);
};
