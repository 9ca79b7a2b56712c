//! Fault injection and error reporting on `MemStorage`: a failed fsync or write
//! poisons the log (waiters fail, later appends fail, nothing is completed as
//! durable), short writes are retried, backpressure, barriers, completion order,
//! snapshot pruning, and damage that recovery and `verify` must name precisely.
//! Every test is deterministic.

mod common;

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;

use allot_wal::record::{encode_record, segment_name, SegmentHeader, GENESIS_HASH};
use allot_wal::{
    open, verify, Durability, Faults, MemStorage, WalConfig, WalError, RECORD_PAYLOAD_MAX,
};
use common::{blob, payload, recover, small_config, submit_wait};

#[test]
fn fsync_error_poisons_waiters_and_later_appends() {
    let storage = MemStorage::new();
    let (_, wal) = recover(storage.clone(), small_config()).expect("fresh");
    wal.append_sync(b"one").expect("first append");
    storage.set_faults(Faults {
        fail_sync_nth: Some(1),
        ..Faults::default()
    });
    let results = Arc::new(Mutex::new(Vec::new()));
    let producers: Vec<_> = (0..8)
        .map(|i| {
            let wal = wal.clone();
            let results = Arc::clone(&results);
            thread::spawn(move || {
                let result = wal.append_sync(&[i; 10]);
                results.lock().expect("lock").push(result);
            })
        })
        .collect();
    for producer in producers {
        producer.join().expect("producer");
    }
    for result in results.lock().expect("lock").iter() {
        match result {
            Err(WalError::Poisoned(why)) => assert!(why.contains("injected fsync error"), "{why}"),
            other => panic!("expected Poisoned, got {other:?}"),
        }
    }
    assert!(wal.poisoned().expect("poisoned").contains("sync_data"));
    assert!(matches!(
        wal.append_sync(b"later"),
        Err(WalError::Poisoned(_))
    ));
    assert!(matches!(
        wal.submit(
            vec![b"x".to_vec()],
            Box::new(|_| panic!("must not be called"))
        ),
        Err(WalError::Poisoned(_))
    ));
    assert_eq!(
        wal.durable_head().0,
        1,
        "nothing after the failure is durable"
    );
    assert!(matches!(wal.close(), Err(WalError::Poisoned(_))));
    // The acknowledged record survives; unacknowledged ones may or may not.
    let (recovered, wal) = recover(storage.restarted(), small_config()).expect("recover");
    assert_eq!(recovered.records[0].payload, b"one");
    wal.close().expect("close");
}

#[test]
fn write_error_poisons_and_fails_the_batch() {
    let storage = MemStorage::new();
    let (_, wal) = recover(storage.clone(), small_config()).expect("fresh");
    storage.set_faults(Faults {
        fail_write_nth: Some(2),
        ..Faults::default()
    });
    assert_eq!(wal.append_sync(b"ok").expect("first write works"), 1);
    match wal.append_sync(b"fails") {
        Err(WalError::Poisoned(why)) => assert!(why.contains("injected write error"), "{why}"),
        other => panic!("expected Poisoned, got {other:?}"),
    }
    assert!(matches!(
        submit_wait(&wal, Vec::new()),
        Err(WalError::Poisoned(_))
    ));
    drop(wal);
}

#[test]
fn short_writes_are_completed_not_failed() {
    let storage = MemStorage::new();
    let (_, wal) = recover(storage.clone(), small_config()).expect("fresh");
    for nth in 1..6 {
        storage.set_faults(Faults {
            short_write_nth: Some(nth),
            ..Faults::default()
        });
        let seq = wal.last_seq() + 1;
        submit_wait(&wal, vec![payload(seq, 100), payload(seq + 1, 7)]).expect("append");
    }
    wal.close().expect("close");
    let (recovered, wal) = recover(storage, small_config()).expect("recover");
    assert_eq!(recovered.records.len(), 10);
    for record in &recovered.records {
        let len = if record.seq % 2 == 1 { 100 } else { 7 };
        assert_eq!(record.payload, payload(record.seq, len));
    }
    wal.close().expect("close");
}

#[test]
fn completions_fire_in_submission_order_and_barriers_wait() {
    let storage = MemStorage::new();
    let (_, wal) = recover(storage, WalConfig::default()).expect("fresh");
    let order = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = mpsc::channel();
    for i in 0..200_u64 {
        let order = Arc::clone(&order);
        let tx = tx.clone();
        let records = if i % 10 == 0 {
            Vec::new()
        } else {
            vec![payload(i, 20); (i % 3) as usize + 1]
        };
        wal.submit(
            records,
            Box::new(move |result| {
                let range = result.expect("durable");
                order.lock().expect("lock").push((range.start, range.end));
                let _ = tx.send(());
            }),
        )
        .expect("submit");
    }
    for _ in 0..200 {
        rx.recv().expect("completion");
    }
    let order = order.lock().expect("lock").clone();
    assert!(order.windows(2).all(|w| w[0].1 == w[1].0), "{order:?}");
    let barrier_end = wal.flush().expect("flush");
    assert_eq!(barrier_end, wal.last_seq());
    assert_eq!(wal.durable_head().0, wal.last_seq());
    let stats = wal.stats();
    assert_eq!(stats.records, wal.last_seq());
    assert!(stats.fsyncs >= 1 && stats.batches >= 1);
    assert_eq!(
        stats.batch_records_buckets.iter().sum::<u64>(),
        stats.batches
    );
    wal.close().expect("close");
}

#[test]
fn full_queue_pushes_back() {
    let config = WalConfig {
        queue_records_max: 4,
        ..WalConfig::default()
    };
    let (_, wal) = recover(MemStorage::new(), config).expect("fresh");
    // Hold the writer inside a completion so the queue cannot drain.
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let (entered_tx, entered_rx) = mpsc::channel();
    wal.submit(
        vec![b"block".to_vec()],
        Box::new(move |_| {
            let _ = entered_tx.send(());
            let _ = release_rx.recv();
        }),
    )
    .expect("submit");
    entered_rx.recv().expect("writer entered the callback");
    wal.try_submit(vec![b"a".to_vec(); 4], Box::new(|_| {}))
        .expect("fits");
    assert!(matches!(
        wal.try_submit(vec![b"b".to_vec()], Box::new(|_| {})),
        Err(WalError::Full)
    ));
    assert!(wal.stats().queue_full_waits >= 1);
    release_tx.send(()).expect("release");
    wal.flush().expect("drains");
    wal.try_submit(vec![b"c".to_vec()], Box::new(|_| {}))
        .expect("room again");
    wal.close().expect("close");
}

#[test]
fn oversized_payload_and_future_snapshot_are_refused() {
    let (_, wal) = recover(MemStorage::new(), small_config()).expect("fresh");
    let big = vec![0; RECORD_PAYLOAD_MAX + 1];
    assert!(matches!(
        wal.append_sync(&big),
        Err(WalError::TooLarge { .. })
    ));
    assert!(matches!(
        wal.write_snapshot(1, b"x"),
        Err(WalError::InvalidArgument(_))
    ));
    wal.close().expect("close");
}

#[test]
fn snapshots_prune_old_snapshots_and_covered_segments() {
    let storage = MemStorage::new();
    let (_, wal) = recover(storage.clone(), small_config()).expect("fresh");
    for round in 1..=4_u64 {
        for seq in 1..=10 {
            wal.append_sync(&payload(seq, 60)).expect("append");
        }
        let covers = wal.last_seq();
        wal.write_snapshot(covers, &blob(covers)).expect("snapshot");
        let files = storage.files();
        let snaps = files.iter().filter(|f| common::is_snapshot(&f.0)).count();
        assert_eq!(snaps, round.min(2) as usize);
        let segs: Vec<_> = files.iter().filter(|f| common::is_segment(&f.0)).collect();
        assert_eq!(segs.len(), 1, "only the active segment remains: {files:?}");
    }
    wal.append_sync(b"after").expect("append");
    wal.close().expect("close");
    let (recovered, wal) = recover(storage.clone(), small_config()).expect("recover");
    assert_eq!(recovered.snapshot, Some((40, blob(40))));
    assert_eq!(recovered.records.len(), 1);
    assert_eq!(recovered.records[0].seq, 41);
    wal.close().expect("close");
    let report = verify(&storage).expect("verify");
    assert_eq!(
        (report.last_seq, report.snapshots, report.newest_snapshot),
        (41, 2, Some(40))
    );
}

#[test]
fn snapshot_of_an_old_seq_reads_its_hash_back_from_the_log() {
    let storage = MemStorage::new();
    let (_, wal) = recover(storage.clone(), WalConfig::default()).expect("fresh");
    let records: Vec<Vec<u8>> = (0..70_000).map(|i| payload(i, 4)).collect();
    submit_wait(&wal, records).expect("append");
    // Seq 5 has left the in-memory hash ring; its hash comes from the segment.
    wal.write_snapshot(5, &blob(5)).expect("snapshot");
    wal.close().expect("close");
    let mut replay = open(storage, WalConfig::default()).expect("open");
    assert_eq!(replay.snapshot().map(|s| s.0), Some(5));
    assert_eq!(replay.next_record().expect("read").map(|r| r.seq), Some(6));
}

#[test]
fn none_mode_touches_nothing() {
    let storage = MemStorage::new();
    let config = WalConfig {
        durability: Durability::None,
        ..WalConfig::default()
    };
    let (_, wal) = recover(storage.clone(), config).expect("fresh");
    assert_eq!(wal.append_sync(b"x").expect("append"), 1);
    wal.write_snapshot(1, b"blob").expect("no-op snapshot");
    wal.close().expect("close");
    assert!(storage.files().is_empty());
}

#[test]
fn async_mode_syncs_on_close() {
    let storage = MemStorage::new();
    let config = WalConfig {
        durability: Durability::Async {
            sync_interval: std::time::Duration::from_secs(3600),
        },
        ..small_config()
    };
    let (_, wal) = recover(storage.clone(), config).expect("fresh");
    for seq in 1..=20 {
        wal.append_sync(&payload(seq, 30)).expect("append");
    }
    wal.close().expect("close");
    assert!(storage
        .files()
        .iter()
        .all(|(_, len, durable)| len == durable));
}

/// Writes a segment file from `(seq, payload)` pairs chained from `prev`.
fn segment_bytes(first_seq: u64, prev: [u8; 32], records: &[(u64, &[u8])]) -> Vec<u8> {
    let mut bytes = SegmentHeader {
        first_seq,
        prev_hash: prev,
    }
    .encode()
    .to_vec();
    let mut hash = prev;
    for (seq, payload) in records {
        hash = encode_record(&mut bytes, *seq, &hash, payload);
    }
    bytes
}

fn expect_corrupt(storage: &MemStorage, file: &str, offset: u64, reason: &str) {
    let mut replay = open(storage.clone(), small_config()).expect("open");
    let error = loop {
        match replay.next_record() {
            Ok(Some(_)) => {}
            Ok(None) => panic!("expected corruption ({reason})"),
            Err(error) => break error,
        }
    };
    match (&error, verify(storage)) {
        (
            WalError::Corrupt {
                file: f,
                offset: o,
                reason: r,
            },
            Err(WalError::Corrupt {
                file: vf,
                offset: vo,
                ..
            }),
        ) => {
            assert_eq!((f.as_str(), *o), (file, offset), "{error}");
            assert_eq!((vf.as_str(), vo), (file, offset), "verify");
            assert!(r.contains(reason), "{r}");
        }
        (other, verified) => panic!("expected Corrupt, got {other:?} / verify {verified:?}"),
    }
}

#[test]
fn gap_in_sequence_numbers_is_corruption() {
    let storage = MemStorage::new();
    let bytes = segment_bytes(1, GENESIS_HASH, &[(1, b"a"), (3, b"c"), (4, b"d")]);
    storage.write_file(&segment_name(1), &bytes);
    expect_corrupt(
        &storage,
        &segment_name(1),
        64 + 49,
        "expected seq 2, found seq 3",
    );
}

#[test]
fn broken_hash_chain_is_corruption_even_at_the_tail() {
    let storage = MemStorage::new();
    let mut bytes = segment_bytes(1, GENESIS_HASH, &[(1, b"a"), (2, b"b")]);
    // A CRC-valid record whose chain hash starts from the wrong place.
    let at = bytes.len() as u64;
    encode_record(&mut bytes, 3, &[7; 32], b"c");
    storage.write_file(&segment_name(1), &bytes);
    expect_corrupt(&storage, &segment_name(1), at, "hash chain broken at seq 3");
}

#[test]
fn missing_middle_segment_is_corruption() {
    let storage = MemStorage::new();
    let (_, wal) = recover(storage.clone(), small_config()).expect("fresh");
    for seq in 1..=30 {
        wal.append_sync(&payload(seq, 40)).expect("append");
    }
    wal.close().expect("close");
    let segments: Vec<_> = storage
        .files()
        .into_iter()
        .filter(|f| common::is_segment(&f.0))
        .collect();
    assert!(segments.len() >= 3);
    storage.delete_file(&segments[1].0);
    expect_corrupt(&storage, &segments[2].0, 0, "previous one ends");
}

#[test]
fn damaged_record_followed_by_garbage_and_a_valid_record_is_corruption() {
    let storage = MemStorage::new();
    let mut bytes = segment_bytes(1, GENESIS_HASH, &[(1, b"a"), (2, b"bb")]);
    let second = 64 + 49;
    bytes[second + 49] ^= 0xff;
    let mut tail = Vec::new();
    let h1 = allot_wal::record::chain_hash(&GENESIS_HASH, 1, b"a");
    let h2 = allot_wal::record::chain_hash(&h1, 2, b"bb");
    bytes.extend_from_slice(&[0; 13]);
    encode_record(&mut tail, 3, &h2, b"ccc");
    bytes.extend_from_slice(&tail);
    storage.write_file(&segment_name(1), &bytes);
    expect_corrupt(
        &storage,
        &segment_name(1),
        second as u64,
        "valid record (seq 3) follows",
    );
}

#[test]
fn zeroes_after_the_last_record_are_a_torn_tail() {
    let storage = MemStorage::new();
    let mut bytes = segment_bytes(1, GENESIS_HASH, &[(1, b"a"), (2, b"bb")]);
    let good = bytes.len();
    bytes.extend_from_slice(&[0; 4096]);
    storage.write_file(&segment_name(1), &bytes);
    let report = verify(&storage).expect("verify accepts a torn tail");
    assert_eq!(report.torn_tail.as_ref().map(|t| t.bytes), Some(4096));
    let (recovered, wal) = recover(storage.clone(), small_config()).expect("recover");
    assert_eq!(recovered.records.len(), 2);
    assert_eq!(recovered.torn_tail_bytes, 4096);
    wal.close().expect("close");
    assert_eq!(
        storage.read_file(&segment_name(1)).expect("file").len(),
        good
    );
}

#[test]
fn snapshot_that_disagrees_with_the_log_is_corruption() {
    let storage = MemStorage::new();
    let (_, wal) = recover(storage.clone(), WalConfig::default()).expect("fresh");
    for seq in 1..=5 {
        wal.append_sync(&payload(seq, 9)).expect("append");
    }
    wal.write_snapshot(3, &blob(3)).expect("snapshot");
    wal.close().expect("close");
    // Rewrite the log with different payloads: CRCs fine, chain differs from the snapshot.
    let bytes = segment_bytes(
        1,
        GENESIS_HASH,
        &[(1, b"x"), (2, b"y"), (3, b"z"), (4, b"w")],
    );
    storage.write_file(&segment_name(1), &bytes);
    let mut replay = open(storage.clone(), WalConfig::default()).expect("open");
    assert!(matches!(
        replay.next_record(),
        Err(WalError::SnapshotCorrupt { .. })
    ));
    assert!(matches!(
        verify(&storage),
        Err(WalError::SnapshotCorrupt { .. })
    ));
}

/// Submits `records`; the receiver gets the completion.
fn submit_async(wal: &allot_wal::Wal, records: Vec<Vec<u8>>) -> mpsc::Receiver<Result<(), String>> {
    let (tx, rx) = mpsc::channel();
    wal.submit(
        records,
        Box::new(move |result| {
            let _ = tx.send(result.map(|_| ()).map_err(|e| e.to_string()));
        }),
    )
    .expect("submit");
    rx
}

#[test]
fn commit_delay_gathers_small_batches_only_after_a_large_one() {
    use std::time::Duration;
    // A delay far longer than the test: a wait that should not happen shows up as a
    // missing completion, not as a slow pass.
    let config = WalConfig {
        commit_delay: Duration::from_secs(60),
        commit_delay_records: 4,
        ..WalConfig::default()
    };
    let (_, wal) = recover(MemStorage::new(), config).expect("fresh");
    let soon = Duration::from_secs(20);
    // Light load: a lone record after small batches is written at once.
    for seq in 1..=2 {
        let done = submit_async(&wal, vec![payload(seq, 10)]);
        assert_eq!(done.recv_timeout(soon), Ok(Ok(())), "record {seq}");
    }
    // A batch as large as the threshold is not delayed either...
    let done = submit_async(&wal, (3..=6).map(|s| payload(s, 10)).collect());
    assert_eq!(done.recv_timeout(soon), Ok(Ok(())));
    // ...but the small one after it waits for more, and both go in one batch.
    let batches = wal.stats().batches;
    let first = submit_async(&wal, vec![payload(7, 10)]);
    assert_eq!(
        first.recv_timeout(Duration::from_millis(300)),
        Err(mpsc::RecvTimeoutError::Timeout),
        "a small batch after a large one is held back"
    );
    let second = submit_async(&wal, (8..=10).map(|s| payload(s, 10)).collect());
    assert_eq!(first.recv_timeout(soon), Ok(Ok(())));
    assert_eq!(second.recv_timeout(soon), Ok(Ok(())));
    assert_eq!(wal.stats().batches, batches + 1, "one batch for both");
    // A flush does not wait for the threshold.
    let held = submit_async(&wal, vec![payload(11, 10)]);
    assert_eq!(wal.flush().expect("flush"), 11);
    assert_eq!(held.recv_timeout(soon), Ok(Ok(())));
    // Neither does closing: a gathering writer writes what it has and stops.
    let bigger = submit_async(&wal, (12..=15).map(|s| payload(s, 10)).collect());
    assert_eq!(bigger.recv_timeout(soon), Ok(Ok(())));
    let last = submit_async(&wal, vec![payload(16, 10)]);
    let closing = thread::spawn(move || wal.close());
    assert_eq!(last.recv_timeout(soon), Ok(Ok(())));
    closing.join().expect("close").expect("closed cleanly");
}
