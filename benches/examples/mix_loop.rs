//! The steady mix of `engine/place_3_lines` as one plain loop, for counting
//! instructions: `run_mix` applies ORDERS orders (each hinted one ahead, as in the
//! benchmark) and closes each 1,000 orders later.
//!
//! ```text
//! cargo build --release -p allot-benches --example mix_loop
//! valgrind --tool=callgrind --toggle-collect='mix_loop::run_mix' \
//!     target/release/examples/mix_loop [ORDERS [RETENTION_S]]
//! ```
//!
//! ORDERS defaults to 200,000 and RETENTION_S to 1 (the `place_3_lines_retained`
//! mix; 0 keeps every order). `--toggle-collect` counts the loop alone, not the
//! book's set-up; divide the total by ORDERS.

use allot_benches::{close_window, placed, steady_book, steady_orders, OrderPool};
use allot_engine::Ledger;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[inline(never)]
fn run_mix(ledger: &mut Ledger, orders: &mut OrderPool, count: u64) {
    let mut events = Vec::with_capacity(64);
    for now_ms in 2..count + 2 {
        let (order, upcoming) = orders.next_and_upcoming();
        let outcome = ledger.apply_hinting(now_ms, order, Some(upcoming), &mut events);
        let id = placed(outcome);
        close_window(ledger, now_ms, id, &mut events);
        events.clear();
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let count: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(200_000);
    let retention_s: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(1);
    let mut ledger = steady_book(retention_s);
    let mut orders = steady_orders(false);
    run_mix(&mut ledger, &mut orders, count);
    std::hint::black_box(&ledger);
}
