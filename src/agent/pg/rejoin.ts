// Progress of `pgherd rejoin`, carried in this node's report so the CLI waits for the rebuild
// itself (requested → rewinding/cloning → starting → streaming, or failed), never for a report
// taken before the request. Pure: the loop feeds it what it does and sees.
import type { RejoinRequest } from "../../core/ha.ts";
import type { RejoinProgress } from "../../core/report.ts";

export type RejoinEvent =
  | { kind: "request"; clone: boolean }
  | { kind: "rebuild"; how: "rewind" | "clone" }
  | { kind: "starting" }
  | { kind: "failed"; error: string; dropped?: boolean }
  /** A monitoring round's view of the server. */
  | { kind: "observed"; standby: boolean; streaming: boolean };

/**
 * Why a rebuild request no longer holds, or null. A request is made for a node that follows: once
 * this node leads (or is taking the lease) its data is the cluster's newest, and a request left over
 * would rewind or replace it after a later loss of the lease, past rejoin.auto = false and a pause
 * that are there to keep such a former primary's data.
 */
export function rejoinDropReason(req: RejoinRequest | null, lead: { leading: boolean; acquiringLease: boolean }): string | null {
  if (!req) return null;
  if (lead.leading || lead.acquiringLease) return "this node became the leader: its data is the cluster's now";
  return null;
}

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
