// The durable record of the permanent slots pgherd made on this node (<state_dir>/permanent-slots.json,
// 0600): only a slot named here may be dropped when it leaves [[slots.permanent]] (plan.ts). A name
// is written before the slot is created (a crash in between leaves a name without a slot, which the
// next round forgets; never a slot pgherd made but would not know), and removed once the slot is gone.
//
// Each name carries who made the slot it stands for (Made, plan.ts): "pgherd" (created on a primary,
// or a standby's copy of a slot pgherd made) or "operator" (a standby's copy of a slot made by hand):
// `slots` and `operatorCopies` in the file (the latter written only when not empty).
import { join } from "node:path";
import { z } from "zod";
import { readJson, writeJsonDurable } from "../store/durable.ts";
import type { Made } from "./plan.ts";

export const RECORD_FILE = "permanent-slots.json";

const names = () => z.array(z.string().regex(/^[a-z0-9_]{1,63}$/)).max(1024);
const RecordSchema = z.strictObject({ slots: names(), operatorCopies: names().optional() });

export class SlotRecord {
  readonly file: string;
  private made: Map<string, Made> | null = null;

  constructor(stateDir: string) {
    this.file = join(stateDir, RECORD_FILE);
  }

  /** The recorded names and who made each (read from disk once; a corrupt file is an error, never an empty record). */
  async load(): Promise<ReadonlyMap<string, Made>> {
    if (this.made) return this.made;
    const r = await readJson(this.file, RecordSchema);
    const made = new Map<string, Made>((r?.slots ?? []).map((n) => [n, "pgherd"]));
    // A name in both lists (edited by hand) counts as the operator's: the side on which nothing is dropped on a primary.
    for (const n of r?.operatorCopies ?? []) made.set(n, "operator");
    return (this.made = made);
  }

  async set(name: string, made: Made): Promise<void> {
    const next = new Map(await this.load());
    if (next.get(name) === made) return;
    next.set(name, made);
    await this.save(next);
  }

  async remove(gone: readonly string[]): Promise<void> {
    const next = new Map(await this.load());
    if (gone.filter((n) => next.delete(n)).length === 0) return;
    await this.save(next);
  }

  private async save(made: Map<string, Made>): Promise<void> {
    const of = (m: Made) => [...made].filter(([, x]) => x === m).map(([n]) => n).sort();
    const operatorCopies = of("operator");
    await writeJsonDurable(this.file, { slots: of("pgherd"), ...(operatorCopies.length ? { operatorCopies } : {}) }, 0o600);
    this.made = made;
  }
}
