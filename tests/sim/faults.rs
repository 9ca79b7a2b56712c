//! The fault model: what the simulated machine may do to the shard, chosen by the
//! seed. Crashes (at a random storage operation or between steps) keep nothing,
//! a prefix, or a prefix plus garbage of the unsynced bytes; fsyncs and writes fail;
//! snapshots are taken at random moments. Also the lying storage of the teeth tests.

use std::io;

use allot_wal::{CrashMode, Faults, MemStorage, Storage, StorageFile, StorageReader};

use crate::rng::Rng;

/// How often each fault is drawn, as `1 / n` per step.
#[derive(Clone, Copy, Debug)]
pub struct FaultRates {
    pub crash_between_steps: u64,
    pub crash_at_op: u64,
    pub fail_sync: u64,
    pub fail_write: u64,
    pub short_write: u64,
    pub snapshot: u64,
    /// When restarting, the chance (1 / n) that recovery itself crashes.
    pub crash_in_recovery: u64,
}

impl Default for FaultRates {
    fn default() -> Self {
        Self {
            crash_between_steps: 50,
            crash_at_op: 40,
            fail_sync: 70,
            fail_write: 120,
            short_write: 30,
            snapshot: 25,
            crash_in_recovery: 4,
        }
    }
}

pub fn crash_mode(rng: &mut Rng) -> CrashMode {
    let seed = rng.next_u64();
    match rng.below(3) {
        0 => CrashMode::LoseUnsynced,
        1 => CrashMode::KeepUnsyncedPrefix { seed },
        _ => CrashMode::KeepUnsyncedWithGarbage { seed },
    }
}

/// Faults to arm for the next steps, or `None` to leave the storage as it is.
pub fn draw_faults(rng: &mut Rng, rates: &FaultRates) -> Option<Faults> {
    let mut faults = Faults::default();
    let mut any = false;
    if rng.chance(1, rates.crash_at_op) {
        faults.crash_after_op = Some((rng.range(1, 8), crash_mode(rng)));
        any = true;
    }
    if rng.chance(1, rates.fail_sync) {
        faults.fail_sync_nth = Some(rng.range(1, 4));
        any = true;
    }
    if rng.chance(1, rates.fail_write) {
        faults.fail_write_nth = Some(rng.range(1, 4));
        any = true;
    }
    if rng.chance(1, rates.short_write) {
        faults.short_write_nth = Some(rng.range(1, 3));
        any = true;
    }
    any.then_some(faults)
}

/// A storage that acknowledges `sync_data` without making anything durable: the
/// classic lying disk cache. Only for the teeth tests.
pub struct LyingStorage {
    inner: MemStorage,
}

impl LyingStorage {
    pub fn new(inner: MemStorage) -> Self {
        Self { inner }
    }
}

struct LyingFile {
    inner: Box<dyn StorageFile>,
}

impl StorageFile for LyingFile {
    fn append(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.inner.append(bytes)
    }

    fn sync_data(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Storage for LyingStorage {
    fn list(&self) -> io::Result<Vec<String>> {
        self.inner.list()
    }
    fn create(&self, name: &str) -> io::Result<Box<dyn StorageFile>> {
        let inner = self.inner.create(name)?;
        Ok(Box::new(LyingFile { inner }))
    }
    fn open_append(&self, name: &str) -> io::Result<Box<dyn StorageFile>> {
        let inner = self.inner.open_append(name)?;
        Ok(Box::new(LyingFile { inner }))
    }
    fn open_read(&self, name: &str) -> io::Result<Box<dyn StorageReader>> {
        self.inner.open_read(name)
    }
    fn truncate(&self, name: &str, len: u64) -> io::Result<()> {
        self.inner.truncate(name, len)
    }
    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        self.inner.rename(from, to)
    }
    fn remove(&self, name: &str) -> io::Result<()> {
        self.inner.remove(name)
    }
    fn sync_dir(&self) -> io::Result<()> {
        self.inner.sync_dir()
    }
    fn describe(&self) -> String {
        "lying-mem:".into()
    }
}
