//! Shards: one sequencer thread per shard owning its tenants' ledgers, fed by a bounded
//! channel, with its own WAL directory (`data_dir/shard-N`).
//!
//! A sequencer drains a batch of jobs, stamps one time on it (monotonic per shard:
//! `max(last, wall clock)`), applies the commands, hands the records of those that
//! changed something to the WAL in one submission, and releases every reply of the
//! batch (reads included) only in that submission's completion: nothing is visible
//! before it is durable. Between batches it expires due holds (`Tick`, logged only if
//! it changed something) and writes snapshots.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use allot_engine::query::{SkuStock, StockQuery};
use allot_engine::{Command, Event, Ledger, Outcome};
use allot_wal::{Durability, FileStorage, Wal, WalConfig};
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};
use rkyv::rancor;

use crate::config::Config;
use crate::error::ApiError;
use crate::events::EventHub;

/// A logged command: the WAL payload, decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct LogEntry {
    pub tenant: String,
    pub at_ms: u64,
    pub command: Command,
}

/// Encodes a log entry from borrowed parts (the command is not cloned):
/// `at_ms` (u64 LE) ‖ tenant length (u8) ‖ tenant ‖ the engine's command bytes.
pub fn encode_entry(tenant: &str, at_ms: u64, command: &Command) -> Vec<u8> {
    let tenant_len = u8::try_from(tenant.len()).expect("tenant codes are at most 64 bytes");
    let command = allot_engine::encode_command(command);
    let mut bytes = Vec::with_capacity(9 + tenant.len() + command.len());
    bytes.extend_from_slice(&at_ms.to_le_bytes());
    bytes.push(tenant_len);
    bytes.extend_from_slice(tenant.as_bytes());
    bytes.extend_from_slice(&command);
    bytes
}

/// Decodes a log entry; every length and the command bytes are checked.
pub fn decode_entry(bytes: &[u8]) -> Result<LogEntry, String> {
    let (at, rest) = bytes
        .split_first_chunk::<8>()
        .ok_or("entry shorter than its header")?;
    let (&tenant_len, rest) = rest.split_first().ok_or("entry shorter than its header")?;
    let (tenant, command) = rest
        .split_at_checked(usize::from(tenant_len))
        .ok_or("entry shorter than its tenant")?;
    let tenant = std::str::from_utf8(tenant).map_err(|e| format!("tenant: {e}"))?;
    let command = allot_engine::decode_command(command).map_err(|e| e.to_string())?;
    Ok(LogEntry {
        tenant: tenant.to_owned(),
        at_ms: u64::from_le_bytes(*at),
        command,
    })
}

/// A snapshot blob: every tenant's `Ledger::snapshot()` bytes.
#[derive(Debug, Clone, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct SnapshotBlob {
    pub last_at_ms: u64,
    pub tenants: Vec<(String, Vec<u8>)>,
}

/// Decodes a snapshot blob into ledgers.
pub fn decode_snapshot(bytes: &[u8]) -> Result<(u64, BTreeMap<String, Ledger>), String> {
    let mut aligned = rkyv::util::AlignedVec::<16>::with_capacity(bytes.len());
    aligned.extend_from_slice(bytes);
    let blob = rkyv::from_bytes::<SnapshotBlob, rancor::Error>(&aligned)
        .map_err(|e| format!("snapshot blob: {e}"))?;
    let mut tenants = BTreeMap::new();
    for (name, ledger) in blob.tenants {
        let ledger = Ledger::restore(&ledger).map_err(|e| format!("tenant `{name}`: {e}"))?;
        tenants.insert(name, ledger);
    }
    Ok((blob.last_at_ms, tenants))
}

/// A stock view published by a shard: every SKU of a tenant in code order.
#[derive(Debug, Default)]
pub struct StockView {
    /// The shard's log sequence number this view is consistent at.
    pub as_of_seq: u64,
    pub skus: Vec<(SkuStock, bool)>,
}

/// What a job asks of the shard.
pub enum Work {
    /// Apply commands, in order.
    Commands(Vec<Command>),
    /// Read the ledger.
    Read,
    /// Read the tenant's published stock view.
    StockView,
}

/// What a job's `respond` sees.
pub struct Ctx<'a> {
    /// The tenant's ledger (empty if the tenant does not exist).
    pub ledger: &'a Ledger,
    /// One outcome per command of `Work::Commands`.
    pub outcomes: &'a [Outcome],
    /// The time stamped on the batch.
    pub now_ms: u64,
    pub stock_view: Option<Arc<StockView>>,
}

/// Called once the batch is durable, with whether it is (false: the log failed).
pub type Deliver = Box<dyn FnOnce(bool) + Send>;
/// Called on the shard thread right after the job's work, to compute its reply.
pub type Respond = Box<dyn FnOnce(&Ctx<'_>) -> Deliver + Send>;

/// One request to a shard.
pub struct Job {
    pub tenant: String,
    pub work: Work,
    pub respond: Respond,
}

/// Counters a shard exposes for /metrics and /readyz.
#[derive(Debug, Default)]
pub struct ShardStatus {
    pub ready: AtomicBool,
    pub failed: AtomicBool,
    pub replayed_records: AtomicU64,
    pub wal: OnceLock<Wal>,
}

struct Handle {
    tx: Sender<Job>,
    status: Arc<ShardStatus>,
    thread: parking_lot::Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// Every shard of the server.
pub struct Shards {
    handles: Vec<Handle>,
    pub hub: Arc<EventHub>,
    stopping: Arc<AtomicBool>,
    config: Arc<Config>,
}

/// One message per shard: its index once it serves, or why its recovery failed.
pub type Started = std::sync::mpsc::Receiver<Result<usize, String>>;

/// FNV-1a: a stable tenant → shard mapping (std's hasher is randomly seeded).
pub fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// Milliseconds since the Unix epoch by the wall clock.
pub fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

const META_FILE: &str = "allot.meta";

/// Checks (or records) the shard count of a data dir: tenants are placed by hash
/// modulo the count, so it cannot change under existing data.
pub fn check_data_dir(dir: &Path, shards: usize) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let meta = dir.join(META_FILE);
    let line = format!("shards = {shards}\n");
    match std::fs::read_to_string(&meta) {
        Ok(text) if text == line => Ok(()),
        Ok(text) => Err(format!(
            "{} says `{}` but --shards is {shards}; a data dir keeps its shard count",
            meta.display(),
            text.trim()
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::write(&meta, line).map_err(|e| format!("{}: {e}", meta.display()))
        }
        Err(e) => Err(format!("{}: {e}", meta.display())),
    }
}

/// The shard count recorded in a data dir.
pub fn data_dir_shards(dir: &Path) -> Result<usize, String> {
    let meta = dir.join(META_FILE);
    let text = std::fs::read_to_string(&meta).map_err(|e| format!("{}: {e}", meta.display()))?;
    text.trim()
        .strip_prefix("shards = ")
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| format!("{}: cannot read the shard count", meta.display()))
}

/// The WAL directory of shard `index`.
pub fn shard_dir(data_dir: &Path, index: usize) -> PathBuf {
    data_dir.join(format!("shard-{index}"))
}

impl Shards {
    /// Starts every shard thread; each recovers its log and then serves. The receiver
    /// gets one message per shard: `Ok` once it serves, or why its recovery failed.
    pub fn start(config: Arc<Config>) -> Result<(Arc<Self>, Started), String> {
        check_data_dir(&config.data_dir, config.shards)?;
        let hub = Arc::new(EventHub::new(config.event_window));
        let stopping = Arc::new(AtomicBool::new(false));
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        let mut handles = Vec::with_capacity(config.shards);
        for index in 0..config.shards {
            let (tx, rx) = crossbeam_channel::bounded(config.queue_max);
            let status = Arc::new(ShardStatus::default());
            let sequencer = Sequencer {
                index,
                config: Arc::clone(&config),
                hub: Arc::clone(&hub),
                status: Arc::clone(&status),
                stopping: Arc::clone(&stopping),
                tenants: BTreeMap::new(),
                empty: Ledger::default(),
                last_ms: 0,
                views: HashMap::new(),
                raw_events: Vec::new(),
                snapshot_busy: Arc::new(AtomicBool::new(false)),
                snapshot_seq: 0,
            };
            let started = started_tx.clone();
            let thread = std::thread::Builder::new()
                .name(format!("allot-shard-{index}"))
                .spawn(move || sequencer.run(&rx, &started))
                .map_err(|e| format!("spawning shard {index}: {e}"))?;
            handles.push(Handle {
                tx,
                status,
                thread: parking_lot::Mutex::new(Some(thread)),
            });
        }
        Ok((
            Arc::new(Self {
                handles,
                hub,
                stopping,
                config,
            }),
            started_rx,
        ))
    }

    /// The shard of a tenant.
    pub fn shard_of(&self, tenant: &str) -> usize {
        (fnv1a(tenant) % self.handles.len() as u64) as usize
    }

    pub fn len(&self) -> usize {
        self.handles.len()
    }

    pub fn is_empty(&self) -> bool {
        self.handles.is_empty()
    }

    /// Whether every shard has recovered and serves.
    pub fn ready(&self) -> bool {
        self.handles
            .iter()
            .all(|h| h.status.ready.load(Ordering::Acquire))
    }

    pub fn status(&self, index: usize) -> &ShardStatus {
        &self.handles[index].status
    }

    /// Jobs waiting in a shard's queue.
    pub fn queue_depth(&self, index: usize) -> usize {
        self.handles[index].tx.len()
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Queues a job without blocking: a full queue is 503 (backpressure, never
    /// unbounded memory).
    pub fn submit(&self, job: Job) -> Result<(), ApiError> {
        let handle = &self.handles[self.shard_of(&job.tenant)];
        if self.stopping.load(Ordering::Acquire) {
            return Err(ApiError::unavailable("the server is shutting down"));
        }
        if handle.status.failed.load(Ordering::Acquire) {
            return Err(ApiError::shard_failed());
        }
        if !handle.status.ready.load(Ordering::Acquire) {
            return Err(ApiError::unavailable("the server is recovering its log"));
        }
        handle.tx.try_send(job).map_err(|e| match e {
            TrySendError::Full(_) => ApiError::overloaded(),
            TrySendError::Disconnected(_) => ApiError::unavailable("the shard has stopped"),
        })
    }

    /// Runs `work` on the tenant's shard and answers with what `f` computes from it,
    /// once everything it saw is durable.
    pub async fn call<T, F>(&self, tenant: &str, work: Work, f: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&Ctx<'_>) -> Result<T, ApiError> + Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let respond: Respond = Box::new(move |ctx| {
            let result = f(ctx);
            Box::new(move |durable| {
                let _ = tx.send(if durable {
                    result
                } else {
                    Err(ApiError::shard_failed())
                });
            })
        });
        self.submit(Job {
            tenant: tenant.to_owned(),
            work,
            respond,
        })?;
        rx.await.unwrap_or_else(|_| Err(ApiError::shard_failed()))
    }

    /// Stops every shard: finishes queued jobs, flushes, snapshots, closes the logs.
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::Release);
        for handle in &self.handles {
            if let Some(thread) = handle.thread.lock().take() {
                if thread.join().is_err() {
                    tracing::error!("a shard thread panicked");
                }
            }
        }
    }
}

struct Sequencer {
    index: usize,
    config: Arc<Config>,
    hub: Arc<EventHub>,
    status: Arc<ShardStatus>,
    stopping: Arc<AtomicBool>,
    tenants: BTreeMap<String, Ledger>,
    /// What a read of a tenant that does not exist sees.
    empty: Ledger,
    last_ms: u64,
    views: HashMap<String, CachedView>,
    /// Events of the command being applied (reused, so applying does not allocate it).
    raw_events: Vec<Event>,
    snapshot_busy: Arc<AtomicBool>,
    /// The sequence number the newest snapshot covers (no new one without new records).
    snapshot_seq: u64,
}

struct CachedView {
    view: Arc<StockView>,
    built: Instant,
    dirty: bool,
}

/// Events of one batch, rendered, by tenant.
type BatchEvents = Vec<(String, Vec<Event>)>;

/// SKUs a catalog may have for its stock view to be rebuilt on every read.
const VIEW_ALWAYS_FRESH_SKUS: usize = 2_000;

impl Sequencer {
    fn run(mut self, rx: &Receiver<Job>, started: &std::sync::mpsc::Sender<Result<usize, String>>) {
        let wal = match self.recover() {
            Ok(wal) => wal,
            Err(why) => {
                let _ = started.send(Err(why));
                return;
            }
        };
        let _ = self.status.wal.set(wal.clone());
        // Holds that ran out while the server was down expire before anyone can read.
        self.process(Vec::new(), true, &wal);
        self.status.ready.store(true, Ordering::Release);
        let _ = started.send(Ok(self.index));
        self.serve(rx, &wal);
        self.shutdown(rx, wal);
    }

    fn recover(&mut self) -> Result<Wal, String> {
        let dir = shard_dir(&self.config.data_dir, self.index);
        let storage = FileStorage::new(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let wal_config = WalConfig {
            durability: self.config.durability,
            commit_delay: self.config.commit_delay,
            commit_delay_records: self.config.commit_delay_records,
            ..WalConfig::default()
        };
        let fail = |e: allot_wal::WalError| format!("{}: {e}", dir.display());
        let mut replay = allot_wal::open(storage, wal_config).map_err(fail)?;
        if let Some((covers, blob)) = replay.snapshot() {
            let (last_ms, tenants) = decode_snapshot(blob)
                .map_err(|e| format!("{}: snapshot at {covers}: {e}", dir.display()))?;
            for (name, ledger) in &tenants {
                self.hub.set_floor(name, ledger.last_event_seq());
                self.hub.tenant(name).learn_codes(ledger);
            }
            self.tenants = tenants;
            self.last_ms = last_ms;
            self.snapshot_seq = covers;
        }
        let started = Instant::now();
        let mut count = 0_u64;
        let mut events = Vec::new();
        while let Some((seq, payload)) = replay.next_ref().map_err(fail)? {
            let entry = decode_entry(payload)
                .map_err(|e| format!("{}: record {seq} does not decode: {e}", dir.display()))?;
            let ledger = self.tenants.entry(entry.tenant.clone()).or_default();
            events.clear();
            let outcome = ledger.apply(entry.at_ms, &entry.command, &mut events);
            if !outcome.changed {
                tracing::warn!(shard = self.index, seq, "a replayed record changed nothing");
            }
            if creates_codes(&entry.command) {
                self.hub.tenant(&entry.tenant).learn_codes(ledger);
            }
            self.hub.publish(&entry.tenant, std::mem::take(&mut events));
            self.last_ms = self.last_ms.max(entry.at_ms);
            count += 1;
            self.status.replayed_records.store(count, Ordering::Relaxed);
        }
        if let Some(torn) = replay.torn_tail() {
            tracing::warn!(shard = self.index, file = %torn.file, offset = torn.offset, bytes = torn.bytes, "dropping a torn tail");
        }
        let elapsed = started.elapsed().as_secs_f64();
        tracing::info!(
            shard = self.index,
            records = count,
            seconds = elapsed,
            records_per_s =
                (count.saturating_mul(1000) / started.elapsed().as_millis().max(1) as u64),
            tenants = self.tenants.len(),
            "replayed the log"
        );
        replay.finish().map_err(fail)
    }

    fn serve(&mut self, rx: &Receiver<Job>, wal: &Wal) {
        let tick = self.config.tick_interval;
        let mut next_tick = Instant::now() + tick;
        let mut next_snapshot = Instant::now() + self.config.snapshot_interval;
        while !self.stopping.load(Ordering::Acquire) {
            let wait = next_tick.saturating_duration_since(Instant::now());
            let mut batch = Vec::new();
            match rx.recv_timeout(wait.min(Duration::from_millis(50))) {
                Ok(job) => batch.push(job),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            while batch.len() < self.config.batch_max {
                match rx.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            let ticking = Instant::now() >= next_tick;
            if ticking {
                next_tick = Instant::now() + tick;
            }
            self.process(batch, ticking, wal);
            if Instant::now() >= next_snapshot {
                next_snapshot = Instant::now() + self.config.snapshot_interval;
                self.snapshot(wal, false);
            }
        }
    }

    fn shutdown(&mut self, rx: &Receiver<Job>, wal: Wal) {
        // Jobs already queued are finished; later ones find the flag set.
        loop {
            let batch: Vec<Job> = rx.try_iter().take(self.config.batch_max).collect();
            if batch.is_empty() {
                break;
            }
            self.process(batch, false, &wal);
        }
        self.snapshot(&wal, true);
        if let Err(e) = wal.close() {
            tracing::error!(shard = self.index, error = %e, "closing the log");
        }
        tracing::info!(shard = self.index, "shard stopped");
    }

    fn stamp(&mut self) -> u64 {
        self.last_ms = self.last_ms.max(wall_ms());
        self.last_ms
    }

    fn process(&mut self, batch: Vec<Job>, ticking: bool, wal: &Wal) {
        if batch.is_empty() && !ticking {
            return;
        }
        let now = self.stamp();
        let mut records = Vec::new();
        let mut events: BatchEvents = Vec::new();
        let mut delivers: Vec<Deliver> = Vec::with_capacity(batch.len());
        let failed = self.status.failed.load(Ordering::Acquire);
        let mut jobs = batch.into_iter().peekable();
        while let Some(job) = jobs.next() {
            if failed {
                // The log failed: nothing is applied; dropping the job answers 503.
                drop(job);
                continue;
            }
            // Each command is applied with the next one for the same ledger as its hint,
            // which the ledger makes where its own waits hide the hint's: the rest of
            // the job, then the next job's first command if it is for the same tenant.
            // A next job for another tenant (or after a job without commands) is hinted
            // to its ledger before this one.
            let applies = matches!(&job.work, Work::Commands(commands) if !commands.is_empty());
            let next_job = jobs.peek();
            let next_here = next_job
                .filter(|_| applies)
                .and_then(|next| match &next.work {
                    Work::Commands(commands) if next.tenant == job.tenant => commands.first(),
                    _ => None,
                });
            if let (Some(next), None) = (next_job, next_here) {
                self.prefetch(next);
            }
            let mut outcomes = Vec::new();
            if let Work::Commands(commands) = &job.work {
                self.ensure_tenant(&job.tenant, now, &mut records, &mut events);
                for (i, command) in commands.iter().enumerate() {
                    let upcoming = commands.get(i + 1).or(next_here);
                    let outcome = self.apply(
                        &job.tenant,
                        now,
                        command,
                        upcoming,
                        &mut records,
                        &mut events,
                    );
                    outcomes.push(outcome);
                }
            }
            let stock_view = matches!(job.work, Work::StockView)
                .then(|| self.stock_view(&job.tenant, wal.last_seq() + records.len() as u64));
            let ledger = self.tenants.get(&job.tenant).unwrap_or(&self.empty);
            let ctx = Ctx {
                ledger,
                outcomes: &outcomes,
                now_ms: now,
                stock_view,
            };
            delivers.push((job.respond)(&ctx));
        }
        if ticking && !failed {
            let names: Vec<String> = self.tenants.keys().cloned().collect();
            for name in names {
                self.apply(&name, now, &Command::Tick, None, &mut records, &mut events);
            }
        }
        self.commit(wal, records, delivers, events);
    }

    /// Hints the next job's first command to its tenant's ledger, so that its memory
    /// waits (a placement's idempotency-key slot) overlap the current job's work.
    fn prefetch(&self, job: &Job) {
        if let Work::Commands(commands) = &job.work {
            if let (Some(ledger), Some(command)) = (self.tenants.get(&job.tenant), commands.first())
            {
                ledger.prefetch(command);
            }
        }
    }

    /// Creates a tenant on its first command, logging its configured settings.
    fn ensure_tenant(
        &mut self,
        tenant: &str,
        now: u64,
        records: &mut Vec<Vec<u8>>,
        events: &mut BatchEvents,
    ) {
        if self.tenants.contains_key(tenant) {
            return;
        }
        self.tenants.insert(tenant.to_owned(), Ledger::default());
        let patch = self.config.initial_settings(tenant);
        if patch != allot_engine::SettingsPatch::default() {
            let patch = Command::PutSettings(patch);
            let outcome = self.apply(tenant, now, &patch, None, records, events);
            if let Err(rejection) = outcome.result {
                tracing::warn!(tenant, %rejection, "the configured settings were refused");
            }
        }
    }

    fn apply(
        &mut self,
        tenant: &str,
        now: u64,
        command: &Command,
        upcoming: Option<&Command>,
        records: &mut Vec<Vec<u8>>,
        events: &mut BatchEvents,
    ) -> Outcome {
        let ledger = self.tenants.get_mut(tenant).expect("the tenant exists");
        let raw = &mut self.raw_events;
        raw.clear();
        let outcome = ledger.apply_hinting(now, command, upcoming, raw);
        if outcome.changed {
            records.push(encode_entry(tenant, now, command));
            if let Some(view) = self.views.get_mut(tenant) {
                view.dirty = true;
            }
        }
        if outcome.result.is_ok() && creates_codes(command) {
            // Before the events that name them can be published.
            self.hub.tenant(tenant).learn_codes(ledger);
        }
        if !raw.is_empty() {
            match events.last_mut() {
                Some((last, batch)) if last == tenant => batch.append(raw),
                _ => events.push((tenant.to_owned(), std::mem::take(raw))),
            }
        }
        outcome
    }

    fn stock_view(&mut self, tenant: &str, seq: u64) -> Arc<StockView> {
        let ledger = self.tenants.get(tenant).unwrap_or(&self.empty);
        let small = ledger.state().skus.len() <= VIEW_ALWAYS_FRESH_SKUS;
        let refresh = self.config.stock_view_refresh;
        if let Some(cached) = self.views.get(tenant) {
            if !cached.dirty || (!small && cached.built.elapsed() < refresh) {
                return Arc::clone(&cached.view);
            }
        }
        let view = Arc::new(build_view(ledger, seq));
        self.views.insert(
            tenant.to_owned(),
            CachedView {
                view: Arc::clone(&view),
                built: Instant::now(),
                dirty: false,
            },
        );
        view
    }

    fn commit(
        &self,
        wal: &Wal,
        records: Vec<Vec<u8>>,
        delivers: Vec<Deliver>,
        events: BatchEvents,
    ) {
        if records.is_empty() && delivers.is_empty() {
            return;
        }
        if self.status.failed.load(Ordering::Acquire) {
            for deliver in delivers {
                deliver(false);
            }
            return;
        }
        let hub = Arc::clone(&self.hub);
        let status = Arc::clone(&self.status);
        let on_done = Box::new(move |result: allot_wal::Completion| {
            let durable = result.is_ok();
            if durable {
                for (tenant, batch) in events {
                    hub.publish(&tenant, batch);
                }
            } else {
                status.failed.store(true, Ordering::Release);
            }
            for deliver in delivers {
                deliver(durable);
            }
        });
        if let Err(e) = wal.submit(records, on_done) {
            // The callback was dropped with its replies: their callers get 503.
            tracing::error!(shard = self.index, error = %e, "the log refused a batch; the shard stops acknowledging");
            self.status.failed.store(true, Ordering::Release);
        }
    }

    fn snapshot(&mut self, wal: &Wal, wait: bool) {
        let covers = wal.last_seq();
        if self.status.failed.load(Ordering::Acquire)
            || self.config.durability == Durability::None
            || covers == self.snapshot_seq
        {
            return;
        }
        if self.snapshot_busy.swap(true, Ordering::AcqRel) {
            if !wait {
                return;
            }
            while self.snapshot_busy.swap(true, Ordering::AcqRel) {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        let blob = SnapshotBlob {
            last_at_ms: self.last_ms,
            tenants: self
                .tenants
                .iter()
                .map(|(name, l)| (name.clone(), l.snapshot()))
                .collect(),
        };
        let bytes = rkyv::to_bytes::<rancor::Error>(&blob).expect("plain data always serializes");
        self.snapshot_seq = covers;
        let (wal, busy, index) = (wal.clone(), Arc::clone(&self.snapshot_busy), self.index);
        let write = move || {
            match wal.write_snapshot(covers, &bytes) {
                Ok(()) => tracing::info!(
                    shard = index,
                    covers,
                    bytes = bytes.len(),
                    "snapshot written"
                ),
                Err(e) => tracing::error!(shard = index, error = %e, "snapshot failed"),
            }
            busy.store(false, Ordering::Release);
        };
        if wait {
            write();
        } else if std::thread::Builder::new()
            .name("allot-snapshot".into())
            .spawn(write)
            .is_err()
        {
            tracing::error!(shard = index, "cannot spawn the snapshot thread");
            self.snapshot_busy.store(false, Ordering::Release);
        }
    }
}

/// Whether a command can create a SKU, warehouse or dealer (whose codes events name).
fn creates_codes(command: &Command) -> bool {
    matches!(
        command,
        Command::PutSku(_) | Command::PutWarehouse(_) | Command::PutDealer(_)
    )
}

/// Every SKU's stock in code order, with its below-threshold flag.
fn build_view(ledger: &Ledger, as_of_seq: u64) -> StockView {
    let mut skus = Vec::with_capacity(ledger.state().skus.len());
    let mut cursor = None;
    loop {
        let query = StockQuery {
            cursor,
            limit: allot_engine::limits::PAGE_LIMIT_MAX,
            ..StockQuery::default()
        };
        let Ok(page) = ledger.stock_page(&query) else {
            break;
        };
        for sku in page.skus {
            let below = ledger
                .sku_id(&sku.sku)
                .is_some_and(|id| ledger.state().skus[id.index()].below_threshold);
            skus.push((sku, below));
        }
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    StockView { as_of_seq, skus }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_entries_round_trip() {
        let command = Command::RecordPayment {
            dealer: "D1".into(),
            amount: 5,
        };
        let bytes = encode_entry("acme", 42, &command);
        let entry = LogEntry {
            tenant: "acme".into(),
            at_ms: 42,
            command,
        };
        assert_eq!(decode_entry(&bytes), Ok(entry));
        for cut in 0..bytes.len() {
            assert!(
                decode_entry(&bytes[..cut]).is_err(),
                "a cut at {cut} must not decode"
            );
        }
        assert!(decode_entry(b"garbage").is_err());
    }

    #[test]
    fn tenant_placement_is_stable() {
        assert_eq!(fnv1a(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a("a"), 0xaf63_dc4c_8601_ec8c);
    }
}
