// Quorum commit with three database nodes and a writer on every node (so also on the old primary
// and, after failover, the new one), on one shared cluster.
//
// Host crash: the primary's host crashes (every process SIGKILLed) at a random moment, ten times in
// a row; the crashed host's agent is restarted and the cluster is whole again before the next
// round. Every acknowledged write must be on the final primary, every round. Replay the random
// moments with DURABILITY_SEED=<n> (printed).
//
// A frozen primary agent (SIGSTOP), two variants:
//  - the agent alone frozen: its fencing watchdog stops PostgreSQL at the lease end;
//  - the agent AND its watchdog frozen: nothing fences the old primary, which keeps running as a
//    primary with synchronous_standby_names set. Only quorum commit protects the data then: the
//    standbys stop streaming from it before they vote, so it can no longer gather the
//    synchronous acknowledgement a commit needs.
// Both: zero acknowledged writes lost, and no write acknowledged by the old primary after the new
// one acknowledged its first. Then the other way round: both standbys' PostgreSQL frozen, their
// replication connections look alive but carry nothing; the primary must notice (wal_sender_timeout)
// and degrade behind a committed guard instead of holding every commit until the connections die.
import { expect, test } from "bun:test";
import { childrenOf } from "../../src/postgres/orphans.ts";
import type { ClusterNode } from "../helpers/cluster.ts";
import { describeCluster } from "../helpers/describe-cluster.ts";
import { seededRandom, seedFrom, table, waitGuarantee, waitSynchronous } from "../helpers/durability.ts";
import { waitFor } from "../helpers/proc.ts";
import { describeAnalysis, faultRound, logMark, logSince, secs, signal, startFailoverCluster, watchdogPid, type RoundResult } from "../helpers/writer.ts";

const ROUNDS = 10;
/** The crash lands up to this long after the writer's steady state began: anywhere in a commit's life. */
const MAX_DELAY_MS = 1500;
/**
 * Each lane writes every 25 ms (the default is 50): twice the commits in flight when the crash
 * lands, and the counted steady stretches of a round (5 writes before, 10 on the new primary, 5
 * after healing) take half as long.
 */
const WRITER = { intervalMs: 25 };

describeCluster("quorum commit: host crash of the primary, frozen primary agent", {
  start: () => startFailoverCluster("durability-frozen", "dfrozen"),
  ready: async ({ c }) => console.log(`durability: ${await waitGuarantee(c.nodes[0]!, /^quorum: zero-loss/, 30_000)}`),
}, (fx) => {
  const check = (r: RoundResult, extraMs = 0) => {
    const lastOld = r.analysis.lastOldAck ? r.analysis.lastOldAck.end - r.at : null;
    console.log(describeAnalysis(`${r.label} (${r.old.name} -> ${r.neu.name})`, r.analysis, r.lost) +
      `; last write acknowledged by the old primary ${secs(lastOld)} after the freeze; healthy again ${secs(r.healMs)} after SIGCONT`);
    expect(r.neu).not.toBe(r.old);
    expect(r.analysis.recoveryMs ?? Infinity).toBeLessThanOrEqual(fx.bounds.failoverMs + extraMs);
    expect(r.analysis.splitBrain.map((a) => `${a.node}#${a.id}`)).toEqual([]);
    expect(r.lost).toEqual([]);
  };

  /** Each round starts from a synchronous primary (a failover leaves it degraded until the old one rejoins). */
  const synchronous = async () => console.log(`before the round: ${await waitSynchronous((await fx.c.waitHealthy(60_000)).primary)}`);

  test(`host crash of the primary, ${ROUNDS} rounds: zero acknowledged writes lost, every round`, () => fx.c.diagnose(async () => {
    const seed = seedFrom(process.env.DURABILITY_SEED);
    console.log(`seed ${seed} (replay: DURABILITY_SEED=${seed})`);
    const rnd = seededRandom(seed);
    const rows: (string | number)[][] = [];
    const losses: string[] = [];
    for (let i = 1; i <= ROUNDS; i++) {
      const delay = Math.floor(rnd() * MAX_DELAY_MS);
      // Synchronous again after the previous round (a crash while degraded rightly leaves no failover).
      await waitSynchronous((await fx.c.waitHealthy(120_000)).primary);
      const r = await faultRound(fx.c, {
        label: `round ${i}`, expect: "other", writer: WRITER,
        inject: async (p) => {
          await Bun.sleep(delay); // a random moment, not a wait for a condition
          await p.host.killAll("SIGKILL");
        },
        restore: (old) => old.start(),
      });
      console.log(describeAnalysis(`round ${i} (${r.old.name} -> ${r.neu.name}, crash ${delay} ms into steady writes)`, r.analysis, r.lost));
      rows.push([i, `${r.old.name}->${r.neu.name}`, delay, secs(r.analysis.outageMs), secs(r.analysis.recoveryMs), `${r.analysis.acked}/${r.analysis.attempts}`, r.lost.length, secs(r.healMs)]);
      if (r.lost.length) losses.push(`round ${i}: ${r.lost.map((l) => `${l.id}@${l.node}`).join(", ")}`);
      expect(r.analysis.splitBrain).toEqual([]);
      // The round's fault mark is set before the random delay: the bound starts at the crash.
      expect((r.analysis.recoveryMs ?? Infinity) - delay).toBeLessThanOrEqual(fx.bounds.failoverMs);
    }
    console.log(table(["round", "failover", "crash at ms", "outage", "new primary writes after (incl. delay)", "acked/attempts", "lost", "healed in"], rows));
    expect(losses).toEqual([]);
  }), 1_200_000);

  test("agent frozen (its watchdog fences)", () => fx.c.diagnose(async () => {
    await synchronous();
    let mark = 0;
    const r = await faultRound(fx.c, {
      label: "agent SIGSTOP", expect: "other", writer: WRITER,
      inject: async (p) => {
        mark = logMark(p);
        signal(p.agent!.pid, "SIGSTOP");
      },
      restore: async (old) => {
        signal(old.agent!.pid, "SIGCONT");
        await waitFor(() => logSince(old, mark, /stepped-down: lease expired|fenced: no longer leading/).length > 0, { timeoutMs: 15_000, what: `${old.name} to log that it lost leadership` });
      },
    });
    check(r);
  }), 300_000);

  test("agent and watchdog frozen: nothing fences the old primary, quorum commit alone keeps it from acknowledging", () => fx.c.diagnose(async () => {
    const frozen: { node?: ClusterNode; watchdog?: number } = {};
    const whileFrozen: { rec?: unknown; ssn?: string } = {};
    await synchronous();
    const r = await faultRound(fx.c, {
      label: "agent+watchdog SIGSTOP", expect: "other", writer: WRITER,
      inject: async (p) => {
        const wd = watchdogPid(p);
        if (wd === null) throw new Error(`${p.name}: no fencing watchdog running`);
        // The watchdog first: a frozen agent stops feeding it, and it would fence.
        signal(wd, "SIGSTOP");
        signal(p.agent!.pid, "SIGSTOP");
        frozen.node = p;
        frozen.watchdog = wd;
      },
      restore: async (old) => {
        try {
          // Proof that nothing fenced it: its server still runs as a primary while the new one writes.
          const rows = await old.query("select pg_is_in_recovery() as rec, current_setting('synchronous_standby_names') as ssn");
          whileFrozen.rec = rows[0]?.rec;
          whileFrozen.ssn = String(rows[0]?.ssn);
        } finally {
          signal(old.agent!.pid, "SIGCONT");
          if (frozen.watchdog !== undefined) signal(frozen.watchdog, "SIGCONT");
        }
      },
    }).finally(() => {
      // Never leave a process stopped behind a failed round.
      for (const pid of [frozen.node?.agent?.pid, frozen.watchdog]) if (pid !== undefined) try { signal(pid, "SIGCONT"); } catch { /* gone */ }
    });
    console.log(`old primary ${r.old.name} while frozen: in recovery ${String(whileFrozen.rec)}, synchronous_standby_names '${whileFrozen.ssn}'`);
    expect(whileFrozen.rec).toBe(false);
    expect(whileFrozen.ssn ?? "").toMatch(/^ANY /);
    // Nothing fences the old primary here, so the standbys keep streaming from it until they
    // detach to vote: positions move during the election and a first round can be refused as
    // behind. Safety is what this variant checks; it may take one more election round.
    check(r, 6000);
    // Writes the old primary was asked for after the freeze: none acknowledged once the standbys detached.
    const tries = r.writer.attempts.filter((a) => a.node === r.old.name && a.start >= r.at);
    const blocked = tries.filter((a) => !a.ok && /outcome unknown/.test(a.error ?? "")).length;
    console.log(`old primary after the freeze: ${tries.filter((a) => a.ok).length} acknowledged, ${blocked} left waiting (no synchronous standby), ${tries.length} tried`);
  }), 300_000);

  test("both standbys' PostgreSQL frozen: the primary drops their silent connections, degrades, and writes resume; after SIGCONT they resync", () => fx.c.diagnose(async () => {
    await synchronous();
    const stopped: number[] = [];
    let mark = 0;
    const held = { mark: 0, lifted: [] as string[] };
    const r = await faultRound(fx.c, {
      label: "standbys' PostgreSQL SIGSTOP", expect: "same", writer: WRITER,
      inject: async (p) => {
        mark = logMark(p);
        for (const s of fx.c.nodes.filter((n) => n !== p)) {
          const pm = s.postmasterPid();
          if (pm === null) throw new Error(`${s.name}: no postmaster`);
          for (const pid of [pm, ...childrenOf(pm)]) {
            signal(pid, "SIGSTOP");
            stopped.push(pid);
          }
        }
      },
      restore: async (old) => {
        // The primary's checkpointer held while the standbys come back: it alone makes commits wait
        // for them again (it takes the reload of the names), so the block must stay until it has.
        const ck = Number((await old.query("select pid from pg_stat_activity where backend_type = 'checkpointer'"))[0]?.pid);
        signal(ck, "SIGSTOP");
        stopped.push(ck);
        held.mark = logMark(old);
        for (const pid of stopped.splice(0, stopped.length - 1)) signal(pid, "SIGCONT");
        await waitFor(async () => (await old.query("select count(*)::int as n from pg_stat_replication where state = 'streaming'"))[0]?.n === 2, { timeoutMs: 30_000, what: `both standbys streaming from ${old.name} again` });
        // The primary saw them and held the block for the barrier (a positive sign the gate ran)...
        await waitFor(() => logSince(old, held.mark, /automatic failover stays suspended until the checkpointer has taken the names/).length > 0, { timeoutMs: 15_000, what: `${old.name} to hold its block for the checkpointer` });
        // ...and a fixed window on purpose (it shows an absence): several more rounds with the standbys streaming.
        await Bun.sleep(1500);
        held.lifted = logSince(old, held.mark, /synchronous again/);
        signal(ck, "SIGCONT");
        stopped.pop();
      },
    }).finally(() => {
      for (const pid of stopped) try { signal(pid, "SIGCONT"); } catch { /* gone */ }
    });
    console.log(`resync with the primary's checkpointer held: ${held.lifted.length ? `lifted anyway: ${held.lifted[0]}` : "the block stayed"}; after it ran: ${logSince(r.old, held.mark, /synchronous again/)[0] ?? "(not lifted)"}`);
    expect(held.lifted).toEqual([]);
    expect(logSince(r.old, held.mark, /synchronous again/).length).toBeGreaterThan(0);
    console.log(describeAnalysis(`${r.label} (${r.old.name})`, r.analysis, r.lost) + `; healthy again ${secs(r.healMs)} after SIGCONT`);
    const degraded = logSince(r.old, mark, /degraded: writes continue/);
    console.log(`primary ${r.old.name}: ${degraded[0] ?? "(never degraded)"}`);
    expect(degraded.length).toBeGreaterThan(0);
    // wal_sender_timeout (5 s) ends the silent connections; the guard commit and reload add ~1 s.
    // PostgreSQL's 60 s default would hold every commit for a minute.
    expect(r.analysis.recoveryMs ?? Infinity).toBeLessThanOrEqual(5000 + fx.bounds.failoverMs);
    expect(r.analysis.splitBrain).toEqual([]);
    expect(r.lost).toEqual([]);
    console.log(`after SIGCONT: ${await waitSynchronous(r.old, 60_000)}`);
  }), 300_000);
});

