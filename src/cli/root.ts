import { defineCommand } from "citty";
import type { CliContext } from "./context.ts";
import { VERSION } from "./version-info.ts";

export const rootCommand = (ctx: CliContext) =>
  defineCommand({
    meta: { name: "pgherd", version: VERSION, description: "PostgreSQL streaming-replication cluster manager" },
    // Each command is imported when chosen: the agent does not load the other commands' modules.
    subCommands: {
      agent: () => import("./cmd-agent.ts").then((m) => m.agentCommand(ctx)),
      init: () => import("./cmd-init.ts").then((m) => m.initCommand(ctx)),
      cluster: () => import("./cmd-cluster.ts").then((m) => m.clusterCommand(ctx)),
      status: () => import("./cmd-status.ts").then((m) => m.statusCommand(ctx)),
      demo: () => import("./cmd-demo.ts").then((m) => m.demoCommand(ctx)),
      watchdog: () => import("./cmd-watchdog.ts").then((m) => m.watchdogCommand(ctx)),
      switchover: () => import("./cmd-actions.ts").then((m) => m.switchoverCommand(ctx)),
      failover: () => import("./cmd-actions.ts").then((m) => m.failoverCommand(ctx)),
      rejoin: () => import("./cmd-actions.ts").then((m) => m.rejoinCommand(ctx)),
      pause: () => import("./cmd-actions.ts").then((m) => m.pauseCommand(ctx)),
      resume: () => import("./cmd-actions.ts").then((m) => m.resumeCommand(ctx)),
      config: () => import("./cmd-config.ts").then((m) => m.configCommand(ctx)),
      member: () => import("./cmd-member.ts").then((m) => m.memberCommand(ctx)),
      pgpool: () => import("./cmd-pgpool.ts").then((m) => m.pgpoolCommand(ctx)),
      dsn: () => import("./cmd-client.ts").then((m) => m.dsnCommand(ctx)),
      passwd: () => import("./cmd-client.ts").then((m) => m.passwdCommand(ctx)),
      install: () => import("./cmd-install.ts").then((m) => m.installCommand(ctx)),
      uninstall: () => import("./cmd-install.ts").then((m) => m.uninstallCommand(ctx)),
      backup: () => import("./cmd-backup.ts").then((m) => m.backupCommand(ctx)),
      reload: () => import("./cmd-restart.ts").then((m) => m.reloadCommand(ctx)),
      restart: () => import("./cmd-restart.ts").then((m) => m.restartCommand(ctx)),
      consensus: () => import("./cmd-consensus.ts").then((m) => m.consensusCommand(ctx)),
      version: () => import("./cmd-version.ts").then((m) => m.versionCommand(ctx)),
    },
  });
