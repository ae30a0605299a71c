// `pgherd backup` through the agents: the leader (which runs the primary) picks where the backup
// runs (choose.ts: a healthy standby, else the primary), hands it to that member over the mesh, and
// records where it ran in the history. The member runs pgBackRest: from a standby with
// backup-standby, reaching the primary's pgBackRest TLS server (tls-server.ts) for
// pg_backup_start/stop; on the primary as a plain backup. One backup at a time per node.
import type { ActionRequest, ActionResult } from "../api/actions-contract.ts";
import type { ActionHost } from "../agent/actions.ts";
import { parseHostPort } from "../config/hostport.ts";
import { socketDirOf } from "../config/pg-values.ts";
import type { Config } from "../config/schema.ts";
import type { Logger } from "../log.ts";
import { runningConfig } from "../ops/reload.ts";
import type { PrimaryFacts } from "./backup-contract.ts";
import { stanzaInfo, takeBackup, WalNotArchived, type BackupInfo, type BackupType } from "./backups.ts";
import { osUidOf } from "../postgres/users.ts";
import { findBackup, ourBackup } from "./backup-proc.ts";
import { backupUnderWay, chooseBackupSite } from "./choose.ts";
import { backrestPaths } from "./pgbackrest.ts";
import { repoHostBackupRefusal } from "./repo-host.ts";
import { backrestTlsFiles } from "./tls-server.ts";

export type BackupRequest = Extract<ActionRequest, { kind: "backup" }>;

/**
 * A member's answer: its backup is in the repository but its WAL was not archived in time (backups.ts
 * WalNotArchived). The leader does not take another on the primary then: that one would wait for the
 * same archiving, and the standby's backup becomes restorable once its WAL arrives.
 */
export const BACKUP_WAL_PENDING = 424;

/** A backup may take hours: the leader waits that long for the member's answer. */
export const BACKUP_TIMEOUT_MS = 24 * 3600_000;

/** What a standby's backup needs to know about this primary (its pgBackRest TLS server and server settings). */
export function primaryFacts(cfg: Config): PrimaryFacts {
  const pg = cfg.postgres;
  return { tlsPort: cfg.backup.tls_port, path: pg.data_dir, port: pg.port, socketPath: socketDirOf(pg), user: pg.superuser };
}

const fail = (status: number, message: string): ActionResult => ({ status, ok: false, message });

/**
 * One agent's backups and what keeps them one at a time: the backup this node takes (`taking`, also in its state reports) and,
 * on the leader, the one it has under way anywhere (`leading`: a scheduled one and `pgherd backup`
 * at once would otherwise run on two members, and two backups of one stanza on two hosts do not see
 * each other's pgBackRest locks). The agent's ActionRunner owns it.
 */
export class BackupDesk {
  /** The backup this node's pgBackRest takes now (in this node's state reports: running()). */
  private taking: { type: BackupType; since: string } | null = null;
  private leading: { where: string; type: BackupType; since: Date } | null = null;
  /** A backup an earlier run of this agent left running (backup-proc.ts): looked for once, then watched until it exits. */
  private leftover: { pid: number; uid: number; type: BackupType; since: string } | null = null;
  private looked: Promise<void> | null = null;

  constructor(private readonly h: ActionHost, private readonly log: Logger) {}

  /** On the leader: choose the member, let it take the backup, record where it ran. */
  async lead(req: BackupRequest): Promise<ActionResult> {
    const { h, log } = this;
    const cfg = runningConfig();
    if (!cfg || cfg.backup.tool !== "pgbackrest") return fail(400, `${h.nodeName}: [backup] tool is not "pgbackrest"`);
    if (cfg.backup.repo_host) return fail(400, repoHostBackupRefusal(cfg.backup.repo_host, backrestPaths(cfg).stanza, cfg.backup.from_standby));
    const me = h.myReport();
    if (!me?.up || me.inRecovery !== false) return fail(503, `${h.nodeName} leads but its PostgreSQL is not a running primary: try again`);
    const type = req.type ?? "incr";
    if (this.leading) return fail(409, `a ${this.leading.type} backup is already under way on ${this.leading.where} (since ${this.leading.since.toISOString()}): one backup at a time`);
    const elsewhere = backupUnderWay({ name: h.nodeName, report: me }, h.candidates());
    if (elsewhere) return fail(409, elsewhere);
    const site = chooseBackupSite({ primary: me, primaryId: h.nodeId, candidates: h.candidates(), maxLagBytes: h.maxLagBytes, fromStandby: cfg.backup.from_standby });
    let r: ActionResult;
    let where = site.on === "standby" ? `standby ${site.name}` : `primary ${h.nodeName} (${site.reason})`;
    const mine = { where: site.on === "standby" ? `standby ${site.name}` : `primary ${h.nodeName}`, type, since: new Date() };
    this.leading = mine;
    try {
      if (site.on === "standby") {
        log.info(`${type} backup: on standby ${site.name} (replay lag ${site.lagBytes} bytes)`);
        r = await h.askNode(site.id, { kind: "backup", type, run: { primary: primaryFacts(cfg), leader: h.nodeName } }, BACKUP_TIMEOUT_MS);
        // On the primary instead only when the standby's backup is known not to run: refused before
        // it began, or failed (its pgbackrest exited). A 409 is a backup the standby already runs;
        // without an answer (504) it may still run.
        // Nor when its backup was taken and only its WAL is not archived yet (424): a second backup on
        // the primary would wait for the same archiving.
        if (!r.ok && r.status !== 409 && r.status !== 504 && r.status !== BACKUP_WAL_PENDING) {
          log.warn(`${type} backup on standby ${site.name} failed (${r.message}): taking it on the primary`);
          where = `primary ${h.nodeName} (standby ${site.name} failed: ${r.message})`;
          mine.where = `primary ${h.nodeName}`;
          r = await this.runHere({ kind: "backup", type, run: { primary: null, leader: h.nodeName } });
        }
      } else {
        log.info(`${type} backup: on the primary, ${site.reason}`);
        r = await this.runHere({ kind: "backup", type, run: { primary: null, leader: h.nodeName } });
      }
    } finally {
      this.leading = null;
    }
    // An answer over the mesh carries status and message only: the backup is read back from the message.
    const b = (r.detail as BackupInfo | undefined) ?? (r.ok ? (fromMessage(r.message) ?? await newestBackup(cfg, log)) : undefined);
    if (r.ok && b) r = { ...r, detail: b };
    const term = h.electionState().term;
    h.record({ term, kind: "backup", node: h.nodeName, reason: r.ok ? `${type} backup ${b?.label ?? ""} taken on ${where}` : `${type} backup failed on ${where}: ${r.message}`, oldPrimary: null, newPrimary: null, timeline: null, lsn: b?.lsnStop || null });
    return r;
  }

  /** On the member the leader chose (or the primary itself): take the backup. */
  async runHere(req: BackupRequest): Promise<ActionResult> {
    const { h, log } = this;
    const cfg = runningConfig();
    if (!cfg || cfg.backup.tool !== "pgbackrest") return fail(400, `${h.nodeName}: [backup] tool is not "pgbackrest"`);
    const facts = req.run?.primary ?? null;
    const me = h.myReport();
    const type: BackupType = req.type ?? "incr";
    const p = backrestPaths(cfg);
    let primary: Parameters<typeof takeBackup>[4];
    if (facts) {
      const up = me?.upstream ? parseHostPort(me.upstream) : null;
      if (!me?.up || me.inRecovery !== true || !me.streaming || !up || typeof up === "string") return fail(503, `${h.nodeName} is not a streaming standby now`);
      primary = { node: h.nodeName, primary: { remote: { ...facts, host: up.host }, ...backrestTlsFiles(p) } };
    } else {
      if (!me?.up || me.inRecovery !== false) return fail(503, `${h.nodeName} is not a running primary now`);
      primary = { node: h.nodeName };
    }
    await this.lookForLeftover();
    if (this.taking) return fail(409, `${h.nodeName} is already taking a backup`);
    const left = this.leftoverRunning();
    if (left) return fail(409, `${h.nodeName} is already taking a ${left.type} backup (pgbackrest pid ${left.pid}, started by an earlier run of its agent)`);
    this.taking = { type, since: new Date().toISOString() };
    h.backupChanged();
    try {
      const b = await takeBackup(p, { osUser: cfg.postgres.os_user, log, timeoutMs: BACKUP_TIMEOUT_MS }, type, 120_000, primary);
      return { status: 200, ok: true, message: doneMessage({ ...b, node: h.nodeName, fromStandby: facts !== null }), detail: b };
    } catch (e) {
      return fail(e instanceof WalNotArchived ? BACKUP_WAL_PENDING : 500, `${h.nodeName}: ${(e as Error).message}`);
    } finally {
      this.taking = null;
      h.backupChanged(); // before the answer goes out (one mesh connection keeps the order): the leader's next backup is not refused on this state
    }
  }

  /** The backup this node takes now, for its state reports (null: none), a leftover of an earlier agent run's included. */
  running(): { type: BackupType; since: string } | null {
    if (this.taking) return this.taking;
    void this.lookForLeftover();
    const left = this.leftoverRunning();
    return left ? { type: left.type, since: left.since } : null;
  }

  /** Once per agent run: a `pgbackrest backup` of this node's configuration already running (reported as this node's backup). */
  private lookForLeftover(): Promise<void> {
    this.looked ??= (async () => {
      const cfg = runningConfig();
      if (!cfg || cfg.backup.tool !== "pgbackrest") return;
      const uid = await osUidOf(cfg.postgres.os_user);
      const b = findBackup(uid, backrestPaths(cfg).conf);
      if (!b) return;
      this.leftover = { ...b, uid, since: new Date().toISOString() };
      this.log.warn(`a ${b.type} backup started by an earlier run of this agent is still running (pgbackrest pid ${b.pid}): reported as this node's backup until it ends`);
      this.h.backupChanged();
    })().catch((e: Error) => this.log.warn(`looking for a backup left running by an earlier agent: ${e.message}`));
    return this.looked;
  }

  private leftoverRunning(): { pid: number; uid: number; type: BackupType; since: string } | null {
    const l = this.leftover;
    if (!l) return null;
    const cfg = runningConfig();
    if (cfg && ourBackup(l.pid, l.uid, backrestPaths(cfg).conf)) return l;
    this.leftover = null;
    this.log.info(`the backup left running by an earlier agent (pgbackrest pid ${l.pid}) has ended`);
    this.h.backupChanged();
    return null;
  }

  /** A scheduled backup (keeper.ts), chosen and run as `pgherd backup` is. */
  async scheduled(type: BackupType): Promise<BackupInfo> {
    const r = await this.lead({ kind: "backup", type });
    if (!r.ok) throw new Error(r.message);
    if (!r.detail) throw new Error(`${r.message}; but pgbackrest info does not list it`);
    return r.detail as BackupInfo;
  }
}

/** The answer of a member that took a backup, and reading it back on the leader (fromMessage). */
export function doneMessage(b: BackupInfo): string {
  const how = b.fromStandby ? `from standby ${b.node} (the primary ran only pg_backup_start/stop)` : `on primary ${b.node}`;
  return `backup ${b.label} (${b.type}) done ${how}: wal ${b.walStart}..${b.walStop}, lsn ${b.lsnStart}..${b.lsnStop}, ${b.repoBytes} bytes in the repository`;
}

const DONE = /^backup (\S+) \((full|diff|incr)\) done (from standby|on primary) (\S+)[^:]*: wal (\S*)\.\.(\S*), lsn (\S*)\.\.(\S*), (\d+) bytes in the repository$/;

export function fromMessage(m: string): BackupInfo | undefined {
  const x = DONE.exec(m);
  if (!x) return undefined;
  return {
    label: x[1]!, type: x[2] as BackupType, node: x[4]!, fromStandby: x[3] === "from standby", start: 0, stop: 0,
    walStart: x[5]!, walStop: x[6]!, lsnStart: x[7]!, lsnStop: x[8]!, sizeBytes: 0, repoBytes: Number(x[9]),
  };
}

async function newestBackup(cfg: Config, log: Logger): Promise<BackupInfo | undefined> {
  const info = await stanzaInfo(backrestPaths(cfg), { osUser: cfg.postgres.os_user, log, timeoutMs: 60_000, quiet: true }).catch((e: Error) => {
    log.warn(`pgbackrest info after the backup: ${e.message}`);
    return null;
  });
  return info?.backups.at(-1);
}
