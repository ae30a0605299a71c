// The PostgreSQL loop lives in ./pg/ (one file per job); this module keeps the names the agent imports.
export { PostgresLoop } from "./pg/loop.ts";
export { type ClusterContext, type DetachResult, type LoopControl, slotFor } from "./pg/context.ts";
