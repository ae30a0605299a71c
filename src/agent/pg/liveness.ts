// The shell of the liveness verdict (core/liveness.ts): each round it gathers the observations
// beside the round's own probe, every one under a deadline, and keeps the verdict. It watches
// only while this node leads with a running server (the leader is the one that acts on it); disk
// space is measured on every node for the report.
import { type Attempt, broken, diskWarning, frozenLongEnough, initialLiveness, LIVENESS_DEFAULTS, type DiskUse, type Liveness, type LivenessObs, type LivenessThresholds, stepLiveness, type Verdict } from "../../core/liveness.ts";
import type { PgReport } from "../../core/report.ts";
import { diskUse, freshCheck, postmasterOf, stoppedStateOf, walWrittenAt } from "../../postgres/liveness-obs.ts";
import { osUidOf, type Probe } from "../../postgres/index.ts";
import type { PgHost } from "./host.ts";

/** Deadline of the fresh connection's SELECT 1 and of the heartbeat commit, each. */
export const FRESH_DEADLINE_MS = 1500;
/** Deadline of the round's probe on the persistent connection while this node leads. */
export const LEADER_PROBE_MS = 2000;
/** How often the processes' state is sampled while a watched round's attempts are pending. */
const SAMPLE_MS = 100;

/** What a round reads besides its probe (the real ones by default; a test passes its own). */
export interface LivenessSources {
  /** Read once a round; the samples then read /proc alone (no file of the data directory, whose disk may hang). */
  postmaster: typeof postmasterOf;
  stopped: typeof stoppedStateOf;
  fresh: typeof freshCheck;
  disks: typeof diskUse;
  wal: typeof walWrittenAt;
}
const REAL: LivenessSources = { postmaster: postmasterOf, stopped: stoppedStateOf, fresh: freshCheck, disks: diskUse, wal: walWrittenAt };

export class LivenessWatch {
  private state: Liveness | null = null;
  private disks: DiskUse[] = [];
  private lastLogged: Verdict["state"] = "ok";
  private lastBusyLog = -Infinity;
  /** The verdict's since as wall time, computed once per verdict. */
  private sinceWall: { mono: number; iso: string } | null = null;

  /** The defaults with pgherd.toml's [liveness] durations. */
  private readonly t: LivenessThresholds;

  constructor(private readonly h: Pick<PgHost, "node" | "clock" | "socketDir" | "cfg" | "log">, private readonly src: LivenessSources = REAL) {
    const l = h.cfg.liveness;
    // Not frozenMs: a round samples a whole-server freeze for that long, and a round stays within
    // about 3.5 s whatever the server does (docs/design.md); a freeze is not slow storage either.
    this.t = { ...LIVENESS_DEFAULTS, stuckMs: l.stuck_ms, cannotWriteMs: l.cannot_write_ms, diskFullMs: l.disk_full_ms };
  }

  /** Run the round's probe; while `watch`, beside a fresh connection (and the heartbeat commit when `write`). */
  async observe(watch: boolean, write: boolean, probeFn: (timeoutMs?: number) => Promise<Probe>): Promise<Probe> {
    const h = this.h;
    const dir = h.node.dataDir;
    this.disks = this.src.disks(dir);
    if (!watch) {
      this.state = null;
      return probeFn();
    }
    const now = () => h.clock.now();
    const pm = this.src.postmaster(dir, await osUidOf(h.node.osUser));
    const seen = new Sightings(() => this.src.stopped(pm), now);
    const startedAt = seen.sample(); // the round's first sighting is at startedAt (frozenSinceOf carries the last round's over)
    const prev = this.state ?? initialLiveness(startedAt);
    // Filled in as each attempt ends: a round ended by a freeze reads what answered by then.
    const got: { answeredAt: number | null; probe: Probe | null; fresh: Attempt | null; write: Attempt | null } = { answeredAt: null, probe: null, fresh: null, write: null };
    const heard = (a: Attempt | null | undefined) => {
      if (a && a.kind !== "timeout") got.answeredAt = now();
    };
    const attempts = Promise.all([
      probeFn(LEADER_PROBE_MS).then((p) => {
        if (p.up) got.answeredAt = now();
        got.probe = p;
      }),
      this.src.fresh({ socketDir: h.socketDir, port: h.cfg.postgres.port, superuser: h.cfg.postgres.superuser }, write, FRESH_DEADLINE_MS, (step) => {
        heard(step.fresh ?? step.write);
        if (step.fresh) got.fresh = step.fresh;
        if (step.write) got.write = step.write;
      }).then((fc) => {
        if (got.fresh === null) heard(fc.fresh ?? fc.write);
        got.fresh = fc.fresh;
        got.write = fc.write;
      }),
    ]);
    // The whole server frozen while the attempts run is seen when it begins, and the round ends once
    // that has lasted frozenMs with nothing answered since (frozenLongEnough): the attempts' own
    // deadlines (the probe's 2 s, the fresh connection's twice 1.5 s) do not add to it. Attempts that
    // ended at once (refused) do not end the round while the whole server is still seen stopped:
    // the samples go on until it runs again or the verdict is reached, within this round (the gap
    // between rounds is not sampled, so nothing of the whole-server count carries over it).
    let end: number;
    let settled = false;
    for (;;) {
      if (!settled) settled = await settledWithin(attempts, SAMPLE_MS);
      else await Bun.sleep(SAMPLE_MS);
      end = seen.sample();
      if (frozenLongEnough(seen.allSince, Math.max(prev.lastAnswerAt, got.answeredAt ?? -Infinity), end, this.t)) break;
      if (settled && seen.allSince === null) break;
    }
    if (settled) await attempts; // an error thrown by an attempt surfaces as before
    else attempts.catch(() => undefined); // each ends by its own deadline; nobody waits for it
    const ms = Math.round(end - startedAt);
    const pending = { kind: "timeout" as const, ms, error: `no answer within ${ms} ms while the server's processes are stopped` };
    const p: Probe = got.probe ?? { up: false, ms, error: pending.error };
    // The heartbeat commit is tried only after SELECT 1 answered.
    const w = !write ? null : got.write ?? (got.fresh?.kind === "ok" ? pending : null);
    const o: LivenessObs = {
      startedAt, now: end, stoppedSince: seen.since, allStoppedSince: seen.allSince, stoppedAtEnd: seen.text, answeredAt: got.answeredAt,
      probe: p.up ? { kind: "ok", ms: p.ms } : { kind: "timeout", ms: p.ms, error: p.error },
      fresh: got.fresh ?? pending, write: w, walWrittenAt: this.src.wal(dir), disks: this.disks,
    };
    this.state = stepLiveness(prev, o, this.t);
    this.logChange(this.state.verdict);
    return p;
  }

  /** The verdict while watching (null: not watching). */
  get verdict(): Verdict | null {
    return this.state?.verdict ?? null;
  }

  /** The disk that is full now (its description), watching or not. */
  diskFull(): string | null {
    const w = diskWarning(this.disks);
    return w?.full ? w.text : null;
  }

  /** What the report says about it. */
  report(): PgReport["health"] {
    const v = this.verdict;
    const w = diskWarning(this.disks);
    const wall = (mono: number) => {
      if (this.sinceWall?.mono !== mono) this.sinceWall = { mono, iso: new Date(Date.now() - (this.h.clock.now() - mono)).toISOString() };
      return this.sinceWall.iso;
    };
    return {
      state: v?.state ?? (w?.full ? "disk-full" : "unknown"),
      reason: (v?.reason || w?.text || "").slice(0, 300),
      since: v ? wall(v.since) : null,
      disks: this.disks.map((d) => ({ what: d.what, path: d.path.slice(0, 300), sizeBytes: d.sizeBytes, availBytes: d.availBytes })),
      diskWarning: w ? w.text.slice(0, 300) : null,
    };
  }

  /** The report's note about it ("" when all is well). */
  note(): string {
    const r = this.report()!;
    if (r.state !== "ok" && r.state !== "unknown") return `${r.state}${r.since ? ` since ${r.since}` : ""}: ${r.reason}`;
    return r.diskWarning ? `disk space low: ${r.diskWarning}` : "";
  }

  /** Broken verdicts always; busy and back to ok at most once a minute (a loaded server may flip every round). */
  private logChange(v: Verdict): void {
    if (v.state === this.lastLogged) return;
    const now = this.h.clock.now();
    if (!broken(v) && !broken({ state: this.lastLogged }) && now - this.lastBusyLog < 60_000) return;
    if (!broken(v)) this.lastBusyLog = now;
    this.lastLogged = v.state;
    if (broken(v)) this.h.log.error(`PostgreSQL cannot do its work: ${v.state}: ${v.reason}`);
    else if (v.state === "busy") this.h.log.warn(`PostgreSQL is busy: ${v.reason}`);
    else this.h.log.info(`PostgreSQL works again${v.reason ? ` (${v.reason})` : ""}`);
  }
}

/** Whether `p` settles within `ms` (its outcome is read elsewhere); no timer is left behind either way. */
function settledWithin(p: Promise<unknown>, ms: number): Promise<boolean> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), ms);
    const done = () => {
      clearTimeout(timer);
      resolve(true);
    };
    p.then(done, done);
  });
}

/** The server's processes seen stopped, sample by sample: since when without a break, any of them and all of them. */
class Sightings {
  text = "";
  since: number | null = null;
  allSince: number | null = null;

  constructor(private readonly read: () => { text: string; all: boolean }, private readonly now: () => number) {}

  /** Samples now; returns the time of the sample. */
  sample(): number {
    const t = this.now();
    const s = this.read();
    this.text = s.text;
    this.since = s.text ? (this.since ?? t) : null;
    this.allSince = s.all ? (this.allSince ?? t) : null;
    return t;
  }
}
