//! Touches GIB gibibytes of fresh memory (default 16), then frees it.
//! `cargo run --release -p allot-benches --example warm_memory [-- GIB]`.
//!
//! On the project's VM the first write to guest memory that the host has not backed
//! yet, or has taken back since it was freed, costs about 3 ns per byte; memory the
//! host backs costs the kernel's zeroing alone, about 0.4 ns per byte. Benchmarks that
//! grow the book (`engine/place_3_lines`) pay one or the other for every order's
//! bytes, and moved between 1.2 and 2.9 µs per order with it. Running this just before
//! them makes the figure the engine's own (the host takes the memory back while they
//! run, so warm more than they use; leave room for the system); see
//! docs/PERFORMANCE.md.

use std::time::Instant;

const GIB: usize = 1 << 30;

fn main() {
    let gib: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(16);
    // Every block stays allocated until the end: freeing one would let the next reuse
    // its pages, and fewer than GIB gibibytes would be touched.
    let mut blocks = Vec::with_capacity(gib);
    for n in 0..gib {
        let start = Instant::now();
        // A non-zero fill writes every page.
        blocks.push(std::hint::black_box(vec![1_u8; GIB]));
        let ns_per_byte = start.elapsed().as_secs_f64() * 1e9 / f64::from(1_u32 << 30);
        println!("GiB {n}: {ns_per_byte:.2} ns per byte");
    }
}
