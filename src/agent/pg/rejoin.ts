// Progress of `pgherd rejoin`, carried in this node's report so the CLI waits for the rebuild
// itself (requested → rewinding/cloning → starting → streaming, or failed), never for a report
// taken before the request. Pure: the loop feeds it what it does and sees.
import type { RejoinProgress } from "../../core/report.ts";

export type RejoinEvent =
  | { kind: "request"; clone: boolean }
  | { kind: "rebuild"; how: "rewind" | "clone" }
  | { kind: "starting" }
  | { kind: "failed"; error: string; dropped?: boolean }
  /** A monitoring round's view of the server. */
  | { kind: "observed"; standby: boolean; streaming: boolean };

export function rejoinStep(p: RejoinProgress | null, e: RejoinEvent): RejoinProgress | null {
  if (e.kind === "request") return { seq: (p?.seq ?? 0) + 1, state: "requested", error: null };
  if (!p || p.state === "streaming") return p;
  const { dropped: _, ...rest } = p;
  const pass = (state: "rewinding" | "cloning" | "starting"): RejoinProgress => ({ ...rest, state, error: null, passed: [...(p.passed ?? []), state].slice(-8) });
  switch (e.kind) {
    case "rebuild": return pass(e.how === "rewind" ? "rewinding" : "cloning");
    case "starting": return pass("starting");
    case "failed": return { ...rest, state: "failed", error: e.error.slice(0, 500), ...(e.dropped ? { dropped: true } : {}) };
    case "observed":
      // Done only once the rebuilt server runs as a standby that streams.
      return p.state === "starting" && e.standby && e.streaming ? { ...p, state: "streaming", error: null } : p;
  }
}
