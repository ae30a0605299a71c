// The archive_command with [backup] tool = "pgbackrest": `pgherd backup wal-push`.
//
// With a repository host ([backup] repo_host):
// pgBackRest's server on the repository host takes the stanza's archive lock for every
// archive-push it serves, and a second push that arrives meanwhile fails (LockAcquireError: a
// failed archive_command). The lock is right (two writers of one segment file would race), so
// only one node may push at a time: the primary. Every node still runs archive_mode = always, so
// a standby keeps each segment it received until it is archived (.ready), and its archive_command
// waits instead of pushing: it returns once the segment is in the repository (the primary pushed
// it), and pushes it itself only when it was promoted meanwhile (standby.signal is gone) or the
// segment is still missing after `waitMs` (the primary died before archiving it, or cannot reach
// the repository host) or the server shuts down (a waiting archiver would hold the shutdown). So the archive stays continuous across a crash and a switchover, and the
// repository host sees one push per segment in normal operation.
//
// The last segment of a timeline that ended with a promotion never arrives under its own name: the
// promoted node archives it as <name>.partial (PostgreSQL renames it at the end of recovery), while
// a standby that followed the promotion on its stream completed that segment at the switch point
// and holds it as .ready. Once the repository has <name>.partial, the WAL of that timeline up to the
// switch is archived, and the standby's copy has nothing the cluster's history still needs (any WAL
// past the switch point was never part of it), so wal-push returns without pushing: the same content
// a PostgreSQL setup without archive_mode = always leaves in the repository, and still one pusher.
//
// Without a repository host every node pushes each segment itself (--direct): pgBackRest accepts a
// copy of a segment it holds with the same checksum, so the copies of the other nodes are harmless
// once written. Not while written: two pushes of one segment at once write the same temporary file
// in the shared repository (pgBackRest opens it with O_TRUNC, not O_EXCL, and a local archive-push
// takes no lock), and one that renames it into place while the other truncates and rewrites it
// leaves a broken segment under a name the next push takes as there. So each push holds an exclusive
// lock on a file in the repository (--lock, `flock`, which NFS carries between clients): the pushes
// of one segment by the primary and its standbys go one after the other.
//
// In both modes, a copy that runs past the end of its timeline in this node's history is not pushed
// once the repository holds that segment or its .partial (core/wal-history.ts): a former primary
// rewound after a crash keeps its own copy of the segment the switch fell in marked ready, with WAL
// the cluster's history does not have, and pgBackRest refuses it ("different checksum"); PostgreSQL
// would retry it forever and archive nothing after it. The repository's copy holds that timeline's
// WAL up to the switch, the same as this node's. A different copy of a segment that is wholly in the
// history is still refused: that is two histories, and the archiver says so.
//
// PostgreSQL runs it as the OS user, in the data directory, with %p (pg_wal/<name>). Its pgbackrest
// and flock children are not run through caps.ts: the agent starts PostgreSQL without its ambient
// capabilities, so archive_command has none to pass on (an extra /proc read per segment for nothing).
import { spawnSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { isPlaceholder } from "../core/timelines.ts";
import { historyEnds, pastTimelineEnd } from "../core/wal-history.ts";
import { serverStopping } from "./stuck-push.ts";

export interface WalPushArgs {
  /** pgbackrest binary, this node's pgbackrest.conf, the stanza. */
  bin: string;
  conf: string;
  stanza: string;
  /** %p: the segment's path relative to the data directory. */
  path: string;
  /** How long a standby waits for the primary's copy before it pushes the segment itself. */
  waitMs: number;
  /** No repository host: this node pushes at once, primary or standby (no wait for the primary's copy). */
  direct?: boolean;
  /** Between two looks at the repository. */
  pollMs?: number;
  /** A file in the shared repository every node's push holds locked (flock) while it runs. */
  lock?: string;
}

export interface WalPushIo {
  /** True while this node is a standby (the data directory has standby.signal). */
  standby(): boolean;
  /** True once the server shuts down (postmaster.pid says "stopping"): a waiting archiver would hold the shutdown. */
  stopping(): boolean;
  /** The repository host takes no connection (looked at only while the server shuts down). */
  repoDown(): boolean;
  /** `pgbackrest repo-ls <path> --filter=<re>`: the names, or null when it failed. */
  list(path: string, filter: string): string[] | null;
  /** `pgbackrest archive-push <path>` with PostgreSQL's stdout/stderr: its exit code. */
  push(path: string): number;
  /** The file at `path` is one of pgherd's placeholder history files (core/timelines.ts). */
  placeholder(path: string): boolean;
  /** The WAL segment (or .partial copy of one) at `path` runs past the end of its timeline in this node's history (core/wal-history.ts). */
  pastTimelineEnd(path: string): boolean;
  sleep(ms: number): void;
  now(): number;
  say(line: string): void;
}

const WAL = /^[0-9A-F]{24}$/;
/** util-linux's flock(1), on every Debian system. */
const FLOCK = existsSync("/usr/bin/flock") ? "/usr/bin/flock" : "flock";
const HISTORY = /^[0-9A-F]{8}\.history$/;
const PARTIAL = /^([0-9A-F]{24})\.partial$/;

/** The archive id pgBackRest files current segments under (e.g. 15-1): the newest one. */
function archiveId(io: WalPushIo, stanza: string): string | null {
  const ids = io.list(`archive/${stanza}`, "^[0-9]+-[0-9]+$");
  if (!ids?.length) return null;
  return ids.map((s) => s.trim()).filter(Boolean).sort((a, b) => Number(a.split("-")[1]) - Number(b.split("-")[1])).at(-1) ?? null;
}

/**
 * How the repository has `name`: "whole" (a segment under any checksum, or a timeline history file),
 * "partial" (only <name>.partial: the segment ended a timeline, archived by the node promoted there),
 * or null.
 */
export function archived(io: WalPushIo, stanza: string, name: string): "whole" | "partial" | null {
  const id = archiveId(io, stanza);
  if (!id) return null;
  if (WAL.test(name)) {
    // The finished file only: pgBackRest writes <name>[.partial]-<sha1>[.ext].pgbackrest.tmp first and
    // renames it when complete, and a push cut short leaves that temporary file behind.
    const files = io.list(`archive/${stanza}/${id}/${name.slice(0, 16)}`, `^${name}(\\.partial)?-[0-9a-f]{40}(\\.(gz|bz2|lz4|zst))?$`) ?? [];
    if (files.some((f) => f.startsWith(`${name}-`))) return "whole";
    return files.length ? "partial" : null;
  }
  if (HISTORY.test(name)) return io.list(`archive/${stanza}/${id}`, `^${name.replace(".", "\\.")}$`)?.length ? "whole" : null;
  return null;
}

/** The exit code for PostgreSQL: 0 once the segment is archived (by the primary or by this node). */
export function walPush(a: WalPushArgs, io: WalPushIo): number {
  const name = basename(a.path);
  // A shutdown waits for the archiver's last round, three tries per segment: against a repository
  // host that does not answer each would take pgBackRest's 2 x io-timeout (20 s), and a switchover's
  // stop of the old primary ran out of its 60 s. The segment stays ready: this node pushes it after
  // its next start (or, as a standby then, finds the new primary's copy), and every standby has it.
  if (!a.direct && io.stopping() && io.repoDown()) {
    io.say(`pgherd wal-push: the server shuts down and the repository host does not answer: ${name} stays ready (pushed after the next start)`);
    return 1;
  }
  // A placeholder for a timeline number another leader's promotion took (core/timelines.ts): when
  // that promotion's real history file reached the repository, it is the one to keep.
  if (HISTORY.test(name) && io.placeholder(a.path) && archived(io, a.stanza, name) === "whole") {
    io.say(`pgherd wal-push: ${name} is a placeholder and the repository has that timeline's history file: done without a push`);
    return 0;
  }
  // A segment, or the .partial copy a promotion leaves of the segment its switch fell in: a second
  // promotion from the same timeline inside the same segment (one cut off, then another) leaves a
  // second, different .partial, which pgBackRest refuses as well.
  const segment = WAL.test(name) ? name : PARTIAL.exec(name)?.[1];
  if (segment && io.pastTimelineEnd(a.path)) {
    const there = archived(io, a.stanza, segment);
    if (there) {
      io.say(`pgherd wal-push: ${name} runs past the end of its timeline in this node's history and the repository has ${there === "whole" ? "that segment" : `${segment}.partial`}: done without pushing this node's copy (the history goes on in the next timeline's copy of this segment)`);
      return 0;
    }
  }
  const end = io.now() + a.waitMs;
  // Only WAL segments and history files can arrive from the primary; anything else is this node's own.
  const mayArrive = !a.direct && (WAL.test(name) || HISTORY.test(name));
  let waited = false;
  while (mayArrive && io.standby()) {
    // A shutdown waits for the archiver: no look at the repository then (it may be unreachable);
    // pushing a segment the repository already has with the same checksum succeeds.
    if (io.stopping()) {
      io.say(`pgherd wal-push: this standby shuts down: pushing its copy of ${name}`);
      break;
    }
    const there = archived(io, a.stanza, name);
    if (there === "whole") return 0;
    // The .partial of a promotion counts only where this node's history ends the timeline inside
    // this segment (its history file may arrive while it waits): a node whose history goes on
    // through the whole segment (a promotion there was cut off, another came later) has WAL the
    // .partial lacks, and the archive needs its copy.
    if (there === "partial" && io.pastTimelineEnd(a.path)) {
      io.say(`pgherd wal-push: ${name} ended its timeline and is in the repository as ${name}.partial (archived by the node promoted there): done without a push`);
      return 0;
    }
    waited = true;
    if (io.now() >= end) {
      io.say(`pgherd wal-push: ${name} is not in the repository ${Math.round(a.waitMs / 1000)} s after this standby completed it: pushing this standby's copy`);
      break;
    }
    io.sleep(a.pollMs ?? 1000);
  }
  if (waited && !io.standby()) io.say(`pgherd wal-push: ${name} is not in the repository and this node was promoted while it waited: pushing its copy`);
  return io.push(a.path);
}

/** The real thing: pgbackrest as the current user (PostgreSQL's), quiet checks, the push's output to PostgreSQL's log. */
export function processIo(a: Pick<WalPushArgs, "bin" | "conf" | "stanza" | "lock">, repoDown = false): WalPushIo {
  const base = [`--config=${a.conf}`, `--stanza=${a.stanza}`];
  return {
    standby: () => existsSync("standby.signal"),
    stopping: () => serverStopping("."),
    repoDown: () => repoDown,
    list: (path, filter) => {
      const r = spawnSync(a.bin, ["repo-ls", ...base, "--log-level-file=off", "--log-level-console=off", "--log-level-stderr=off", `--filter=${filter}`, path], { encoding: "utf8", timeout: 10_000, stdio: ["ignore", "pipe", "pipe"] });
      return r.status === 0 ? r.stdout.split("\n").filter(Boolean) : null;
    },
    push: (path) => {
      const push = [a.bin, "archive-push", ...base, path];
      // Waits up to 10 minutes for another node's push (a host that died holding it on NFS: until its lock lease ends).
      const argv = a.lock ? [FLOCK, "-w", "600", a.lock, ...push] : push;
      return spawnSync(argv[0]!, argv.slice(1), { stdio: ["ignore", "inherit", "inherit"], timeout: 3600_000 }).status ?? 1;
    },
    placeholder: (path) => {
      try {
        return isPlaceholder(readFileSync(path, "utf8").slice(0, 200));
      } catch {
        return false;
      }
    },
    pastTimelineEnd: (path) => {
      try {
        // This node's timeline: its newest real history file in pg_wal (none: timeline 1).
        const wal = dirname(path);
        let timeline = 1;
        let ends: Map<number, bigint> | null = new Map();
        for (const f of readdirSync(wal).filter((x) => HISTORY.test(x)).sort().reverse()) {
          const text = readFileSync(join(wal, f), "utf8");
          if (isPlaceholder(text)) continue;
          timeline = parseInt(f.slice(0, 8), 16);
          ends = historyEnds(text);
          break;
        }
        return ends !== null && pastTimelineEnd(basename(path).replace(/\.partial$/, ""), statSync(path).size, timeline, ends);
      } catch {
        return false; // unreadable: pushed as any segment (pgBackRest refuses a different copy)
      }
    },
    sleep: (ms) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms),
    now: () => performance.now(),
    say: (line) => process.stderr.write(`${line}\n`),
  };
}

/** The repository host and port this node's pgbackrest.conf names (repo1-host, repo1-host-port), or null (a repository path). */
export function repoHostOf(confText: string): { host: string; port: number } | null {
  const host = /^repo1-host=(.+)$/m.exec(confText)?.[1]?.trim();
  if (!host) return null;
  const port = Number(/^repo1-host-port=(\d+)$/m.exec(confText)?.[1] ?? 8432);
  return { host, port };
}

