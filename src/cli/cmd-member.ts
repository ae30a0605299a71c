// `pgherd member ls|approve|remove`: who votes. A node that joins after bootstrap is a non-voter
// until an operator approves it (unless [election] auto_join); remove takes a voter out of the set,
// a dead host's too, so the majority shrinks and failover works again; force, on a stopped survivor,
// makes the survivors the voters when a majority is gone for good (no leader to remove them).
import { defineCommand } from "citty";
import type { ClusterView } from "../core/cluster-view.ts";
import { majority } from "../core/quorum.ts";
import { apiArgs, apiBase, apiToken, getJson, sendAction, tokenArg } from "./api-client.ts";
import { type CliContext, CliExit, EXIT_FAILURE, EXIT_USAGE } from "./context.ts";

const common = { ...apiArgs, ...tokenArg, json: { type: "boolean", description: "Print the agent's JSON answer" } } as const;
const nodeArg = { node: { type: "positional", required: true, valueHint: "NAME", description: "The member's node name or node id" } } as const;
/** The API's format of a member reference (actions-contract.ts): checked here to fail fast with exit 2. */
const MEMBER_REF = /^[A-Za-z0-9_.-]{1,64}$/;

function memberAction(ctx: CliContext, verb: "approve" | "remove", description: string) {
  return defineCommand({
    meta: { name: verb, description },
    args: { ...common, ...nodeArg },
    run: async ({ args }) => {
      if (!MEMBER_REF.test(args.node)) throw new CliExit(EXIT_USAGE, `pgherd: ${JSON.stringify(args.node)} is not a node name or node id`);
      const r = await sendAction(apiBase(args, ctx), "POST", `/members/${verb}`, { node: args.node }, apiToken(args, ctx));
      ctx.out(args.json ? `${JSON.stringify(r, null, 2)}\n` : `${r.message}\n`);
      if (!r.ok) throw new CliExit(EXIT_FAILURE, "");
    },
  });
}

export function renderMembers(v: ClusterView): string {
  const head = ["MEMBER", "NODE ID", "ROLE", "VOTER", "STATE"];
  const rows = v.members.map((m) => [
    `${m.name}${m.leader ? " *" : ""}`, m.id, m.role,
    m.membership === "pending" ? "no (pending approval)" : m.membership === "approved" ? "approved (joining)" : m.voter ? "yes" : "no",
    m.state,
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (r: string[]) => r.map((c, i) => c.padEnd(widths[i]!)).join("  ").trimEnd();
  const voters = v.members.filter((m) => m.voter).length;
  const title = `cluster ${v.cluster}: ${voters} voter${voters === 1 ? "" : "s"}, majority ${majority(voters)}`;
  return [title, line(head), ...rows.map(line)].join("\n") + "\n";
}

export const memberCommand = (ctx: CliContext) =>
  defineCommand({
    meta: { name: "member", description: "Voters: list the members, approve a new node as a voter, remove a voter (also a dead host)" },
    subCommands: {
      ls: defineCommand({
        meta: { name: "ls", description: "List the members: voter, approved (joining) or pending approval" },
        args: { ...apiArgs, json: { type: "boolean", description: "Print JSON for scripts" } },
        run: async ({ args }) => {
          const r = (await getJson(apiBase(args, ctx), "/cluster")) as { source: string; view: ClusterView };
          ctx.out(args.json ? `${JSON.stringify(r.view.members, null, 2)}\n` : renderMembers(r.view));
          if (r.source === "local") ctx.out("[leader unreachable: local view]\n");
        },
      }),
      approve: memberAction(ctx, "approve", "Make a node that joined after bootstrap a voter (stored through the leader)"),
      remove: memberAction(ctx, "remove", "Take a voter out of the voter set (also a dead host: the majority shrinks), or withdraw an approval"),
      force: defineCommand({
        meta: { name: "force", description: "A majority of voters lost for good: make the survivors the voters (this host's agent stopped; docs/operations.md)" },
        args: {
          voters: { type: "string", required: true, valueHint: "ID,...", description: "The surviving voters to keep: node ids (pgherd member ls), this node's name for itself" },
          "others-lost": { type: "boolean", description: "Write it: every other voter is gone for good (without it: show what would be written)" },
          "accept-data-loss": { type: "boolean", description: "Also when the last durability guard says the survivors may lack acknowledged writes" },
          config: { type: "string", valueHint: "path", description: "This host's config file (default: $PGHERD_CONFIG or /etc/pgherd/pgherd.toml)" },
          json: { type: "boolean", description: "Print JSON for scripts" },
        },
        run: async ({ args }) => {
          const { runForce } = await import("./member-force.ts");
          await runForce(ctx, args);
        },
      }),
    },
  });
