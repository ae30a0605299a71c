// [pgpool]: the leader keeps pgpool-II's backends in line with the cluster through PCP
// (pcp_node_info, pcp_promote_node -s, pcp_attach_node, pcp_detach_node), so pgpool, whose own
// failover is off (docs/pgpool.md), sends writes to the primary pgherd elected and reads only to
// standbys that stream from it. planPgpool is pure; PgpoolKeeper runs the commands.
import { execFile } from "node:child_process";
import { accessSync, constants, statSync } from "node:fs";
import { withoutAmbientCaps } from "../caps.ts";
import type { Config } from "../config/schema.ts";
import type { ClusterView } from "../core/cluster-view.ts";
import type { Logger } from "../log.ts";
import { untrustedProgram } from "../hooks/trusted-path.ts";
import { PCP_PATH, pcpToolPath, type PCP_TOOLS } from "../hooks/programs.ts";

export interface PgpoolBackend { id: number; host: string; port: number; up: boolean; primary: boolean }
export interface PcpStep { cmd: "promote" | "attach" | "detach"; id: number; why: string }

/**
 * `pcp_node_info -a` (pgpool 4.3 or later): one line per slot of pgpool's backend table, the node
 * id being the line's index, "host port status weight status_name backend_status role …" with one
 * space between fields; status 1 (waiting) and 2 (up) are attached, 3 is down. A slot pgpool.conf
 * leaves out (backend ids 0 and 2 configured, not 1) is listed with an empty host and status 0: it
 * matches no member. Without -a, pcp_node_info leaves such a slot out (and any backend with an empty
 * hostname), so every later line's index named the node after it (review: pgpool 4.3.5 with
 * backends 0 and 2 printed two lines, and a request meant for node 2 went to node 1).
 */
export function parseNodeInfo(text: string): PgpoolBackend[] {
  return text.split("\n").filter((l) => l.trim() !== "").map((line, id) => {
    const f = line.split(" ");
    const port = Number(f[1]);
    if (f.length < 7 || f[1] === "" || !Number.isInteger(port)) throw new Error(`unexpected pcp_node_info line: ${line.slice(0, 200)}`);
    return { id, host: f[0]!, port, up: f[2] === "1" || f[2] === "2", primary: f[6] === "primary" };
  });
}

/** A member's PostgreSQL address as last seen in a view that had both parts (PgpoolKeeper keeps them by member id). */
export interface MemberAddr { host: string; port: number }

/**
 * What pgpool must be told so its backends match the cluster view (the leader's). Pure. `known`:
 * each member's last address seen whole (PgpoolKeeper.remember): a member whose reports stopped
 * shows no port once its last report is no longer fresh (5 s) and no host once the peer table
 * drops it (30 s), and a down standby left attached makes pgpool fail the sessions it opens to it
 * (review: only a detach within those 5 s ever happened). Used for a row without a whole address,
 * and only when no member's own row holds that address now.
 */
export function planPgpool(backends: readonly PgpoolBackend[], view: ClusterView, known: ReadonlyMap<string, MemberAddr> = new Map()): PcpStep[] {
  const whole = (m: { host: string; port: number | null }) => m.host !== "" && m.port !== null;
  const held = new Set(view.members.filter(whole).map((m) => `${m.host}\n${m.port}`));
  const addressOf = (m: { id: string; host: string; port: number | null }): { host: string; port: number | null } => {
    if (whole(m)) return m;
    const k = known.get(m.id);
    return k && !held.has(`${k.host}\n${k.port}`) ? k : m;
  };
  const backendOf = (m: { id: string; host: string; port: number | null }) => {
    const a = addressOf(m);
    return a.host === "" || a.port === null ? undefined : backends.find((b) => b.host === a.host && b.port === a.port);
  };
  const steps: PcpStep[] = [];
  // The leader's own primary: another server still running as a primary is one about to be fenced.
  const primary = view.members.find((m) => m.leader && m.role === "primary" && m.state === "running");
  const pb = primary && backendOf(primary);
  if (primary && pb) {
    if (!pb.up) steps.push({ cmd: "attach", id: pb.id, why: `${primary.name} is the primary` });
    else if (!pb.primary) steps.push({ cmd: "promote", id: pb.id, why: `${primary.name} is the primary` });
  }
  for (const m of view.members) {
    const b = backendOf(m);
    if (!b || b === pb) continue;
    if (m.role === "standby" && m.state === "streaming" && !b.up) steps.push({ cmd: "attach", id: b.id, why: `${m.name} streams from the primary` });
    // Not the promote target: pcp_promote_node -s detaches pgpool's old primary itself.
    const gone = m.state === "stopped" || m.state === "unreachable" || m.state === "cloning" || (m.role === "primary" && !m.leader);
    const why = m.role === "primary" && !m.leader ? "runs a primary without the lease" : `is ${m.state === "unreachable" ? "not reachable" : m.state}`;
    if (gone && b.up && !b.primary) steps.push({ cmd: "detach", id: b.id, why: `${m.name} ${why}` });
  }
  return steps;
}

const PCP_TIMEOUT_MS = 10_000;
/**
 * pgpool carries a PCP request out after the command returns: pcp_node_info may still show the
 * old primary, or a standby still down, for a moment. A second `pcp_promote_node -s` for the same
 * node then detaches the node the first one made primary (seen in pgpool.e2e); a second attach is
 * a second failback (pgpool before 4.5 restarts its PCP process for each). The same request to the
 * same backend is not sent again within this window.
 */
export const PCP_SETTLE_MS = 5000;

/** The last PCP request sent to a backend (by id): its kind, the backend's address then, when (ms). */
export interface SentRequest { cmd: PcpStep["cmd"]; addr: string; at: number }

const addrOf = (b: PgpoolBackend | undefined) => (b ? `${b.host}:${b.port}` : "");

/**
 * The steps to send now: not one whose backend was sent the same request within `settleMs` before
 * `now`. Another request to it in between (a standby detached, attached, detached again), or the id
 * naming another address (pgpool.conf changed), lifts the hold. Pure.
 */
export function unsettled(steps: readonly PcpStep[], backends: readonly PgpoolBackend[], sent: ReadonlyMap<number, SentRequest>, now: number, settleMs = PCP_SETTLE_MS): PcpStep[] {
  return steps.filter((s) => {
    const last = sent.get(s.id);
    return !last || last.cmd !== s.cmd || last.addr !== addrOf(backends.find((b) => b.id === s.id)) || now - last.at >= settleMs;
  });
}

/**
 * A PCP command that failed; `mayBeTaken`: after the request may have reached pgpool (killed at its
 * deadline, or the connection lost before the reply: libpcp's "unable to read data from socket"),
 * so it stays held (unsettled). A refused connection, a failed authentication or an error pgpool
 * answered came before pgpool registered anything: the next reconciliation sends it again.
 */
export class PcpFailure extends Error {
  constructor(message: string, readonly mayBeTaken: boolean) {
    super(message);
  }
}

/** Whether a PCP client's error (its stderr) may have come after pgpool took the request. Pure. */
export function pcpMayBeTaken(stderr: string): boolean {
  return /unable to read data from socket|invalid PCP packet/i.test(stderr);
}

export class PgpoolKeeper {
  private timer: ReturnType<typeof setInterval> | undefined;
  private busy = false;
  private kickedWhileBusy = false;
  private lastProblem = "";
  /** The last PCP request each backend id was sent, within PCP_SETTLE_MS of its end (`now`). */
  private readonly sent = new Map<number, SentRequest>();
  private stopped = false;
  private viewProblem = "";
  /** Each member's last whole address in a view this keeper reconciled with (planPgpool's `known`). */
  private readonly addrs = new Map<string, MemberAddr>();

  constructor(
    private readonly cfg: Config["pgpool"], private readonly log: Logger, private readonly leaderView: () => ClusterView | null,
    private readonly timeoutMs = PCP_TIMEOUT_MS, private readonly now: () => number = () => performance.now(),
  ) {
  }

  start(): void {
    this.log.info(`pgpool: keeping the backends of ${this.cfg.pcp_host}:${this.cfg.pcp_port} in line (PCP user ${this.cfg.pcp_user}, every ${this.cfg.interval_ms} ms while leading)`);
    this.timer = setInterval(() => this.run(false), this.cfg.interval_ms);
    this.timer.unref?.();
  }

  stop(): void {
    this.stopped = true;
    clearInterval(this.timer);
  }

  /**
   * One reconciliation now, with the view as it is now (this node just became the primary): one that
   * runs already read an older view, so another follows it at once. Nothing when this node does not lead.
   */
  kick(): void {
    this.run(true);
  }

  /** A period's reconciliation is skipped while one runs (a PCP port that does not answer is not asked back to back). */
  private run(kicked: boolean): void {
    if (this.stopped) return;
    if (this.busy) {
      this.kickedWhileBusy ||= kicked;
      return;
    }
    let view: ClusterView | null;
    try {
      view = this.leaderView();
      this.viewProblem = "";
    } catch (e) {
      const msg = (e as Error).message;
      if (msg !== this.viewProblem) this.log.warn(`pgpool: the cluster view: ${msg}`);
      this.viewProblem = msg;
      return;
    }
    if (!view) return;
    this.busy = true;
    void this.reconcile(view).catch((e: Error) => this.problem(e.message)).finally(() => {
      this.busy = false;
      if (!this.kickedWhileBusy) return;
      this.kickedWhileBusy = false;
      this.run(true);
    });
  }

  /**
   * Still the leader of the view's term (a view is given only with the lease): a PCP call may take
   * seconds, and the lease may go meanwhile, or go and come back in a later term, after which the
   * plan made from the older view may no longer hold.
   */
  private leading(view: ClusterView): boolean {
    try {
      return this.leaderView()?.term === view.term;
    } catch {
      return false;
    }
  }

  private async reconcile(view: ClusterView): Promise<void> {
    this.remember(view);
    // -a: every slot, also one pgpool.conf leaves out, so that a line's index is its node id.
    const backends = parseNodeInfo(await this.pcp("pcp_node_info", ["-a"]));
    const now = this.now();
    for (const [id, r] of this.sent) if (now - r.at >= PCP_SETTLE_MS) this.sent.delete(id);
    for (const s of unsettled(planPgpool(backends, view, this.addrs), backends, this.sent, now)) {
      // Each request only while this node leads (review: a reconciliation begun before a handover
      // attached the old primary again once its slow pcp_node_info answered).
      if (this.stopped || !this.leading(view)) return;
      const args = s.cmd === "promote" ? ["-s", "-n", String(s.id)] : ["-n", String(s.id)];
      this.log.info(`pgpool: pcp_${s.cmd}_node ${args.join(" ")} (${s.why})`);
      // The window starts when the command ends: a slow one (or one killed at its deadline, longer
      // than the window) may be carried out only now.
      const held = () => this.sent.set(s.id, { cmd: s.cmd, addr: addrOf(backends.find((b) => b.id === s.id)), at: this.now() });
      await this.pcp(`pcp_${s.cmd}_node` as const, args).then(held, (e: Error) => {
        if (e instanceof PcpFailure && e.mayBeTaken) held();
        throw e;
      });
    }
    if (this.lastProblem) this.log.info(`pgpool: PCP answers again at ${this.cfg.pcp_host}:${this.cfg.pcp_port}`);
    this.lastProblem = "";
  }

  /** The members' addresses this view shows whole; those of members no longer in it are forgotten. */
  private remember(view: ClusterView): void {
    const ids = new Set(view.members.map((m) => m.id));
    for (const id of this.addrs.keys()) if (!ids.has(id)) this.addrs.delete(id);
    for (const m of view.members) if (m.host !== "" && m.port !== null) this.addrs.set(m.id, { host: m.host, port: m.port });
  }

  private problem(msg: string): void {
    if (msg !== this.lastProblem) this.log.warn(`pgpool: ${msg}`);
    this.lastProblem = msg;
  }

  /** A PCP command, without the agent's ambient capabilities (caps.ts); the password comes from the .pcppass file (PCPPASSFILE), never argv or the environment. */
  private pcp(tool: (typeof PCP_TOOLS)[number], args: string[]): Promise<string> {
    const c = this.cfg;
    return new Promise((resolve, reject) => {
      let argv: [string, ...string[]];
      try {
        // Only tools no other user could have changed, under pgpool.bin_dir or found in PCP_PATH (hooks/trusted-path.ts).
        const path = pcpToolPath(c, tool);
        const untrusted = untrustedProgram(path);
        if (untrusted) return reject(new PcpFailure(untrusted, false));
        argv = withoutAmbientCaps([path, "-h", c.pcp_host, "-p", String(c.pcp_port), "-U", c.pcp_user, "-w", ...args]);
      } catch (e) {
        return reject(e);
      }
      execFile(argv[0], argv.slice(1), {
        timeout: this.timeoutMs, killSignal: "SIGKILL",
        env: { PATH: PCP_PATH, PCPPASSFILE: c.pcp_password_file, LANG: "C" },
      }, (err, stdout, stderr) => {
        if (err?.killed) reject(new PcpFailure(`${[tool, ...args].join(" ")}: no answer from ${c.pcp_host}:${c.pcp_port} within ${this.timeoutMs} ms (after a failover pgpool takes no PCP request until every PCP session open at the time has ended: see "TCP keepalive on the pgpool host" in docs/pgpool.md)`, true));
        else if (err) reject(new PcpFailure(`${[tool, ...args].join(" ")} failed: ${(stderr || err.message).trim().split("\n")[0]?.slice(0, 300)}${unusablePassFile(c.pcp_password_file)}`, pcpMayBeTaken(String(stderr))));
        else resolve(stdout);
      });
    });
  }
}

/**
 * Why the PCP tools cannot use the password file, or "": they then fail with a bare "authentication
 * failed". libpcp, as libpq with .pgpass, ignores a file that is not a regular file or that group or
 * others may read or write (it says so only with -d; review: a file of mode 0644 read as a wrong
 * password).
 */
export function unusablePassFile(file: string): string {
  const fix = "it must belong to the agent's user, mode 0600";
  try {
    accessSync(file, constants.R_OK);
    const st = statSync(file);
    if (!st.isFile()) return ` (pgpool.pcp_password_file ${file} is not a regular file: the PCP tools ignore it; ${fix})`;
    if ((st.mode & 0o077) !== 0) return ` (pgpool.pcp_password_file ${file} has mode ${(st.mode & 0o777).toString(8).padStart(4, "0")}: the PCP tools ignore a password file that group or others may read or write; ${fix})`;
    return "";
  } catch (e) {
    return ` (pgpool.pcp_password_file ${file} is not readable by the agent's user, uid ${process.getuid?.()}: ${(e as NodeJS.ErrnoException).code}; ${fix})`;
  }
}

/** What a host name, an IP address (v4 or v6), a node name or a slot name is made of. */
const PGPOOL_SAFE = /^[A-Za-z0-9._:-]{1,255}$/;

/**
 * `pgherd pgpool config`: pgpool.conf's backend section for the cluster as the leader sees it, with
 * pgpool's own failover off (only PCP requests from pgherd change the backends). Pure.
 */
export function renderPgpoolConfig(view: ClusterView, slotOf: (id: string) => string): string {
  const members = view.members.filter((m) => m.role !== "witness");
  // A member whose address the view no longer has (its agent not heard for a while) was left out,
  // and every member after it in the list got the next one's backend number (review): pgpool, which
  // keeps its backends' status by number, had a database member less and the others' status swapped.
  const unknown = members.filter((m) => !m.host || m.port === null);
  if (unknown.length > 0) {
    throw new Error(`member(s) ${unknown.map((m) => m.name).join(", ")}: address not known to this agent now (not heard lately): pgpool.conf lists every database member, so run this once they are back`);
  }
  // Values go between quotes in pgpool.conf: a name or address with a quote or a line break (the
  // view came over HTTP) would write settings of its own.
  for (const m of members) {
    for (const [what, v] of [["name", m.name], ["address", m.host], ["slot", slotOf(m.id)]] as const) {
      if (!PGPOOL_SAFE.test(v ?? "")) throw new Error(`member ${JSON.stringify(m.name).slice(0, 80)}: its ${what} ${JSON.stringify(v).slice(0, 80)} cannot go into pgpool.conf (letters, digits, '.', ':', '_' and '-' only)`);
    }
  }
  const lines = [
    `# pgpool-II backends for pgherd cluster ${view.cluster} (pgherd pgpool config; docs/pgpool.md)`,
    "backend_clustering_mode = 'streaming_replication'",
    ...members.flatMap((m, i) => [
      "",
      `# ${m.name}`,
      `backend_hostname${i} = '${m.host}'`,
      `backend_port${i} = ${m.port}`,
      `backend_weight${i} = 1`,
      `backend_flag${i} = 'ALLOW_TO_FAILOVER'    # PCP requests from pgherd may change it; pgpool itself never does (below)`,
      `backend_application_name${i} = '${slotOf(m.id)}'`,
    ]),
    "",
    "# pgpool never fails over on its own: pgherd's leader decides and tells it through PCP.",
    "failover_on_backend_error = off",
    "failover_on_backend_shutdown = off",
    "health_check_period = 0",
    "auto_failback = off",
    "failover_command = ''",
    "follow_primary_command = ''",
    "search_primary_node_timeout = 10    # never wait for a primary forever (it blocks PCP requests meanwhile)",
    "connect_timeout = 1000",
    "",
    "# Not pgpool.conf: this host's TCP must end a PCP session whose client vanished, or pgpool (before",
    "# 4.5) takes no PCP request after a failover until it does (kernel defaults: 2 hours for an idle",
    "# session, about 15 minutes for one with a reply in flight). /etc/sysctl.d:",
    "#   net.ipv4.tcp_keepalive_time = 10, net.ipv4.tcp_keepalive_intvl = 2, net.ipv4.tcp_keepalive_probes = 3,",
    "#   net.ipv4.tcp_retries2 = 5",
  ];
  return lines.join("\n") + "\n";
}
