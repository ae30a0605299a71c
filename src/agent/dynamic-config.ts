// The cluster-wide configuration on this node: the document (dynamic-config.json in the state
// dir, written durably), what is in force from it, and how versions travel. The leader makes a
// new version (compare-and-set, src/config/dynamic.ts), stores it, sends it to every node and
// waits for a majority of voters to store it. Every node says its version every second;
// a node that hears of a later version asks that peer for it, so a node that was down, cloned or
// rewound catches up. A version the leader confirmed (a majority of voters stored it while the
// leader held its lease) is never lost: a leader makes a version only after it read, in its term,
// what a majority of voters holds (and took the latest), and only on top of a version a majority
// holds, so it has at most one version no majority holds, and a later leader's read meets every
// confirmed one. A version not confirmed (202, 503) may be replaced by a later leader's.
// With a shared store (etcd, `shared` below) the `config` key is the cluster's document: the
// leader writes each version there by compare-and-swap on the key's revision (a refused write
// answers 409), every node adopts the later version it reads there, and no version travels over
// the mesh.
import { join } from "node:path";
import { z } from "zod";
import type { Config } from "../config/schema.ts";
import { ARCHIVE_KEYS } from "../config/schema-backup.ts";
import { leftOutWhenStored } from "../config/pg-values.ts";
import { dynamicDoc, type DynamicDoc, type DynamicSettings } from "../config/schema-dynamic.ts";
import { configErrorMap, issueLines } from "../config/errors.ts";
import * as D from "../config/dynamic.ts";
import { majority } from "../core/quorum.ts";
import type { Logger } from "../log.ts";
import { setClusterAccessRules } from "../ops/access.ts";
import { readJsonSync, writeJsonDurableSync } from "../store/durable.ts";
import type { ActionResult } from "../api/actions-contract.ts";
import type { HistoryEntry } from "./history.ts";
import type { AgentMsg } from "./messages.ts";
import { casRefusal, type StateSlot } from "./cluster-state.ts";
import { VoterVersions } from "./voter-versions.ts";
import { scrubCredentials } from "../config/redact.ts";

const REQUEST_EVERY_MS = 1000;
const SAY_EVERY_MS = 1000;
/** A leader seeds version 1 only after leading this long (time to hear every peer's version). */
const SEED_AFTER_MS = 2000;

export interface DynamicConfigDeps {
  cfg: Config;
  nodeId: string;
  log: Logger;
  send(to: string, msg: AgentMsg): boolean;
  connected(): string[];
  /** term, whether this node leads with a lease, and the voters. */
  leadership(): { term: number; leading: boolean; voters: string[] };
  record(e: Omit<HistoryEntry, "id" | "at">): void;
  nameOf(id: string): string;
  /** The durability flags.json kept before this version (seeds version 1). */
  legacyDurability(): DynamicSettings["durability"] | undefined;
  /** Something in force changed (keys): apply it (rewrite PostgreSQL's files, tell peers). */
  applied(keys: string[]): void;
  now(): number;
  sleep(ms: number): Promise<void>;
  /** The shared store's `config` key (etcd); absent: versions travel over the mesh. */
  shared?: StateSlot<DynamicDoc>;
  /** Leader: what its PostgreSQL refuses in a change's parameters (its own words), or null (src/postgres/check-parameters.ts); absent: not checked. */
  refusedParameters?(params: Readonly<Record<string, string | number | boolean>>): Promise<string | null>;
}

/** What GET /config shows of the cluster-wide configuration. */
export interface DynamicView {
  /** null: no cluster-wide document yet (every node runs its pgherd.toml values). */
  cluster: DynamicDoc | null;
  /** Local pgherd.toml values of cluster-wide keys that differ from the cluster's (not applied). */
  conflicts: D.Conflict[];
}

let parametersNow: { cluster: DynamicSettings | null; owned: string[] } = { cluster: null, owned: [] };

/** The PostgreSQL parameters to write into pgherd.conf: the cluster's, else this node's [postgres.parameters]. */
export function pgParametersInForce(local: Readonly<Record<string, string | number | boolean>>): Readonly<Record<string, string | number | boolean>> {
  return D.parametersInForce(parametersNow.cluster, local, parametersNow.owned).parameters;
}

/** failover.max_lag_bytes in force (the async floor on the primary): the cluster's, else this node's. */
export function maxLagBytesInForce(local: number): number {
  return parametersNow.cluster?.failover.max_lag_bytes ?? local;
}

export class DynamicConfig {
  private readonly file: string;
  private doc: DynamicDoc | null;
  private readonly peers: VoterVersions;
  private rejected = "";
  private leadingSince: number | null = null;
  private lastSaid = -Infinity;
  private changing = false;
  private conflictText = "";

  constructor(private readonly d: DynamicConfigDeps) {
    this.file = join(d.cfg.state_dir, "dynamic-config.json");
    this.peers = new VoterVersions(d.nodeId, REQUEST_EVERY_MS);
    let doc: DynamicDoc | null = null;
    try {
      doc = readJsonSync(this.file, dynamicDoc) ?? null;
      if (doc) this.warnLeftOut(readJsonSync(this.file, z.unknown()), `${this.file} (version ${doc.version})`);
    } catch (e) {
      d.log.error(`${this.file}: ${(e as Error).message}: ignoring it, the leader's version replaces it`);
    }
    this.doc = doc;
    this.inForce(doc);
    d.shared?.onChange((v) => this.fromStore(v.value));
  }

  /** A version read from the shared store: kept when later than ours. */
  private fromStore(doc: DynamicDoc): void {
    if (!D.isNewer(doc, this.doc)) return;
    const from = this.doc?.version ?? 0;
    this.store(doc);
    this.d.log.warn(`cluster-wide configuration is now version ${doc.version} (was ${from}; made by ${doc.by} at ${doc.at}; read from etcd)`);
  }

  /** A document holds settings this version refuses: they are left out (pg-values.ts LEFT_OUT_WHEN_STORED); say so. */
  private warnLeftOut(raw: unknown, what: string): void {
    const keys = leftOutWhenStored(raw);
    if (keys.length) this.d.log.warn(`cluster-wide configuration ${what}: postgres.parameters ${keys.join(", ")} left out (pgherd sets them itself or they would end a standby's recovery); \`pgherd config set postgres.parameters.NAME=\` removes each for good`);
  }

  get(): DynamicDoc | null {
    return this.doc;
  }

  local(): D.LocalDynamic {
    const c = this.d.cfg;
    return { durability: c.durability, parameters: c.postgres.parameters, access: c.access, maxLagBytes: c.failover.max_lag_bytes };
  }

  durability(): DynamicSettings["durability"] {
    return this.doc?.settings.durability ?? this.d.legacyDurability() ?? this.d.cfg.durability;
  }

  /**
   * The durability the PostgreSQL side runs with. "async" (no synchronous standby) is trusted on a
   * leader of the built-in backend only once its document is the newest a majority holds (a read in
   * its term, voter-versions.ts newestFor): a leader elected while it missed a change to quorum or
   * strict (cut off while it was made) would otherwise promote and acknowledge writes alone. Until
   * then: quorum. A leader waits for that read before a promotion (confirmAsync).
   */
  durabilityInForce(): DynamicSettings["durability"] {
    const m = this.durability();
    const l = this.d.leadership();
    if (m !== "async" || !l.leading || this.d.shared) return m;
    return this.peers.newestFor(this.doc, this.votersOf(l), l.term) ? m : "quorum";
  }

  /** Leader, before a promotion: ask for this term's read now and wait up to `timeoutMs` for durabilityInForce to settle. */
  async confirmAsync(timeoutMs: number): Promise<void> {
    const l = this.d.leadership();
    if (this.durability() !== "async" || !l.leading || this.d.shared) return;
    this.askReads(l);
    await this.whileLeading(l.term, timeoutMs, () => this.durabilityInForce() === "async");
  }

  maxLagBytes(): number {
    return this.doc?.settings.failover.max_lag_bytes ?? this.d.cfg.failover.max_lag_bytes;
  }

  view(): DynamicView {
    return { cluster: this.doc, conflicts: this.conflicts() };
  }

  private conflicts(): D.Conflict[] {
    if (!this.doc) return [];
    const c = this.d.cfg;
    const local = this.local();
    const out = D.conflicts(local, { durability: c.durability !== "quorum", maxLagBytes: c.failover.max_lag_bytes !== 1048576 }, this.doc.settings);
    for (const k of parametersNow.owned.length ? D.parametersInForce(this.doc.settings, {}, parametersNow.owned).dropped : []) {
      out.push({ key: `postgres.parameters.${k}`, local: "managed by this node's own config ([backup]/[slots])", cluster: JSON.stringify(this.doc.settings.postgres.parameters[k]) });
    }
    return out;
  }

  /** Set what is in force from the document (after a change from `prev`) and report conflicts. */
  private inForce(prev: DynamicDoc | null): void {
    const c = this.d.cfg;
    const owned = [...(c.backup.tool !== "none" ? ARCHIVE_KEYS : []), ...(c.slots.max_slot_wal_keep_size ? ["max_slot_wal_keep_size"] : [])];
    parametersNow = { cluster: this.doc?.settings ?? null, owned };
    setClusterAccessRules(this.doc ? this.doc.settings.access : null);
    const lines = this.conflicts().map(D.conflictLine);
    const text = lines.join("\n");
    if (text !== this.conflictText) for (const l of lines) this.d.log.warn(`pgherd.toml conflicts with the cluster-wide configuration: ${scrubCredentials(l)}`);
    this.conflictText = text;
    // Before the first document this node ran its own pgherd.toml values: the change is against those.
    if (this.doc && prev !== this.doc) this.d.applied(D.changedKeys(prev?.settings ?? D.seedSettings(this.local(), this.d.legacyDurability()), this.doc.settings));
  }

  private store(doc: DynamicDoc): void {
    writeJsonDurableSync(this.file, doc, 0o600);
    const prev = this.doc;
    this.doc = doc;
    this.inForce(prev);
  }

  /** A peer said its version: ask it for a later one than ours (at most once a second). */
  observe(peer: string, v: { version: number; term: number } | undefined): void {
    if (!v || this.d.shared) return;
    this.peers.heard(peer, v);
    if (D.isNewer(v, this.doc) && this.peers.fetchDue(peer, this.d.now())) this.d.send(peer, { t: "config-req" });
  }

  /** A peer asks for our document; with `read` (a leader's term) the answer is stamped with it, and says so when there is none. */
  onRequest(peer: string, read?: number): void {
    if (read !== undefined) this.d.send(peer, { t: "config-doc", doc: this.doc, read });
    else if (this.doc) this.d.send(peer, { t: "config-doc", doc: this.doc });
  }

  /**
   * A document from a peer: checked with the schema (a bad one is logged once and dropped), kept
   * when later than ours. With `read`: the answer to this leader's read in that term (null: the
   * peer holds none).
   */
  onDocument(peer: string, raw: unknown, read?: number): void {
    if (this.d.shared) return; // the store holds the cluster's document
    if (read !== undefined && raw === null) return this.peers.answered(peer, read, null);
    const r = dynamicDoc.safeParse(raw, { error: configErrorMap });
    if (!r.success) {
      // Once per peer and problem: the peer is asked again every second while it reports a later version.
      const what = `rejected a cluster-wide configuration from ${this.d.nameOf(peer)}: ${issueLines("document", r.error.issues).join("; ").slice(0, 1000)}`;
      if (this.rejected !== what) this.d.log.error(what);
      this.rejected = what;
      return;
    }
    const doc = r.data;
    if (read !== undefined) this.peers.answered(peer, read, doc);
    if (D.isNewer(doc, this.doc)) {
      this.warnLeftOut(raw, `version ${doc.version} from ${this.d.nameOf(peer)}`);
      const from = this.doc?.version ?? 0;
      this.store(doc);
      this.d.log.warn(`cluster-wide configuration is now version ${doc.version} (was ${from}; made by ${doc.by} at ${doc.at})`);
    }
    if (this.doc && this.doc.version === doc.version && this.doc.term === doc.term) this.d.send(peer, { t: "config-ack", version: doc.version, term: doc.term });
  }

  onAck(peer: string, v: { version: number; term: number }): void {
    this.peers.heard(peer, v);
  }

  private votersOf(l: { voters: string[] }): string[] {
    return l.voters.length ? l.voters : [this.d.nodeId];
  }

  /** Leader: ask each connected voter that has not answered in this term what it holds (at most once a second each). */
  private askReads(l: { term: number; voters: string[] }): void {
    for (const p of this.peers.readsDue(this.votersOf(l), l.term, new Set(this.d.connected()), this.d.now())) this.d.send(p, { t: "config-req", read: l.term });
  }

  /** Housekeeping: say our version every second; a leader of a cluster without a document seeds version 1 from its own pgherd.toml. */
  step(): void {
    const shared = this.d.shared;
    if (!shared && this.doc && this.d.now() - this.lastSaid >= SAY_EVERY_MS) {
      this.lastSaid = this.d.now();
      for (const id of this.d.connected()) this.d.send(id, { t: "config-version", version: this.doc.version, term: this.doc.term });
    }
    const l = this.d.leadership();
    if (!l.leading) {
      this.leadingSince = null;
      return;
    }
    this.leadingSince ??= this.d.now();
    if (shared) return this.syncShared(shared, l.term);
    this.askReads(l);
    if (this.doc || this.d.now() - this.leadingSince < SEED_AFTER_MS) return;
    this.seed(l);
  }

  private seedDoc(term: number): DynamicDoc {
    const settings = D.seedSettings(this.local(), this.d.legacyDurability());
    return { version: 1, term, at: new Date().toISOString(), by: this.d.cfg.node_name, settings };
  }

  private recordSeed(term: number): void {
    this.d.record({ term, kind: "config", node: this.d.cfg.node_name, reason: "cluster configuration version 1 created from the leader's pgherd.toml ([postgres.parameters], [[access]], durability, failover)", oldPrimary: null, newPrimary: null, timeline: null, lsn: null });
  }

  /**
   * Version 1 from this leader's pgherd.toml: only once a majority of voters answered this term's
   * read, and unless a peer has a document (then we fetch it instead).
   */
  private seed(l: { term: number; voters: string[] }): void {
    const voters = this.votersOf(l);
    if (this.doc || this.peers.readBy(voters, l.term).length < majority(voters.length) || this.peers.anyHeld()) return;
    this.store(this.seedDoc(l.term));
    this.broadcast();
    this.recordSeed(l.term);
  }

  /**
   * Leader, shared store: a store without a document (or with an earlier one than ours, e.g. a
   * cluster moved from the built-in backend) gets ours; a cluster without any gets version 1 once
   * this node has led SEED_AFTER_MS. Compare-and-swap on the revision read; a refusal waits for the next read.
   */
  private syncShared(slot: StateSlot<DynamicDoc>, term: number): void {
    const stored = slot.current();
    // A key that exists but does not validate here (e.g. written by a newer version) is never replaced automatically.
    if (this.changing || stored === undefined || (stored === null && slot.revision() !== 0) || (stored && !D.isNewer(this.doc, stored.value))) return;
    if (!this.doc && this.d.now() - (this.leadingSince ?? 0) < SEED_AFTER_MS) return;
    const doc = this.doc ?? this.seedDoc(term);
    const seeded = this.doc === null;
    this.changing = true;
    void slot.write(doc, slot.revision(), term).then((r) => {
      if (!r.ok) return void this.d.log.warn(casRefusal(`cluster configuration version ${doc.version}`, r).message);
      this.d.log.info(`cluster configuration version ${doc.version} stored in etcd`);
      if (!seeded) return;
      this.store(doc);
      this.recordSeed(term);
    }, (e: Error) => this.d.log.warn(`cluster configuration write to etcd failed: ${e.message}`)).finally(() => {
      this.changing = false;
    });
  }

  private broadcast(): void {
    if (!this.doc) return;
    for (const id of this.d.connected()) this.d.send(id, { t: "config-doc", doc: this.doc });
  }

  /**
   * The leader's side of PATCH /config: decide, store, send, wait for a majority to store it. Only
   * after this term's read of a majority, and on top of a version a majority holds (the module's
   * header says why).
   */
  async change(change: D.DynamicChange): Promise<ActionResult> {
    const l = this.d.leadership();
    const me = this.d.cfg.node_name;
    if (!l.leading) return { status: 503, ok: false, message: `${me} is not a leader with a valid lease` };
    if (this.d.shared) return this.changeShared(this.d.shared, change, l.term);
    const fetching = (): ActionResult | null => {
      const ahead = this.peers.ahead(this.doc, this.d.connected());
      return ahead ? { status: 409, ok: false, message: `the leader is fetching version ${ahead[1].version} from ${this.d.nameOf(ahead[0])}: try again in a second` } : null;
    };
    const early = fetching();
    if (early) return early;
    if (this.changing) return { status: 409, ok: false, message: "another configuration change is in progress: try again" };
    const voters = this.votersOf(l);
    const need = majority(voters.length);
    this.changing = true;
    try {
      if (this.peers.readBy(voters, l.term).length < need) {
        this.askReads(l);
        const read = await this.whileLeading(l.term, 2000, () => this.peers.readBy(voters, l.term).length >= need);
        if (read === "lost") return { status: 503, ok: false, message: `${me} stopped leading term ${l.term}: nothing stored` };
        if (read === "timeout") {
          const names = (ps: string[]) => ps.map((p) => this.d.nameOf(p)).join(", ") || "none";
          const by = this.peers.readBy(voters, l.term);
          return { status: 409, ok: false, message: `${me} leads term ${l.term} but has not yet read which configuration version a majority of voters holds (answered: ${names(by)}; not yet: ${names(voters.filter((p) => !by.includes(p)))}; an agent of an earlier pgherd version does not answer): try again when they are back` };
        }
      }
      this.seed(l); // a change right after the first election: version 1 first, the change on top once a majority holds it
      // The current document (a later one may come in meanwhile) held by a majority.
      const held = () => this.doc === null || this.peers.holding(this.doc, voters).length >= need;
      if (!held()) {
        this.broadcast();
        const w = await this.whileLeading(l.term, 2000, held);
        if (w === "lost") return { status: 503, ok: false, message: `${me} stopped leading term ${l.term}: nothing stored` };
        if (w === "timeout" && this.doc) {
          const names = this.peers.holding(this.doc, voters).map((p) => this.d.nameOf(p)).join(", ");
          return { status: 409, ok: false, message: `version ${this.doc.version} is held by ${names} only: a new version is made only on one a majority of the ${voters.length} voters holds (so that no later leader can lose it); it is being sent to the others: try again when they are back` };
        }
      }
      const late = fetching(); // a later version heard of while it waited
      if (late) return late;
      const base = this.doc?.version ?? 0;
      const r = D.decideChange(this.doc, change, { term: l.term, at: new Date().toISOString(), by: me });
      if (!r.ok) return { status: r.status, ok: false, message: r.error };
      if (r.changed.length === 0) return { status: 200, ok: true, message: `nothing to change (version ${base})`, detail: { version: base } };
      // Awaited only when there is something to check: otherwise the document is stored before anything else runs.
      const check = this.refused(r);
      if (check) {
        const refused = await check;
        if (refused) return { status: 400, ok: false, message: refused };
        // Checked against the document and the leadership it was decided on: either may have moved meanwhile.
        const still = this.d.leadership();
        if (!still.leading || still.term !== l.term) return { status: 503, ok: false, message: `${me} stopped leading term ${l.term} while PostgreSQL checked the change: nothing stored` };
        if ((this.doc?.version ?? 0) !== base) return { status: 409, ok: false, message: `the cluster moved to version ${this.doc?.version} meanwhile: show it again and redo the change` };
      }
      this.store(r.doc);
      this.d.record({ term: l.term, kind: "config", node: me, reason: D.historyReason(r.doc, base, r.changed), oldPrimary: null, newPrimary: null, timeline: null, lsn: null });
      this.broadcast();
      const stored = await this.whileLeading(l.term, 5000, () => this.peers.holding(r.doc, voters).length >= need);
      const detail = { version: r.doc.version, changed: r.changed };
      const keys = r.changed.join(", ");
      const count = `${this.peers.holding(r.doc, voters).length} of ${voters.length} voters`;
      // Counted only while leading this term: an acknowledgement that came after another leader's read may not be in it.
      if (stored === "lost") return { status: 503, ok: false, message: `${me} lost its lease (term ${l.term}) before a majority of voters stored version ${r.doc.version} (${keys}; stored by ${count}): not confirmed: the next leader keeps it only if its read finds it; redo the change if \`pgherd config show\` then lacks it` };
      if (stored === "timeout") return { status: 202, ok: true, message: `version ${r.doc.version} (${keys}) stored by the leader; only ${count} confirmed it within 5 s (not confirmed: until a majority holds it, a leader change may replace it; the others get it when they reconnect, and no further change is made until then)`, detail };
      return { status: 200, ok: true, message: `cluster configuration version ${r.doc.version}: ${keys} (stored by ${count}; every node applies it within a monitoring round)`, detail };
    } finally {
      this.changing = false;
    }
  }

  /**
   * null when the document this node holds is held by a majority of `voters`, else what is missing:
   * a voter change waits for it, so that a later leader's read of the new set meets it (S28).
   */
  missingFrom(voters: readonly string[]): string | null {
    if (this.d.shared || !this.doc) return null;
    const h = this.peers.holding(this.doc, voters);
    return h.length >= majority(voters.length) ? null : `version ${this.doc.version} held by ${h.map((p) => this.d.nameOf(p)).join(", ") || "none"} of ${voters.length}`;
  }

  /** Until `done()` while this node leads `term` ("held"), it stops leading ("lost"), or `ms` passed ("timeout"). */
  private async whileLeading(term: number, ms: number, done: () => boolean): Promise<"held" | "lost" | "timeout"> {
    const end = this.d.now() + ms;
    for (;;) {
      const l = this.d.leadership();
      if (!l.leading || l.term !== term) return "lost";
      if (done()) return "held";
      if (this.d.now() >= end) return "timeout";
      await this.d.sleep(20);
    }
  }

  /** A change of postgres.parameters that the leader's PostgreSQL would refuse: why, naming the parameter; else null. */
  private refused(r: { doc: DynamicDoc; changed: string[] }): Promise<string | null> | null {
    if (!this.d.refusedParameters || !r.changed.some((k) => k.startsWith("postgres.parameters."))) return null;
    return this.d.refusedParameters(r.doc.settings.postgres.parameters).then(
      (said) => said && `postgres.parameters: PostgreSQL refuses them (every node would log it at the reload and fail at its next start): ${said}`,
      (e: Error) => {
        this.d.log.warn(`checking postgres.parameters with PostgreSQL: ${e.message}; not checked`);
        return null;
      });
  }

  /** The leader's side of PATCH /config with a shared store: decided on the document read now, stored by compare-and-swap on its revision. */
  private async changeShared(slot: StateSlot<DynamicDoc>, change: D.DynamicChange, term: number): Promise<ActionResult> {
    if (this.changing) return { status: 409, ok: false, message: "another configuration change is in progress: try again" };
    this.changing = true;
    try {
      const stored = await slot.read();
      const rev = slot.revision();
      if (stored) this.fromStore(stored.value);
      // A document only this node has (not in the store yet), or none: the change goes on top of it / of version 1.
      const seeded = !this.doc;
      const cur = this.doc ?? this.seedDoc(term);
      const base = cur.version;
      const r = D.decideChange(cur, change, { term, at: new Date().toISOString(), by: this.d.cfg.node_name });
      if (!r.ok) return { status: r.status, ok: false, message: r.error };
      if (r.changed.length === 0 && !seeded) return { status: 200, ok: true, message: `nothing to change (version ${base})`, detail: { version: base } };
      const refused = await this.refused(r);
      if (refused) return { status: 400, ok: false, message: refused };
      const w = await slot.write(r.doc, rev, term); // by revision: a document stored meanwhile refuses it
      if (!w.ok) return { ok: false, ...casRefusal(`cluster configuration version ${r.doc.version}`, w) };
      if (seeded) this.recordSeed(term);
      this.store(r.doc);
      this.d.record({ term, kind: "config", node: this.d.cfg.node_name, reason: D.historyReason(r.doc, base, r.changed), oldPrimary: null, newPrimary: null, timeline: null, lsn: null });
      const keys = r.changed.join(", ");
      return { status: 200, ok: true, message: `cluster configuration version ${r.doc.version}: ${keys} (stored in etcd at revision ${w.mod}; every node applies it within a poll and a monitoring round)`, detail: { version: r.doc.version, changed: r.changed } };
    } finally {
      this.changing = false;
    }
  }
}
