// [vip] at load: an IPv4 address with its prefix, and the interface it goes on; a fence bounds its wait
// for the removal (a fake ip: the real one runs in vip.e2e).
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseConfig } from "../../src/config/load.ts";
import { createVip, missingCap, type Runner, VirtualIp } from "../../src/integrations/vip.ts";
import { memoryLogger } from "../../src/log.ts";
import { waitFor } from "../helpers/proc.ts";

const cfg = (vip: string) => parseConfig(`cluster = "main"\nsecret = "${"k".repeat(40)}"\n[vip]\n${vip}\n`, "pgherd.toml");

test("vip.address needs its prefix length and an interface", () => {
  expect(cfg(`address = "10.0.0.50/24"\ninterface = "eth0"`).vip).toEqual({ address: "10.0.0.50/24", interface: "eth0" });
  expect(() => cfg(`address = "10.0.0.50"\ninterface = "eth0"`)).toThrow(/vip\.address/);
  expect(() => cfg(`address = "10.0.0.300/24"\ninterface = "eth0"`)).toThrow(/vip\.address/);
  expect(() => cfg(`address = "10.0.0.50/24"`)).toThrow(/vip\.interface.*required/);
  expect(() => cfg(`address = "10.0.0.50/24"\ninterface = "eth0; rm -rf /"`)).toThrow(/vip\.interface/);
  expect(cfg("").vip.address).toBe("");
});

test("a refused ip or arping names the capability the agent lacks", () => {
  expect(missingCap("RTNETLINK answers: Operation not permitted", "CAP_NET_ADMIN")).toContain("the agent lacks CAP_NET_ADMIN");
  expect(missingCap("arping: socket: Operation not permitted", "CAP_NET_RAW")).toContain("the agent lacks CAP_NET_RAW");
  // The shipped unit's RestrictAddressFamilies without AF_PACKET (review: the documented drop-in left it out).
  expect(missingCap("arping: socket: Address family not supported by protocol", "CAP_NET_RAW")).toContain("RestrictAddressFamilies=AF_PACKET");
  expect(missingCap("RTNETLINK answers: File exists", "CAP_NET_ADMIN")).toBe("");
});

test("a witness, which never holds the lease, leaves [vip] alone: no ip at its start (review)", () => {
  const dir = mkdtempSync(join(tmpdir(), "pgherd-vip-"));
  try {
    const witness = parseConfig(`cluster = "main"\nsecret = "${"k".repeat(40)}"\nrole = "witness"\nstate_dir = "${dir}"\n[vip]\naddress = "10.0.0.50/24"\ninterface = "eth0"\n`, "pgherd.toml");
    const log = memoryLogger();
    expect(createVip(witness, log)).toBeNull();
    expect(log.lines).toEqual([expect.stringContaining("vip: 10.0.0.50/24 is not used on a witness")]);
    expect(createVip({ ...witness, role: "database" }, memoryLogger())).toBeInstanceOf(VirtualIp);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

describe("a fence does not wait on a slow ip", () => {
  const spec = { address: "10.0.0.50/24", interface: "eth0" };
  const dir = mkdtempSync(join(tmpdir(), "pgherd-vip-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  test("releaseWithin returns after its bound while an add hangs; the add then skips its announcement and the removal follows", async () => {
    const calls: string[] = [];
    let finishAdd: () => void = () => {};
    const run: Runner = (cmd, args) => {
      calls.push(`${cmd} ${args[0] === "addr" ? args[1] : args[0]}`);
      if (cmd === "ip" && args[1] === "add") return new Promise((r) => (finishAdd = () => r({ error: null })));
      return Promise.resolve({ error: null });
    };
    const log = memoryLogger();
    const vip = new VirtualIp(spec, dir, log, run);
    vip.hold();
    await Bun.sleep(0);
    const t0 = performance.now();
    await vip.releaseWithin("lease lost", 50);
    expect(performance.now() - t0).toBeLessThan(1000); // bounded: the add still hangs
    expect(calls).toEqual(["ip add"]);
    expect(log.lines.join("\n")).toContain("not removed within 50 ms (lease lost): the removal goes on");
    finishAdd();
    await waitFor(() => calls.length === 2, { timeoutMs: 5000, what: "the removal after the add" });
    expect(calls).toEqual(["ip add", "ip del"]); // no arping for an address being released
  });

  test("an add queued behind a slow removal while the lease came and went is not made (review)", async () => {
    const calls: string[] = [];
    let finishDel: () => void = () => {};
    let first = true;
    const run: Runner = (cmd, args) => {
      calls.push(`${cmd} ${args[0] === "addr" ? args[1] : args[0]}`);
      if (cmd === "ip" && args[1] === "del" && first) {
        first = false;
        return new Promise((r) => (finishDel = () => r({ error: null })));
      }
      return Promise.resolve({ error: null });
    };
    const vip = new VirtualIp(spec, dir, memoryLogger(), run);
    void vip.release("agent starting"); // its ip hangs
    await Bun.sleep(0);
    vip.hold(); // a lease won...
    void vip.release("lease lost"); // ...and lost while the first removal still runs
    finishDel();
    await waitFor(() => calls.length >= 2, { timeoutMs: 5000, what: "the queued steps" });
    await Bun.sleep(50);
    expect(calls).toEqual(["ip del", "ip del"]);
  });

  test("a quick removal: releaseWithin resolves once it is done, nothing said about a bound", async () => {
    const calls: string[] = [];
    const run: Runner = (cmd, args) => (calls.push(`${cmd} ${args[1]}`), Promise.resolve({ error: null }));
    const log = memoryLogger();
    const vip = new VirtualIp(spec, dir, log, run);
    vip.hold();
    await waitFor(() => calls.length === 2, { timeoutMs: 5000, what: "added and announced" });
    await vip.releaseWithin("lease lost", 5000);
    expect(calls).toEqual(["ip add", "arping -c", "ip del"]);
    expect(log.lines.join("\n")).not.toContain("not removed within");
  });

  test("a removal that fails is tried again until the address is gone (the watchdog does not remove it after the agent's own fence)", async () => {
    const calls: string[] = [];
    let failures = 2;
    const run: Runner = (cmd, args) => {
      calls.push(`${cmd} ${args[1]}`);
      if (args[1] === "del" && failures-- > 0) return Promise.resolve({ error: "RTNETLINK answers: Device or resource busy" });
      return Promise.resolve({ error: null });
    };
    const log = memoryLogger();
    const vip = new VirtualIp(spec, dir, log, run, { retryFirstMs: 10 });
    vip.hold();
    await waitFor(() => calls.length === 2, { timeoutMs: 5000, what: "added and announced" });
    await vip.releaseWithin("lease lost", 5000);
    await waitFor(() => log.lines.some((l) => l.includes("removed from eth0: lease lost")), { timeoutMs: 5000, what: "the removal retried until it succeeds" });
    expect(calls).toEqual(["ip add", "arping -c", "ip del", "ip del", "ip del"]);
    expect(log.lines.filter((l) => l.startsWith("error")).map((l) => /attempt (\d+); again in (\d+) ms/.exec(l)?.slice(1))).toEqual([["1", "10"], ["2", "20"]]);
    await Bun.sleep(100);
    expect(calls).toHaveLength(5); // gone: no more attempts
  });

  test("a lease held again stops the retries (the address is this node's again)", async () => {
    const calls: string[] = [];
    const run: Runner = (cmd, args) => {
      calls.push(`${cmd} ${args[1]}`);
      return Promise.resolve({ error: args[1] === "del" ? "RTNETLINK answers: Device or resource busy" : null });
    };
    const vip = new VirtualIp(spec, dir, memoryLogger(), run, { retryFirstMs: 20 });
    await vip.release("agent starting");
    expect(calls).toEqual(["ip del"]);
    vip.hold();
    await waitFor(() => calls.length === 3, { timeoutMs: 5000, what: "added and announced" });
    await Bun.sleep(150);
    expect(calls).toEqual(["ip del", "ip add", "arping -c"]);
  });

  test("the agent's stop removes the address once more and does not retry a failure", async () => {
    const calls: string[] = [];
    const run: Runner = (cmd, args) => (calls.push(`${cmd} ${args[1]}`), Promise.resolve({ error: args[1] === "del" ? "RTNETLINK answers: Device or resource busy" : null }));
    const log = memoryLogger();
    const vip = new VirtualIp(spec, dir, log, run, { retryFirstMs: 10 });
    await vip.stop("SIGTERM: the agent stops");
    vip.hold(); // a renewal racing the stop: nothing added
    await Bun.sleep(100); // ten retry intervals
    expect(calls).toEqual(["ip del"]);
    expect(log.lines.filter((l) => l.startsWith("error"))).toEqual([expect.stringContaining("(the agent stops)")]);
  });
});

// A fake interface: `ip addr add/del/show` act on a set of addresses; arping calls are recorded with
// their -c and their abort signal (review: a failed add was never tried again while the lease was
// held, an address removed by something else never came back, one gratuitous ARP frame only).
function fakeHost(o: { failAdds?: number; failArpings?: number; hangArping?: boolean } = {}) {
  const on = new Set<string>();
  const calls: string[] = [];
  const arpings: { count: number; signal?: AbortSignal }[] = [];
  let failAdds = o.failAdds ?? 0;
  let failArpings = o.failArpings ?? 0;
  const run: Runner = (cmd, args, signal) => {
    if (cmd === "arping") {
      calls.push("arping");
      arpings.push({ count: Number(args[args.indexOf("-c") + 1]), signal });
      if (o.hangArping) return new Promise((r) => signal?.addEventListener("abort", () => r({ error: "killed" })));
      return Promise.resolve({ error: failArpings-- > 0 ? "arping: sendto: Network is down" : null });
    }
    const op = args[0] === "addr" ? args[1]! : args[3]!;
    calls.push(`ip ${op}`);
    if (op === "add") {
      if (failAdds-- > 0) return Promise.resolve({ error: "Command failed: ip addr add 10.0.0.50/24 dev eth0" });
      if (on.has(args[2]!)) return Promise.resolve({ error: "RTNETLINK answers: File exists" });
      on.add(args[2]!);
    } else if (op === "del") on.delete(args[2]!);
    else if (op === "show") return Promise.resolve({ error: null, out: [...on].map((a) => `2: eth0    inet ${a} scope global secondary eth0\\       valid_lft forever`).join("\n") });
    return Promise.resolve({ error: null });
  };
  return { on, calls, arpings, run };
}

describe("while the lease is held", () => {
  const spec = { address: "10.0.0.50/24", interface: "eth0" };
  const dir = mkdtempSync(join(tmpdir(), "pgherd-vip-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const adds = (calls: string[]) => calls.filter((c) => c === "ip add").length;

  test("a failed add is tried again (1, 2, 4 … × the first delay) until the address is on, then announced", async () => {
    const h = fakeHost({ failAdds: 2 });
    const log = memoryLogger();
    const vip = new VirtualIp(spec, dir, log, h.run, { retryFirstMs: 10 });
    vip.hold(Number.POSITIVE_INFINITY);
    for (let i = 0; i < 5; i++) vip.hold(Number.POSITIVE_INFINITY); // renewals
    await waitFor(() => h.on.has(spec.address) && h.arpings.length > 0, { timeoutMs: 5000, what: "added on the third attempt" });
    expect(h.calls.slice(0, 4)).toEqual(["ip add", "ip add", "ip add", "arping"]);
    expect(log.lines.filter((l) => l.startsWith("error")).map((l) => /attempt (\d+); again in (\d+) ms while the lease is held/.exec(l)?.slice(1))).toEqual([["1", "10"], ["2", "20"]]);
    await vip.release("lease lost");
  });

  test("a lease lost or fenced stops the retries of a failing add", async () => {
    const h = fakeHost({ failAdds: 1000 });
    const vip = new VirtualIp(spec, dir, memoryLogger(), h.run, { retryFirstMs: 10 });
    vip.hold(Number.POSITIVE_INFINITY);
    await waitFor(() => adds(h.calls) >= 2, { timeoutMs: 5000, what: "a retry" });
    await vip.releaseWithin("lease lost", 1000);
    const n = adds(h.calls);
    await Bun.sleep(100); // several retry intervals
    expect(adds(h.calls)).toBe(n);
    expect(h.calls.at(-1)).toBe("ip del");
  });

  test("an address removed by something else (netplan apply, ifdown/ifup) is added again and announced", async () => {
    const h = fakeHost();
    const log = memoryLogger();
    const vip = new VirtualIp(spec, dir, log, h.run, { checkMs: 10, announceAgainMs: 60_000 });
    vip.hold(Number.POSITIVE_INFINITY);
    await waitFor(() => h.calls.filter((c) => c === "ip show").length >= 2, { timeoutMs: 5000, what: "checks" });
    expect(adds(h.calls)).toBe(1); // found there: not added again
    h.on.delete(spec.address);
    await waitFor(() => h.on.has(spec.address), { timeoutMs: 5000, what: "added again" });
    await waitFor(() => h.arpings.length === 2, { timeoutMs: 5000, what: "announced again" });
    expect(log.lines.join("\n")).toContain("was gone from eth0 (removed by something else while this node holds the lease): added again");
    await vip.release("lease lost");
    const n = h.calls.length;
    await Bun.sleep(60);
    expect(h.calls.length).toBe(n); // released: no more checks
  });

  test("nothing is added after the lease's end, even before its fence; a renewal resumes", async () => {
    const h = fakeHost();
    let now = 0;
    const vip = new VirtualIp(spec, dir, memoryLogger(), h.run, { checkMs: 10, announceAgainMs: 60_000, now: () => now });
    vip.hold(100);
    await waitFor(() => h.on.has(spec.address), { timeoutMs: 5000, what: "added" });
    now = 100; // the lease ran out here, its fence not made yet
    h.on.delete(spec.address);
    await Bun.sleep(60);
    expect(adds(h.calls)).toBe(1);
    vip.hold(200); // renewed
    await waitFor(() => h.on.has(spec.address), { timeoutMs: 5000, what: "added again under the renewed lease" });
    await vip.release("lease lost");
  });

  test("the gratuitous ARP: 3 frames, 3 more later; a failed arping is tried once more", async () => {
    const h = fakeHost({ failArpings: 1 });
    const log = memoryLogger();
    const vip = new VirtualIp(spec, dir, log, h.run, { retryFirstMs: 10, announceAgainMs: 30 });
    vip.hold(Number.POSITIVE_INFINITY);
    await waitFor(() => h.arpings.length === 3, { timeoutMs: 5000, what: "failed, again, and 30 ms later" });
    expect(h.arpings.map((a) => a.count)).toEqual([3, 3, 3]);
    expect(log.lines.filter((l) => l.includes("gratuitous ARP"))).toEqual([expect.stringContaining("failed (tried once more): arping: sendto: Network is down")]);
    await Bun.sleep(100);
    expect(h.arpings).toHaveLength(3);
    await vip.release("lease lost");
  });

  test("a release does not wait for the announcement: it kills it, before the removal", async () => {
    const h = fakeHost({ hangArping: true });
    const vip = new VirtualIp(spec, dir, memoryLogger(), h.run, { announceAgainMs: 10 });
    vip.hold(Number.POSITIVE_INFINITY);
    await waitFor(() => h.arpings.length === 1, { timeoutMs: 5000, what: "the announcement" });
    await vip.releaseWithin("lease lost", 5000);
    expect(h.arpings[0]!.signal?.aborted).toBe(true);
    expect(h.on.has(spec.address)).toBe(false);
    await Bun.sleep(50);
    expect(h.arpings).toHaveLength(1); // its second round is not sent
  });
});
