// The API's connection front. At a cap a newcomer takes the place of the connection that has waited
// longest for its client to deliver a request, whatever its address (found by review: 128 slow
// connections from 128 addresses held every slot and a load balancer's health check was refused);
// when every connection has a request in progress, that of the busiest address (found by review:
// four addresses with 32 keep-alive connections each held all 128). A client that half-closes after
// its request still gets the answer.
import { afterAll, afterEach, expect, test } from "bun:test";
import net from "node:net";
import { CappedFront } from "../../src/net/capped-front.ts";
import { waitFor } from "./helpers.ts";

// A server speaking lines: "?" is a request it answers at once with the client address the front
// says is behind it; "hold" a request it never answers (one in progress).
let front: CappedFront;
let holds = 0;
const echo = net.createServer((s) => {
  let buf = "";
  s.on("data", (d) => {
    const lines = (buf + d).split("\n");
    buf = lines.pop()!; // not a line yet
    for (const line of lines) {
      front.requestArrived(s.remoteAddress!, s.remotePort!);
      if (line === "?") s.write(`${front.clientOf(s.remoteAddress!, s.remotePort!) ?? "?"}\n`);
      else holds++;
    }
  });
});
await new Promise<void>((r) => echo.listen(0, "127.0.0.1", r));
const refused: string[] = [];
const open: Client[] = [];
const start = (max: number, perSource: number) => {
  front = new CappedFront({ host: "127.0.0.1", port: 0, target: { host: "127.0.0.1", port: (echo.address() as net.AddressInfo).port }, max, perSource, onRefused: (reason) => refused.push(reason) });
};
afterAll(() => echo.close());
afterEach(async () => {
  for (const c of open.splice(0)) c.s.destroy();
  await front.stop();
  refused.length = 0;
  holds = 0;
});

type Client = { s: net.Socket; closed: boolean; got: string };
const connect = (from: string): Promise<Client> => new Promise((resolve, reject) => {
  const c: Client = { s: net.connect({ host: "127.0.0.1", port: front.port, localAddress: from }), closed: false, got: "" };
  open.push(c);
  c.s.on("data", (d) => { c.got += d; });
  c.s.on("close", () => { c.closed = true; });
  c.s.on("error", () => {});
  c.s.once("connect", () => resolve(c));
  c.s.once("error", reject);
});
const answered = async (c: Client) => {
  c.s.write("?\n");
  await waitFor(() => c.got.length > 0 || c.closed, 5000, "an answer or a close");
  return c.got.trim();
};
/** Connections from `from`, each with a request the server holds unanswered. */
const holding = async (from: string, n: number) => {
  const cs: Client[] = [];
  for (let i = 0; i < n; i++) cs.push(await connect(from));
  const before = holds;
  for (const c of cs) c.s.write("hold\n");
  await waitFor(() => holds === before + n, 5000, `${n} requests from ${from} to reach the server`);
  return cs;
};

test("full of slow connections, one per address: a newcomer takes the place of the one waiting longest for its client, then the next (before: refused)", async () => {
  start(8, 4);
  const slow: Client[] = [];
  for (let i = 1; i <= 8; i++) {
    const c = await connect(`127.0.1.${i}`);
    c.s.write("GET /primary"); // never a whole request (a line, here)
    slow.push(c);
  }
  const check = await connect("127.0.0.4");
  expect(await answered(check)).toBe("127.0.0.4");
  await waitFor(() => slow[0]!.closed, 5000, "the oldest slow connection to be closed");
  expect(refused).toEqual(["evicted-idle"]);
  // The check, answered after every slow connection opened, has waited less for its client than they have.
  const check2 = await connect("127.0.0.4");
  expect(await answered(check2)).toBe("127.0.0.4");
  await waitFor(() => slow[1]!.closed, 5000, "the next oldest slow connection to be closed");
  expect([check, ...slow.slice(2)].every((c) => !c.closed)).toBe(true);
  expect(refused).toEqual(["evicted-idle", "evicted-idle"]);
});

test("every connection has a request in progress: a newcomer from a quieter source takes the busiest source's oldest; equals do not churn; an answered connection gives way first", async () => {
  start(8, 4);
  const a = await holding("127.0.0.2", 4);
  const b = await holding("127.0.0.3", 4);
  // A fifth from 127.0.0.2 is over its own cap, and none of its own is waiting for its client.
  const over = await connect("127.0.0.2");
  await waitFor(() => over.closed, 5000, "the fifth connection from one source to be closed");
  expect(refused).toEqual(["too-many-from-source"]);
  // A health check from a third address gets in, in place of the oldest request of a busiest source.
  const check = await connect("127.0.0.4");
  expect(await answered(check)).toBe("127.0.0.4");
  await waitFor(() => a[0]!.closed, 5000, "the oldest of 127.0.0.2 to be closed");
  expect(refused.at(-1)).toBe("evicted-for-fairness");
  // The check has its answer: a second one takes its place, not a request in progress.
  const check2 = await connect("127.0.0.4");
  expect(await answered(check2)).toBe("127.0.0.4");
  await waitFor(() => check.closed, 5000, "the answered check to be closed");
  expect(refused.at(-1)).toBe("evicted-idle");
  expect([...a.slice(1), ...b].every((c) => !c.closed)).toBe(true);
  // 127.0.0.2 holds 3 requests, 127.0.0.3 4, 127.0.0.4 1: a newcomer from .2 would leave 4 against 4 — refused.
  const before = holds;
  check2.s.write("hold\n");
  await waitFor(() => holds === before + 1, 5000, "the check's second request to reach the server");
  const again = await connect("127.0.0.2");
  await waitFor(() => again.closed, 5000, "a connection from a source as busy as the busiest to be refused");
  expect(refused.at(-1)).toBe("too-many-connections");
  // One from an address holding none gets in, in place of the busiest (.3)'s oldest.
  const fresh = await connect("127.0.0.5");
  expect(await answered(fresh)).toBe("127.0.0.5");
  await waitFor(() => b[0]!.closed, 5000, "the oldest of 127.0.0.3 to be closed");
  expect(refused.at(-1)).toBe("evicted-for-fairness");
});

test("a source at its own cap replaces its own connection that has waited longest (a slow one), never a request in progress", async () => {
  start(128, 3);
  const [held] = await holding("127.0.0.6", 1);
  const idle = [await connect("127.0.0.6"), await connect("127.0.0.6")];
  const fourth = await connect("127.0.0.6");
  expect(await answered(fourth)).toBe("127.0.0.6");
  await waitFor(() => idle[0]!.closed, 5000, "the source's oldest idle connection to be closed");
  expect(refused).toEqual(["evicted-idle"]);
  expect([held!, idle[1]!].every((c) => !c.closed)).toBe(true);
});

test("a client that half-closes after its request gets its answer; the client map answers only for the front's own address", async () => {
  start(8, 4);
  const c = await connect("127.0.0.5");
  c.s.end("?\n"); // request, then FIN (nc -N, some HTTP/1.0 checkers)
  await waitFor(() => c.got.length > 0 || c.closed, 5000, "an answer or a close");
  expect(c.got.trim()).toBe("127.0.0.5");
  // A local process reaching the server from another loopback address with a port the front uses is no client of the front.
  const held = await connect("127.0.0.6");
  expect(await answered(held)).toBe("127.0.0.6");
  const ports = [...Array(65536).keys()].filter((p) => front.clientOf("127.0.0.1", p) === "127.0.0.6");
  expect(ports.length).toBe(1);
  expect(front.clientOf("127.0.0.2", ports[0]!)).toBeUndefined();
});
