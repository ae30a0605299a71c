import { describe, expect, test } from "bun:test";
import { FrameDecoder, FrameError, encodeFrame } from "../../src/net/framing.ts";

const msgs = [{ a: 1 }, "héllo ✓", [1, 2, { deep: null }], 42, { big: "x".repeat(3000) }];
const wire = Buffer.concat(msgs.map((m) => encodeFrame(m, 1 << 20)));

function frameError(fn: () => unknown): FrameError {
  try {
    fn();
  } catch (e) {
    if (e instanceof FrameError) return e;
    throw e;
  }
  throw new Error("expected a FrameError");
}

describe("framing", () => {
  test("encodes a 4-byte big-endian length and UTF-8 JSON", () => {
    const f = encodeFrame({ é: 1 }, 100);
    const json = Buffer.from(JSON.stringify({ é: 1 }), "utf8");
    expect(f.readUInt32BE(0)).toBe(json.length);
    expect(f.subarray(4).equals(json)).toBe(true);
  });

  test("refuses to encode more than maxBytes", () => {
    expect(frameError(() => encodeFrame("x".repeat(100), 50)).reason).toBe("oversized");
    expect(encodeFrame("x".repeat(48), 50).length).toBe(54); // exactly at the limit is fine
  });

  test("several frames in one chunk", () => {
    expect(new FrameDecoder(1 << 20).push(wire)).toEqual(msgs);
  });

  test("every split point of the stream into two chunks", () => {
    for (let i = 0; i <= wire.length; i++) {
      const d = new FrameDecoder(1 << 20);
      expect([...d.push(wire.subarray(0, i)), ...d.push(wire.subarray(i))]).toEqual(msgs);
      expect(d.pending()).toBe(0);
    }
  });

  test("one byte at a time", () => {
    const d = new FrameDecoder(1 << 20);
    const out: unknown[] = [];
    for (let i = 0; i < wire.length; i++) out.push(...d.push(wire.subarray(i, i + 1)));
    expect(out).toEqual(msgs);
  });

  test("oversized length prefix is rejected as soon as the 4 bytes arrive", () => {
    const d = new FrameDecoder(1000);
    expect(d.push(Buffer.from([0xff, 0xff]))).toEqual([]);
    const e = frameError(() => d.push(Buffer.from([0xff, 0xff])));
    expect(e.reason).toBe("oversized");
    expect(d.pending()).toBe(0); // nothing buffered for the announced body
    expect(frameError(() => d.push(Buffer.from("{}"))).reason).toBe("oversized"); // dead afterwards
  });

  test("a frame exactly at the limit passes, one byte more does not", () => {
    const ok = encodeFrame("y".repeat(98), 100);
    expect(new FrameDecoder(100).push(ok)).toEqual(["y".repeat(98)]);
    expect(frameError(() => new FrameDecoder(99).push(ok)).reason).toBe("oversized");
  });

  test("invalid JSON and invalid UTF-8", () => {
    const bad = Buffer.from("{nope", "utf8");
    const frame = Buffer.concat([Buffer.from([0, 0, 0, bad.length]), bad]);
    expect(frameError(() => new FrameDecoder(100).push(frame)).reason).toBe("invalid-json");
    const notUtf8 = Buffer.from([0, 0, 0, 3, 0x22, 0xff, 0x22]); // "\xff"
    expect(frameError(() => new FrameDecoder(100).push(notUtf8)).reason).toBe("invalid-json");
  });

  test("empty frame", () => {
    expect(frameError(() => new FrameDecoder(100).push(Buffer.alloc(4))).reason).toBe("empty");
  });

  test("maxBytes can be raised between frames from the pushEach callback", () => {
    const d = new FrameDecoder(10);
    const seen: unknown[] = [];
    d.pushEach(Buffer.concat([encodeFrame(1, 10), encodeFrame("z".repeat(50), 100)]), (v) => {
      seen.push(v);
      d.maxBytes = 100;
    });
    expect(seen).toEqual([1, "z".repeat(50)]);
  });

  test("many tiny chunks for one large frame stay linear", () => {
    const big = encodeFrame("q".repeat(400_000), 1 << 20);
    const d = new FrameDecoder(1 << 20);
    const t0 = performance.now();
    let out: unknown[] = [];
    for (let i = 0; i < big.length; i += 7) out = out.concat(d.push(big.subarray(i, i + 7)));
    expect(out).toEqual(["q".repeat(400_000)]);
    // ~57k chunks: quadratic copying would take many seconds; linear takes a few ms.
    expect(performance.now() - t0).toBeLessThan(2000);
  });
});
