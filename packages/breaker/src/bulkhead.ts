import type { IncomingMessage, ServerResponse } from 'node:http';
import type { ParsedBulkheadOptions } from './options';

/** A request waiting for a place. */
interface Waiter {
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
  readonly go: () => void;
  timer: NodeJS.Timeout | undefined;
}

/**
 * A concurrency cap: at most `maxConcurrent` requests in flight, up to `maxQueue` more
 * waiting (first come, first served) for at most `queueTimeoutMs`. The transport calls
 * {@link enter} and, for every request that got a place, {@link release} once when it ends;
 * a request that leaves while it waits is {@link cancel}led and frees its place in the queue.
 * The fast path (a place is free, no one waits) allocates nothing.
 */
export class Bulkhead {
  /** Requests holding a place now. */
  active = 0;
  private queue: Waiter[] = [];
  /** Index of the first live entry of `queue` (entries before it were taken). */
  private head = 0;

  constructor(
    readonly options: ParsedBulkheadOptions,
    /** Answers a request that gets no place (the 503 `overloaded`, or the fallback). */
    private readonly refuse: (req: IncomingMessage, res: ServerResponse) => void,
  ) {}

  /** Requests waiting now. */
  get queued(): number {
    return this.queue.length - this.head;
  }

  /** Takes a place when one is free and no one waits; allocates nothing. Call `release()` when the request ends. */
  tryEnter(): boolean {
    if (this.active < this.options.maxConcurrent && this.queue.length === this.head) {
      this.active++;
      return true;
    }
    return false;
  }

  /**
   * 'now': the request has a place (call `release()` when it ends). 'queued': it waits, and
   * `go` runs when it gets one. 'refused': it was answered (the queue is full or off).
   */
  enter(req: IncomingMessage, res: ServerResponse, go: () => void): 'now' | 'queued' | 'refused' {
    const o = this.options;
    if (this.active < o.maxConcurrent && this.queued === 0) {
      this.active++;
      return 'now';
    }
    if (this.queued >= o.maxQueue) {
      this.refuse(req, res);
      return 'refused';
    }
    const waiter: Waiter = { req, res, go, timer: undefined };
    waiter.timer = setTimeout(() => this.expire(waiter), o.queueTimeoutMs);
    waiter.timer.unref();
    this.queue.push(waiter);
    return 'queued';
  }

  /** A request that had a place ended: the next waiting one takes it. */
  release(): void {
    if (this.active > 0) this.active--;
    this.drain();
  }

  /** A waiting request left (the client went away): its place in the queue is freed. Returns whether it was waiting. */
  cancel(req: IncomingMessage): boolean {
    const i = this.indexOf(req);
    if (i === -1) return false;
    const [waiter] = this.queue.splice(i, 1);
    clearTimeout(waiter!.timer);
    return true;
  }

  /** Whether a request is waiting. */
  isQueued(req: IncomingMessage): boolean {
    return this.indexOf(req) !== -1;
  }

  /** Refuses every waiting request (shutdown). */
  close(): void {
    const waiting = this.queue.slice(this.head);
    this.queue = [];
    this.head = 0;
    for (const w of waiting) {
      clearTimeout(w.timer);
      if (!w.res.headersSent && !w.res.destroyed) this.refuse(w.req, w.res);
    }
  }

  private indexOf(req: IncomingMessage): number {
    for (let i = this.head; i < this.queue.length; i++) if (this.queue[i]!.req === req) return i;
    return -1;
  }

  private expire(waiter: Waiter): void {
    const i = this.queue.indexOf(waiter, this.head);
    if (i === -1) return;
    this.queue.splice(i, 1);
    this.refuse(waiter.req, waiter.res);
  }

  private drain(): void {
    while (this.active < this.options.maxConcurrent && this.queued > 0) {
      const waiter = this.queue[this.head]!;
      this.head++;
      if (this.head > 1024 && this.head * 2 > this.queue.length) {
        this.queue = this.queue.slice(this.head);
        this.head = 0;
      } else if (this.head === this.queue.length) {
        this.queue = [];
        this.head = 0;
      }
      clearTimeout(waiter.timer);
      if (waiter.res.destroyed || waiter.res.writableEnded) continue; // left without a cancel
      this.active++;
      waiter.go();
    }
  }
}
