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
  hold: z.number().int().min(0).max(3_600_000).default(0),
  bootstrapVote: z.array(NodeIdSchema).max(64).nullable(),
});

export type ElectionState = Required<Persistent> & { bootstrapVote: string[] | null };

export class ElectionStore {
  readonly file: string;
  private state: ElectionState;

  constructor(stateDir: string) {
    this.file = join(stateDir, ELECTION_FILE);
    // A corrupt file throws (naming the file): resetting it could let this node vote twice.
    this.state = readJsonSync(this.file, schema) ?? { term: 0, votedFor: null, membership: null, ledTerm: null, guard: null, hold: 0, bootstrapVote: null };
  }

  get(): ElectionState {
    return structuredClone(this.state);
  }

  saveElection(p: Persistent): void {
    this.write({ ...this.state, term: p.term, votedFor: p.votedFor, membership: p.membership, ledTerm: p.ledTerm ?? null, guard: p.guard ?? null, hold: p.hold ?? this.state.hold });
  }

  saveBootstrapVote(voters: string[]): void {
    this.write({ ...this.state, bootstrapVote: voters });
  }

  private write(next: ElectionState): void {
    // Never write what the next start could not read back (it would refuse to start): the same
    // schema checks before writing, and the file keeps its last good state.
    const ok = schema.safeParse(next);
    if (!ok.success) throw new StoreError(`${this.file}: refusing to store an invalid election state: ${ok.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; ")}`);
    writeJsonDurableSync(this.file, next, 0o600);
    this.state = next;
  }
}
