import { expect, test } from "bun:test";
import { EtcdClient, prefixEnd } from "../../src/consensus/etcd/client.ts";

const dec = (b64: string) => Buffer.from(b64, "base64").toString("latin1");

test("prefixEnd: the first key after every key with the prefix (last byte + 1; trailing 0xff bytes dropped)", () => {
  expect(dec(prefixEnd("/pgherd/c1/"))).toBe("/pgherd/c10");
  expect(dec(prefixEnd("/pgherd/"))).toBe("/pgherd0");
  expect(Buffer.from(prefixEnd("a\u00ff"), "base64")).toEqual(Buffer.from([0x61, 0xc3, 0xc0])); // UTF-8 bytes c3 bf → c3 c0
});

test("no endpoints: refused at construction; an endpoint that refuses connections fails within the deadline, naming it", async () => {
  expect(() => new EtcdClient({ endpoints: [], requestTimeoutMs: 100 })).toThrow(/no etcd endpoints/);
  const t0 = performance.now();
  await expect(new EtcdClient({ endpoints: ["http://127.0.0.1:9"], requestTimeoutMs: 500 }).range("/x")).rejects.toThrow(/http:\/\/127\.0\.0\.1:9\/v3\/kv\/range/);
  expect(performance.now() - t0).toBeLessThan(1500);
});

test("a read etcd answers with \"leader changed\" is asked again; another error is final", async () => {
  // A stand-in for etcd's HTTP gateway: real etcd cannot be made to answer this on demand.
  let calls = 0;
  const server = Bun.serve({
    port: 0, hostname: "127.0.0.1",
    fetch: async (req) => {
      calls++;
      const body = (await req.json()) as { key: string };
      if (Buffer.from(body.key, "base64").toString() === "/bad") return Response.json({ error: "etcdserver: permission denied", code: 7, message: "etcdserver: permission denied" }, { status: 400 });
      if (calls < 3) return Response.json({ error: "etcdserver: leader changed", code: 14, message: "etcdserver: leader changed" }, { status: 503 });
      return Response.json({ header: { revision: "7" }, kvs: [] });
    },
  });
  try {
    const c = new EtcdClient({ endpoints: [`http://127.0.0.1:${server.port}`], requestTimeoutMs: 1000 });
    expect((await c.range("/x")).revision).toBe(7);
    expect(calls).toBe(3);
    calls = 0;
    await expect(c.range("/bad")).rejects.toThrow(/permission denied/);
    expect(calls).toBe(1);
  } finally {
    server.stop(true);
  }
});
