// Shared by the net tests: condition waits with deadlines and a hand-driven mesh client.
import net from "node:net";
import { FrameDecoder, encodeFrame } from "../../src/net/framing.ts";
import { Channel, deriveKeys, makeHello, proofFor, verifyProof, type Hello } from "../../src/net/secure.ts";

/**
 * A valid node id (16 lowercase hex, NodeIdSchema) for a short readable label: the label's bytes
 * in hex, left-padded with zeros, so labels of one length keep their order ("a" < "b").
 */
export function nid(label: string): string {
  const hex = Buffer.from(label, "utf8").toString("hex");
  if (hex.length > 16) throw new Error(`nid: label ${JSON.stringify(label)} is longer than 8 bytes`);
  return hex.padStart(16, "0");
}

/** Polls `cond` until true; fails with `what` after timeoutMs. */
export async function waitFor(cond: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!cond()) {
    if (performance.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await Bun.sleep(5);
  }
}

/** A raw TCP client speaking the mesh protocol by hand (or not at all). */
export class RawPeer {
  readonly frames: unknown[] = [];
  closed = false;
  private decoder = new FrameDecoder(1 << 24);
  channel: Channel | undefined;

  private constructor(readonly socket: net.Socket) {
    socket.on("data", (c: Buffer) => {
      for (const f of this.decoder.push(c)) this.frames.push(this.channel ? this.channel.open(f) : f);
    });
    socket.on("error", () => {});
    socket.on("close", () => { this.closed = true; });
  }

  static connect(port: number): Promise<RawPeer> {
    return new Promise((resolve, reject) => {
      const s = net.connect({ host: "127.0.0.1", port });
      s.once("connect", () => resolve(new RawPeer(s)));
      s.once("error", reject);
    });
  }

  write(data: Buffer | object): void {
    this.socket.write(Buffer.isBuffer(data) ? data : encodeFrame(data, 1 << 24));
  }

  async waitClosed(timeoutMs = 3000): Promise<void> {
    await waitFor(() => this.closed, timeoutMs, "the server to close the raw connection");
  }

  /** Runs the dialer side of the handshake; afterwards frames are sealed/opened automatically. */
  async handshake(o: { secret: string; cluster: string; nodeId: string }): Promise<Hello> {
    const mine = makeHello({ cluster: o.cluster, nodeId: o.nodeId, name: "raw", addr: "127.0.0.1:9", dialer: true });
    this.write(mine);
    await waitFor(() => this.frames.length >= 2 || this.closed, 3000, "acceptor hello + proof");
    const [theirs, proof] = this.frames.splice(0, 2) as [Hello, { mac: string }];
    if (!verifyProof(o.secret, "acceptor", mine, theirs, proof.mac)) throw new Error("acceptor proof did not verify");
    this.write({ t: "proof", mac: proofFor(o.secret, "dialer", mine, theirs) });
    this.channel = new Channel(deriveKeys(o.secret, mine.nonce, theirs.nonce), "dialer");
    return theirs;
  }

  sendSealed(envelope: unknown): void {
    this.write(encodeFrame(this.channel!.seal(envelope), 1 << 24));
  }

  destroy(): void {
    this.socket.destroy();
  }
}

/** A UDP port on 127.0.0.1 nobody is bound to right now (bind to 0, read it, close). */
/** Below the kernel's ephemeral range, as test/helpers/pg.ts freePort (src/demo/ports.ts). */
export { freeUdpPort } from "../../src/demo/ports.ts";
