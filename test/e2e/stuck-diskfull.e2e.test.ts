// A primary whose disk fills up while clients write (issue 11): each node's directory (data dir,
// server log) is a 256 MB tmpfs, the state directory stays on the root file system (bind mount),
// and the primary's is filled to the last byte while the writer runs. The leader must see "disk
// full" (statfs of the data directory), resign to a standby and not loop restarting in place: a
// standby writable within the 5 s target, 0 acknowledged writes lost, the reason in `cluster ls`,
// /primary 503 on the full node; once the space is freed the old primary rejoins as a standby.
import { expect, test } from "bun:test";
import { copyFileSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync, chownSync, openSync, writeSync, closeSync, statfsSync } from "node:fs";
import { join } from "node:path";
import { loadConfig } from "../../src/config/load.ts";
import { lookupOsUser } from "../../src/postgres/users.ts";
import { type ClusterNode, PgCluster } from "../helpers/cluster.ts";
import { describeCluster } from "../helpers/describe-cluster.ts";
import { waitGuarantee } from "../helpers/durability.ts";
import { mustRun, onExitCleanup, run, waitFor } from "../helpers/proc.ts";
import { API_TOKEN, boundsOf, describeAnalysis, faultRound, logMark, logSince, pgherd, rejoinPath, secs, Writer } from "../helpers/writer.ts";
import { healthCode, TARGET_MS } from "./stuck-helpers.ts";

const SIZE = "256m";

/** Mount a tmpfs over the node's directory (its files copied in) and keep its state dir outside it. */
async function smallDisk(n: ClusterNode, outside: string): Promise<string[]> {
  const u = await lookupOsUser("postgres");
  const toml = readFileSync(n.configPath);
  const state = join(outside, n.name);
  mkdirSync(state, { recursive: true, mode: 0o700 });
  chownSync(state, u.uid, u.gid); // the agent runs as postgres (test/helpers/cluster.ts)
  await mustRun(["mount", "-t", "tmpfs", "-o", `size=${SIZE},mode=0755,uid=${u.uid},gid=${u.gid}`, `pgherd-${n.name}`, n.dir]);
  writeFileSync(n.configPath, toml, { mode: 0o600 });
  chownSync(n.configPath, u.uid, u.gid);
  mkdirSync(n.dataDir, { mode: 0o700 });
  chownSync(n.dataDir, u.uid, u.gid);
  mkdirSync(n.stateDir, { mode: 0o700 });
  await mustRun(["mount", "--bind", state, n.stateDir]);
  return [n.stateDir, n.dir];
}

const freeBytes = (dir: string) => {
  const s = statfsSync(dir);
  return s.bavail * s.bsize;
};

/** Write zeros into `file` until the file system has no more than `leave` bytes left; the bytes written. */
function fill(file: string, leave = 0): number {
  const fd = openSync(file, "w");
  const buf = Buffer.alloc(1024 * 1024);
  let n = 0;
  try {
    for (let chunk = buf; chunk.length > 0 && (leave === 0 || freeBytes(file) > leave);) {
      if (leave > 0) chunk = chunk.subarray(0, Math.min(chunk.length, freeBytes(file) - leave));
      try {
        n += writeSync(fd, chunk);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== "ENOSPC") throw e;
        chunk = chunk.subarray(0, chunk.length >> 1); // the last pages, down to one byte
      }
    }
  } finally {
    closeSync(fd);
  }
  return n;
}

describeCluster("stuck primary: disk full", {
  start: async () => {
    const c = await PgCluster.create({ test: "stuck-diskfull", tag: "sfull", nodes: 3, defaults: { extra: { api: { token: API_TOKEN }, rejoin: { clone_max_rate_kb: 102400 } } } });
    const mounts: string[] = [];
    const unmount = () => { for (const m of mounts.splice(0)) Bun.spawnSync(["umount", "-l", m]); };
    const unregister = onExitCleanup(unmount);
    try {
      for (const n of c.nodes) mounts.push(...(await smallDisk(n, join(c.scratch, "state-outside"))));
      await Promise.all(c.nodes.map((n) => n.start()));
      const healthy = await c.diagnose(() => c.waitHealthy(90_000));
      await new Writer([]).prepare(healthy.primary);
      const cfg = loadConfig(c.nodes[0]!.configPath);
      return { c, healthy, cfg, bounds: boundsOf(cfg), mounts, unmount, unregister };
    } catch (e) {
      await c.stopAgents().catch(() => {});
      for (const n of c.nodes) if (n.postmasterPid() !== null) await n.pgCtl("stop", "-m", "immediate", "-w").catch(() => {});
      unmount();
      unregister();
      await c.destroy().catch(() => {});
      throw e;
    }
  },
  ready: async ({ c }) => console.log(`durability: ${await waitGuarantee(c.nodes[0]!, /^quorum: zero-loss/, 30_000)}`),
  beforeDestroy: async (fx) => {
    // Servers down and logs saved before the tmpfs goes (destroy() would find nothing to stop then).
    if (!fx.c) return;
    await fx.c.stopAgents().catch(() => {});
    for (const n of fx.c.nodes) {
      if (n.postmasterPid() !== null) await n.pgCtl("stop", "-m", "immediate", "-w", "-t", "30").catch(() => {});
      try {
        for (const f of readdirSync(n.dir).filter((x) => x.endsWith(".log"))) copyFileSync(join(n.dir, f), join(fx.c.artifacts, `${n.name}-${f}`));
      } catch { /* best effort */ }
    }
    for (const m of fx.mounts ?? []) await run(["umount", m]);
    fx.mounts?.splice(0);
    fx.unregister?.();
  },
}, (fx) => {
  test("the primary's disk fills while a writer runs: a standby takes over within the target, the status says why, 0 lost; once space is freed the old primary rejoins", () => fx.c.diagnose(async () => {
    let mark = 0;
    let filler = "";
    let seen503: number | null = null;
    let note = "";
    let at = 0;
    const r = await faultRound(fx.c, {
      label: "disk full", expect: "other",
      inject: async (p) => {
        mark = logMark(p);
        filler = join(p.dir, "filler");
        at = performance.now();
        const n = fill(filler);
        const s = statfsSync(p.dir);
        console.log(`filled ${p.dir} with ${(n / 2 ** 20).toFixed(1)} MB in ${secs(performance.now() - at)}; ${s.bavail * s.bsize} bytes left`);
        await waitFor(async () => (await healthCode(p, "/primary")) === 503, { timeoutMs: 10_000, intervalMs: 100, what: `${p.name}: /primary 503` });
        seen503 = performance.now() - at;
      },
      restore: async (old) => {
        // The status says why, on the node itself and in the cluster view.
        const ls = await waitFor(async () => {
          const v = await old.clusterLs();
          const row = v.view.members.find((m) => m.name === old.name);
          return row && row.state === "disk-full" && /disk-full/.test(row.note) ? row.note : undefined;
        }, { timeoutMs: 15_000, intervalMs: 250, what: `cluster ls to say ${old.name}'s disk is full (STATE disk-full, the reason in NOTE)` });
        note = ls;
        rmSync(filler, { force: true });
      },
      healMs: 180_000,
    });
    const a = r.analysis;
    console.log(`${describeAnalysis(`${r.label} (${r.old.name} -> ${r.neu.name})`, a, r.lost)}; /primary 503 ${secs(seen503)} after the fill began; healthy again ${secs(r.healMs)} after the space was freed`);
    console.log(`FIGURE disk full -> new primary writable: ${secs(a.recoveryMs)} (target ${secs(TARGET_MS)})`);
    console.log(`cluster ls note of ${r.old.name}: ${note}`);
    const decisions = logSince(r.old, mark, /decision: resign|PostgreSQL cannot do its work|pg_ctl start exited/);
    console.log(decisions.slice(0, 6).map((l) => l.slice(0, 240)).join("\n"));
    expect(r.neu).not.toBe(r.old);
    expect(a.recoveryMs ?? Infinity).toBeLessThanOrEqual(TARGET_MS);
    expect(a.splitBrain).toEqual([]);
    expect(r.lost).toEqual([]);
    expect(note).toMatch(/disk-full.*free of 256\.0 MB/);
    expect(decisions.some((l) => /decision: resign \((PostgreSQL disk-full|PostgreSQL stopped and its disk is full|PostgreSQL cannot-write)/.test(l))).toBe(true);
    // No restart loop: at most one start of the full server was tried.
    expect(decisions.filter((l) => /pg_ctl start exited [^0]/.test(l)).length).toBeLessThanOrEqual(1);
    const path = rejoinPath(r.old, mark);
    console.log(`old primary rejoin: ${path.decisions.join(" | ")}; ${path.rewinds.join(", ")}`);
    expect(path.decisions[0]).toMatch(/^(rewind|clone)/);
    expect(at).toBeGreaterThan(0);
  }), 400_000);

  test("a standby with no room for a clone: rejoin --force-clone fails naming the room before writing anything, and the standby streams again; asked again while short it refuses at once; once space is freed it is cloned", () => fx.c.diagnose(async () => {
    const h = await fx.c.waitHealthy(90_000);
    // A standby without a former primary's copy beside it (kept until a clone's server runs): the room freed below is all the clone's.
    const s = h.standbys.find((n) => !readdirSync(n.dir).some((f) => f.includes(".pgherd-old-"))) ?? h.standbys[0]!;
    const filler = join(s.dir, "filler");
    const leave = 48 * 2 ** 20;
    fill(filler, leave);
    const mark = logMark(s);
    const streaming = async () => {
      const [row] = await s.query("select status from pg_stat_wal_receiver").catch(() => []);
      return row?.status === "streaming";
    };
    try {
      // The least free space while the refused clone is tried: sized by this node's own copy of the
      // database, it is refused before anything is written.
      let least = freeBytes(s.dir);
      let sampling = true;
      const sampler = (async () => {
        while (sampling) {
          least = Math.min(least, freeBytes(s.dir));
          await Bun.sleep(10);
        }
      })();
      const r = await pgherd(s, ["rejoin", "--force-clone"]).finally(async () => {
        sampling = false;
        await sampler;
      });
      console.log(`pgherd rejoin --force-clone on ${s.name} with ${(leave / 2 ** 20).toFixed(1)} MB free (at least ${(least / 2 ** 20).toFixed(1)} MB free meanwhile):\n  ${r.text.split("\n").join("\n  ")}`);
      expect(r.code).not.toBe(0);
      expect(r.text).toMatch(/rejoin failed: no room for a clone of the primary, as large as this node's own data directory \(\d+\.\d MB\): it needs \d+\.\d MB free on the file system of \S+ .*which has (4[0-9]|50)\.\d MB of 256\.0 MB.*\(not retried: run pgherd rejoin again once it can succeed\)$/);
      expect(logSince(s, mark, /pg_basebackup (killed|exited)/)).toEqual([]);
      // Nothing of a clone was written (the server's log and its shutdown checkpoint may take a little).
      expect(least).toBeGreaterThan(leave - 4 * 2 ** 20);
      expect(readdirSync(s.dir).filter((f) => f.includes(".pgherd-clone"))).toEqual([]);
      // Not kept down: the request is dropped and the standby streams on from its own data.
      await waitFor(streaming, { timeoutMs: 60_000, intervalMs: 250, what: `${s.name} streaming again after the refused clone` });
      // Asked again while the room is short: refused at once from the need already known, the server
      // left running, no second base backup on the primary.
      const again = await pgherd(s, ["rejoin", "--force-clone"]);
      console.log(`again: ${again.text.split("\n").at(-1)}`);
      expect(again.code).not.toBe(0);
      expect(again.text).toContain("the room here is still short");
      expect(logSince(s, mark, /pg_basebackup (killed|exited)/)).toEqual([]);
      // Neither refusal stopped the server: the room is checked before it stops.
      expect(logSince(s, mark, /pg_ctl stop exited/)).toEqual([]);
      expect(await streaming()).toBe(true);
    } finally {
      rmSync(filler, { force: true });
    }
    // Space freed: the next request asks the primary again, clones at the rate this suite sets
    // (rejoin.clone_max_rate_kb, pg_basebackup --max-rate), and the standby streams.
    const ok = await pgherd(s, ["rejoin", "--force-clone"]);
    console.log(`after freeing: ${ok.text.split("\n").at(-1)}`);
    expect(ok.text.split("\n").at(-1)).toBe("rejoined: streaming from the primary");
    expect(logSince(s, mark, /clone complete in/)).toHaveLength(1);
    expect(logSince(s, mark, /cloning from the primary at \S+ into \S+ at most 102400 kB\/s \(rejoin\.clone_max_rate_kb\)/)).toHaveLength(1);
    // Both estimates were checked: this node's own data directory's, then pg_basebackup's.
    expect(logSince(s, mark, /room for a clone of the primary, as large as this node's own data directory \(\d+\.\d MB\): \d+\.\d MB needed/)).toHaveLength(1);
    expect(logSince(s, mark, /room for a clone of the primary at \S+ \(\d+\.\d MB\): \d+\.\d MB needed/)).toHaveLength(1);
    await fx.c.waitHealthy(60_000);
  }), 240_000);
});
