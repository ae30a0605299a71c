// The idle cluster the footprint benches sample: `pgherd demo`'s 3-node loopback cluster started from
// `bin`, returned once it is ready and its start-up work (clones, first rounds) had 5 s to settle.
import type { DemoSettings } from "../src/demo/config.ts";
import { runDemo } from "../src/demo/run.ts";
import { createLogger } from "../src/log.ts";

export interface IdleDemo {
  /** The demo's scratch directory (its processes are found under it). */
  scratch: string;
  transcript: () => string;
  /** Stops the cluster and waits until it is gone. */
  stop(): Promise<void>;
}

export async function idleDemo(bin: string, settings?: DemoSettings): Promise<IdleDemo> {
  const abort = new AbortController();
  let scratch = "";
  let transcript = "";
  let ready: () => void;
  const isReady = new Promise<void>((r) => (ready = r));
  const demo = runDemo({
    pgherd: { argv: [bin], display: bin },
    options: { keep: false, timeoutSec: 180 },
    stop: abort.signal,
    log: createLogger("error", "bench"),
    settings,
    out: (t) => {
      transcript += t;
      scratch ||= /under (\/tmp\/pgherd-demo-\S+)/.exec(transcript)?.[1] ?? "";
      if (t.startsWith("\nready:")) ready();
    },
  });
  const stop = async () => {
    abort.abort("bench done");
    await demo;
  };
  if ((await Promise.race([isReady.then(() => "ready"), demo.then(() => "ended")])) !== "ready") {
    process.stderr.write(transcript);
    throw new Error("the demo cluster did not become ready");
  }
  await Bun.sleep(5000);
  return { scratch, transcript: () => transcript, stop };
}
