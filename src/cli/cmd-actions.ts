// Operator actions through the local agent's API: switchover, failover, rejoin, pause, resume.
// Exit codes: 0 done, 1 refused or failed (the agent's reason is printed), 2 usage.
import { defineCommand } from "citty";
import { apiArgs, apiBase, apiToken, getJson, sendAction, tokenArg, winnerOf, type ActionReply } from "./api-client.ts";
import { type CliContext, CliExit, EXIT_FAILURE, EXIT_USAGE } from "./context.ts";
import { SWITCHOVER_ANSWER_MS } from "../api/actions-contract.ts";
import { type NodePg, rejoinLines, rejoinPoll, rejoinSeq } from "./_rejoin-wait.ts";

type NodeStatus = { postgres: NodePg | null };

function finish(ctx: CliContext, r: ActionReply, json: boolean | undefined): void {
  if (json) ctx.out(`${JSON.stringify(r, null, 2)}\n`);
  else ctx.out(`${r.message}\n`);
  // A switchover whose target did not win (another node leads now) is not what was asked for.
  if (!r.ok || winnerOf(r) !== null) throw new CliExit(EXIT_FAILURE, "");
}

const common = { ...apiArgs, ...tokenArg, json: { type: "boolean", description: "Print the agent's JSON answer" } } as const;

export const switchoverCommand = (ctx: CliContext) =>
  defineCommand({
    meta: { name: "switchover", description: "Planned handover of the primary to a streaming standby (shortest write outage), now or --at a time" },
    args: {
      ...common,
      to: { type: "string", valueHint: "node", description: "Target member (default: the most caught-up standby)" },
      at: {
        type: "string", valueHint: "time",
        description: "Schedule it for this ISO 8601 time (2026-12-01T03:00:00Z), in the future. Stored through the leader: survives an agent's " +
          "restart, runs only on a leader with a valid lease, shown in `pgherd cluster ls` until it runs or is cancelled; " +
          "dropped unrun when a failover moved the primary first, no leader ran it within 10 minutes of its time, or the cluster is paused then (even with --force)",
      },
      force: { type: "boolean", description: "Skip the checks: paused and slot copies; with --to also lag and streaming (never nofailover or priority 0: such a node is never promoted; never a node that runs as a primary)" },
      cancel: { type: "boolean", description: "Drop the scheduled switchover instead (exit 1 when none is scheduled)" },
    },
    run: async ({ args }) => {
      if (args.cancel && (args.to || args.at || args.force)) throw new CliExit(EXIT_USAGE, "pgherd: --cancel takes no --to, --at or --force");
      const token = apiToken(args, ctx);
      const base = apiBase(args, ctx);
      if (args.cancel) return finish(ctx, await sendAction(base, "DELETE", "/switchover", undefined, token), args.json);
      // An empty --to or --at (a script's unset variable) goes to the agent, which refuses it: left out,
      // it would have meant "the best standby" and "now".
      const body = { ...(args.to !== undefined ? { to: args.to } : {}), ...(args.at !== undefined ? { at: args.at } : {}), ...(args.force ? { force: true } : {}) };
      finish(ctx, await sendAction(base, "POST", "/switchover", body, token, SWITCHOVER_ANSWER_MS + 30_000), args.json);
    },
  });

export const failoverCommand = (ctx: CliContext) =>
  defineCommand({
    meta: { name: "failover", description: "Make a chosen node the primary when the leader is gone" },
    args: {
      ...common,
      to: { type: "string", valueHint: "node", required: true, description: "The member to promote" },
      force: { type: "boolean", description: "Even if a leader with a primary exists, or the cluster is paused" },
      "accept-data-loss": { type: "boolean", description: "Allow a candidate that may miss acknowledged writes" },
    },
    run: async ({ args }) => {
      const body = { to: args.to, ...(args.force ? { force: true } : {}), ...(args["accept-data-loss"] ? { acceptDataLoss: true } : {}) };
      finish(ctx, await sendAction(apiBase(args, ctx), "POST", "/failover", body, apiToken(args, ctx), SWITCHOVER_ANSWER_MS + 30_000), args.json);
    },
  });

export const rejoinCommand = (ctx: CliContext) =>
  defineCommand({
    meta: { name: "rejoin", description: "Rebuild this node as a standby of the primary: pg_rewind, else a fresh clone" },
    args: {
      ...common,
      "force-clone": { type: "boolean", description: "Skip pg_rewind: take a fresh clone (the old data is kept aside)" },
      wait: { type: "boolean", default: true, description: "Show progress until the node streams (default on; --no-wait to return at once)" },
    },
    run: async ({ args }) => {
      const token = apiToken(args, ctx); // before the first request: a bad token file is a usage error
      const base = apiBase(args, ctx);
      const wait = args.wait && !args.json;
      // The request this command makes is the first one newer than what the node reports now.
      const before = wait ? rejoinSeq(((await getJson(base, "/node")) as NodeStatus).postgres) : 0;
      const r = await sendAction(base, "POST", "/rejoin", args["force-clone"] ? { forceClone: true } : {}, token);
      finish(ctx, r, args.json);
      if (!wait) return;
      let last = "";
      const shown = new Set<string>();
      const deadline = Date.now() + 6 * 3600_000;
      while (Date.now() < deadline) {
        await Bun.sleep(500);
        const poll = rejoinPoll(before, ((await getJson(base, "/node")) as NodeStatus).postgres);
        for (const line of rejoinLines(poll, last, shown)) ctx.out(`${line}\n`);
        last = poll.line;
        if (poll.done === "streaming") return;
        if (poll.done === "failed") throw new CliExit(EXIT_FAILURE, "");
      }
      throw new CliExit(EXIT_FAILURE, "rejoin did not finish in time");
    },
  });

const simple = (name: "pause" | "resume", description: string) => (ctx: CliContext) =>
  defineCommand({
    meta: { name, description },
    args: common,
    run: async ({ args }) => finish(ctx, await sendAction(apiBase(args, ctx), "POST", `/${name}`, {}, apiToken(args, ctx)), args.json),
  });

export const pauseCommand = simple("pause", "Maintenance mode: agents monitor and report but take no automatic action");
export const resumeCommand = simple("resume", "Leave maintenance mode");
