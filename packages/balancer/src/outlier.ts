import { isFailedEnd, type AttemptReport } from '@turnpike/core';
import type { NormalisedOutlier } from './options';

/** What an attempt's end says of its target: a failure, a success, or nothing. */
export const Verdict = Object.freeze({ Neutral: 0, Success: 1, Failure: 2 } as const);
export type Verdict = (typeof Verdict)[keyof typeof Verdict];

/** The passive-health state the detector keeps per member. */
export interface OutlierState {
  /** Failures in a row. */
  failures: number;
  /** Times ejected so far. */
  ejections: number;
  /** Ejected until this time (ms); 0 when not ejected. */
  ejectedUntil: number;
}

/**
 * Passive health (outlier ejection): counts failures of real traffic in a row per target and
 * decides ejections. The balancer asks it on each attempt's end and applies the ejection
 * (the percentage cap is the balancer's, which sees every member).
 */
export class OutlierDetector {
  private readonly failing = new Uint8Array(600);

  constructor(readonly options: NormalisedOutlier) {
    for (const status of options.statuses) this.failing[status] = 1;
  }

  /** Judges one attempt's end. */
  verdict(report: AttemptReport): Verdict {
    switch (report.end) {
      case 'complete':
        return report.status >= 0 && report.status < 600 && this.failing[report.status] === 1
          ? Verdict.Failure
          : Verdict.Success;
      case 'cancelled':
      case 'client-gone':
        return Verdict.Neutral;
      default:
        return isFailedEnd(report.end) ? Verdict.Failure : Verdict.Success;
    }
  }

  /**
   * Records an attempt's end on `state`; returns true when the failures in a row reached the
   * threshold and the target should be ejected now (the caller checks the cap and calls
   * {@link eject}). A target already ejected is not counted.
   */
  record(state: OutlierState, report: AttemptReport): boolean {
    if (state.ejectedUntil !== 0) return false;
    const verdict = this.verdict(report);
    if (verdict === Verdict.Success) {
      state.failures = 0;
      return false;
    }
    if (verdict === Verdict.Neutral) return false;
    state.failures++;
    return state.failures >= this.options.consecutiveFailures;
  }

  /** Ejects: base × n (n the how-many-th ejection), capped; returns the duration in ms. */
  eject(state: OutlierState, now: number): number {
    state.ejections++;
    const { baseEjectionMs, maxEjectionMs } = this.options;
    const durationMs = Math.min(maxEjectionMs, baseEjectionMs * state.ejections);
    state.ejectedUntil = now + durationMs;
    return durationMs;
  }

  /** Most members ejected at once out of `count`. */
  maxEjected(count: number): number {
    return Math.floor((count * this.options.maxEjectionPercent) / 100);
  }
}

/** Readmits: the ejection is over and the count of failures starts again. */
export function readmit(state: OutlierState): void {
  state.ejectedUntil = 0;
  state.failures = 0;
}
