// Which of two authenticated connections to one peer the mesh keeps. Pure: both ends must reach
// the same answer from what both ends know.

/**
 * - `new` / `current`: keep that one and retire the other (and, when `new` wins, any spare).
 * - `new-current-spare`: the peer dialled both, so the peer chooses: use the new one now and keep
 *   the current one as a spare until the peer retires one of them (or the spare's wait ends).
 *
 * Dialled by different nodes: the one dialled by the lower node id, at both ends. Dialled by the
 * same node: the dialer keeps the one it authenticated last (a leftover of a restarted dialer is
 * always older) and retires the other; the acceptor follows the dialer's retire. Each end's own
 * order can differ (the dialer authenticates on the acceptor's proof, the acceptor on the dialer's,
 * and paths can have uneven delays), so only one end may decide.
 */
export function keepOnDuplicate(o: { ownId: string; newDialer: string; currentDialer: string }): "new" | "current" | "new-current-spare" {
  if (o.newDialer !== o.currentDialer) return o.newDialer < o.currentDialer ? "new" : "current";
  return o.newDialer === o.ownId ? "new" : "new-current-spare";
}

/** Spare connections (see keepOnDuplicate), oldest first, each with the timer that ends its wait. */
export class Spares<C extends { peer?: { nodeId: string } }> {
  private readonly waits = new Map<C, ReturnType<typeof setTimeout>>();

  /** Keeps `c` as a spare; `expire` runs after `ms` unless it was dropped first. */
  add(c: C, ms: number, expire: (c: C) => void): void {
    const timer = setTimeout(() => this.drop(c) && expire(c), ms);
    timer.unref();
    this.waits.set(c, timer);
  }

  /** Removes `c`; returns it if it was a spare. */
  drop(c: C): C | undefined {
    const timer = this.waits.get(c);
    if (timer === undefined) return undefined;
    clearTimeout(timer);
    this.waits.delete(c);
    return c;
  }

  /** The spares to peer `id`, oldest first. */
  of(id: string): C[] {
    return [...this.waits.keys()].filter((c) => c.peer?.nodeId === id);
  }

  clear(): void {
    for (const c of [...this.waits.keys()]) this.drop(c);
  }
}
