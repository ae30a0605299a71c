// The election's persistent state (term, vote, membership) and the one-time
// bootstrap vote. Written with fsync before any message that depends on it is sent.
import { join } from "node:path";
import { z } from "zod";
import type { Persistent } from "../core/election.ts";
import { GuardSchema, MembershipSchema, NodeIdSchema } from "../core/messages.ts";
import { readJsonSync, StoreError, writeJsonDurableSync } from "./durable.ts";

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

export type ElectionState = Required<Persistent> & { bootstrapVote: string[] | null };

export class ElectionStore {
  readonly file: string;
  private readonly holdFile: string;
  private state: ElectionState;

  constructor(stateDir: string) {
    this.file = join(stateDir, ELECTION_FILE);
    this.holdFile = join(stateDir, HOLD_FILE);
    // A corrupt file throws (naming the file): resetting it could let this node vote twice.
    const saved = readJsonSync(this.file, schema) ?? { term: 0, votedFor: null, membership: null, ledTerm: null, guard: null, bootstrapVote: null };
    this.state = { ...saved, hold: readJsonSync(this.holdFile, holdSchema)?.hold ?? 0 };
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
