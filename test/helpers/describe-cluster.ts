// The fixture every cluster e2e file shares: the file fails (no skip) where a cluster cannot run,
// the binary is built, the cluster is started before the tests and destroyed after them, and
// where its logs are is printed. Tests reach what `start` returned through `fx`, filled in before
// the first test runs.
import { afterAll, beforeAll, describe } from "bun:test";
import { ensureBuilt } from "../../scripts/build.ts";
import { clusterSkipReason, type PgCluster } from "./cluster.ts";
import { requireReal } from "./require.ts";
import { type Backend, backendLabel, backendSkipReason, e2eBackends, useBackend } from "./backend.ts";

export interface ClusterFixture<T> {
  /** Starts the cluster and whatever the file needs with it (`c` is the cluster). */
  start: () => Promise<T>;
  /** After `start`, still before the tests (print bounds, wait for a guarantee); the cluster is destroyed also when this fails. */
  ready?: (fx: T) => Promise<void> | void;
  /** Before the cluster is destroyed (heal links, stop helpers); fields may be missing if `start` failed. */
  beforeDestroy?: (fx: Partial<T>) => Promise<void> | void;
  startMs?: number;
  stopMs?: number;
  /** The backends this suite runs on, whatever PGHERD_E2E_BACKEND says (a feature of one backend); default: e2eBackends(). */
  backends?: Backend[];
}

export function describeCluster<T extends { c: PgCluster }>(name: string, o: ClusterFixture<T>, body: (fx: T) => void): void {
  for (const backend of o.backends ?? e2eBackends()) {
    requireReal(name + backendLabel(backend), clusterSkipReason() ?? backendSkipReason(backend));
    describe(name + backendLabel(backend), () => {
      const fx = {} as T;
      beforeAll(async () => {
        useBackend(backend); // the suites run one after the other: the cluster this one starts uses it
        ensureBuilt();
        Object.assign(fx, await o.start());
        await o.ready?.(fx);
      }, o.startMs ?? 150_000);
      afterAll(async () => {
        await o.beforeDestroy?.(fx);
        const t0 = performance.now();
        await fx.c?.destroy();
        if (fx.c) console.log(`cluster destroyed in ${((performance.now() - t0) / 1000).toFixed(1)} s; logs: ${fx.c.artifacts}`);
        useBackend(null);
      }, o.stopMs ?? 120_000);
      body(fx);
    });
  }
}
