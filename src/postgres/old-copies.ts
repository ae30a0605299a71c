// The data directories a clone's swap moved aside (`<data_dir>.pgherd-old-<stamp>`), and which of
// them go beyond the newest `rejoin.keep_old`. Pure: basebackup.ts moves and removes them. A copy
// being removed is renamed `<data_dir>.pgherd-removing-<stamp>` first, so one left half-removed
// (an error, the agent stopped) never passes for a copy and goes at the next pass.

const STAMP = /^\d{4}-\d\d-\d\dT\d\d-\d\d-\d\d-\d{3}Z$/;

/** `<name>.pgherd-old-<stamp>`: the stamp is the time of the swap, in a form that sorts by time. */
export function asideName(name: string, now: Date): string {
  return `${name}.pgherd-old-${now.toISOString().replace(/[:.]/g, "-")}`;
}

/** The name a copy is renamed to while it is removed. */
export function removingName(copy: string): string {
  return copy.replace(".pgherd-old-", ".pgherd-removing-");
}

export interface AsideEntry {
  name: string;
  /** A real directory (not a link to one). */
  dir: boolean;
  /** A copy of a former primary's data (no standby.signal): it may hold commits no standby received. */
  primary?: boolean;
}

/**
 * Entries of the data directory's parent to remove: the copies (real directories named
 * `<dataDirName>.pgherd-old-<stamp>`) beyond the newest `keep`, `newest` (the one this swap made)
 * counted first whatever the clock said, then by stamp, and with `sparePrimaries` not a former
 * primary's; whatever else is named so (a link, a file), which is no copy; and copies left half
 * removed. Names only alike (another form, another directory's) are never among them.
 */
export function oldCopiesBeyond(entries: readonly AsideEntry[], dataDirName: string, keep: number, newest: string | null, o: { sparePrimaries?: boolean } = {}): string[] {
  const stamped = (kind: string) => entries.filter((e) => e.name.startsWith(`${dataDirName}.pgherd-${kind}-`) && STAMP.test(e.name.slice(`${dataDirName}.pgherd-${kind}-`.length)));
  const named = stamped("old");
  const copies = named.filter((e) => e.dir).sort((a, b) => (a.name < b.name ? 1 : a.name > b.name ? -1 : 0));
  const ordered = [...copies.filter((c) => c.name === newest), ...copies.filter((c) => c.name !== newest)];
  const beyond = ordered.slice(keep).filter((c) => !(o.sparePrimaries && c.primary));
  return [...beyond, ...named.filter((e) => !e.dir), ...stamped("removing")].map((e) => e.name);
}
