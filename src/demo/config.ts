// The three agents' pgherd.toml files. Everything not set here keeps its production default,
// so the demo shows the real timers and behaviour.
import { join } from "node:path";
import { parseConfig } from "../config/load.ts";

export interface DemoNode {
  name: string;
  dir: string;
  configPath: string;
  logFile: string;
  dataDir: string;
  /** Set explicitly: the printed psql commands need it, whatever the default becomes. */
  socketDir: string;
  meshPort: number;
  apiPort: number;
  pgPort: number;
}

export const DEMO_CLUSTER = "demo";
export const DEMO_SIZE = 3;

export function demoNodes(scratch: string, ports: readonly number[]): DemoNode[] {
  if (ports.length !== DEMO_SIZE * 3) throw new Error(`demoNodes: need ${DEMO_SIZE * 3} ports, got ${ports.length}`);
  return Array.from({ length: DEMO_SIZE }, (_, i) => {
    const name = `node${i + 1}`;
    const dir = join(scratch, name);
    return {
      name, dir,
      configPath: join(dir, "pgherd.toml"),
      logFile: join(dir, "agent.log"),
      dataDir: join(dir, "pgdata"),
      socketDir: join(dir, "socket"),
      meshPort: ports[i * 3]!, apiPort: ports[i * 3 + 1]!, pgPort: ports[i * 3 + 2]!,
    };
  });
}

/** Section → key → value, e.g. { election: { heartbeat_ms: 300 } }. */
export type DemoSettings = Record<string, Record<string, string | number | boolean>>;

/** `section.key=value` (a number or true/false as such, else a string) into DemoSettings; throws naming a bad one. */
export function parseDemoSettings(items: readonly string[]): DemoSettings {
  const out: DemoSettings = {};
  for (const item of items) {
    const m = /^([a-z_]+)\.([a-z_]+)=(.*)$/.exec(item);
    if (!m) throw new Error(`--set ${JSON.stringify(item)}: expected section.key=value`);
    const [, section, key, raw] = m as unknown as [string, string, string, string];
    const value = /^-?\d+(\.\d+)?$/.test(raw) ? Number(raw) : raw === "true" || raw === "false" ? raw === "true" : raw;
    (out[section] ??= {})[key] = value;
  }
  return out;
}

export function renderDemoConfig(n: DemoNode, o: { secret: string; token: string; beaconPort: number; osUser: string; settings?: DemoSettings }): string {
  const q = JSON.stringify;
  const text = `# pgherd demo node ${n.name}: written by \`pgherd demo\`; every key is in pgherd.toml.example.
cluster = ${q(DEMO_CLUSTER)}
secret = ${q(o.secret)}
node_name = ${q(n.name)}
state_dir = ${q(join(n.dir, "state"))}
bootstrap_expect = ${DEMO_SIZE}

[discovery]
port = ${o.beaconPort}
broadcast = ["127.255.255.255"]

[mesh]
listen = "127.0.0.1:${n.meshPort}"

[api]
listen = "127.0.0.1:${n.apiPort}"
token = ${q(o.token)}

[postgres]
data_dir = ${q(n.dataDir)}
port = ${n.pgPort}
listen_addresses = "127.0.0.1"
socket_dir = ${q(n.socketDir)}
os_user = ${q(o.osUser)}
${extraToml(o.settings ?? {})}`;
  parseConfig(text, `${n.name}/pgherd.toml`); // a bad value (e.g. an odd user name) fails here, named
  return text;
}

/**
 * [postgres] is the file's last table: its keys go on under it, other sections follow as tables.
 * A section the demo writes already ([discovery], [mesh], [api]) would be a second table: the
 * config loader refuses it, naming it. Benches only.
 */
function extraToml(settings: DemoSettings): string {
  const lines = (kv: Record<string, string | number | boolean>) => Object.entries(kv).map(([k, v]) => `${k} = ${JSON.stringify(v)}\n`).join("");
  const { postgres, ...rest } = settings;
  return (postgres ? lines(postgres) : "") + Object.entries(rest).map(([section, kv]) => `\n[${section}]\n${lines(kv)}`).join("");
}
