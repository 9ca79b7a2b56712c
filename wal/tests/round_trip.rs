//! Round trips: any sequence of payloads (empty to 1 MiB), interleaved with
//! snapshots and reopenings, reads back equal, across segment rotation.
//!
//! Cases default to a CI-friendly count; set `PROPTEST_CASES=1000` for a longer run.
//! A failure prints the minimal op list; proptest also saves its seed in
//! `proptest-regressions/` so the next run replays it first.

mod common;

use allot_wal::{verify, Durability, MemStorage, WalConfig};
use common::{blob, payload, recover};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    /// Submit these payload lengths as one submission.
    Append(Vec<usize>),
    Snapshot,
    Reopen,
}

fn payload_len() -> impl Strategy<Value = usize> {
    prop_oneof![
        8 => 0_usize..200,
        2 => 200_usize..5_000,
        1 => Just(0_usize),
        1 => (1_usize << 20) - 64..=1 << 20,
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => prop::collection::vec(payload_len(), 0..6).prop_map(Op::Append),
        1 => Just(Op::Snapshot),
        1 => Just(Op::Reopen),
    ]
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(24)
}

fn config(durability: Durability) -> WalConfig {
    WalConfig {
        segment_bytes_max: 4096,
        queue_records_max: 16,
        batch_bytes_max: 1024,
        snapshots_keep: 2,
        durability,
        // Gathering on, so that the round trips also cover held-back batches.
        commit_delay: std::time::Duration::from_micros(50),
        commit_delay_records: 4,
    }
}

/// Runs `ops` and checks every reopening against the model (`lens[seq - 1]`).
fn run(ops: &[Op], durability: Durability) -> Result<(), TestCaseError> {
    let storage = MemStorage::new();
    let config = config(durability);
    let mut lens: Vec<usize> = Vec::new();
    let mut snapshot_seq = 0;
    let (_, mut wal) = recover(storage.clone(), config).expect("fresh log opens");
    for op in ops.iter().chain(std::iter::once(&Op::Reopen)) {
        match op {
            Op::Append(batch) => {
                let first = lens.len() as u64 + 1;
                let records = batch
                    .iter()
                    .enumerate()
                    .map(|(i, len)| payload(first + i as u64, *len))
                    .collect();
                let range = common::submit_wait(&wal, records).expect("append");
                prop_assert_eq!(range, first..first + batch.len() as u64);
                lens.extend(batch);
            }
            Op::Snapshot => {
                snapshot_seq = lens.len() as u64;
                wal.write_snapshot(snapshot_seq, &blob(snapshot_seq))
                    .expect("snapshot");
            }
            Op::Reopen => {
                wal.close().expect("close");
                let (recovered, reopened) = recover(storage.clone(), config).expect("recover");
                wal = reopened;
                prop_assert_eq!(recovered.torn_tail_bytes, 0);
                let base = recovered.snapshot.as_ref().map_or(0, |(seq, _)| *seq);
                prop_assert_eq!(base, snapshot_seq);
                if let Some((seq, bytes)) = &recovered.snapshot {
                    prop_assert_eq!(bytes, &blob(*seq));
                }
                let seqs: Vec<u64> = recovered.records.iter().map(|r| r.seq).collect();
                let expected: Vec<u64> = (base + 1..=lens.len() as u64).collect();
                prop_assert_eq!(seqs, expected);
                for record in &recovered.records {
                    let len = lens[record.seq as usize - 1];
                    prop_assert!(
                        record.payload == payload(record.seq, len),
                        "seq {}",
                        record.seq
                    );
                }
                prop_assert_eq!(wal.last_seq(), lens.len() as u64);
                let report = verify(&storage).expect("verify");
                prop_assert_eq!(report.last_seq, lens.len() as u64);
                prop_assert_eq!(report.last_hash, wal.last_hash());
            }
        }
    }
    wal.close().expect("close");
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn payloads_read_back_equal_across_rotation_and_snapshots(
        ops in prop::collection::vec(op(), 0..24)
    ) {
        run(&ops, Durability::Fsync)?;
    }

    #[test]
    fn async_mode_reads_back_equal_after_close(ops in prop::collection::vec(op(), 0..12)) {
        run(&ops, Durability::Async { sync_interval: std::time::Duration::from_millis(1) })?;
    }
}
