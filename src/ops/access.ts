// Client access: [[access]] rules as pg_hba.conf rows, placed in pgherd's managed block after its
// own rows (first match wins: pgherd's replication and monitoring rows stay first). The rules in
// force are the cluster-wide ones (src/agent/dynamic-config.ts) once the cluster has a document,
// else this node's pgherd.toml (set at start and by a SIGHUP reload); every monitoring round writes them.
import type { AccessRule } from "../config/schema-access.ts";
import { hostCidr } from "../postgres/hba.ts";

/** One pg_hba row per rule (values were validated at config load or at receipt). */
export function accessRows(rules: readonly AccessRule[]): string[] {
  return rules.map((r) => {
    const addr = r.type === "local" ? [] : [r.address!.includes("/") ? r.address! : hostCidr(r.address!)];
    return [r.type.padEnd(8), r.database.padEnd(16), r.user.padEnd(16), ...addr.map((a) => a.padEnd(24)), r.method].join(" ").replace(/ +$/, "");
  });
}

let local: readonly AccessRule[] = [];
let cluster: readonly AccessRule[] | null = null;

/** This node's [[access]] (owner: the agent start and the SIGHUP reload). */
export function setAccessRules(rules: readonly AccessRule[]): void {
  local = rules;
}

/** The cluster-wide rules (owner: the dynamic configuration); null: the cluster has no document yet. */
export function setClusterAccessRules(rules: readonly AccessRule[] | null): void {
  cluster = rules;
}

export function accessRowsInForce(): string[] {
  return accessRows(cluster ?? local);
}
