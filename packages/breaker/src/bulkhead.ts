import type { IncomingMessage, ServerResponse } from 'node:http';
import type { ParsedBulkheadOptions } from './options';

/** A request waiting for a place: the ticket {@link Bulkhead.enter} returns, for {@link Bulkhead.cancel}. */
export interface Waiter {
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
  readonly go: () => void;
  timer: NodeJS.Timeout | undefined;
  /** Left the queue (cancelled, expired, or given a place): skipped by the drain. */
  gone: boolean;
}

/**
 * A concurrency cap: at most `maxConcurrent` requests in flight, up to `maxQueue` more
 * waiting (first come, first served) for at most `queueTimeoutMs`. The transport calls
 * {@link tryEnter} or {@link enter} and, for every request that got a place, {@link release}
 * once when it ends; a request that leaves while it waits is {@link cancel}led with its
 * ticket and frees its place in the queue.
 *
 * The fast path (a place is free, no one waits) allocates nothing. Cancelling and expiring
 * mark the ticket (no search, no splice), so a burst of thousands costs linear time; the
 * drain skips marked tickets and never recurses (a request given a place that ends at once
 * releases into the loop that is running, not into a new one).
 */
export class Bulkhead {
  /** Requests holding a place now. */
  active = 0;
  /** Requests waiting now. */
  queued = 0;
  private queue: Waiter[] = [];
  /** Index of the first entry of `queue` not yet taken. */
  private head = 0;
  private draining = false;

  constructor(
    readonly options: ParsedBulkheadOptions,
    /** Answers a request that gets no place (the 503 `overloaded`, or the fallback). */
    private readonly refuse: (req: IncomingMessage, res: ServerResponse) => void,
  ) {}

  /** Takes a place when one is free and no one waits; allocates nothing. Call `release()` when the request ends. */
  tryEnter(): boolean {
    if (this.active < this.options.maxConcurrent && this.queued === 0) {
      this.active++;
      return true;
    }
    return false;
  }

  /**
   * When {@link tryEnter} failed: a ticket when the request waits (`go` runs once it has a
   * place), or undefined when it was refused and answered (the queue is full or off).
   */
  enter(req: IncomingMessage, res: ServerResponse, go: () => void): Waiter | undefined {
    const o = this.options;
    if (this.queued >= o.maxQueue) {
      this.refuse(req, res);
      return undefined;
    }
    // Entries left behind by cancels are dropped before they outnumber the live ones.
    if (this.queue.length - this.head > 2 * this.queued + 1024) {
      this.queue = this.queue.slice(this.head).filter((w) => !w.gone);
      this.head = 0;
    }
    const waiter: Waiter = { req, res, go, timer: undefined, gone: false };
    waiter.timer = setTimeout(() => this.expire(waiter), o.queueTimeoutMs);
    waiter.timer.unref();
    this.queue.push(waiter);
    this.queued++;
    return waiter;
  }

  /** A request that had a place ended: the next waiting one takes it. */
  release(): void {
    if (this.active > 0) this.active--;
    this.drain();
  }

  /** A waiting request left (the client went away): its place in the queue is freed. Returns whether it was waiting. */
  cancel(waiter: Waiter): boolean {
    if (waiter.gone) return false;
    this.leave(waiter);
    return true;
  }

  /** Refuses every waiting request (shutdown). */
  close(): void {
    const waiting = this.queue.slice(this.head).filter((w) => !w.gone);
    for (const w of waiting) this.leave(w);
    this.queue = [];
    this.head = 0;
    for (const w of waiting) if (!w.res.headersSent && !w.res.destroyed) this.refuse(w.req, w.res);
  }

  private leave(waiter: Waiter): void {
    waiter.gone = true;
    clearTimeout(waiter.timer);
    this.queued--;
  }

  private expire(waiter: Waiter): void {
    if (waiter.gone) return;
    this.leave(waiter);
    this.refuse(waiter.req, waiter.res);
  }

  private drain(): void {
    if (this.draining) return;
    this.draining = true;
    try {
      while (this.active < this.options.maxConcurrent && this.queued > 0) {
        const waiter = this.queue[this.head++]!;
        if (waiter.gone) continue;
        this.leave(waiter);
        if (waiter.res.destroyed || waiter.res.writableEnded) continue; // left without a cancel
        this.active++;
        waiter.go(); // may end at once and release(): counted by the loop, not a new drain
      }
    } finally {
      this.draining = false;
      // Taken entries are dropped once they are most of the array.
      if (this.head === this.queue.length) {
        this.queue = [];
        this.head = 0;
      } else if (this.head > 1024 && this.head * 2 > this.queue.length) {
        this.queue = this.queue.slice(this.head);
        this.head = 0;
      }
    }
  }
}
