// This agent's etcd lease (src/consensus/etcd/lease.ts): its deadline counts at most the TTL the
// agent asks for, whatever etcd answers (review: a misbehaving etcd's TTL of 30 days gave a deadline
// past setTimeout's 2^31 ms, whose timer then fired at once, again and again).
import { expect, test } from "bun:test";
import { AgentLease } from "../../src/consensus/etcd/lease.ts";
import type { EtcdClient } from "../../src/consensus/etcd/client.ts";
import { usableLeaseMs } from "../../src/consensus/etcd/lease-core.ts";
import { memoryLogger } from "../../src/log.ts";

const HUGE = 30 * 86_400; // seconds

test("a grant or keepalive answering more TTL than asked counts only what was asked", async () => {
  const client = { leaseGrant: async () => ({ id: "7", ttlS: HUGE }), leaseKeepAlive: async () => HUGE, leaseRevoke: async () => {} } as unknown as EtcdClient;
  const lease = new AgentLease({ client, ttlS: 5, maxDrift: 0.02, fenceMs: 400, log: memoryLogger(), replaced: () => {} });
  const bound = 1000 + usableLeaseMs(5, 0.02, 400);
  expect(await lease.renew(1000)).toBe(true); // granted
  expect(lease.valid()).toBeLessThanOrEqual(bound);
  expect(await lease.renew(1000)).toBe(true); // kept alive
  expect(lease.valid()).toBeLessThanOrEqual(bound);
  expect(await lease.takeBack("9", 1000)).toBe(true);
  expect(lease.valid()).toBeLessThanOrEqual(bound);
});
