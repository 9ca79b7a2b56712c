//! allot's write-ahead log: the durability layer. It stores opaque payloads (the
//! engine's commands) and snapshot blobs, and decides whether an acknowledged
//! order can ever be lost.
//!
//! # Modules
//! - [`record`]: framing, CRC32C and the BLAKE3 hash chain; pure functions.
//! - [`storage`]: the [`Storage`] trait and [`FileStorage`] (real files).
//! - [`mem`]: [`MemStorage`], in memory, tracking durable vs written bytes, with
//!   injected short writes, write and fsync errors, and crashes.
//! - [`writer`]: [`Wal`], group commit on one dedicated writer thread.
//! - [`recovery`]: [`open`] and [`Replay`]: newest snapshot, then the records after it.
//! - [`snapshot`]: snapshot files (temp, fsync, rename, fsync dir).
//! - [`verify`](mod@verify): a read-only check of a whole directory.
//! - [`error`](mod@error): [`WalError`].
//!
//! # Invariants
//! - Sequence numbers start at 1 and are contiguous across segments and snapshots;
//!   the record after a snapshot covering N is N + 1.
//! - Every record carries `BLAKE3(previous hash ‖ seq ‖ payload)`; every segment
//!   header carries the hash before its first record and every snapshot the hash
//!   at the record it covers, so the chain stays checkable after old segments go.
//! - A completion reports `Ok` only after the record's bytes were written and (in
//!   `Fsync` mode) fdatasynced. After any failed write or fsync the log is
//!   poisoned: nothing more is completed as `Ok`, and an fsync is never retried.
//! - Only the newest segment can hold unsynced bytes: a segment is synced before
//!   the next one is created, and a new segment's header and directory entry are
//!   durable before it receives records.
//! - Recovery drops only a torn tail of the last segment (reported in bytes); any
//!   other damage is an error naming the file and byte offset.
//!
//! The byte layout and the recovery rules are in `docs/WAL_FORMAT.md`.

pub mod error;
pub mod mem;
pub mod record;
pub mod recovery;
pub mod snapshot;
pub mod storage;
pub mod verify;
pub mod writer;

use std::time::Duration;

pub use error::WalError;
pub use mem::{CrashMode, Faults, MemStorage};
pub use record::{Hash, RECORD_PAYLOAD_MAX};
pub use recovery::{open, Record, Replay, TornTail};
pub use storage::{FileStorage, Storage, StorageFile, StorageReader};
pub use verify::{verify, VerifyReport};
pub use writer::{
    Completion, OnDone, Wal, WalStats, BATCH_RECORDS_BOUNDS, FSYNC_LATENCY_BOUNDS_US,
};

/// When a completion may report a record durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// After the batch holding it was written and fdatasynced (the default).
    #[default]
    Fsync,
    /// After it was written; the writer fdatasyncs at most `sync_interval` later.
    /// A crash can lose the records of the last interval.
    Async {
        /// Longest time written bytes stay unsynced.
        sync_interval: Duration,
    },
    /// Memory only, for benchmarks: nothing is written, nothing is synced.
    None,
}

/// How a log is run. `Default` gives the production settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalConfig {
    /// A segment is closed and a new one started when a record would take it past
    /// this size (a segment always takes at least one record).
    pub segment_bytes_max: u64,
    /// See [`Durability`].
    pub durability: Durability,
    /// Records the submit queue holds before `submit` blocks (`try_submit` fails).
    pub queue_records_max: usize,
    /// Bytes the writer buffers before it issues an `append`; a batch larger than
    /// this is written with several calls (and still one fdatasync).
    pub batch_bytes_max: usize,
    /// Snapshots kept on disk (at least 1).
    pub snapshots_keep: usize,
    /// Group-commit gathering (`Fsync` mode only): when the previous batch held at
    /// least `commit_delay_records` records but fewer are queued now, the writer waits
    /// up to this long for that many before it writes and syncs. Under load this
    /// trades a few microseconds of latency for fewer fdatasyncs; under light load
    /// (small batches) it never waits. Zero turns it off.
    pub commit_delay: std::time::Duration,
    /// See `commit_delay`.
    pub commit_delay_records: usize,
}

impl Default for WalConfig {
    fn default() -> Self {
        Self {
            segment_bytes_max: 64 << 20,
            durability: Durability::Fsync,
            queue_records_max: 65_536,
            batch_bytes_max: 4 << 20,
            snapshots_keep: 3,
            commit_delay: std::time::Duration::ZERO,
            commit_delay_records: 16,
        }
    }
}
