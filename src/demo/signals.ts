// SIGINT/SIGTERM → an AbortSignal. The handlers stay installed until dispose(): a second Ctrl-C
// must not kill the demo halfway through its cleanup. Under `npm run`, one Ctrl-C arrives twice
// (from the terminal and relayed by npm); only a later one is answered.
export function abortOnSignals(onRepeat: (sig: string) => void): { signal: AbortSignal; dispose(): void } {
  const ac = new AbortController();
  let firstAt = 0;
  const handler = (sig: NodeJS.Signals) => {
    if (!ac.signal.aborted) {
      firstAt = performance.now();
      ac.abort(sig);
    } else if (performance.now() - firstAt > 1000) onRepeat(sig); // not the same Ctrl-C relayed by npm
  };
  const sigs = ["SIGINT", "SIGTERM"] as const;
  for (const s of sigs) process.on(s, handler);
  return { signal: ac.signal, dispose: () => { for (const s of sigs) process.off(s, handler); } };
}

/** Sleeps `ms`, returning early (false) when `signal` aborts. */
export function sleepUnlessAborted(ms: number, signal: AbortSignal): Promise<boolean> {
  if (signal.aborted) return Promise.resolve(false);
  return new Promise((resolve) => {
    const done = (v: boolean) => { clearTimeout(timer); signal.removeEventListener("abort", onAbort); resolve(v); };
    const onAbort = () => done(false);
    const timer = setTimeout(() => done(true), ms);
    signal.addEventListener("abort", onAbort);
  });
}
