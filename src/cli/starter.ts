// The file `pgherd init` writes: the required keys plus the ones most installs change.
// Every other key and its default is documented in pgherd.toml.example.
import { randomBytes } from "node:crypto";

/** 48 random bytes → 64 base64url characters: well above the 32-character minimum. */
export function generateSecret(): string {
  return randomBytes(48).toString("base64url");
}

export function starterConfig(o: { cluster: string; secret: string }): string {
  return `# pgherd configuration. Every key, its default and why: pgherd.toml.example.
# Copy this file unchanged (same cluster and secret) to every node, then adjust
# node_name, role and the addresses per host. Keep it mode 0600 (the agent refuses
# anything group or others may read): it holds the secret.

cluster = ${JSON.stringify(o.cluster)}
secret = ${JSON.stringify(o.secret)}

# node_name = "db1"            # default: this host's name
# role = "database"            # or "witness": votes, never leads, runs no PostgreSQL
# state_dir = "/var/lib/pgherd"
bootstrap_expect = 3           # voters that must meet before the first election

[discovery]
# broadcast = ["auto"]         # every interface's broadcast address
# peers = ["10.0.0.2", "10.0.0.3:7400"]   # unicast targets where broadcast does not reach

[mesh]
# listen = "0.0.0.0:7401"
# advertise = "10.0.0.1:7401"  # what peers dial; default: listen host, or the beacon's source

[api]
# listen = "127.0.0.1:7402"
# token = ""                   # "" disables actions; else >= 32 characters (openssl rand -base64 32)

[log]
# level = "info"
`;
}
