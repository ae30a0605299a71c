// live.js is browser code: served as text by static.ts (imported `with { type: "text" }`) and
// imported as a module by app.js in the browser and by its test.
declare const text: string;
export default text;

export const STALE_AFTER_INTERVALS: number;
export const DEFAULT_INTERVAL_MS: number;
export function intervalOf(snap: unknown): number;
export function staleAfterMs(intervalMs: number): number;
export interface ConnState {
  now: number;
  startedAt: number;
  lastSnapshotAt: number | null;
  intervalMs: number;
  stream: "connecting" | "open" | "error";
  renderError: string | null;
}
export function connBadge(s: ConnState): { text: string; cls: "ok" | "warn" | "bad" };
