// The API's connection front. When every slot is held, a newcomer from an address holding fewer
// takes the busiest address's oldest connection (found by review: four addresses with 32
// keep-alive connections each held all 128, and a load balancer's health check from a fifth was
// reset). A client that half-closes after its request still gets the answer.
import { afterAll, expect, test } from "bun:test";
import net from "node:net";
import { CappedFront } from "../../src/net/capped-front.ts";
import { waitFor } from "./helpers.ts";

// A server that answers each line with the client address the front says is behind it.
const echo = net.createServer((s) => s.on("data", () => s.write(`${front.clientOf(s.remoteAddress!, s.remotePort!) ?? "?"}\n`)));
await new Promise<void>((r) => echo.listen(0, "127.0.0.1", r));
const refused: string[] = [];
const front = new CappedFront({ host: "127.0.0.1", port: 0, target: { host: "127.0.0.1", port: (echo.address() as net.AddressInfo).port }, max: 8, perSource: 4, onRefused: (reason) => refused.push(reason) });
afterAll(async () => {
  await front.stop();
  echo.close();
});

type Client = { s: net.Socket; closed: boolean; got: string };
const connect = (from: string): Promise<Client> => new Promise((resolve, reject) => {
  const c: Client = { s: net.connect({ host: "127.0.0.1", port: front.port, localAddress: from }), closed: false, got: "" };
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

test("full: a newcomer from a quieter source takes the busiest source's oldest connection; equals do not churn", async () => {
  const a = await Promise.all([1, 2, 3, 4].map(() => connect("127.0.0.2")));
  const b = await Promise.all([1, 2, 3, 4].map(() => connect("127.0.0.3")));
  for (const c of [...a, ...b]) expect(await answered(c)).toBe(c.s.localAddress!);
  // All 8 held: a fifth from 127.0.0.2 is over its own cap.
  const over = await connect("127.0.0.2");
  await waitFor(() => over.closed, 5000, "the fifth connection from one source to be closed");
  expect(refused).toEqual(["too-many-from-source"]);
  // A health check from a third address gets in, in place of the oldest connection of a busiest source.
  const check = await connect("127.0.0.4");
  expect(await answered(check)).toBe("127.0.0.4");
  await waitFor(() => a[0]!.closed, 5000, "the oldest of 127.0.0.2 to be closed");
  expect(refused.at(-1)).toBe("evicted-for-fairness");
  expect([...a.slice(1), ...b].every((c) => !c.closed)).toBe(true);
  // 127.0.0.2 holds 3, 127.0.0.3 4, 127.0.0.4 1: a second from .4 takes .3's oldest; then 3, 3, 2.
  const check2 = await connect("127.0.0.4");
  expect(await answered(check2)).toBe("127.0.0.4");
  await waitFor(() => b[0]!.closed, 5000, "the oldest of 127.0.0.3 to be closed");
  // 3, 3, 2 and full: a newcomer from .2 would leave 4 against 2 — refused, nobody evicted for a source as busy as the busiest.
  const again = await connect("127.0.0.2");
  await waitFor(() => again.closed, 5000, "a connection from a busiest source to be refused");
  expect(refused.at(-1)).toBe("too-many-connections");
  for (const c of [...a, ...b, check, check2]) c.s.destroy();
});

test("a client that half-closes after its request gets its answer; the client map answers only for the front's own address", async () => {
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
  held.s.destroy();
});
