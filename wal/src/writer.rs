//! Group commit: the [`Wal`] handle producers submit to, and the one writer thread.
//!
//! Producers take the state lock only to assign sequence numbers and push onto the
//! bounded queue. The writer swaps the whole queue out under the lock, then —
//! without the lock — frames every record into one reused buffer, writes it with
//! as few `append` calls as `batch_bytes_max` allows, fdatasyncs once, and runs the
//! batch's completions in submission order. A failed write or sync poisons the log:
//! the batch and everything queued fail with `Poisoned`, later submits fail at
//! once, and the writer never syncs again.

use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex, MutexGuard};

use crate::error::WalError;
use crate::record::{
    encode_record, record_len, segment_name, Hash, SegmentHeader, RECORD_PAYLOAD_MAX,
    SEGMENT_HEADER_LEN,
};
use crate::recovery::{list_segments, Checkpoint, Scanner};
use crate::snapshot::{self, list_snapshots};
use crate::storage::{write_all, Storage, StorageFile};
use crate::{Durability, WalConfig};

/// What `on_done` receives: the submitted range once durable, or why not.
pub type Completion = Result<Range<u64>, WalError>;

/// A completion callback, run on the writer thread. Keep it short (send on a
/// channel, complete a oneshot): it delays the next batch.
pub type OnDone = Box<dyn FnOnce(Completion) + Send>;

/// Upper bounds (inclusive, microseconds) of the fsync latency buckets in
/// [`WalStats::fsync_latency_buckets`]; the last bucket counts everything above.
pub const FSYNC_LATENCY_BOUNDS_US: [u64; 11] = [
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000,
];

/// Upper bounds (inclusive, records) of the batch-size buckets in
/// [`WalStats::batch_records_buckets`]; the last bucket counts everything above.
pub const BATCH_RECORDS_BOUNDS: [u64; 15] = [
    1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1_024, 2_048, 4_096, 8_192, 16_384,
];

/// Counters for metrics. All are totals since the log was opened.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WalStats {
    /// Records written.
    pub records: u64,
    /// Batches written (one per writer wake-up with work).
    pub batches: u64,
    /// `sync_data` calls on segments.
    pub fsyncs: u64,
    /// Bytes appended to segments.
    pub bytes: u64,
    /// Sum of fsync latencies, nanoseconds.
    pub fsync_ns_sum: u64,
    /// Slowest fsync, nanoseconds.
    pub fsync_ns_max: u64,
    /// Fsync latency histogram, bounds in [`FSYNC_LATENCY_BOUNDS_US`] plus overflow.
    pub fsync_latency_buckets: [u64; 12],
    /// Records-per-batch histogram, bounds in [`BATCH_RECORDS_BOUNDS`] plus overflow.
    pub batch_records_buckets: [u64; 16],
    /// Times a producer blocked (or `try_submit` failed) on a full queue.
    pub queue_full_waits: u64,
    /// Segments created.
    pub segments_created: u64,
    /// Highest sequence number completed as durable (under the configured mode).
    pub durable_seq: u64,
}

#[derive(Default)]
struct Counters {
    records: AtomicU64,
    batches: AtomicU64,
    fsyncs: AtomicU64,
    bytes: AtomicU64,
    fsync_ns_sum: AtomicU64,
    fsync_ns_max: AtomicU64,
    fsync_latency_buckets: [AtomicU64; 12],
    batch_records_buckets: [AtomicU64; 16],
    queue_full_waits: AtomicU64,
    segments_created: AtomicU64,
}

fn bucket(bounds: &[u64], value: u64) -> usize {
    bounds
        .iter()
        .position(|&b| value <= b)
        .unwrap_or(bounds.len())
}

impl Counters {
    fn fsync(&self, elapsed: Duration) {
        let ns = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.fsyncs.fetch_add(1, Ordering::Relaxed);
        self.fsync_ns_sum.fetch_add(ns, Ordering::Relaxed);
        self.fsync_ns_max.fetch_max(ns, Ordering::Relaxed);
        let us = ns / 1_000;
        self.fsync_latency_buckets[bucket(&FSYNC_LATENCY_BOUNDS_US, us)]
            .fetch_add(1, Ordering::Relaxed);
    }
}

/// A segment open for appending.
pub(crate) struct ActiveSegment {
    file: Box<dyn StorageFile>,
    name: String,
    /// Bytes in the file, including ones still in the writer's buffer.
    len: u64,
}

impl ActiveSegment {
    /// The segment's file name.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn open(storage: &dyn Storage, name: &str, len: u64) -> Result<Self, WalError> {
        let file = storage
            .open_append(name)
            .map_err(|e| WalError::io("open", name, e))?;
        Ok(Self {
            file,
            name: name.to_owned(),
            len,
        })
    }

    /// Creates a segment and makes its header and directory entry durable before any
    /// record goes in, so a crash can only ever tear the newest segment.
    pub(crate) fn create(
        storage: &dyn Storage,
        first_seq: u64,
        prev_hash: Hash,
    ) -> Result<Self, WalError> {
        let name = segment_name(first_seq);
        let mut file = storage
            .create(&name)
            .map_err(|e| WalError::io("create", &name, e))?;
        let header = SegmentHeader {
            first_seq,
            prev_hash,
        };
        write_all(file.as_mut(), &header.encode(), &name)?;
        file.sync_data()
            .map_err(|e| WalError::io("sync_data", &name, e))?;
        storage
            .sync_dir()
            .map_err(|e| WalError::io("sync_dir", storage.describe(), e))?;
        Ok(Self {
            file,
            name,
            len: SEGMENT_HEADER_LEN as u64,
        })
    }

    fn has_records(&self) -> bool {
        self.len > SEGMENT_HEADER_LEN as u64
    }
}

/// Where the writer continues after recovery.
#[derive(Clone, Copy)]
pub(crate) struct Resume {
    pub next_seq: u64,
    pub prev_hash: Hash,
    /// The snapshot recovery started from (or `(0, genesis)`).
    pub base: (u64, Hash),
}

struct Submission {
    first_seq: u64,
    records: Vec<Vec<u8>>,
    on_done: Option<OnDone>,
    force_sync: bool,
}

struct State {
    next_seq: u64,
    queue: Vec<Submission>,
    queued_records: usize,
    poisoned: Option<String>,
    closing: bool,
    writer_idle: bool,
    /// The writer waits for `commit_delay_records` queued records (see
    /// `WalConfig::commit_delay`).
    writer_gathering: bool,
}

/// Recent chain hashes by sequence number, so a snapshot can find the hash of the
/// record it covers without reading the log.
const HASH_RING_LEN: usize = 1 << 16;

struct HashRing {
    entries: Vec<(u64, Hash)>,
}

impl HashRing {
    fn get(&self, seq: u64) -> Option<Hash> {
        let (at, hash) = self.entries[(seq as usize) % HASH_RING_LEN];
        (at == seq).then_some(hash)
    }
}

struct Shared {
    config: WalConfig,
    state: Mutex<State>,
    work: Condvar,
    space: Condvar,
    /// Seq and hash of the last record the writer completed.
    head: Mutex<(u64, Hash)>,
    ring: Mutex<HashRing>,
    /// Held while a segment is being created, so snapshot pruning never sees a
    /// segment whose header is not yet durable.
    rotation: Mutex<()>,
    counters: Counters,
}

struct Inner {
    shared: Arc<Shared>,
    storage: Arc<dyn Storage>,
    writer: Mutex<Option<JoinHandle<()>>>,
    snapshot_lock: Mutex<()>,
    base: (u64, Hash),
}

impl Drop for Inner {
    fn drop(&mut self) {
        shutdown(&self.shared, &self.writer);
    }
}

fn shutdown(shared: &Shared, writer: &Mutex<Option<JoinHandle<()>>>) {
    shared.state.lock().closing = true;
    shared.work.notify_one();
    shared.space.notify_all();
    if let Some(handle) = writer.lock().take() {
        // A panic on the writer thread already poisoned nothing we could report.
        let _ = handle.join();
    }
}

/// The write side of the log: a cheap, cloneable, thread-safe handle.
#[derive(Clone)]
pub struct Wal {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Wal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wal")
            .field("last_seq", &self.last_seq())
            .field("poisoned", &self.poisoned())
            .finish_non_exhaustive()
    }
}

pub(crate) fn start(
    storage: Arc<dyn Storage>,
    config: WalConfig,
    resume: Resume,
    segment: Option<ActiveSegment>,
) -> Wal {
    let last = resume.next_seq - 1;
    let shared = Arc::new(Shared {
        config,
        state: Mutex::new(State {
            next_seq: resume.next_seq,
            queue: Vec::new(),
            queued_records: 0,
            poisoned: None,
            closing: false,
            writer_idle: false,
            writer_gathering: false,
        }),
        work: Condvar::new(),
        space: Condvar::new(),
        head: Mutex::new((last, resume.prev_hash)),
        ring: Mutex::new(HashRing {
            entries: vec![(u64::MAX, [0; 32]); HASH_RING_LEN],
        }),
        rotation: Mutex::new(()),
        counters: Counters::default(),
    });
    let writer = Writer {
        shared: Arc::clone(&shared),
        storage: Arc::clone(&storage),
        segment,
        next_seq: resume.next_seq,
        prev_hash: resume.prev_hash,
        buf: Vec::new(),
        hashes: Vec::new(),
        last_sync: Instant::now(),
        last_batch_records: 0,
        unsynced: false,
    };
    let handle = std::thread::Builder::new()
        .name("allot-wal-writer".into())
        .spawn(move || writer.run())
        .expect("spawning the wal writer thread");
    Wal {
        inner: Arc::new(Inner {
            shared,
            storage,
            writer: Mutex::new(Some(handle)),
            snapshot_lock: Mutex::new(()),
            base: resume.base,
        }),
    }
}

impl Wal {
    /// Assigns consecutive sequence numbers to `records` (returned at once), queues
    /// them, and calls `on_done` on the writer thread once all of them are durable
    /// under the configured mode, or with `Err(Poisoned)` if a write or sync failed.
    /// Completions fire in submission order. An empty `records` is a barrier: it
    /// completes once everything submitted before it is durable. Blocks while the
    /// bounded queue is full.
    ///
    /// When this returns `Err`, `on_done` is dropped without being called.
    ///
    /// # Errors
    /// `Poisoned`, `Closed`, or `TooLarge` for a payload over [`RECORD_PAYLOAD_MAX`].
    pub fn submit(&self, records: Vec<Vec<u8>>, on_done: OnDone) -> Result<Range<u64>, WalError> {
        self.enqueue(records, Some(on_done), false, true)
    }

    /// Like [`Wal::submit`] but returns `Err(Full)` instead of blocking.
    ///
    /// # Errors
    /// `Full`, and as [`Wal::submit`].
    pub fn try_submit(
        &self,
        records: Vec<Vec<u8>>,
        on_done: OnDone,
    ) -> Result<Range<u64>, WalError> {
        self.enqueue(records, Some(on_done), false, false)
    }

    /// Submits one record and waits until it is durable; returns its sequence number.
    ///
    /// # Errors
    /// As [`Wal::submit`], plus the completion's error.
    pub fn append_sync(&self, payload: &[u8]) -> Result<u64, WalError> {
        let (tx, rx) = mpsc::sync_channel(1);
        let range = self.submit(
            vec![payload.to_vec()],
            Box::new(move |result| {
                let _ = tx.send(result);
            }),
        )?;
        wait(&rx)?;
        Ok(range.start)
    }

    /// Waits until everything submitted so far is durable; with `force_sync` it is
    /// also fdatasynced even in `Async` mode.
    ///
    /// # Errors
    /// `Poisoned` or `Closed`.
    pub fn flush(&self) -> Result<u64, WalError> {
        let (tx, rx) = mpsc::sync_channel(1);
        let range = self.enqueue(
            Vec::new(),
            Some(Box::new(move |result| {
                let _ = tx.send(result);
            })),
            true,
            true,
        )?;
        wait(&rx)?;
        Ok(range.start - 1)
    }

    fn enqueue(
        &self,
        records: Vec<Vec<u8>>,
        on_done: Option<OnDone>,
        force_sync: bool,
        block: bool,
    ) -> Result<Range<u64>, WalError> {
        if let Some(big) = records.iter().find(|r| r.len() > RECORD_PAYLOAD_MAX) {
            return Err(WalError::TooLarge {
                len: big.len(),
                max: RECORD_PAYLOAD_MAX,
            });
        }
        let shared = &self.inner.shared;
        let count = records.len();
        let mut state = shared.state.lock();
        loop {
            if let Some(why) = &state.poisoned {
                return Err(WalError::Poisoned(why.clone()));
            }
            if state.closing {
                return Err(WalError::Closed);
            }
            // An oversized submission still goes in when the queue is empty, so it
            // cannot wait forever.
            if state.queued_records == 0
                || state.queued_records + count <= shared.config.queue_records_max
            {
                break;
            }
            shared
                .counters
                .queue_full_waits
                .fetch_add(1, Ordering::Relaxed);
            if !block {
                return Err(WalError::Full);
            }
            shared.space.wait(&mut state);
        }
        let first_seq = state.next_seq;
        state.next_seq += count as u64;
        state.queued_records += count;
        state.queue.push(Submission {
            first_seq,
            records,
            on_done,
            force_sync,
        });
        if state.writer_idle {
            state.writer_idle = false;
            shared.work.notify_one();
        } else if state.writer_gathering
            && (force_sync || state.queued_records >= shared.config.commit_delay_records)
        {
            state.writer_gathering = false;
            shared.work.notify_one();
        }
        Ok(first_seq..first_seq + count as u64)
    }

    /// Writes a snapshot covering every record up to `covers_seq`: first waits until
    /// those records are durable (forcing an fdatasync in `Async` mode), then writes
    /// a temporary file, fsyncs, renames, fsyncs the directory; then keeps only the
    /// newest `snapshots_keep` snapshots and deletes segments the new one fully
    /// covers. With `Durability::None` it does nothing.
    ///
    /// # Errors
    /// `InvalidArgument` for a sequence number not yet assigned, `Poisoned`, or `Io`.
    /// An `Io` error here does not poison the log.
    pub fn write_snapshot(&self, covers_seq: u64, blob: &[u8]) -> Result<(), WalError> {
        let last = self.last_seq();
        if covers_seq > last {
            return Err(WalError::InvalidArgument(format!(
                "snapshot covers seq {covers_seq} but the last assigned is {last}"
            )));
        }
        if self.inner.shared.config.durability == Durability::None {
            return Ok(());
        }
        self.flush()?;
        let _serial = self.inner.snapshot_lock.lock();
        let hash = self.hash_at(covers_seq)?;
        let storage = self.inner.storage.as_ref();
        snapshot::write_snapshot(storage, covers_seq, hash, blob)?;
        self.prune()
    }

    /// The chain hash of record `seq`, which must be durable.
    fn hash_at(&self, seq: u64) -> Result<Hash, WalError> {
        let (base_seq, base_hash) = self.inner.base;
        if seq == base_seq {
            return Ok(base_hash);
        }
        if let Some(hash) = self.inner.shared.ring.lock().get(seq) {
            return Ok(hash);
        }
        // Older than the ring: read it back from the segment that holds it.
        let storage = &self.inner.storage;
        let names = storage
            .list()
            .map_err(|e| WalError::io("list", storage.describe(), e))?;
        let mut segments = list_segments(&names);
        let Some(at) = segments.iter().rposition(|s| s.first_seq <= seq) else {
            return Err(WalError::InvalidArgument(format!(
                "seq {seq} is older than the log"
            )));
        };
        segments.drain(..at);
        let mut scanner = Scanner::new(Arc::clone(storage), segments, Vec::<Checkpoint>::new());
        while let Some(found) = scanner.advance()? {
            if found == seq {
                return Ok(scanner.prev_hash);
            }
        }
        Err(WalError::InvalidArgument(format!(
            "seq {seq} is not in the log"
        )))
    }

    /// Deletes old snapshots and the segments the newest one covers.
    fn prune(&self) -> Result<(), WalError> {
        let storage = self.inner.storage.as_ref();
        let dir = storage.describe();
        let _rotation = self.inner.shared.rotation.lock();
        let names = storage.list().map_err(|e| WalError::io("list", &dir, e))?;
        let snapshots = list_snapshots(&names);
        let keep = self.inner.shared.config.snapshots_keep.max(1);
        let Some((newest, _)) = snapshots.last() else {
            return Ok(());
        };
        let mut doomed: Vec<&str> = snapshots[..snapshots.len().saturating_sub(keep)]
            .iter()
            .map(|(_, n)| n.as_str())
            .collect();
        let segments = list_segments(&names);
        // Oldest first, so an interrupted prune leaves a contiguous suffix.
        for pair in segments.windows(2) {
            if pair[1].first_seq <= newest + 1 {
                doomed.push(&pair[0].name);
            }
        }
        if doomed.is_empty() {
            return Ok(());
        }
        for name in doomed {
            storage
                .remove(name)
                .map_err(|e| WalError::io("remove", name, e))?;
        }
        storage
            .sync_dir()
            .map_err(|e| WalError::io("sync_dir", &dir, e))
    }

    /// Highest sequence number assigned so far (0 for an empty log).
    pub fn last_seq(&self) -> u64 {
        self.inner.shared.state.lock().next_seq - 1
    }

    /// Sequence number and chain hash of the last record completed as durable.
    pub fn durable_head(&self) -> (u64, Hash) {
        *self.inner.shared.head.lock()
    }

    /// Chain hash of the last record completed as durable (see [`Wal::durable_head`]).
    pub fn last_hash(&self) -> Hash {
        self.durable_head().1
    }

    /// Counters for metrics.
    pub fn stats(&self) -> WalStats {
        let c = &self.inner.shared.counters;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        WalStats {
            records: load(&c.records),
            batches: load(&c.batches),
            fsyncs: load(&c.fsyncs),
            bytes: load(&c.bytes),
            fsync_ns_sum: load(&c.fsync_ns_sum),
            fsync_ns_max: load(&c.fsync_ns_max),
            fsync_latency_buckets: std::array::from_fn(|i| load(&c.fsync_latency_buckets[i])),
            batch_records_buckets: std::array::from_fn(|i| load(&c.batch_records_buckets[i])),
            queue_full_waits: load(&c.queue_full_waits),
            segments_created: load(&c.segments_created),
            durable_seq: self.durable_head().0,
        }
    }

    /// Why the log is poisoned, if it is.
    pub fn poisoned(&self) -> Option<String> {
        self.inner.shared.state.lock().poisoned.clone()
    }

    /// Writes and syncs everything queued, then stops the writer thread. Other
    /// clones of this handle get `Closed` afterwards. Dropping the last handle does
    /// the same, ignoring errors.
    ///
    /// # Errors
    /// `Poisoned` if the log was or became poisoned.
    pub fn close(self) -> Result<(), WalError> {
        shutdown(&self.inner.shared, &self.inner.writer);
        match self.poisoned() {
            Some(why) => Err(WalError::Poisoned(why)),
            None => Ok(()),
        }
    }
}

fn wait(rx: &mpsc::Receiver<Completion>) -> Result<Range<u64>, WalError> {
    rx.recv()
        .unwrap_or_else(|_| Err(WalError::Poisoned("writer stopped".into())))
}

/// The writer thread's state.
struct Writer {
    shared: Arc<Shared>,
    storage: Arc<dyn Storage>,
    /// `None` with `Durability::None`.
    segment: Option<ActiveSegment>,
    next_seq: u64,
    prev_hash: Hash,
    /// Framed records not yet appended; reused across batches.
    buf: Vec<u8>,
    /// `(seq, hash)` of the batch, copied into the ring once per batch.
    hashes: Vec<(u64, Hash)>,
    last_sync: Instant,
    /// Bytes appended since the last sync (`Async` mode).
    unsynced: bool,
    /// Records of the previous batch (see `WalConfig::commit_delay`).
    last_batch_records: usize,
}

enum Work {
    Batch(Vec<Submission>),
    SyncDue,
    Exit,
}

impl Writer {
    fn run(mut self) {
        let mut spare = Vec::new();
        loop {
            match self.next_work(std::mem::take(&mut spare)) {
                Work::Exit => break,
                Work::SyncDue => {
                    if let Err(error) = self.sync() {
                        self.poison(&error, Vec::new());
                        break;
                    }
                }
                Work::Batch(mut batch) => {
                    if let Err(error) = self.write_batch(&batch) {
                        self.poison(&error, batch);
                        break;
                    }
                    Self::complete(&mut batch);
                    spare = batch;
                }
            }
        }
        if self.unsynced && self.shared.state.lock().poisoned.is_none() {
            if let Err(error) = self.sync() {
                self.poison(&error, Vec::new());
            }
        }
    }

    /// Waits for work; swaps the queue out with `spare` (an empty vector whose
    /// capacity is reused).
    fn next_work(&mut self, mut spare: Vec<Submission>) -> Work {
        let mut state = self.shared.state.lock();
        while state.queue.is_empty() {
            if state.closing {
                return Work::Exit;
            }
            state.writer_idle = true;
            match self.sync_deadline() {
                Some(deadline) if Instant::now() >= deadline => {
                    state.writer_idle = false;
                    return Work::SyncDue;
                }
                Some(deadline) => {
                    self.shared.work.wait_until(&mut state, deadline);
                }
                None => self.shared.work.wait(&mut state),
            }
            state.writer_idle = false;
        }
        self.gather(&mut state);
        self.last_batch_records = state.queued_records;
        std::mem::swap(&mut state.queue, &mut spare);
        state.queued_records = 0;
        drop(state);
        self.shared.space.notify_all();
        Work::Batch(spare)
    }

    /// Under load (the previous batch was large), waits a little for a small batch to
    /// grow, so that one fdatasync covers more records (`WalConfig::commit_delay`).
    fn gather(&self, state: &mut MutexGuard<'_, State>) {
        let config = &self.shared.config;
        let wanted = config.commit_delay_records;
        if config.durability != Durability::Fsync
            || config.commit_delay.is_zero()
            || self.last_batch_records < wanted
            || state.queued_records >= wanted
            || state.queue.iter().any(|s| s.force_sync)
        {
            return;
        }
        let deadline = Instant::now() + config.commit_delay;
        state.writer_gathering = true;
        while state.writer_gathering && !state.closing {
            if self.shared.work.wait_until(state, deadline).timed_out() {
                break;
            }
        }
        state.writer_gathering = false;
    }

    fn sync_deadline(&self) -> Option<Instant> {
        match self.shared.config.durability {
            Durability::Async { sync_interval } if self.unsynced => {
                Some(self.last_sync + sync_interval)
            }
            _ => None,
        }
    }

    fn write_batch(&mut self, batch: &[Submission]) -> Result<(), WalError> {
        let mut records = 0_u64;
        self.hashes.clear();
        for submission in batch {
            debug_assert_eq!(submission.first_seq, self.next_seq);
            for payload in &submission.records {
                self.frame(payload)?;
                records += 1;
            }
        }
        self.flush_buf()?;
        let force = batch.iter().any(|s| s.force_sync);
        match self.shared.config.durability {
            Durability::Fsync => self.sync()?,
            Durability::Async { sync_interval } => {
                if force || self.last_sync.elapsed() >= sync_interval {
                    self.sync()?;
                }
            }
            Durability::None => {}
        }
        {
            let mut ring = self.shared.ring.lock();
            for &(seq, hash) in &self.hashes {
                ring.entries[(seq as usize) % HASH_RING_LEN] = (seq, hash);
            }
        }
        *self.shared.head.lock() = (self.next_seq - 1, self.prev_hash);
        let counters = &self.shared.counters;
        counters.records.fetch_add(records, Ordering::Relaxed);
        counters.batches.fetch_add(1, Ordering::Relaxed);
        counters.batch_records_buckets[bucket(&BATCH_RECORDS_BOUNDS, records)]
            .fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Frames one record into the buffer, rotating segments and flushing as needed.
    fn frame(&mut self, payload: &[u8]) -> Result<(), WalError> {
        let len = record_len(payload.len());
        if let Some(segment) = &self.segment {
            if segment.has_records()
                && segment.len + len as u64 > self.shared.config.segment_bytes_max
            {
                self.rotate()?;
            } else if !self.buf.is_empty()
                && self.buf.len() + len > self.shared.config.batch_bytes_max
            {
                self.flush_buf()?;
            }
        }
        let seq = self.next_seq;
        let hash = encode_record(&mut self.buf, seq, &self.prev_hash, payload);
        self.hashes.push((seq, hash));
        self.prev_hash = hash;
        self.next_seq += 1;
        match &mut self.segment {
            Some(segment) => segment.len += len as u64,
            // Nothing touches storage; the chain is still computed.
            None => self.buf.clear(),
        }
        Ok(())
    }

    fn flush_buf(&mut self) -> Result<(), WalError> {
        let Some(segment) = &mut self.segment else {
            return Ok(());
        };
        if self.buf.is_empty() {
            return Ok(());
        }
        write_all(segment.file.as_mut(), &self.buf, &segment.name)?;
        self.shared
            .counters
            .bytes
            .fetch_add(self.buf.len() as u64, Ordering::Relaxed);
        self.buf.clear();
        self.unsynced = true;
        Ok(())
    }

    /// Finishes the current segment durably and starts the next one.
    fn rotate(&mut self) -> Result<(), WalError> {
        self.flush_buf()?;
        self.sync()?;
        let _rotation = self.shared.rotation.lock();
        let segment = ActiveSegment::create(self.storage.as_ref(), self.next_seq, self.prev_hash)?;
        self.shared
            .counters
            .segments_created
            .fetch_add(1, Ordering::Relaxed);
        self.segment = Some(segment);
        Ok(())
    }

    fn sync(&mut self) -> Result<(), WalError> {
        let Some(segment) = &mut self.segment else {
            return Ok(());
        };
        let started = Instant::now();
        segment
            .file
            .sync_data()
            .map_err(|e| WalError::io("sync_data", &segment.name, e))?;
        self.shared.counters.fsync(started.elapsed());
        self.last_sync = Instant::now();
        self.unsynced = false;
        Ok(())
    }

    fn complete(batch: &mut Vec<Submission>) {
        for submission in batch.drain(..) {
            let range =
                submission.first_seq..submission.first_seq + submission.records.len() as u64;
            if let Some(on_done) = submission.on_done {
                run_callback(on_done, Ok(range));
            }
        }
    }

    /// Fails the batch and everything queued; nothing is completed as durable again.
    fn poison(&self, error: &WalError, batch: Vec<Submission>) {
        let why = error.to_string();
        let queued = {
            let mut state = self.shared.state.lock();
            state.poisoned = Some(why.clone());
            state.queued_records = 0;
            std::mem::take(&mut state.queue)
        };
        self.shared.space.notify_all();
        for submission in batch.into_iter().chain(queued) {
            if let Some(on_done) = submission.on_done {
                run_callback(on_done, Err(WalError::Poisoned(why.clone())));
            }
        }
    }
}

/// Runs a completion; a panicking callback must not take the writer down with it.
fn run_callback(on_done: OnDone, result: Completion) {
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || on_done(result)));
}
