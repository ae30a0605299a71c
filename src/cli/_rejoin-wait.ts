// `pgherd rejoin --wait`: what one poll of /node says about the rejoin this command asked for.
// Pure. Only the progress of a request newer than the one seen before sending counts: a report
// taken before the agent took the request up says nothing about it.
import type { RejoinProgress } from "../core/report.ts";

export interface NodePg {
  action: string;
  note: string;
  error: string | null;
  rejoin?: RejoinProgress;
}

export type RejoinPoll = { line: string; done: null | "streaming" | "failed" };

/** The rejoin sequence number in a /node answer (0 when none was requested since the agent started). */
export function rejoinSeq(pg: NodePg | null | undefined): number {
  return pg?.rejoin?.seq ?? 0;
}

export function rejoinPoll(before: number, pg: NodePg | null | undefined): RejoinPoll {
  if (!pg) return { line: "no report yet", done: null };
  const r = pg.rejoin;
  if (!r || r.seq <= before) return { line: "requested: waiting for the agent to take it up", done: null };
  const detail = `${pg.note ? `: ${pg.note}` : ""}`;
  switch (r.state) {
    case "streaming": return { line: "rejoined: streaming from the primary", done: "streaming" };
    case "failed": return { line: `rejoin failed: ${r.error ?? pg.error ?? "unknown error"} (the agent retries; follow it with pgherd status)`, done: "failed" };
    case "requested": return { line: `requested${pg.action === "wait" ? detail : ""}`, done: null };
    default: return { line: `${r.state}${detail}`, done: null };
  }
}
