// The few DER (ASN.1) encodings an X.509 certificate needs. Pure: bytes in, bytes out.
// Only definite lengths and the types used by x509.ts; nothing is parsed here.

export type Der = Uint8Array;

function len(n: number): number[] {
  if (n < 0x80) return [n];
  const out: number[] = [];
  for (let v = n; v > 0; v = Math.floor(v / 256)) out.unshift(v & 0xff);
  return [0x80 | out.length, ...out];
}

export function tlv(tag: number, body: Der): Der {
  const head = [tag, ...len(body.length)];
  const out = new Uint8Array(head.length + body.length);
  out.set(head, 0);
  out.set(body, head.length);
  return out;
}

export function concat(parts: ReadonlyArray<Der>): Der {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

export const seq = (...items: Der[]): Der => tlv(0x30, concat(items));
export const set = (...items: Der[]): Der => tlv(0x31, concat(items));
export const octets = (b: Der): Der => tlv(0x04, b);
export const bool = (v: boolean): Der => tlv(0x01, Uint8Array.of(v ? 0xff : 0));
export const utf8 = (s: string): Der => tlv(0x0c, new TextEncoder().encode(s));
export const ia5 = (s: string): Der => tlv(0x16, new TextEncoder().encode(s));
/** [n] EXPLICIT (constructed context tag around a complete element). */
export const explicit = (n: number, inner: Der): Der => tlv(0xa0 | n, inner);
/** [n] IMPLICIT primitive (replaces the tag of a primitive such as OCTET STRING or IA5String). */
export const implicit = (n: number, body: Der): Der => tlv(0x80 | n, body);

/** BIT STRING; `unused` trailing bits of the last byte (DER: a named-bit list drops trailing zeros). */
export const bits = (b: Der, unused = 0): Der => tlv(0x03, concat([Uint8Array.of(unused), b]));

/** One element at `at`: its tag and where its body starts and ends (definite lengths only). */
export function readTlv(b: Der, at: number): { tag: number; body: number; end: number } {
  const tag = b[at] ?? -1;
  let n = b[at + 1] ?? 0;
  let body = at + 2;
  if (n & 0x80) {
    const k = n & 0x7f;
    n = 0;
    for (let i = 0; i < k; i++) n = n * 256 + (b[body + i] ?? 0);
    body += k;
  }
  if (tag < 0 || body + n > b.length) throw new Error("truncated DER");
  return { tag, body, end: body + n };
}

/** The children of the constructed element at `at`, as [start, end) ranges including their headers. */
export function children(b: Der, at: number): Array<[number, number]> {
  const { body, end } = readTlv(b, at);
  const out: Array<[number, number]> = [];
  for (let i = body; i < end; i = readTlv(b, i).end) out.push([i, readTlv(b, i).end]);
  return out;
}

/** Unsigned big-endian integer bytes as a DER INTEGER (leading zeros trimmed, sign byte added). */
export function uint(bytes: Der): Der {
  let i = 0;
  while (i < bytes.length - 1 && bytes[i] === 0) i++;
  const b = bytes.subarray(i);
  return tlv(0x02, (b[0] ?? 0) & 0x80 ? concat([Uint8Array.of(0), b]) : b.length ? b : Uint8Array.of(0));
}

export function oid(dotted: string): Der {
  const parts = dotted.split(".").map(Number);
  const [a = 0, b = 0, ...rest] = parts;
  const out = [a * 40 + b];
  for (const n of rest) {
    const chunk: number[] = [n & 0x7f];
    for (let v = Math.floor(n / 128); v > 0; v = Math.floor(v / 128)) chunk.unshift(0x80 | (v & 0x7f));
    out.push(...chunk);
  }
  return tlv(0x06, Uint8Array.from(out));
}

/** UTCTime for years 1950–2049, GeneralizedTime otherwise (RFC 5280 4.1.2.5). Whole seconds, UTC. */
export function time(ms: number): Der {
  const d = new Date(Math.floor(ms / 1000) * 1000);
  const p = (n: number, w = 2) => String(n).padStart(w, "0");
  const rest = `${p(d.getUTCMonth() + 1)}${p(d.getUTCDate())}${p(d.getUTCHours())}${p(d.getUTCMinutes())}${p(d.getUTCSeconds())}Z`;
  const y = d.getUTCFullYear();
  if (y >= 1950 && y < 2050) return tlv(0x17, new TextEncoder().encode(`${p(y % 100)}${rest}`));
  return tlv(0x18, new TextEncoder().encode(`${p(y, 4)}${rest}`));
}
