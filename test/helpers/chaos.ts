// Randomized faults against a three-node quorum-commit cluster with a writer on every node, shared
// by scripts/chaos.ts (30 rounds) and test/e2e/chaos.e2e.test.ts (8). Each round: the cluster is
// healthy, one fault is injected, held until it took effect, undone, and the cluster must be whole
// again (one primary, two streaming standbys) before the next. At the end the run reports the
// acknowledged writes the final primary lacks, every moment two nodes acknowledged writes in the
// same period, and how long the cluster took to stream fully after the last fault.
import type { ClusterNode, PgCluster } from "./cluster.ts";
import { seededRandom, table, waitSynchronous } from "./durability.ts";
import { waitFor } from "./proc.ts";
import { blockingGuards, secs, startFailoverCluster, Writer, type Attempt } from "./writer.ts";

export const FAULTS = ["kill-postmaster", "kill-agent", "host-crash", "cut-primary", "cut-standby", "cut-leader-from-peer", "restart-node"] as const;
export type Fault = (typeof FAULTS)[number];

export interface ChaosOptions {
  rounds: number;
  seed: number;
  /** test-artifacts/<test>/ and the lab tag. */
  test: string;
  tag: string;
  /** Deadline for a healthy cluster after each round's fault was undone. */
  healMs?: number;
  print?: (line: string) => void;
}

export interface ChaosRound {
  round: number;
  fault: Fault;
  target: string;
  /** Primary before → primary after. */
  primaries: string;
  /** Longest gap between acknowledged writes from the fault until healthy again. */
  outageMs: number;
  /** Fault undone → healthy again (one primary, two streaming standbys, zero-loss guarantee). */
  healMs: number;
  lost: number;
}

export interface ChaosResult {
  seed: number;
  rounds: ChaosRound[];
  lost: { id: number; node: string }[];
  /** Acknowledgements by one node after another node had acknowledged a write sent later. */
  overlaps: string[];
  /** Last fault undone → fully streaming. */
  finalHealMs: number;
  acked: number;
  attempts: number;
  artifacts: string;
}

/** Creates the cluster, runs the rounds, destroys the cluster (logs stay in the artifacts). */
export async function runChaos(o: ChaosOptions): Promise<ChaosResult> {
  const print = o.print ?? console.log;
  const healMs = o.healMs ?? 120_000;
  const rnd = seededRandom(o.seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)]!;
  print(`chaos: seed ${o.seed} (replay: CHAOS_SEED=${o.seed}), ${o.rounds} rounds`);
  const { c, cfg } = await startFailoverCluster(o.test, o.tag);
  const electMs = cfg.election.timeout_ms + cfg.election.jitter_ms;
  const w = new Writer(c.nodes);
  const rounds: ChaosRound[] = [];
  try {
    return await c.diagnose(async () => {
      w.start();
      let finalHealMs = 0;
      let lastTarget: ClusterNode | null = null;
      for (let i = 1; i <= o.rounds; i++) {
        const before = await c.waitHealthy(healMs);
        const primary = before.primary;
        // Recovered means synchronous again too: a fault that lands while the primary is degraded
        // (e.g. standbys still reconnecting after a restart) rightly leaves no automatic failover.
        await waitSynchronous(primary, healMs);
        // ...and the voters know it: the guard they store no longer blocks failover.
        await waitFor(() => blockingGuards(c.nodes).length === 0, { timeoutMs: healMs, what: "no node to store a guard that blocks failover" });
        const fault = pick(FAULTS);
        const standby = pick(before.standbys);
        const at = w.mark(`round ${i}`);
        await w.waitAck(primary.name, at, 15_000); // the writer is live on this primary
        const inject = performance.now();
        const { target, undo } = await injectFault(c, w, fault, { primary, standby, other: pick(c.nodes.filter((n) => n !== primary)), any: pick(c.nodes), healed: lastTarget, electMs });
        lastTarget = target;
        const t1 = performance.now();
        await undo();
        const healed = await c.waitHealthy(healMs);
        await waitSynchronous(healed.primary, healMs);
        const heal = performance.now() - t1;
        finalHealMs = heal;
        // Writes flow again on the healed primary before the next round.
        const after = w.mark(`healed ${i}`);
        await w.waitAck(healed.primary.name, after, 30_000);
        const r: ChaosRound = { round: i, fault, target: target.name, primaries: `${primary.name}->${healed.primary.name}`, outageMs: longestGap(w.acked(), inject), healMs: heal, lost: 0 };
        rounds.push(r);
        print(`round ${i}: ${fault} on ${target.name} (primary ${r.primaries}): outage ${secs(r.outageMs)}, healthy ${secs(heal)} after undoing it`);
      }
      await w.stop();
      const final = await c.waitHealthy(healMs);
      const lost = await w.lost(final.primary);
      // Attribute each lost write to the round whose fault it was acknowledged before.
      for (const l of lost) {
        const a = w.attempts.find((x) => x.id === l.id);
        const idx = [...w.marks.entries()].filter(([k, t]) => k.startsWith("round ") && a && t <= a.end).length;
        const r = rounds[Math.max(0, idx - 1)];
        if (r) r.lost++;
      }
      const overlaps = overlapping(w.acked());
      print(table(["round", "fault", "target", "primary", "outage", "healed in", "lost"],
        rounds.map((r) => [r.round, r.fault, r.target, r.primaries, secs(r.outageMs), secs(r.healMs), r.lost])));
      const acked = w.acked().length;
      print(`chaos: ${rounds.length} rounds, ${acked}/${w.attempts.length} writes acknowledged, ${lost.length} lost, ${overlaps.length} overlapping acknowledgements, fully streaming ${secs(finalHealMs)} after the last fault was undone (seed ${o.seed})`);
      return { seed: o.seed, rounds, lost, overlaps, finalHealMs, acked, attempts: w.attempts.length, artifacts: c.artifacts };
    });
  } finally {
    await w.stop();
    await c.destroy().catch((e: Error) => print(`cleanup: ${e.message}`));
    print(`logs: ${c.artifacts}`);
  }
}

interface Targets { primary: ClusterNode; standby: ClusterNode; other: ClusterNode; any: ClusterNode; healed: ClusterNode | null; electMs: number }

/** Injects `fault`, waits until it took effect, and returns how to undo it. */
async function injectFault(c: PgCluster, w: Writer, fault: Fault, t: Targets): Promise<{ target: ClusterNode; undo: () => Promise<void> }> {
  const at = performance.now();
  const someoneElseWrites = (old: ClusterNode) => waitFor(() => w.acked().some((a) => a.node !== old.name && a.start >= at), { timeoutMs: 60_000, intervalMs: 20, what: `a write acknowledged by a node other than ${old.name} after ${fault}` });
  // Writes acknowledged (by anyone) sent at least `ms` after the fault: the cluster rode it out.
  const writesPast = (ms: number) => waitFor(() => w.acked().some((a) => a.start >= at + ms), { timeoutMs: ms + 60_000, intervalMs: 20, what: `writes acknowledged ${ms} ms after ${fault}` });
  switch (fault) {
    case "kill-postmaster": {
      const pid = t.primary.postmasterPid();
      if (pid === null) throw new Error(`${t.primary.name}: no postmaster`);
      process.kill(pid, "SIGKILL");
      await writesPast(0);
      return { target: t.primary, undo: async () => {} };
    }
    case "kill-agent": {
      const n = t.any;
      n.agent!.kill("SIGKILL");
      // The primary's agent: its watchdog fences at the lease end and a standby takes over.
      if (n === t.primary) await someoneElseWrites(n);
      else await writesPast(t.electMs);
      return { target: n, undo: () => n.start() };
    }
    case "host-crash": {
      await t.primary.host.killAll("SIGKILL");
      await someoneElseWrites(t.primary);
      return { target: t.primary, undo: () => t.primary.start() };
    }
    case "cut-primary": {
      await t.primary.host.cut();
      await someoneElseWrites(t.primary);
      return { target: t.primary, undo: () => t.primary.host.heal() };
    }
    case "cut-standby": {
      await t.standby.host.cut();
      await writesPast(t.electMs);
      return { target: t.standby, undo: () => t.standby.host.heal() };
    }
    case "cut-leader-from-peer": {
      // The peer stops hearing the leader (one direction dropped; TCP between them breaks both ways).
      await t.other.host.cutFrom(t.primary.host);
      await writesPast(2 * t.electMs);
      return { target: t.other, undo: () => t.other.host.healFrom(t.primary.host) };
    }
    case "restart-node": {
      // The node the previous round faulted and healed (else a standby): its agent restarts.
      const n = t.healed ?? t.other;
      await n.stopAgent();
      await n.start();
      await writesPast(0);
      return { target: n, undo: async () => {} };
    }
  }
}

function longestGap(acks: Attempt[], from: number): number {
  let gap = 0;
  for (let i = 1; i < acks.length; i++) if (acks[i]!.end >= from) gap = Math.max(gap, acks[i]!.end - acks[i - 1]!.end);
  return gap;
}

/**
 * Two nodes acknowledging in the same period: between two consecutive runs of acknowledgements by
 * different nodes, the earlier node's last acknowledgement must arrive before the later node's
 * first write was even sent.
 */
export function overlapping(acks: Attempt[]): string[] {
  const sorted = [...acks].sort((a, b) => a.end - b.end);
  const out: string[] = [];
  let runStart = 0;
  for (let i = 1; i <= sorted.length; i++) {
    if (i < sorted.length && sorted[i]!.node === sorted[runStart]!.node) continue;
    if (runStart > 0) {
      const prevLast = sorted[runStart - 1]!;
      const first = sorted[runStart]!;
      if (prevLast.end >= first.start) out.push(`${prevLast.node}#${prevLast.id} acknowledged ${Math.round(prevLast.end - first.start)} ms after ${first.node}#${first.id} was sent`);
    }
    runStart = i;
  }
  return out;
}
