//! `allot verify`: a read-only check of every shard's log in a data dir (CRCs, hash
//! chain, snapshot checksums) plus a decode of each shard's newest snapshot and every
//! record's payload.

use std::fmt::Write;
use std::path::Path;

use allot_wal::{FileStorage, WalConfig};

use crate::shard::{data_dir_shards, decode_entry, decode_snapshot, shard_dir};

/// Checks every shard of `data_dir`, printing a line per shard. Returns whether
/// everything checked out (a torn tail is reported but is not damage).
pub fn verify_data_dir(data_dir: &Path, out: &mut dyn std::io::Write) -> Result<(), String> {
    let shards = data_dir_shards(data_dir)?;
    let mut damaged = Vec::new();
    for index in 0..shards {
        let dir = shard_dir(data_dir, index);
        match verify_shard(&dir) {
            Ok(summary) => {
                let _ = writeln!(out, "{}: ok: {summary}", dir.display());
            }
            Err(why) => {
                let _ = writeln!(out, "{}: DAMAGED: {why}", dir.display());
                damaged.push(format!("{}: {why}", dir.display()));
            }
        }
    }
    if damaged.is_empty() {
        Ok(())
    } else {
        Err(damaged.join("; "))
    }
}

fn verify_shard(dir: &Path) -> Result<String, String> {
    if !dir.exists() {
        return Ok("no log yet".into());
    }
    let storage = FileStorage::new(dir).map_err(|e| e.to_string())?;
    let report = allot_wal::verify(&storage).map_err(|e| e.to_string())?;
    // A second, decoding pass through recovery (which changes nothing before finish).
    let mut replay = allot_wal::open(storage, WalConfig::default()).map_err(|e| e.to_string())?;
    if let Some((covers, blob)) = replay.snapshot() {
        decode_snapshot(blob).map_err(|e| format!("snapshot at {covers}: {e}"))?;
    }
    while let Some((seq, payload)) = replay.next_ref().map_err(|e| e.to_string())? {
        decode_entry(payload).map_err(|e| format!("record {seq} does not decode: {e}"))?;
    }
    let mut summary = format!(
        "{} records in {} segments, last seq {}, {} snapshots",
        report.records, report.segments, report.last_seq, report.snapshots
    );
    if let Some(torn) = &report.torn_tail {
        let _ = write!(
            summary,
            "; torn tail of {} bytes at {} offset {} (recovery drops it)",
            torn.bytes, torn.file, torn.offset
        );
    }
    Ok(summary)
}
