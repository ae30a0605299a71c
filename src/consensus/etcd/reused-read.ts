// One read at a time, its answer reused for a while after it came: a flood of requests (GET
// /clusters needs no token) does not become a flood of etcd reads beside the leader key's renewals.
// A failed read is not kept.

export class ReusedRead<T> {
  private last: { doneAt: number | null; answer: Promise<T> } | null = null;

  constructor(private readonly read: () => Promise<T>, private readonly reuseMs: number, private readonly clock: () => number) {}

  get(): Promise<T> {
    const last = this.last;
    // In flight (however long it takes), or answered less than reuseMs ago.
    if (last && (last.doneAt === null || this.clock() - last.doneAt < this.reuseMs)) return last.answer;
    const answer = this.read();
    const entry: { doneAt: number | null; answer: Promise<T> } = { doneAt: null, answer };
    this.last = entry;
    answer.then(() => {
      entry.doneAt = this.clock();
    }, () => {
      if (this.last === entry) this.last = null;
    });
    return answer;
  }
}
