//! Crash tests on `MemStorage`, which keeps a durable and a live image of every
//! file.
//!
//! - `crash_after_every_operation_keeps_every_acknowledged_record`: a scripted run
//!   (appends, multi-record submissions, snapshots, segment rotation) crashes after
//!   each of its storage operations in turn, in each crash mode; recovery must
//!   return every acknowledged record, only records that were submitted, in order,
//!   then accept new records and recover again.
//! - `cut_at_every_byte_offset…`: the last segment cut at every length is a torn
//!   tail; any cut of an earlier segment is corruption.
//! - `flipping_any_bit…`: every single-bit flip of a small log is either the torn
//!   final record (dropped) or corruption reported at the damaged record's offset.
//!
//! All runs are deterministic: a failure message names the operation number and
//! crash mode (or file and bit) that reproduce it.

mod common;

use std::sync::{Arc, Mutex};

use allot_wal::record::{decode_frame, SEGMENT_HEADER_LEN};
use allot_wal::{open, verify, CrashMode, Faults, MemStorage, Wal, WalConfig, WalError};
use common::{blob, payload, recover, scripted_len, small_config, submit_wait};

const SCRIPT_RECORDS: u64 = 24;

/// The scripted workload. Runs until the first error (a crash poisons the log).
/// Returns the sequence numbers completed as durable.
fn script(storage: &MemStorage, config: WalConfig) -> Vec<u64> {
    let acked = Arc::new(Mutex::new(Vec::new()));
    let Ok((_, wal)) = recover(storage.clone(), config) else {
        return Vec::new();
    };
    let _ = script_steps(&wal, &acked);
    let _ = wal.close();
    let acked = acked.lock().expect("not poisoned").clone();
    acked
}

fn script_steps(wal: &Wal, acked: &Arc<Mutex<Vec<u64>>>) -> Result<(), WalError> {
    let mut seq = 1;
    while seq <= SCRIPT_RECORDS {
        // Alternate single appends and three-record submissions.
        let count = if seq % 2 == 0 { 3 } else { 1 };
        let records: Vec<Vec<u8>> = (seq..seq + count)
            .map(|s| payload(s, scripted_len(s)))
            .collect();
        let range = submit_wait(wal, records)?;
        acked.lock().expect("not poisoned").extend(range);
        seq += count;
        if seq % 9 < 3 {
            let covers = seq - 1;
            wal.write_snapshot(covers, &blob(covers))?;
        }
    }
    Ok(())
}

/// Checks a recovery against the script: snapshot blob matches, records are
/// contiguous after it with the scripted payloads, and every acked seq is covered.
fn check_recovery(storage: &MemStorage, acked: &[u64], context: &str) -> u64 {
    let (recovered, wal) = recover(storage.clone(), small_config())
        .unwrap_or_else(|e| panic!("{context}: recovery failed: {e}"));
    let base = match &recovered.snapshot {
        Some((seq, bytes)) => {
            assert_eq!(bytes, &blob(*seq), "{context}: snapshot blob");
            *seq
        }
        None => 0,
    };
    for (i, record) in recovered.records.iter().enumerate() {
        assert_eq!(record.seq, base + 1 + i as u64, "{context}: order");
        assert_eq!(
            record.payload,
            payload(record.seq, scripted_len(record.seq)),
            "{context}: payload of seq {}",
            record.seq
        );
    }
    let last = base + recovered.records.len() as u64;
    if let Some(max) = acked.iter().max() {
        assert!(
            *max <= last,
            "{context}: acked seq {max} lost (recovered up to {last})"
        );
    }
    assert!(
        last <= SCRIPT_RECORDS + 2,
        "{context}: records never submitted"
    );
    // The repaired log takes new records and recovers again, cleanly.
    let next = last + 1;
    assert_eq!(
        wal.append_sync(&payload(next, scripted_len(next)))
            .expect("append after recovery"),
        next,
        "{context}"
    );
    wal.close().expect("close");
    let report = verify(storage).unwrap_or_else(|e| panic!("{context}: verify: {e}"));
    assert_eq!(report.last_seq, next, "{context}");
    assert_eq!(report.torn_tail, None, "{context}");
    let (again, wal) = recover(storage.clone(), small_config()).expect("second recovery");
    assert_eq!(again.torn_tail_bytes, 0, "{context}");
    wal.close().expect("close");
    last
}

#[test]
fn crash_after_every_operation_keeps_every_acknowledged_record() {
    let dry = MemStorage::new();
    dry.set_faults(Faults::default());
    let all = script(&dry, small_config());
    assert!(all.len() as u64 >= SCRIPT_RECORDS);
    assert_eq!(all, (1..=all.len() as u64).collect::<Vec<_>>());
    let total_ops = dry.ops();
    assert!(total_ops > 50, "script too small: {total_ops} ops");
    assert!(dry.files().len() > 2, "script should rotate segments");
    for op in 1..=total_ops {
        for mode in [
            CrashMode::LoseUnsynced,
            CrashMode::KeepUnsyncedPrefix { seed: op },
            CrashMode::KeepUnsyncedWithGarbage { seed: op },
        ] {
            let storage = MemStorage::new();
            storage.set_faults(Faults {
                crash_after_op: Some((op, mode)),
                ..Faults::default()
            });
            let acked = script(&storage, small_config());
            assert_eq!(
                storage.crashes(),
                1,
                "op {op} {mode:?}: crash did not happen"
            );
            check_recovery(
                &storage.restarted(),
                &acked,
                &format!("crash after op {op} {mode:?}"),
            );
        }
    }
}

/// A small log of `records` records in one or more segments, fully synced.
fn small_log(records: u64, config: WalConfig) -> MemStorage {
    let storage = MemStorage::new();
    let (_, wal) = recover(storage.clone(), config).expect("fresh log");
    for seq in 1..=records {
        wal.append_sync(&payload(seq, scripted_len(seq)))
            .expect("append");
    }
    wal.close().expect("close");
    storage
}

/// Record start offsets of a segment's bytes (after its header).
fn record_offsets(bytes: &[u8]) -> Vec<usize> {
    let mut offsets = Vec::new();
    let mut at = SEGMENT_HEADER_LEN;
    while at < bytes.len() {
        offsets.push(at);
        at += decode_frame(&bytes[at..]).expect("clean log").len();
    }
    offsets
}

fn segments(storage: &MemStorage) -> Vec<(String, Vec<u8>)> {
    storage
        .files()
        .into_iter()
        .filter(|(name, _, _)| common::is_segment(name))
        .map(|(name, _, _)| {
            let bytes = storage.read_file(&name).expect("listed");
            (name, bytes)
        })
        .collect()
}

fn read_all(storage: &MemStorage) -> Result<(Vec<u64>, u64), WalError> {
    let mut replay = open(storage.clone(), small_config())?;
    let mut seqs = Vec::new();
    while let Some(record) = replay.next_record()? {
        assert_eq!(
            record.payload,
            payload(record.seq, scripted_len(record.seq))
        );
        seqs.push(record.seq);
    }
    Ok((seqs, replay.torn_tail_bytes()))
}

#[test]
fn cut_at_every_byte_offset_of_the_last_segment_is_a_torn_tail() {
    let config = WalConfig {
        segment_bytes_max: 1 << 20,
        ..small_config()
    };
    let storage = small_log(8, config);
    let (name, bytes) = segments(&storage).pop().expect("one segment");
    let offsets = record_offsets(&bytes);
    for cut in 0..=bytes.len() {
        storage.write_file(&name, &bytes[..cut]);
        let (seqs, torn) = read_all(&storage).unwrap_or_else(|e| panic!("cut {cut}: {e}"));
        let whole = offsets.iter().filter(|&&o| o < cut).count();
        let complete = if cut == bytes.len() {
            offsets.len()
        } else {
            whole.saturating_sub(usize::from(
                !offsets.contains(&cut) && cut > SEGMENT_HEADER_LEN,
            ))
        };
        let complete = if cut < SEGMENT_HEADER_LEN {
            0
        } else {
            complete
        };
        assert_eq!(seqs, (1..=complete as u64).collect::<Vec<_>>(), "cut {cut}");
        let good_len = if cut < SEGMENT_HEADER_LEN {
            0
        } else {
            offsets.get(complete).copied().unwrap_or(bytes.len())
        };
        assert_eq!(torn, (cut - good_len.min(cut)) as u64, "cut {cut}");
        // After repair the log continues right after the last complete record.
        let (_, wal) = recover(storage.clone(), config).expect("repair");
        let next = complete as u64 + 1;
        assert_eq!(
            wal.append_sync(b"after").expect("append"),
            next,
            "cut {cut}"
        );
        wal.close().expect("close");
        storage.write_file(&name, &bytes);
        for extra in storage.files() {
            if extra.0 != name {
                storage.delete_file(&extra.0);
            }
        }
    }
}

#[test]
fn cut_of_an_earlier_segment_is_corruption() {
    let storage = small_log(12, small_config());
    let files = segments(&storage);
    assert!(files.len() >= 2, "need at least two segments");
    let (name, bytes) = &files[0];
    for cut in 0..bytes.len() {
        storage.write_file(name, &bytes[..cut]);
        match read_all(&storage) {
            Err(WalError::Corrupt { file, .. }) => {
                assert!(
                    file == *name || file == files[1].0,
                    "cut {cut}: blamed {file}"
                );
            }
            other => panic!("cut {cut} of {name}: expected corruption, got {other:?}"),
        }
        assert!(verify(&storage).is_err(), "cut {cut}: verify");
    }
    storage.write_file(name, bytes);
    assert!(read_all(&storage).is_ok());
}

#[test]
fn flipping_any_bit_is_a_torn_final_record_or_reported_corruption() {
    let storage = small_log(10, small_config());
    let (_, wal) = recover(storage.clone(), small_config()).expect("reopen");
    wal.write_snapshot(3, &blob(3)).expect("snapshot");
    wal.close().expect("close");
    let files = segments(&storage);
    let last_file = files.len() - 1;
    let total: u64 = 10;
    for (index, (name, bytes)) in files.iter().enumerate() {
        let offsets = record_offsets(bytes);
        for bit in 0..bytes.len() * 8 {
            let byte = bit / 8;
            let mut flipped = bytes.clone();
            flipped[byte] ^= 1 << (bit % 8);
            storage.write_file(name, &flipped);
            let record_start = offsets.iter().rev().find(|&&o| o <= byte).copied();
            let in_final_record = index == last_file && record_start == offsets.last().copied();
            let context = format!("{name} bit {bit}");
            match read_all(&storage) {
                Ok((seqs, torn)) => {
                    assert!(in_final_record, "{context}: damage went unnoticed");
                    assert_eq!(seqs.last().copied(), Some(total - 1), "{context}");
                    assert_eq!(
                        torn as usize,
                        bytes.len() - offsets[offsets.len() - 1],
                        "{context}"
                    );
                }
                Err(WalError::Corrupt { file, offset, .. }) => {
                    assert!(!in_final_record, "{context}: final record should be torn");
                    assert_eq!(&file, name, "{context}");
                    assert_eq!(offset as usize, record_start.unwrap_or(0), "{context}");
                }
                Err(other) => panic!("{context}: unexpected {other}"),
            }
            assert_eq!(
                verify(&storage).is_ok(),
                in_final_record,
                "{context}: verify"
            );
        }
        storage.write_file(name, bytes);
    }
    // Every bit of the snapshot file matters too.
    let snap = storage
        .files()
        .into_iter()
        .find(|(n, _, _)| common::is_snapshot(n))
        .expect("snapshot")
        .0;
    let bytes = storage.read_file(&snap).expect("snapshot bytes");
    for bit in 0..bytes.len() * 8 {
        let mut flipped = bytes.clone();
        flipped[bit / 8] ^= 1 << (bit % 8);
        storage.write_file(&snap, &flipped);
        match open(storage.clone(), small_config()) {
            Err(WalError::SnapshotCorrupt { file, .. }) => assert_eq!(file, snap),
            Err(other) => panic!("snapshot bit {bit}: unexpected {other}"),
            Ok(_) => panic!("snapshot bit {bit}: damage went unnoticed"),
        }
    }
}

/// A log whose every record is covered by a snapshot and whose newest segment has a
/// torn header (the machine went down while creating it): recovery drops that
/// segment and the covered one and starts a fresh segment. A crash at any step of
/// that repair must leave a log that recovers, with nothing lost.
#[test]
fn a_crash_at_any_step_of_recovery_leaves_a_recoverable_log() {
    use allot_wal::record::{segment_name, SegmentHeader, GENESIS_HASH};
    let build = || {
        let storage = MemStorage::new();
        let (_, wal) = recover(storage.clone(), small_config()).expect("fresh");
        submit_wait(&wal, (1..=4).map(|s| payload(s, 20)).collect()).expect("durable");
        wal.write_snapshot(4, &blob(4)).expect("snapshot");
        wal.close().expect("close");
        let header = SegmentHeader {
            first_seq: 5,
            prev_hash: GENESIS_HASH,
        }
        .encode();
        storage.write_file(&segment_name(5), &header[..header.len() / 2]);
        storage
    };
    let dry = build();
    let before = dry.ops();
    let (_, wal) = recover(dry.clone(), small_config()).expect("recovers");
    wal.close().expect("close");
    let repair_ops = dry.ops() - before;
    assert!(
        repair_ops >= 4,
        "the repair takes several steps: {repair_ops}"
    );
    for op in 1..=repair_ops {
        for mode in [
            CrashMode::LoseUnsynced,
            CrashMode::KeepUnsyncedPrefix { seed: op },
            CrashMode::KeepUnsyncedWithGarbage { seed: op },
        ] {
            let context = format!("crash after recovery op {op} {mode:?}");
            let storage = build();
            storage.set_faults(Faults {
                crash_after_op: Some((op, mode)),
                ..Faults::default()
            });
            if let Ok((_, wal)) = recover(storage.clone(), small_config()) {
                let _ = wal.close();
            }
            assert_eq!(storage.crashes(), 1, "{context}: no crash");
            let restarted = storage.restarted();
            let (recovered, wal) = recover(restarted.clone(), small_config())
                .unwrap_or_else(|e| panic!("{context}: {e}"));
            assert_eq!(recovered.snapshot, Some((4, blob(4))), "{context}");
            assert!(recovered.records.is_empty(), "{context}");
            let next = submit_wait(&wal, vec![payload(5, 20)]).expect("appends");
            assert_eq!(next, 5..6, "{context}");
            wal.close().expect("close");
            let (again, _) = recover(restarted, small_config()).expect("recovers again");
            assert_eq!(again.records.len(), 1, "{context}");
        }
    }
}
