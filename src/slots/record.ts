// The durable record of the permanent slots pgherd made on this node (<state_dir>/permanent-slots.json,
// 0600): only a slot named here may be dropped when it leaves [[slots.permanent]] (plan.ts). A name
// is written before the slot is created (a crash in between leaves a name without a slot, which the
// next round forgets; never a slot pgherd made but would not know), and removed once the slot is gone.
import { join } from "node:path";
import { z } from "zod";
import { readJson, writeJsonDurable } from "../store/durable.ts";

export const RECORD_FILE = "permanent-slots.json";

const RecordSchema = z.strictObject({ slots: z.array(z.string().regex(/^[a-z0-9_]{1,63}$/)).max(1024) });

export class SlotRecord {
  readonly file: string;
  private names: Set<string> | null = null;

  constructor(stateDir: string) {
    this.file = join(stateDir, RECORD_FILE);
  }

  /** The recorded names (read from disk once; a corrupt file is an error, never an empty record). */
  async load(): Promise<ReadonlySet<string>> {
    this.names ??= new Set((await readJson(this.file, RecordSchema))?.slots ?? []);
    return this.names;
  }

  async add(name: string): Promise<void> {
    const names = new Set(await this.load());
    if (names.has(name)) return;
    names.add(name);
    await this.save(names);
  }

  async remove(gone: readonly string[]): Promise<void> {
    const names = new Set(await this.load());
    if (gone.filter((n) => names.delete(n)).length === 0) return;
    await this.save(names);
  }

  private async save(names: Set<string>): Promise<void> {
    await writeJsonDurable(this.file, { slots: [...names].sort() }, 0o600);
    this.names = names;
  }
}
