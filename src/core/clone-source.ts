// Where a clone copies from: a restore of the latest backup ([backup] tool = "pgbackrest",
// clone_from = "backup": the primary is spared the copy) or pg_basebackup from the primary. Pure.

export type CloneSource = "backup" | "primary";

export function cloneSource(o: {
  /** [backup] tool = "pgbackrest" and clone_from = "backup". */
  restoreConfigured: boolean;
  /** The clone replaces a standby that could not stream although its history matches the primary's (the WAL it needs is gone). */
  stuck: boolean;
  /** This node's data directory came from a restore of the latest backup (its last clone, this run of the agent). */
  lastCloneRestored: boolean;
}): CloneSource {
  if (!o.restoreConfigured) return "primary";
  // A restored standby that could not stream: the WAL from the backup's end to what the primary
  // keeps is missing from the archive too, so the same backup would stop at the same gap, clone
  // after clone. The primary's copy has everything up to now.
  if (o.stuck && o.lastCloneRestored) return "primary";
  return "backup";
}
