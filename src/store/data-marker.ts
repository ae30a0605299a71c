// A fact about the data directory's contents that PostgreSQL's own files do not keep, on disk in
// the state directory: written and fsync'd before the step that makes it true, removed once it no
// longer holds. Unreadable, it counts as written (the safe side); one naming another data directory
// (data_dir changed since) does not count. The markers: rewind-marker.ts, own-timeline-marker.ts.
import { join } from "node:path";
import { z } from "zod";
import { ensurePrivateDir } from "./dir.ts";
import { readJsonSync, removeFileDurableSync, StoreError, writeJsonDurableSync } from "./durable.ts";

export class DataMarker<S extends z.ZodObject<{ dataDir: z.ZodString; at: z.ZodString }>> {
  readonly path: string;

  constructor(private readonly stateDir: string, private readonly dataDir: string, file: string, private readonly schema: S, private readonly unreadable: (why: string) => Omit<z.infer<S>, "dataDir" | "at">) {
    this.path = join(stateDir, file);
  }

  /** Durable when this returns. */
  protected write(fields: Omit<z.infer<S>, "dataDir" | "at">, now: Date): void {
    ensurePrivateDir(this.stateDir);
    writeJsonDurableSync(this.path, { ...fields, dataDir: this.dataDir, at: now.toISOString() });
  }

  /** The marker of this data directory, or null. */
  get(): z.infer<S> | null {
    try {
      const m = readJsonSync(this.path, this.schema) as z.infer<S> | null;
      return m && m.dataDir === this.dataDir ? m : null;
    } catch (e) {
      if (!(e instanceof StoreError)) throw e;
      return { ...this.unreadable(e.message), dataDir: this.dataDir, at: `unknown (${e.message})` } as z.infer<S>;
    }
  }

  clear(): void {
    removeFileDurableSync(this.path);
  }
}
