// A real etcd cluster for the tests (Debian's etcd-server): three members on loopback, or one
// member in each of three namespace hosts of a lab. Members can be stopped and started again
// (quorum loss). Cleanup: destroy() (also on process exit) kills every member and removes the data.
import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { join } from "node:path";
import { EtcdClient, type EtcdClientOptions } from "../../src/consensus/etcd/client.ts";
import type { Host } from "./lab.ts";
import { freePort } from "./pg.ts";
import { onExitCleanup, Proc, waitFor } from "./proc.ts";

/** The members' raft election timeout (etcd's default is 1000 ms too) and heartbeat interval (one raft tick). */
export const ETCD_ELECTION_TIMEOUT_MS = 1000;
export const ETCD_HEARTBEAT_MS = 100;

export const ETCD_BIN = ["/usr/bin/etcd", "/usr/local/bin/etcd"].find((p) => existsSync(p)) ?? "etcd";

export function etcdSkipReason(): string | null {
  return existsSync(ETCD_BIN) ? null : "etcd is not installed (Debian: apt-get install etcd-server etcd-client; scripts/system-packages.sh)";
}

interface Member { name: string; client: string; peer: string; dataDir: string; host: Host | null; proc: Proc | null }

export class EtcdCluster {
  private readonly unregister: () => void;

  private constructor(
    private readonly members: Member[], private readonly dir: string, private readonly owned: boolean,
    private readonly tls?: { certFile: string; keyFile: string; caFile: string; client: EtcdClientOptions["tls"] },
  ) {
    this.unregister = onExitCleanup(() => this.killAll());
  }

  /** Three (or `size`) members: on loopback ports, or one on each of `hosts` (then the lab owns the network). */
  /** `tls`: clients must use https and present a certificate signed by `caFile` (loopback members only). */
  static async start(o: { dir?: string; hosts?: Host[]; size?: number; logDir?: string; tls?: { certFile: string; keyFile: string; caFile: string; client: EtcdClientOptions["tls"] } } = {}): Promise<EtcdCluster> {
    const size = o.hosts?.length ?? o.size ?? 3;
    const dir = o.dir ?? mkdtempSync("/tmp/pgherd-etcd-");
    const members: Member[] = [];
    const taken: number[] = [];
    for (let i = 0; i < size; i++) {
      const host = o.hosts?.[i] ?? null;
      const ip = host?.ip ?? "127.0.0.1";
      const [cp, pp] = host ? [2379, 2380] : [await freePort(taken), await freePort(taken)];
      taken.push(cp, pp);
      members.push({ name: `etcd${i + 1}`, client: `${o.tls ? "https" : "http"}://${ip}:${cp}`, peer: `http://${ip}:${pp}`, dataDir: join(dir, `etcd${i + 1}`), host, proc: null });
    }
    const c = new EtcdCluster(members, dir, o.dir === undefined, o.tls);
    try {
      for (let i = 0; i < size; i++) c.spawn(i, o.logDir);
      await c.waitHealthy(30_000);
    } catch (e) {
      await c.destroy();
      throw e;
    }
    return c;
  }

  endpoints(): string[] {
    return this.members.map((m) => m.client);
  }

  /** Stops member i (SIGKILL: a crash). */
  async stop(i: number): Promise<void> {
    const p = this.members[i]!.proc;
    this.members[i]!.proc = null;
    if (p) {
      p.kill("SIGKILL");
      await p.waitExit(10_000);
    }
  }

  /** Starts member i again with its data (rejoins the cluster). */
  restart(i: number, logDir?: string): void {
    this.spawn(i, logDir);
  }

  /**
   * The index of the member that is etcd's raft leader now. Tests that cut members pick them by it:
   * a leader keeps answering lease renewals by itself until it notices it lost its quorum (one
   * election timeout), a follower forwards them to the leader and fails at once.
   */
  async leaderIndex(): Promise<number> {
    return etcdLeaderIndex(this.members.map((m) => (m.proc ? m : null)));
  }

  /** Every running member answers a linearizable read. */
  async waitHealthy(timeoutMs: number): Promise<void> {
    await waitFor(async () => {
      for (const m of this.members.filter((x) => x.proc)) if (!(await this.answers(m))) return false;
      return true;
    }, { timeoutMs, intervalMs: 200, what: `etcd members ${this.endpoints().join(", ")} to answer` });
  }

  async destroy(): Promise<void> {
    for (let i = 0; i < this.members.length; i++) await this.stop(i).catch(() => {});
    this.unregister();
    if (this.owned) rmSync(this.dir, { recursive: true, force: true });
    else for (const m of this.members) rmSync(m.dataDir, { recursive: true, force: true });
  }

  private killAll(): void {
    for (const m of this.members) m.proc?.kill("SIGKILL");
  }

  private async answers(m: Member): Promise<boolean> {
    if (m.host) {
      // Asked from inside the member's namespace (the test's own namespace has no route to the lab).
      const probe = `const r = await fetch(${JSON.stringify(`${m.client}/v3/kv/range`)}, { method: "POST", body: '{"key":"eA=="}', signal: AbortSignal.timeout(1000) }); process.exit(r.ok ? 0 : 1);`;
      const r = await m.host.exec([process.execPath, "-e", probe], { timeoutMs: 5_000 });
      return r.code === 0;
    }
    // Any answer from etcd (even "permission denied" once auth is on) means the member serves.
    return new EtcdClient({ endpoints: [m.client], requestTimeoutMs: 1000, ...(this.tls ? { tls: this.tls.client } : {}) }).range("/health-probe")
      .then(() => true, (e: Error) => /etcdserver: (permission denied|user name is empty)/.test(e.message));
  }

  private spawn(i: number, logDir?: string): void {
    const m = this.members[i]!;
    mkdirSync(m.dataDir, { recursive: true, mode: 0o700 });
    const cmd = [
      ETCD_BIN, "--name", m.name, "--data-dir", m.dataDir,
      "--listen-client-urls", m.client, "--advertise-client-urls", m.client,
      "--listen-peer-urls", m.peer, "--initial-advertise-peer-urls", m.peer,
      "--initial-cluster", this.members.map((x) => `${x.name}=${x.peer}`).join(","),
      "--initial-cluster-state", "new", "--initial-cluster-token", "pgherd-test",
      "--heartbeat-interval", String(ETCD_HEARTBEAT_MS), "--election-timeout", String(ETCD_ELECTION_TIMEOUT_MS),
      ...(this.tls ? ["--cert-file", this.tls.certFile, "--key-file", this.tls.keyFile, "--trusted-ca-file", this.tls.caFile, "--client-cert-auth"] : []),
    ];
    const logFile = logDir ? join(logDir, `${m.name}.log`) : undefined;
    m.proc = m.host ? m.host.spawn(cmd, { logFile }) : new Proc(cmd, { logFile });
  }
}

/** One member's own id and the leader it follows, from etcd's maintenance status; null if it does not answer. */
async function memberStatus(m: { client: string; host: Host | null }): Promise<{ id: string; leader: string } | null> {
  const url = `${m.client}/v3/maintenance/status`;
  let text: string;
  if (m.host) {
    const probe = `const r = await fetch(${JSON.stringify(url)}, { method: "POST", body: "{}", signal: AbortSignal.timeout(1000) }); process.stdout.write(await r.text());`;
    const r = await m.host.exec([process.execPath, "-e", probe], { timeoutMs: 5_000 });
    if (r.code !== 0) return null;
    text = r.stdout;
  } else {
    const r = await fetch(url, { method: "POST", body: "{}", signal: AbortSignal.timeout(1000) }).catch(() => null);
    if (!r?.ok) return null;
    text = await r.text();
  }
  try {
    const j = JSON.parse(text) as { header?: { member_id?: string }; leader?: string };
    return j.header?.member_id && j.leader ? { id: j.header.member_id, leader: j.leader } : null;
  } catch {
    return null;
  }
}

/**
 * The index (in `members`) of etcd's raft leader, once every answering member agrees on it; null
 * entries are members that are not running. Loopback members, or `http://<host ip>:2379` on lab hosts.
 */
export async function etcdLeaderIndex(members: ({ client: string; host: Host | null } | null)[]): Promise<number> {
  let found = -1;
  await waitFor(async () => {
    const st = await Promise.all(members.map((m) => (m ? memberStatus(m) : Promise.resolve(null))));
    const seen = st.filter((x): x is { id: string; leader: string } => x !== null);
    if (seen.length === 0 || seen.some((x) => x.leader !== seen[0]!.leader)) return false;
    found = st.findIndex((x) => x?.id === seen[0]!.leader);
    return found >= 0;
  }, { timeoutMs: 10_000, intervalMs: 100, what: "the etcd members to agree on a leader" });
  return found;
}

/**
 * Counts this process's HTTP requests to etcd that `match` accepts (URL and body), passing each
 * on to the real fetch: how many reads or logins a burst of calls made. stop() puts fetch back.
 */
export function countFetches(match: (url: string, body: string) => boolean): { readonly count: number; stop(): void } {
  const real = globalThis.fetch;
  let count = 0;
  const counting = (input: Parameters<typeof fetch>[0], init?: Parameters<typeof fetch>[1]) => {
    if (match(String(input instanceof Request ? input.url : input), typeof init?.body === "string" ? init.body : "")) count++;
    return real(input, init);
  };
  globalThis.fetch = Object.assign(counting, { preconnect: real.preconnect }) as typeof fetch;
  return { get count() { return count; }, stop: () => void (globalThis.fetch = real) };
}
