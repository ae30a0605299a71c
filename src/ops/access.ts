// Client access: [[access]] rules as pg_hba.conf rows, placed in pgherd's managed block after its
// own rows (first match wins: pgherd's replication and monitoring rows stay first). The rules in
// force live here, set at start and by a SIGHUP reload, and every monitoring round writes them.
import type { AccessRule } from "../config/schema-access.ts";
import { hostCidr } from "../postgres/hba.ts";

/** One pg_hba row per rule (values were validated at config load). */
export function accessRows(rules: readonly AccessRule[]): string[] {
  return rules.map((r) => {
    const addr = r.type === "local" ? [] : [r.address!.includes("/") ? r.address! : hostCidr(r.address!)];
    return [r.type.padEnd(8), r.database.padEnd(16), r.user.padEnd(16), ...addr.map((a) => a.padEnd(24)), r.method].join(" ").replace(/ +$/, "");
  });
}

let inForce: readonly AccessRule[] = [];

/** The rules the next round writes into pg_hba.conf (owner: the agent start and the SIGHUP reload). */
export function setAccessRules(rules: readonly AccessRule[]): void {
  inForce = rules;
}

export function accessRowsInForce(): string[] {
  return accessRows(inForce);
}
