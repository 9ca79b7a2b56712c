//! Engine benchmarks: placement throughput in a steady mix (uniform and hot-SKU), and
//! hold expiry among 1,000,000 open holds. `cargo bench -p allot-benches --bench engine`.

use std::collections::VecDeque;
use std::hint::black_box;
use std::time::{Duration, Instant};

use allot_benches::{
    apply_ok, build_book, close_window, placed, steady_book, steady_orders, Orders,
};
use allot_engine::{Command, Effect, Event, Ledger, OrderId};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

/// The allocator the `allot` binary runs the engine with.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Each iteration places one 3-line order and runs the lifecycle commands that keep
/// the mix steady (confirm + ship, or cancel, of the order placed 1,000 before). Like
/// the server's shard, which has a batch of requests in hand, the loop applies each
/// order with the next one as its hint (`Ledger::apply_hinting`).
fn steady(c: &mut Criterion, name: &str, hot: bool, retention_s: u64) {
    let mut ledger = steady_book(retention_s);
    let mut orders = steady_orders(hot);
    let mut events = Vec::with_capacity(64);
    // One millisecond per order, so that a retention lets closed orders go.
    let mut now_ms = 1;
    let mut group = c.benchmark_group("engine");
    group.throughput(Throughput::Elements(1));
    group.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                now_ms += 1;
                let (order, upcoming) = orders.next_and_upcoming();
                let outcome =
                    ledger.apply_hinting(now_ms, black_box(order), Some(upcoming), &mut events);
                let id = placed(outcome);
                close_window(&mut ledger, now_ms, id, &mut events);
                events.clear();
            }
            start.elapsed()
        });
    });
    group.finish();
}

/// Every order is kept as history: the book grows without bound, and each order
/// also pays for fresh memory.
fn place_3_lines(c: &mut Criterion) {
    steady(c, "place_3_lines", false, 0);
}

fn place_3_lines_hot(c: &mut Criterion) {
    steady(c, "place_3_lines_hot", true, 0);
}

/// The same mix with a one-second order retention: closed orders leave the book, so
/// the book stays bounded and memory is reused (the steady state of a long-running
/// server that sets a retention).
fn place_3_lines_retained(c: &mut Criterion) {
    steady(c, "place_3_lines_retained", false, 1);
}

/// Each iteration is one `Tick` that expires `EXPIRED_PER_TICK` holds out of
/// `OPEN_HOLDS` open ones; the expired orders are replaced (untimed) so the number of
/// open holds stays level. Orders are placed in groups of `EXPIRED_PER_TICK` sharing
/// one millisecond, so each group shares a deadline and the clock only moves forward.
fn tick_expire(c: &mut Criterion) {
    const OPEN_HOLDS: u64 = 1_000_000;
    const EXPIRED_PER_TICK: u64 = 1_000;
    const TTL_S: u64 = 900;
    let mut ledger = build_book(TTL_S);
    let mut orders = Orders::new(11, false);
    let mut events = Vec::new();
    let mut place_group = |ledger: &mut Ledger, now_ms: u64, events: &mut Vec<Event>| {
        for _ in 0..EXPIRED_PER_TICK {
            apply_ok(ledger, now_ms, &orders.next_order(), events);
            events.clear();
        }
    };
    let mut groups: VecDeque<u64> = (0..OPEN_HOLDS / EXPIRED_PER_TICK).collect();
    for &at in &groups {
        place_group(&mut ledger, at, &mut events);
    }
    let mut group = c.benchmark_group("engine");
    group.throughput(Throughput::Elements(EXPIRED_PER_TICK));
    group.bench_function("tick_expire", |b| {
        b.iter_custom(|iters| {
            let mut timed = Duration::ZERO;
            for _ in 0..iters {
                let oldest = groups
                    .pop_front()
                    .expect("groups are replaced as they expire");
                let now_ms = oldest + TTL_S * 1000;
                let start = Instant::now();
                let outcome = ledger.apply(now_ms, black_box(&Command::Tick), &mut events);
                timed += start.elapsed();
                assert_eq!(
                    outcome.result,
                    Ok(Effect::Ticked {
                        expired: EXPIRED_PER_TICK as u32
                    })
                );
                events.clear();
                place_group(&mut ledger, now_ms, &mut events);
                groups.push_back(now_ms);
            }
            timed
        });
    });
    group.finish();
    black_box(ledger.order(OrderId(1)));
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(5));
    targets = place_3_lines, place_3_lines_hot, place_3_lines_retained, tick_expire
}
criterion_main!(benches);
