// The permit `pgherd failover --to` / a switchover gives its target to promote while paused.
import { expect, test } from "bun:test";
import { checkPermit, grantPermit, PERMIT_MS } from "../../src/core/promotion-permit.ts";

const oldLeader = { leading: false, term: 4, leaderId: "old", self: "me" };
const leader = (term: number) => ({ leading: true, term, leaderId: "me", self: "me" });

test("granted: allows the first term the node leads, also when asked again in that term", () => {
  let r = checkPermit(grantPermit(1000, oldLeader), 1100, oldLeader); // the old leader still leads: the campaign has not won yet
  expect(r.allowed).toBe(true);
  r = checkPermit(r.permit, 1200, leader(5));
  expect(r).toEqual({ allowed: true, permit: { until: 1000 + PERMIT_MS, grantedTerm: 4, term: 5 } });
  expect(checkPermit(r.permit, 1300, leader(5)).allowed).toBe(true);
});

test("won, lease not yet acknowledged (leader of its own term, not leading yet): the permit stays (the e2e manual failover found this)", () => {
  let r = checkPermit(grantPermit(0, oldLeader), 10, { leading: false, term: 5, leaderId: null, self: "me" });
  r = checkPermit(r.permit, 20, { leading: false, term: 5, leaderId: "me", self: "me" });
  expect(r.allowed).toBe(true);
  expect(checkPermit(r.permit, 30, leader(5)).allowed).toBe(true);
});

test("a later term led within the minute gets no promotion from it (a pause set since holds)", () => {
  const used = checkPermit(grantPermit(0, oldLeader), 100, leader(5)).permit;
  expect(checkPermit(used, 500, { leading: false, term: 5, leaderId: null, self: "me" })).toEqual({ allowed: false, permit: used });
  expect(checkPermit(used, 600, leader(7))).toEqual({ allowed: false, permit: null });
});

test("the request's election went to another node: the permit ends there", () => {
  const p = grantPermit(0, oldLeader);
  expect(checkPermit(p, 100, { leading: false, term: 5, leaderId: "other", self: "me" })).toEqual({ allowed: false, permit: null });
});

test("a late duplicate request does not unbind a permit in use; a request after this node lost that term is a new one", () => {
  const used = checkPermit(grantPermit(0, oldLeader), 100, leader(5)).permit!;
  expect(grantPermit(200, leader(5), used)).toBe(used);
  // Lost term 5, no leader known yet, the operator asks again (found by a review): granted anew, so winning term 7 promotes.
  const fresh = grantPermit(6000, { leading: false, term: 6, leaderId: null, self: "me" }, used);
  expect(fresh).toEqual({ until: 6000 + PERMIT_MS, grantedTerm: 6, term: null });
  expect(checkPermit(fresh, 6100, leader(7)).allowed).toBe(true);
  expect(grantPermit(300, oldLeader, grantPermit(0, oldLeader))).toEqual({ until: 300 + PERMIT_MS, grantedTerm: 4, term: null });
  expect(grantPermit(PERMIT_MS + 1, leader(5), used)).toEqual({ until: 2 * PERMIT_MS + 1, grantedTerm: 5, term: null });
});

test("expired after a minute, and nothing without a grant", () => {
  expect(checkPermit(grantPermit(0, oldLeader), PERMIT_MS, leader(5))).toEqual({ allowed: false, permit: null });
  expect(checkPermit(null, 0, leader(5))).toEqual({ allowed: false, permit: null });
});
