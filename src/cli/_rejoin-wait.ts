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

export type RejoinPoll = { line: string; done: null | "streaming" | "failed"; passed: readonly string[] };

/** The rejoin sequence number in a /node answer (0 when none was requested since the agent started). */
export function rejoinSeq(pg: NodePg | null | undefined): number {
  return pg?.rejoin?.seq ?? 0;
}

export function rejoinPoll(before: number, pg: NodePg | null | undefined): RejoinPoll {
  if (!pg) return { line: "no report yet", done: null, passed: [] };
  const r = pg.rejoin;
  if (!r || r.seq <= before) return { line: "requested: waiting for the agent to take it up", done: null, passed: [] };
  const detail = `${pg.note ? `: ${pg.note}` : ""}`;
  const passed = r.passed ?? [];
  switch (r.state) {
    case "streaming": return { line: "rejoined: streaming from the primary", done: "streaming", passed };
    case "failed": return { line: `rejoin failed: ${r.error ?? pg.error ?? "unknown error"} ${r.dropped ? "(not retried: run pgherd rejoin again once it can succeed)" : "(the agent retries; follow it with pgherd status)"}`, done: "failed", passed };
    case "requested": return { line: `requested${pg.action === "wait" ? detail : ""}`, done: null, passed };
    default: return { line: `${r.state}${detail}`, done: null, passed };
  }
}

/**
 * The lines one poll adds to the output: the steps the rebuild went through that no earlier line
 * showed (a rewind and a start can both end between two polls), then the poll's own line when it
 * changed. `shown` (the steps already printed) is updated.
 */
export function rejoinLines(poll: RejoinPoll, last: string, shown: Set<string>): string[] {
  const current = /^(rewinding|cloning|starting)\b/.exec(poll.line)?.[1];
  const out = poll.passed.filter((s) => s !== current && !shown.has(s));
  for (const s of out) shown.add(s);
  if (current) shown.add(current);
  if (poll.line !== last) out.push(poll.line);
  return out;
}
