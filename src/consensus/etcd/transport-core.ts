// What one failed attempt at one etcd endpoint means for the request (client.ts). Pure.
// etcd's JSON gateway answers a gRPC error as HTTP status + {error, code, message}; a proxy in front
// of a member may answer a page of its own. An answer is final only when etcd itself decided on the
// request; a refusal before the request reached raft (a learner, a member without a leader, one
// whose apply lags) leaves nothing applied, so any request goes to the next endpoint; a failure that
// does not say whether it applied sends a read (safe to repeat) to the next endpoint, never a write.

/** "not-applied": nothing was applied, try the next endpoint; "unknown": sent, outcome unknown; "final": etcd's answer. */
export type AttemptFailure = "not-applied" | "unknown" | "final";

/** etcd's refusals before a request is proposed: learner, no leader, not leader (lease forwarding), too many requests, not capable, proposal dropped. */
const REFUSED_BEFORE_RAFT = /rpc not supported for learner|etcdserver: no leader|etcdserver: not leader|too many requests|not capable|proposal dropped/;
/** etcd's answers after a proposal that say nothing about whether it applied. */
const OUTCOME_UNKNOWN = /request timed out|leader changed|server stopped|unhealthy cluster/;

/** An answer with an error: its HTTP status and etcd's message (undefined: not etcd's JSON error). */
export function classifyAnswer(status: number, message: string | undefined): AttemptFailure {
  if (message && REFUSED_BEFORE_RAFT.test(message)) return "not-applied";
  if (message && OUTCOME_UNKNOWN.test(message)) return "unknown";
  if (status === 429) return "not-applied"; // rate limited before it was taken
  if (status >= 500) return "unknown"; // a proxy's 502/503/504, an internal error
  return "final";
}

/** Whether the request goes to the next endpoint (else the caller gets the failure). */
export function tryNext(f: AttemptFailure, write: boolean): boolean {
  return f === "not-applied" || (f === "unknown" && !write);
}
