// The text `pgherd status` prints for one node's /node document. Pure: tested without an agent.
import { describe as describePg } from "../api/health.ts";
import { healthFacts } from "../api/source.ts";
import type { NodeStatus } from "../core/node-status.ts";
import type { ArchiveReport } from "../core/report.ts";

/** "primary, running, timeline 3, LSN 0/3000060" and friends: what an operator checks first. */
export function postgresLines(s: NodeStatus): string[] {
  const pg = s.postgres;
  if (!pg) return [`postgres  ${s.node.role === "witness" ? "none (witness)" : "no report yet"}`];
  const d = describePg(healthFacts(s));
  const head = [d.role, d.state, pg.data === "present" ? `timeline ${pg.position.timeline}` : `data ${pg.data}`, `LSN ${pg.position.lsn}`];
  const lines = [`postgres  ${head.join(", ")} (port ${pg.port})`];
  if (pg.inRecovery) {
    const lag = pg.lagBytes === null ? "lag unknown" : `lag ${pg.lagBytes} bytes`;
    lines.push(`          ${d.replicationState ?? "not streaming"} from ${pg.upstream ?? "-"}, replayed ${pg.replayLsn ?? "-"}, ${lag}${pg.syncState ? `, ${pg.syncState}` : ""}`);
  }
  if (pg.inRecovery === false) {
    const standbys = pg.replication.map((r) => `${r.name} ${r.state}${r.syncState ? `/${r.syncState}` : ""}${r.lagBytes === null ? "" : ` lag ${r.lagBytes}`}`);
    lines.push(`standbys  ${standbys.join(", ") || "-"}`);
  }
  lines.push(`restart   ${pg.pendingRestart?.length ? `pending for ${pg.pendingRestart.join(", ")}` : "not pending"}`);
  if (pg.up && pg.archive) lines.push(`archive   ${archiveText(pg.archive)}`);
  if (pg.note) lines.push(`note      ${pg.note}`);
  if (pg.error) lines.push(`error     ${pg.error}`);
  return lines;
}

/** The archiver: failing (once said: core/archiving.ts) first, then what waits and the last archived and failed files. */
function archiveText(a: ArchiveReport): string {
  const file = (wal: string | null, at: string | null) => `${wal ?? "-"}${at ? ` at ${at}` : ""}`;
  const failing = a.failingSince ? `FAILING since ${a.failingSince}, ` : "";
  const failed = a.lastFailedAt ? `, last failed ${file(a.lastFailedWal, a.lastFailedAt)}` : "";
  return `${failing}${a.ready} file(s) waiting, last archived ${file(a.lastArchivedWal, a.lastArchivedAt)}${failed}`;
}

export function statusText(s: NodeStatus): string {
  const e = s.election;
  return [
    `cluster   ${s.cluster}`,
    `node      ${s.node.name} (${s.node.id}, ${s.node.role})`,
    `election  ${e.role}${e.backend ? ` (${e.backend.backend})` : ""}, term ${e.term}, leader ${e.leaderName ?? "-"}${e.leading ? `, lease ${e.leaseRemainingMs} ms left` : ""}`,
    `voters    ${e.voters.map((v) => v.name).join(", ") || "-"}`,
    ...(s.bootstrap ? [`bootstrap ${s.bootstrap}`] : []),
    ...postgresLines(s),
    `durability ${s.durability}${s.paused ? " (paused: automatic actions suspended)" : ""}`,
    `peers     ${s.peers.map((p) => `${p.name}${p.connected ? "" : " (down)"}`).join(", ") || "-"}`,
  ].join("\n") + "\n";
}
