// `pgherd dsn`: one libpq multi-host URI for applications. libpq tries the hosts in order and
// keeps the first whose session matches target_session_attrs, so the same string follows the
// primary through a failover or switchover. Pure.
import type { MemberRow } from "../core/cluster-view.ts";

export type DsnTarget = "primary" | "replica" | "any";

/** read-write: the primary. standby: a replica only (fails while none runs). any: the first that answers. */
export const SESSION_ATTRS: Record<DsnTarget, string> = { primary: "read-write", replica: "standby", any: "any" };

/** Seconds libpq waits for each host: a dead host costs this much before the next is tried. */
export const CONNECT_TIMEOUT_S = 3;

/**
 * `caFile`: the cluster CA's path on the client's host (a copy of any node's `<data_dir>.tls/ca.crt`):
 * then `sslmode=verify-full` (each server must show a certificate of that CA naming the address
 * dialled) with `sslrootcert`; without it libpq's default `prefer` encrypts but verifies nothing.
 */
export function buildDsn(members: readonly Pick<MemberRow, "name" | "role" | "host" | "port">[], o: { target: DsnTarget; user?: string; dbname?: string; caFile?: string }): string {
  const hosts = members
    .filter((m) => m.role !== "witness" && m.host !== "" && m.port !== null)
    .sort((a, b) => a.name.localeCompare(b.name))
    .map((m) => `${m.host.includes(":") ? `[${m.host}]` : encodeURIComponent(m.host)}:${m.port}`);
  if (hosts.length === 0) throw new Error("the cluster view lists no database member with a known address and port");
  const user = o.user ? `${encodeURIComponent(o.user)}@` : "";
  const db = o.dbname ? `/${encodeURIComponent(o.dbname)}` : "/";
  const tls = o.caFile ? `&sslmode=verify-full&sslrootcert=${encodeURIComponent(o.caFile)}` : "";
  return `postgresql://${user}${hosts.join(",")}${db}?target_session_attrs=${SESSION_ATTRS[o.target]}&connect_timeout=${CONNECT_TIMEOUT_S}${tls}`;
}
