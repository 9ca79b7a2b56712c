//! The one error type of the crate.
//!
//! The taxonomy separates what a caller can act on: an IO failure of the storage
//! (`Io`), damage found in the log or in a snapshot (`Corrupt`, `SnapshotCorrupt`),
//! a writer that has failed and will not accept more work (`Poisoned`), and
//! backpressure (`Full`). Damage always names the file and, for the log, the byte
//! offset of the first bad byte, so `allot verify` can print where to look.

use std::io;

/// Everything that can go wrong in the write-ahead log.
#[derive(Debug, thiserror::Error)]
pub enum WalError {
    /// The storage failed an operation.
    #[error("wal io error: {op} {file}: {source}")]
    Io {
        /// What was attempted (`append`, `sync_data`, `rename`, …).
        op: &'static str,
        /// The file (or directory) it was attempted on.
        file: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A log segment is damaged before its tail: bad checksum, broken hash chain,
    /// a gap or reordering of sequence numbers, or a bad segment header.
    #[error("wal corrupt: {file} at byte {offset}: {reason}")]
    Corrupt {
        /// The segment file.
        file: String,
        /// Byte offset of the first bad byte (the start of the bad record or header).
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// A snapshot file cannot be read or does not match its checksums.
    #[error("wal snapshot corrupt: {file}: {reason}")]
    SnapshotCorrupt {
        /// The snapshot file.
        file: String,
        /// What is wrong.
        reason: String,
    },
    /// A write or fsync failed earlier; the log accepts nothing more and completes
    /// nothing as durable. Restart and recover.
    #[error("wal poisoned: {0}")]
    Poisoned(String),
    /// The bounded submit queue is full (only from `try_submit`).
    #[error("wal submit queue is full")]
    Full,
    /// The log was closed.
    #[error("wal is closed")]
    Closed,
    /// A payload exceeds [`crate::RECORD_PAYLOAD_MAX`].
    #[error("wal record payload of {len} bytes exceeds the maximum of {max}")]
    TooLarge {
        /// Payload length.
        len: usize,
        /// The maximum.
        max: usize,
    },
    /// A caller passed an argument the log cannot honour (for example a snapshot
    /// covering a sequence number not yet assigned).
    #[error("wal invalid argument: {0}")]
    InvalidArgument(String),
}

impl WalError {
    pub(crate) fn io(op: &'static str, file: impl Into<String>, source: io::Error) -> Self {
        Self::Io {
            op,
            file: file.into(),
            source,
        }
    }

    pub(crate) fn corrupt(file: impl Into<String>, offset: u64, reason: impl Into<String>) -> Self {
        Self::Corrupt {
            file: file.into(),
            offset,
            reason: reason.into(),
        }
    }

    /// True for damage in the log or a snapshot (as opposed to IO or state errors).
    pub fn is_corruption(&self) -> bool {
        matches!(self, Self::Corrupt { .. } | Self::SnapshotCorrupt { .. })
    }
}

/// Cloning keeps the message; an `Io` source is rebuilt from its kind and text,
/// so every waiter of a failed batch can get its own copy of the cause.
impl Clone for WalError {
    fn clone(&self) -> Self {
        match self {
            Self::Io { op, file, source } => Self::Io {
                op,
                file: file.clone(),
                source: io::Error::new(source.kind(), source.to_string()),
            },
            Self::Corrupt {
                file,
                offset,
                reason,
            } => Self::Corrupt {
                file: file.clone(),
                offset: *offset,
                reason: reason.clone(),
            },
            Self::SnapshotCorrupt { file, reason } => Self::SnapshotCorrupt {
                file: file.clone(),
                reason: reason.clone(),
            },
            Self::Poisoned(why) => Self::Poisoned(why.clone()),
            Self::Full => Self::Full,
            Self::Closed => Self::Closed,
            Self::TooLarge { len, max } => Self::TooLarge {
                len: *len,
                max: *max,
            },
            Self::InvalidArgument(why) => Self::InvalidArgument(why.clone()),
        }
    }
}
