// The permit `pgherd failover --to` / a switchover gives its target to promote while paused.
import { expect, test } from "bun:test";
import { checkPermit, grantPermit, PERMIT_MS } from "../../src/core/promotion-permit.ts";

const follower = { leading: false, term: 4 };
const leader = (term: number) => ({ leading: true, term });

test("granted: allows the first term the node leads, also when asked again in that term", () => {
  let p = grantPermit(1000);
  let r = checkPermit(p, 1100, follower); // the old leader still leads: the campaign has not won yet
  expect(r.allowed).toBe(true);
  r = checkPermit(r.permit, 1200, leader(5));
  expect(r).toEqual({ allowed: true, permit: { until: 1000 + PERMIT_MS, term: 5 } });
  p = r.permit!;
  expect(checkPermit(p, 1300, leader(5)).allowed).toBe(true);
});

test("a later term led within the minute gets no promotion from it (a pause set since holds)", () => {
  const used = checkPermit(grantPermit(0), 100, leader(5)).permit;
  expect(checkPermit(used, 500, follower)).toEqual({ allowed: false, permit: used });
  expect(checkPermit(used, 600, leader(7))).toEqual({ allowed: false, permit: null });
});

test("expired after a minute, and nothing without a grant", () => {
  expect(checkPermit(grantPermit(0), PERMIT_MS, leader(5))).toEqual({ allowed: false, permit: null });
  expect(checkPermit(null, 0, leader(5))).toEqual({ allowed: false, permit: null });
});
