// A follower asks the leader for its cluster view (`view-req` over the mesh) for /cluster, /clusters,
// the dashboard's snapshots and replica health checks with ?lag=<time>. Those are unauthenticated and
// may come in bursts, and the leader builds a full view for each request, so get() shares one request
// in flight among every caller and reuses its outcome (a view, or null: no answer) for reuseMs after
// it arrived. ask() always asks: handover needs to know whether the peer answers now.
import type { ClusterView } from "../core/cluster-view.ts";
import { PendingRequests } from "./requests.ts";

/** How long an answer is reused: half the dashboard's one-second snapshot period (src/api/events.ts). */
export const LEADER_VIEW_REUSE_MS = 500;

type Answer = ClusterView | null;

export class LeaderView {
  private readonly requests = new PendingRequests<Answer>();
  private inFlight: { leader: string; answer: Promise<Answer> } | null = null;
  private last: { leader: string; at: number; view: Answer } | null = null;

  constructor(
    private readonly send: (to: string, msg: { t: "view-req"; id: number }) => boolean,
    private readonly now: () => number,
    private readonly reuseMs = LEADER_VIEW_REUSE_MS,
  ) {}

  /**
   * `leader`'s view, or null when it did not answer within timeoutMs (or is not connected). A caller
   * that joins a request in flight waits for that request, with the deadline its first caller gave.
   */
  get(leader: string, timeoutMs: number): Promise<Answer> {
    const last = this.last;
    if (last && last.leader === leader && this.now() - last.at < this.reuseMs) return Promise.resolve(last.view);
    if (this.inFlight?.leader === leader) return this.inFlight.answer;
    const answer = this.ask(leader, timeoutMs).then((view) => {
      if (this.inFlight?.answer === answer) {
        this.inFlight = null;
        this.last = { leader, at: this.now(), view };
      }
      return view;
    });
    this.inFlight = { leader, answer };
    return answer;
  }

  /** Asks `to` now, never from the cache: its view, or null without an answer within timeoutMs. */
  ask(to: string, timeoutMs: number): Promise<Answer> {
    return this.requests.ask(to, (id) => this.send(to, { t: "view-req", id }), timeoutMs, () => null);
  }

  /** A `view` message arrived from `from` (message-router.ts); unknown or late ids, and answers from another peer, are ignored. */
  answer(id: number, view: ClusterView, from: string): void {
    this.requests.answer(id, view, from);
  }

  /** The agent stops: every waiter gets null. */
  cancelAll(): void {
    this.requests.cancelAll(() => null);
  }
}
