// The per-node bulkhead: at most `limit` holders at once and at most `maxQueue` waiting.
// A full queue rejects at once (the caller answers 429 and the client retries) instead of
// letting work pile up without bound or hang. A plain semaphore: the bulkhead sits in front of
// every database operation, and Bottleneck's local store costs ~4.8 ms a job (STACK.md).
import { QueueFullError } from "../platform/errors";

export interface SemaphoreStats {
  limit: number;
  running: number;
  queued: number;
  peakRunning: number;
  peakQueued: number;
  rejected: number;
  acquired: number;
}

export type Release = () => void;

export class Semaphore {
  private running = 0;
  private readonly waiting: (() => void)[] = [];
  private peakRunning = 0;
  private peakQueued = 0;
  private rejected = 0;
  private acquired = 0;

  /** The limit it was built with: runtime changes may lower the limit, not raise it past this. */
  readonly capacity: number;

  constructor(
    readonly resource: string,
    private limit: number,
    private readonly maxQueue: number,
    /** What a rejected caller is told to wait before retrying. */
    private readonly retryAfterSeconds = 1,
  ) {
    this.capacity = limit;
  }

  async acquire(): Promise<Release> {
    if (this.running >= this.limit || this.waiting.length > 0) {
      if (this.waiting.length >= this.maxQueue) {
        this.rejected++;
        throw new QueueFullError(this.resource, this.retryAfterSeconds);
      }
      await new Promise<void>((resolve) => {
        this.waiting.push(resolve);
        this.peakQueued = Math.max(this.peakQueued, this.waiting.length);
      });
    } else {
      this.running++;
    }
    this.acquired++;
    this.peakRunning = Math.max(this.peakRunning, this.running);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.handOver();
    };
  }

  async run<T>(fn: () => Promise<T>): Promise<T> {
    const release = await this.acquire();
    try {
      return await fn();
    } finally {
      release();
    }
  }

  /** Changes the limit at runtime; a lower one takes effect as holders release. */
  setLimit(limit: number): void {
    this.limit = limit;
    while (this.running < this.limit && this.waiting.length > 0) {
      this.running++;
      this.waiting.shift()!();
    }
  }

  stats(): SemaphoreStats {
    return {
      limit: this.limit,
      running: this.running,
      queued: this.waiting.length,
      peakRunning: this.peakRunning,
      peakQueued: this.peakQueued,
      rejected: this.rejected,
      acquired: this.acquired,
    };
  }

  // The slot passes straight to the next waiter, so a newcomer can never overtake the queue.
  private handOver(): void {
    if (this.running <= this.limit && this.waiting.length > 0) {
      this.waiting.shift()!();
    } else {
      this.running--;
    }
  }
}
