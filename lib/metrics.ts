/**
 * The proxy's metrics, and their Prometheus text exposition (format 0.0.4), written here: a few counters, one
 * gauge and two histograms do not need a client library (the npm ones are built around Node's cluster and
 * process APIs, and would be the proxy's largest dependency).
 *
 * Counting costs a map lookup per event (connections, sessions, lookups), never per message: bytes are added
 * when a session ends. Workers (--workers) each keep their own; the supervisor sums them (`mergeSnapshots`).
 *
 * @module
 */

/** Upper bounds (seconds) of the session duration histogram. */
export const SESSION_SECONDS_BUCKETS = [1, 10, 60, 300, 900, 3600, 14400, 86400];
/** Upper bounds (seconds) of the token lookup histogram. */
export const LOOKUP_SECONDS_BUCKETS = [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5];

/** A histogram's state: counts per bucket (cumulative at exposition), sum and count. */
export interface HistogramState {
  buckets: number[];
  counts: number[];
  sum: number;
  count: number;
}

/** Everything a process has counted, as plain data (what a worker sends its supervisor). */
export interface MetricsSnapshot {
  /** Counter name -> label text (e.g. `kind="ws"`, or "" for none) -> value. */
  counters: Record<string, Record<string, number>>;
  /** Gauge name -> label text -> value. */
  gauges: Record<string, Record<string, number>>;
  histograms: Record<string, HistogramState>;
}

/** What each metric means (HELP) and is (TYPE), in exposition order. */
export const METRIC_HELP: Record<
  string,
  { type: "counter" | "gauge" | "histogram"; help: string }
> = {
  websockify_connections_total: {
    type: "counter",
    help:
      "Connections accepted, by what they turned out to be (ws, wss, http, https, policy, other)",
  },
  websockify_refusals_total: {
    type: "counter",
    help: "Connections or sessions refused, by reason",
  },
  websockify_sessions_active: { type: "gauge", help: "WebSocket sessions open now" },
  websockify_sessions_total: { type: "counter", help: "WebSocket sessions relayed to a target" },
  websockify_session_duration_seconds: {
    type: "histogram",
    help: "How long relayed sessions lasted",
  },
  websockify_bytes_total: {
    type: "counter",
    help: "Bytes relayed by ended sessions, by direction (from_client, to_client)",
  },
  websockify_target_connect_failures_total: {
    type: "counter",
    help: "Sessions whose target could not be reached",
  },
  websockify_token_lookups_total: {
    type: "counter",
    help: "Token lookups by result (found, unknown, refused, error)",
  },
  websockify_token_lookup_seconds: { type: "histogram", help: "Token lookup latency" },
  websockify_tls_handshake_failures_total: {
    type: "counter",
    help: "TLS handshakes that failed or timed out",
  },
  websockify_draining: {
    type: "gauge",
    help: "1 while draining (after SIGTERM with --drain-timeout)",
  },
  process_open_fds: { type: "gauge", help: "Open file descriptors" },
  process_resident_memory_bytes: { type: "gauge", help: "Resident memory" },
  websockify_workers: { type: "gauge", help: "Processes whose metrics are summed here" },
  websockify_worker_sessions_total: {
    type: "counter",
    help: "Sessions relayed, per worker (--workers)",
  },
  websockify_worker_restarts_total: {
    type: "counter",
    help: "Restarts of a worker that died, per worker (--workers)",
  },
};

function newHistogram(buckets: number[]): HistogramState {
  return { buckets, counts: buckets.map(() => 0), sum: 0, count: 0 };
}

/** One process's metrics. */
export class Metrics {
  readonly #counters = new Map<string, Map<string, number>>();
  readonly #histograms = new Map<string, HistogramState>([
    ["websockify_session_duration_seconds", newHistogram(SESSION_SECONDS_BUCKETS)],
    ["websockify_token_lookup_seconds", newHistogram(LOOKUP_SECONDS_BUCKETS)],
  ]);
  /** Sessions open now. */
  activeSessions = 0;
  /** Set while draining. */
  draining = false;

  /** Adds `by` to a counter; `label` is one `name="value"` pair or "". */
  count(name: string, label = "", by = 1): void {
    let series = this.#counters.get(name);
    if (!series) this.#counters.set(name, series = new Map());
    series.set(label, (series.get(label) ?? 0) + by);
  }

  /** Records one observation in a histogram. */
  observe(name: string, value: number): void {
    const histogram = this.#histograms.get(name);
    if (!histogram) throw new Error(`no histogram ${name}`);
    const bucket = histogram.buckets.findIndex((bound) => value <= bound);
    if (bucket !== -1) histogram.counts[bucket]++;
    histogram.sum += value;
    histogram.count++;
  }

  /** The counters, gauges (with this process's fds and memory) and histograms, as plain data. */
  snapshot(): MetricsSnapshot {
    const counters: MetricsSnapshot["counters"] = {};
    for (const [name, series] of this.#counters) counters[name] = Object.fromEntries(series);
    const histograms: MetricsSnapshot["histograms"] = {};
    for (const [name, state] of this.#histograms) {
      histograms[name] = { ...state, counts: [...state.counts] };
    }
    return {
      counters,
      gauges: {
        websockify_sessions_active: { "": this.activeSessions },
        websockify_draining: { "": this.draining ? 1 : 0 },
        process_open_fds: { "": openFileCount() },
        process_resident_memory_bytes: { "": residentMemory() },
        websockify_workers: { "": 1 },
      },
      histograms,
    };
  }
}

/** Sums snapshots (one per worker) into one: counters, gauges and histograms add up. */
export function mergeSnapshots(snapshots: MetricsSnapshot[]): MetricsSnapshot {
  const merged: MetricsSnapshot = { counters: {}, gauges: {}, histograms: {} };
  for (const snapshot of snapshots) {
    for (const kind of ["counters", "gauges"] as const) {
      for (const [name, series] of Object.entries(snapshot[kind])) {
        const into = merged[kind][name] ??= {};
        for (const [label, value] of Object.entries(series)) {
          into[label] = (into[label] ?? 0) + value;
        }
      }
    }
    for (const [name, state] of Object.entries(snapshot.histograms)) {
      const into = merged.histograms[name] ??= newHistogram(state.buckets);
      state.counts.forEach((count, i) => into.counts[i] += count);
      into.sum += state.sum;
      into.count += state.count;
    }
  }
  // A draining flag is 1 if any process drains, not the number of them.
  const draining = merged.gauges.websockify_draining;
  if (draining) draining[""] = Math.min(draining[""] ?? 0, 1);
  return merged;
}

/** A number as the exposition format writes it. */
function formatValue(value: number): string {
  if (Number.isNaN(value)) return "NaN";
  if (value === Infinity) return "+Inf";
  if (value === -Infinity) return "-Inf";
  return String(value);
}

/** The Prometheus text format (0.0.4) of a snapshot: HELP and TYPE lines, then the samples. */
export function exposition(snapshot: MetricsSnapshot): string {
  const lines: string[] = [];
  for (const [name, { type, help }] of Object.entries(METRIC_HELP)) {
    const series = type === "counter"
      ? snapshot.counters[name]
      : type === "gauge"
      ? snapshot.gauges[name]
      : undefined;
    const histogram = type === "histogram" ? snapshot.histograms[name] : undefined;
    if (series === undefined && type === "counter" && !name.startsWith("websockify_worker_")) {
      // A counter nobody counted yet is still shown, at 0 (dashboards need the series to exist).
      lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`, `${name} 0`);
      continue;
    }
    if (type === "histogram" ? !histogram : series === undefined) continue;
    lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
    if (histogram) {
      let cumulative = 0;
      histogram.buckets.forEach((bound, i) => {
        cumulative += histogram.counts[i];
        lines.push(`${name}_bucket{le="${formatValue(bound)}"} ${cumulative}`);
      });
      lines.push(`${name}_bucket{le="+Inf"} ${histogram.count}`);
      lines.push(`${name}_sum ${formatValue(histogram.sum)}`, `${name}_count ${histogram.count}`);
      continue;
    }
    for (const [label, value] of Object.entries(series ?? {})) {
      lines.push(`${name}${label ? `{${label}}` : ""} ${formatValue(value)}`);
    }
  }
  return lines.join("\n") + "\n";
}

/** A label pair, its value escaped as the format requires (backslash, quote, newline). */
export function label(name: string, value: string): string {
  const escaped = value.replaceAll("\\", "\\\\").replaceAll('"', '\\"').replaceAll("\n", "\\n");
  return `${name}="${escaped}"`;
}

function openFileCount(): number {
  try {
    let count = 0;
    for (const _ of Deno.readDirSync("/proc/self/fd")) count++;
    return count;
  } catch {
    return NaN;
  }
}

function residentMemory(): number {
  try {
    return Deno.memoryUsage().rss;
  } catch {
    return NaN;
  }
}
