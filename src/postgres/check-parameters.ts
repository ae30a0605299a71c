// Names and values PostgreSQL would refuse, found before they go into every node's files. A line
// the server refuses is only logged at a reload, and stops the server at its next start ("contains
// errors"): a cluster-wide typo would take down each node as it restarts. So the leader's own
// `postgres` reads the parameters from a scratch file (config_file) as a start would (`-C` prints
// one value and exits; it works beside a running server) and says what it refuses. Not caught:
// what only a real start finds (a shared_preload_libraries entry that is not installed, memory).
import { confValue, type ParamValue } from "./pgconf.ts";
import type { PgNode } from "./ctl.ts";
import { pgTool } from "./binaries.ts";
import { runTool } from "./exec.ts";
import { removeFile, writeFileAtomic, type Owner } from "./fsutil.ts";

/** What PostgreSQL refuses in `params` (its own messages, joined), or null when it takes them all. */
export async function refusedParameters(node: PgNode, params: Readonly<Record<string, ParamValue>>, owner: Owner): Promise<string | null> {
  // Beside the data directory, like the passfile: the OS user's, 0600, never inside a directory others write.
  const file = `${node.dataDir.replace(/\/+$/, "")}.check.conf`;
  const text = Object.entries(params).map(([k, v]) => `${k.toLowerCase()} = ${confValue(k, v)}\n`).join("");
  await writeFileAtomic(file, text, { mode: 0o600, owner });
  try {
    const r = await runTool({
      bin: pgTool(node.bins, "postgres"), args: ["-D", node.dataDir, "-c", `config_file=${file}`, "-C", "max_connections"],
      user: node.osUser, timeoutMs: 15_000, log: node.log, quiet: true,
    });
    if (r.code === 0) return null;
    // Not about the file (the data directory unreadable, no binary): nothing is known of the values.
    if (!r.stderr.includes(file)) {
      node.log.warn(`checking parameters with postgres -C: exited ${r.code}: ${r.stderr.trim().split("\n").pop() ?? ""}; not checked`);
      return null;
    }
    // "LOG:  invalid value for parameter ..." / "unrecognized configuration parameter ... in file ... line N"; the FATAL summary left out.
    const said = r.stderr.split("\n")
      .map((l) => l.replace(/^.*?\b(LOG|FATAL|ERROR|DETAIL|HINT):\s+/, "").trim())
      .filter((l) => l !== "" && !/configuration file .* contains errors/.test(l))
      .map((l) => l.replace(/ in file "[^"]*"( line \d+)?/, ""));
    return said.length ? said.join("; ") : `postgres -C exited ${r.code}`;
  } finally {
    await removeFile(file).catch(() => false);
  }
}
