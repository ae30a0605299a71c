// <state_dir>/consensus.json: which consensus backend this node runs on when a migration put it
// there (src/core/consensus-migrate.ts). One owner (this module), written atomically with fsync;
// absent or epoch 0, the config file's [consensus] backend decides.
import { join } from "node:path";
import { z } from "zod";
import { backendInForce, type InForce } from "../core/consensus-migrate.ts";
import type { Config } from "../config/schema.ts";
import { consensusIssues } from "../config/schema-consensus.ts";
import { readJsonSync, StoreError, writeJsonDurableSync } from "../store/durable.ts";

export const CONSENSUS_FILE = "consensus.json";

const schema = z.strictObject({
  backend: z.enum(["builtin", "etcd"]),
  epoch: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER),
});

export class BackendStore {
  readonly file: string;
  private state: InForce | null;

  constructor(stateDir: string) {
    this.file = join(stateDir, CONSENSUS_FILE);
    // A corrupt file throws (naming the file): guessing the backend could put this node in the wrong one.
    this.state = readJsonSync(this.file, schema) ?? null;
  }

  get(): InForce | null {
    return this.state ? { ...this.state } : null;
  }

  /** Durable before it returns; never to a lower epoch (a node does not go back). */
  save(next: InForce): void {
    const ok = schema.safeParse(next);
    if (!ok.success) throw new StoreError(`${this.file}: refusing to store an invalid backend record`);
    if (this.state && next.epoch < this.state.epoch) {
      throw new StoreError(`${this.file}: refusing to go back from epoch ${this.state.epoch} to ${next.epoch}`);
    }
    writeJsonDurableSync(this.file, ok.data, 0o600);
    this.state = ok.data;
  }
}

/**
 * The backend this node starts on: its stored record (epoch ≥ 1) or the config file's. A record of
 * etcd is checked as the config file's would be (endpoints named, lease margins).
 */
export function startingBackend(cfg: Pick<Config, "state_dir" | "consensus" | "election">): InForce {
  const store = new BackendStore(cfg.state_dir);
  const f = backendInForce(cfg.consensus.backend, store.get());
  if (f.backend !== "etcd" || cfg.consensus.backend === "etcd") return f;
  const unfit = etcdUnfit(cfg);
  if (unfit) throw new StoreError(`${store.file} records backend etcd (epoch ${f.epoch}), but the config file's [consensus] does not fit it: ${unfit}`);
  return f;
}

/**
 * Why the config file's [consensus] could not run etcd (no endpoints, lease margins: what the file
 * is checked for with backend = "etcd"), null: it could. A record of etcd is checked so at start,
 * and a migration to etcd is refused on a leader whose file does not fit it.
 */
export function etcdUnfit(cfg: Pick<Config, "consensus" | "election">): string | null {
  const problems: string[] = [];
  if (cfg.consensus.endpoints.length === 0) problems.push("consensus.endpoints: is empty");
  consensusIssues({ consensus: { ...cfg.consensus, endpoints: [...cfg.consensus.endpoints], backend: "etcd" }, election: cfg.election }, (path, m) => problems.push(`${path.join(".")}: ${m}`));
  return problems.length > 0 ? problems.join("; ") : null;
}
