import { isIP } from "node:net";
import { formatHostPort } from "../config/hostport.ts";
import { joinHostPort } from "../core/cluster-facts.ts";

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

/** Owns the learnt address (the first authenticated mesh connection's local address) and answers from it. */
export class SelfAddress {
  private learnt = "";

  constructor(private readonly advertise: string, private readonly listening: () => { host: string; port: number }) {}

  /** A peer's authenticated connection reached this host at `host`: the first one is kept. */
  learn(host: string): void {
    if (!this.learnt && host) this.learnt = host;
  }

  host(): string {
    return selfHost({ advertise: this.advertise, listen: this.listening().host, learnt: this.learnt });
  }

  /** The mesh address peers are told: mesh.advertise, else this host's address and the listening port. */
  mesh(): string {
    if (this.advertise) return this.advertise;
    const host = this.host();
    return host ? joinHostPort(host, this.listening().port) : formatHostPort(this.listening());
  }

  /** IP addresses of authenticated peers (pg_hba), this node's own included when known. */
  hba(peers: readonly string[]): string[] {
    return hbaAddresses(peers, this.host());
  }
}
