//! The steady mix of `engine/place_3_lines`, timed in rounds of 1,000,000 orders with
//! placements and lifecycle commands (confirm + ship, or cancel) timed apart, so a
//! change can be traced to the command it affects.
//! `cargo run --release -p allot-benches --example engine_mix [-- RETENTION_S [hot]]`
//! (a retention of 0 keeps every order, as `place_3_lines` does; 1 is the
//! `place_3_lines_retained` mix). Each timer read adds about 20 ns to its side.

use std::time::{Duration, Instant};

use allot_benches::{close_window, steady_book, steady_orders};
use allot_engine::Effect;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const ROUNDS: u32 = 7;
const ORDERS_PER_ROUND: u32 = 1_000_000;

fn main() {
    let mut args = std::env::args().skip(1);
    let retention_s: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(0);
    let hot = args.next().is_some_and(|a| a == "hot");
    let mut ledger = steady_book(retention_s);
    let mut orders = steady_orders(hot);
    let mut events = Vec::with_capacity(64);
    let mut now_ms = 1;
    for round in 0..ROUNDS {
        let (mut placing, mut closing) = (Duration::ZERO, Duration::ZERO);
        let start = Instant::now();
        for _ in 0..ORDERS_PER_ROUND {
            now_ms += 1;
            let placing_from = Instant::now();
            let outcome = ledger.apply(now_ms, orders.next_order(), &mut events);
            placing += placing_from.elapsed();
            let Ok(Effect::OrderPlaced(id)) = outcome.result else {
                panic!("placement refused: {outcome:?}");
            };
            let closing_from = Instant::now();
            close_window(&mut ledger, now_ms, id, &mut events);
            closing += closing_from.elapsed();
            events.clear();
        }
        let per_order = |d: Duration| d.as_nanos() / u128::from(ORDERS_PER_ROUND);
        println!(
            "round {round}: {} ns per order (placing {} ns, closing {} ns)",
            per_order(start.elapsed()),
            per_order(placing),
            per_order(closing)
        );
    }
}
