// A TCP front for a server that cannot limit its own connections (Bun.serve has no such option):
// accepts at most `max` connections at once and `perSource` from one address, pipes each to the
// server on a loopback port, and remembers which client each piped connection carries, so the
// server can still tell who is asking. Beyond the caps a connection is closed as soon as it is
// accepted, so a flood of slow clients holds a bounded number of file descriptors.
import net from "node:net";
import { formatHostPort, unmappedHost } from "./addr.ts";

export interface CappedFrontOptions {
  host: string; port: number; // where clients connect (port 0: any)
  target: { host: string; port: number }; // the real server, on loopback
  max: number; perSource: number;
  onRefused?(reason: "too-many-connections" | "too-many-from-source", remote: string): void;
}

export class CappedFront {
  private readonly server: net.Server;
  private readonly clients = new Map<number, string>(); // our local port towards the target → client "ip"
  private readonly perSource = new Map<string, number>();
  private readonly open = new Set<net.Socket>();

  /** Binds synchronously (Bun does); throws when the address cannot be bound. */
  constructor(private readonly o: CappedFrontOptions) {
    this.server = net.createServer((s) => this.accept(s));
    this.server.on("error", () => {}); // a failed bind is reported by the check below
    this.server.listen(o.port, o.host);
    if (!this.server.address()) throw new Error(`cannot listen on ${formatHostPort(o.host, o.port)} (address in use or not local)`);
  }

  get port(): number {
    return (this.server.address() as net.AddressInfo).port;
  }

  /** The client address behind a connection the target sees coming from loopback port `port`. */
  clientOf(port: number): string | undefined {
    return this.clients.get(port);
  }

  /** Connections held now (each is two sockets here, one at the target). */
  connections(): number {
    return this.open.size;
  }

  stop(): Promise<void> {
    for (const s of this.open) s.destroy();
    return new Promise((r) => this.server.close(() => r()));
  }

  private accept(client: net.Socket): void {
    client.on("error", () => {});
    const source = unmappedHost(client.remoteAddress ?? "?");
    const remote = formatHostPort(source, client.remotePort ?? 0);
    const fromSource = this.perSource.get(source) ?? 0;
    if (this.open.size >= this.o.max || fromSource >= this.o.perSource) {
      this.o.onRefused?.(this.open.size >= this.o.max ? "too-many-connections" : "too-many-from-source", remote);
      return void client.destroy();
    }
    this.open.add(client);
    this.perSource.set(source, fromSource + 1);
    const upstream = net.connect({ host: this.o.target.host, port: this.o.target.port });
    upstream.on("error", () => {});
    let localPort: number | undefined;
    upstream.once("connect", () => {
      localPort = upstream.localPort;
      if (localPort !== undefined) this.clients.set(localPort, source);
      client.pipe(upstream);
      upstream.pipe(client);
    });
    let done = false;
    const finish = () => {
      if (done) return;
      done = true;
      client.destroy();
      upstream.destroy();
      this.open.delete(client);
      const n = (this.perSource.get(source) ?? 1) - 1;
      if (n <= 0) this.perSource.delete(source);
      else this.perSource.set(source, n);
      if (localPort !== undefined && this.clients.get(localPort) === source) this.clients.delete(localPort);
    };
    client.on("close", finish);
    upstream.on("close", finish);
  }
}
