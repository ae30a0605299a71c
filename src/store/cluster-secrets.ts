// The cluster's identity (system identifier of its data) and the passwords of the roles pgherd
// creates. 0600 under state_dir; shared with peers over the encrypted mesh only; never logged.
import { join } from "node:path";
import { z } from "zod";
import { readJsonSync, writeJsonDurableSync } from "./durable.ts";

const schema = z.strictObject({
  systemId: z.string().regex(/^\d{1,20}$/).nullable(),
  replPassword: z.string().min(16),
  monitorPassword: z.string().min(16),
});
export type ClusterSecrets = z.infer<typeof schema>;

export class SecretsStore {
  readonly file: string;
  private value: ClusterSecrets | undefined;

  constructor(stateDir: string) {
    this.file = join(stateDir, "cluster.json");
    this.value = readJsonSync(this.file, schema);
  }

  get(): ClusterSecrets | undefined {
    return this.value;
  }

  /** Persists when different; returns whether anything changed. */
  set(v: ClusterSecrets): boolean {
    const cur = this.value;
    if (cur && cur.systemId === v.systemId && cur.replPassword === v.replPassword && cur.monitorPassword === v.monitorPassword) return false;
    writeJsonDurableSync(this.file, v, 0o600);
    this.value = { ...v };
    return true;
  }
}
