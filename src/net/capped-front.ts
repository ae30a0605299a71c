// A TCP front for a server that cannot limit its own connections (Bun.serve has no such option):
// accepts at most `max` connections at once and `perSource` from one address, relays each to the
// server on a loopback port (with backpressure both ways), and remembers which client each piped connection carries, so the
// server can still tell who is asking. Beyond the caps a connection is closed as soon as it is
// accepted, so a flood of slow clients holds a bounded number of file descriptors.
import type { Socket } from "bun";
import net from "node:net";
import { formatHostPort, unmappedHost } from "./addr.ts";

/** How long a client may keep sending after the server closed its side. */
const LINGER_MS = 2000;

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
      this.open.delete(client);
      const n = (this.perSource.get(source) ?? 1) - 1;
      if (n <= 0) this.perSource.delete(source);
      else this.perSource.set(source, n);
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
