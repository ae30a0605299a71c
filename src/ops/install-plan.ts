// What `pgherd install` puts where (pure): the binary, the config made from the example (a fresh
// secret, the node named after its host), the systemd unit from deploy/ as built into the binary.
// The unit's User= is the service user that owns the config.
import { join } from "node:path";
import { EXAMPLE_SECRET_MARKER } from "../config/schema.ts";

export const BIN_PATH = "/usr/local/bin/pgherd";
export const CONFIG_DIR = "/etc/pgherd";
export const CONFIG_PATH = "/etc/pgherd/pgherd.toml";
export const UNIT_PATH = "/etc/systemd/system/pgherd.service";

export interface InstallPaths {
  bin: string;
  configDir: string;
  config: string;
  unit: string;
}

/** The paths under `root` ("/" for the real system). */
export function installPaths(root: string): InstallPaths {
  const at = (p: string) => (root === "/" ? p : join(root, p));
  return { bin: at(BIN_PATH), configDir: at(CONFIG_DIR), config: at(CONFIG_PATH), unit: at(UNIT_PATH) };
}

/** The unit's `User=` (the last one wins, as in systemd); root when it has none. */
export function serviceUser(unit: string): string {
  const users = [...unit.matchAll(/^\s*User=(\S+)\s*$/gm)].map((m) => m[1]!);
  return users.at(-1) ?? "root";
}

/** The example with a fresh secret, and node_name left to its default (this host's name). */
export function configFromExample(example: string, secret: string): string {
  const secretLine = /^secret = ".*"$/m;
  if (!secretLine.test(example) || !example.includes(EXAMPLE_SECRET_MARKER)) throw new Error("pgherd.toml.example has no placeholder secret line");
  return example
    .replace(secretLine, `secret = "${secret}"`)
    .replace(/^node_name = "(.*)"$/m, '# node_name = "$1"   # default: this host\'s name');
}
