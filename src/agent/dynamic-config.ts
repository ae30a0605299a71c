// The cluster-wide configuration on this node: the document (dynamic-config.json in the state
// dir, written durably), what is in force from it, and how versions travel. Every node says its
// version every second; a node that hears of a later version asks that peer for it, so a node that
// was down, cloned or rewound catches up. The leader's side (its read of what a majority of voters
// holds, version 1, changes, whether "async" holds yet) is src/agent/dynamic-config-leader.ts.
// With a shared store (etcd, `shared` below) the `config` key is the cluster's document: every
// node adopts the later version it reads there, and no version travels over the mesh.
import { join } from "node:path";
import { z } from "zod";
import type { Config } from "../config/schema.ts";
import { ARCHIVE_KEYS } from "../config/schema-backup.ts";
import { leftOutWhenStored } from "../config/pg-values.ts";
import { dynamicDoc, type DynamicDoc, type DynamicSettings } from "../config/schema-dynamic.ts";
import { configErrorMap, issueLines } from "../config/errors.ts";
import * as D from "../config/dynamic.ts";
import type { Logger } from "../log.ts";
import { setClusterAccessRules } from "../ops/access.ts";
import { readJsonSync, writeJsonDurableSync } from "../store/durable.ts";
import type { ActionResult } from "../api/actions-contract.ts";
import type { HistoryEntry } from "./history.ts";
import type { AgentMsg } from "./messages.ts";
import type { StateSlot } from "./cluster-state.ts";
import { ConfigLeader } from "./dynamic-config-leader.ts";
import { VoterVersions } from "./voter-versions.ts";
import { redactConflict } from "../config/redact.ts";

const REQUEST_EVERY_MS = 1000;
const SAY_EVERY_MS = 1000;

export interface DynamicConfigDeps {
  cfg: Config;
  /** The configuration in force (a SIGHUP's live keys applied: src/ops/reload.ts runningConfig); absent: `cfg`. */
  cfgNow?(): Config;
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
  private readonly leader: ConfigLeader;
  private rejected = "";
  private lastSaid = -Infinity;
  private conflictText = "";

  constructor(private readonly d: DynamicConfigDeps) {
    this.file = join(d.cfg.state_dir, "dynamic-config.json");
    this.peers = new VoterVersions(d.nodeId, REQUEST_EVERY_MS);
    this.leader = new ConfigLeader(d, this.peers, {
      get: () => this.doc, local: () => this.local(), durability: () => this.durability(), store: (doc) => this.store(doc), fromStore: (doc) => this.fromStore(doc),
    });
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

  /** pgherd.toml as in force: the start config with what a SIGHUP reloaded (review: conflicts kept naming a key removed from the file). */
  private cfgNow(): Config {
    return this.d.cfgNow?.() ?? this.d.cfg;
  }

  local(): D.LocalDynamic {
    const c = this.cfgNow();
    return { durability: c.durability, parameters: c.postgres.parameters, access: c.access, maxLagBytes: c.failover.max_lag_bytes };
  }

  durability(): DynamicSettings["durability"] {
    return this.doc?.settings.durability ?? this.d.legacyDurability() ?? this.d.cfg.durability;
  }

  /** The durability the PostgreSQL side runs with (a leader trusts "async" only once its read allows: dynamic-config-leader.ts). */
  durabilityInForce(): DynamicSettings["durability"] {
    return this.leader.durabilityInForce();
  }

  /** Leader, before a promotion: settles durabilityInForce within `timeoutMs` (dynamic-config-leader.ts). */
  confirmAsync(timeoutMs: number): Promise<void> {
    return this.leader.confirmAsync(timeoutMs);
  }

  maxLagBytes(): number {
    return this.doc?.settings.failover.max_lag_bytes ?? this.d.cfg.failover.max_lag_bytes;
  }

  view(): DynamicView {
    return { cluster: this.doc, conflicts: this.conflicts() };
  }

  private conflicts(): D.Conflict[] {
    if (!this.doc) return [];
    const c = this.cfgNow();
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
    const lines = this.conflicts().map((c) => D.conflictLine(redactConflict(c)));
    const text = lines.join("\n");
    if (text !== this.conflictText) for (const l of lines) this.d.log.warn(`pgherd.toml conflicts with the cluster-wide configuration: ${l}`);
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
    // Only a voter's: the leader made it, or a voter holds what a majority stored; a member that is
    // not a voter (not approved yet) could otherwise hand every node settings of its own (review).
    if (!this.d.leadership().voters.includes(peer)) {
      const what = `ignored a cluster-wide configuration from ${this.d.nameOf(peer)}: not a voter`;
      if (this.rejected !== what) this.d.log.warn(what);
      this.rejected = what;
      return;
    }
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

  /** Housekeeping: say our version every second, then the leader's step (dynamic-config-leader.ts). */
  step(): void {
    if (!this.d.shared && this.doc && this.d.now() - this.lastSaid >= SAY_EVERY_MS) {
      this.lastSaid = this.d.now();
      for (const id of this.d.connected()) this.d.send(id, { t: "config-version", version: this.doc.version, term: this.doc.term });
    }
    this.leader.step();
  }

  /** The leader's side of PATCH /config (dynamic-config-leader.ts). */
  change(change: D.DynamicChange): Promise<ActionResult> {
    return this.leader.change(change);
  }

  /** null when a majority of `voters` holds this node's document, else what is missing (a voter change waits for it: dynamic-config-leader.ts). */
  missingFrom(voters: readonly string[]): string | null {
    return this.leader.missingFrom(voters);
  }
}
