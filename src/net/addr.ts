// "host:port" parsing shared by the mesh and the beacon. IPv6 hosts use brackets: "[::1]:5433".

export interface HostPort {
  host: string;
  port: number;
}

/** Parses "host:port" (or just "host" when defaultPort is given); throws an Error naming the problem. */
export function parseHostPort(s: string, defaultPort?: number): HostPort {
  let host: string;
  let portText: string | undefined;
  const bracket = /^\[([^\]]+)\](?::(.*))?$/.exec(s);
  if (bracket) {
    host = bracket[1]!;
    portText = bracket[2];
  } else {
    const i = s.lastIndexOf(":");
    if (i >= 0 && s.indexOf(":") !== i) throw new Error(`address "${s}": IPv6 hosts need brackets, e.g. [::1]:5433`);
    host = i >= 0 ? s.slice(0, i) : s;
    portText = i >= 0 ? s.slice(i + 1) : undefined;
  }
  if (host === "" && !s.startsWith(":")) throw new Error(`address "${s}" has no host`);
  if (portText === undefined) {
    if (defaultPort === undefined) throw new Error(`address "${s}" has no port`);
    return { host, port: defaultPort };
  }
  if (!/^\d{1,5}$/.test(portText) || Number(portText) > 65535) throw new Error(`address "${s}" has an invalid port`);
  return { host, port: Number(portText) };
}

export function formatHostPort(host: string, port: number): string {
  return host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
}

/** Wildcard bind addresses that mean "any interface" rather than a reachable host. */
export function isWildcardHost(host: string): boolean {
  return host === "" || host === "0.0.0.0" || host === "::";
}

/** "::ffff:10.0.0.1" → "10.0.0.1": one source, whichever socket family accepted it. */
export function unmappedHost(host: string): string {
  return host.replace(/^::ffff:(?=\d+\.\d+\.\d+\.\d+$)/, "");
}
