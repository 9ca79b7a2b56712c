//! Resident memory of a ledger holding 1,000,000 open 3-line orders (plus the
//! benchmark book of 10,000 SKUs × 8 warehouses and 1,000 dealers).
//! Also times a snapshot of that book and its restore.
//! `cargo run --release -p allot-benches --example ledger_memory [-- ORDERS [history]]`.
//!
//! With `history`, the orders go through the steady mix of `engine/place_3_lines`
//! instead (each confirmed and shipped, or cancelled, 1,000 orders after it was
//! placed), so the book holds closed orders: what history costs a book that keeps it.

use allot_benches::{
    apply_ok, build_book, close_window, placed, steady_book, steady_orders, Orders,
};
use allot_engine::Ledger;

fn resident_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn main() {
    let orders: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let history = std::env::args().nth(2).is_some_and(|a| a == "history");
    let base_kib = resident_kib();
    let (ledger, book_kib) = if history {
        closed_book(orders)
    } else {
        open_book(orders)
    };
    let full_kib = resident_kib();
    let open = ledger.order_count();
    // Snapshots serialize the whole book on the shard thread: how long that takes.
    let started = std::time::Instant::now();
    let bytes = ledger.snapshot();
    let snapshot_s = started.elapsed().as_secs_f64();
    let started = std::time::Instant::now();
    let restored = allot_engine::Ledger::restore(&bytes).expect("a fresh snapshot restores");
    let restore_s = started.elapsed().as_secs_f64();
    assert_eq!(restored.order_count(), open);
    println!(
        "book (10,000 SKUs x 8 warehouses, 1,000 dealers): {} MiB",
        (book_kib - base_kib) / 1024
    );
    let kind = if history { "closed (history)" } else { "open" };
    println!(
        "{open} {kind} 3-line orders: {} MiB more ({} bytes per order); total resident {} MiB",
        (full_kib - book_kib) / 1024,
        (full_kib - book_kib) * 1024 / open.max(1),
        full_kib / 1024
    );
    println!(
        "snapshot: {} MiB in {snapshot_s:.2} s; restore (decode, check, re-index): {restore_s:.2} s",
        bytes.len() >> 20
    );
}

/// The benchmark book with `orders` open orders, and the resident KiB of the book
/// before them.
fn open_book(orders: u64) -> (Ledger, u64) {
    let mut ledger = build_book(86_400);
    let book_kib = resident_kib();
    let mut generator = Orders::new(3, false);
    let mut events = Vec::new();
    for _ in 0..orders {
        apply_ok(&mut ledger, 1, &generator.next_order(), &mut events);
        events.clear();
    }
    (ledger, book_kib)
}

/// The benchmark book after `orders` orders of the steady mix (all but the last
/// 1,000 closed), and the resident KiB of the book before them.
fn closed_book(orders: u64) -> (Ledger, u64) {
    let mut ledger = steady_book(0);
    let book_kib = resident_kib();
    let mut pool = steady_orders(false);
    let mut events = Vec::new();
    for now_ms in 2..orders + 2 {
        let outcome = ledger.apply(now_ms, pool.next_order(), &mut events);
        let id = placed(outcome);
        close_window(&mut ledger, now_ms, id, &mut events);
        events.clear();
    }
    (ledger, book_kib)
}
