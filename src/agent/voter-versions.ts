// What a node knows of its peers' cluster-wide configuration versions (built-in backend; kept by
// src/agent/dynamic-config.ts, read by the leader's side, dynamic-config-leader.ts): the version
// each last said it holds (version reports, acknowledgements, answers; a node never goes back to an
// earlier version, so an old report can only understate), and, for a leader, the term in which each
// answered its read. A leader makes a version only once a majority of voters answered its read in
// its term, and only on top of one a majority holds (S28, docs/design.md).
import { isNewer } from "../config/dynamic.ts";

export interface Version { version: number; term: number }

export class VoterVersions {
  private readonly held = new Map<string, Version>();
  private readonly readIn = new Map<string, number>();
  private readonly readAsked = new Map<string, number>();
  private readonly fetchAsked = new Map<string, number>();

  /** `self` counts as holding whatever this node holds; a peer is asked at most once per `everyMs`. */
  constructor(private readonly self: string, private readonly everyMs: number) {}

  /** A peer said what it holds (null: nothing). */
  heard(peer: string, v: Version | null): void {
    if (v) this.held.set(peer, { version: v.version, term: v.term });
    else this.held.delete(peer);
  }

  /** A peer answered the read of this node's leadership in `term`. */
  answered(peer: string, term: number, v: Version | null): void {
    this.heard(peer, v);
    this.readIn.set(peer, term);
  }

  /** Whether to ask `peer` for its document now (at most once per `everyMs`). */
  fetchDue(peer: string, now: number): boolean {
    if (now - (this.fetchAsked.get(peer) ?? -Infinity) < this.everyMs) return false;
    this.fetchAsked.set(peer, now);
    return true;
  }

  /** The voters to ask for a read in `term` now: connected, not answered in it, not asked within `everyMs`. */
  readsDue(voters: readonly string[], term: number, connected: ReadonlySet<string>, now: number): string[] {
    const due = voters.filter((p) => p !== this.self && this.readIn.get(p) !== term && connected.has(p) && now - (this.readAsked.get(p) ?? -Infinity) >= this.everyMs);
    for (const p of due) this.readAsked.set(p, now);
    return due;
  }

  /**
   * Whether `doc` is the newest version a majority of `voters` could hold, as far as the leader of
   * `term` can tell: a majority answered its read in that term and none of them holds a later one.
   */
  newestFor(doc: Version | null, voters: readonly string[], term: number): boolean {
    return this.readBy(voters, term).length >= Math.floor(voters.length / 2) + 1 && !this.ahead(doc, voters);
  }

  /** Voters (this node included) that answered the read in `term`. */
  readBy(voters: readonly string[], term: number): string[] {
    return voters.filter((p) => p === this.self || this.readIn.get(p) === term);
  }

  /** Voters (this node included) known to hold `v`. */
  holding(v: Version, voters: readonly string[]): string[] {
    return voters.filter((p) => {
      if (p === this.self) return true;
      const h = this.held.get(p);
      return h !== undefined && h.version === v.version && h.term === v.term;
    });
  }

  /** A peer among `among` known to hold a later version than `than`. */
  ahead(than: Version | null, among: readonly string[]): [string, Version] | undefined {
    return [...this.held.entries()].find(([p, v]) => among.includes(p) && isNewer(v, than));
  }

  /** The version `peer` last said it holds, or undefined. */
  versionOf(peer: string): Version | undefined {
    return this.held.get(peer);
  }

  /**
   * Whether a peer among `among` (the voters) is known to hold a document. Not any peer: a node
   * that is not a voter (a joiner with a leftover document) is never fetched from, so counting it
   * kept a new cluster from making version 1 and a leader from any voter change (re-review).
   */
  heldAmong(among: readonly string[]): boolean {
    return among.some((p) => p !== this.self && this.held.has(p));
  }
}
