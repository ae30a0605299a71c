// The data directories a clone's swap moved aside (`<data_dir>.pgherd-old-<stamp>`), and which of
// them go beyond the newest `rejoin.keep_old`. Pure: basebackup.ts moves and removes them.

/** `<name>.pgherd-old-<stamp>`: the stamp is the time of the swap, in a form that sorts by time. */
export function asideName(name: string, now: Date): string {
  return `${name}.pgherd-old-${now.toISOString().replace(/[:.]/g, "-")}`;
}

export interface AsideEntry {
  name: string;
  /** A real directory (not a link to one). */
  dir: boolean;
}

/**
 * Entries of the data directory's parent to remove: the copies (real directories named
 * `<dataDirName>.pgherd-old-<stamp>`) beyond the newest `keep`, `newest` (the one this swap made)
 * counted first whatever the clock said, then by stamp; and whatever else is named so (a link, a
 * file), which is no copy and always goes. Names only alike (another form, another directory's)
 * are never among them.
 */
export function oldCopiesBeyond(entries: readonly AsideEntry[], dataDirName: string, keep: number, newest: string | null): string[] {
  const prefix = `${dataDirName}.pgherd-old-`;
  const stamp = /^\d{4}-\d\d-\d\dT\d\d-\d\d-\d\d-\d{3}Z$/;
  const named = entries.filter((e) => e.name.startsWith(prefix) && stamp.test(e.name.slice(prefix.length)));
  const copies = named.filter((e) => e.dir).map((e) => e.name).sort().reverse();
  const ordered = newest !== null && copies.includes(newest) ? [newest, ...copies.filter((c) => c !== newest)] : copies;
  return [...ordered.slice(keep), ...named.filter((e) => !e.dir).map((e) => e.name)];
}
