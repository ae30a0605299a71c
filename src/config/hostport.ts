// "host", "host:port", "[v6]:port" parsing shared by the config schema and the network code,
// so what the config accepts is exactly what the sockets will be given.
import { isIP } from "node:net";
import { z } from "zod";

export type HostPort = { host: string; port: number };

// RFC 1123 host name: dot-separated labels of letters, digits and inner hyphens.
const HOSTNAME = /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$/;

/** True for an IPv4/IPv6 literal (no brackets) or a syntactically valid host name. */
export function isHost(host: string): boolean {
  return isIP(host) !== 0 || HOSTNAME.test(host);
}

/** A node's name (node_name): host-name-like, as long as a Linux host name at most. */
export const NODE_NAME_MAX = 64;
export const nodeNameSchema = z
  .string()
  .min(1, "must not be empty")
  .max(NODE_NAME_MAX, `must be at most ${NODE_NAME_MAX} characters`)
  .refine((s) => s === "" || isHost(s), "must be a host-name-like string (letters, digits, '-', '.'; unset, it is this host's name)");

/**
 * A peer's name as hello and beacon frames and etcd member reports carry it: node_name's
 * characters plus '_' (an older version took a host name with one as its default node_name), at
 * most 64. Nothing that could break a log line, a hook's environment or pgpool.conf.
 */
export const wireNodeNameSchema = z.string().regex(/^[A-Za-z0-9_.:][A-Za-z0-9_.:-]{0,63}$/, "must be 1-64 characters of letters, digits, '_', '.', ':' and '-'");

/**
 * Parses "host", "host:port", "[v6]" or "[v6]:port". Without a port, `defaultPort` is used;
 * if that is undefined the port is required. Returns an error text instead of throwing so zod
 * refinements can report it against the right key.
 */
export function parseHostPort(text: string, defaultPort?: number): HostPort | string {
  let host: string;
  let portText: string | undefined;
  const bracketed = /^\[([^\]]+)\](?::(.*))?$/.exec(text);
  if (bracketed) {
    host = bracketed[1] ?? "";
    portText = bracketed[2];
    if (isIP(host) !== 6) return `"${text}": "${host}" is not an IPv6 address`;
  } else if (isIP(text) === 6) {
    host = text; // bare IPv6 literal: every colon belongs to the address
  } else {
    const colon = text.lastIndexOf(":");
    host = colon < 0 ? text : text.slice(0, colon);
    portText = colon < 0 ? undefined : text.slice(colon + 1);
    if (!isHost(host)) return `"${text}": "${host}" is not a valid host name or IP address`;
  }
  if (portText === undefined) {
    if (defaultPort === undefined) return `"${text}" needs a port (host:port)`;
    return { host, port: defaultPort };
  }
  if (!/^\d{1,5}$/.test(portText) || Number(portText) < 1 || Number(portText) > 65535) {
    return `"${text}": port must be 1..65535`;
  }
  return { host, port: Number(portText) };
}

/** Formats for dialling/logging: brackets around IPv6 literals. */
export function formatHostPort({ host, port }: HostPort): string {
  return isIP(host) === 6 ? `[${host}]:${port}` : `${host}:${port}`;
}

/** A host (IPv6 without brackets) on this host's loopback: localhost, 127.x.x.x, ::1. */
export function isLoopbackHost(host: string): boolean {
  return host === "localhost" || host === "::1" || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}

/** A URL's hostname (URL.hostname: IPv6 in brackets) on this host's loopback: localhost, 127.x.x.x, [::1]. */
export function isLoopbackUrlHost(host: string): boolean {
  return isLoopbackHost(host.replace(/^\[(.*)\]$/, "$1"));
}
