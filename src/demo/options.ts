// Options shared by `npm run demo` and `pgherd demo`, validated in one place.
import { z } from "zod";

export interface DemoOptions {
  /** Keep the scratch directory after stopping. */
  keep: boolean;
  /** Give up (print the agents' last log lines, clean up, exit 1) after this long. */
  timeoutSec: number;
}

export const DEFAULT_TIMEOUT_SEC = 120;

const Timeout = z
  .string()
  .regex(/^\s*\d+\s*$/, "must be a whole number of seconds")
  .transform(Number)
  .pipe(z.number().min(10, "must be at least 10").max(3600, "must be at most 3600"));

/** Throws an Error naming the bad option. */
export function parseDemoOptions(raw: { keep?: boolean; timeout?: string }): DemoOptions {
  let timeoutSec = DEFAULT_TIMEOUT_SEC;
  if (raw.timeout !== undefined) {
    const r = Timeout.safeParse(raw.timeout);
    if (!r.success) throw new Error(`--timeout ${JSON.stringify(raw.timeout)}: ${r.error.issues[0]?.message ?? "invalid"}`);
    timeoutSec = r.data;
  }
  return { keep: raw.keep === true, timeoutSec };
}
