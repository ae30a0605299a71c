// `pgherd reload` and `pgherd restart`, through the local agent's API. reload: every member's agent
// re-reads its pgherd.toml and reloads PostgreSQL. restart: a rolling restart; the order is the
// pure plan's (core/restart-plan.ts) from the leader's view, this command only carries it out:
// one member's fast restart (POST /node/restart, run by that member's agent) or a switchover.
import { defineCommand } from "citty";
import type { ClusterView } from "../core/cluster-view.ts";
import { chooseTargets, planRestart, restartMember, syncNeeded, type RestartStep } from "../core/restart-plan.ts";
import { apiArgs, apiBase, apiToken, getJson, sendAction, tokenArg, winnerOf } from "./api-client.ts";
import { type CliContext, CliExit, EXIT_FAILURE, EXIT_USAGE } from "./context.ts";
import { SWITCHOVER_ANSWER_MS } from "../api/actions-contract.ts";

const common = { ...apiArgs, ...tokenArg } as const;

async function leaderView(base: string): Promise<ClusterView> {
  const r = (await getJson(base, "/cluster")) as { source: string; view: ClusterView };
  return r.view;
}

export const reloadCommand = (ctx: CliContext) =>
  defineCommand({
    meta: { name: "reload", description: "Every member's agent re-reads its pgherd.toml and reloads PostgreSQL (pg_ctl reload); prints what each did" },
    args: { ...common, member: { type: "string", valueHint: "node", description: "Only this member" } },
    run: async ({ args }) => {
      const token = apiToken(args, ctx);
      const base = apiBase(args, ctx);
      const names = args.member ? [args.member] : (await leaderView(base)).members.map((m) => m.name);
      let failed = 0;
      for (const node of names) {
        const r = await sendAction(base, "POST", "/node/reload", { node }, token);
        if (!r.ok) failed++;
        ctx.out(`${r.ok ? "" : `${node}: FAILED: `}${r.message}\n`);
      }
      if (failed) throw new CliExit(EXIT_FAILURE, `${failed} of ${names.length} member(s) not reloaded`);
    },
  });

export const restartCommand = (ctx: CliContext) =>
  defineCommand({
    meta: {
      name: "restart",
      description: "Rolling restart of PostgreSQL: standbys one at a time (each streaming again before the next), then the primary by switchover or --in-place",
    },
    args: {
      ...common,
      member: { type: "string", valueHint: "node", description: "Only this member" },
      pending: { type: "boolean", description: "Only members with settings pending a restart" },
      "in-place": { type: "boolean", description: "Restart the primary where it is instead of switching over" },
      force: { type: "boolean", description: "Restart a standby even when that leaves fewer synchronous standbys than durability needs" },
      at: { type: "string", valueHint: "time", description: "Start at this ISO 8601 time: the command waits in the foreground until then" },
      timeout: { type: "string", valueHint: "seconds", default: "300", description: "Give up when one wait lasts longer than this" },
    },
    run: async ({ args }) => {
      const token = apiToken(args, ctx);
      const base = apiBase(args, ctx);
      const waitMs = Number(args.timeout) * 1000;
      if (!(waitMs > 0)) throw new CliExit(EXIT_USAGE, `pgherd: --timeout ${JSON.stringify(args.timeout)} is not a positive number of seconds`);
      if (args.at) {
        const when = Date.parse(args.at);
        if (!Number.isFinite(when)) throw new CliExit(EXIT_USAGE, `pgherd: --at ${JSON.stringify(args.at)} is not a date/time`);
        if (when > Date.now()) ctx.out(`waiting until ${new Date(when).toISOString()} (this command stays in the foreground)\n`);
        while (Date.now() < when) await Bun.sleep(Math.min(1000, when - Date.now()));
      }
      const t0 = performance.now();
      const stamp = () => `[${((performance.now() - t0) / 1000).toFixed(1)} s]`;
      const first = await leaderView(base);
      const chosen = chooseTargets(first.members.map(restartMember), { member: args.member, pending: args.pending ?? false });
      if (!chosen.ok) throw new CliExit(EXIT_FAILURE, `pgherd restart: ${chosen.reason}`);
      if (chosen.targets.length === 0) return ctx.out(args.pending ? "no member has settings pending a restart\n" : "nothing to restart\n");
      ctx.out(`${stamp()} restarting ${chosen.targets.join(", ")}\n`);
      const done: string[] = [];
      let lastWait = "";
      let waitingSince = performance.now();
      for (;;) {
        const view = await leaderView(base);
        const members = view.members.map(restartMember);
        const step: RestartStep = planRestart({
          members, targets: chosen.targets, done, inPlace: args["in-place"] ?? false, force: args.force ?? false,
          syncNeeded: syncNeeded(view.members.filter((m) => m.voter).length, view.durability?.startsWith("async") ?? false),
        });
        if (step.kind === "done") return ctx.out(`${stamp()} done: ${done.join(", ")} restarted\n`);
        if (step.kind === "blocked") throw new CliExit(EXIT_FAILURE, `${stamp()} stopped: ${step.reason}`);
        if (step.kind === "wait") {
          if (step.reason !== lastWait) ctx.out(`${stamp()} waiting: ${step.reason}\n`);
          if (step.reason !== lastWait) waitingSince = performance.now();
          lastWait = step.reason;
          if (performance.now() - waitingSince > waitMs) throw new CliExit(EXIT_FAILURE, `${stamp()} gave up after ${args.timeout} s: ${step.reason}`);
          await Bun.sleep(300);
          continue;
        }
        lastWait = "";
        if (step.kind === "restart") {
          ctx.out(`${stamp()} restarting ${step.node}${step.primary ? " (primary, in place)" : ""}: ${step.why}\n`);
          const r = await sendAction(base, "POST", "/node/restart", { node: step.node }, token, 240_000);
          ctx.out(`${stamp()} ${r.message}\n`);
          if (!r.ok) throw new CliExit(EXIT_FAILURE, "");
          done.push(step.node);
        } else {
          ctx.out(`${stamp()} switchover ${step.from} -> ${step.to}: ${step.why}\n`);
          const r = await sendAction(base, "POST", "/switchover", { to: step.to }, token, SWITCHOVER_ANSWER_MS + 30_000);
          ctx.out(`${stamp()} ${r.message}\n`);
          if (!r.ok) throw new CliExit(EXIT_FAILURE, "");
          done.push(step.from);
          await backAsStandby(base, step.from, waitMs);
          ctx.out(`${stamp()} ${step.from} streams from ${winnerOf(r) ?? step.to} with its new settings\n`);
        }
      }
    },
  });

/** After a switchover: the old primary's last report may still say "primary"; wait until it streams as a standby. */
async function backAsStandby(base: string, name: string, waitMs: number): Promise<void> {
  const end = performance.now() + waitMs;
  while (performance.now() < end) {
    const m = (await leaderView(base)).members.find((x) => x.name === name);
    if (m?.role === "standby" && m.state === "streaming") return;
    await Bun.sleep(300);
  }
  throw new CliExit(EXIT_FAILURE, `${name} did not stream as a standby within ${waitMs / 1000} s after the switchover`);
}
