// Pure rendering and merging of pgherd's block in pg_hba.conf and pg_ident.conf. The block is
// placed FIRST (pg_hba is first-match-wins) and admits only exact peer addresses (/32, /128),
// never a network; the replication role is then rejected from everywhere else (and, with TLS, the
// monitor role without TLS), so no client rule after them admits it. Text outside the markers
// belongs to the operator and is kept.
import { isIP } from "node:net";

export const BEGIN_MARK = "# BEGIN pgherd managed block";
export const END_MARK = "# END pgherd managed block";
/** pg_ident map that lets the agent's OS user (often root) and os_user log in as the superuser over the socket. */
export const IDENT_MAP = "pgherd";

export interface HbaParams {
  /** Database superuser the local agent connects as (peer auth through IDENT_MAP). */
  superuser: string;
  replUser: string;
  monitorUser: string;
  /** Peer IP addresses (IPv4 or IPv6, no prefix). Our own address may be included: it lets us clone from ourselves after a role change. */
  peers: ReadonlyArray<string>;
  /** Replication TLS: pgherd's roles connect over the network only with SSL (hostssl rows, not host). */
  tls?: boolean;
  /** Also let the replication user connect to the "postgres" database (pg_rewind source connection). Default true. */
  rewindViaReplUser?: boolean;
  /** Client access rows ([[access]], rendered by src/ops/access.ts), after pgherd's own rows. */
  accessRows?: ReadonlyArray<string>;
}

export class HbaError extends Error {
  override readonly name = "HbaError";
}

const ROLE = /^[A-Za-z_][A-Za-z0-9_$-]{0,62}$/;

function role(kind: string, name: string): string {
  // Quoted names in pg_hba are possible, but plain identifiers keep the file readable and unambiguous.
  if (!ROLE.test(name) || ["all", "sameuser", "samerole", "samegroup", "replication"].includes(name)) {
    throw new HbaError(`${kind} ${JSON.stringify(name)}: use letters, digits, _ $ - (max 63), not a pg_hba keyword`);
  }
  return name;
}

export function hostCidr(addr: string): string {
  const v = isIP(addr);
  if (v === 4) return `${addr}/32`;
  if (v === 6) return `${addr}/128`;
  throw new HbaError(`peer address ${JSON.stringify(addr)} is not an IPv4/IPv6 address`);
}

export function renderHbaBlock(p: HbaParams): string {
  const su = role("superuser", p.superuser);
  const repl = role("replication user", p.replUser);
  const mon = role("monitor user", p.monitorUser);
  const peers = [...new Set(p.peers.map(hostCidr))].sort();
  const widths = [8, 16, 16, 24];
  const row = (...f: string[]) => f.map((x, i) => (i < f.length - 1 ? `${x} `.padEnd(widths[i] ?? 0) : x)).join("");
  const lines = [
    BEGIN_MARK,
    "# Written by pgherd; edits inside this block are overwritten. Your rules go below the END line.",
    row("local", "all", su, "", `peer map=${IDENT_MAP}`),
  ];
  const host = p.tls ? "hostssl" : "host";
  for (const cidr of peers) {
    lines.push(row(host, "replication", repl, cidr, "scram-sha-256"));
    if (p.rewindViaReplUser ?? true) lines.push(row(host, "postgres", repl, cidr, "scram-sha-256"));
    lines.push(row(host, "all", mon, cidr, "scram-sha-256"));
  }
  // The replication role (replication, and reading the server's files for pg_rewind) from anywhere
  // else: rejected before any client rule ([[access]] with user = "all", the operator's own below
  // the block) could admit it (review: user = "all" from 10.0.0.0/8 let pgherd_repl in over plain
  // TCP). The monitor role may serve an operator's check or dashboard through their own rule; with
  // TLS only over TLS, as from the peers.
  for (const net of ["0.0.0.0/0", "::/0"]) {
    lines.push(row("host", "replication", repl, net, "reject"));
    lines.push(row("host", "all", repl, net, "reject"));
    if (p.tls) lines.push(row("hostnossl", "all", mon, net, "reject"));
  }
  if (p.accessRows?.length) lines.push("# client access ([[access]] in pgherd's configuration)", ...p.accessRows.map((r) => r.replace(/[\r\n]/g, " ")));
  lines.push(END_MARK);
  return lines.join("\n") + "\n";
}

/** pg_ident rows mapping each OS user in `osUsers` (e.g. root and postgres) to the database superuser. */
export function renderIdentBlock(superuser: string, osUsers: ReadonlyArray<string>): string {
  const su = role("superuser", superuser);
  const rows = [...new Set(osUsers)].map((u) => {
    if (!/^[A-Za-z0-9_][A-Za-z0-9_.-]*$/.test(u)) throw new HbaError(`OS user ${JSON.stringify(u)} is not a valid name`);
    return `${IDENT_MAP} `.padEnd(16) + `${u} `.padEnd(16) + su;
  });
  return [BEGIN_MARK, "# Written by pgherd; edits inside this block are overwritten.", ...rows, END_MARK].join("\n") + "\n";
}

/**
 * Put `block` at the top of `existing`, replacing a previous block wherever it is. Operator
 * text outside the markers is preserved byte for byte. An unterminated BEGIN is an error: we
 * cannot tell where the operator's rules start.
 */
export function mergeManagedBlock(existing: string, block: string): string {
  const lines = existing.split("\n");
  const b = lines.findIndex((l) => l.trim() === BEGIN_MARK);
  let rest = lines;
  if (b >= 0) {
    const e = lines.findIndex((l, i) => i > b && l.trim() === END_MARK);
    if (e < 0) throw new HbaError(`found "${BEGIN_MARK}" without "${END_MARK}": fix the file by hand`);
    rest = [...lines.slice(0, b), ...lines.slice(e + 1)];
  } else if (lines.some((l) => l.trim() === END_MARK)) {
    throw new HbaError(`found "${END_MARK}" without "${BEGIN_MARK}": fix the file by hand`);
  }
  while (rest.length && rest[0] === "") rest = rest.slice(1);
  const tail = rest.join("\n");
  return tail ? `${block}\n${tail}` : block;
}
