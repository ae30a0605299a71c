// Removes network-lab namespaces (pgh*) that crashed test runs left behind: kills the
// processes inside, then deletes the namespaces (their veths and bridge go with them).
// By default only labs whose creating process is gone are touched, so a colleague's running
// tests survive; --all removes every lab namespace.
//
//   bun scripts/lab-clean.ts [--all] [--dry-run] [--match SUBSTRING]
import { execFileSync } from "node:child_process";
import { parseArgs } from "node:util";
import { destroySync, LAB_PREFIX, listLabNamespaces } from "../test/helpers/lab.ts";
import { pidAlive } from "../src/postgres/datadir.ts";

const USAGE = "usage: bun scripts/lab-clean.ts [--all] [--dry-run] [--match SUBSTRING]";

function main(): number {
  let values: { all?: boolean; "dry-run"?: boolean; match?: string; help?: boolean };
  try {
    ({ values } = parseArgs({
      options: { all: { type: "boolean" }, "dry-run": { type: "boolean" }, match: { type: "string" }, help: { type: "boolean", short: "h" } },
    }));
  } catch (e) {
    console.error(`lab-clean: ${(e as Error).message}\n${USAGE}`);
    return 2;
  }
  if (values.help) {
    console.log(`${USAGE}\n  removes pgh* network namespaces whose creating process is gone (--all: every one;\n  --match: only names containing SUBSTRING)`);
    return 0;
  }
  if (process.getuid?.() !== 0) {
    console.error("lab-clean: must run as root (network namespaces)");
    return 1;
  }

  const stale = listLabNamespaces()
    .filter(({ ns }) => values.match === undefined || ns.includes(values.match))
    .filter(({ ownerPid }) => values.all || ownerPid === undefined || !pidAlive(ownerPid));
  // Labs never put links in the root namespace; any pgh* link there is debris from elsewhere.
  const links = values.match === undefined ? rootLinks().filter((l) => l.startsWith(LAB_PREFIX)) : [];
  for (const { ns, ownerPid } of stale) console.log(`${values["dry-run"] ? "would remove" : "removing"} namespace ${ns} (owner pid ${ownerPid ?? "unknown"})`);
  for (const l of links) console.log(`${values["dry-run"] ? "would remove" : "removing"} link ${l}`);
  if (values["dry-run"]) return 0;

  destroySync(stale.map((s) => s.ns));
  for (const l of links) {
    try { execFileSync("ip", ["link", "del", l], { stdio: "pipe" }); } catch (e) { console.error(`lab-clean: ip link del ${l}: ${(e as Error).message}`); }
  }
  const left = new Set(listLabNamespaces().map((n) => n.ns));
  const failed = stale.filter((s) => left.has(s.ns));
  if (failed.length) {
    console.error(`lab-clean: could not remove ${failed.map((f) => f.ns).join(", ")}`);
    return 1;
  }
  console.log(`lab-clean: removed ${stale.length} namespace(s), ${links.length} link(s)`);
  return 0;
}


function rootLinks(): string[] {
  const out = execFileSync("ip", ["-o", "link"], { stdio: "pipe" }).toString();
  return out.split("\n").map((l) => l.split(": ")[1]?.split("@")[0] ?? "").filter(Boolean);
}

process.exit(main());
