// A TCP front for a server that cannot limit its own connections (Bun.serve has no such option):
// accepts at most `max` connections at once and `perSource` from one address, relays each to the
// server on a loopback port (with backpressure both ways), and remembers which client each piped connection carries, so the
// server can still tell who is asking. Beyond the caps a connection is closed as soon as it is
// accepted, so a flood of slow clients holds a bounded number of file descriptors. When all `max`
// are held, a newcomer from an address holding at least two fewer than the busiest one takes the
// place of that address's oldest connection: a few addresses cannot lock everyone else (a load
// balancer's health checks) out. A client may half-close after its request (HTTP/1.0 checkers):
// its answer still comes.
import type { Socket } from "bun";
import net from "node:net";
import { formatHostPort, unmappedHost } from "./addr.ts";

/** How long a client may keep sending after the server closed its side. */
const LINGER_MS = 2000;

export interface CappedFrontOptions {
  host: string; port: number; // where clients connect (port 0: any)
  target: { host: string; port: number }; // the real server, on loopback
  max: number; perSource: number;
  /** A connection refused when accepted, or (evicted-for-fairness) closed to make room for another source's. */
  onRefused?(reason: "too-many-connections" | "too-many-from-source" | "evicted-for-fairness", remote: string): void;
}

export class CappedFront {
  private readonly server: net.Server;
  private readonly clients = new Map<number, string>(); // our local port towards the target → client "ip"
  /** Open client connections by source address, oldest first. */
  private readonly bySource = new Map<string, Set<net.Socket>>();
  private readonly open = new Set<net.Socket>();

  /** Binds synchronously (Bun does); throws when the address cannot be bound. */
  constructor(private readonly o: CappedFrontOptions) {
    this.server = net.createServer({ allowHalfOpen: true }, (s) => this.accept(s));
    this.server.on("error", () => {}); // a failed bind is reported by the check below
    this.server.listen(o.port, o.host);
    if (!this.server.address()) throw new Error(`cannot listen on ${formatHostPort(o.host, o.port)} (address in use or not local)`);
  }

  get port(): number {
    return (this.server.address() as net.AddressInfo).port;
  }

  /** The client address behind a connection the target sees coming from `address`:`port`: only the front's own (127.0.0.1) counts. */
  clientOf(address: string, port: number): string | undefined {
    return unmappedHost(address) === this.o.target.host ? this.clients.get(port) : undefined;
  }

  stop(): Promise<void> {
    for (const s of this.open) s.destroy();
    return new Promise((r) => this.server.close(() => r()));
  }

  /** Whether there is room for one more connection from a source holding `fromSource`, made by closing the busiest source's oldest. */
  private room(fromSource: number): boolean {
    if (this.open.size < this.o.max) return true;
    let busiest: [string, Set<net.Socket>] | undefined;
    for (const e of this.bySource) if (!busiest || e[1].size > busiest[1].size) busiest = e;
    // Only a source with at least two more than the newcomer's would then have gives one up (no churn between equals).
    if (!busiest || busiest[1].size <= fromSource + 1) return false;
    const oldest = busiest[1].values().next().value!;
    this.o.onRefused?.("evicted-for-fairness", formatHostPort(unmappedHost(oldest.remoteAddress ?? "?"), oldest.remotePort ?? 0));
    this.forget(oldest, busiest[0]);
    oldest.destroy();
    return true;
  }

  /** Drops `client` from the counts (at once on eviction, again harmlessly when it closes). */
  private forget(client: net.Socket, key: string): void {
    if (!this.open.delete(client)) return;
    const set = this.bySource.get(key);
    set?.delete(client);
    if (set?.size === 0) this.bySource.delete(key);
  }

  private accept(client: net.Socket): void {
    client.on("error", () => {});
    const source = unmappedHost(client.remoteAddress ?? "?");
    const key = source;
    const remote = formatHostPort(source, client.remotePort ?? 0);
    const fromSource = this.bySource.get(key)?.size ?? 0;
    if (fromSource >= this.o.perSource || !this.room(fromSource)) {
      this.o.onRefused?.(fromSource >= this.o.perSource ? "too-many-from-source" : "too-many-connections", remote);
      return void client.destroy();
    }
    this.open.add(client);
    const mine = this.bySource.get(key) ?? new Set<net.Socket>();
    mine.add(client);
    this.bySource.set(key, mine);
    client.pause(); // until the server side is connected
    const queue: Buffer[] = []; // client bytes the server has not taken yet
    let up: Socket | undefined;
    let localPort: number | undefined;
    let serverDone = false;
    let clientEnded = false;
    let shut = false;
    const pump = () => {
      while (up && queue.length > 0) {
        const b = queue[0]!;
        const n = up.write(b);
        if (n < 0) return void (queue.length = 0);
        if (n < b.length) {
          queue[0] = b.subarray(n);
          return void client.pause(); // resumed on drain
        }
        queue.shift();
      }
      if (!up) return;
      if (clientEnded && !shut) {
        shut = true;
        up.shutdown();
      } else client.resume();
    };
    // The server closing first (after its answer, or refusing a body mid-upload): its answer is
    // flushed, and what the client still sends is read and dropped, because closing a socket with
    // unread data resets the connection and the client may lose the answer.
    const serverClosed = () => {
      if (serverDone) return;
      serverDone = true;
      queue.length = 0;
      client.resume();
      client.end();
      setTimeout(() => client.destroy(), LINGER_MS).unref();
    };
    client.on("drain", () => up?.resume());
    client.on("data", (d: Buffer) => {
      if (serverDone) return;
      queue.push(d);
      pump();
    });
    client.on("end", () => {
      clientEnded = true;
      if (!serverDone) pump();
    });
    client.on("close", () => {
      up?.end();
      this.forget(client, key);
      if (localPort !== undefined && this.clients.get(localPort) === source) this.clients.delete(localPort);
    });
    // Bun's own socket, not node:net: a node:net socket whose write fails (the server already
    // closed) is destroyed before the server's answer waiting in it is read.
    void Bun.connect({
      hostname: this.o.target.host, port: this.o.target.port,
      socket: {
        open: (sock) => {
          if (client.destroyed) return void sock.end();
          up = sock;
          localPort = sock.localPort;
          this.clients.set(localPort, source);
          pump();
        },
        data: (sock, d) => {
          if (!client.write(d)) sock.pause(); // the client reads slowly: the server waits for it
        },
        drain: () => pump(),
        end: serverClosed,
        close: serverClosed,
        error: serverClosed,
        connectError: () => void client.destroy(),
      },
    });
  }
}

