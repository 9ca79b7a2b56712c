//! `allot-load`: peak simulation for allot, with an end-of-run audit of the server's
//! ledger against what the server acknowledged.
//!
//! Modules, in the order a run uses them:
//! - [`scenario`]: the synthetic book and the seeded request streams (`steady`,
//!   `flash-sale`, `promo-peak`, `lifecycle`); order `n` is a function of `(seed, n)`.
//! - [`server`]: `--spawn`, a fresh `allot serve` on a free loopback port.
//! - [`http`]: a small keep-alive HTTP/1.1 client with reusable buffers.
//! - [`client`]: connection tasks in an open loop (Poisson arrivals, latency from the
//!   intended send time) or a closed loop; per-operation histograms and the tally of
//!   acknowledged orders.
//! - [`audit`]: reads the book after the run and checks it against the tally.
//! - [`report`]: JSON, terminal and self-contained HTML reports.
//! - [`run`]: one run from set-up to report.
//!
//! Invariants the tool keeps: it only sends traffic to the target it is given (the
//! spawned server listens on loopback), every run is bounded by `--warmup +
//! --duration` plus the audit, and a run exits non-zero whenever the audit fails.

pub mod audit;
pub mod client;
pub mod http;
pub mod report;
pub mod run;
pub mod scenario;
pub mod server;
