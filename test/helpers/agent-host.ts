// The agent's PgHost for a data directory, with the cluster context parts a rebuild uses (a clone,
// pg_rewind, the passfile), for tests of src/agent/pg/rebuild.ts without a cluster around it. Root:
// the tools run as the PostgreSQL OS user.
import { chownSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { ClusterContext } from "../../src/agent/pg/context.ts";
import { PgHost } from "../../src/agent/pg/host.ts";
import { parseConfig } from "../../src/config/load.ts";
import type { Logger } from "../../src/log.ts";
import type { PgBins } from "../../src/postgres/binaries.ts";
import type { OsUser } from "../../src/postgres/users.ts";
import { PG_OS_USER } from "./pg.ts";

export interface AgentHostOptions {
  bins: PgBins;
  log: Logger;
  /** The PostgreSQL OS user (PG_OS_USER) looked up. */
  pg: OsUser;
  replPassword: string;
  /** A data directory (PG_VERSION) made first. */
  existing?: boolean;
  /** [backup] tool = "pgbackrest" (clone_from = "backup", the default then). */
  backup?: boolean;
}

/** The agent's PgHost for `data`; its state directory is `${data}.state`. */
export function agentHost(data: string, o: AgentHostOptions): PgHost {
  if (o.existing) {
    mkdirSync(data, { mode: 0o700 });
    writeFileSync(join(data, "PG_VERSION"), "15\n");
    chownSync(data, o.pg.uid, o.pg.gid);
  }
  const cfg = parseConfig(`cluster = "c"\nsecret = "${"s".repeat(40)}"\nnode_name = "n1"\nstate_dir = "${data}.state"\n[postgres]\ndata_dir = "${data}"\nos_user = "${PG_OS_USER}"\n${o.backup ? `[backup]\ntool = "pgbackrest"\nrepo_path = "${data}.repo"\n` : ""}`, "test");
  const ctx = {
    nodeId: "n1",
    secrets: () => ({ systemId: null, replPassword: o.replPassword, monitorPassword: "mon-password-0123456789" }),
    peerAddresses: () => ["10.0.0.2"],
    leadership: () => ({ term: 1, leading: false, acquiringLease: false, leaderId: null, member: true }),
    record: () => {},
  } as unknown as ClusterContext;
  return new PgHost(cfg, o.bins, ctx, o.log);
}
