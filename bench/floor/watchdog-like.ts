// Skeleton of the fencing watchdog's unavoidable work: an inotify watch (fs.watch) on the directory
// the lease file is renamed into, one readFileSync of the file per event, and the same 1 s timer as
// the idle skeleton (the real watchdog also wakes once a second without a change). On SIGTERM it
// prints how many events it saw, so the bench can check the skeleton did its work.
import { readFileSync, watch } from "node:fs";
import { join } from "node:path";

export function watchdogLike(dir: string): void {
  const started = performance.now();
  let events = 0;
  let bytes = 0;
  watch(dir, { persistent: true }, (_event, name) => {
    if (name !== "lease") return;
    events++;
    try {
      bytes += readFileSync(join(dir, "lease")).length;
    } catch {
      // renamed over meanwhile: the next event reads it
    }
  });
  setInterval(() => {}, 1000);
  process.once("SIGTERM", () => {
    process.stdout.write(`${JSON.stringify({ events, bytes, seconds: (performance.now() - started) / 1000 })}\n`, () => process.exit(0));
  });
}
