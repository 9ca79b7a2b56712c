//! The real file implementation gets the same round-trip and torn-tail checks, in
//! a temporary directory. Cases default to a CI-friendly count (`PROPTEST_CASES`).

mod common;

use std::fs::OpenOptions;
use std::io::Write;

use allot_wal::record::segment_name;
use allot_wal::{verify, FileStorage, WalConfig};
use common::{blob, payload, recover, submit_wait};
use proptest::prelude::*;

fn config() -> WalConfig {
    WalConfig {
        segment_bytes_max: 8192,
        batch_bytes_max: 2048,
        snapshots_keep: 2,
        ..WalConfig::default()
    }
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(6, |n: u32| n.div_ceil(4))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn files_read_back_equal_across_rotation_snapshot_and_reopen(
        batches in prop::collection::vec(
            prop::collection::vec(prop_oneof![9 => 0_usize..3000, 1 => Just(1_usize << 20)], 0..5),
            1..8,
        ),
        snapshot_after in 0_usize..8,
    ) {
        let dir = tempfile::tempdir().expect("tempdir");
        let storage = FileStorage::new(dir.path()).expect("storage");
        let (_, wal) = recover(storage.clone(), config()).expect("fresh");
        let mut lens = Vec::new();
        let mut covers = 0;
        for (i, batch) in batches.iter().enumerate() {
            let first = lens.len() as u64 + 1;
            let records = batch.iter().enumerate().map(|(j, len)| payload(first + j as u64, *len)).collect();
            submit_wait(&wal, records).expect("append");
            lens.extend(batch);
            if i == snapshot_after {
                covers = lens.len() as u64;
                wal.write_snapshot(covers, &blob(covers)).expect("snapshot");
            }
        }
        wal.close().expect("close");
        let (recovered, wal) = recover(storage.clone(), config()).expect("recover");
        prop_assert_eq!(recovered.snapshot.map_or(0, |s| s.0), covers);
        let seqs: Vec<u64> = recovered.records.iter().map(|r| r.seq).collect();
        prop_assert_eq!(seqs, (covers + 1..=lens.len() as u64).collect::<Vec<_>>());
        for record in &recovered.records {
            prop_assert!(record.payload == payload(record.seq, lens[record.seq as usize - 1]));
        }
        wal.close().expect("close");
        prop_assert_eq!(verify(&storage).expect("verify").last_seq, lens.len() as u64);
    }
}

#[test]
fn torn_tail_of_a_real_file_is_reported_and_cut() {
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = FileStorage::new(dir.path()).expect("storage");
    let (_, wal) = recover(storage.clone(), WalConfig::default()).expect("fresh");
    for seq in 1..=20 {
        wal.append_sync(&payload(seq, 100)).expect("append");
    }
    wal.close().expect("close");
    let path = dir.path().join(segment_name(1));
    let good_len = std::fs::metadata(&path).expect("segment").len();
    // A crash mid-write: half of a record header, then nothing.
    let mut partial = Vec::new();
    allot_wal::record::encode_record(&mut partial, 21, &[0; 32], b"lost");
    let mut file = OpenOptions::new().append(true).open(&path).expect("open");
    file.write_all(&partial[..30]).expect("write");
    drop(file);
    let report = verify(&storage).expect("a torn tail is not damage");
    assert_eq!(report.torn_tail.as_ref().map(|t| t.bytes), Some(30));
    let (recovered, wal) = recover(storage.clone(), WalConfig::default()).expect("recover");
    assert_eq!(recovered.records.len(), 20);
    assert_eq!(recovered.torn_tail_bytes, 30);
    assert_eq!(std::fs::metadata(&path).expect("segment").len(), good_len);
    assert_eq!(wal.append_sync(b"next").expect("append"), 21);
    wal.close().expect("close");
    assert_eq!(verify(&storage).expect("verify").last_seq, 21);
}

#[test]
fn damage_in_a_real_file_names_file_and_offset() {
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = FileStorage::new(dir.path()).expect("storage");
    let (_, wal) = recover(storage.clone(), WalConfig::default()).expect("fresh");
    for seq in 1..=5 {
        wal.append_sync(&payload(seq, 10)).expect("append");
    }
    wal.close().expect("close");
    let path = dir.path().join(segment_name(1));
    let mut bytes = std::fs::read(&path).expect("read");
    bytes[64 + 58 + 20] ^= 1; // inside the second record (records are 58 bytes)
    std::fs::write(&path, &bytes).expect("write");
    match verify(&storage) {
        Err(allot_wal::WalError::Corrupt { file, offset, .. }) => {
            assert_eq!((file.as_str(), offset), (segment_name(1).as_str(), 64 + 58));
        }
        other => panic!("expected corruption, got {other:?}"),
    }
    assert!(recover(storage, WalConfig::default()).is_err());
}
