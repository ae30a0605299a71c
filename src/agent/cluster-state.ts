// Where the cluster's shared state lives: the flags (pause, scheduled switchover), the
// cluster-wide configuration document and the history. The flags, dynamic-config and history
// modules see only this interface:
// - `local` (the built-in backend): nothing is shared through a store; each node keeps its copy on
//   disk and the leader's copy travels over the mesh (state messages, config versions, history).
// - `shared` (the etcd backend, src/consensus/etcd/state.ts): each item is one key in the consensus
//   store, read by every agent, written by the leader only by compare-and-swap on the key's
//   revision and on the leader key of its term; the mesh copies are then ignored.
import type { DynamicDoc } from "../config/schema-dynamic.ts";
import type { SharedFlags } from "./flags.ts";
import type { HistoryEntry } from "./history.ts";

/** A value read from the store, with the revision a compare-and-swap names as its base. */
export interface Stored<T> {
  value: T;
  /** The key's revision (0: the key is absent). */
  mod: number;
}

export type CasOutcome =
  | { ok: true; mod: number }
  /** The key changed since `base` (someone else wrote it): read again and redo. */
  | { ok: false; why: "moved"; current: number }
  /** The leader key of `term` is not ours any more: this node may not write. */
  | { ok: false; why: "not-leader" };

/** One item of shared state. */
export interface StateSlot<T> {
  /** The last value read from the store (null: absent or invalid; undefined: not read yet). */
  current(): Stored<T> | null | undefined;
  /** The key's revision as last read, also when its value did not validate (0: absent): the base that replaces it. */
  revision(): number;
  /** Reads the key now (not waiting for the next poll); null when absent or invalid. */
  read(): Promise<Stored<T> | null>;
  /** Compare-and-swap: store `value` if the key's revision is still `base` (0: absent) and the leader key of `term` is still this node's. */
  write(value: T, base: number, term: number): Promise<CasOutcome>;
  /** Called after a read brought a value with another revision than before. */
  onChange(cb: (v: Stored<T>) => void): void;
}

/** The items of shared state, one key each. */
export interface SharedSlots {
  flags: StateSlot<SharedFlags>;
  config: StateSlot<DynamicDoc>;
  history: StateSlot<HistoryEntry[]>;
}

export type ClusterStateStore =
  | { kind: "local" }
  | { kind: "shared"; slots: SharedSlots; start(): void; stop(): void; /** Read every item now (not waiting for the next poll). */ refresh(): Promise<void> };

export const LOCAL_STATE: ClusterStateStore = { kind: "local" };

/** The message a refused compare-and-swap answers with. */
export function casRefusal(what: string, r: Exclude<CasOutcome, { ok: true }>): { status: 409 | 503; message: string } {
  if (r.why === "not-leader") return { status: 503, message: `${what} not stored: this node no longer holds the leader key` };
  return { status: 409, message: `${what} not stored: it changed in the store meanwhile (revision ${r.current}): show it again and redo the change` };
}
