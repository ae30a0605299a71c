// Length-prefixed JSON frames: 4-byte big-endian length, then that many bytes of UTF-8 JSON.
// Pure codec (no I/O) so the mesh and the tests share exactly one implementation.

export type FrameErrorReason = "oversized" | "invalid-json" | "empty";

export class FrameError extends Error {
  constructor(readonly reason: FrameErrorReason, message: string) {
    super(message);
    this.name = "FrameError";
  }
}

const HEADER = 4;
const utf8 = new TextDecoder("utf-8", { fatal: true });

/** JSON-encode `value` into one frame; throws FrameError if the JSON body exceeds maxBytes. */
export function encodeFrame(value: unknown, maxBytes: number): Buffer {
  const json = JSON.stringify(value);
  if (json === undefined) throw new FrameError("invalid-json", "value is not JSON-serialisable");
  const size = Buffer.byteLength(json, "utf8");
  if (size > maxBytes) throw new FrameError("oversized", `frame of ${size} bytes exceeds the limit of ${maxBytes}`);
  const out = Buffer.allocUnsafe(HEADER + size);
  out.writeUInt32BE(size, 0);
  out.write(json, HEADER, "utf8");
  return out;
}

/**
 * Reassembles frames from arbitrary chunks. Chunks are queued and each frame body is copied
 * once, so cost stays linear in the bytes received. After the first error the decoder is dead:
 * the stream position is lost, so the connection must be closed.
 */
export class FrameDecoder {
  private chunks: Buffer[] = [];
  private head = 0; // index of the first unread chunk
  private buffered = 0;
  private need = -1; // body length of the frame in progress, -1 while waiting for a header
  private failure: FrameError | undefined;

  /** May be changed between frames (e.g. raised after a handshake) from inside pushEach's callback. */
  constructor(public maxBytes: number) {}

  push(chunk: Buffer): unknown[] {
    const out: unknown[] = [];
    this.pushEach(chunk, (v) => out.push(v));
    return out;
  }

  /** Like push, but hands each frame over as soon as it is decoded, so the callback can adjust maxBytes. */
  pushEach(chunk: Buffer, onFrame: (value: unknown) => void): void {
    if (this.failure) throw this.failure;
    if (chunk.length > 0) {
      this.chunks.push(chunk);
      this.buffered += chunk.length;
    }
    for (;;) {
      if (this.need < 0) {
        if (this.buffered < HEADER) return;
        const len = this.take(HEADER).readUInt32BE(0);
        if (len === 0) this.fail("empty", "zero-length frame");
        // Checked on the prefix alone so an attacker cannot make us buffer a huge body.
        if (len > this.maxBytes) this.fail("oversized", `frame length ${len} exceeds the limit of ${this.maxBytes}`);
        this.need = len;
      }
      if (this.buffered < this.need) return;
      const body = this.take(this.need);
      this.need = -1;
      let value: unknown;
      try {
        value = JSON.parse(utf8.decode(body));
      } catch {
        this.fail("invalid-json", `frame of ${body.length} bytes is not valid UTF-8 JSON`);
      }
      onFrame(value);
    }
  }

  /** Bytes held for an incomplete frame (for tests and memory accounting). */
  pending(): number {
    return this.buffered;
  }

  private fail(reason: FrameErrorReason, message: string): never {
    this.chunks = [];
    this.head = 0;
    this.buffered = 0;
    this.failure = new FrameError(reason, message);
    throw this.failure;
  }

  /** Removes exactly n buffered bytes (n <= buffered), copying only when a frame spans chunks. */
  private take(n: number): Buffer {
    this.buffered -= n;
    const first = this.chunks[this.head]!;
    if (first.length >= n) {
      this.consume(first, n);
      return first.subarray(0, n);
    }
    const out = Buffer.allocUnsafe(n);
    let off = 0;
    while (off < n) {
      const c = this.chunks[this.head]!;
      const k = Math.min(c.length, n - off);
      c.copy(out, off, 0, k);
      off += k;
      this.consume(c, k);
    }
    return out;
  }

  /** Drops k bytes from the head chunk; advances an index instead of shift() to stay O(1). */
  private consume(c: Buffer, k: number): void {
    if (k < c.length) {
      this.chunks[this.head] = c.subarray(k);
      return;
    }
    this.head++;
    if (this.head === this.chunks.length) {
      this.chunks = [];
      this.head = 0;
    } else if (this.head >= 1024) {
      this.chunks = this.chunks.slice(this.head);
      this.head = 0;
    }
  }
}
