//! Reading the log back: the segment scanner shared by [`open`](crate::open) and
//! [`verify`](crate::verify), and [`Replay`], the streaming iterator `open` returns.
//!
//! The scanner checks, for every record: its CRC, that its sequence number is the
//! next one, and that its stored chain hash equals `BLAKE3(previous hash ‖ seq ‖
//! payload)`. Segment headers must continue the previous segment exactly (first
//! sequence number and previous hash). The torn-tail rule (see
//! `docs/WAL_FORMAT.md`): a frame that fails to parse in the *last* segment, with
//! no CRC-valid frame of a later sequence number anywhere after it in that file, is
//! a torn tail; everything else is corruption.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::error::WalError;
use crate::record::{
    chain_hash, decode_frame, parse_segment_name, read_u32, record_len, Hash, SegmentHeader,
    GENESIS_HASH, RECORD_HEADER_LEN, RECORD_PAYLOAD_MAX, SEGMENT_HEADER_LEN,
};
use crate::snapshot::{list_snapshots, read_snapshot, TMP_SUFFIX};
use crate::storage::{Storage, StorageReader};
use crate::writer::{self, ActiveSegment, Resume};
use crate::{Durability, Wal, WalConfig};

const READ_BUFFER_BYTES: usize = 1 << 20;

/// One record read back from the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Its sequence number.
    pub seq: u64,
    /// Its payload.
    pub payload: Vec<u8>,
}

/// Where a torn tail was found and how much was (or will be) dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornTail {
    /// The last segment's file name.
    pub file: String,
    /// Offset of the first byte dropped (the file is cut to this length).
    pub offset: u64,
    /// Bytes dropped.
    pub bytes: u64,
    /// True when the segment header itself was torn: the whole file goes.
    pub whole_file: bool,
}

/// A segment file found in the directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SegmentInfo {
    pub name: String,
    pub first_seq: u64,
}

pub(crate) fn list_segments(names: &[String]) -> Vec<SegmentInfo> {
    let mut segments: Vec<SegmentInfo> = names
        .iter()
        .filter_map(|n| {
            parse_segment_name(n).map(|first_seq| SegmentInfo {
                name: n.clone(),
                first_seq,
            })
        })
        .collect();
    segments.sort_unstable_by_key(|s| s.first_seq);
    segments
}

/// A buffered, streaming view of one segment file.
struct Cursor {
    reader: Box<dyn StorageReader>,
    file: String,
    file_len: u64,
    is_last: bool,
    buf: Vec<u8>,
    /// File offset of `buf[0]`.
    buf_offset: u64,
    /// Valid bytes in `buf`.
    filled: usize,
    /// Next unread byte in `buf`.
    pos: usize,
}

impl Cursor {
    fn offset(&self) -> u64 {
        self.buf_offset + self.pos as u64
    }

    /// Makes `n` bytes available at `pos` unless the file ends first; returns how
    /// many are available (up to `n`).
    fn fill(&mut self, n: usize) -> Result<usize, WalError> {
        if self.filled - self.pos >= n {
            return Ok(n);
        }
        self.buf.copy_within(self.pos..self.filled, 0);
        self.buf_offset += self.pos as u64;
        self.filled -= self.pos;
        self.pos = 0;
        if self.buf.len() < n {
            self.buf.resize(n, 0);
        }
        while self.filled < n {
            let at = self.buf_offset + self.filled as u64;
            if at >= self.file_len {
                break;
            }
            let got = self
                .reader
                .read_at(at, &mut self.buf[self.filled..])
                .map_err(|e| WalError::io("read", &self.file, e))?;
            if got == 0 {
                break;
            }
            self.filled += got;
        }
        Ok(n.min(self.filled))
    }

    fn window(&self) -> &[u8] {
        &self.buf[self.pos..self.filled]
    }

    /// Reads the file from `from` to its end.
    fn read_rest(&mut self, from: u64) -> Result<Vec<u8>, WalError> {
        let len = usize::try_from(self.file_len - from).expect("segment fits in memory");
        let mut rest = vec![0; len];
        self.reader
            .read_exact_at(from, &mut rest)
            .map_err(|e| WalError::io("read", &self.file, e))?;
        Ok(rest)
    }
}

/// The offset of the first CRC-valid frame in `bytes` at or after `from` whose
/// sequence number is at least `min_seq`, with that sequence number.
fn find_valid_frame(bytes: &[u8], from: usize, min_seq: u64) -> Option<(usize, u64)> {
    (from..bytes.len().saturating_sub(RECORD_HEADER_LEN - 1)).find_map(|at| {
        let len = read_u32(bytes, at) as usize;
        if len > RECORD_PAYLOAD_MAX || at + record_len(len) > bytes.len() {
            return None;
        }
        match decode_frame(&bytes[at..]) {
            Ok(frame) if frame.seq >= min_seq => Some((at, frame.seq)),
            _ => None,
        }
    })
}

/// A chain hash the log must contain at a given sequence number (from a snapshot).
pub(crate) struct Checkpoint {
    pub seq: u64,
    pub hash: Hash,
    pub file: String,
}

/// Walks segments in order, checking everything, yielding frames.
pub(crate) struct Scanner {
    storage: Arc<dyn Storage>,
    segments: Vec<SegmentInfo>,
    next_segment: usize,
    cursor: Option<Cursor>,
    /// True once a segment header has fixed where the chain starts.
    pub anchored: bool,
    /// Where the payload of the current record sits in the cursor buffer.
    current: Option<(usize, usize)>,
    /// The sequence number the next record must carry.
    pub expect_seq: u64,
    /// Chain hash of record `expect_seq - 1`.
    pub prev_hash: Hash,
    checkpoints: VecDeque<Checkpoint>,
    pub torn: Option<TornTail>,
    pub records: u64,
    pub segments_read: usize,
    /// The last segment read and its length up to the last good record.
    pub tail: Option<(String, u64)>,
    done: bool,
}

impl Scanner {
    /// Scans `segments` (ascending); the first one anchors the chain with its header.
    pub fn new(
        storage: Arc<dyn Storage>,
        segments: Vec<SegmentInfo>,
        checkpoints: Vec<Checkpoint>,
    ) -> Self {
        Self {
            storage,
            segments,
            next_segment: 0,
            cursor: None,
            anchored: false,
            current: None,
            expect_seq: 1,
            prev_hash: GENESIS_HASH,
            checkpoints: checkpoints.into(),
            torn: None,
            records: 0,
            segments_read: 0,
            tail: None,
            done: false,
        }
    }

    /// The payload of the record `advance` last returned.
    pub fn current_payload(&self) -> &[u8] {
        match (&self.cursor, self.current) {
            (Some(cursor), Some((start, len))) => &cursor.buf[start..start + len],
            _ => &[],
        }
    }

    /// Moves to the next record and returns its sequence number.
    pub fn advance(&mut self) -> Result<Option<u64>, WalError> {
        self.current = None;
        loop {
            if self.done {
                return Ok(None);
            }
            let Some(cursor) = self.cursor.as_mut() else {
                if self.next_segment == self.segments.len() {
                    self.finish_checks()?;
                    self.done = true;
                    return Ok(None);
                }
                self.open_segment()?;
                continue;
            };
            let offset = cursor.offset();
            if offset >= cursor.file_len {
                self.tail = Some((cursor.file.clone(), offset));
                self.cursor = None;
                continue;
            }
            let avail = cursor.fill(RECORD_HEADER_LEN)?;
            if avail == RECORD_HEADER_LEN {
                let len = read_u32(cursor.window(), 0) as usize;
                if len <= RECORD_PAYLOAD_MAX {
                    cursor.fill(record_len(len))?;
                }
            }
            let frame = match decode_frame(cursor.window()) {
                Ok(frame) => frame,
                Err(why) => {
                    self.bad_frame(offset, &why.to_string())?;
                    continue;
                }
            };
            let (seq, hash, payload_len) = (frame.seq, frame.hash, frame.payload.len());
            let file = &cursor.file;
            if seq != self.expect_seq {
                return Err(WalError::corrupt(
                    file,
                    offset,
                    format!("expected seq {}, found seq {seq}", self.expect_seq),
                ));
            }
            if chain_hash(&self.prev_hash, seq, frame.payload) != hash {
                return Err(WalError::corrupt(
                    file,
                    offset,
                    format!("hash chain broken at seq {seq}"),
                ));
            }
            self.expect_seq += 1;
            self.prev_hash = hash;
            self.records += 1;
            self.check_checkpoint()?;
            let cursor = self.cursor.as_mut().expect("cursor is open");
            self.current = Some((cursor.pos + RECORD_HEADER_LEN, payload_len));
            cursor.pos += record_len(payload_len);
            return Ok(Some(seq));
        }
    }

    fn open_segment(&mut self) -> Result<(), WalError> {
        let info = self.segments[self.next_segment].clone();
        self.next_segment += 1;
        self.segments_read += 1;
        let is_last = self.next_segment == self.segments.len();
        let mut reader = self
            .storage
            .open_read(&info.name)
            .map_err(|e| WalError::io("open", &info.name, e))?;
        let file_len = reader
            .file_len()
            .map_err(|e| WalError::io("stat", &info.name, e))?;
        let mut cursor = Cursor {
            reader,
            file: info.name.clone(),
            file_len,
            is_last,
            buf: vec![0; READ_BUFFER_BYTES],
            buf_offset: 0,
            filled: 0,
            pos: 0,
        };
        cursor.fill(SEGMENT_HEADER_LEN)?;
        let header = match SegmentHeader::decode(cursor.window()) {
            Ok(header) => header,
            Err(why) => return self.bad_header(cursor, info.first_seq, &why),
        };
        let name = &info.name;
        if header.first_seq != info.first_seq {
            return Err(WalError::corrupt(
                name,
                0,
                format!(
                    "header says first seq {}, name says {}",
                    header.first_seq, info.first_seq
                ),
            ));
        }
        if !self.anchored {
            self.anchored = true;
            self.expect_seq = header.first_seq;
            self.prev_hash = header.prev_hash;
            self.check_checkpoint()?;
        } else if header.first_seq != self.expect_seq {
            return Err(WalError::corrupt(
                name,
                0,
                format!(
                    "segment starts at seq {} but the previous one ends at seq {}",
                    header.first_seq,
                    self.expect_seq - 1
                ),
            ));
        } else if header.prev_hash != self.prev_hash {
            return Err(WalError::corrupt(
                name,
                0,
                "segment header's previous hash breaks the hash chain",
            ));
        }
        cursor.pos = SEGMENT_HEADER_LEN;
        self.tail = Some((info.name, SEGMENT_HEADER_LEN as u64));
        self.cursor = Some(cursor);
        Ok(())
    }

    /// A segment header that does not parse: a torn tail if it is the last segment
    /// and nothing valid follows, damage otherwise.
    fn bad_header(
        &mut self,
        mut cursor: Cursor,
        first_seq: u64,
        why: &str,
    ) -> Result<(), WalError> {
        if cursor.is_last {
            let rest = cursor.read_rest(0)?;
            if find_valid_frame(&rest, 0, first_seq).is_none() {
                self.torn = Some(TornTail {
                    file: cursor.file,
                    offset: 0,
                    bytes: cursor.file_len,
                    whole_file: true,
                });
                self.end_at_torn_tail();
                return Ok(());
            }
        }
        Err(WalError::corrupt(cursor.file, 0, why))
    }

    /// A frame that does not parse at `offset`.
    fn bad_frame(&mut self, offset: u64, why: &str) -> Result<(), WalError> {
        let mut cursor = self.cursor.take().expect("cursor is open");
        if !cursor.is_last {
            return Err(WalError::corrupt(
                cursor.file,
                offset,
                format!("{why} (not in the last segment)"),
            ));
        }
        let rest = cursor.read_rest(offset)?;
        if let Some((at, seq)) = find_valid_frame(&rest, 1, self.expect_seq) {
            return Err(WalError::corrupt(
                cursor.file,
                offset,
                format!(
                    "{why}, but a valid record (seq {seq}) follows at byte {}",
                    offset + at as u64
                ),
            ));
        }
        self.tail = Some((cursor.file.clone(), offset));
        self.torn = Some(TornTail {
            file: cursor.file,
            offset,
            bytes: cursor.file_len - offset,
            whole_file: false,
        });
        self.end_at_torn_tail();
        Ok(())
    }

    fn end_at_torn_tail(&mut self) {
        self.next_segment = self.segments.len();
    }

    fn check_checkpoint(&mut self) -> Result<(), WalError> {
        let last = self.expect_seq - 1;
        while let Some(point) = self.checkpoints.front() {
            if point.seq > last {
                break;
            }
            if point.seq == last && point.hash != self.prev_hash {
                return Err(WalError::SnapshotCorrupt {
                    file: point.file.clone(),
                    reason: format!("chain hash at seq {last} disagrees with the log"),
                });
            }
            self.checkpoints.pop_front();
        }
        Ok(())
    }

    fn finish_checks(&mut self) -> Result<(), WalError> {
        // With no readable segment at all (the only one had a torn header), the
        // snapshot stands alone and the log resumes after it.
        if !self.anchored {
            return Ok(());
        }
        if let Some(point) = self.checkpoints.front() {
            return Err(WalError::SnapshotCorrupt {
                file: point.file.clone(),
                reason: format!(
                    "covers seq {} but the log ends at seq {}",
                    point.seq,
                    self.expect_seq - 1
                ),
            });
        }
        Ok(())
    }
}

/// The newest snapshot, loaded.
struct LoadedSnapshot {
    covers_seq: u64,
    hash: Hash,
    blob: Vec<u8>,
}

/// A log being recovered: the newest snapshot and a stream of the records after it.
/// Call [`Replay::finish`] to start writing.
pub struct Replay {
    storage: Arc<dyn Storage>,
    config: WalConfig,
    snapshot: Option<LoadedSnapshot>,
    scanner: Scanner,
    /// Segments before the one holding the first record after the snapshot.
    covered_segments: Vec<String>,
    error: Option<WalError>,
}

/// Opens the log in `storage`: loads the newest snapshot and prepares to stream the
/// records after it. Nothing is written until [`Replay::finish`].
///
/// # Errors
/// `Io` when the directory cannot be listed, `SnapshotCorrupt` when the newest
/// snapshot does not check out, `Corrupt` when the segments left do not reach back
/// to the snapshot (or to seq 1).
pub fn open<S: Storage>(storage: S, config: WalConfig) -> Result<Replay, WalError> {
    let storage: Arc<dyn Storage> = Arc::new(storage);
    let names = storage
        .list()
        .map_err(|e| WalError::io("list", storage.describe(), e))?;
    let snapshot = match list_snapshots(&names).last() {
        Some((_, name)) => {
            let (header, blob) = read_snapshot(storage.as_ref(), name)?;
            Some((name.clone(), header, blob))
        }
        None => None,
    };
    let mut segments = list_segments(&names);
    let base = snapshot.as_ref().map_or(0, |(_, h, _)| h.covers_seq);
    // The segment holding record base + 1 is the last one starting at or before it.
    let start = segments.iter().rposition(|s| s.first_seq <= base + 1);
    let covered_segments = match (start, segments.first()) {
        (Some(i), _) => segments.drain(..i).map(|s| s.name).collect(),
        (None, None) if snapshot.is_some() => {
            return Err(WalError::corrupt(
                storage.describe(),
                0,
                "a snapshot exists but no log segment does",
            ))
        }
        (None, None) => Vec::new(),
        (None, Some(first)) => {
            return Err(WalError::corrupt(
                &first.name,
                0,
                format!("records {}..{} are missing", base + 1, first.first_seq),
            ))
        }
    };
    let mut checkpoints = Vec::new();
    let snapshot = snapshot.map(|(file, header, blob)| {
        checkpoints.push(Checkpoint {
            seq: header.covers_seq,
            hash: header.chain_hash,
            file,
        });
        LoadedSnapshot {
            covers_seq: header.covers_seq,
            hash: header.chain_hash,
            blob,
        }
    });
    let scanner = Scanner::new(Arc::clone(&storage), segments, checkpoints);
    Ok(Replay {
        storage,
        config,
        snapshot,
        scanner,
        covered_segments,
        error: None,
    })
}

impl Replay {
    /// The newest snapshot: the sequence number it covers and its blob.
    pub fn snapshot(&self) -> Option<(u64, &[u8])> {
        self.snapshot
            .as_ref()
            .map(|s| (s.covers_seq, s.blob.as_slice()))
    }

    /// The next record after the snapshot, in order; `None` at the end of the log.
    ///
    /// # Errors
    /// `Corrupt` / `SnapshotCorrupt` on damage, `Io` on read failure. An error is
    /// sticky: later calls return it again.
    pub fn next_record(&mut self) -> Result<Option<Record>, WalError> {
        Ok(self.next_ref()?.map(|(seq, payload)| Record {
            seq,
            payload: payload.to_vec(),
        }))
    }

    /// Like [`Replay::next_record`] but borrows the payload from the read buffer,
    /// saving an allocation per record.
    ///
    /// # Errors
    /// As [`Replay::next_record`].
    pub fn next_ref(&mut self) -> Result<Option<(u64, &[u8])>, WalError> {
        if let Some(error) = &self.error {
            return Err(error.clone());
        }
        let base = self.base();
        loop {
            match self.scanner.advance() {
                // Records the snapshot already covers are checked but not returned.
                Ok(Some(seq)) if seq <= base => {}
                Ok(Some(seq)) => return Ok(Some((seq, self.scanner.current_payload()))),
                Ok(None) => return Ok(None),
                Err(error) => {
                    self.error = Some(error.clone());
                    return Err(error);
                }
            }
        }
    }

    /// Bytes of torn tail found (0 until iteration reaches the end, or if none).
    pub fn torn_tail_bytes(&self) -> u64 {
        self.scanner.torn.as_ref().map_or(0, |t| t.bytes)
    }

    /// Details of the torn tail, if one was found.
    pub fn torn_tail(&self) -> Option<&TornTail> {
        self.scanner.torn.as_ref()
    }

    /// The last sequence number read so far (or covered by the snapshot).
    pub fn last_seq(&self) -> u64 {
        self.scanner.expect_seq.saturating_sub(1).max(self.base())
    }

    fn base(&self) -> u64 {
        self.snapshot.as_ref().map_or(0, |s| s.covers_seq)
    }

    /// Reads (and checks) the rest of the log, cuts off a torn tail, removes
    /// leftovers (temporary snapshot files, segments the snapshot covers) and starts
    /// the writer after the last good record. With `Durability::None` nothing in
    /// the directory is changed.
    ///
    /// # Errors
    /// Damage found while draining, or an IO error while repairing.
    pub fn finish(mut self) -> Result<Wal, WalError> {
        while self.next_ref()?.is_some() {}
        let base = (
            self.base(),
            self.snapshot.as_ref().map_or(GENESIS_HASH, |s| s.hash),
        );
        let (next_seq, prev_hash) = if self.scanner.anchored {
            (self.scanner.expect_seq, self.scanner.prev_hash)
        } else {
            (base.0 + 1, base.1)
        };
        let resume = Resume {
            next_seq,
            prev_hash,
            base,
        };
        if self.config.durability == Durability::None {
            return Ok(writer::start(self.storage, self.config, resume, None));
        }
        let segment = self.repair(next_seq, prev_hash)?;
        Ok(writer::start(
            self.storage,
            self.config,
            resume,
            Some(segment),
        ))
    }

    /// Makes the directory match what was recovered; returns the segment to append to.
    ///
    /// Ordered so that a crash at any step leaves a log that recovers: when no
    /// recovered segment can take new records (the newest one had a torn header, or
    /// there is none), the fresh segment is made durable before anything is removed,
    /// so a snapshot is never left without a segment after it.
    fn repair(&mut self, next_seq: u64, prev_hash: Hash) -> Result<ActiveSegment, WalError> {
        let storage = Arc::clone(&self.storage);
        let dir = storage.describe();
        let torn = self.scanner.torn.clone();
        if let Some(torn) = torn.as_ref().filter(|t| !t.whole_file) {
            storage
                .truncate(&torn.file, torn.offset)
                .map_err(|e| WalError::io("truncate", &torn.file, e))?;
        }
        // `tail` is the last segment whose header was read, cut to its last good
        // record; without one (empty directory, or the only segment after the
        // snapshot had a torn header) a fresh segment starts the log after the
        // snapshot. Creating it replaces a torn file of the same name.
        let tail = self.scanner.tail.clone();
        let segment = match &tail {
            Some((name, len)) => ActiveSegment::open(storage.as_ref(), name, *len)?,
            None => ActiveSegment::create(storage.as_ref(), next_seq, prev_hash)?,
        };
        if let Some(torn) = torn.as_ref().filter(|t| t.whole_file) {
            if tail.is_some() || segment.name() != torn.file {
                storage
                    .remove(&torn.file)
                    .map_err(|e| WalError::io("remove", &torn.file, e))?;
            }
        }
        let names = storage.list().map_err(|e| WalError::io("list", &dir, e))?;
        for name in names.iter().filter(|n| n.ends_with(TMP_SUFFIX)) {
            storage
                .remove(name)
                .map_err(|e| WalError::io("remove", name, e))?;
        }
        for name in &self.covered_segments {
            storage
                .remove(name)
                .map_err(|e| WalError::io("remove", name, e))?;
        }
        // The records just replayed may have been read from written-but-unsynced
        // bytes (a process restarted after a failed fsync, the machine still up).
        // The caller is about to serve them, so they must be durable first. Only the
        // newest segment can hold unsynced bytes.
        if let Some((name, _)) = &tail {
            storage
                .open_append(name)
                .and_then(|mut file| file.sync_data())
                .map_err(|e| WalError::io("sync_data", name, e))?;
        }
        storage
            .sync_dir()
            .map_err(|e| WalError::io("sync_dir", &dir, e))?;
        Ok(segment)
    }
}
