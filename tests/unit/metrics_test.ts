// The metrics: counting, the Prometheus text format, summing across workers; the per-address counter.
import assert from "node:assert/strict";
import { AddressCounter } from "../../lib/limits.ts";
import { exposition, label, mergeSnapshots, Metrics } from "../../lib/metrics.ts";
import { parseExposition } from "../helpers/prometheus.ts";

Deno.test("metrics: counters by label, histograms with cumulative buckets, gauges, as Prometheus text", () => {
  const metrics = new Metrics();
  metrics.count("websockify_connections_total", label("kind", "ws"));
  metrics.count("websockify_connections_total", label("kind", "ws"));
  metrics.count("websockify_connections_total", label("kind", "wss"));
  metrics.count("websockify_bytes_total", 'direction="from_client"', 1234);
  metrics.observe("websockify_session_duration_seconds", 0.5);
  metrics.observe("websockify_session_duration_seconds", 30);
  metrics.observe("websockify_session_duration_seconds", 1e6);
  metrics.activeSessions = 3;
  const text = exposition(metrics.snapshot());
  const samples = parseExposition(text);
  assert.equal(samples.get('websockify_connections_total{kind="ws"}'), 2);
  assert.equal(samples.get('websockify_connections_total{kind="wss"}'), 1);
  assert.equal(samples.get('websockify_bytes_total{direction="from_client"}'), 1234);
  assert.equal(
    samples.get("websockify_refusals_total"),
    0,
    "an uncounted counter still shows, at 0",
  );
  assert.equal(samples.get('websockify_session_duration_seconds_bucket{le="1"}'), 1);
  assert.equal(samples.get('websockify_session_duration_seconds_bucket{le="60"}'), 2);
  assert.equal(samples.get('websockify_session_duration_seconds_bucket{le="86400"}'), 2);
  assert.equal(samples.get('websockify_session_duration_seconds_bucket{le="+Inf"}'), 3);
  assert.equal(samples.get("websockify_session_duration_seconds_count"), 3);
  assert.equal(samples.get("websockify_session_duration_seconds_sum"), 1e6 + 30.5);
  assert.equal(samples.get("websockify_sessions_active"), 3);
  assert.ok(samples.get("process_open_fds")! > 2);
  assert.ok(samples.get("process_resident_memory_bytes")! > 1e6);
  assert.match(text, /# TYPE websockify_session_duration_seconds histogram\n/);
});

Deno.test("metrics: label values are escaped; snapshots of workers add up", () => {
  assert.equal(label("reason", 'a"b\\c\nd'), 'reason="a\\"b\\\\c\\nd"');
  const one = new Metrics();
  const two = new Metrics();
  one.count("websockify_sessions_total", "", 2);
  two.count("websockify_sessions_total", "", 5);
  two.count("websockify_refusals_total", label("reason", "http_405"));
  one.observe("websockify_token_lookup_seconds", 0.002);
  two.observe("websockify_token_lookup_seconds", 0.2);
  one.activeSessions = 1;
  two.activeSessions = 4;
  two.draining = true;
  const samples = parseExposition(exposition(mergeSnapshots([one.snapshot(), two.snapshot()])));
  assert.equal(samples.get("websockify_sessions_total"), 7);
  assert.equal(samples.get('websockify_refusals_total{reason="http_405"}'), 1);
  assert.equal(samples.get("websockify_sessions_active"), 5);
  assert.equal(samples.get("websockify_workers"), 2);
  assert.equal(samples.get("websockify_draining"), 1);
  assert.equal(samples.get('websockify_token_lookup_seconds_bucket{le="0.005"}'), 1);
  assert.equal(samples.get("websockify_token_lookup_seconds_count"), 2);
});

Deno.test("AddressCounter: a bound per address, entries gone at zero, 0 means no bound", () => {
  const counter = new AddressCounter(2);
  assert.ok(counter.tryEnter("10.0.0.1"));
  assert.ok(counter.tryEnter("10.0.0.1"));
  assert.equal(counter.tryEnter("10.0.0.1"), false);
  assert.ok(counter.tryEnter("10.0.0.2"));
  assert.deepEqual([counter.total, counter.addresses], [3, 2]);
  counter.leave("10.0.0.1");
  assert.ok(counter.tryEnter("10.0.0.1"));
  for (let i = 0; i < 3; i++) counter.leave("10.0.0.1");
  counter.leave("10.0.0.2");
  counter.leave("never-seen");
  assert.deepEqual([counter.total, counter.addresses], [0, 0]);
  const unbounded = new AddressCounter(0);
  for (let i = 0; i < 1000; i++) assert.ok(unbounded.tryEnter("x"));
});
