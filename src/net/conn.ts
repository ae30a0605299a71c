// One mesh TCP connection: framing, the authenticated handshake, sealed frames, keepalive and
// backpressure. It decides nothing about peers; the Mesh (its host) does that.
import type { Socket } from "node:net";
import { z } from "zod";
import { formatHostPort, isWildcardHost, parseHostPort } from "./addr.ts";
import { FrameDecoder, FrameError, encodeFrame } from "./framing.ts";
import {
  Channel, SealError, deriveKeys, helloProblem, helloSchema, makeHello, proofFor, proofSchema, verifyProof,
  type Hello, type Role,
} from "./secure.ts";
import { onEvery } from "./shared-ticker.ts";

/** Pre-authentication frames are tiny; a low limit keeps unauthenticated clients from making us buffer much. */
export const HANDSHAKE_MAX_FRAME = 4096;

// Mesh-internal envelope inside every sealed frame; only "app" reaches the application.
type Envelope = { t: "app"; m: unknown } | { t: "ping" | "pong" | "retire" };

/** The envelope, or null: {t:"app", m} or {t:"ping"|"pong"|"retire"} and no other key (checked by hand: every frame). */
function envelope(v: unknown): Envelope | null {
  if (typeof v !== "object" || v === null || Array.isArray(v)) return null;
  const o = v as Record<string, unknown>;
  const t = o.t;
  for (const k in o) if (k !== "t" && (k !== "m" || t !== "app")) return null;
  if (t === "app") return { t, m: o.m };
  return t === "ping" || t === "pong" || t === "retire" ? { t } : null;
}

/** Paths and codes only: messages may carry passwords, and zod messages can quote input. */
function issues(e: z.ZodError): string {
  return e.issues.slice(0, 5).map((i) => `${i.path.join(".") || "(root)"}: ${i.code}`).join("; ");
}

export interface ConnSettings {
  cluster: string; secret: string; nodeId: string; nodeName: string;
  advertise: () => string;
  maxFrameBytes: number; handshakeMs: number; pingMs: number; deadMs: number; maxBufferedBytes: number;
  messageSchema: z.ZodType;
}

/** What a connection reports to the mesh. `reject` is called before the matching `closed`. */
export interface ConnHost {
  authenticated(c: Conn): void;
  message(c: Conn, msg: unknown): void;
  reject(reason: string, remote: string, detail: string): void;
  closed(c: Conn, reason: string): void;
  /** This dialled connection reached our own listener: the acceptor's proof verified and its hello
   *  carries our node id (a hello alone proves nothing: it travels in plaintext). */
  self(c: Conn): void;
}

/** How long an accepted connection may stay silent before its hello: a third of the handshake deadline. */
export function helloDeadline(handshakeMs: number): number {
  return Math.max(1, Math.round(handshakeMs / 3));
}

type State = "connecting" | "await-hello" | "await-proof" | "open" | "closed";

export class Conn {
  peer: Hello | undefined; // the remote hello, once received
  retiring = false; // we chose another connection to this peer and stopped sending here
  remoteRetired = false; // the peer said the same
  private state: State;
  private own: Hello | undefined; // the hello we sent
  private channel: Channel | undefined;
  private readonly decoder = new FrameDecoder(HANDSHAKE_MAX_FRAME);
  private readonly timers: ReturnType<typeof setTimeout>[] = [];
  /** Ends this connection's keepalive ticks. */
  private keepalive: (() => void) | undefined;
  private lastHeard = 0;
  /** When we last sent a sealed frame: any frame keeps the peer's deadline fresh, a ping only fills silence. */
  private lastSent = 0;
  private closeReason: string | undefined;
  private errorDetail = "";

  constructor(
    private readonly socket: Socket,
    readonly role: Role,
    private readonly cfg: ConnSettings,
    private readonly host: ConnHost,
    readonly remote: string,
    readonly expectedId?: string,
  ) {
    this.state = role === "dialer" ? "connecting" : "await-hello";
    socket.setNoDelay(true);
    // Our own deadline for connect + handshake: socket timeouts are unreliable on Bun (#42398, #42403).
    // A dialer sends its hello right after connecting, so an acceptor cuts a silent client sooner.
    if (role === "acceptor") {
      this.later(helloDeadline(cfg.handshakeMs), () => {
        if (this.state === "await-hello") this.reject("handshake-timeout", `silent: no hello within ${helloDeadline(cfg.handshakeMs)} ms`);
      });
    }
    this.later(cfg.handshakeMs, () => {
      if (this.state === "connecting") this.close("connect-timeout");
      else if (this.state !== "open") this.reject("handshake-timeout", `no authentication within ${cfg.handshakeMs} ms`);
    });
    socket.on("connect", () => this.guard(() => this.onConnect()));
    socket.on("data", (chunk: Buffer) => this.guard(() => this.onData(chunk)));
    socket.on("error", (e) => { this.errorDetail = e.message; });
    socket.on("close", () => this.guard(() => this.onSocketClose()));
  }

  get authenticated(): boolean {
    return this.state === "open";
  }

  get closed(): boolean {
    return this.state === "closed";
  }

  /** Accepted and silent so far: no valid hello yet (the first to give way when handshakes are full). */
  get awaitingHello(): boolean {
    return this.state === "await-hello";
  }

  /** The socket's remote "ip:port" (for a dialled connection `remote` is the address we dialled). */
  get socketRemote(): string {
    return formatHostPort(this.socket.remoteAddress ?? "?", this.socket.remotePort ?? 0);
  }

  /** The socket's remote IP. */
  get socketRemoteHost(): string {
    return this.socket.remoteAddress ?? "";
  }

  /** This end's local IP on the socket: the address the peer reaches this host at. */
  get socketLocalHost(): string {
    return this.socket.localAddress ?? "";
  }

  /** The peer's advertised mesh address, with a wildcard host replaced by the address it came from. */
  get peerAddr(): string {
    const addr = this.peer?.addr ?? "";
    try {
      const hp = parseHostPort(addr);
      return isWildcardHost(hp.host) ? formatHostPort(this.socket.remoteAddress ?? hp.host, hp.port) : addr;
    } catch {
      return addr;
    }
  }

  /** Node id of the side that dialled this connection (what the duplicate rule compares). */
  get dialerId(): string {
    return this.role === "dialer" ? this.cfg.nodeId : (this.peer?.nodeId ?? "");
  }

  /** Queues an application message; false if not open, retiring, or the peer is too slow.
   *  Throws if the message is not JSON or too large to frame (the caller's fault, the link stays up). */
  send(msg: unknown): boolean {
    if (this.state !== "open" || this.retiring) return false;
    return this.sendSealed({ t: "app", m: msg });
  }

  /** Stops using this duplicate: tell the peer, close once it agrees or after a grace period. */
  retire(): void {
    if (this.retiring || this.state !== "open") return;
    this.retiring = true;
    this.sendSealed({ t: "retire" });
    if (this.remoteRetired) this.close("duplicate", true);
    else this.later(this.cfg.handshakeMs, () => this.close("duplicate", true));
  }

  /** Closes the connection; `graceful` flushes what is queued first (bounded by handshakeMs). */
  close(reason: string, graceful = false): void {
    if (this.state === "closed") return;
    this.state = "closed";
    this.closeReason = reason;
    this.stopTimers();
    if (graceful) {
      this.socket.end();
      this.later(this.cfg.handshakeMs, () => this.socket.destroy());
    } else {
      this.socket.destroy();
    }
  }

  /** Closes a handshake to make room for another (the mesh's pre-authentication budget). */
  evict(detail: string): void {
    this.reject("evicted", detail);
  }

  private reject(reason: string, detail: string): void {
    if (this.state === "closed") return;
    this.host.reject(reason, this.remote, detail);
    this.close(reason);
  }

  private onConnect(): void {
    if (this.state !== "connecting") return;
    this.state = "await-hello";
    this.own = this.hello(true);
    this.write(this.own);
  }

  private onData(chunk: Buffer): void {
    if (this.state === "closed") return;
    try {
      this.decoder.pushEach(chunk, (frame) => {
        if (this.state !== "closed") this.onFrame(frame);
      });
    } catch (e) {
      if (e instanceof FrameError) this.reject(e.reason, e.message);
      else throw e;
    }
  }

  private onFrame(frame: unknown): void {
    if (this.state === "open") return this.onSealed(frame);
    const t = typeof frame === "object" && frame !== null ? (frame as { t?: unknown }).t : undefined;
    if (t !== "hello" && t !== "proof") return this.reject("unauthenticated", "frame before authentication");
    if (t === "hello" && this.state === "await-hello") return this.onHello(frame);
    if (t === "proof" && this.state === "await-proof") return this.onProof(frame);
    this.reject("protocol", `unexpected ${t} in state ${this.state}`);
  }

  private onHello(frame: unknown): void {
    const parsed = helloSchema.safeParse(frame);
    if (!parsed.success) return this.reject("schema", `bad hello: ${issues(parsed.error)}`);
    const remote = parsed.data;
    // A hello carrying our own node id goes on like any other: whether it is really us shows only
    // once the proofs verify (onProof), since anyone who saw one of our hellos can copy its fields.
    const problem = helloProblem(this.cfg, remote, this.role === "acceptor");
    if (problem) return this.reject(problem, `hello from ${JSON.stringify(remote.nodeId)} of cluster ${JSON.stringify(remote.cluster)}`);
    if (this.expectedId !== undefined && remote.nodeId !== this.expectedId) {
      return this.reject("wrong-peer", `expected ${this.expectedId}, found ${JSON.stringify(remote.nodeId)}`);
    }
    this.peer = remote;
    this.state = "await-proof";
    if (this.role === "acceptor") {
      this.own = this.hello(false);
      this.write(this.own);
      this.write({ t: "proof", mac: proofFor(this.cfg.secret, "acceptor", remote, this.own) });
    }
  }

  private onProof(frame: unknown): void {
    const parsed = proofSchema.safeParse(frame);
    if (!parsed.success) return this.reject("schema", "bad proof frame");
    const [d, a] = this.role === "dialer" ? [this.own!, this.peer!] : [this.peer!, this.own!];
    const theirRole: Role = this.role === "dialer" ? "acceptor" : "dialer";
    if (!verifyProof(this.cfg.secret, theirRole, d, a, parsed.data.mac)) {
      return this.reject("bad-proof", `proof from ${JSON.stringify(this.peer!.nodeId)} does not match our secret`);
    }
    if (this.role === "dialer") this.write({ t: "proof", mac: proofFor(this.cfg.secret, "dialer", d, a) });
    if (this.peer!.nodeId === this.cfg.nodeId) return this.onSelf();
    this.channel = new Channel(deriveKeys(this.cfg.secret, d.nonce, a.nonce), this.role);
    this.decoder.maxBytes = this.cfg.maxFrameBytes;
    this.state = "open";
    this.stopTimers();
    this.lastHeard = this.lastSent = performance.now();
    const tick = Math.max(5, Math.min(this.cfg.pingMs, this.cfg.deadMs / 4));
    this.keepalive = onEvery(tick, () => this.guard(() => this.onTick(tick)));
    this.host.authenticated(this);
  }

  /**
   * Both ends hold the secret and carry our node id: this node dialled its own listener (a peer list
   * naming every node), or someone relays our own bytes back to us. The dialer tells the mesh and
   * closes once its proof has left, so the acceptor's end verifies it and closes quietly instead of
   * reporting a failed handshake.
   */
  private onSelf(): void {
    if (this.role === "acceptor") return this.close("self");
    this.host.reject("self", this.remote, "the address answered with our own node id and a valid proof");
    this.host.self(this);
    this.close("self", true);
  }

  private onSealed(frame: unknown): void {
    let plain: unknown;
    try {
      plain = this.channel!.open(frame);
    } catch (e) {
      if (e instanceof SealError) return this.reject("bad-seal", e.message);
      throw e;
    }
    this.lastHeard = performance.now();
    const env = envelope(plain);
    if (!env) return this.host.reject("schema", this.remote, "unknown mesh envelope (dropped)");
    switch (env.t) {
      case "ping":
        this.sendSealed({ t: "pong" });
        return;
      case "pong":
        return;
      case "retire":
        this.remoteRetired = true;
        if (this.retiring) this.close("duplicate", true);
        return;
      case "app": {
        // The sender holds the secret and the frame is intact, so a mismatch is version skew, not an
        // attack: drop that one message instead of cutting the link (a rolling upgrade would flap).
        const msg = this.cfg.messageSchema.safeParse(env.m);
        if (!msg.success) {
          return this.host.reject("schema", this.remote, `message from ${this.peer!.nodeId} dropped: ${issues(msg.error)}`);
        }
        this.host.message(this, msg.data);
      }
    }
  }

  private onTick(tick: number): void {
    if (this.state !== "open") return;
    const now = performance.now();
    if (now - this.lastHeard > this.cfg.deadMs) {
      return this.reject("dead-peer", `silent for ${Math.round(now - this.lastHeard)} ms`);
    }
    if (now - this.lastSent >= this.cfg.pingMs - tick / 2) { // tolerance: interval timers jitter
      this.sendSealed({ t: "ping" });
    }
  }

  private onSocketClose(): void {
    this.stopTimers();
    if (this.state !== "closed") {
      const was = this.state;
      this.state = "closed";
      const detail = this.errorDetail ? `: ${this.errorDetail}` : "";
      if (was === "connecting") this.closeReason = `connect-failed${detail}`;
      else if (was === "open") this.closeReason = `closed by peer${detail}`;
      else {
        // The peer gave up mid-handshake: usually it rejected our proof (wrong secret).
        this.closeReason = "handshake-closed";
        this.host.reject("handshake-closed", this.remote, `peer closed during the handshake${detail}`);
      }
    }
    this.host.closed(this, this.closeReason ?? "closed");
  }

  /** Throws (without consuming a sequence number) if the message can't be framed: too large or not JSON. */
  private sendSealed(envelope: unknown): boolean {
    const ok = this.write(this.channel!.sealWith(envelope, (s) => encodeFrame(s, this.cfg.maxFrameBytes)));
    this.lastSent = performance.now();
    return ok;
  }

  /** Writes a frame (or a plaintext handshake object); disconnects a peer that lets our buffer grow. */
  private write(frameOrObject: Buffer | object): boolean {
    if (this.state === "closed" || this.state === "connecting") return false;
    const frame = Buffer.isBuffer(frameOrObject) ? frameOrObject : encodeFrame(frameOrObject, HANDSHAKE_MAX_FRAME);
    this.socket.write(frame);
    if (this.socket.writableLength > this.cfg.maxBufferedBytes) {
      this.reject("slow-peer", `${this.socket.writableLength} bytes unsent (limit ${this.cfg.maxBufferedBytes})`);
      return false;
    }
    return true;
  }

  private hello(dialer: boolean): Hello {
    return makeHello({ cluster: this.cfg.cluster, nodeId: this.cfg.nodeId, name: this.cfg.nodeName, addr: this.cfg.advertise(), dialer });
  }

  private later(ms: number, fn: () => void): void {
    const t = setTimeout(() => this.guard(fn), ms);
    t.unref();
    this.timers.push(t);
  }

  private stopTimers(): void {
    for (const t of this.timers.splice(0)) clearTimeout(t);
    this.keepalive?.();
    this.keepalive = undefined;
  }

  /** Network input must never crash the agent: any unexpected exception closes this connection only. */
  private guard(fn: () => void): void {
    try {
      fn();
    } catch (e) {
      this.reject("internal", `unexpected error: ${(e as Error).message}`);
      if (this.state === "closed") return;
      this.close("internal");
    }
  }
}
