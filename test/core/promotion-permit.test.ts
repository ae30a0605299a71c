// The permit `pgherd failover --to` / a switchover gives its target to promote while paused.
import { expect, test } from "bun:test";
import { checkPermit, grantPermit, PERMIT_MS } from "../../src/core/promotion-permit.ts";

const oldLeader = { leading: false, term: 4, leaderId: "old" };
const leader = (term: number) => ({ leading: true, term, leaderId: "me" });

test("granted: allows the first term the node leads, also when asked again in that term", () => {
  let r = checkPermit(grantPermit(1000, 4), 1100, oldLeader); // the old leader still leads: the campaign has not won yet
  expect(r.allowed).toBe(true);
  r = checkPermit(r.permit, 1200, leader(5));
  expect(r).toEqual({ allowed: true, permit: { until: 1000 + PERMIT_MS, grantedTerm: 4, term: 5 } });
  expect(checkPermit(r.permit, 1300, leader(5)).allowed).toBe(true);
});

test("a later term led within the minute gets no promotion from it (a pause set since holds)", () => {
  const used = checkPermit(grantPermit(0, 4), 100, leader(5)).permit;
  expect(checkPermit(used, 500, { leading: false, term: 5, leaderId: null })).toEqual({ allowed: false, permit: used });
  expect(checkPermit(used, 600, leader(7))).toEqual({ allowed: false, permit: null });
});

test("the request's election went to another node: the permit ends there", () => {
  const p = grantPermit(0, 4);
  expect(checkPermit(p, 100, { leading: false, term: 5, leaderId: "other" })).toEqual({ allowed: false, permit: null });
});

test("a late duplicate request does not unbind a permit in use; an unused or spent one is granted anew", () => {
  const used = checkPermit(grantPermit(0, 4), 100, leader(5)).permit!;
  expect(grantPermit(200, 5, used)).toBe(used);
  expect(grantPermit(300, 4, grantPermit(0, 4))).toEqual({ until: 300 + PERMIT_MS, grantedTerm: 4, term: null });
  expect(grantPermit(PERMIT_MS + 1, 5, used)).toEqual({ until: 2 * PERMIT_MS + 1, grantedTerm: 5, term: null });
});

test("expired after a minute, and nothing without a grant", () => {
  expect(checkPermit(grantPermit(0, 4), PERMIT_MS, leader(5))).toEqual({ allowed: false, permit: null });
  expect(checkPermit(null, 0, leader(5))).toEqual({ allowed: false, permit: null });
});
