// Signed API requests (src/api/request-signing.ts): the nonces an agent issues, the header's format,
// and what a signature covers. The CLI against a real API server: test/cli/token.test.ts.
import { describe, expect, test } from "bun:test";
import { macMatches, NonceBook, parseSigned, requestTarget, signRequest } from "../../src/api/request-signing.ts";

const TOKEN = "t".repeat(40);
const enc = (s: string) => new TextEncoder().encode(s);

describe("NonceBook", () => {
  test("a nonce is good once, and only before its expiry", () => {
    const book = new NonceBook(1000, 8);
    const a = book.issue(0);
    expect(a).toMatch(/^[0-9a-f]{32}$/);
    expect(book.take(a, 10)).toBe(true);
    expect(book.take(a, 20)).toBe(false);
    const b = book.issue(100);
    expect(book.take(b, 1100)).toBe(false); // expired
    expect(book.take("0".repeat(32), 0)).toBe(false); // never issued
  });

  test("at most `max` outstanding: the oldest goes first; expired ones are dropped at the next issue", () => {
    const book = new NonceBook(1000, 3);
    const [a, b, c] = [book.issue(0), book.issue(1), book.issue(2)];
    const d = book.issue(3);
    expect(book.size()).toBe(3);
    expect(book.take(a, 4)).toBe(false);
    expect([book.take(b, 4), book.take(c, 4), book.take(d, 4)]).toEqual([true, true, true]);
    book.issue(10);
    book.issue(20);
    book.issue(2000);
    expect(book.size()).toBe(1);
  });
});

describe("signatures", () => {
  const nonce = "0123456789abcdef0123456789abcdef";
  const signed = parseSigned(signRequest(TOKEN, "post", "/switchover?x=1", nonce, '{"to":"a"}'))!;

  test("the header parses back; anything else is not a signed header", () => {
    expect(signed.nonce).toBe(nonce);
    for (const h of [null, "", "Bearer abc", `PGHERD-HMAC nonce=${nonce}`, `PGHERD-HMAC nonce=${nonce.toUpperCase()}, mac=${"a".repeat(64)}`, `PGHERD-HMAC nonce=${nonce}, mac=${"a".repeat(63)}`]) {
      expect(parseSigned(h)).toBeNull();
    }
  });

  test("it covers the method, the path with its query, the nonce and the body, under the token", () => {
    expect(macMatches(TOKEN, "POST", "/switchover?x=1", enc('{"to":"a"}'), signed)).toBe(true);
    expect(macMatches(TOKEN, "DELETE", "/switchover?x=1", enc('{"to":"a"}'), signed)).toBe(false);
    expect(macMatches(TOKEN, "POST", "/switchover", enc('{"to":"a"}'), signed)).toBe(false);
    expect(macMatches(TOKEN, "POST", "/switchover?x=1", enc('{"to":"b"}'), signed)).toBe(false);
    expect(macMatches("u".repeat(40), "POST", "/switchover?x=1", enc('{"to":"a"}'), signed)).toBe(false);
    expect(macMatches(TOKEN, "POST", "/switchover?x=1", enc('{"to":"a"}'), { ...signed, nonce: "f".repeat(32) })).toBe(false);
  });

  test("the CLI's URL and the request the server sees give the same target", () => {
    expect(requestTarget("http://127.0.0.1:7402/history?since=5&x=%20y")).toBe("/history?since=5&x=%20y");
    expect(requestTarget(new Request("http://127.0.0.1:7402/history?since=5&x=%20y").url)).toBe("/history?since=5&x=%20y");
    expect(requestTarget("/pause")).toBe("/pause");
  });
});
