// The cluster's identity (system identifier of its data), the passwords of the roles pgherd
// creates and the cluster CA (certificate and key) that signs every node's replication TLS
// certificate. 0600 under state_dir; shared with peers over the encrypted mesh only; never logged.
import { join } from "node:path";
import { z } from "zod";
import { readJsonSync, writeJsonDurableSync } from "./durable.ts";

const pemOf = (label: string) =>
  z.string().max(8000).regex(new RegExp(`^-----BEGIN ${label}-----\\n[A-Za-z0-9+/=\\n]+-----END ${label}-----\\n$`), `must be one PEM ${label}`);

/** The cluster CA: a certificate and its private key (PKCS#8), both PEM. */
export const ClusterCaSchema = z.strictObject({ cert: pemOf("CERTIFICATE"), key: pemOf("PRIVATE KEY") });
export type ClusterCa = z.infer<typeof ClusterCaSchema>;

const schema = z.strictObject({
  systemId: z.string().regex(/^\d{1,20}$/).nullable(),
  replPassword: z.string().min(16),
  monitorPassword: z.string().min(16),
  /** Absent in a cluster created before replication TLS: the leader adds one. */
  ca: ClusterCaSchema.optional(),
});
export type ClusterSecrets = z.infer<typeof schema>;

export function sameSecrets(a: ClusterSecrets, b: ClusterSecrets): boolean {
  return a.systemId === b.systemId && a.replPassword === b.replPassword && a.monitorPassword === b.monitorPassword &&
    a.ca?.cert === b.ca?.cert && a.ca?.key === b.ca?.key;
}

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

  /** Persists when different; returns whether anything changed. A CA once known is kept when `v` has none. */
  set(v: ClusterSecrets): boolean {
    const cur = this.value;
    const next: ClusterSecrets = { ...v, ...(v.ca ?? cur?.ca ? { ca: v.ca ?? cur?.ca } : {}) };
    if (cur && sameSecrets(cur, next)) return false;
    writeJsonDurableSync(this.file, next, 0o600);
    this.value = next;
    return true;
  }
}
