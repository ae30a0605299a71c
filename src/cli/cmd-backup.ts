// `pgherd backup [--type full|diff|incr]`: asks the agent (which asks the leader) for a pgBackRest
// backup; the leader runs it on a healthy standby, else on the primary (src/backup/backup-action.ts).
// `pgherd backup ls`: the backups in the repository, read with the config the agent wrote (where an
// agent runs, as root or as postgres.os_user), and with a repository host when its certificate ends.
import { readFileSync } from "node:fs";
import { defineCommand } from "citty";
import { stanzaInfo, type BackupType } from "../backup/backups.ts";
import { backrestPaths } from "../backup/pgbackrest.ts";
import { nodeHosts, renderRepoHostConf, repoHostBackupRefusal, type RepoNode, writeRepoHostCert } from "../backup/repo-host.ts";
import { processIo, repoHostOf, walPush } from "../backup/wal-push.ts";
import { repoHostAnswers } from "../backup/pgbackrest.ts";
import { repoHostCertStatus } from "../backup/repo-cert-watch.ts";
import { RENEW_BEFORE_MS } from "../tls/plan.ts";
import { SecretsStore } from "../store/cluster-secrets.ts";
import { loadConfigAsCaller } from "./root-config.ts";
import { createLogger } from "../log.ts";
import { apiArgs, apiBase, apiToken, sendAction, tokenArg } from "./api-client.ts";
import { type CliContext, CliExit, configPathFrom, EXIT_FAILURE, EXIT_USAGE } from "./context.ts";

const TYPES = ["full", "diff", "incr"] as const;

export const backupCommand = (ctx: CliContext) =>
  defineCommand({
    meta: { name: "backup", description: "Take a pgBackRest backup, on a healthy standby if there is one (backup ls: list the backups; backup repo-cert: the repository host's certificate and pgbackrest.conf)" },
    args: {
      ...apiArgs,
      ...tokenArg,
      action: { type: "positional", required: false, description: "ls: list the backups (and when the repository host's certificate ends); repo-cert: sign the repository host's certificate (--host, --out)" },
      segment: { type: "positional", required: false, description: "wal-push: the WAL file's path (PostgreSQL's %p)" },
      host: { type: "string", description: "repo-cert: the repository host's address or DNS name (default: [backup] repo_host)" },
      out: { type: "string", valueHint: "dir", description: "repo-cert: directory to write ca.crt, pgbackrest.crt, pgbackrest.key (0600) into" },
      nodes: { type: "string", description: "repo-cert: the nodes' addresses, comma-separated, each optionally =DATA_DIR when it differs from this node's (default: mesh.advertise and discovery.peers)" },
      "remote-dir": { type: "string", valueHint: "dir", description: "repo-cert: where those files will be on the repository host (default: --out)" },
      type: { type: "string", default: "incr", description: "full | diff | incr (incr without a full backup makes a full one)" },
      json: { type: "boolean", description: "backup ls: JSON output" },
      config: { type: "string", valueHint: "path", description: "pgherd config file" },
      pgbackrest: { type: "string", valueHint: "path", description: "wal-push (PostgreSQL's archive_command): the pgbackrest binary" },
      "pgbackrest-config": { type: "string", valueHint: "path", description: "wal-push: this node's pgbackrest.conf" },
      stanza: { type: "string", description: "wal-push: the stanza" },
      wait: { type: "string", default: "30", description: "wal-push: seconds a standby waits for the primary's copy of a segment before it pushes its own" },
      direct: { type: "boolean", description: "wal-push: no repository host; this node pushes at once, primary or standby" },
      lock: { type: "string", valueHint: "file", description: "wal-push: a file in the shared repository held locked (flock) while this node pushes" },
    },
    run: async ({ args }) => {
      // PostgreSQL's archive_command: everything it needs is in argv.
      if (args.action === "wal-push") return walPushCommand(args);
      const cfg = await loadConfigAsCaller(configPathFrom(args.config, ctx));
      if (cfg.backup.tool !== "pgbackrest") throw new CliExit(EXIT_USAGE, `pgherd backup: [backup] tool is "${cfg.backup.tool}" in the config, not "pgbackrest"`);
      const log = createLogger(cfg.log.level === "debug" ? "debug" : "warn");
      const p = backrestPaths(cfg);
      const run = { osUser: cfg.postgres.os_user, log, timeoutMs: 24 * 3600_000 };
      if (args.action === "ls") {
        const info = await stanzaInfo(p, { ...run, timeoutMs: 60_000 });
        if (args.json) return ctx.out(JSON.stringify(info, null, 2) + "\n");
        ctx.out(`stanza ${p.stanza}: ${info.status}; archive ${info.archiveMin ?? "-"} .. ${info.archiveMax ?? "-"}\n`);
        for (const b of info.backups) {
          const on = b.node ? `  on ${b.node} (${b.fromStandby ? "standby" : "primary"})` : "";
          ctx.out(`${b.label}  ${b.type.padEnd(4)}  ${new Date(b.stop * 1000).toISOString()}  wal ${b.walStart}..${b.walStop}  ${b.sizeBytes} bytes (${b.repoBytes} in the repository)${on}\n`);
        }
        if (cfg.backup.repo_host) {
          const s = await repoHostCertStatus(cfg, p, Date.now());
          ctx.out(`${s.warn ? "WARNING: " : ""}${s.text}\n`);
        }
        return;
      }
      if (args.action === "repo-cert") {
        const host = args.host || cfg.backup.repo_host;
        if (!host || !args.out) throw new CliExit(EXIT_USAGE, "pgherd backup repo-cert: needs --out DIR and --host (or [backup] repo_host)");
        const ca = new SecretsStore(cfg.state_dir).get()?.ca;
        if (!ca) throw new CliExit(EXIT_FAILURE, `pgherd backup repo-cert: no cluster CA in ${cfg.state_dir}/cluster.json (run it as root on a node of a cluster with postgres.replication_tls)`);
        const uid = process.getuid?.() ?? 0;
        const gid = process.getgid?.() ?? 0;
        let nodes: RepoNode[];
        try {
          nodes = nodeHosts(cfg, (args.nodes ?? "").split(",").map((s) => s.trim()).filter(Boolean));
        } catch (e) {
          throw new CliExit(EXIT_USAGE, `pgherd backup repo-cert: ${(e as Error).message}`);
        }
        const files = await writeRepoHostCert(ca, host, args.out, { uid, gid }, Date.now());
        const remote = args["remote-dir"] || args.out;
        const at = (f: string) => `${remote.replace(/\/+$/, "")}/${f.split("/").pop()}`;
        process.stderr.write(`wrote ${files.caFile}, ${files.certFile}, ${files.keyFile} (0600): copy them to ${host}:${remote}/, owned by the user that runs pgbackrest there\n` +
          `the certificate is valid until ${new Date(files.notAfterMs).toISOString()}: run repo-cert again before then, copy the files and reload pgbackrest server there (SIGHUP); the primary's agent warns from ${RENEW_BEFORE_MS / 86_400_000} days before\n`);
        return ctx.out(renderRepoHostConf(cfg, p.stanza, nodes, { caFile: at(files.caFile), certFile: at(files.certFile), keyFile: at(files.keyFile) }));
      }
      if (args.action) throw new CliExit(EXIT_USAGE, `pgherd backup: unknown action ${JSON.stringify(args.action)} (ls, repo-cert, wal-push)`);
      if (cfg.backup.repo_host) throw new CliExit(EXIT_USAGE, `pgherd backup: ${repoHostBackupRefusal(cfg.backup.repo_host, p.stanza, cfg.backup.from_standby)}`);
      const type = args.type as BackupType;
      if (!TYPES.includes(type)) throw new CliExit(EXIT_USAGE, `pgherd backup: --type must be one of ${TYPES.join(", ")}`);
      const r = await sendAction(apiBase(args, ctx), "POST", "/backup", { type }, apiToken(args, ctx), 25 * 3600_000);
      ctx.out(args.json ? `${JSON.stringify(r, null, 2)}\n` : `${r.message}\n`);
      if (!r.ok) throw new CliExit(EXIT_FAILURE, "");
    },
  });

async function walPushCommand(args: { segment?: string; pgbackrest?: string; "pgbackrest-config"?: string; stanza?: string; wait?: string; direct?: boolean; lock?: string }): Promise<void> {
  const path = args.segment;
  const wait = Number(args.wait);
  if (!path || !args.pgbackrest || !args["pgbackrest-config"] || !args.stanza || !Number.isFinite(wait) || wait < 0) {
    throw new CliExit(EXIT_USAGE, "pgherd backup wal-push: needs --pgbackrest, --pgbackrest-config, --stanza, a --wait of 0 or more seconds and the segment's path (%p)");
  }
  const a = { bin: args.pgbackrest, conf: args["pgbackrest-config"], stanza: args.stanza, path, waitMs: wait * 1000, direct: args.direct === true, ...(args.lock ? { lock: args.lock } : {}) };
  const code = walPush(a, processIo(a, await repoDownWhileStopping(a)));
  if (code !== 0) throw new CliExit(code, "");
}

/** While the server shuts down, with a repository host: whether that host takes no connection within 500 ms (wal-push.ts). */
async function repoDownWhileStopping(a: { conf: string; direct: boolean; bin: string; stanza: string }): Promise<boolean> {
  if (a.direct || !processIo(a).stopping()) return false;
  let text = "";
  try {
    text = readFileSync(a.conf, "utf8");
  } catch {
    return false; // pgbackrest says what is wrong with its config
  }
  const repo = repoHostOf(text);
  return repo !== null && !(await repoHostAnswers(repo.host, repo.port, 500));
}

