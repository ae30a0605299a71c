// SIGINT/SIGTERM → an AbortSignal. The handlers stay installed until dispose(): a second Ctrl-C
// (npm forwards the terminal's SIGINT too) must not kill the demo halfway through its cleanup.
export function abortOnSignals(onRepeat: (sig: string) => void): { signal: AbortSignal; dispose(): void } {
  const ac = new AbortController();
  const handler = (sig: NodeJS.Signals) => {
    if (ac.signal.aborted) onRepeat(sig);
    else ac.abort(sig);
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
