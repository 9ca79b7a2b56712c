//! WAL benchmarks on real files in a temporary directory (`ALLOT_BENCH_DIR` picks
//! where; default: the system temp dir).
//!
//! - `wal/group_commit`: 100-byte records from 64 concurrent producers, fsync mode.
//!   Each producer keeps up to `ALLOT_BENCH_WINDOW` (default 32) records in flight,
//!   like a connection pipelining requests, so one fdatasync can cover a batch of
//!   hundreds. Criterion reports records/s; a summary prints fsyncs/s, records per
//!   fsync and the batch-size distribution from `Wal::stats`.
//! - `wal/replay`: `open` + iterate a log of `ALLOT_BENCH_REPLAY_BYTES` (default
//!   1 GiB) of 100-byte records, checking every CRC and the hash chain. Criterion
//!   reports bytes/s; the summary prints records/s and restart seconds per GiB.
//!   The log is freshly written, so it is read from the page cache.

// Rates and sizes are printed as f64; 53 bits of precision are plenty for a report.
#![allow(clippy::cast_precision_loss)]

use std::path::PathBuf;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use allot_wal::{open, Durability, FileStorage, Wal, WalConfig, WalStats, BATCH_RECORDS_BOUNDS};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const RECORD_BYTES: usize = 100;
const PRODUCERS: usize = 64;
const MIB: f64 = 1_048_576.0;
const GIB: f64 = 1_073_741_824.0;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn bench_dir() -> tempfile::TempDir {
    let base = std::env::var_os("ALLOT_BENCH_DIR").map_or_else(std::env::temp_dir, PathBuf::from);
    tempfile::tempdir_in(base).expect("creating a bench directory")
}

fn open_wal(storage: FileStorage, config: WalConfig) -> Wal {
    open(storage, config)
        .expect("opening the bench log")
        .finish()
        .expect("starting the bench log")
}

/// Sends `total` records from `PRODUCERS` threads, each with `window` in flight.
fn produce(wal: &Wal, total: u64, window: usize) -> Duration {
    let per_producer = total.div_ceil(PRODUCERS as u64);
    let started = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..PRODUCERS {
            scope.spawn(|| {
                let (tx, rx) = mpsc::sync_channel::<allot_wal::Completion>(window);
                let mut in_flight = 0;
                for _ in 0..per_producer {
                    if in_flight == window {
                        rx.recv().expect("completion").expect("durable");
                        in_flight -= 1;
                    }
                    let tx = tx.clone();
                    wal.submit(
                        vec![vec![7; RECORD_BYTES]],
                        Box::new(move |result| {
                            let _ = tx.send(result);
                        }),
                    )
                    .expect("submit");
                    in_flight += 1;
                }
                for _ in 0..in_flight {
                    rx.recv().expect("completion").expect("durable");
                }
            });
        }
    });
    started.elapsed()
}

fn diff(after: &WalStats, before: &WalStats) -> WalStats {
    WalStats {
        records: after.records - before.records,
        batches: after.batches - before.batches,
        fsyncs: after.fsyncs - before.fsyncs,
        fsync_ns_sum: after.fsync_ns_sum - before.fsync_ns_sum,
        batch_records_buckets: std::array::from_fn(|i| {
            after.batch_records_buckets[i] - before.batch_records_buckets[i]
        }),
        ..after.clone()
    }
}

fn group_commit(c: &mut Criterion) {
    let window = env_usize("ALLOT_BENCH_WINDOW", 32);
    let dir = bench_dir();
    let storage = FileStorage::new(dir.path()).expect("bench storage");
    let wal = open_wal(storage, WalConfig::default());
    let mut group = c.benchmark_group("wal");
    group.throughput(Throughput::Elements(1));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    let before = wal.stats();
    let mut measured = Duration::ZERO;
    group.bench_function("group_commit", |b| {
        b.iter_custom(|iters| {
            let elapsed = produce(&wal, iters, window);
            measured += elapsed;
            elapsed
        });
    });
    group.finish();
    let stats = diff(&wal.stats(), &before);
    let secs = measured.as_secs_f64();
    println!(
        "wal/group_commit summary: {PRODUCERS} producers x {window} in flight, {RECORD_BYTES}-byte \
         records, fsync mode, dir {}",
        dir.path().display()
    );
    println!(
        "  {} records in {secs:.2} s = {:.0} records/s; {} fsyncs = {:.0} fsyncs/s; \
         {:.1} records/fsync; mean fsync {:.3} ms",
        stats.records,
        stats.records as f64 / secs,
        stats.fsyncs,
        stats.fsyncs as f64 / secs,
        stats.records as f64 / stats.fsyncs.max(1) as f64,
        stats.fsync_ns_sum as f64 / stats.fsyncs.max(1) as f64 / 1e6,
    );
    print!("  batch sizes (records <= bound: batches):");
    for (i, count) in stats.batch_records_buckets.iter().enumerate() {
        if *count > 0 {
            match BATCH_RECORDS_BOUNDS.get(i) {
                Some(bound) => print!(" <={bound}: {count}"),
                None => print!(" more: {count}"),
            }
        }
    }
    println!();
    wal.close().expect("closing the bench log");
}

/// Writes a log of about `bytes` bytes of 100-byte records; returns the record count.
fn build_log(storage: &FileStorage, bytes: u64) -> u64 {
    let config = WalConfig {
        durability: Durability::Async {
            sync_interval: Duration::from_secs(1),
        },
        ..WalConfig::default()
    };
    let wal = open_wal(storage.clone(), config);
    let records = bytes / (RECORD_BYTES as u64 + 48);
    let chunk = 16_384;
    let mut written = 0;
    while written < records {
        let n = chunk.min(records - written);
        let batch = (0..n)
            .map(|i| vec![(i % 251) as u8; RECORD_BYTES])
            .collect();
        wal.submit(batch, Box::new(|_| {})).expect("submit");
        written += n;
    }
    wal.flush().expect("flush");
    wal.close().expect("close");
    records
}

fn replay(c: &mut Criterion) {
    let bytes = env_usize("ALLOT_BENCH_REPLAY_BYTES", 1 << 30) as u64;
    let dir = bench_dir();
    let storage = FileStorage::new(dir.path()).expect("bench storage");
    let built = Instant::now();
    let records = build_log(&storage, bytes);
    println!(
        "wal/replay: built {records} records ({:.1} MiB) in {:.1} s",
        bytes as f64 / MIB,
        built.elapsed().as_secs_f64()
    );
    let mut group = c.benchmark_group("wal");
    group.throughput(Throughput::Bytes(bytes));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    let mut best = Duration::MAX;
    group.bench_function("replay", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let started = Instant::now();
                let mut replay = open(storage.clone(), WalConfig::default()).expect("open");
                let mut count = 0_u64;
                while let Some((_, payload)) = replay.next_ref().expect("replay") {
                    count += payload.len() as u64 / RECORD_BYTES as u64;
                }
                let elapsed = started.elapsed();
                assert_eq!(count, records);
                best = best.min(elapsed);
                total += elapsed;
            }
            total
        });
    });
    group.finish();
    let secs = best.as_secs_f64();
    let gib = bytes as f64 / GIB;
    println!(
        "wal/replay summary (best run): {records} records, {:.1} MiB in {secs:.3} s = {:.0} records/s, \
         {:.0} MB/s; restart time {:.2} s per GiB of log",
        bytes as f64 / MIB,
        records as f64 / secs,
        bytes as f64 / secs / 1e6,
        secs / gib,
    );
}

criterion_group!(benches, group_commit, replay);
criterion_main!(benches);
