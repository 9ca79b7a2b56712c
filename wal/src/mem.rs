//! [`MemStorage`]: an in-memory [`Storage`] that knows which bytes are durable and
//! which are only written, and can inject faults.
//!
//! Model: every file is an append-only byte vector with a durable length (the
//! length at its last `sync_data`); the directory has a live and a durable view
//! (the latter updated by `sync_dir`). A crash replaces the live state by a state
//! a real machine could be left in: the durable directory (or, by a seeded choice,
//! the live one), and for each file its durable bytes plus nothing, a seeded prefix
//! of the unsynced bytes, or that prefix followed by garbage. Handles taken before
//! a crash fail every later call, like the file descriptors of a dead process;
//! [`MemStorage::restarted`] gives a fresh handle to the surviving state.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::storage::{Storage, StorageFile, StorageReader};

/// What a crash keeps of the bytes written but not yet synced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashMode {
    /// Unsynced bytes and unsynced directory changes are lost.
    LoseUnsynced,
    /// A seeded prefix of each file's unsynced bytes survives; unsynced directory
    /// changes survive or not by a seeded choice.
    KeepUnsyncedPrefix {
        /// Seed of the choices.
        seed: u64,
    },
    /// Like `KeepUnsyncedPrefix`, then up to 96 bytes of garbage (random or
    /// zeroes, seeded) after each file that had unsynced bytes.
    KeepUnsyncedWithGarbage {
        /// Seed of the choices.
        seed: u64,
    },
}

/// Faults to inject, counted from when they are set (1-based).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Faults {
    /// The nth `append` fails with an IO error and writes nothing.
    pub fail_write_nth: Option<u64>,
    /// The nth `append` writes only half of its bytes (at least one).
    pub short_write_nth: Option<u64>,
    /// The nth `sync_data` or `sync_dir` fails (and makes nothing durable).
    pub fail_sync_nth: Option<u64>,
    /// The machine crashes right after the nth mutating operation (create, append,
    /// sync, truncate, rename, remove), whether or not it failed.
    pub crash_after_op: Option<(u64, CrashMode)>,
}

#[derive(Debug, Default)]
struct MemFile {
    data: Vec<u8>,
    durable_len: usize,
}

#[derive(Debug, Default)]
struct MemInner {
    files: HashMap<u64, MemFile>,
    next_id: u64,
    live_dir: BTreeMap<String, u64>,
    durable_dir: BTreeMap<String, u64>,
    generation: u64,
    faults: Faults,
    ops: u64,
    writes: u64,
    syncs: u64,
    crashes: u64,
}

/// In-memory storage with durable/pending tracking and fault injection. Cloning
/// gives another handle to the same files.
#[derive(Debug, Clone, Default)]
pub struct MemStorage {
    inner: Arc<Mutex<MemInner>>,
    generation: u64,
}

fn crashed() -> io::Error {
    io::Error::other("storage handle is from before a crash")
}

fn not_found(name: &str) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("no file {name}"))
}

/// splitmix64: a tiny seeded generator for crash choices (no dependency needed).
fn next_random(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl MemInner {
    fn check(&self, generation: u64) -> io::Result<()> {
        if generation == self.generation {
            Ok(())
        } else {
            Err(crashed())
        }
    }

    /// Counts a mutating operation and crashes after it if so configured.
    fn after_op(&mut self) {
        self.ops += 1;
        if let Some((nth, mode)) = self.faults.crash_after_op {
            if self.ops == nth {
                self.crash(mode);
            }
        }
    }

    fn crash(&mut self, mode: CrashMode) {
        let (seed, garbage) = match mode {
            CrashMode::LoseUnsynced => (None, false),
            CrashMode::KeepUnsyncedPrefix { seed } => (Some(seed), false),
            CrashMode::KeepUnsyncedWithGarbage { seed } => (Some(seed), true),
        };
        let mut rng = seed.unwrap_or(0);
        let keep_dir_ops = seed.is_some() && next_random(&mut rng) % 2 == 0;
        let dir = if keep_dir_ops {
            self.live_dir.clone()
        } else {
            self.durable_dir.clone()
        };
        let mut files = HashMap::new();
        for id in dir.values() {
            let Some(mut file) = self.files.remove(id) else {
                continue;
            };
            let unsynced = file.data.len() - file.durable_len;
            let kept = match seed {
                Some(_) if unsynced > 0 => (next_random(&mut rng) % (unsynced as u64 + 1)) as usize,
                _ => 0,
            };
            file.data.truncate(file.durable_len + kept);
            if garbage && unsynced > 0 {
                let len = (next_random(&mut rng) % 97) as usize;
                let zeroes = next_random(&mut rng) % 2 == 0;
                for _ in 0..len {
                    let byte = if zeroes {
                        0
                    } else {
                        next_random(&mut rng) as u8
                    };
                    file.data.push(byte);
                }
            }
            file.durable_len = file.data.len();
            files.insert(*id, file);
        }
        self.files = files;
        self.live_dir.clone_from(&dir);
        self.durable_dir = dir;
        self.generation += 1;
        self.faults = Faults::default();
        self.crashes += 1;
    }

    fn id(&self, name: &str) -> io::Result<u64> {
        self.live_dir
            .get(name)
            .copied()
            .ok_or_else(|| not_found(name))
    }
}

impl MemStorage {
    /// An empty storage.
    pub fn new() -> Self {
        Self::default()
    }

    /// Replaces the fault plan; counters of writes and syncs restart from zero.
    pub fn set_faults(&self, faults: Faults) {
        let mut inner = self.inner.lock();
        inner.faults = faults;
        inner.writes = 0;
        inner.syncs = 0;
        inner.ops = 0;
    }

    /// Crashes now (see [`CrashMode`]). Existing handles stop working.
    pub fn crash(&self, mode: CrashMode) {
        self.inner.lock().crash(mode);
    }

    /// A handle to the state after the last crash (what a restarted process sees).
    #[must_use]
    pub fn restarted(&self) -> Self {
        let generation = self.inner.lock().generation;
        Self {
            inner: Arc::clone(&self.inner),
            generation,
        }
    }

    /// Mutating operations since the faults were last set.
    pub fn ops(&self) -> u64 {
        self.inner.lock().ops
    }

    /// Crashes so far.
    pub fn crashes(&self) -> u64 {
        self.inner.lock().crashes
    }

    /// Live names with their length and durable length, sorted by name.
    pub fn files(&self) -> Vec<(String, usize, usize)> {
        let inner = self.inner.lock();
        inner
            .live_dir
            .iter()
            .map(|(name, id)| {
                let file = &inner.files[id];
                (name.clone(), file.data.len(), file.durable_len)
            })
            .collect()
    }

    /// The live bytes of a file.
    pub fn read_file(&self, name: &str) -> Option<Vec<u8>> {
        let inner = self.inner.lock();
        let id = inner.live_dir.get(name)?;
        Some(inner.files[id].data.clone())
    }

    /// Replaces (or creates) a file with `bytes`, durably: for tests that damage a log.
    pub fn write_file(&self, name: &str, bytes: &[u8]) {
        let mut inner = self.inner.lock();
        let id = inner.next_id;
        inner.next_id += 1;
        inner.files.insert(
            id,
            MemFile {
                data: bytes.to_vec(),
                durable_len: bytes.len(),
            },
        );
        inner.live_dir.insert(name.to_owned(), id);
        inner.durable_dir.insert(name.to_owned(), id);
    }

    /// Removes a file durably: for tests.
    pub fn delete_file(&self, name: &str) {
        let mut inner = self.inner.lock();
        inner.live_dir.remove(name);
        inner.durable_dir.remove(name);
    }

    fn file_handle(&self, id: u64) -> MemHandle {
        MemHandle {
            inner: Arc::clone(&self.inner),
            generation: self.generation,
            id,
        }
    }
}

struct MemHandle {
    inner: Arc<Mutex<MemInner>>,
    generation: u64,
    id: u64,
}

impl StorageFile for MemHandle {
    fn append(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let mut inner = self.inner.lock();
        inner.check(self.generation)?;
        inner.writes += 1;
        let nth = inner.writes;
        let result = if inner.faults.fail_write_nth == Some(nth) {
            Err(io::Error::other("injected write error"))
        } else {
            let len = if inner.faults.short_write_nth == Some(nth) && bytes.len() > 1 {
                bytes.len() / 2
            } else {
                bytes.len()
            };
            let file = inner
                .files
                .get_mut(&self.id)
                .ok_or_else(|| not_found("(handle)"))?;
            file.data.extend_from_slice(&bytes[..len]);
            Ok(len)
        };
        inner.after_op();
        result
    }

    fn sync_data(&mut self) -> io::Result<()> {
        let mut inner = self.inner.lock();
        inner.check(self.generation)?;
        inner.syncs += 1;
        let result = if inner.faults.fail_sync_nth == Some(inner.syncs) {
            Err(io::Error::other("injected fsync error"))
        } else {
            let file = inner
                .files
                .get_mut(&self.id)
                .ok_or_else(|| not_found("(handle)"))?;
            file.durable_len = file.data.len();
            Ok(())
        };
        inner.after_op();
        result
    }
}

impl StorageReader for MemHandle {
    fn file_len(&mut self) -> io::Result<u64> {
        let inner = self.inner.lock();
        inner.check(self.generation)?;
        let file = inner
            .files
            .get(&self.id)
            .ok_or_else(|| not_found("(handle)"))?;
        Ok(file.data.len() as u64)
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        let inner = self.inner.lock();
        inner.check(self.generation)?;
        let file = inner
            .files
            .get(&self.id)
            .ok_or_else(|| not_found("(handle)"))?;
        let start = usize::try_from(offset).map_or(file.data.len(), |o| o.min(file.data.len()));
        let n = buf.len().min(file.data.len() - start);
        buf[..n].copy_from_slice(&file.data[start..start + n]);
        Ok(n)
    }
}

impl Storage for MemStorage {
    fn list(&self) -> io::Result<Vec<String>> {
        let inner = self.inner.lock();
        inner.check(self.generation)?;
        Ok(inner.live_dir.keys().cloned().collect())
    }

    fn create(&self, name: &str) -> io::Result<Box<dyn StorageFile>> {
        let mut inner = self.inner.lock();
        inner.check(self.generation)?;
        let id = inner.next_id;
        inner.next_id += 1;
        inner.files.insert(id, MemFile::default());
        inner.live_dir.insert(name.to_owned(), id);
        inner.after_op();
        Ok(Box::new(self.file_handle(id)))
    }

    fn open_append(&self, name: &str) -> io::Result<Box<dyn StorageFile>> {
        let inner = self.inner.lock();
        inner.check(self.generation)?;
        let id = inner.id(name)?;
        Ok(Box::new(self.file_handle(id)))
    }

    fn open_read(&self, name: &str) -> io::Result<Box<dyn StorageReader>> {
        let inner = self.inner.lock();
        inner.check(self.generation)?;
        let id = inner.id(name)?;
        Ok(Box::new(self.file_handle(id)))
    }

    fn truncate(&self, name: &str, len: u64) -> io::Result<()> {
        let mut inner = self.inner.lock();
        inner.check(self.generation)?;
        let id = inner.id(name)?;
        let file = inner.files.get_mut(&id).ok_or_else(|| not_found(name))?;
        let len = usize::try_from(len).map_or(file.data.len(), |l| l.min(file.data.len()));
        file.data.truncate(len);
        file.durable_len = len;
        inner.after_op();
        Ok(())
    }

    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        let mut inner = self.inner.lock();
        inner.check(self.generation)?;
        let id = inner.id(from)?;
        inner.live_dir.remove(from);
        inner.live_dir.insert(to.to_owned(), id);
        inner.after_op();
        Ok(())
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        let mut inner = self.inner.lock();
        inner.check(self.generation)?;
        inner.id(name)?;
        inner.live_dir.remove(name);
        inner.after_op();
        Ok(())
    }

    fn sync_dir(&self) -> io::Result<()> {
        let mut inner = self.inner.lock();
        inner.check(self.generation)?;
        inner.syncs += 1;
        let result = if inner.faults.fail_sync_nth == Some(inner.syncs) {
            Err(io::Error::other("injected directory fsync error"))
        } else {
            inner.durable_dir = inner.live_dir.clone();
            Ok(())
        };
        inner.after_op();
        result
    }

    fn describe(&self) -> String {
        "mem:".into()
    }
}
