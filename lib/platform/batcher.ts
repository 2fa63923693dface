// Groups single items into batches so that one database round trip (and one limiter slot)
// serves many of them. Each add() settles when the batch holding its item has been flushed:
// a channel handler awaits it, so a message is acknowledged only after its row is committed.

export interface BatcherOptions<T> {
  maxSize: number;
  maxWaitMs: number;
  flush: (items: T[]) => Promise<void>;
  /**
   * Whether a failed flush may be one item's fault (a row the database refuses). Then each item
   * of the batch is flushed alone, so that only the ones that fail alone fail. Unset: never (a
   * database that is down would only be asked as many more times).
   */
  isItemFault?: (err: unknown) => boolean;
}

interface Pending<T> {
  item: T;
  resolve: () => void;
  reject: (err: unknown) => void;
}

export class Batcher<T> {
  private pending: Pending<T>[] = [];
  private timer: NodeJS.Timeout | null = null;

  constructor(private readonly opts: BatcherOptions<T>) {}

  add(item: T): Promise<void> {
    return new Promise((resolve, reject) => {
      this.pending.push({ item, resolve, reject });
      // Not awaited: add() settles through its own resolve/reject, and flushNow never rejects.
      if (this.pending.length >= this.opts.maxSize) void this.flushNow();
      else this.timer ??= setTimeout(() => void this.flushNow(), this.opts.maxWaitMs);
    });
  }

  /** Flushes everything pending, batch after batch (on shutdown). */
  async drain(): Promise<void> {
    while (this.pending.length > 0) await this.flushNow();
  }

  async flushNow(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    const batch = this.pending.splice(0, this.opts.maxSize);
    if (this.pending.length > 0) this.timer = setTimeout(() => void this.flushNow(), 0); // never rejects
    if (batch.length === 0) return;
    try {
      await this.opts.flush(batch.map((p) => p.item));
      for (const p of batch) p.resolve();
    } catch (err) {
      if (batch.length === 1 || !this.opts.isItemFault?.(err)) {
        for (const p of batch) p.reject(err);
        return;
      }
      for (const p of batch) {
        try {
          await this.opts.flush([p.item]);
          p.resolve();
        } catch (alone) {
          p.reject(alone);
        }
      }
    }
  }
}
