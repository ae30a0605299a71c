// A network lab on one machine: every "host" is a network namespace plugged into a Linux
// bridge that lives in its own "switch" namespace. Nothing is created in the root namespace,
// so deleting the lab's namespaces removes every link it made.
//
//   switch ns <lab>-sw:  bridge pghbr, ports pghp<i>   (veth, switch side)
//   host ns   <lab>-h<i>: eth0 = 10.200.<octet>.<i>/24, default route on eth0, lo up
//
// Lab names are pgh<pid>-<random>-<seq>[-<tag>]: the pid lets scripts/lab-clean.ts tell
// stale labs (owner dead) from a colleague's running one.
import { execFileSync, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { asUser, mustRun, onExitCleanup, Proc, run, waitFor, type RunResult } from "./proc.ts";

export interface ExecOptions { timeoutMs?: number; env?: Record<string, string>; user?: string; input?: string }
export interface SpawnOptions { env?: Record<string, string>; logFile?: string; user?: string; cwd?: string }

export interface Host {
  /** "h1", "h2", ... */
  name: string;
  /** network namespace name, for `ip netns exec` */
  ns: string;
  ip: string;
  /** 1-based; also the last octet of `ip` */
  index: number;
  exec(cmd: string[], opts?: ExecOptions): Promise<RunResult>;
  spawn(cmd: string[], opts?: SpawnOptions): Proc;
  /** Real partition: the host's port on the switch goes down (both directions). */
  cut(): Promise<void>;
  heal(): Promise<void>;
  /** Drops packets from `other` arriving at this host (nftables, else iptables). One direction only. */
  cutFrom(other: Host): Promise<void>;
  healFrom(other: Host): Promise<void>;
  /** "Host crash": signals every process in the namespace until none is left. */
  killAll(signal?: NodeJS.Signals): Promise<void>;
}

export interface Lab {
  name: string;
  hosts: Host[];
  /** e.g. "10.200.37.0/24" */
  subnet: string;
  broadcast: string;
  addHost(): Promise<Host>;
  /** Idempotent: kills every process in the lab's namespaces and deletes them. */
  destroy(): Promise<void>;
}

export const LAB_PREFIX = "pgh";
const BRIDGE = "pghbr";
const HOST_IF = "eth0";
const KILL_TIMEOUT_MS = 10_000;

// ---- support check ----

let support: { ok: boolean; why?: string } | undefined;

/** Root + `ip` present + a namespace can be created here. Cached. */
export function labSupported(): { ok: boolean; why?: string } {
  support ??= probeSupport();
  return support;
}

function probeSupport(): { ok: boolean; why?: string } {
  if (process.getuid?.() !== 0) return { ok: false, why: "network namespaces need root (run the tests as root)" };
  if (!which("ip")) return { ok: false, why: "`ip` (iproute2) is not installed" };
  const probe = `${LAB_PREFIX}${process.pid}-probe`;
  try {
    execFileSync("ip", ["netns", "add", probe], { stdio: "pipe" });
  } catch (e) {
    return { ok: false, why: `cannot create a network namespace: ${stderrOf(e)}` };
  }
  try { execFileSync("ip", ["netns", "del", probe], { stdio: "pipe" }); } catch { /* reported by lab-clean */ }
  return { ok: true };
}

// ---- lab ----

const runId = `${process.pid}-${Math.random().toString(36).slice(2, 5)}`;
let labSeq = 0;
const claimedOctets = new Set<number>();

export async function createLab(opts: { hosts: number; tag?: string }): Promise<Lab> {
  const support = labSupported();
  if (!support.ok) throw new Error(`network lab not supported here: ${support.why}`);
  if (!Number.isInteger(opts.hosts) || opts.hosts < 0 || opts.hosts > 253) {
    throw new Error(`createLab: hosts must be an integer 0..253, got ${opts.hosts}`);
  }
  const tag = opts.tag === undefined ? "" : `-${sanitizeTag(opts.tag)}`;
  const name = `${LAB_PREFIX}${runId}-${++labSeq}${tag}`;
  const octet = await pickOctet();
  const lab = new NetLab(name, octet);
  try {
    await lab.init();
    for (let i = 0; i < opts.hosts; i++) await lab.addHost();
  } catch (e) {
    await lab.destroy().catch(() => {});
    throw e;
  }
  return lab;
}

class NetLab implements Lab {
  readonly hosts: NetHost[] = [];
  readonly subnet: string;
  readonly broadcast: string;
  readonly switchNs: string;
  private destroying: Promise<void> | undefined;
  private readonly unregister: () => void;

  constructor(readonly name: string, private readonly octet: number) {
    this.subnet = `10.200.${octet}.0/24`;
    this.broadcast = `10.200.${octet}.255`;
    this.switchNs = `${name}-sw`;
    this.unregister = onExitCleanup(() => destroySync(this.namespaces()));
  }

  async init(): Promise<void> {
    await ip("netns", "add", this.switchNs);
    startReaper(this.name);
    await ip("-n", this.switchNs, "link", "set", "lo", "up");
    // STP off and no forwarding delay: a healed port forwards at once.
    await ip("-n", this.switchNs, "link", "add", BRIDGE, "type", "bridge", "stp_state", "0", "forward_delay", "0", "mcast_snooping", "0");
    await ip("-n", this.switchNs, "link", "set", BRIDGE, "up");
  }

  async addHost(): Promise<Host> {
    if (this.destroying) throw new Error(`lab ${this.name} is destroyed`);
    const index = this.hosts.length + 1;
    if (index > 253) throw new Error(`lab ${this.name}: a /24 holds at most 253 hosts`);
    const host = new NetHost(this, index, `${this.name}-h${index}`, `10.200.${this.octet}.${index}`);
    this.hosts.push(host); // before creating anything, so destroy() finds a half-made host
    const port = host.port;
    await ip("netns", "add", host.ns);
    await ip("-n", host.ns, "link", "set", "lo", "up");
    await ip("-n", this.switchNs, "link", "add", port, "type", "veth", "peer", "name", HOST_IF, "netns", host.ns);
    await ip("-n", this.switchNs, "link", "set", port, "master", BRIDGE, "up");
    await ip("-n", host.ns, "addr", "add", `${host.ip}/24`, "brd", "+", "dev", HOST_IF);
    await ip("-n", host.ns, "link", "set", HOST_IF, "up");
    // A default route makes 255.255.255.255 sendable, as on a real host.
    await ip("-n", host.ns, "route", "add", "default", "dev", HOST_IF);
    await host.waitLinkUp();
    return host;
  }

  destroy(): Promise<void> {
    this.destroying ??= this.doDestroy();
    return this.destroying;
  }

  private async doDestroy(): Promise<void> {
    const errors: string[] = [];
    const namespaces = this.namespaces();
    await Promise.all(namespaces.map((ns) => killNamespace(ns, "SIGKILL").catch((e: Error) => errors.push(e.message))));
    const del = async (ns: string) => {
      const r = await run(["ip", "netns", "del", ns]);
      if (r.code !== 0 && !/No such file/.test(r.stderr)) errors.push(`ip netns del ${ns}: ${r.stderr.trim()}`);
    };
    // The hosts' namespaces together, the switch's last (the reaper watches it).
    await Promise.all(namespaces.filter((ns) => ns !== this.switchNs).map(del));
    await del(this.switchNs);
    claimedOctets.delete(this.octet);
    this.unregister();
    if (errors.length) throw new Error(`lab ${this.name} cleanup incomplete: ${errors.join("; ")}`);
  }

  private namespaces(): string[] {
    return [...this.hosts.map((h) => h.ns), this.switchNs];
  }
}

class NetHost implements Host {
  readonly name: string;
  readonly port: string;
  private firewallReady = false;
  private readonly cutSources = new Set<string>();

  constructor(private readonly lab: NetLab, readonly index: number, readonly ns: string, readonly ip: string) {
    this.name = `h${index}`;
    this.port = `pghp${index}`;
  }

  async exec(cmd: string[], opts: ExecOptions = {}): Promise<RunResult> {
    const { prefix, env, cwd } = asUser(opts.user, opts.env);
    return run(["ip", "netns", "exec", this.ns, ...prefix, ...cmd], { timeoutMs: opts.timeoutMs ?? 30_000, env, cwd, input: opts.input });
  }

  spawn(cmd: string[], opts: SpawnOptions = {}): Proc {
    const { prefix, env, cwd } = asUser(opts.user, opts.env);
    return new Proc(["ip", "netns", "exec", this.ns, ...prefix, ...cmd], { env, logFile: opts.logFile, cwd: opts.cwd ?? cwd });
  }

  async cut(): Promise<void> {
    await ip("-n", this.lab.switchNs, "link", "set", this.port, "down");
    await waitFor(async () => !(await this.linkUp()), { timeoutMs: 5_000, intervalMs: 10, what: `${this.ns} to lose carrier` });
  }

  async heal(): Promise<void> {
    await ip("-n", this.lab.switchNs, "link", "set", this.port, "up");
    await this.waitLinkUp();
  }

  async cutFrom(other: Host): Promise<void> {
    const fw = firewall();
    if (fw === "nft") {
      await this.setupNft();
      await this.nsRun(["nft", "add", "element", "inet", "pghlab", "cut", `{ ${other.ip} }`]);
    } else if (!(await this.iptablesHas(other.ip))) {
      await this.nsRun(["iptables", "-w", "-I", "INPUT", "-s", other.ip, "-j", "DROP"]);
    }
    this.cutSources.add(other.ip);
  }

  async healFrom(other: Host): Promise<void> {
    if (!this.cutSources.has(other.ip)) return;
    if (firewall() === "nft") {
      await this.nsRun(["nft", "delete", "element", "inet", "pghlab", "cut", `{ ${other.ip} }`]);
    } else {
      while (await this.iptablesHas(other.ip)) await this.nsRun(["iptables", "-w", "-D", "INPUT", "-s", other.ip, "-j", "DROP"]);
    }
    this.cutSources.delete(other.ip);
  }

  killAll(signal: NodeJS.Signals = "SIGKILL"): Promise<void> {
    return killNamespace(this.ns, signal);
  }

  async waitLinkUp(): Promise<void> {
    await waitFor(() => this.linkUp(), { timeoutMs: 5_000, intervalMs: 10, what: `${this.ns} ${HOST_IF} to come up` });
  }

  private async linkUp(): Promise<boolean> {
    const out = await mustRun(["ip", "-n", this.ns, "-o", "link", "show", "dev", HOST_IF]);
    return /state UP/.test(out) && !/NO-CARRIER/.test(out);
  }

  // One set of cut sources, checked in the input hook: also drops broadcasts from them.
  private async setupNft(): Promise<void> {
    if (this.firewallReady) return;
    const rules = [
      "table inet pghlab {",
      "  set cut { type ipv4_addr; }",
      "  chain input { type filter hook input priority 0; policy accept; ip saddr @cut drop; }",
      "}",
    ].join("\n");
    await this.nsRun(["nft", "-f", "-"], rules);
    this.firewallReady = true;
  }

  private async iptablesHas(src: string): Promise<boolean> {
    const r = await run(["ip", "netns", "exec", this.ns, "iptables", "-w", "-C", "INPUT", "-s", src, "-j", "DROP"]);
    return r.code === 0;
  }

  private nsRun(cmd: string[], input?: string): Promise<string> {
    return mustRun(["ip", "netns", "exec", this.ns, ...cmd], { input });
  }
}

// ---- reaper: cleanup that survives the test process ----

// `bun test` does not run process.on("exit") listeners (oven-sh/bun#8434, #38442), and nothing
// runs on SIGKILL. So each lab has a watchdog shell that waits until this process is gone or the
// lab's switch namespace is (destroy() deletes it last), then removes whatever is left of the lab.
const REAPER = `while kill -0 "$2" 2>/dev/null && [ -e "/run/netns/$1-sw" ]; do sleep 0.25; done
labns() { ip netns list 2>/dev/null | cut -d' ' -f1 | while read -r ns; do case "$ns" in "$1"-*) echo "$ns";; esac; done; }
for round in 1 2 3 4 5 6 7 8 9 10; do
  found=
  for ns in $(labns "$1"); do for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null; found=1; done; done
  [ -z "$found" ] && break
  sleep 0.1
done
for ns in $(labns "$1"); do ip netns del "$ns" 2>/dev/null; done`;
// Started through a launcher that exits at once, so the watchdog is no descendant of ours and
// `bun test --no-orphans` (which kills our descendants as we exit) cannot kill it first.
const LAUNCH = 'sh -c "$1" pgherd-lab-reaper "$2" "$3" </dev/null >/dev/null 2>&1 &';

function startReaper(lab: string): void {
  const launcher = spawn("sh", ["-c", LAUNCH, "pgherd-lab-launcher", REAPER, lab, String(process.pid)], {
    detached: true,
    stdio: "ignore",
  });
  launcher.on("error", () => { /* the exit handlers and lab-clean remain */ });
  launcher.unref();
}

// ---- helpers ----

function ip(...args: string[]): Promise<string> {
  return mustRun(["ip", ...args]);
}

let firewallTool: "nft" | "iptables" | undefined;

/** Whether cutFrom/healFrom can work here (nft or iptables installed). */
export function firewallAvailable(): boolean {
  try { firewall(); return true; } catch { return false; }
}

function firewall(): "nft" | "iptables" {
  firewallTool ??= which("nft") ? "nft" : which("iptables") ? "iptables" : undefined;
  if (!firewallTool) throw new Error("cutFrom/healFrom need nftables or iptables, and neither `nft` nor `iptables` is installed (apt-get install nftables)");
  return firewallTool;
}

function which(cmd: string): string | undefined {
  const dirs = [...(process.env.PATH ?? "").split(":"), "/usr/sbin", "/sbin", "/usr/bin", "/bin"];
  return dirs.filter(Boolean).map((d) => `${d}/${cmd}`).find((p) => existsSync(p));
}

/** Pids of every process in the namespace (zombies are not listed). */
export async function namespacePids(ns: string): Promise<number[]> {
  const r = await run(["ip", "netns", "pids", ns]);
  if (r.code !== 0) {
    if (/No such file/.test(r.stderr)) return [];
    throw new Error(`ip netns pids ${ns}: ${r.stderr.trim()}`);
  }
  return r.stdout.split(/\s+/).filter(Boolean).map(Number).filter((n) => Number.isInteger(n) && n > 0);
}

// Re-signals on every round: processes may fork while we look (e.g. a postmaster).
async function killNamespace(ns: string, signal: NodeJS.Signals): Promise<void> {
  await waitFor(async () => {
    const pids = await namespacePids(ns);
    for (const pid of pids) {
      try { process.kill(pid, signal); } catch { /* exited meanwhile */ }
    }
    return pids.length === 0;
  }, { timeoutMs: KILL_TIMEOUT_MS, intervalMs: 20, what: `every process in ${ns} to exit after ${signal}` });
}

/** Synchronous teardown for exit handlers and scripts/lab-clean.ts. Best effort, never throws. */
export function destroySync(namespaces: string[]): void {
  for (const ns of namespaces) {
    for (let round = 0; round < 50; round++) {
      let pids: number[] = [];
      try {
        pids = execFileSync("ip", ["netns", "pids", ns], { stdio: "pipe" }).toString().split(/\s+/).filter(Boolean).map(Number);
      } catch { /* namespace gone */ }
      if (pids.length === 0) break;
      for (const pid of pids) {
        try { process.kill(pid, "SIGKILL"); } catch { /* gone */ }
      }
      execFileSync("sleep", ["0.02"]);
    }
  }
  for (const ns of namespaces) {
    try { execFileSync("ip", ["netns", "del", ns], { stdio: "pipe" }); } catch { /* already gone */ }
  }
}

/** Every lab namespace on the machine, with the pid of the process that made it. */
export function listLabNamespaces(): { ns: string; ownerPid: number | undefined }[] {
  let out = "";
  try { out = execFileSync("ip", ["netns", "list"], { stdio: "pipe" }).toString(); } catch { return []; }
  return out.split("\n")
    .map((l) => l.trim().split(/\s+/)[0] ?? "")
    .filter((ns) => ns.startsWith(LAB_PREFIX))
    .map((ns) => {
      const m = /^pgh(\d+)-/.exec(ns);
      return { ns, ownerPid: m ? Number(m[1]) : undefined };
    });
}

// Random third octet not used by any address in the root namespace or another lab.
// Labs are isolated from each other, so a race between two runs picking the same octet is harmless.
async function pickOctet(): Promise<number> {
  const used = new Set<number>(claimedOctets);
  const sources = [["ip", "-o", "-4", "addr"], ...listLabNamespaces().map(({ ns }) => ["ip", "-n", ns, "-o", "-4", "addr"])];
  for (const cmd of sources) {
    const r = await run(cmd);
    for (const m of r.stdout.matchAll(/inet 10\.200\.(\d+)\./g)) used.add(Number(m[1]));
  }
  const free = Array.from({ length: 254 }, (_, i) => i + 1).filter((o) => !used.has(o));
  if (free.length === 0) throw new Error("no free /24 left in 10.200.0.0/16; run `bun scripts/lab-clean.ts`");
  const start = (process.pid + Math.floor(Math.random() * 254)) % free.length;
  const octet = free[start]!;
  claimedOctets.add(octet);
  return octet;
}

function sanitizeTag(tag: string): string {
  const t = tag.toLowerCase().replace(/[^a-z0-9]+/g, "-").replace(/^-+|-+$/g, "").slice(0, 16);
  if (!t) throw new Error(`createLab: tag ${JSON.stringify(tag)} has no usable characters [a-z0-9]`);
  return t;
}

function stderrOf(e: unknown): string {
  const err = e as { stderr?: Buffer; message?: string };
  return err.stderr?.toString().trim() || err.message || String(e);
}
