// Whom the API's front lets in at its caps and whose place a newcomer takes (pure; times passed in).
// Found by review: with 128 connections from 128 addresses, each a partial request, the busiest
// source never held two more than a newcomer's, so a load balancer's health check was refused.
import { expect, test } from "bun:test";
import { admit, type Held, type Phase } from "../../src/net/capped-front-core.ts";

const held = (specs: Array<[key: string, phase: Phase, since: number]>): Held<number>[] =>
  specs.map(([key, phase, since], i) => ({ conn: i, key, phase, since }));

test("128 addresses, one slow connection each: a newcomer from a 129th takes the place of the one waiting longest", () => {
  const h = held(Array.from({ length: 128 }, (_, i) => [`127.0.1.${i + 1}`, "client", 1000 + ((i * 37) % 128)] as [string, Phase, number]));
  const a = admit(h, "127.0.0.1", 128, 32);
  expect(a).toEqual({ admit: true, evict: { conn: 0, reason: "evicted-idle" } }); // since 1000
  // Whatever source holds it: the longest-waiting of all, not the busiest source's oldest.
  const mixed = held([["a", "client", 50], ["a", "client", 60], ["b", "client", 10], ["a", "server", 5]]);
  expect(admit(mixed, "c", 4, 32)).toEqual({ admit: true, evict: { conn: 2, reason: "evicted-idle" } });
});

test("a request in progress is not closed while any connection waits for its client; an answered one (keep-alive, a stream) waits from its last answer bytes", () => {
  // conn 0: a health check whose request the server is answering (since its arrival, 100); conn 1: a
  // stream that got bytes at 900; conn 2: a slowloris open since 500.
  const h = held([["lb", "server", 100], ["dash", "client", 900], ["x", "client", 500]]);
  expect(admit(h, "y", 3, 32)).toEqual({ admit: true, evict: { conn: 2, reason: "evicted-idle" } });
  expect(admit(held([["lb", "server", 100], ["dash", "client", 900]]), "y", 2, 32)).toEqual({ admit: true, evict: { conn: 1, reason: "evicted-idle" } });
});

test("every connection has a request in progress: the busiest source's oldest gives way to a source holding none or two fewer; equals do not churn; authorized ones never", () => {
  const h = held([["a", "server", 30], ["b", "server", 10], ["a", "server", 20], ["c", "server", 5]]);
  expect(admit(h, "d", 4, 32)).toEqual({ admit: true, evict: { conn: 2, reason: "evicted-for-fairness" } }); // a holds 2: its oldest request
  expect(admit(h, "b", 4, 32)).toEqual({ admit: false, reason: "too-many-connections" }); // b would hold 2, as a does
  // One each from 4 addresses (the lockout the review found): a fifth address still gets in, in place of the oldest request.
  const ones = held([["a", "server", 30], ["b", "server", 10], ["c", "server", 20], ["d", "server", 40]]);
  expect(admit(ones, "e", 4, 32)).toEqual({ admit: true, evict: { conn: 1, reason: "evicted-for-fairness" } });
  expect(admit(ones, "a", 4, 32)).toEqual({ admit: false, reason: "too-many-connections" });
  // An operator's authorized action (a backup for hours) is never the one closed.
  const kept = held([["a", "kept", 1], ["a", "kept", 2], ["b", "server", 50]]);
  expect(admit(kept, "c", 3, 32)).toEqual({ admit: true, evict: { conn: 2, reason: "evicted-for-fairness" } });
  expect(admit(held([["a", "kept", 1], ["b", "kept", 2]]), "c", 2, 32)).toEqual({ admit: false, reason: "too-many-connections" });
});

test("a source at its own cap replaces its own connection that has waited longest, never another's, never a request in progress", () => {
  const h = held([["a", "server", 1], ["b", "client", 2], ["a", "client", 40], ["a", "client", 30]]);
  expect(admit(h, "a", 128, 3)).toEqual({ admit: true, evict: { conn: 3, reason: "evicted-idle" } });
  expect(admit(held([["a", "server", 1], ["a", "kept", 2], ["b", "client", 3]]), "a", 128, 2)).toEqual({ admit: false, reason: "too-many-from-source" });
  expect(admit(h, "b", 128, 3)).toEqual({ admit: true });
});

test("while too many connections closed to make room are still closing, a newcomer that would take a place is refused (descriptors stay bounded in a burst)", () => {
  const h = held([["a", "client", 1], ["a", "client", 2], ["b", "client", 3]]);
  expect(admit(h, "c", 3, 32, false)).toEqual({ admit: false, reason: "too-many-connections" });
  expect(admit(h, "a", 4, 2, false)).toEqual({ admit: false, reason: "too-many-from-source" });
  expect(admit(h, "c", 4, 32, false)).toEqual({ admit: true }); // room without taking a place
});
