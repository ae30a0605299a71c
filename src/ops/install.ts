// `pgherd install` / `pgherd uninstall`: files on the host (or under --root), never data.
// Every file is written beside its target and renamed into place, so an interrupted install
// leaves either the old file or the new one.
import { spawnSync } from "node:child_process";
import { chmodSync, chownSync, copyFileSync, existsSync, mkdirSync, readdirSync, renameSync, rmdirSync, rmSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";
import unitText from "../../deploy/pgherd.service" with { type: "text" };
import exampleText from "../../pgherd.toml.example" with { type: "text" };
import { generateSecret } from "../cli/starter.ts";
import { isRoot, lookupOsUser } from "../postgres/users.ts";
import { configFromExample, installPaths, serviceUser } from "./install-plan.ts";

export const UNIT_TEXT: string = unitText;
export const EXAMPLE_TEXT: string = exampleText;

export interface InstallOptions {
  root: string;
  /** The executable to install (default: this one). */
  binary: string;
  say(line: string): void;
}

function place(target: string, mode: number, write: (tmp: string) => void, owner?: { uid: number; gid: number }): void {
  mkdirSync(dirname(target), { recursive: true, mode: 0o755 });
  const tmp = `${target}.pgherd-new`;
  rmSync(tmp, { force: true });
  write(tmp);
  chmodSync(tmp, mode);
  if (owner) chownSync(tmp, owner.uid, owner.gid);
  renameSync(tmp, target);
}

function systemctl(args: string[], say: (l: string) => void): void {
  const r = spawnSync("systemctl", args, { encoding: "utf8" });
  if (r.error || r.status !== 0) say(`note: systemctl ${args.join(" ")} failed: ${(r.error?.message ?? r.stderr).trim()}`);
}

const live = (root: string) => root === "/" && existsSync("/run/systemd/system");

export async function install(o: InstallOptions): Promise<void> {
  const p = installPaths(o.root);
  const user = serviceUser(UNIT_TEXT);
  const owner = isRoot() ? await lookupOsUser(user).catch(() => { throw new Error(`the unit runs as User=${user}, but this host has no such user: create it (or install PostgreSQL, which creates postgres) first`); }) : undefined;
  if (o.root === "/" && !isRoot()) throw new Error("installing into / needs root (use --root DIR for a scratch root)");
  if (!owner) o.say(`note: not root: ${p.config} stays owned by you, not by the service user ${user}`);

  place(p.bin, 0o755, (tmp) => copyFileSync(o.binary, tmp));
  o.say(`installed ${p.bin} (0755)`);
  if (existsSync(p.config)) {
    o.say(`kept ${p.config} (it exists; \`pgherd config check\` validates it)`);
  } else {
    mkdirSync(p.configDir, { recursive: true, mode: 0o755 });
    place(p.config, 0o600, (tmp) => writeFileSync(tmp, configFromExample(EXAMPLE_TEXT, generateSecret()), { mode: 0o600 }), owner && { uid: owner.uid, gid: owner.gid });
    o.say(`created ${p.config} (0600, owner ${owner ? user : "you"}) from the example, with a fresh secret`);
  }
  place(p.unit, 0o644, (tmp) => writeFileSync(tmp, UNIT_TEXT));
  o.say(`installed ${p.unit} (0644, runs the agent as ${user})`);
  if (live(o.root)) systemctl(["daemon-reload"], o.say);
  o.say([
    "",
    "next:",
    `  1. edit ${p.config}: cluster, bootstrap_expect and the addresses; every node needs the same`,
    "     cluster and secret (copy the secret line from the first node to the others)",
    `  2. pgherd config check ${p.config}`,
    "  3. systemctl enable --now pgherd; then pgherd status",
  ].join("\n"));
}

export function uninstall(o: { root: string; purge: boolean; say(line: string): void }): void {
  const p = installPaths(o.root);
  if (o.root === "/" && !isRoot()) throw new Error("uninstalling from / needs root");
  if (live(o.root) && existsSync(p.unit)) {
    systemctl(["disable", "--now", "pgherd"], o.say);
    o.say("stopped and disabled pgherd.service (PostgreSQL keeps running: stop it with pg_ctl if you mean to)");
  }
  for (const f of [p.unit, p.bin]) {
    if (existsSync(f)) {
      rmSync(f);
      o.say(`removed ${f}`);
    }
  }
  if (live(o.root)) systemctl(["daemon-reload"], o.say);
  if (o.purge && existsSync(p.config)) {
    rmSync(p.config);
    o.say(`removed ${p.config}`);
    if (existsSync(p.configDir) && readdirSync(p.configDir).length === 0) rmdirSync(p.configDir);
  } else if (existsSync(p.config)) {
    o.say(`kept ${p.config} (it holds the cluster secret; --purge removes it)`);
  }
  o.say("PostgreSQL's data directory and pgherd's state_dir are untouched.");
}
