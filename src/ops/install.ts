// `pgherd install` / `pgherd uninstall`: files on the host (or under --root), never data.
// Every file is written beside its target and renamed into place, so an interrupted install
// leaves either the old file or the new one.
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { closeSync, constants, existsSync, fchmodSync, fchownSync, fsyncSync, lstatSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, rmdirSync, rmSync, writeSync } from "node:fs";
import { dirname, join, relative, resolve, sep } from "node:path";
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

/**
 * `target` with `content`: written to a fresh temporary name beside it (created exclusively, never
 * through a link: a --root image directory or a config outside /etc may be writable by others),
 * owner and mode set on the open file, synced, then renamed into place.
 */
function place(root: string, target: string, mode: number, content: Uint8Array | string, owner?: { uid: number; gid: number }): void {
  noLinksBelow(root, dirname(target));
  mkdirSync(dirname(target), { recursive: true, mode: 0o755 });
  const tmp = `${target}.pgherd-new-${randomBytes(6).toString("hex")}`;
  const fd = openSync(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
  try {
    const bytes = typeof content === "string" ? Buffer.from(content) : content;
    for (let at = 0; at < bytes.length;) at += writeSync(fd, bytes, at, bytes.length - at);
    if (owner) fchownSync(fd, owner.uid, owner.gid);
    fchmodSync(fd, mode);
    fsyncSync(fd);
  } catch (e) {
    closeSync(fd);
    rmSync(tmp, { force: true });
    throw e;
  }
  closeSync(fd);
  renameSync(tmp, target);
}

/**
 * A --root tree may be writable by others: a directory on the way down to what is written that is a
 * link (root/etc pointing elsewhere) is refused, not followed (review: mkdir and the rename went
 * through it). The live root "/" is root's own.
 */
function noLinksBelow(root: string, dir: string, doing = "writing"): void {
  if (resolve(root) === "/") return;
  let p = resolve(root);
  for (const part of relative(p, resolve(dir)).split(sep).filter(Boolean)) {
    p = join(p, part);
    let st;
    try {
      st = lstatSync(p);
    } catch {
      return; // from here on mkdir makes real directories
    }
    if (st.isSymbolicLink()) throw new Error(`${p} is a link: not ${doing} through it (install and uninstall --root go only through real directories)`);
  }
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

  place(o.root, p.bin, 0o755, readFileSync(o.binary));
  o.say(`installed ${p.bin} (0755)`);
  if (existsSync(p.config)) {
    o.say(`kept ${p.config} (it exists; \`pgherd config check\` validates it)`);
  } else {
    noLinksBelow(o.root, p.configDir);
    mkdirSync(p.configDir, { recursive: true, mode: 0o755 });
    place(o.root, p.config, 0o600, configFromExample(EXAMPLE_TEXT, generateSecret()), owner && { uid: owner.uid, gid: owner.gid });
    o.say(`created ${p.config} (0600, owner ${owner ? user : "you"}) from the example, with a fresh secret`);
  }
  place(o.root, p.unit, 0o644, UNIT_TEXT);
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
    o.say("stopped and disabled pgherd.service (a leader handed over first; a standby's PostgreSQL keeps running: stop it with pg_ctl if you mean to; with [backup] set, its archive_command runs the binary removed now: docs/operations.md)");
  }
  // Never through a link on the way down a --root tree (review: root/etc pointing at /etc removed the
  // live unit, binary and cluster secret); a link in a file's own place is removed, not followed.
  for (const d of [dirname(p.unit), dirname(p.bin), p.configDir]) noLinksBelow(o.root, d, "removing");
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
