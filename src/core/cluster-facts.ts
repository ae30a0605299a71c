// Facts about the cluster derived from what this agent heard: whose report is fresh, who is a
// standby member, which PostgreSQL the leader runs, who could be a switchover target. Pure: the
// agent passes a snapshot (reports, peers, membership, the time) and gets answers.
import { HEAR_STANDBYS_MS } from "./durability.ts";
import type { PgReport } from "./report.ts";
import type { Candidate } from "./switchover.ts";
import { laterMessage, syncCandidates, syncSet as syncSetOf, type Heard, type LeaderRun, type SyncSet } from "./sync-exclusion.ts";

/** The last state message of a peer, stamped with the local monotonic time it arrived. */
export interface PeerReport {
  report: PgReport | null;
  role: "database" | "witness";
  at: number;
  nofailover: boolean;
  /** Absent from older versions (core/sync-exclusion.ts knownPromotable). */
  promotable?: boolean;
  epoch?: number;
  /** The message's number in the run `epoch` (absent from older versions). */
  seq?: number;
  /** The last leader state message it processed (absent from older versions). */
  heard?: Heard;
  /** Since when its reports say its data cannot be read (absent: they do not). */
  unreadableSince?: number;
}

/**
 * Whether a peer's state message replaces the report held, by (epoch, seq): not when it is older, a
 * late frame (of an earlier message, or of the peer's previous run: a restarted peer's old
 * connection drains after its new one is in use, mesh.ts). Such a frame is dropped whole: it would
 * make the leader count the peer as it was then, promotable say, and a standby take a withdrawn
 * record (laterMessage). Never taken after a silence either: a stale record could then cap a
 * standby that is named. Epochs go back only if run-epoch.json is removed while the clock is behind
 * the last start (store/run-epoch.ts); the router warns about a drop from an earlier run.
 */
export function newerReport(held: PeerReport | undefined, peer: string, msg: { epoch?: number; seq?: number }): boolean {
  const last = held?.epoch !== undefined && held.seq !== undefined ? { leader: peer, epoch: held.epoch, seq: held.seq } : null;
  return laterMessage(last, peer, msg.epoch, msg.seq);
}

/** What the beacon and the mesh told us about a peer. */
export interface PeerFacts {
  id: string;
  name: string;
  role: "database" | "witness";
  /** Mesh address "host:port" (may be "" when only the mesh handshake is known). */
  mesh: string;
  /** IP of the peer's authenticated mesh connection ("" while none was made). */
  address: string;
  connected: boolean;
}

export interface FactsSnapshot {
  /** neverPromoted: this node can never be promoted (tagged nofailover, or priority 0). */
  self: { id: string; name: string; role: "database" | "witness"; neverPromoted: boolean; report: PgReport | null };
  now: number;
  /** When this agent started (monotonic ms): a member never heard from is down since then. */
  startedAt: number;
  /** A report older than this is stale (see freshMs). */
  freshMs: number;
  voters: readonly string[];
  leader: string | null;
  reports: ReadonlyMap<string, PeerReport>;
  peers: readonly PeerFacts[];
}

/** How long a peer's report stays fresh: five monitoring rounds, at least 5 s. */
export function freshMs(loopMs: number): number {
  return Math.max(5000, 5 * loopMs);
}

/** "host" of a "host:port" or "[v6]:port" address ("" when there is none). */
export function hostOf(addr: string): string {
  const i = addr.lastIndexOf(":");
  return i > 0 ? addr.slice(0, i).replace(/^\[|\]$/g, "") : "";
}

/** "host:port" with brackets around an IPv6 host. */
export function joinHostPort(host: string, port: number): string {
  return `${host.includes(":") ? `[${host}]` : host}:${port}`;
}

export function freshReport(s: FactsSnapshot, id: string): PgReport | null {
  if (id === s.self.id) return s.self.report;
  const r = s.reports.get(id);
  if (!r || s.now - r.at > s.freshMs) return null;
  return r.report;
}

/** The PostgreSQL port of a member's last report, however old (null: none heard since this agent started). */
export function lastPort(s: FactsSnapshot, id: string): number | null {
  const r = id === s.self.id ? s.self.report : s.reports.get(id)?.report;
  return r?.port ?? null;
}

/** How long a member has not reported (0 while it reports). */
export function downForMs(s: FactsSnapshot, id: string): number {
  const r = s.reports.get(id);
  if (!r) return s.now - s.startedAt;
  const age = s.now - r.at;
  return age < s.freshMs ? 0 : age;
}

/**
 * How long a member's replication slot may count as idle toward slots.retain_minutes: the member not
 * heard from; or, for a member whose data its reports cannot read (slotKeptMembers), since its first
 * such report. A member that reports otherwise counts as here, whatever its server does: its slot is
 * what a standby waits for before it starts, and one that clones, rewinds or replays a backup's WAL
 * reports a stopped server for as long as that runs (re-review: counting a stopped server dropped
 * the slot of a long clone, and kept a returning standby waiting for a slot that never came back).
 * slots.max_slot_wal_keep_size bounds the WAL of a standby that reports and never starts.
 */
export function slotIdleForMs(s: FactsSnapshot, id: string): number {
  const down = downForMs(s, id);
  if (down > 0) return down;
  const since = s.reports.get(id)?.unreadableSince;
  return since === undefined ? 0 : s.now - since;
}

/** A member's unreadableSince after a report at `now`: since its first report of data it cannot read, while they go on. */
export function unreadableSince(held: PeerReport | undefined, report: PgReport | null, now: number): number | undefined {
  const unreadable = (r: PgReport | null | undefined) => r?.data === "unknown";
  if (!unreadable(report)) return undefined;
  return unreadable(held?.report) ? (held!.unreadableSince ?? now) : now;
}

/**
 * Members whose slot is kept when it exists, though none is made for them: those whose data the
 * last report could not read (one failed pg_controldata under load; review: that dropped the slot at
 * once, and the WAL the member needs went at the next checkpoint). The slot goes once it has been idle
 * past slots.retain_minutes, as a down member's.
 */
export function slotKeptMembers(s: FactsSnapshot): string[] {
  return s.voters.filter((v) => v !== s.self.id && peer(s, v)?.role !== "witness" && s.reports.get(v)?.report?.data === "unknown");
}

function peer(s: FactsSnapshot, id: string): PeerFacts | undefined {
  return s.peers.find((p) => p.id === id);
}

export function roleOf(s: FactsSnapshot, id: string): "database" | "witness" {
  if (id === s.self.id) return s.self.role;
  return s.reports.get(id)?.role ?? peer(s, id)?.role ?? "database";
}

export function nameOf(s: FactsSnapshot, id: string): string {
  return id === s.self.id ? s.self.name : (peer(s, id)?.name ?? id);
}

/**
 * The address a peer is reached at: the remote address of its authenticated mesh connection (the
 * peer table keeps nothing else), null while none is known. pg_hba and the upstream use only this.
 */
export function peerHost(s: FactsSnapshot, id: string): string | null {
  return peer(s, id)?.address || null;
}

/** Database voters other than this node: one replication slot each on the primary. */
export function standbyMembers(s: FactsSnapshot): string[] {
  // No slot for a witness, nor for a member whose data it refuses (another cluster's, or one it
  // cannot read: it waits for an operator, and its slot would hold WAL meanwhile).
  return s.voters.filter((v) => {
    const data = s.reports.get(v)?.report?.data;
    return v !== s.self.id && peer(s, v)?.role !== "witness" && data !== "foreign" && data !== "unknown";
  });
}

/** The standby members that may be synchronous standbys: known promotable (core/sync-exclusion.ts). */
export function syncMembers(s: FactsSnapshot): string[] {
  return syncCandidates(standbyMembers(s), (id) => s.reports.get(id));
}

/**
 * The synchronous set of this node as leader `run` needing k standbys (core/sync-exclusion.ts
 * syncSet): no fill while a standby member is unheard within HEAR_STANDBYS_MS of this agent's
 * start (it may be promotable); only promotable standbys reporting (a report younger than freshMs)
 * count toward k.
 */
export function syncSet(s: FactsSnapshot, x: { k: number; run: LeaderRun | null; lastNamed: (id: string) => number | undefined }): SyncSet {
  const hearing = s.now - s.startedAt < HEAR_STANDBYS_MS && unheardStandbys(s).length > 0;
  return syncSetOf({
    k: x.k, run: x.run, lastNamed: x.lastNamed, hearing, members: standbyMembers(s), announced: (id) => s.reports.get(id), reporting: (id) => downForMs(s, id) === 0,
  });
}

/** Standby members without a state message since this agent started (their promotability unknown). */
export function unheardStandbys(s: FactsSnapshot): string[] {
  return standbyMembers(s).filter((id) => !s.reports.has(id));
}

/**
 * Standby members reporting now over a live mesh connection (they could re-point to a new
 * primary). A fresh report alone is not enough: a crashed host's last report stays fresh for
 * freshMs, and a new primary would hold its writes that long for a standby that is gone.
 */
export function reachableStandbys(s: FactsSnapshot): number {
  return standbyMembers(s).filter((id) => downForMs(s, id) === 0 && peer(s, id)?.connected === true).length;
}

/** The leader's PostgreSQL, when the leader is another node whose fresh report and address we have. */
export function leaderPg(s: FactsSnapshot): { id: string; addr: string; report: PgReport } | null {
  if (!s.leader || s.leader === s.self.id) return null;
  const r = freshReport(s, s.leader);
  const host = peerHost(s, s.leader);
  if (!r || !host) return null;
  return { id: s.leader, addr: joinHostPort(host, r.port), report: r };
}

/** Every voter reported an empty data directory and is not creating data. */
export function nobodyHasData(s: FactsSnapshot): boolean {
  return s.voters.every((v) => {
    if (v === s.self.id || s.reports.get(v)?.role === "witness") return true;
    const r = freshReport(s, v);
    return r !== null && r.data === "empty" && r.action !== "initdb" && r.action !== "clone";
  });
}

/**
 * Why node `id` may not become a voter yet (null: it may). A database node votes with the position
 * of its data directory: one holding another cluster's data (another system identifier) would vote
 * with that cluster's WAL position, refuse every candidate "behind" it and win the election itself,
 * then refuse to run a primary on data that is not the cluster's; one whose data cannot be read
 * never votes (counted as down from its first day). Neither is added until its data directory is
 * empty (it clones once a voter) or this cluster's, as its own report says: not before its first
 * report either (`clusterSystemId`: the leader's record of the cluster's identity). A witness holds no data.
 */
export function joinBlocker(s: FactsSnapshot, id: string, clusterSystemId: string | null): string | null {
  if (roleOf(s, id) === "witness") return null;
  const pg = s.reports.get(id)?.report;
  if (!pg) return "no report of its data directory yet";
  if (pg.data === "empty") return null;
  if (pg.data === "present" && pg.systemId !== null && pg.systemId === clusterSystemId) return null;
  if (pg.data === "unknown") return "its data directory holds files but no pg_control it can read (it could not vote): empty it";
  if (pg.systemId === null) return "the system identifier of its data directory is not known yet";
  return `its data directory holds another cluster (system identifier ${pg.systemId}, this cluster's is ${clusterSystemId ?? "not recorded yet"}): empty it`;
}

/** Some other member has data or is creating it (any report, fresh or not: it may have some). */
export function othersHaveData(s: FactsSnapshot): boolean {
  return [...s.reports.entries()].some(([id, r]) => id !== s.self.id && r.report !== null &&
    (r.report.data === "present" || r.report.action === "initdb" || r.report.action === "clone"));
}

/** Connected with a fresh report. */
export function reachable(s: FactsSnapshot, id: string): boolean {
  if (id === s.self.id) return true;
  const r = s.reports.get(id);
  return !!peer(s, id)?.connected && r !== undefined && s.now - r.at < s.freshMs;
}

/** Every node we know of: ourselves, the voters, the discovered peers. */
export function knownIds(s: FactsSnapshot): string[] {
  return [...new Set([s.self.id, ...s.voters, ...s.peers.map((p) => p.id)])];
}

/** A peer that said it can never be promoted (nofailover, or priority 0: `promotable` false); unknown: false. */
function cannotLead(r: PeerReport | undefined): boolean {
  return !!r && (r.nofailover || r.promotable === false);
}

/** Whether `id` can never be promoted: this node's tag or priority, a peer's own announcement. */
export function neverPromoted(s: FactsSnapshot, id: string): boolean {
  return id === s.self.id ? s.self.neverPromoted : cannotLead(s.reports.get(id));
}

/** Switchover / failover candidates as the pure checks in core/switchover.ts take them (reports of connected members only). */
export function candidates(s: FactsSnapshot): Candidate[] {
  const voters = new Set(s.voters);
  return knownIds(s).map((id) => ({
    id, name: nameOf(s, id), voter: voters.has(id), witness: roleOf(s, id) === "witness",
    neverPromoted: neverPromoted(s, id),
    // A member whose agent is not connected cannot take part in a handover: its last report (fresh
    // for a few rounds) would otherwise still show it streaming, or lagging, as it was.
    report: reachable(s, id) ? freshReport(s, id) : null,
  }));
}

/**
 * The leader's PostgreSQL answers again as a primary after its own report said it did not answer (a
 * crashed postmaster restarted in place, a restart): a standby whose stream broke should try to
 * stream now, not after its next wal_retrieve_retry_interval. Only an edge between two reports of
 * the same leader, from down to a writable primary: a promotion (the report before said standby) is
 * followed by re-pointing, and a first report (a connection just made) says nothing about a stream
 * that broke.
 */
export function leaderPrimaryBack(prev: PgReport | null | undefined, next: PgReport | null): boolean {
  return !!prev && !prev.up && !!next && next.up && next.inRecovery === false;
}

/**
 * The leader's report lists `slot` (this node's replication slot) and the one before did not: a
 * standby waiting for its slot (core/ha.ts) clones or streams now, not at its next round.
 */
export function leaderSlotCreated(prev: PgReport | null | undefined, next: PgReport | null, slot: string): boolean {
  return !!prev && !!next && !prev.slots.includes(slot) && next.slots.includes(slot);
}
