// POST /consensus/migrate (`pgherd consensus migrate --to etcd|builtin`). The plan is built and
// tested (src/core/consensus-migrate.ts), but the agent cannot swap its backend at runtime, so the
// request is refused with what the operator can do instead; no state changes.
import type { ActionResult } from "../api/actions-contract.ts";
import type { Backend } from "../core/consensus-migrate.ts";

export function migrateRefusal(to: Backend): ActionResult {
  return {
    status: 501, ok: false,
    message: `consensus migrate --to ${to} is refused: this agent cannot switch its consensus backend while it runs, ` +
      "so a live migration (no PostgreSQL restart, never two leaders) is not available in this version. Nothing was changed. " +
      `To move the cluster: stop every agent, set [consensus] backend = "${to}" in every node's pgherd.toml${to === "etcd" ? " (with endpoints)" : ""}, ` +
      "and start them again; once every agent is down there is no primary until they are back (docs/etcd.md, \"Migration\").",
  };
}
