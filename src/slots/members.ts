// When a primary lists its members' replication slots (src/agent/pg/slots.ts). Pure.
//
// The listing (pg_replication_slots with activity and retained WAL) makes missing slots and drops
// those of members that left or stayed down past slots.retain_minutes. The round's probe already
// names every slot, so the listing is needed at once only when those names disagree with the
// members' (a slot to make or to drop), the members changed since the last listing, or the report
// does not say what the members need; otherwise once every `every` rounds, for what only the
// listing tells (a member down too long, the retained bytes for /metrics), which changes over minutes.

export interface MemberListInput {
  /** The members' slot names now. */
  wanted: readonly string[];
  /** pgherd's physical member slots the round's probe found; null: no probe result. */
  found: readonly string[] | null;
  /** The members' slot names at the last listing; null: none yet. */
  listedFor: readonly string[] | null;
  /** The slots the primary reports (the last listing's). */
  reported: readonly string[];
  /** Rounds skipped since the last listing. */
  skipped: number;
  every: number;
}

export function memberListDue(x: MemberListInput): boolean {
  const key = (names: readonly string[]) => [...names].sort().join();
  const want = key(x.wanted);
  if (x.found === null || x.listedFor === null) return true;
  return !(key(x.found) === want && key(x.listedFor) === want && key(x.reported) === want && x.skipped < x.every - 1);
}

/** pgherd's physical member slots among a server's slots (by the name prefix every member slot has). */
export function memberSlotNames(slots: readonly { name: string; type: string }[]): string[] {
  return slots.filter((s) => s.type === "physical" && s.name.startsWith("pgherd_")).map((s) => s.name);
}
