import { defineCommand } from "citty";
import { agentCommand } from "./cmd-agent.ts";
import { clusterCommand } from "./cmd-cluster.ts";
import { demoCommand } from "./cmd-demo.ts";
import { initCommand } from "./cmd-init.ts";
import { statusCommand } from "./cmd-status.ts";
import { watchdogCommand } from "./cmd-watchdog.ts";
import { failoverCommand, pauseCommand, rejoinCommand, resumeCommand, switchoverCommand } from "./cmd-actions.ts";
import { versionCommand } from "./cmd-version.ts";
import { configCommand } from "./cmd-config.ts";
import { memberCommand } from "./cmd-member.ts";
import { pgpoolCommand } from "./cmd-pgpool.ts";
import { installCommand, uninstallCommand } from "./cmd-install.ts";
import { dsnCommand, passwdCommand } from "./cmd-client.ts";
import { backupCommand } from "./cmd-backup.ts";
import { reloadCommand, restartCommand } from "./cmd-restart.ts";
import { consensusCommand } from "./cmd-consensus.ts";
import type { CliContext } from "./context.ts";
import { VERSION } from "./version-info.ts";

export const rootCommand = (ctx: CliContext) =>
  defineCommand({
    meta: { name: "pgherd", version: VERSION, description: "PostgreSQL streaming-replication cluster manager" },
    subCommands: {
      agent: agentCommand(ctx),
      init: initCommand(ctx),
      cluster: clusterCommand(ctx),
      status: statusCommand(ctx),
      demo: demoCommand(ctx),
      watchdog: watchdogCommand(ctx),
      switchover: switchoverCommand(ctx),
      failover: failoverCommand(ctx),
      rejoin: rejoinCommand(ctx),
      pause: pauseCommand(ctx),
      resume: resumeCommand(ctx),
      config: configCommand(ctx),
      member: memberCommand(ctx),
      pgpool: pgpoolCommand(ctx),
      dsn: dsnCommand(ctx),
      passwd: passwdCommand(ctx),
      install: installCommand(ctx),
      uninstall: uninstallCommand(ctx),
      backup: backupCommand(ctx),
      reload: reloadCommand(ctx),
      restart: restartCommand(ctx),
      consensus: consensusCommand(ctx),
      version: versionCommand(ctx),
    },
  });
