// Request/response over the mesh: a numbered request, one answer or a deadline. The mesh is
// fire-and-forget; this pairs answers with the callers waiting for them and owns their timers.

export class PendingRequests<T> {
  private seq = 0;
  private readonly waiting = new Map<number, { resolve: (v: T) => void; timer: ReturnType<typeof setTimeout>; to: string }>();

  /**
   * Sends request `id` to peer `to` with `send` and waits for `answer(id, …, to)` until `timeoutMs`;
   * then resolves with `onTimeout()`. When `send` returns false (peer not connected) resolves with `onUnsent()`.
   */
  ask(to: string, send: (id: number) => boolean, timeoutMs: number, onTimeout: () => T, onUnsent: () => T = onTimeout): Promise<T> {
    const id = ++this.seq;
    const got = new Promise<T>((resolve) => {
      const timer = setTimeout(() => this.settle(id, onTimeout()), timeoutMs);
      this.waiting.set(id, { resolve, timer, to });
    });
    if (!send(id)) this.settle(id, onUnsent());
    return got;
  }

  /**
   * An answer arrived from peer `from`; unknown or late ids are ignored, and so is an answer from
   * any peer but the one asked (ids are sequential: another member could guess them).
   */
  answer(id: number, value: T, from: string): void {
    if (this.waiting.get(id)?.to !== from) return;
    this.settle(id, value);
  }

  /** Resolves every waiter for an answer from `peer` with `value` (its connection closed: an answer sent meanwhile is lost). */
  cancelTo(peer: string, value: () => T): void {
    for (const [id, w] of [...this.waiting]) if (w.to === peer) this.settle(id, value());
  }

  /** Resolves every waiter with `value` (the agent stops). */
  cancelAll(value: () => T): void {
    for (const id of [...this.waiting.keys()]) this.settle(id, value());
  }

  get size(): number {
    return this.waiting.size;
  }

  private settle(id: number, value: T): void {
    const w = this.waiting.get(id);
    if (!w) return;
    this.waiting.delete(id);
    clearTimeout(w.timer);
    w.resolve(value);
  }
}
