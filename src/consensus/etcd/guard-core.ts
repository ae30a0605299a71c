// Whether the guard the last read showed is the guard etcd keeps: pure. Each guard write compares
// the guard's mod revision of the last read. One sent without an answer (OutcomeUnknown) may still
// apply after any number of reads: queued behind a member's slow fsync, forwarded to etcd's leader
// late, while the client has moved on to a member whose reads still show the old guard. It can
// apply only while the guard's mod revision is still the one it compared, and mod revisions only
// grow: once a read shows another one, or a later guard write of this node is stored, it never can.
// Until then the guard read counts as committed to nobody (status().guardCommitted 0: no block in
// force, durability.ts blockInForce), and the leader writes the guard it read again, unchanged,
// against that revision (settleDue), so that the doubt ends even when no other guard write comes.

export interface GuardDoubt {
  /** The mod revision an unanswered guard write of this node compared: it applies if etcd still holds that one. null: none can still apply. */
  unanswered: number | null;
  /** A guard write was sent and no read came after it: the last read may show an older guard than etcd holds. */
  unread: boolean;
}

export const NO_DOUBT: GuardDoubt = { unanswered: null, unread: false };

/** What became of a guard write: etcd stored it, refused it (its compare failed, or an error etcd decided), or no answer came. */
export type GuardWriteOutcome = "stored" | "refused" | "unknown";

/** After a guard write that compared mod revision `compared`; a read is due either way. */
export function guardWritten(d: GuardDoubt, compared: number, outcome: GuardWriteOutcome): GuardDoubt {
  // Stored: the guard's mod revision moved past the one any earlier unanswered write compared.
  const unanswered = outcome === "stored" ? null : outcome === "unknown" ? compared : d.unanswered;
  return { unanswered, unread: true };
}

/** After a read of the prefix that showed the guard's mod revision `mod` (0: no guard key). */
export function guardRead(d: GuardDoubt, mod: number): GuardDoubt {
  return { unanswered: d.unanswered === mod ? mod : null, unread: false };
}

/** Whether the guard the last read showed counts as committed: no write of this node can still replace it unseen. */
export function guardSettled(d: GuardDoubt): boolean {
  return d.unanswered === null && !d.unread;
}

/**
 * Whether the leader writes the guard it read again, unchanged, against its mod revision: an
 * unanswered write may still apply over the guard the last read showed. Whichever of the two comes
 * first, the read after them shows another mod revision, and the other one never applies.
 */
export function settleDue(d: GuardDoubt): boolean {
  return d.unanswered !== null && !d.unread;
}

