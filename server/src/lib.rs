//! allot's server: HTTP in front of sharded, single-writer sequencers, each with its
//! own write-ahead log.
//!
//! Modules, in the order a request meets them:
//! - [`server`]: binding, connections (header-read timeouts), graceful shutdown;
//! - [`routes`]: the router, extractors and layers; `portal`, `admin`, `ops` handlers;
//! - [`auth`]: bearer keys → tenant and role (constant-time compare, open mode);
//! - [`dto`]: strict request bodies → engine commands, views → wire JSON;
//! - [`error`]: [`error::ApiError`], the one error type, mapped to statuses;
//! - [`shard`]: the sequencer threads: batch, stamp time, apply, log, release replies
//!   only once durable; ticks (hold expiry), snapshots, recovery, the stock view;
//! - [`events`]: the per-tenant ring of recent events for long polls;
//! - [`metrics`]: Prometheus text; [`config`]: flags, env, TOML;
//! - [`import`], [`verify`]: the `allot import` and `allot verify` tools;
//! - [`cli`]: the command line (`main.rs` only calls [`cli::run`]).
//!
//! Invariants: a reply (read or write) is sent only after every record its batch
//! produced is durable; a command is logged iff it changed the ledger, with the time
//! the shard stamped on it, so replay reproduces the state exactly; a tenant lives on
//! shard `fnv1a(tenant) % shards`, and a data dir keeps its shard count.

pub mod auth;
pub mod cli;
pub mod config;
pub mod dto;
pub mod error;
pub mod events;
pub mod import;
pub mod metrics;
pub mod rfc3339;
pub mod routes;
pub mod server;
pub mod shard;
pub mod verify;
