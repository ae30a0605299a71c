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
