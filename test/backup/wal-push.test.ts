// `pgherd backup wal-push` (the archive_command with a repository host): a standby waits for the
// primary's copy of a segment and pushes its own only once promoted or after the wait; a primary
// pushes at once. The repository and the clock are scripted here; the e2e test
// (repo-host.e2e.test.ts) runs it under PostgreSQL against a real repository host.
import { describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, truncateSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { archived, processIo, repoHostOf, walPush, type WalPushIo } from "../../src/backup/wal-push.ts";
import { placeholderText } from "../../src/core/timelines.ts";

const SEG = "000000010000000000000007";
/** pgBackRest's filter for a finished copy of SEG or SEG.partial (any checksum, compressed or not). */
const DONE = `^${SEG}(\\.partial)?-[0-9a-f]{40}(\\.(gz|bz2|lz4|zst))?$`;
const SHA = "0123456789abcdef0123456789abcdef01234567";

function world(o: { standby?: () => boolean; stopping?: () => boolean; repoDown?: boolean; repo?: (t: number) => string[]; ids?: string[]; placeholder?: (path: string) => boolean; past?: boolean } = {}) {
  let t = 0;
  const calls: string[] = [];
  const io: WalPushIo = {
    standby: o.standby ?? (() => true),
    stopping: o.stopping ?? (() => false),
    repoDown: () => o.repoDown ?? false,
    list: (path, filter) => {
      calls.push(`ls ${path} ${filter}`);
      if (path === "archive/main") return (o.ids ?? ["15-1"]).filter((x) => new RegExp(filter).test(x));
      return (o.repo?.(t) ?? []).filter((f) => path.endsWith(f.slice(0, 16)) || !/^[0-9A-F]{24}/.test(f)).filter((f) => new RegExp(filter).test(f));
    },
    push: (path) => {
      calls.push(`push ${path}`);
      return 0;
    },
    sleep: (ms) => {
      t += ms;
    },
    now: () => t,
    say: (l) => calls.push(`say ${l}`),
    placeholder: (path) => o.placeholder?.(path) ?? false,
    pastTimelineEnd: () => o.past ?? false,
  };
  return { io, calls, time: () => t };
}

const args = { bin: "pgbackrest", conf: "/c", stanza: "main", path: `pg_wal/${SEG}`, waitMs: 30_000, pollMs: 1000 };

describe("wal-push", () => {
  test("a primary pushes at once, without looking at the repository", () => {
    const w = world({ standby: () => false });
    expect(walPush(args, w.io)).toBe(0);
    expect(w.calls).toEqual([`push pg_wal/${SEG}`]);
  });

  test("a standby returns once the primary's copy is in the repository, without pushing", () => {
    const w = world({ repo: (t) => (t >= 3000 ? [`${SEG}-0123456789abcdef0123456789abcdef01234567.gz`] : []) });
    expect(walPush(args, w.io)).toBe(0);
    expect(w.calls.filter((c) => c.startsWith("push"))).toEqual([]);
    expect(w.time()).toBe(3000);
    // The segment's own directory (log/seg high part) under the newest archive id.
    expect(w.calls).toContain(`ls archive/main/15-1/0000000100000000 ${DONE}`);
  });

  test("a standby promoted while it waits pushes its copy (the old primary died before archiving it)", () => {
    let promoted = false;
    const w = world({ standby: () => !promoted });
    w.io.sleep = (ms) => {
      promoted = true;
      void ms;
    };
    expect(walPush(args, w.io)).toBe(0);
    expect(w.calls.some((c) => /^say .*promoted while it waited/.test(c))).toBe(true);
    expect(w.calls.at(-1)).toBe(`push pg_wal/${SEG}`);
  });

  test("a standby pushes after the wait when the segment never arrives, and says so", () => {
    const w = world();
    expect(walPush(args, w.io)).toBe(0);
    expect(w.time()).toBe(30_000);
    expect(w.calls.some((c) => /^say .*not in the repository 30 s after/.test(c))).toBe(true);
    expect(w.calls.at(-1)).toBe(`push pg_wal/${SEG}`);
  });

  test("a standby that shuts down pushes at once instead of holding the shutdown", () => {
    const w = world({ stopping: () => true });
    expect(walPush(args, w.io)).toBe(0);
    expect(w.time()).toBe(0);
    expect(w.calls.some((c) => /^say .*this standby shuts down/.test(c))).toBe(true);
    expect(w.calls.at(-1)).toBe(`push pg_wal/${SEG}`);
  });

  test("a server that shuts down while the repository host does not answer: no look, no push, the segment stays ready (a primary and a standby alike)", () => {
    for (const standby of [false, true]) {
      const w = world({ stopping: () => true, repoDown: true, standby: () => standby });
      expect(walPush(args, w.io)).toBe(1);
      expect(w.calls).toEqual([`say pgherd wal-push: the server shuts down and the repository host does not answer: ${SEG} stays ready (pushed after the next start)`]);
    }
    // Running (not shutting down): the repository host's state is not looked at; a push as ever.
    const running = world({ repoDown: true, standby: () => false });
    expect(walPush(args, running.io)).toBe(0);
    expect(running.calls.at(-1)).toBe(`push pg_wal/${SEG}`);
  });

  test("the repository host from pgbackrest.conf", () => {
    expect(repoHostOf("[global]\nrepo1-host=10.0.0.9\nrepo1-host-type=tls\nrepo1-host-port=9000\n")).toEqual({ host: "10.0.0.9", port: 9000 });
    expect(repoHostOf("[global]\nrepo1-host=repo.example\n")).toEqual({ host: "repo.example", port: 8432 });
    expect(repoHostOf("[global]\nrepo1-path=/var/lib/pgbackrest\n")).toBe(null);
  });

  test("a push cut short (pgBackRest's temporary file left behind) is not an archived segment", () => {
    for (const f of [`${SEG}-${SHA}.gz.pgbackrest.tmp`, `${SEG}-${SHA}.pgbackrest.tmp`]) expect(archived(world({ repo: () => [f] }).io, "main", SEG)).toBe(null);
    for (const f of [`${SEG}-${SHA}`, `${SEG}-${SHA}.gz`, `${SEG}-${SHA}.zst`]) expect(archived(world({ repo: () => [f] }).io, "main", SEG)).toBe("whole");
  });

  test("history files are looked up beside the segment directories; other files (a backup label) are pushed at once", () => {
    const w = world({ repo: () => ["00000002.history"] });
    expect(archived(w.io, "main", "00000002.history")).toBe("whole");
    expect(archived(w.io, "main", "00000003.history")).toBe(null);
    const label = world();
    expect(walPush({ ...args, path: `pg_wal/${SEG}.00000028.backup` }, label.io)).toBe(0);
    expect(label.calls).toEqual([`push pg_wal/${SEG}.00000028.backup`]);
  });

  test("the newest archive id (after a stanza upgrade) is the one looked in; none yet: not there", () => {
    const w = world({ ids: ["15-1", "16-2"], repo: () => [`${SEG}-${SHA}`] });
    expect(archived(w.io, "main", SEG)).toBe("whole");
    expect(w.calls).toContain(`ls archive/main/16-2/0000000100000000 ${DONE}`);
    expect(archived(world({ ids: [] }).io, "main", SEG)).toBe(null);
  });
  test("the last segment of an ended timeline: once the repository has it as .partial, a standby returns without pushing", () => {
    const w = world({ repo: (t) => (t >= 2000 ? [`${SEG}.partial-${SHA}.gz`] : []), past: true });
    expect(walPush(args, w.io)).toBe(0);
    expect(w.time()).toBe(2000);
    expect(w.calls.filter((c) => c.startsWith("push"))).toEqual([]);
    expect(w.calls.some((c) => /^say .*ended its timeline and is in the repository as .*\.partial/.test(c))).toBe(true);
  });

  test("a .partial does not stand for a segment this standby's history holds whole: it waits, then pushes its copy", () => {
    // Found by review: a promotion inside the segment was cut off (its node archived the .partial),
    // this node received the whole segment on that timeline and its history goes on through it.
    const w = world({ repo: () => [`${SEG}.partial-${SHA}.gz`], past: false });
    expect(walPush(args, w.io)).toBe(0);
    expect(w.time()).toBe(30_000);
    expect(w.calls).toContain(`push pg_wal/${SEG}`);
  });

  test("a whole copy beside a .partial one counts as whole; a cut-short .partial push does not count", () => {
    expect(archived(world({ repo: () => [`${SEG}.partial-${SHA}`, `${SEG}-${SHA}`] }).io, "main", SEG)).toBe("whole");
    expect(archived(world({ repo: () => [`${SEG}.partial-${SHA}.gz`] }).io, "main", SEG)).toBe("partial");
    expect(archived(world({ repo: () => [`${SEG}.partial-${SHA}.gz.pgbackrest.tmp`] }).io, "main", SEG)).toBe(null);
    // Another segment's .partial is not this one's.
    expect(archived(world({ repo: () => [`000000010000000000000006.partial-${SHA}`] }).io, "main", SEG)).toBe(null);
  });

  test("a placeholder history file (core/timelines.ts) is pushed unless the repository holds that timeline's history file already", () => {
    const h = { ...args, path: "pg_wal/00000003.history" };
    const mine = world({ standby: () => false, placeholder: () => true });
    expect(walPush(h, mine.io)).toBe(0);
    expect(mine.calls.filter((c) => c.startsWith("push"))).toEqual(["push pg_wal/00000003.history"]);
    const taken = world({ standby: () => false, placeholder: () => true, repo: () => ["00000003.history"] });
    expect(walPush(h, taken.io)).toBe(0);
    expect(taken.calls.filter((c) => c.startsWith("push"))).toEqual([]);
    expect(taken.calls.at(-1)).toMatch(/placeholder and the repository has/);
    // a real history file goes as before: pushed by the primary
    const real = world({ standby: () => false, repo: () => ["00000003.history"] });
    expect(walPush(h, real.io)).toBe(0);
    expect(real.calls).toEqual(["push pg_wal/00000003.history"]);
  });

  test("without a repository host (direct) a standby pushes at once, without looking at the repository", () => {
    const w = world({ repo: () => [`${SEG}-${SHA}`] });
    expect(walPush({ ...args, direct: true }, w.io)).toBe(0);
    expect(w.calls).toEqual([`push pg_wal/${SEG}`]);
  });

  test("a copy past the end of its timeline in this node's history (a rewound former primary's) is not pushed once the repository has the segment or its .partial; pushed when it has neither", () => {
    for (const direct of [true, false]) {
      for (const [repo, says] of [[[`${SEG}-${SHA}.gz`], "that segment"], [[`${SEG}.partial-${SHA}.gz`], `${SEG}.partial`]] as const) {
        const w = world({ standby: () => false, past: true, repo: () => [...repo] });
        expect(walPush({ ...args, direct }, w.io)).toBe(0);
        expect(w.calls.filter((c) => c.startsWith("push"))).toEqual([]);
        expect(w.calls.at(-1)).toContain(`runs past the end of its timeline in this node's history and the repository has ${says}: done without pushing`);
      }
      const none = world({ standby: () => false, past: true });
      expect(walPush({ ...args, direct }, none.io)).toBe(0);
      expect(none.calls.at(-1)).toBe(`push pg_wal/${SEG}`);
    }
    // a copy within the history is pushed even when the repository has the segment: a different one is refused, loudly
    const within = world({ standby: () => false, repo: () => [`${SEG}-${SHA}`] });
    expect(walPush({ ...args, direct: true }, within.io)).toBe(0);
    expect(within.calls).toEqual([`push pg_wal/${SEG}`]);
  });

  test("a promotion's .partial copy past the end of its timeline (a second promotion inside the same segment) is not pushed once the repository has that segment's .partial or the segment", () => {
    const partial = { ...args, path: `pg_wal/${SEG}.partial`, direct: true };
    for (const repo of [[`${SEG}.partial-${SHA}.gz`], [`${SEG}-${SHA}`]]) {
      const w = world({ standby: () => false, past: true, repo: () => repo });
      expect(walPush(partial, w.io)).toBe(0);
      expect(w.calls.filter((c) => c.startsWith("push"))).toEqual([]);
      expect(w.calls.at(-1)).toContain(`${SEG}.partial runs past the end of its timeline in this node's history`);
    }
    const none = world({ standby: () => false, past: true });
    expect(walPush(partial, none.io)).toBe(0);
    expect(none.calls).toContain(`push pg_wal/${SEG}.partial`);
  });
});

describe("processIo: this node's history, read from pg_wal", () => {
  test("the newest real history file decides (placeholders skipped); none, or one cut short, says nothing is past an end", () => {
    const root = mkdtempSync(join(tmpdir(), "pgherd-walio-"));
    try {
      const wal = join(root, "pg_wal");
      mkdirSync(wal);
      const seg = (name: string) => {
        const f = join(wal, name);
        writeFileSync(f, "");
        truncateSync(f, 16 * 1024 * 1024); // sparse: the segment size is the file's
        return f;
      };
      const past = (f: string) => processIo({ bin: "pgbackrest", conf: "/c", stanza: "main" }).pastTimelineEnd(f);
      const s4 = seg("000000010000000000000004");
      const s5 = seg("000000010000000000000005");
      const p5 = seg("000000010000000000000005.partial");
      const own = seg("000000020000000000000005");
      expect([past(s4), past(s5), past(p5)]).toEqual([false, false, false]); // no history file: timeline 1
      writeFileSync(join(wal, "00000002.history"), "1\t0/5000100\tno recovery target specified\n");
      expect([past(s4), past(s5), past(p5), past(own)]).toEqual([false, true, true, false]);
      writeFileSync(join(wal, "00000003.history"), placeholderText(3, 9)); // a placeholder above: not this node's history
      expect([past(s4), past(s5), past(own)]).toEqual([false, true, false]);
      writeFileSync(join(wal, "00000004.history"), ""); // a real one cut short
      expect([past(s4), past(s5), past(own)]).toEqual([false, false, false]);
      expect(past(join(wal, "000000010000000000000006"))).toBe(false); // unreadable: pushed as any segment
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
});

describe("processIo: the push through the shared repository's lock", () => {
  test("two pushes of one segment never run at once: each holds the lock file (flock) while pgBackRest runs", async () => {
    // Found by review: without a repository host every node pushed each segment at the same moment,
    // and two archive-push of one segment write the same temporary file in the repository.
    const root = mkdtempSync(join(tmpdir(), "pgherd-walock-"));
    try {
      const lock = join(root, "pgherd-archive-push-main.lock");
      const log = join(root, "runs");
      // A stand-in for pgbackrest: inside, it waits for another run to come in too (up to `cap` tenths
      // of a second) and notes whether one did. With the lock none can: each waits its cap. Without
      // it the runs wait for each other (a cap no start-up comes near; one seen ends every wait), so the
      // control below cannot miss an overlap however late a run starts (before, a 0.4 s window: missed
      // once in CI).
      const fake = join(root, "pgbackrest");
      const inside = `ls "${root}" | grep -c '^inside\\.'`;
      writeFileSync(fake, `#!/bin/sh\ntouch "${root}/inside.$$"\ncap=$(cat "${root}/cap")\ni=0\nwhile [ $(${inside}) -lt 2 ] && [ $i -lt $cap ] && ! grep -qs overlap "${log}"; do sleep 0.1; i=$((i+1)); done\nif [ $(${inside}) -ge 2 ]; then echo overlap >> "${log}"; fi\nrm -f "${root}/inside.$$"\necho run >> "${log}"\n`, { mode: 0o755 });
      const cap = join(root, "cap");
      const script = join(root, "push.ts");
      writeFileSync(script, `import { processIo } from ${JSON.stringify(join(import.meta.dir, "../../src/backup/wal-push.ts"))};\nprocess.exit(processIo({ bin: ${JSON.stringify(fake)}, conf: "/c", stanza: "main", lock: process.argv[2] || undefined }).push("pg_wal/${SEG}"));\n`);
      const run = (withLock: boolean) => Promise.all([0, 1, 2].map(() => Bun.spawn([process.execPath, script, withLock ? lock : ""], { stdout: "ignore", stderr: "inherit" }).exited));
      writeFileSync(cap, "10");
      expect(await run(true)).toEqual([0, 0, 0]);
      expect(readFileSync(log, "utf8").trim().split("\n")).toEqual(["run", "run", "run"]);
      rmSync(log);
      writeFileSync(cap, "300");
      await run(false); // the check can fail: without the lock the runs overlap
      expect(readFileSync(log, "utf8")).toContain("overlap");
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  }, 30_000);
});
