// A client rule an operator adds below pgherd's managed block of pg_hba.conf. The agent rewrites
// the file (read, merge its block, rename) whenever its inputs change, e.g. a peer's address: an
// append that lands between its read and its rename is lost, as an operator's edit would be. So the
// rule is appended until the file keeps it and the server has it in force.
import { appendFileSync, readFileSync } from "node:fs";
import { join } from "node:path";
import type { ClusterNode } from "./cluster.ts";
import { waitFor } from "./proc.ts";

export async function addHbaRule(n: ClusterNode, line: string, timeoutMs = 30_000): Promise<void> {
  const file = join(n.dataDir, "pg_hba.conf");
  const has = () => readFileSync(file, "utf8").split("\n").includes(line);
  await waitFor(async () => {
    if (!has()) appendFileSync(file, `${line}\n`);
    await n.query("select pg_reload_conf()");
    // Still there after the reload (the agent did not replace the file meanwhile), and parsed without error.
    const rules = await n.query("select count(*)::int as bad from pg_hba_file_rules where error is not null");
    return has() && rules[0]?.bad === 0;
  }, { timeoutMs, intervalMs: 200, what: `${n.name}: pg_hba.conf to keep "${line}"` });
}
