//! The steady mix of `engine/place_3_lines`, timed in rounds of 1,000,000 orders with
//! placements and lifecycle commands (confirm + ship, or cancel) timed apart, so a
//! change can be traced to the command it affects.
//! `cargo run --release -p allot-benches --example engine_mix [-- RETENTION_S [hot]]`
//! (a retention of 0 keeps every order, as `place_3_lines` does; 1 is the
//! `place_3_lines_retained` mix). Each timer read adds about 20 ns to its side. As in
//! the benchmark, each order is applied with the next as its hint
//! (`Ledger::apply_hinting`); `ALLOT_MIX_NO_AHEAD=1` applies orders without the hint. Each
//! round also reports its slowest placement (a book that grows regrows its indexes
//! now and then, inside one placement).
//!
//! `ALLOT_MIX_ROUNDS=N` sets the rounds (default 7). `ALLOT_MIX_PREFAULT=1` first runs
//! the whole mix untimed (hinted like the timed run, so that a profile of the process
//! stays true to the timed run) and drops its book; with `MIMALLOC_PURGE_DELAY=-1`
//! (freed memory kept) the timed run then reuses memory already faulted in, which
//! takes the VM's page-fault costs out of a growing book's figure.

use std::time::{Duration, Instant};

use allot_benches::{close_window, placed, steady_book, steady_orders};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const ROUNDS: u32 = 7;
const ORDERS_PER_ROUND: u32 = 1_000_000;

fn main() {
    let rounds: u32 = std::env::var("ALLOT_MIX_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(ROUNDS);
    let mut args = std::env::args().skip(1);
    let retention_s: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(0);
    let hot = args.next().is_some_and(|a| a == "hot");
    if std::env::var_os("ALLOT_MIX_PREFAULT").is_some() {
        // Run the whole mix once untimed and drop its book, so that (with
        // `MIMALLOC_PURGE_DELAY=-1`, which keeps freed memory) the timed run reuses
        // memory the process already faulted in. It hints each order as the timed
        // run does, so that a profile of the whole process shows the timed run's
        // costs (unhinted, the key index's misses would dominate it).
        let mut ledger = steady_book(retention_s);
        let mut orders = steady_orders(hot);
        let mut events = Vec::with_capacity(64);
        for now_ms in 2..u64::from(rounds) * u64::from(ORDERS_PER_ROUND) + 2 {
            let (order, upcoming) = orders.next_and_upcoming();
            let outcome = ledger.apply_hinting(now_ms, order, Some(upcoming), &mut events);
            let id = placed(outcome);
            close_window(&mut ledger, now_ms, id, &mut events);
            events.clear();
        }
    }
    let mut ledger = steady_book(retention_s);
    let mut orders = steady_orders(hot);
    let mut events = Vec::with_capacity(64);
    let mut now_ms = 1;
    let ahead = std::env::var_os("ALLOT_MIX_NO_AHEAD").is_none();
    for round in 0..rounds {
        let (mut placing, mut closing) = (Duration::ZERO, Duration::ZERO);
        let mut slowest = Duration::ZERO;
        let start = Instant::now();
        for _ in 0..ORDERS_PER_ROUND {
            now_ms += 1;
            let placing_from = Instant::now();
            let outcome = if ahead {
                let (order, upcoming) = orders.next_and_upcoming();
                ledger.apply_hinting(now_ms, order, Some(upcoming), &mut events)
            } else {
                ledger.apply(now_ms, orders.next_order(), &mut events)
            };
            let took = placing_from.elapsed();
            placing += took;
            slowest = slowest.max(took);
            let id = placed(outcome);
            let closing_from = Instant::now();
            close_window(&mut ledger, now_ms, id, &mut events);
            closing += closing_from.elapsed();
            events.clear();
        }
        let per_order = |d: Duration| d.as_nanos() / u128::from(ORDERS_PER_ROUND);
        println!(
            "round {round}: {} ns per order (placing {} ns, closing {} ns; slowest placement {} µs)",
            per_order(start.elapsed()),
            per_order(placing),
            per_order(closing),
            slowest.as_micros()
        );
    }
}
