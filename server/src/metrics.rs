//! Prometheus metrics, rendered by hand in the text format. Nothing here carries a
//! tenant's name, codes or data: labels are outcomes, status classes and shard numbers.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;

use crate::shard::Shards;

/// Upper bounds of the request latency histogram, in seconds.
const LATENCY_BOUNDS_S: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The server's counters.
#[derive(Debug, Default)]
pub struct Metrics {
    orders: Mutex<BTreeMap<&'static str, u64>>,
    responses: Mutex<BTreeMap<u16, u64>>,
    latency_buckets: [AtomicU64; LATENCY_BOUNDS_S.len() + 1],
    latency_ns_sum: AtomicU64,
    requests: AtomicU64,
}

impl Metrics {
    /// Counts an order placement by outcome (`placed`, `replayed` or a rejection code).
    pub fn order(&self, outcome: &'static str) {
        *self.orders.lock().entry(outcome).or_default() += 1;
    }

    /// Records one HTTP request.
    pub fn request(&self, status: u16, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        let bucket = LATENCY_BOUNDS_S
            .iter()
            .position(|&b| seconds <= b)
            .unwrap_or(LATENCY_BOUNDS_S.len());
        self.latency_buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.latency_ns_sum
            .fetch_add(elapsed.as_nanos() as u64, Ordering::Relaxed);
        self.requests.fetch_add(1, Ordering::Relaxed);
        *self.responses.lock().entry(status).or_default() += 1;
    }

    /// The text exposition.
    pub fn render(&self, shards: &Shards) -> String {
        let mut out = String::with_capacity(4096);
        out.push_str("# HELP allot_orders_total Order placements by outcome.\n# TYPE allot_orders_total counter\n");
        for (outcome, n) in self.orders.lock().iter() {
            let _ = writeln!(out, "allot_orders_total{{outcome=\"{outcome}\"}} {n}");
        }
        out.push_str("# HELP allot_http_responses_total HTTP responses by status.\n# TYPE allot_http_responses_total counter\n");
        for (status, n) in self.responses.lock().iter() {
            let _ = writeln!(out, "allot_http_responses_total{{status=\"{status}\"}} {n}");
        }
        out.push_str("# HELP allot_http_request_duration_seconds Request latency.\n# TYPE allot_http_request_duration_seconds histogram\n");
        let mut cumulative = 0;
        for (i, bound) in LATENCY_BOUNDS_S.iter().enumerate() {
            cumulative += self.latency_buckets[i].load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "allot_http_request_duration_seconds_bucket{{le=\"{bound}\"}} {cumulative}"
            );
        }
        let count = self.requests.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "allot_http_request_duration_seconds_bucket{{le=\"+Inf\"}} {count}"
        );
        let ns = self.latency_ns_sum.load(Ordering::Relaxed);
        let sum = format!("{}.{:09}", ns / 1_000_000_000, ns % 1_000_000_000);
        let _ = writeln!(out, "allot_http_request_duration_seconds_sum {sum}");
        let _ = writeln!(out, "allot_http_request_duration_seconds_count {count}");
        render_shards(&mut out, shards);
        out
    }
}

fn render_shards(out: &mut String, shards: &Shards) {
    let gauge =
        |out: &mut String, name: &str, help: &str, kind: &str, value: &dyn Fn(usize) -> u64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for i in 0..shards.len() {
                let _ = writeln!(out, "{name}{{shard=\"{i}\"}} {}", value(i));
            }
        };
    gauge(
        out,
        "allot_shard_queue_depth",
        "Jobs waiting in the shard queue.",
        "gauge",
        &|i| shards.queue_depth(i) as u64,
    );
    gauge(
        out,
        "allot_shard_ready",
        "1 once the shard has replayed its log.",
        "gauge",
        &|i| u64::from(shards.status(i).ready.load(Ordering::Relaxed)),
    );
    gauge(
        out,
        "allot_shard_failed",
        "1 if the shard's log failed.",
        "gauge",
        &|i| u64::from(shards.status(i).failed.load(Ordering::Relaxed)),
    );
    gauge(
        out,
        "allot_replay_records",
        "Log records replayed at start-up.",
        "gauge",
        &|i| shards.status(i).replayed_records.load(Ordering::Relaxed),
    );
    let stats: Vec<Option<allot_wal::WalStats>> = (0..shards.len())
        .map(|i| shards.status(i).wal.get().map(allot_wal::Wal::stats))
        .collect();
    let counter =
        |out: &mut String, name: &str, help: &str, f: &dyn Fn(&allot_wal::WalStats) -> u64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for (i, s) in stats.iter().enumerate() {
                if let Some(s) = s {
                    let _ = writeln!(out, "{name}{{shard=\"{i}\"}} {}", f(s));
                }
            }
        };
    counter(out, "allot_wal_records_total", "Records written.", &|s| {
        s.records
    });
    counter(
        out,
        "allot_wal_batches_total",
        "Group-commit batches.",
        &|s| s.batches,
    );
    counter(out, "allot_wal_fsyncs_total", "fdatasync calls.", &|s| {
        s.fsyncs
    });
    counter(out, "allot_wal_bytes_total", "Bytes appended.", &|s| {
        s.bytes
    });
    counter(
        out,
        "allot_wal_durable_seq",
        "Last durable sequence number.",
        &|s| s.durable_seq,
    );
    histogram(
        out,
        "allot_wal_fsync_latency_us",
        "fdatasync latency (microseconds).",
        &stats,
        &allot_wal::FSYNC_LATENCY_BOUNDS_US,
        |s| &s.fsync_latency_buckets[..],
    );
    histogram(
        out,
        "allot_wal_batch_records",
        "Records per group-commit batch.",
        &stats,
        &allot_wal::BATCH_RECORDS_BOUNDS,
        |s| &s.batch_records_buckets[..],
    );
}

fn histogram(
    out: &mut String,
    name: &str,
    help: &str,
    stats: &[Option<allot_wal::WalStats>],
    bounds: &[u64],
    buckets: fn(&allot_wal::WalStats) -> &[u64],
) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
    for (i, s) in stats.iter().enumerate() {
        let Some(s) = s else { continue };
        let counts = buckets(s);
        let mut cumulative = 0;
        for (bound, n) in bounds.iter().zip(counts) {
            cumulative += n;
            let _ = writeln!(
                out,
                "{name}_bucket{{shard=\"{i}\",le=\"{bound}\"}} {cumulative}"
            );
        }
        let total: u64 = counts.iter().sum();
        let _ = writeln!(out, "{name}_bucket{{shard=\"{i}\",le=\"+Inf\"}} {total}");
        let _ = writeln!(out, "{name}_count{{shard=\"{i}\"}} {total}");
    }
}
