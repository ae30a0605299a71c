// The leader's side of the cluster-wide configuration (the document on each node and how versions
// travel: src/agent/dynamic-config.ts). The leader makes a new version (compare-and-set,
// src/config/dynamic.ts), stores it, sends it to every node and waits for a majority of voters to
// store it. A version the leader confirmed (a majority of voters stored it while the leader held
// its lease) is never lost: a leader makes a version only after it read, in its term, what a
// majority of voters holds (and took the latest), and only on top of a version a majority holds,
// so it has at most one version no majority holds, and a later leader's read meets every confirmed
// one. A version not confirmed (202, 503) may be replaced by a later leader's. With a shared store
// (etcd) the leader writes each version to the `config` key by compare-and-swap on the key's
// revision (a refused write answers 409). It owns when this node began leading (version 1 waits
// SEED_AFTER_MS) and the one change or store write at a time; the document it changes and the
// versions heard from peers (voter-versions.ts) are dynamic-config.ts's.
import type { DynamicDoc, DynamicSettings } from "../config/schema-dynamic.ts";
import * as D from "../config/dynamic.ts";
import { majority } from "../core/quorum.ts";
import type { ActionResult } from "../api/actions-contract.ts";
import { casRefusal, type StateSlot } from "./cluster-state.ts";
import type { DynamicConfigDeps } from "./dynamic-config.ts";
import type { VoterVersions } from "./voter-versions.ts";

/** A leader seeds version 1 only after leading this long (time to hear every peer's version). */
const SEED_AFTER_MS = 2000;

/** The document this node holds: dynamic-config.ts's, the only writer of it and of its file. */
export interface HeldDoc {
  get(): DynamicDoc | null;
  /** This node's pgherd.toml values of the cluster-wide keys (version 1 is made of them). */
  local(): D.LocalDynamic;
  /** The durability mode of the document (else flags.json's, else pgherd.toml's). */
  durability(): DynamicSettings["durability"];
  /** Writes a version durably and puts it in force. */
  store(doc: DynamicDoc): void;
  /** A version read from the shared store: kept when later than ours. */
  fromStore(doc: DynamicDoc): void;
}

export class ConfigLeader {
  private leadingSince: number | null = null;
  private changing = false;

  /** `peers`: the versions this node heard of (dynamic-config.ts records them; the leader reads them and asks for reads). */
  constructor(private readonly d: DynamicConfigDeps, private readonly peers: VoterVersions, private readonly held: HeldDoc) {}

  private get doc(): DynamicDoc | null {
    return this.held.get();
  }

  /**
   * The durability the PostgreSQL side runs with. "async" (no synchronous standby) is trusted on a
   * leader of the built-in backend only once its document is the newest a majority holds (a read in
   * its term, voter-versions.ts newestFor): a leader elected while it missed a change to quorum or
   * strict (cut off while it was made) would otherwise promote and acknowledge writes alone. Until
   * then: quorum. A leader waits for that read before a promotion (confirmAsync).
   */
  durabilityInForce(): DynamicSettings["durability"] {
    const m = this.held.durability();
    const l = this.d.leadership();
    if (m !== "async" || !l.leading || this.d.shared) return m;
    return this.peers.newestFor(this.doc, this.votersOf(l), l.term) ? m : "quorum";
  }

  /** Leader, before a promotion: ask for this term's read now and wait up to `timeoutMs` for durabilityInForce to settle. */
  async confirmAsync(timeoutMs: number): Promise<void> {
    const l = this.d.leadership();
    if (this.held.durability() !== "async" || !l.leading || this.d.shared) return;
    this.askReads(l);
    await this.whileLeading(l.term, timeoutMs, () => this.durabilityInForce() === "async");
  }

  /**
   * Housekeeping, after the node's own step: a leader asks for its reads, and a leader of a cluster
   * without a document seeds version 1 from its own pgherd.toml (with etcd: stores it in the key).
   */
  step(): void {
    const shared = this.d.shared;
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

  private votersOf(l: { voters: string[] }): string[] {
    return l.voters.length ? l.voters : [this.d.nodeId];
  }

  /** Leader: ask each connected voter that has not answered in this term what it holds (at most once a second each). */
  private askReads(l: { term: number; voters: string[] }): void {
    for (const p of this.peers.readsDue(this.votersOf(l), l.term, new Set(this.d.connected()), this.d.now())) this.d.send(p, { t: "config-req", read: l.term });
  }

  private seedDoc(term: number): DynamicDoc {
    const settings = D.seedSettings(this.held.local(), this.d.legacyDurability());
    return { version: 1, term, at: new Date().toISOString(), by: this.d.cfg.node_name, settings };
  }

  private recordSeed(term: number): void {
    this.d.record({ term, kind: "config", node: this.d.cfg.node_name, reason: "cluster configuration version 1 created from the leader's pgherd.toml ([postgres.parameters], [[access]], durability, failover)", oldPrimary: null, newPrimary: null, timeline: null, lsn: null });
  }

  /**
   * Version 1 from this leader's pgherd.toml: only once a majority of voters answered this term's
   * read, and unless a voter that answered it has a document (then we fetch it instead). Not any
   * voter heard of: one that reported a version and died before this read (its version, then,
   * was never confirmed: a majority read would have met it) blocked version 1 for good (re-review).
   */
  private seed(l: { term: number; voters: string[] }): void {
    const voters = this.votersOf(l);
    const read = this.peers.readBy(voters, l.term);
    if (this.doc || read.length < majority(voters.length) || this.peers.heldAmong(read)) return;
    this.held.store(this.seedDoc(l.term));
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
      this.held.store(doc);
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
   * after this term's read of a majority, and on top of a version a majority holds (this module's
   * header says why).
   */
  async change(change: D.DynamicChange): Promise<ActionResult> {
    const l = this.d.leadership();
    const me = this.d.cfg.node_name;
    if (!l.leading) return { status: 503, ok: false, message: `${me} is not a leader with a valid lease` };
    if (this.d.shared) return this.changeShared(this.d.shared, change, l.term);
    // Only a voter's later version is fetched (dynamic-config.ts takes documents from voters only):
    // a connected joiner with a leftover newer one held every change back (review).
    const fetching = (): ActionResult | null => {
      const voters = new Set(this.votersOf(this.d.leadership()));
      const ahead = this.peers.ahead(this.doc, this.d.connected().filter((p) => voters.has(p)));
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
      const r = D.decideChange(this.doc, change, { term: l.term, at: new Date().toISOString(), by: me, replUser: this.d.cfg.postgres.repl_user });
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
      this.held.store(r.doc);
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
   * null when every majority of `voters` includes a node that holds the document this node holds,
   * else what is missing: a voter change waits for it, so that a later leader's read of a majority
   * of the new set meets it (S28). That takes voters - majority + 1 holders, not a majority: growing
   * one voter to two needs only the leader, for the joiner takes a document only from a voter and is
   * none before the change (review: the change waited on the joiner, which waited on the change).
   */
  missingFrom(voters: readonly string[]): string | null {
    if (this.d.shared) return null;
    const l = this.d.leadership();
    const current = this.votersOf(l);
    // A node joining with a document of its own newer than this leader's (a leftover of an earlier
    // cluster of the same name and secret, or a version it made as a leader that no majority
    // stored): once a voter it would be fetched from and its document would replace the one this
    // cluster confirmed (re-review). It is not added until that file is gone; other joiners are
    // (membership.ts).
    for (const p of voters.filter((v) => !current.includes(v))) {
      const theirs = this.peers.versionOf(p);
      if (theirs && D.isNewer(theirs, this.doc)) return `${this.d.nameOf(p)} holds cluster configuration version ${theirs.version} (term ${theirs.term}), newer than this cluster's ${this.doc ? `version ${this.doc.version}` : "none"}: an earlier cluster's, or one it made as a leader that was never confirmed; once a voter it would pass it on over this cluster's: stop its agent, remove dynamic-config.json from its state_dir and start it again`;
    }
    // A leader that holds none while a voter that answered its read holds one (elected before it
    // fetched it) does not know who holds the confirmed version: it waits until it holds one. One
    // that did not answer (gone since) does not count: its version was never confirmed, or a
    // majority read would have met it (re-reviews).
    if (!this.doc) {
      const read = this.peers.readBy(current, l.term);
      if (read.length < majority(current.length)) return "this leader has not read a majority of voters in its term yet";
      return this.peers.heldAmong(read) ? "this leader holds no version yet (it fetches the one its voters hold)" : null;
    }
    const h = this.peers.holding(this.doc, voters);
    const need = voters.length - majority(voters.length) + 1;
    return h.length >= need ? null : `version ${this.doc.version} held by ${h.map((p) => this.d.nameOf(p)).join(", ") || "none"} of ${voters.length}, ${need} needed`;
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
      if (stored) this.held.fromStore(stored.value);
      // A document only this node has (not in the store yet), or none: the change goes on top of it / of version 1.
      const seeded = !this.doc;
      const cur = this.doc ?? this.seedDoc(term);
      const base = cur.version;
      const r = D.decideChange(cur, change, { term, at: new Date().toISOString(), by: this.d.cfg.node_name, replUser: this.d.cfg.postgres.repl_user });
      if (!r.ok) return { status: r.status, ok: false, message: r.error };
      if (r.changed.length === 0 && !seeded) return { status: 200, ok: true, message: `nothing to change (version ${base})`, detail: { version: base } };
      const refused = await this.refused(r);
      if (refused) return { status: 400, ok: false, message: refused };
      const w = await slot.write(r.doc, rev, term); // by revision: a document stored meanwhile refuses it
      if (!w.ok) return { ok: false, ...casRefusal(`cluster configuration version ${r.doc.version}`, w) };
      if (seeded) this.recordSeed(term);
      this.held.store(r.doc);
      this.d.record({ term, kind: "config", node: this.d.cfg.node_name, reason: D.historyReason(r.doc, base, r.changed), oldPrimary: null, newPrimary: null, timeline: null, lsn: null });
      const keys = r.changed.join(", ");
      return { status: 200, ok: true, message: `cluster configuration version ${r.doc.version}: ${keys} (stored in etcd at revision ${w.mod}; every node applies it within a poll and a monitoring round)`, detail: { version: r.doc.version, changed: r.changed } };
    } finally {
      this.changing = false;
    }
  }
}
