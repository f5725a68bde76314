/**
 * Requests and failures over a rolling window, kept as a fixed ring of buckets: memory is
 * fixed at creation, an add costs a few array writes, and running totals make the rate a
 * division. Entering a new bucket clears the buckets that fell out of the window.
 */
export class RollingWindow {
  /** Requests and failures in the window now. */
  total = 0;
  failures = 0;
  private readonly totals: Uint32Array;
  private readonly failed: Uint32Array;
  /** The bucket number (time / bucketMs) each slot holds; -1 when empty. */
  private readonly epochs: Float64Array;
  private readonly size: number;
  /** The newest bucket number seen. */
  private newest = -1;

  constructor(
    windowMs: number,
    private readonly bucketMs: number,
  ) {
    this.size = Math.max(1, Math.ceil(windowMs / bucketMs));
    this.totals = new Uint32Array(this.size);
    this.failed = new Uint32Array(this.size);
    this.epochs = new Float64Array(this.size).fill(-1);
  }

  /** Counts one request at `now` (ms). */
  add(now: number, failure: boolean): void {
    let bucket = Math.floor(now / this.bucketMs);
    // A clock that went back (NTP, a test's fake timers) counts in the newest bucket.
    if (bucket < this.newest) bucket = this.newest;
    else if (bucket !== this.newest) this.advance(bucket);
    const i = bucket % this.size;
    this.totals[i]!++;
    this.total++;
    if (failure) {
      this.failed[i]!++;
      this.failures++;
    }
  }

  /** The totals as of `now`: buckets older than the window no longer count. */
  refresh(now: number): void {
    const bucket = Math.floor(now / this.bucketMs);
    if (bucket > this.newest) this.advance(bucket);
  }

  /** Forgets everything (the circuit opened or closed). */
  clear(): void {
    this.totals.fill(0);
    this.failed.fill(0);
    this.epochs.fill(-1);
    this.total = 0;
    this.failures = 0;
    this.newest = -1;
  }

  private advance(bucket: number): void {
    const oldest = bucket - this.size; // this bucket and older are out of the window
    for (let i = 0; i < this.size; i++) {
      const epoch = this.epochs[i]!;
      if (epoch !== -1 && epoch <= oldest) {
        this.total -= this.totals[i]!;
        this.failures -= this.failed[i]!;
        this.totals[i] = 0;
        this.failed[i] = 0;
        this.epochs[i] = -1;
      }
    }
    const slot = bucket % this.size;
    if (this.epochs[slot] !== bucket) {
      // Empty after the sweep above (an older bucket in this slot is out of the window).
      this.total -= this.totals[slot]!;
      this.failures -= this.failed[slot]!;
      this.totals[slot] = 0;
      this.failed[slot] = 0;
      this.epochs[slot] = bucket;
    }
    this.newest = bucket;
  }
}
