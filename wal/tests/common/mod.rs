//! Helpers shared by the wal integration tests.
#![allow(dead_code)]

use std::sync::mpsc;

use allot_wal::{open, Record, Storage, Wal, WalConfig, WalError};

/// Small segments and queue so a few records exercise rotation and backpressure.
pub fn small_config() -> WalConfig {
    WalConfig {
        segment_bytes_max: 512,
        queue_records_max: 64,
        batch_bytes_max: 256,
        snapshots_keep: 2,
        ..WalConfig::default()
    }
}

/// A deterministic payload for `seq` of `len` bytes.
pub fn payload(seq: u64, len: usize) -> Vec<u8> {
    let mut state = seq.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// The payload length the scripted tests use for `seq`.
pub fn scripted_len(seq: u64) -> usize {
    (seq as usize * 37) % 120
}

/// A snapshot blob that names the sequence number it covers.
pub fn blob(covers_seq: u64) -> Vec<u8> {
    format!("snapshot@{covers_seq}").into_bytes()
}

/// What a recovery saw.
#[derive(Debug)]
pub struct Recovered {
    pub snapshot: Option<(u64, Vec<u8>)>,
    pub records: Vec<Record>,
    pub torn_tail_bytes: u64,
}

/// Opens, reads everything, and finishes (starting a writer).
pub fn recover<S: Storage>(storage: S, config: WalConfig) -> Result<(Recovered, Wal), WalError> {
    let mut replay = open(storage, config)?;
    let snapshot = replay.snapshot().map(|(seq, blob)| (seq, blob.to_vec()));
    let mut records = Vec::new();
    while let Some(record) = replay.next_record()? {
        records.push(record);
    }
    let torn_tail_bytes = replay.torn_tail_bytes();
    let wal = replay.finish()?;
    Ok((
        Recovered {
            snapshot,
            records,
            torn_tail_bytes,
        },
        wal,
    ))
}

/// Submits `records` and waits for the completion.
pub fn submit_wait(wal: &Wal, records: Vec<Vec<u8>>) -> Result<std::ops::Range<u64>, WalError> {
    let (tx, rx) = mpsc::channel();
    wal.submit(
        records,
        Box::new(move |result| {
            let _ = tx.send(result);
        }),
    )?;
    rx.recv().expect("completion is always called")
}

/// True for a segment file name.
pub fn is_segment(name: &str) -> bool {
    std::path::Path::new(name).extension() == Some("wal".as_ref())
}

/// True for a (finished) snapshot file name.
pub fn is_snapshot(name: &str) -> bool {
    std::path::Path::new(name).extension() == Some("snap".as_ref())
}
