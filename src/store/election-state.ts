// The election's persistent state (term, vote, membership) and the one-time
// bootstrap vote. Written with fsync before any message that depends on it is sent.
import { join } from "node:path";
import { z } from "zod";
import type { Persistent } from "../core/election.ts";
import { GuardSchema, MembershipSchema, NodeIdSchema } from "../core/messages.ts";
import { readJsonSync, removeFileDurableSync, StoreError, writeJsonDurableSync } from "./durable.ts";

export const ELECTION_FILE = "election.json";

const schema = z.strictObject({
  term: z.number().int().min(0),
  votedFor: NodeIdSchema.nullable(),
  membership: MembershipSchema.nullable(),
  ledTerm: z.number().int().min(0).nullable().default(null),
  guard: GuardSchema.nullable().default(null),
  bootstrapVote: z.array(NodeIdSchema).max(64).nullable(),
});

/**
 * The leader's hold (Persistent.hold) in a file of its own: election.json keeps the shape earlier
 * versions read (strict), so a rollback still starts (re-review: it refused the file, and deleting a
 * "corrupt" election.json loses the vote).
 */
export const HOLD_FILE = "leader-hold.json";
const holdSchema = z.strictObject({ hold: z.number().int().min(0).max(3_600_000) });

/**
 * The etcd backend's leader key this node holds: its create revision (the etcd term), written
 * (fsync'd) when this node took the key (a take, a migration's open) and removed once a read shows
 * that key gone or another's. A key bound to this node's id is led on again (after an agent
 * restart, or a take whose answer was lost) only when it is the recorded one: a key brought back
 * by an etcd restore from a snapshot of an earlier term is not this node's any more
 * (src/consensus/etcd/elect-core.ts ownKeyAction). A file of its own, like the hold.
 */
export const ETCD_KEY_FILE = "etcd-leader-key.json";
const etcdKeySchema = z.strictObject({ term: z.number().int().min(1) });

export type ElectionState = Required<Persistent> & { bootstrapVote: string[] | null };

export class ElectionStore {
  readonly file: string;
  private readonly holdFile: string;
  private readonly etcdKeyFile: string;
  private state: ElectionState;
  private etcdTerm: number | null;

  constructor(stateDir: string) {
    this.file = join(stateDir, ELECTION_FILE);
    this.holdFile = join(stateDir, HOLD_FILE);
    this.etcdKeyFile = join(stateDir, ETCD_KEY_FILE);
    // A corrupt file throws (naming the file): resetting it could let this node vote twice.
    const saved = readJsonSync(this.file, schema) ?? { term: 0, votedFor: null, membership: null, ledTerm: null, guard: null, bootstrapVote: null };
    this.state = { ...saved, hold: readJsonSync(this.holdFile, holdSchema)?.hold ?? 0 };
    this.etcdTerm = readJsonSync(this.etcdKeyFile, etcdKeySchema)?.term ?? null;
  }

  /** The term (create revision) of the etcd leader key this node holds (ETCD_KEY_FILE); null: none. */
  etcdKey(): number | null {
    return this.etcdTerm;
  }

  /** Records the etcd leader key this node took (durable when this returns); null: it is gone or another's. */
  saveEtcdKey(term: number | null): void {
    if (term === this.etcdTerm) return;
    if (term === null) removeFileDurableSync(this.etcdKeyFile);
    else writeJsonDurableSync(this.etcdKeyFile, etcdKeySchema.parse({ term }), 0o600);
    this.etcdTerm = term;
  }

  get(): ElectionState {
    return structuredClone(this.state);
  }

  saveElection(p: Persistent): void {
    const hold = p.hold ?? this.state.hold;
    if (hold !== this.state.hold) {
      writeJsonDurableSync(this.holdFile, holdSchema.parse({ hold }), 0o600);
      this.state = { ...this.state, hold };
    }
    this.write({ ...this.state, term: p.term, votedFor: p.votedFor, membership: p.membership, ledTerm: p.ledTerm ?? null, guard: p.guard ?? null });
  }

  saveBootstrapVote(voters: string[]): void {
    this.write({ ...this.state, bootstrapVote: voters });
  }

  private write(next: ElectionState): void {
    // Never write what the next start could not read back (it would refuse to start): the same
    // schema checks before writing, and the file keeps its last good state.
    const { hold: _hold, ...file } = next;
    const ok = schema.safeParse(file);
    if (!ok.success) throw new StoreError(`${this.file}: refusing to store an invalid election state: ${ok.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; ")}`);
    writeJsonDurableSync(this.file, file, 0o600);
    this.state = next;
  }
}
