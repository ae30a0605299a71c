// The etcd backend's term as this agent keeps it, and what an etcd restored from a snapshot does to
// it. Pure: the backend (backend.ts observeLeader) passes every read through readTerm.
//
// The term is an etcd revision: the leader key's create revision, or the last-leader key's mod
// revision once the key is gone; it names the vacancy this node stops streaming for and publishes
// its final position for (`detachedFor = term + 1`, elect-core.ts). etcd's revisions never go back,
// except when etcd is restored from a snapshot without `--bump-revision`: then its revisions
// restart below the ones this node saw. Kept as the highest ever seen (review), the term of every
// later leader would be below it: once that leader's key went, no node stopped streaming from it
// (its final position of the vacancy before said `term + 1` already), and a candidate counted
// final positions published before that leader's term. A read that shows the restore (its revision
// below one read before, a leader key below the term, or the last-leader term below it with no key)
// puts the term back to what etcd shows, the final position is forgotten and the report written
// again, so the next vacancy runs the whole detach and final-position protocol.
//
// One exception: a restored etcd without a leader key. Its final positions may be the snapshot's,
// of an earlier vacancy (below the term kept), and would count for a term put back to the
// snapshot's last leader: the term stays (the vacancy is the one of the leader this node followed
// before the restore, and final positions for it are published as before) until etcd shows a take
// after the restore (a leader key, or another last-leader term), whose term then counts.
import type { Snapshot } from "./elect-core.ts";

export interface TermView {
  /** The term of the latest leader this node knows of (0: none yet). */
  term: number;
  /** The highest header revision read (since the last restore read). */
  revision: number;
  /**
   * A restore read without a leader key: the last-leader term etcd showed then, while the term
   * stays above it (see above); null once etcd shows a take after the restore, or none.
   */
  restoredAt: number | null;
}

export const NO_TERM: TermView = { term: 0, revision: 0, restoredAt: null };

export interface TermRead {
  view: TermView;
  /** Why this read shows etcd restored from a snapshot (for the log), or null. */
  restored: string | null;
  /**
   * "final": forget the term this node's final position is for and write its report again (the next
   * vacancy detaches anew); "report": write the report again (etcd may hold an older one of it); null: nothing.
   */
  reset: "final" | "report" | null;
}

/** The term after read `s` (`detachedFor`: the term this node's published final position is for, null: none). */
export function readTerm(v: TermView, detachedFor: number | null, s: Pick<Snapshot, "revision" | "leader" | "lastTerm">): TermRead {
  const key = s.leader?.term ?? null;
  const shown = Math.max(s.lastTerm, key ?? 0);
  const restored =
    s.revision < v.revision ? `etcd answers at revision ${s.revision}, below revision ${v.revision} read before`
    : v.restoredAt !== null ? null // the term is kept above etcd's on purpose (below)
    : key !== null && key < v.term ? `the leader key's term ${key} is below term ${v.term}, seen before`
    : key !== null && detachedFor !== null && key < detachedFor ? `the leader key of term ${key} is back after this node saw it gone`
    : key === null && s.lastTerm < v.term ? `the last leader's term ${s.lastTerm} is below term ${v.term}, seen before`
    : null;
  const revision = restored ? s.revision : Math.max(v.revision, s.revision);
  if (key !== null) {
    if (restored || v.restoredAt !== null) return { view: { term: shown, revision, restoredAt: null }, restored, reset: "final" };
    return { view: { term: Math.max(v.term, shown), revision, restoredAt: null }, restored: null, reset: null };
  }
  if (restored) {
    const view = shown < v.term ? { term: v.term, revision, restoredAt: s.lastTerm } : { term: shown, revision, restoredAt: null };
    return { view, restored, reset: "report" };
  }
  // A take after the restore whose key is gone already (this node never read it): its vacancy now.
  if (v.restoredAt !== null && s.lastTerm !== v.restoredAt) return { view: { term: shown, revision, restoredAt: null }, restored: null, reset: "final" };
  return { view: { term: Math.max(v.term, shown), revision, restoredAt: v.restoredAt }, restored: null, reset: null };
}

/** This node took the leader key of `term` (a take it won): the term is the key's. */
export function termTaken(v: TermView, term: number): TermView {
  return { term, revision: Math.max(v.revision, term), restoredAt: null };
}
