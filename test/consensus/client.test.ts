import { expect, test } from "bun:test";
import { EtcdClient, OutcomeUnknown, prefixEnd } from "../../src/consensus/etcd/client.ts";

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

/** Stand-ins for two etcd members: `a` takes every request and never answers in time, `b` answers at once. */
function hangingThenAnswering(answer: (path: string) => unknown) {
  const hits = { a: [] as string[], b: [] as string[] };
  const a = Bun.serve({ port: 0, hostname: "127.0.0.1", fetch: async (req) => (hits.a.push(new URL(req.url).pathname), await Bun.sleep(1000), Response.json({})) });
  const b = Bun.serve({ port: 0, hostname: "127.0.0.1", fetch: (req) => {
    const path = new URL(req.url).pathname;
    hits.b.push(path);
    return new Response(JSON.stringify(answer(path)) + "\n");
  } });
  const c = new EtcdClient({ endpoints: [`http://127.0.0.1:${a.port}`, `http://127.0.0.1:${b.port}`], requestTimeoutMs: 150 });
  return { c, hits, stop: () => (a.stop(true), b.stop(true)) };
}

test("a write (txn with a put or delete, lease grant, lease revoke) sent without an answer is never sent again: OutcomeUnknown; the next request starts at the next endpoint", async () => {
  for (const send of [
    (c: EtcdClient) => c.txn([{ key: "/k", target: "VALUE", value: "v" }], [{ put: { key: "/k", value: "w" } }]),
    (c: EtcdClient) => c.txn([], [{ del: { key: "/k" } }, { range: { key: "/k" } }]),
    (c: EtcdClient) => c.leaseGrant(5),
    (c: EtcdClient) => c.leaseRevoke("1"),
  ]) {
    const f = hangingThenAnswering(() => ({ header: { revision: "9" }, succeeded: false, ID: "1", kvs: [] }));
    try {
      const e = await send(f.c).then(() => null, (x: Error) => x);
      expect(e).toBeInstanceOf(OutcomeUnknown);
      expect(e!.message).toMatch(/may have applied/);
      expect([f.hits.a.length, f.hits.b]).toEqual([1, []]); // never re-sent to b, whose answer ("not applied") would be taken as the outcome
      await f.c.range("/k");
      expect([f.hits.a.length, f.hits.b]).toEqual([1, ["/v3/kv/range"]]);
    } finally {
      f.stop();
    }
  }
});

test("a read (range, a transaction of reads only, a lease keepalive) sent without an answer is asked of the next endpoint", async () => {
  const f = hangingThenAnswering((path) => (path === "/v3/lease/keepalive" ? { result: { header: { revision: "7" }, ID: "1", TTL: "5" } } : { header: { revision: "7" }, succeeded: true, kvs: [] }));
  try {
    expect((await f.c.range("/k")).revision).toBe(7);
    (f.c as unknown as { current: number }).current = 0;
    expect((await f.c.txn([], [{ range: { key: "/k" } }])).revision).toBe(7);
    (f.c as unknown as { current: number }).current = 0;
    expect(await f.c.leaseKeepAlive("1")).toBe(5);
    expect([f.hits.a.length, f.hits.b]).toEqual([3, ["/v3/kv/range", "/v3/kv/txn", "/v3/lease/keepalive"]]);
  } finally {
    f.stop();
  }
});

test("a write that could not connect (nothing sent) goes to the next endpoint", async () => {
  let hits = 0;
  const b = Bun.serve({ port: 0, hostname: "127.0.0.1", fetch: () => (hits++, Response.json({ header: { revision: "3" }, succeeded: true })) });
  try {
    const c = new EtcdClient({ endpoints: ["http://127.0.0.1:9", `http://127.0.0.1:${b.port}`], requestTimeoutMs: 500 });
    expect(await c.txn([], [{ put: { key: "/k", value: "v" } }])).toMatchObject({ succeeded: true, revision: 3 });
    expect(hits).toBe(1);
  } finally {
    b.stop(true);
  }
});

/** A stand-in for a member that answers every request at once with `answer`, and one that answers like etcd. */
function refusingThenAnswering(answer: () => Response) {
  const hits = { a: 0, b: 0 };
  const a = Bun.serve({ port: 0, hostname: "127.0.0.1", fetch: () => (hits.a++, answer()) });
  const b = Bun.serve({ port: 0, hostname: "127.0.0.1", fetch: (req) => {
    hits.b++;
    const path = new URL(req.url).pathname;
    return new Response(JSON.stringify(path === "/v3/lease/keepalive" ? { result: { header: { revision: "7" }, ID: "1", TTL: "5" } } : { header: { revision: "7" }, succeeded: true, kvs: [], ID: "1", TTL: "5" }) + "\n");
  } });
  const c = new EtcdClient({ endpoints: [`http://127.0.0.1:${a.port}`, `http://127.0.0.1:${b.port}`], requestTimeoutMs: 500 });
  return { c, hits, stop: () => (a.stop(true), b.stop(true)) };
}
const grpcError = (status: number, message: string, code = 14) => () => Response.json({ error: message, code, message }, { status });

test("a member that refuses before raft (learner, no leader, too many requests) pins nobody: every request, writes too, goes to the next endpoint, and the next request starts there", async () => {
  for (const answer of [grpcError(503, "etcdserver: rpc not supported for learner"), grpcError(503, "etcdserver: no leader"), grpcError(429, "etcdserver: too many requests", 8)]) {
    const f = refusingThenAnswering(answer);
    try {
      expect((await f.c.range("/k")).revision).toBe(7);
      (f.c as unknown as { current: number }).current = 0;
      expect((await f.c.txn([], [{ put: { key: "/k", value: "v" } }])).succeeded).toBe(true);
      (f.c as unknown as { current: number }).current = 0;
      expect((await f.c.leaseGrant(5)).id).toBe("1");
      expect(f.hits).toEqual({ a: 3, b: 3 });
      await f.c.range("/k");
      expect(f.hits).toEqual({ a: 3, b: 4 }); // current moved on with the success
    } finally {
      f.stop();
    }
  }
});

test("a proxy's 502 page, a 503 \"request timed out\", a non-JSON body or a 200 whose JSON is not etcd's: a read or keepalive goes to the next endpoint; a write fails as OutcomeUnknown, not re-sent, and the next request starts at the next endpoint", async () => {
  for (const answer of [
    () => new Response("<html>502 Bad Gateway</html>", { status: 502 }), grpcError(503, "etcdserver: request timed out"), () => new Response("garbage"),
    // another server's JSON (no header with the store's revision): once taken as an empty range or a refused transaction
    () => Response.json({}), () => Response.json({ kvs: [], succeeded: true, result: { TTL: "5" } }),
  ]) {
    const f = refusingThenAnswering(answer);
    try {
      expect((await f.c.range("/k")).revision).toBe(7);
      (f.c as unknown as { current: number }).current = 0;
      expect(await f.c.leaseKeepAlive("1")).toBe(5);
      (f.c as unknown as { current: number }).current = 0;
      expect(await f.c.txn([], [{ put: { key: "/k", value: "v" } }]).then(() => null, (e: Error) => e)).toBeInstanceOf(OutcomeUnknown);
      expect(f.hits).toEqual({ a: 3, b: 2 });
      await f.c.txn([], [{ put: { key: "/k", value: "v" } }]);
      expect(f.hits).toEqual({ a: 3, b: 3 });
    } finally {
      f.stop();
    }
  }
});

test("a keepalive whose streamed answer is etcd's \"no leader\" goes to the next endpoint", async () => {
  const f = refusingThenAnswering(() => new Response(JSON.stringify({ error: { grpc_code: 14, http_code: 503, message: "etcdserver: no leader", http_status: "Service Unavailable" } }) + "\n"));
  try {
    expect(await f.c.leaseKeepAlive("1")).toBe(5);
    expect(f.hits).toEqual({ a: 1, b: 1 });
  } finally {
    f.stop();
  }
});

test("an answer without a Content-Length (chunked) is read as a stream and refused once past 8 MiB, not read whole first", async () => {
  const chunk = new Uint8Array(1 << 20).fill(0x20);
  let sent = 0;
  const server = Bun.serve({
    port: 0, hostname: "127.0.0.1",
    fetch: () => new Response(new ReadableStream({ pull: async (c) => { sent++; c.enqueue(chunk); await Bun.sleep(1); } }), { headers: { "content-type": "application/json" } }),
  });
  try {
    const c = new EtcdClient({ endpoints: [`http://127.0.0.1:${server.port}`], requestTimeoutMs: 5000 });
    const t0 = performance.now();
    await expect(c.range("/k")).rejects.toThrow(/more than 8388608 bytes refused/);
    expect(performance.now() - t0).toBeLessThan(3000); // before: read on (endlessly) until the request's deadline
    expect(sent).toBeLessThan(64);
  } finally {
    server.stop(true);
  }
});

test("credentials etcd refuses are not sent again at every request: the refusal is the answer for a while (review)", async () => {
  let logins = 0;
  const server = Bun.serve({
    port: 0, hostname: "127.0.0.1",
    fetch: (req) => {
      if (new URL(req.url).pathname === "/v3/auth/authenticate") {
        logins++;
        return Response.json({ error: "etcdserver: authentication failed, invalid user ID or password", code: 3, message: "etcdserver: authentication failed, invalid user ID or password" }, { status: 400 });
      }
      return Response.json({ header: { revision: "1" }, kvs: [] });
    },
  });
  try {
    const c = new EtcdClient({ endpoints: [`http://127.0.0.1:${server.port}`], requestTimeoutMs: 1000, auth: { username: "pgherd", password: "rotated" } });
    for (let i = 0; i < 20; i++) await expect(c.range("/x")).rejects.toThrow(/authentication failed/);
    expect(logins).toBe(1); // before: 20, a bcrypt check on etcd each
    await Bun.sleep(1100);
    await expect(c.range("/x")).rejects.toThrow(/authentication failed/); // asked once more...
    expect(logins).toBe(2);
    await expect(c.range("/x")).rejects.toThrow(/asked again in 2 s/); // ...then not for twice as long
    expect(logins).toBe(2);
  } finally {
    server.stop(true);
  }
});
