// `pgherd cluster ls`: the leader's view of the cluster, from any host (through the local agent).
import { defineCommand } from "citty";
import type { HistoryEntry } from "../api/actions-contract.ts";
import type { ClusterView } from "../core/cluster-view.ts";
import { ClusterSummarySchema, renderClusters } from "../consensus/clusters.ts";
import { apiArgs, apiBase, getJson } from "./api-client.ts";
import { type CliContext, CliExit, EXIT_FAILURE } from "./context.ts";

export const clusterCommand = (ctx: CliContext) =>
  defineCommand({
    meta: { name: "cluster", description: "Inspect the cluster through the local agent" },
    subCommands: {
      history: defineCommand({
        meta: { name: "history", description: "Role changes: when, why, old and new primary, timeline, LSN" },
        args: { ...apiArgs, json: { type: "boolean", description: "Print JSON" } },
        run: async ({ args }) => {
          const h = (await getJson(apiBase(args, ctx), "/history")) as HistoryEntry[];
          if (args.json) return ctx.out(`${JSON.stringify(h, null, 2)}
`);
          if (h.length === 0) return ctx.out("no role changes recorded\n");
          for (const e of h) {
            const move = e.newPrimary ? ` ${e.oldPrimary ?? "-"} -> ${e.newPrimary}` : "";
            const pos = e.timeline !== null ? ` TL ${e.timeline}${e.lsn ? ` ${e.lsn}` : ""}` : "";
            ctx.out(`${e.at}  term ${e.term}  ${e.kind.padEnd(10)} ${e.node}${move}${pos}: ${e.reason}\n`);
          }
        },
      }),
      ls: defineCommand({
        meta: { name: "ls", description: "List the members: role, state, timeline, LSN, lag (exit 1 when there is no primary)" },
        args: {
          ...apiArgs,
          json: { type: "boolean", description: "Print JSON for scripts" },
          watch: { type: "boolean", description: "Refresh every 2 s until interrupted" },
          all: { type: "boolean", description: "Every cluster in the consensus store (etcd: all under its prefix)" },
        },
        run: async ({ args }) => {
          const base = apiBase(args, ctx);
          if (args.all) {
            const list = ClusterSummarySchema.array().parse(await getJson(base, "/clusters"));
            return ctx.out(args.json ? `${JSON.stringify(list, null, 2)}\n` : renderClusters(list));
          }
          for (;;) {
            const r = (await getJson(base, "/cluster")) as { source: string; view: ClusterView };
            const out = args.json ? `${JSON.stringify(r, null, 2)}\n` : renderTable(r.view, r.source);
            ctx.out(args.watch ? `\x1b[2J\x1b[H${out}` : out);
            if (!args.watch) {
              if (!r.view.primary) throw new CliExit(EXIT_FAILURE, "");
              return;
            }
            await Bun.sleep(2000);
          }
        },
      }),
    },
  });

export function renderTable(v: ClusterView, source: string): string {
  const head = ["MEMBER", "HOST:PORT", "ROLE", "STATE", "TL", "LSN", "LAG", "LAG TIME", "NOTE"];
  const rows = v.members.map((m) => [
    `${m.name}${m.leader ? " *" : ""}`,
    m.host ? `${m.host}${m.port ? `:${m.port}` : ""}` : "-",
    m.role,
    m.state,
    m.timeline === null ? "-" : String(m.timeline),
    m.lsn ?? "-",
    m.lagBytes === null ? "-" : bytes(m.lagBytes),
    m.lagSeconds === null ? "-" : `${m.lagSeconds.toFixed(1)} s`,
    noteOf(m).slice(0, 80),
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (r: string[]) => r.map((c, i) => c.padEnd(widths[i]!)).join("  ").trimEnd();
  const title = `cluster ${v.cluster}: leader ${v.leaderName ?? "none"} (term ${v.term}), primary ${v.members.find((m) => m.id === v.primary)?.name ?? "NONE"}${source === "local" ? "  [leader unreachable: local view]" : ""}`;
  const dur = v.durability ? `durability ${v.durability}` : "";
  const why = v.note ? `no leader: ${v.note}` : "";
  const paused = v.paused ? "PAUSED: maintenance mode, no automatic failover or repair (pgherd resume)" : "";
  const s = v.scheduledSwitchover;
  const sched = s ? `scheduled switchover to ${s.to ?? "the most caught-up standby"} at ${s.at} (cancel: pgherd switchover --cancel)` : "";
  // A note cut to fit the table (a stuck or full primary's reason, say) is printed whole below it.
  const long = v.members.map((m) => [m.name, noteOf(m)] as const).filter(([, n]) => n.length > 80).map(([name, n]) => `${name}: ${n}`);
  const pending = v.members.filter((m) => m.pendingRestart?.length).map((m) => `${m.name} (${m.pendingRestart!.join(", ")})`);
  const restart = pending.length ? [`pending restart: ${pending.join(", ")}: pgherd restart --pending`] : [];
  return [title, ...(paused ? [paused] : []), ...(sched ? [sched] : []), ...(dur ? [dur] : []), ...(why ? [why] : []), line(head), ...rows.map(line), ...long, ...restart].join("\n") + "\n";
}

/** A member's NOTE cell: its error, else a pending restart, missing slot copies and "never promoted" first, then its note. */
function noteOf(m: ClusterView["members"][number]): string {
  if (m.error) return `error: ${m.error}`;
  const copies = m.missingSlotCopies?.length ? `no copy of slot(s) ${m.missingSlotCopies.join(", ")}` : "";
  return [m.pendingRestart?.length ? "RESTART PENDING" : "", copies, m.promotable === false ? "never promoted" : "", m.note].filter(Boolean).join("; ");
}

function bytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 ** 2) return `${(n / 1024).toFixed(1)} kB`;
  if (n < 1024 ** 3) return `${(n / 1024 ** 2).toFixed(1)} MB`;
  return `${(n / 1024 ** 3).toFixed(1)} GB`;
}
