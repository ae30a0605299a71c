// `pgherd member force`: loads this host's config and carries out src/ops/force-membership.ts,
// printing the membership before and after and what to do next.
import { resolve } from "node:path";
import { ConfigError, loadConfig } from "../config/load.ts";
import { forceMembership } from "../ops/force-membership.ts";
import { readApiSection } from "../ops/api-address.ts";
import { type CliContext, CliExit, configPathFrom, EXIT_FAILURE, EXIT_USAGE } from "./context.ts";

export async function runForce(ctx: CliContext, args: { voters: string; "others-lost"?: boolean; "accept-data-loss"?: boolean; config?: string; json?: boolean }): Promise<void> {
  const path = resolve(configPathFrom(args.config, ctx));
  let cfg;
  try {
    // As root, the agent's own 0600 file (its OS user's) is read only to say to run as that user.
    cfg = loadConfig(path, { ownerOnly: process.getuid?.() !== 0 });
  } catch (e) {
    if (e instanceof ConfigError) throw new CliExit(EXIT_USAGE, e.message);
    throw e;
  }
  const api = readApiSection(path);
  const apiUrl = api.kind === "ok" ? api.api.url : "http://127.0.0.1:7402";
  const voters = args.voters.split(",").map((v) => v.trim()).filter((v) => v !== "");
  const write = args["others-lost"] === true;
  let r;
  try {
    r = await forceMembership(cfg, { voters, write, acceptDataLoss: args["accept-data-loss"] === true, apiUrl });
  } catch (e) {
    throw new CliExit(EXIT_FAILURE, `pgherd: ${(e as Error).message}`);
  }
  if (!r.ok) throw new CliExit(r.usage ? EXIT_USAGE : EXIT_FAILURE, `pgherd: ${r.message}`);
  if (args.json) {
    ctx.out(`${JSON.stringify(r, null, 2)}\n`);
  } else {
    const lines = [
      `this node: ${cfg.node_name} (${r.self})`,
      `voters now:   ${r.before.voters.join(", ")} (membership ${r.before.term}/${r.before.index})`,
      `voters after: ${r.after.voters.join(", ")} (membership ${r.after.term}/${r.after.index}); removed: ${r.lost.join(", ")}`,
      ...(r.guard
        ? [r.guardCleared
          ? `durability guard: ${r.guard}: cleared (--accept-data-loss): the survivors stand whatever WAL they hold`
          : `durability guard: ${r.guard}: kept: a survivor stands only past it; if none can, \`pgherd failover --to NAME --accept-data-loss\` (or this command with --accept-data-loss) elects one without it`]
        : []),
      "Writes that only the removed voters held are lost. Never start their agents again with their state directories:",
      "with a majority of the old voters they would elect a primary of their own. Wipe them and add the hosts as new nodes.",
    ];
    if (r.written) {
      lines.push(
        `written to ${cfg.state_dir}/election.json. Next: run the same command (same --voters) on every other surviving voter whose agent is stopped,`,
        "then start the agents (systemctl start pgherd): the survivors elect a leader among themselves and its PostgreSQL becomes the primary.",
      );
    } else {
      lines.push("nothing written: add --others-lost once every other voter is gone for good and this host's agent is stopped.");
    }
    ctx.out(`${lines.join("\n")}\n`);
  }
  if (!r.written) throw new CliExit(EXIT_USAGE, "");
}
