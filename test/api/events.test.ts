// GET /events (api/events.ts): how many streams one client address may hold, and who gives way
// when all are open. Real streams; the snapshot is a constant.
import { afterEach, expect, test } from "bun:test";
import { EventHub } from "../../src/api/events.ts";
import { memoryLogger } from "../../src/log.ts";

const hubs: EventHub[] = [];
afterEach(() => {
  for (const h of hubs.splice(0)) h.stop();
});
const hub = () => {
  const h = new EventHub(async () => ({ ok: true }), memoryLogger(), 60_000, 16);
  hubs.push(h);
  return h;
};

/** Reads a stream until it ends (true) or 1 s passes (false). */
async function ends(r: Response): Promise<boolean> {
  const reader = r.body!.getReader();
  const deadline = Date.now() + 1000;
  while (Date.now() < deadline) {
    const x = await Promise.race([reader.read(), Bun.sleep(50).then(() => null)]);
    if (x?.done) return true;
  }
  reader.releaseLock();
  return false;
}

test("one address holds at most 4 streams; others still get theirs", () => {
  const h = hub();
  for (let i = 0; i < 4; i++) expect(h.open("10.0.0.1").status).toBe(200);
  const fifth = h.open("10.0.0.1");
  expect(fifth.status).toBe(503);
  expect(h.open("10.0.0.2").status).toBe(200);
  expect(h.size).toBe(5);
});

test("all 16 open: a new address gets one, the oldest stream of the address holding the most is closed", async () => {
  const h = hub();
  const first = h.open("10.0.0.1");
  for (let i = 0; i < 3; i++) h.open("10.0.0.1");
  for (const a of ["10.0.0.2", "10.0.0.3", "10.0.0.4"]) for (let i = 0; i < 4; i++) expect(h.open(a).status).toBe(200);
  expect(h.size).toBe(16);
  expect(h.open("10.0.0.9").status).toBe(200);
  expect(h.size).toBe(16);
  expect(await ends(first)).toBe(true);
});

test("16 addresses with one stream each: the next is refused (no address to take one from)", () => {
  const h = hub();
  for (let i = 1; i <= 16; i++) expect(h.open(`10.0.1.${i}`).status).toBe(200);
  expect(h.open("10.0.2.1").status).toBe(503);
});

test("onEnd is called once when a stream ends, however it ends (the API's front then counts its connection as idle again)", async () => {
  const h = hub();
  const ended: string[] = [];
  const a = h.open("10.0.0.1", () => ended.push("a"));
  for (let i = 0; i < 3; i++) h.open("10.0.0.1");
  for (let i = 1; i <= 12; i++) h.open(`10.0.1.${i}`);
  h.open("10.0.2.1", () => ended.push("closed for another")); // full: a, the oldest of 10.0.0.1, is closed
  expect(ended).toEqual(["a"]);
  expect(await ends(a)).toBe(true);
  const c = h.open("10.0.2.2", () => ended.push("cancelled"));
  await c.body!.cancel();
  h.stop();
  expect(ended).toEqual(["a", "cancelled", "closed for another"]);
});
