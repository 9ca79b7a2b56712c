//! `verify`: a read-only check of a whole log directory, for `allot verify`.
//!
//! Unlike `open`, it reads every segment (also ones a snapshot already covers) and
//! every snapshot in full, and changes nothing: a torn tail is reported, not cut.

use std::sync::Arc;

use crate::error::WalError;
use crate::record::{Hash, GENESIS_HASH};
use crate::recovery::{list_segments, Checkpoint, Scanner, TornTail};
use crate::snapshot::{list_snapshots, read_snapshot};
use crate::storage::Storage;

/// What [`verify`] found in a log that checks out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// Sequence number of the last good record (or of the newest snapshot when no
    /// record follows it; 0 for an empty log).
    pub last_seq: u64,
    /// Chain hash at `last_seq`.
    pub last_hash: Hash,
    /// First sequence number still in a segment (records before it live only in
    /// snapshots); `None` without segments.
    pub first_seq: Option<u64>,
    /// Segment files checked.
    pub segments: usize,
    /// Records checked.
    pub records: u64,
    /// Snapshot files checked.
    pub snapshots: usize,
    /// The sequence number the newest snapshot covers.
    pub newest_snapshot: Option<u64>,
    /// A torn tail at the end of the last segment, which `open` would cut off.
    pub torn_tail: Option<TornTail>,
}

/// Checks every snapshot, every record CRC and the whole hash chain.
///
/// # Errors
/// The first problem found: `Corrupt { file, offset, .. }` in a segment,
/// `SnapshotCorrupt { file, .. }` for a snapshot, or `Io`.
pub fn verify<S: Storage + Clone>(storage: &S) -> Result<VerifyReport, WalError> {
    let storage: Arc<dyn Storage> = Arc::new(storage.clone());
    let names = storage
        .list()
        .map_err(|e| WalError::io("list", storage.describe(), e))?;
    let mut snapshots = Vec::new();
    for (covers_seq, name) in list_snapshots(&names) {
        let (header, _) = read_snapshot(storage.as_ref(), &name)?;
        snapshots.push((covers_seq, header.chain_hash, name));
    }
    let newest = snapshots.last().map(|(seq, hash, _)| (*seq, *hash));
    let segments = list_segments(&names);
    let first_seq = segments.first().map(|s| s.first_seq);
    match (first_seq, newest) {
        (None, Some(_)) => {
            return Err(WalError::corrupt(
                storage.describe(),
                0,
                "a snapshot exists but no log segment does",
            ))
        }
        (Some(first), newest) if first > newest.map_or(0, |(seq, _)| seq) + 1 => {
            return Err(WalError::corrupt(
                &segments[0].name,
                0,
                format!(
                    "records {}..{first} are missing",
                    newest.map_or(0, |(seq, _)| seq) + 1
                ),
            ))
        }
        _ => {}
    }
    // Snapshots older than the first segment cannot be compared with the log.
    let checkpoints = snapshots
        .iter()
        .filter(|(seq, _, _)| first_seq.is_some_and(|first| *seq + 1 >= first))
        .map(|(seq, hash, file)| Checkpoint {
            seq: *seq,
            hash: *hash,
            file: file.clone(),
        })
        .collect();
    let mut scanner = Scanner::new(Arc::clone(&storage), segments, checkpoints);
    while scanner.advance()?.is_some() {}
    let (last_seq, last_hash) = if scanner.anchored {
        (scanner.expect_seq - 1, scanner.prev_hash)
    } else {
        newest.unwrap_or((0, GENESIS_HASH))
    };
    Ok(VerifyReport {
        last_seq,
        last_hash,
        first_seq,
        segments: scanner.segments_read,
        records: scanner.records,
        snapshots: snapshots.len(),
        newest_snapshot: newest.map(|(seq, _)| seq),
        torn_tail: scanner.torn.clone(),
    })
}
