// postgres/orphans.ts leftoverCopies: a pg_rewind of this data directory or a pg_basebackup into its
// clone directory, left running by an earlier agent (KillMode=process keeps an agent's children
// across its restart), found by command line and user and ended before the next rewind or clone;
// the same tools for another directory, or another user's, are left alone (real processes).
import { expect, test } from "bun:test";
import { spawn, type ChildProcess } from "node:child_process";
import { readFileSync } from "node:fs";
import { killLeftoverCopies, leftoverCopies } from "../../src/postgres/orphans.ts";
import { waitFor } from "../helpers/proc.ts";

const ME = process.getuid!();
const clock = { now: () => performance.now(), sleep: (ms: number) => Bun.sleep(ms) };

/** A process whose command line is `name args…` as the agent runs the tool (bash waits in a builtin and forks nothing). */
function fake(name: string, args: string[], opts: { uid?: number; gid?: number } = {}): ChildProcess {
  return spawn("/bin/bash", ["-c", `exec -a ${name} /bin/bash -c 'read -r -t 30 _; :' x ${args.map((a) => `'${a}'`).join(" ")}`], { detached: true, ...opts });
}
const argsOf = (p: ChildProcess) => {
  try {
    return readFileSync(`/proc/${p.pid}/cmdline`, "utf8").split("\0");
  } catch {
    return [];
  }
};

test("a pg_rewind of the data directory and a pg_basebackup into its clone directory are found and ended; others are not", async () => {
  const data = "/var/lib/postgresql/15/main";
  const clone = "/var/lib/postgresql/15/main.clone";
  const rewind = fake("/usr/lib/postgresql/15/bin/pg_rewind", [`--target-pgdata=${data}`, "--source-server=host=10.0.0.1 port=5432 dbname=postgres", "--progress"]);
  const base = fake("/usr/lib/postgresql/15/bin/pg_basebackup", ["-d", "host=10.0.0.1", "-D", clone, "-X", "stream"]);
  const otherDir = fake("/usr/lib/postgresql/15/bin/pg_rewind", ["--target-pgdata=/srv/other", "--progress"]);
  const otherTool = fake("/usr/bin/psql", ["-D", clone]);
  const asNobody = ME === 0 ? fake("/usr/lib/postgresql/15/bin/pg_rewind", [`--target-pgdata=${data}`], { uid: 65534, gid: 65534 }) : null;
  const all = [rewind, base, otherDir, otherTool, ...(asNobody ? [asNobody] : [])];
  try {
    await waitFor(() => all.every((p) => argsOf(p)[0]?.startsWith("/usr/")), { timeoutMs: 5000, intervalMs: 10, what: "the fakes to run under their names" });
    expect(leftoverCopies(data, clone, ME).sort()).toEqual([rewind.pid!, base.pid!].sort());
    if (asNobody) expect(leftoverCopies(data, clone, 65534)).toEqual([asNobody.pid!]); // its own user's are found: the uid kept it out
    expect(await killLeftoverCopies(data, clone, ME, 5000, clock)).toBe(2);
    expect(leftoverCopies(data, clone, ME)).toEqual([]);
    for (const p of [otherDir, otherTool, ...(asNobody ? [asNobody] : [])]) expect(argsOf(p).length).toBeGreaterThan(0); // still running
    expect(await killLeftoverCopies(data, clone, ME, 5000, clock)).toBe(0);
  } finally {
    for (const p of all) {
      try {
        process.kill(-p.pid!, "SIGKILL");
      } catch {
        // gone
      }
    }
  }
});
