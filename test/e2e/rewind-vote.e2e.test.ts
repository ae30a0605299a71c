// A standby whose pg_rewind is under way still votes (src/agent/pg/rewind-vote.ts). Three namespace
// hosts, real PostgreSQL: standby A runs pg_rewind (`pgherd rejoin`), held at its start by a gate the
// test controls (postgres.bin_dir is a copy of the PostgreSQL bin directory whose pg_rewind waits
// while <node dir>/rewind-gate exists, then runs the real one), the primary's host is cut off, and
// the other standby B becomes the primary within the cluster's failover bound: A's vote is needed
// (2 of 3), and until 8 December a vote's detach waited behind the rewind (up to an hour) and was
// refused. A votes with the position its data held before the rewind; the rewind, released after
// the vote, is not followed by a start as a standby of the cut-off primary; A streams from B.
import { afterAll, expect, test } from "bun:test";
import { chmodSync, existsSync, mkdtempSync, readdirSync, rmSync, symlinkSync, unlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { PgCluster, poll, type ClusterNode } from "../helpers/cluster.ts";
import { describeCluster } from "../helpers/describe-cluster.ts";
import { pgBins } from "../helpers/pg.ts";
import { API_TOKEN, logMark, logSince, pgherd, readyCluster, waitReplicating } from "../helpers/writer.ts";

/** The PostgreSQL bin directory as links, but for a pg_rewind that waits for its node's gate to go. */
function gatedBinDir(): string {
  const real = pgBins?.dir;
  if (!real) throw new Error("no PostgreSQL binaries");
  const dir = mkdtempSync("/tmp/pgherd-rewind-vote-bin-");
  chmodSync(dir, 0o755);
  for (const f of readdirSync(real)) if (f !== "pg_rewind") symlinkSync(join(real, f), join(dir, f));
  writeFileSync(join(dir, "pg_rewind"), [
    "#!/bin/sh",
    'for a in "$@"; do case "$a" in --target-pgdata=*) d="${a#--target-pgdata=}";; esac; done',
    'n="$(dirname "$d")"',
    'if [ -e "$n/rewind-gate" ]; then',
    '  : > "$n/rewind-waiting"',
    '  while [ -e "$n/rewind-gate" ]; do sleep 0.05; done',
    "fi",
    `exec ${join(real, "pg_rewind")} "$@"`,
    "",
  ].join("\n"), { mode: 0o755 });
  return dir;
}

const bin = gatedBinDir();
afterAll(() => rmSync(bin, { recursive: true, force: true }));

describeCluster("a standby running pg_rewind votes", {
  start: async () => readyCluster("rewind-vote", await PgCluster.create({ test: "rewind-vote", tag: "rwvote", nodes: 3, defaults: { postgres: { bin_dir: bin }, extra: { api: { token: API_TOKEN } } } })),
}, (fx) => {
  test("the primary's host is cut off while a standby's pg_rewind runs: it votes with its position before the rewind, the other standby is promoted within the failover bound, and the rewound standby streams from it", () => fx.c.diagnose(async () => {
    const h = await waitReplicating(fx.c, 60_000);
    const [a, b] = h.standbys as [ClusterNode, ClusterNode];
    const p = h.primary;
    const gate = join(a.dir, "rewind-gate");
    const waiting = join(a.dir, "rewind-waiting");
    writeFileSync(gate, "");
    const mark = logMark(a);
    try {
      const req = await pgherd(a, ["rejoin", "--no-wait"]);
      if (req.code !== 0) throw new Error(`pgherd rejoin: ${req.text}`);
      await poll(async () => existsSync(waiting) || undefined, { timeoutMs: 60_000, intervalMs: 50, what: `${a.name}'s pg_rewind to start (held at its gate)` });
      // A's server is stopped for the rewind: a commit B acknowledges puts B strictly ahead of A, so
      // only B can win (this test is about A's vote, not about A's candidacy).
      await p.query("CREATE TABLE IF NOT EXISTS rewind_vote_ahead (x int); INSERT INTO rewind_vote_ahead VALUES (1)");

      const cutAt = performance.now();
      await p.host.cut();
      try {
        const promoted = await poll(async () => ((await b.query("SELECT NOT pg_is_in_recovery() AS w", 2_000).catch(() => []))[0]?.w === true ? performance.now() : undefined), { timeoutMs: 60_000, intervalMs: 20, what: `${b.name} to run as the primary` });
        const ms = promoted - cutAt;
        console.log(`${b.name} promoted ${(ms / 1000).toFixed(2)} s after ${p.name}'s host was cut off, while ${a.name}'s pg_rewind ran (bound ${fx.bounds.failoverMs} ms)`);
        const votes = logSince(a, mark, /voting in term \d+ while pg_rewind runs, with the position its data held before/);
        console.log(`${a.name}: ${votes.join(" | ")}`);
        expect(votes.length).toBeGreaterThanOrEqual(1);
        expect(ms).toBeLessThanOrEqual(fx.bounds.failoverMs);
        // The rewind goes on (its source is the cut-off primary): whatever it ends with, A is not
        // started as that primary's standby, and streams from B afterwards.
        unlinkSync(gate);
        await poll(async () => logSince(a, mark, /while it ran this node was asked for its vote in term|pg_rewind ended after this node was asked for its vote in term/)[0], { timeoutMs: 60_000, intervalMs: 100, what: `${a.name}'s rewind to end without a start as ${p.name}'s standby` });
        await poll(async () => ((await b.query(`SELECT count(*)::int AS n FROM pg_stat_replication WHERE state = 'streaming' AND client_addr = '${a.ip}'`, 2_000).catch(() => []))[0]?.n === 1 ? true : undefined), { timeoutMs: 90_000, intervalMs: 200, what: `${a.name} to stream from ${b.name}` });
        expect(logSince(a, mark, new RegExp(`former primary (rewound \\(pg_rewind\\) onto|follows) ${p.ip.replace(/\./g, "\\.")}:`))).toEqual([]);
      } finally {
        await p.host.heal();
      }
    } finally {
      if (existsSync(gate)) unlinkSync(gate);
    }
  }), 240_000);
});
