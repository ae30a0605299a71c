// A TCP front for a server that cannot limit its own connections (Bun.serve has no such option):
// accepts at most `max` connections at once and `perSource` from one address, relays
// each to the server on a loopback port (with backpressure both ways), and remembers which client
// each piped connection carries, so the server can still tell who is asking. The server says when
// a request arrives on a connection (requestArrived); answer bytes are seen here. At a cap a
// newcomer takes the place of the connection that has waited longest for its client to deliver a
// request (capped-front-core.ts), else it is closed as soon as it is accepted: a flood of slow or
// idle clients, from any number of addresses, holds a bounded number of file descriptors and cannot
// lock a load balancer's health checks out. A client may half-close after its request (HTTP/1.0
// checkers): its answer still comes.
import type { Socket } from "bun";
import net from "node:net";
import { formatHostPort, unmappedHost } from "./addr.ts";
import { admit, type Eviction, type Held, type Refusal } from "./capped-front-core.ts";

/** How long a client may keep sending after the server closed its side. */
const LINGER_MS = 2000;

export interface CappedFrontOptions {
  host: string; port: number; // where clients connect (port 0: any)
  target: { host: string; port: number }; // the real server, on loopback
  max: number; perSource: number;
  /** Connections closed to make room whose descriptors are not released yet, at most (default 16):
   *  beyond, a newcomer is refused, so a burst of newcomers cannot pile up closing ones. */
  maxClosing?: number;
  /** A connection refused when accepted, or (evicted-*) closed to make room for a newcomer. */
  onRefused?(reason: Refusal | Eviction, remote: string): void;
}

/** A held client connection and its phase (capped-front-core.ts). */
interface Client extends Held<net.Socket> {
  source: string; // its address, IPv4-mapped prefix removed
  streaming: boolean; // its answer is a stream: its bytes do not end the request
}

export class CappedFront {
  private readonly server: net.Server;
  private readonly clients = new Map<number, Client>(); // our local port towards the target → its client
  /** Open client connections, oldest first. */
  private readonly open = new Map<net.Socket, Client>();
  /** Connections closed to make room, until both their sockets here are closed. */
  private readonly closing = new Set<net.Socket>();

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
    return this.piped(address, port)?.source;
  }

  /** The client connection piped through our local `port`, if `address` is the front's own. */
  private piped(address: string, port: number): Client | undefined {
    return unmappedHost(address) === this.o.target.host ? this.clients.get(port) : undefined;
  }

  /**
   * The server has a request from the connection it sees coming from `address`:`port` (only the
   * front's own count): until answer bytes come back it is not waiting for its client. One the API
   * token authorized is never closed to make room; a stream's answer bytes (the dashboard's
   * events) do not end it: it counts as a request in progress while it lasts.
   */
  requestArrived(address: string, port: number, kind: "request" | "authorized" | "stream" = "request"): void {
    const c = this.piped(address, port);
    if (!c) return;
    if (c.phase === "client" || kind === "authorized") c.since = performance.now();
    c.phase = kind === "authorized" || c.phase === "kept" ? "kept" : "server";
    if (kind === "stream") c.streaming = true;
  }

  /** The stream on the connection the server sees from `address`:`port` ended: it waits for its client again. */
  streamEnded(address: string, port: number): void {
    const c = this.piped(address, port);
    if (!c?.streaming) return;
    c.streaming = false;
    c.phase = "client";
    c.since = performance.now();
  }

  stop(): Promise<void> {
    for (const s of this.open.keys()) s.destroy();
    return new Promise((r) => this.server.close(() => r()));
  }

  private accept(client: net.Socket): void {
    client.on("error", () => {});
    const source = unmappedHost(client.remoteAddress ?? "?");
    const key = source; // an address, IPv6 too: a /64 may be a whole LAN of load balancers and monitors (a neighbour's requests would count against them)
    const remote = formatHostPort(source, client.remotePort ?? 0);
    const a = admit([...this.open.values()], key, this.o.max, this.o.perSource, this.closing.size < (this.o.maxClosing ?? 16));
    if (!a.admit) {
      this.o.onRefused?.(a.reason, remote);
      return void client.destroy();
    }
    if (a.evict) {
      const victim = a.evict.conn;
      this.o.onRefused?.(a.evict.reason, formatHostPort(this.open.get(victim)!.source, victim.remotePort ?? 0));
      this.open.delete(victim); // now, not when its close event comes: the newcomer takes the slot
      this.closing.add(victim);
      setTimeout(() => this.closing.delete(victim), LINGER_MS).unref(); // whatever happens to its sockets, it cannot hold room for long
      victim.destroy();
    }
    const me: Client = { conn: client, key, source, phase: "client", since: performance.now(), streaming: false };
    this.open.set(client, me);
    client.pause(); // until the server side is connected
    const queue: Buffer[] = []; // client bytes the server has not taken yet
    let up: Socket | undefined;
    let localPort: number | undefined;
    let serverDone = false;
    let clientEnded = false;
    let shut = false;
    let clientGone = false;
    let upGone = false;
    const released = () => {
      if (clientGone && upGone) this.closing.delete(client);
    };
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
      up?.terminate(); // nothing more can reach the client: its descriptor now, not after a FIN exchange
      clientGone = true;
      released();
      this.open.delete(client);
      if (localPort !== undefined && this.clients.get(localPort) === me) this.clients.delete(localPort);
    });
    // Bun's own socket, not node:net: a node:net socket whose write fails (the server already
    // closed) is destroyed before the server's answer waiting in it is read.
    void Bun.connect({
      hostname: this.o.target.host, port: this.o.target.port,
      socket: {
        open: (sock) => {
          if (client.destroyed) return void sock.terminate();
          up = sock;
          localPort = sock.localPort;
          this.clients.set(localPort, me);
          pump();
        },
        data: (sock, d) => {
          // Answer bytes: whatever comes next is up to the client (another request, reading on).
          if (!me.streaming) {
            me.phase = "client";
            me.since = performance.now();
          }
          if (!client.write(d)) sock.pause(); // the client reads slowly: the server waits for it
        },
        drain: () => pump(),
        end: serverClosed,
        close: () => {
          upGone = true;
          released();
          serverClosed();
        },
        error: () => {
          upGone = true;
          released();
          serverClosed();
        },
        connectError: () => {
          upGone = true;
          released();
          client.destroy();
        },
      },
    });
  }
}

