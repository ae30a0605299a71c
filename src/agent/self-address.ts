import { isIP } from "node:net";

// The address this host is reached at, for `cluster ls`, /cluster and its own pg_hba line.
// Never a wildcard: mesh.advertise when set, else mesh.listen's host when it names one, else the
// local address of an authenticated mesh connection (the address a peer actually reached us at).

const WILDCARD = new Set(["", "0.0.0.0", "::", "[::]"]);

export function isWildcard(host: string): boolean {
  return WILDCARD.has(host);
}

export function selfHost(o: { advertise: string; listen: string; learnt: string }): string {
  if (o.advertise) {
    const i = o.advertise.lastIndexOf(":");
    const host = (i > 0 ? o.advertise.slice(0, i) : o.advertise).replace(/^\[|\]$/g, "");
    if (!isWildcard(host)) return host;
  }
  if (!isWildcard(o.listen)) return o.listen;
  return isWildcard(o.learnt) ? "" : o.learnt;
}

/** IP addresses for pg_hba: the peers' authenticated addresses and this host's own, sorted, never a wildcard. */
export function hbaAddresses(peers: readonly string[], self: string): string[] {
  return [...new Set([...peers, self].filter((a) => isIP(a) !== 0 && !isWildcard(a)))].sort();
}
