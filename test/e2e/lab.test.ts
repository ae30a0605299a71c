// The network lab every multi-host test stands on: real namespaces, a real bridge, real
// sockets. Negative checks ("was not received") use ordering, not sleeps: a later packet on
// the same path arrives, so an earlier one that is missing was dropped.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createLab, firewallAvailable, labSupported, namespacePids, type Host, type Lab } from "../helpers/lab.ts";
import { Proc, waitFor } from "../helpers/proc.ts";
import { requireReal } from "../helpers/require.ts";

const UDP_PORT = "47001";
const TCP_PORT = "47002";

// Prints "udp <from> <msg>" and "tcp <from>" for everything it receives.
const LISTENER = `
import dgram from "node:dgram"; import net from "node:net";
const u = dgram.createSocket({ type: "udp4", reuseAddr: true });
u.on("message", (m, r) => console.log("udp " + r.address + " " + m));
u.bind(${UDP_PORT}, "0.0.0.0", () => {
  net.createServer((c) => { console.log("tcp " + c.remoteAddress); c.end(); })
    .listen(${TCP_PORT}, "0.0.0.0", () => console.log("ready"));
});`;

const SEND_UDP = `
import dgram from "node:dgram";
const s = dgram.createSocket("udp4");
s.bind(0, () => { s.setBroadcast(true);
  s.send(process.env.MSG, ${UDP_PORT}, process.env.TO, (e) => { if (e) { console.error(e.message); process.exit(1); } s.close(); }); });`;

// Connects to every address in TO (comma-separated); prints "<addr> ok" or "<addr> fail <why>".
const PROBE_TCP = `
import net from "node:net";
const ms = Number(process.env.TIMEOUT_MS);
await Promise.all(process.env.TO.split(",").map((host) => new Promise((done) => {
  const c = net.connect({ host, port: ${TCP_PORT} });
  const end = (r) => { clearTimeout(t); c.destroy(); console.log(host + " " + r); done(); };
  const t = setTimeout(() => end("fail timeout"), ms);
  c.on("connect", () => end("ok")); c.on("error", (e) => end("fail " + e.code));
})));`;

requireReal("network lab tests", labSupported().why);

function bun(script: string): string[] {
  return [process.execPath, "-e", script];
}

async function sendUdp(from: Host, to: string, msg: string): Promise<void> {
  const r = await from.exec(bun(SEND_UDP), { env: { TO: to, MSG: msg }, timeoutMs: 10_000 });
  expect(r.stderr).toBe("");
  expect(r.code).toBe(0);
}

async function probeTcp(from: Host, to: Host[], timeoutMs = 3_000): Promise<Record<string, string>> {
  const r = await from.exec(bun(PROBE_TCP), { env: { TO: to.map((h) => h.ip).join(","), TIMEOUT_MS: String(timeoutMs) }, timeoutMs: timeoutMs + 10_000 });
  expect(r.code).toBe(0);
  const result: Record<string, string> = {};
  for (const line of r.stdout.trim().split("\n")) {
    const [addr, ...rest] = line.split(" ");
    result[addr!] = rest.join(" ");
  }
  return result;
}

function okFor(hosts: Host[]): Record<string, string> {
  return Object.fromEntries(hosts.map((h) => [h.ip, "ok"]));
}

const udpLine = (from: Host, msg: string) => new RegExp(`^udp ${from.ip.replaceAll(".", "\\.")} ${msg}$`);
const hasLine = (p: Proc, re: RegExp) => p.lines.some((l) => re.test(l));
const tcpLine = (from: Host) => new RegExp(`^tcp ${from.ip.replaceAll(".", "\\.")}$`);
const tcpLinesFrom = (p: Proc, from: Host) => p.lines.filter((l) => l === `tcp ${from.ip}`).length;

describe("network lab", () => {
  let lab: Lab;
  let h1: Host, h2: Host, h3: Host;
  const listeners = new Map<Host, Proc>();

  async function listen(h: Host): Promise<Proc> {
    const p = h.spawn(bun(LISTENER));
    listeners.set(h, p);
    await p.waitForLine(/^ready$/, 10_000);
    return p;
  }
  const L = (h: Host) => listeners.get(h)!;

  beforeAll(async () => {
    lab = await createLab({ hosts: 3, tag: "labtest" });
    [h1, h2, h3] = lab.hosts as [Host, Host, Host];
    await Promise.all(lab.hosts.map(listen));
  }, 30_000);

  afterAll(async () => {
    await lab?.destroy();
  });

  test("hosts get distinct addresses in the lab's /24", () => {
    expect(lab.name).toMatch(/^pgh\d+-/);
    expect(lab.subnet).toMatch(/^10\.200\.\d+\.0\/24$/);
    const prefix = lab.subnet.replace(/0\/24$/, "");
    expect(lab.broadcast).toBe(`${prefix}255`);
    expect(lab.hosts.map((h) => h.ip)).toEqual([1, 2, 3].map((i) => `${prefix}${i}`));
    expect(new Set(lab.hosts.map((h) => h.ns)).size).toBe(3);
  });

  test("every host reaches every other over TCP", async () => {
    for (const from of lab.hosts) {
      const others = lab.hosts.filter((h) => h !== from);
      expect(await probeTcp(from, others)).toEqual(okFor(others));
      // The client's connect can return before the listener has logged the accept: wait for its line.
      for (const to of others) await L(to).waitForLine(tcpLine(from), 5_000);
    }
  });

  test("a broadcast from host 1 reaches hosts 2 and 3", async () => {
    await sendUdp(h1, lab.broadcast, "bcast1");
    await sendUdp(h1, "255.255.255.255", "bcast2");
    for (const h of [h2, h3]) {
      await L(h).waitForLine(udpLine(h1, "bcast1"), 5_000);
      await L(h).waitForLine(udpLine(h1, "bcast2"), 5_000);
    }
  });

  test("cut() partitions a host both ways; heal() restores it", async () => {
    const tcpBefore = tcpLinesFrom(L(h3), h1);
    await h3.cut();
    await sendUdp(h1, lab.broadcast, "during-cut");
    await L(h2).waitForLine(udpLine(h1, "during-cut"), 5_000);
    expect(await probeTcp(h1, [h3], 1_000)).not.toEqual(okFor([h3]));
    expect(await probeTcp(h3, [h1], 1_000)).not.toEqual(okFor([h1]));
    expect(await probeTcp(h1, [h2])).toEqual(okFor([h2])); // the rest of the lab is unaffected
    expect(tcpLinesFrom(L(h3), h1)).toBe(tcpBefore);

    await h3.heal();
    await sendUdp(h1, lab.broadcast, "after-heal");
    await L(h3).waitForLine(udpLine(h1, "after-heal"), 5_000);
    expect(hasLine(L(h3), udpLine(h1, "during-cut"))).toBe(false);
    expect(await probeTcp(h1, [h3])).toEqual(okFor([h3]));
    expect(await probeTcp(h3, [h1])).toEqual(okFor([h1]));
  }, 30_000);

  test("cutFrom() drops one direction only", async () => {
    requireReal("cutFrom test", firewallAvailable() ? null : "neither nft nor iptables is installed (apt-get install nftables)");
    await h2.cutFrom(h1);
    await h2.cutFrom(h1); // idempotent
    await sendUdp(h1, h2.ip, "uni-cut");
    await sendUdp(h1, lab.broadcast, "bcast-cut");
    await L(h3).waitForLine(udpLine(h1, "bcast-cut"), 5_000); // h3 is not cut from h1
    await sendUdp(h2, h1.ip, "reverse");
    await L(h1).waitForLine(udpLine(h2, "reverse"), 5_000); // h2 -> h1 still flows
    expect(await probeTcp(h1, [h2], 1_000)).not.toEqual(okFor([h2]));
    expect(await probeTcp(h3, [h2])).toEqual(okFor([h2]));

    await h2.healFrom(h1);
    await h2.healFrom(h1); // idempotent
    await sendUdp(h1, h2.ip, "uni-healed");
    await L(h2).waitForLine(udpLine(h1, "uni-healed"), 5_000);
    expect(hasLine(L(h2), udpLine(h1, "uni-cut"))).toBe(false);
    expect(hasLine(L(h2), udpLine(h1, "bcast-cut"))).toBe(false);
    expect(await probeTcp(h1, [h2])).toEqual(okFor([h2]));
  }, 30_000);

  test("exec and spawn run as another user, in / (the checkout may be closed to that user)", async () => {
    const uid = execFileSync("id", ["-u", "postgres"]).toString().trim();
    const r = await h1.exec(["sh", "-c", "id -u; pwd"], { user: "postgres" });
    expect(r).toEqual({ code: 0, stdout: `${uid}\n/\n`, stderr: "" });
    const p = h1.spawn(["sh", "-c", "echo home=$HOME uid=$(id -u) cwd=$(pwd)"], { user: "postgres" });
    await p.waitForLine(new RegExp(`^home=/.+ uid=${uid} cwd=/$`), 5_000);
    expect(await p.waitExit(5_000)).toBe(0);
    await expect(h1.exec(["true"], { user: "no-such-user-pgh" })).rejects.toThrow(/unknown user "no-such-user-pgh"/);
    await expect(h1.exec(["true"], { user: "x;rm -rf /" })).rejects.toThrow(/invalid user name/);
  });

  test("killAll() kills every process in the host", async () => {
    const sleeper = h3.spawn(["sleep", "1000"], { user: "postgres" });
    await waitFor(async () => (await namespacePids(h3.ns)).includes(sleeper.pid), { timeoutMs: 5_000, what: "sleep to run in h3" });
    await h3.killAll();
    expect(await sleeper.waitExit(5_000)).toBeNull();
    expect(sleeper.signal).toBe("SIGKILL");
    await L(h3).waitExit(5_000);
    expect(await namespacePids(h3.ns)).toEqual([]);
    await expect(h2.exec(["true"])).resolves.toMatchObject({ code: 0 }); // other hosts untouched
    expect(L(h2).exited).toBe(false);
    await listen(h3); // the host "reboots"
  });

  test("addHost() plugs a new host into the running lab", async () => {
    const h4 = await lab.addHost();
    expect(h4.index).toBe(4);
    await listen(h4);
    expect(await probeTcp(h1, [h4])).toEqual(okFor([h4]));
    expect(await probeTcp(h4, [h1, h2, h3])).toEqual(okFor([h1, h2, h3]));
    await sendUdp(h1, lab.broadcast, "bcast-h4");
    await L(h4).waitForLine(udpLine(h1, "bcast-h4"), 5_000);
    await L(h2).waitForLine(udpLine(h1, "bcast-h4"), 5_000);
  });

  test("destroy() kills processes and leaves no namespace or link behind", async () => {
    const linksBefore = rootLinks();
    const sleeper = lab.hosts[1]!.spawn(["sleep", "1000"]);
    await waitFor(async () => (await namespacePids(lab.hosts[1]!.ns)).includes(sleeper.pid), { timeoutMs: 5_000, what: "sleep to run" });
    expect(netnsList().filter((n) => n.startsWith(lab.name)).length).toBe(lab.hosts.length + 1);
    await lab.destroy();
    await lab.destroy(); // idempotent
    expect(sleeper.exited).toBe(true);
    for (const p of listeners.values()) expect(p.exited).toBe(true);
    expect(netnsList().filter((n) => n.startsWith(lab.name))).toEqual([]);
    expect(rootLinks()).toEqual(linksBefore);
    expect(rootLinks().filter((l) => l.startsWith("pgh"))).toEqual([]);
    await expect(lab.addHost()).rejects.toThrow(/destroyed/);
  });
});

describe("lab cleanup without destroy()", () => {
  const labTs = join(import.meta.dir, "../helpers/lab.ts");
  // Creates a lab with a process in it, reports them, then dies by SIG without cleaning up.
  const CRASHER = `
import { createLab } from ${JSON.stringify(labTs)};
const lab = await createLab({ hosts: 2, tag: "crash" });
const p = lab.hosts[1].spawn(["sleep", "1000"]);
await lab.hosts[0].spawn(["sh", "-c", "echo up; exec sleep 1000"]).waitForLine(/^up$/, 10000);
console.log("LAB " + lab.name + " " + p.pid);
process.kill(process.pid, process.env.SIG);`;

  for (const sig of ["SIGKILL", "SIGTERM"] as const) {
    test(`a test process killed by ${sig} leaves no namespace or process behind`, async () => {
      const r = new Proc(bun(CRASHER), { env: { SIG: sig } });
      const line = await r.waitForLine(/^LAB /, 15_000);
      const [, name, pid] = line.split(" ");
      await r.waitExit(10_000);
      expect(r.signal === sig || r.exitCode === 128 + (sig === "SIGKILL" ? 9 : 15)).toBe(true);
      await waitFor(() => !netnsList().some((n) => n.startsWith(`${name}-`)), { timeoutMs: 10_000, what: `namespaces of ${name} to vanish` });
      await waitFor(() => !alive(Number(pid)), { timeoutMs: 10_000, what: `process ${pid} from the crashed lab to die` });
    }, 30_000);
  }

  test("scripts/lab-clean.ts removes stale lab namespaces and keeps live ones", async () => {
    const dead = new Proc(["true"]);
    await dead.waitExit(5_000);
    // --match keeps a concurrent run of this test from cleaning our fake stale lab (and us theirs).
    const mark = `zz${process.pid}x`;
    const stale = `pgh${dead.pid}-${mark}-1-sw`;
    const live = `pgh${process.pid}-${mark}-1-sw`;
    try {
      for (const ns of [stale, live]) execFileSync("ip", ["netns", "add", ns]);
      const sleeper = new Proc(["ip", "netns", "exec", stale, "sleep", "1000"]);
      await waitFor(async () => (await namespacePids(stale)).includes(sleeper.pid), { timeoutMs: 5_000, what: "sleep in stale ns" });
      const script = join(import.meta.dir, "../../scripts/lab-clean.ts");
      const dry = execFileSync(process.execPath, [script, "--dry-run", "--match", mark]).toString();
      expect(dry).toContain(`would remove namespace ${stale}`);
      expect(netnsList()).toContain(stale);
      const out = execFileSync(process.execPath, [script, "--match", mark]).toString();
      expect(out).toContain(`removing namespace ${stale}`);
      expect(out).not.toContain(live);
      expect(netnsList()).not.toContain(stale);
      expect(netnsList()).toContain(live);
      await sleeper.waitExit(5_000);
      expect(sleeper.signal).toBe("SIGKILL");
    } finally {
      for (const ns of [stale, live]) {
        try { execFileSync("ip", ["netns", "del", ns], { stdio: "pipe" }); } catch { /* removed by the test */ }
      }
    }
  }, 30_000);
});

// A zombie counts as dead: it no longer runs, only waits for its parent to reap it.
function alive(pid: number): boolean {
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, "utf8"));
  } catch {
    return false;
  }
}

function netnsList(): string[] {
  return execFileSync("ip", ["netns", "list"]).toString().split("\n").map((l) => l.split(" ")[0]!).filter(Boolean);
}

function rootLinks(): string[] {
  return execFileSync("ip", ["-o", "link"]).toString().split("\n").map((l) => l.split(": ")[1]?.split("@")[0] ?? "").filter(Boolean).sort();
}

// proc.ts needs no root: these run everywhere.
describe("proc helpers", () => {
  test("waitFor returns the first truthy value and names what timed out", async () => {
    let n = 0;
    expect(await waitFor(() => (++n >= 3 ? n : undefined), { timeoutMs: 2_000, intervalMs: 5, what: "n" })).toBe(3);
    await expect(waitFor(() => false, { timeoutMs: 50, intervalMs: 5, what: "the impossible" }))
      .rejects.toThrow("timed out after 50ms waiting for the impossible");
    await expect(waitFor(() => { throw new Error("ECONNREFUSED"); }, { timeoutMs: 50, intervalMs: 5, what: "server" }))
      .rejects.toThrow(/waiting for server \(last error: ECONNREFUSED\)/);
    await expect(waitFor(() => new Promise<boolean>(() => {}), { timeoutMs: 50, what: "a hung call" }))
      .rejects.toThrow("timed out after 50ms waiting for a hung call");
  });

  test("Proc collects lines into a log file and finds already-printed ones", async () => {
    const dir = mkdtempSync(join(tmpdir(), "pgh-proc-"));
    try {
      const logFile = join(dir, "out.log");
      const p = new Proc(["sh", "-c", "echo one; echo two >&2; printf three"], { logFile });
      expect(await p.waitExit(5_000)).toBe(0);
      await waitFor(() => p.lines.length === 3, { timeoutMs: 2_000, what: "all output" });
      expect(await p.waitForLine(/^one$/, 1_000)).toBe("one");
      expect(await p.waitForLine(/thr/, 1_000)).toBe("three");
      expect([...p.lines].sort()).toEqual(["one", "three", "two"]);
      expect(readFileSync(logFile, "utf8").split("\n").filter(Boolean).sort()).toEqual(["one", "three", "two"]);
      await expect(p.waitForLine(/never/, 5_000)).rejects.toThrow(/exited with code 0 before printing a line matching \/never\//);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("stop() escalates to SIGKILL for a process that ignores SIGTERM", async () => {
    const p = new Proc(["sh", "-c", "trap '' TERM; echo ready; while :; do sleep 1; done"]);
    await p.waitForLine(/^ready$/, 5_000);
    await expect(p.waitForLine(/never/, 100)).rejects.toThrow(/timed out after 100ms waiting for a line matching/);
    await p.stop(300);
    expect(p.exited).toBe(true);
    expect(p.signal).toBe("SIGKILL");
  });

  test("Proc reports a command that cannot start", () => {
    expect(() => new Proc(["/nonexistent/pgh-binary"])).toThrow(/cannot start/);
  });
});
