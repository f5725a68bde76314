import fs from 'node:fs';
import path from 'node:path';
import { Histogram, Summary } from 'prom-client';
import { createGateway } from '@turnpike/gateway';

const DASHBOARD_PATH = path.join(__dirname, '..', 'docs', 'grafana', 'turnpike.json');

/** One metric the gateway registers: its name, its label names and whether it has _bucket/_sum/_count. */
interface Exported {
  labels: Set<string>;
  histogram: boolean;
  summary: boolean;
}

interface Panel {
  id?: number;
  title?: string;
  type?: string;
  datasource?: { type?: string; uid?: string };
  targets?: { expr?: string; refId?: string; datasource?: { type?: string; uid?: string } }[];
  panels?: Panel[];
}

interface Variable {
  name: string;
  type: string;
  query?: unknown;
  definition?: string;
  datasource?: { type?: string; uid?: string };
  multi?: boolean;
  includeAll?: boolean;
  allValue?: string;
}

interface Dashboard {
  __inputs?: { name: string; type: string; pluginId: string }[];
  schemaVersion: number;
  title: string;
  uid: string;
  panels: Panel[];
  templating: { list: Variable[] };
}

const METRIC = /\bgateway_[a-zA-Z0-9_:]*/g;
const SUFFIX = /_(bucket|sum|count)$/;

/** The gateway_ metric names a PromQL expression uses, in order, duplicates dropped. */
function metricNames(expr: string): string[] {
  return [...new Set(expr.match(METRIC) ?? [])];
}

/**
 * The name an exported metric goes by, for a series name: itself when exported as such, else
 * the histogram (or summary) it is the _bucket/_sum/_count of; undefined when none.
 */
function exportedNameOf(name: string, exported: Map<string, Exported>): string | undefined {
  if (exported.has(name)) return name;
  const m = SUFFIX.exec(name);
  if (m === null) return undefined;
  const base = exported.get(name.slice(0, -m[0].length));
  if (base === undefined) return undefined;
  if (base.histogram || (base.summary && m[1] !== 'bucket')) return name.slice(0, -m[0].length);
  return undefined;
}

/** The metric names in these expressions the gateway does not export (empty: all known). */
function unknownMetrics(exprs: string[], exported: Map<string, Exported>): string[] {
  const unknown = new Set<string>();
  for (const expr of exprs) {
    for (const name of metricNames(expr)) {
      if (exportedNameOf(name, exported) === undefined) unknown.add(name);
    }
  }
  return [...unknown];
}

/** `metric{label…}` matchers naming a label the metric does not have (`le` is a bucket's own). */
function unknownLabels(exprs: string[], exported: Map<string, Exported>): string[] {
  const wrong: string[] = [];
  const selector = /\b(gateway_[a-zA-Z0-9_:]*)\s*\{([^}]*)\}/g;
  for (const expr of exprs) {
    for (const [, name = '', matchers = ''] of expr.matchAll(selector)) {
      const base = exportedNameOf(name, exported);
      if (base === undefined) continue;
      const labels = exported.get(base)!.labels;
      for (const [, label = ''] of matchers.matchAll(
        /([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)/g,
      )) {
        if (!labels.has(label) && !(label === 'le' && name.endsWith('_bucket'))) {
          wrong.push(`${name}{${label}}`);
        }
      }
    }
  }
  return wrong;
}

/** Every panel, rows and the panels nested in collapsed rows included. */
function allPanels(panels: Panel[]): Panel[] {
  return panels.flatMap((p) => [p, ...allPanels(p.panels ?? [])]);
}

/** Every string under an `expr` key anywhere in the JSON (panel targets, annotations, …). */
function exprsIn(node: unknown): string[] {
  if (Array.isArray(node)) return node.flatMap(exprsIn);
  if (node === null || typeof node !== 'object') return [];
  return Object.entries(node).flatMap(([key, value]) =>
    key === 'expr' && typeof value === 'string' ? [value] : exprsIn(value),
  );
}

/** The query text of a templating variable (a string, or the editor's `{ query }` object). */
function variableQuery(v: Variable): string | undefined {
  if (typeof v.query === 'string') return v.query;
  if (v.query !== null && typeof v.query === 'object' && 'query' in v.query) {
    const q = v.query.query;
    return typeof q === 'string' ? q : undefined;
  }
  return undefined;
}

function templatingQueries(d: Dashboard): string[] {
  return d.templating.list
    .filter((v) => v.type === 'query')
    .flatMap((v) => [variableQuery(v), v.definition])
    .filter((q): q is string => q !== undefined && q !== '');
}

const raw = fs.readFileSync(DASHBOARD_PATH, 'utf8');
const dashboard = JSON.parse(raw) as Dashboard;
const panels = allPanels(dashboard.panels);
const queryPanels = panels.filter((p) => p.type !== 'row');
const panelExprs = exprsIn(dashboard);
const allQueries = [...panelExprs, ...templatingQueries(dashboard)];

let exported: Map<string, Exported>;

beforeAll(async () => {
  const gateway = createGateway({
    services: { svc: { targets: ['http://127.0.0.1:1'] } },
    routes: [{ path: '/x', service: 'svc' }],
    metrics: true,
  });
  try {
    exported = new Map(
      gateway.metrics!.registry.getMetricsAsArray().map((m) => [
        m.name,
        {
          labels: new Set((m as unknown as { labelNames?: string[] }).labelNames ?? []),
          histogram: m instanceof Histogram,
          summary: m instanceof Summary,
        },
      ]),
    );
  } finally {
    await gateway.close();
  }
});

describe('the metric-name checker itself', () => {
  test('extracts every gateway_ name from an expression, once each', () => {
    expect(
      metricNames(
        'sum(rate(gateway_requests_total{status=~"5.."}[$__rate_interval])) / sum(rate(gateway_requests_total[5m])) + gateway_hedges_total',
      ),
    ).toEqual(['gateway_requests_total', 'gateway_hedges_total']);
  });

  test('accepts the exported names and the _bucket/_sum/_count of a histogram', () => {
    expect(
      unknownMetrics(
        [
          'rate(gateway_requests_total[1m])',
          'histogram_quantile(0.99, sum by (le) (rate(gateway_request_duration_seconds_bucket[1m])))',
          'gateway_request_duration_seconds_sum / gateway_request_duration_seconds_count',
        ],
        exported,
      ),
    ).toEqual([]);
  });

  test('catches a misspelt metric name such as gateway_requests_totall', () => {
    expect(unknownMetrics(['sum(rate(gateway_requests_totall[1m]))'], exported)).toEqual([
      'gateway_requests_totall',
    ]);
  });

  test('refuses _bucket/_count on a counter, which has no such series', () => {
    expect(
      unknownMetrics(['gateway_requests_total_bucket', 'gateway_hedges_total_count'], exported),
    ).toEqual(['gateway_requests_total_bucket', 'gateway_hedges_total_count']);
  });

  test('catches a matcher on a label the metric does not have', () => {
    expect(
      unknownLabels(
        [
          'gateway_requests_total{servce=~"$service",route=~"$route"}',
          'gateway_upstream_duration_seconds_bucket{le="0.1",service="a"}',
        ],
        exported,
      ),
    ).toEqual(['gateway_requests_total{servce}']);
  });
});

describe('the Grafana dashboard docs/grafana/turnpike.json', () => {
  test('is JSON with a title, uid and schemaVersion 39 or later', () => {
    expect(() => JSON.parse(raw) as unknown).not.toThrow();
    expect(dashboard.title).toBeTruthy();
    expect(dashboard.uid).toBeTruthy();
    expect(dashboard.schemaVersion).toBeGreaterThanOrEqual(39);
  });

  test('asks for a Prometheus data source on import (DS_PROMETHEUS)', () => {
    expect(dashboard.__inputs).toContainEqual(
      expect.objectContaining({
        name: 'DS_PROMETHEUS',
        type: 'datasource',
        pluginId: 'prometheus',
      }),
    );
  });

  test('has the datasource, route and service variables, the last two multi-value with All', () => {
    const vars = new Map(dashboard.templating.list.map((v) => [v.name, v]));
    expect(vars.get('datasource')).toMatchObject({ type: 'datasource', query: 'prometheus' });
    for (const name of ['route', 'service']) {
      const v = vars.get(name)!;
      expect(v).toMatchObject({
        type: 'query',
        multi: true,
        includeAll: true,
        datasource: { type: 'prometheus', uid: '${datasource}' },
      });
      expect(variableQuery(v)).toMatch(new RegExp(`^label_values\\(gateway_\\w+,\\s*${name}\\)$`));
      // "All" must also match the unmatched route "" (404s), so not the default alternation.
      expect(v.allValue).toBe('.*');
    }
  });

  test('has the panels the issue asks for, and the extras', () => {
    const titles = queryPanels.map((p) => p.title);
    for (const title of [
      'Request rate by route',
      'Error rate (5xx share) by route',
      'p50 latency by route',
      'p99 latency by route',
      'Upstream health',
      'Circuit breaker state',
      'Limiter decisions',
      'Cache hit ratio',
      'Upstream latency p99 by service',
      'Upstream errors by kind',
      'Retries and hedges',
      'Upstream in-flight',
      'Auth decisions',
    ]) {
      expect(titles).toContain(title);
    }
  });

  test('gives every panel, rows and nested panels included, a unique id', () => {
    const ids = panels.map((p) => p.id);
    expect(ids.every((id) => typeof id === 'number')).toBe(true);
    expect(new Set(ids).size).toBe(ids.length);
  });

  test('gives every panel at least one target, and every target a unique refId', () => {
    expect(queryPanels.filter((p) => (p.targets ?? []).length === 0).map((p) => p.title)).toEqual(
      [],
    );
    for (const p of queryPanels) {
      const refIds = p.targets!.map((t) => t.refId);
      expect(new Set(refIds).size).toBe(refIds.length);
    }
  });

  test('queries every panel target through the ${datasource} variable', () => {
    for (const p of queryPanels) {
      expect(p.datasource).toEqual({ type: 'prometheus', uid: '${datasource}' });
      for (const t of p.targets!) {
        expect({ panel: p.title, datasource: t.datasource }).toEqual({
          panel: p.title,
          datasource: { type: 'prometheus', uid: '${datasource}' },
        });
      }
    }
  });

  test('uses at least one gateway_ metric in every query', () => {
    expect(panelExprs.length).toBeGreaterThanOrEqual(queryPanels.length);
    const withoutMetric = allQueries.filter((q) => metricNames(q).length === 0);
    expect(withoutMetric).toEqual([]);
  });

  test('uses only metric names a real gateway exports', () => {
    expect(exported.size).toBeGreaterThan(0);
    expect(unknownMetrics(allQueries, exported)).toEqual([]);
  });

  test('filters only on labels the metrics have', () => {
    expect(unknownLabels(allQueries, exported)).toEqual([]);
  });

  test('takes rates over $__rate_interval, not a fixed window', () => {
    const fixed = panelExprs.filter((e) => /\[\d+[smhdw]\]/.test(e));
    expect(fixed).toEqual([]);
    const ranged = panelExprs.filter((e) => /\b(rate|increase)\(/.test(e));
    expect(ranged.length).toBeGreaterThan(0);
    for (const e of ranged) expect(e).toContain('[$__rate_interval]');
  });

  test('maps the circuit breaker state values to closed, open and half-open', () => {
    const breaker = queryPanels.find((p) => p.title === 'Circuit breaker state') as Panel & {
      fieldConfig: { defaults: { mappings: { options: Record<string, { text: string }> }[] } };
    };
    const texts = Object.fromEntries(
      breaker.fieldConfig.defaults.mappings.flatMap((m) =>
        Object.entries(m.options).map(([value, o]) => [value, o.text]),
      ),
    );
    expect(texts).toEqual({ 0: 'closed', 1: 'open', 2: 'half-open' });
  });
});
