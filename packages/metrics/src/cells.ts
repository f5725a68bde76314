import type { Counter, Histogram } from 'prom-client';

/**
 * One series of a prom-client counter or histogram, updated in place.
 *
 * prom-client's own `inc()` / `observe()` check the labels and rebuild the series' key string on
 * every call; on a proxy's hot path that is most of what a metric costs. A cell finds its
 * series' entry in the metric once (creating it through prom-client's public API), then adds
 * to it directly, exactly as prom-client's own code does. If the metric was reset (its map
 * replaced) the cell finds or creates its entry again. If prom-client's internals are not what
 * a cell expects, it falls back to the public API: slower, never wrong. A test holds the text
 * of both ways equal.
 */
export interface CounterCell {
  inc(): void;
}

export interface HistogramCell {
  observe(value: number): void;
}

interface Internals {
  hashMap?: Record<string, unknown>;
  sortedLabelNames?: readonly string[];
  labelNames?: readonly string[];
  upperBounds?: readonly number[];
}

interface CounterEntry {
  value: number;
  labels: object;
}

interface HistogramEntry {
  labels: object;
  bucketValues: Record<string, number>;
  sum: number;
  count: number;
}

/** prom-client's series key: `name:value,` for each label, in sorted label-name order. */
function keyOf(sorted: readonly string[], labels: Record<string, string>): string {
  let key = '';
  for (const name of sorted) {
    const value = labels[name];
    if (value !== undefined) key += `${name}:${value},`;
  }
  return key;
}

function labelsOf(names: readonly string[], values: readonly string[]): Record<string, string> {
  const labels: Record<string, string> = {};
  names.forEach((name, i) => (labels[name] = values[i]!));
  return labels;
}

/** A counter's series, by label values in label order. */
export function counterCell(metric: Counter<string>, values: readonly string[]): CounterCell {
  const m = metric as unknown as Internals;
  const child = metric.labels(...values);
  if (!Array.isArray(m.sortedLabelNames) || !Array.isArray(m.labelNames)) return child;
  const labels = labelsOf(m.labelNames, values);
  const key = keyOf(m.sortedLabelNames, labels);
  let map: Record<string, unknown> | undefined;
  let entry: CounterEntry | undefined;
  const find = (): CounterEntry | undefined => {
    if (typeof m.hashMap !== 'object' || m.hashMap === null) return undefined;
    if (m.hashMap[key] === undefined) child.inc(0);
    const e = m.hashMap[key] as CounterEntry | undefined;
    map = m.hashMap;
    return typeof e?.value === 'number' ? e : undefined;
  };
  entry = find();
  if (entry === undefined) return child;
  return {
    inc() {
      if (m.hashMap !== map) entry = find();
      if (entry === undefined) return child.inc();
      entry.value += 1;
    },
  };
}

/** A histogram's series, by label values in label order. */
export function histogramCell(metric: Histogram<string>, values: readonly string[]): HistogramCell {
  const m = metric as unknown as Internals & { zero(labels: object): void };
  const child = metric.labels(...values);
  if (
    !Array.isArray(m.sortedLabelNames) ||
    !Array.isArray(m.labelNames) ||
    !Array.isArray(m.upperBounds) ||
    typeof m.zero !== 'function'
  ) {
    return child;
  }
  const labels = labelsOf(m.labelNames, values);
  const key = keyOf(m.sortedLabelNames, labels);
  const bounds = m.upperBounds;
  // The bucket keys as prom-client writes them: the bound as a string, made once.
  const keys = bounds.map(String);
  let map: Record<string, unknown> | undefined;
  let entry: HistogramEntry | undefined;
  const find = (): HistogramEntry | undefined => {
    if (typeof m.hashMap !== 'object' || m.hashMap === null) return undefined;
    if (m.hashMap[key] === undefined) m.zero(labels);
    const e = m.hashMap[key] as HistogramEntry | undefined;
    map = m.hashMap;
    return typeof e?.count === 'number' && typeof e.bucketValues === 'object' ? e : undefined;
  };
  entry = find();
  if (entry === undefined) return child;
  return {
    observe(value) {
      if (m.hashMap !== map) entry = find();
      const e = entry;
      if (e === undefined || !Number.isFinite(value)) return child.observe(value);
      e.sum += value;
      e.count += 1;
      // The first bound at or above the value (prom-client's findBound); above all: +Inf only.
      for (let i = 0; i < bounds.length; i++) {
        if (value <= bounds[i]!) {
          e.bucketValues[keys[i]!]! += 1;
          break;
        }
      }
    },
  };
}
