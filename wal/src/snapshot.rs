//! Snapshot files: a blob tagged with the sequence number and chain hash it covers.
//!
//! Written as `<covers:020>.snap.tmp`, fsynced, renamed to `<covers:020>.snap`, then
//! the directory is fsynced, so a snapshot file either exists whole or not at all.
//! A leftover `.tmp` is an interrupted write and is deleted at open.

use crate::error::WalError;
use crate::record::{parse_numbered, read_u32, read_u64, Hash};
use crate::storage::{write_all, Storage};

/// Bytes of a snapshot header.
pub const SNAPSHOT_HEADER_LEN: usize = 104;
const SNAPSHOT_MAGIC: &[u8; 8] = b"ALLOTSNP";
/// 2: ledgers keep closed orders as compact records (version 1 blobs do not decode).
/// 3: records may take the small narrow form; version 2 blobs still decode (they just
/// hold none), so both are read, and an older build refuses version 3 by name instead
/// of failing on the first small record.
const SNAPSHOT_VERSION: u32 = 3;
const SNAPSHOT_VERSIONS_READ: std::ops::RangeInclusive<u32> = 2..=SNAPSHOT_VERSION;
const SNAPSHOT_SUFFIX: &str = ".snap";
pub(crate) const TMP_SUFFIX: &str = ".tmp";

/// The fixed header of a snapshot file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SnapshotHeader {
    pub covers_seq: u64,
    pub chain_hash: Hash,
    pub blob_len: u64,
    pub blob_hash: Hash,
}

impl SnapshotHeader {
    fn encode(&self) -> [u8; SNAPSHOT_HEADER_LEN] {
        let mut out = [0; SNAPSHOT_HEADER_LEN];
        out[0..8].copy_from_slice(SNAPSHOT_MAGIC);
        out[8..12].copy_from_slice(&SNAPSHOT_VERSION.to_le_bytes());
        out[16..24].copy_from_slice(&self.covers_seq.to_le_bytes());
        out[24..56].copy_from_slice(&self.chain_hash);
        out[56..64].copy_from_slice(&self.blob_len.to_le_bytes());
        out[64..96].copy_from_slice(&self.blob_hash);
        let crc = crc32c::crc32c(&out[..100]);
        out[100..104].copy_from_slice(&crc.to_le_bytes());
        out
    }

    fn decode(bytes: &[u8]) -> Result<Self, String> {
        if bytes.len() < SNAPSHOT_HEADER_LEN {
            return Err(format!(
                "file is {} bytes, shorter than the header",
                bytes.len()
            ));
        }
        if &bytes[0..8] != SNAPSHOT_MAGIC {
            return Err("header magic mismatch".into());
        }
        if read_u32(bytes, 100) != crc32c::crc32c(&bytes[..100]) {
            return Err("header checksum mismatch".into());
        }
        let version = read_u32(bytes, 8);
        if !SNAPSHOT_VERSIONS_READ.contains(&version) {
            return Err(format!("unsupported snapshot format version {version}"));
        }
        Ok(Self {
            covers_seq: read_u64(bytes, 16),
            chain_hash: bytes[24..56].try_into().expect("slice of 32 bytes"),
            blob_len: read_u64(bytes, 56),
            blob_hash: bytes[64..96].try_into().expect("slice of 32 bytes"),
        })
    }
}

/// The file name of the snapshot covering `covers_seq`.
pub fn snapshot_name(covers_seq: u64) -> String {
    format!("{covers_seq:020}{SNAPSHOT_SUFFIX}")
}

/// Snapshot files among `names`, as `(covers_seq, name)` sorted oldest first.
pub(crate) fn list_snapshots(names: &[String]) -> Vec<(u64, String)> {
    let mut found: Vec<(u64, String)> = names
        .iter()
        .filter_map(|n| parse_numbered(n, SNAPSHOT_SUFFIX).map(|seq| (seq, n.clone())))
        .collect();
    found.sort_unstable();
    found
}

fn corrupt(file: &str, reason: impl Into<String>) -> WalError {
    WalError::SnapshotCorrupt {
        file: file.to_owned(),
        reason: reason.into(),
    }
}

/// Reads and fully checks a snapshot: header checksum, name, length, blob hash.
pub(crate) fn read_snapshot(
    storage: &dyn Storage,
    name: &str,
) -> Result<(SnapshotHeader, Vec<u8>), WalError> {
    let mut reader = storage
        .open_read(name)
        .map_err(|e| WalError::io("open", name, e))?;
    let len = reader
        .file_len()
        .map_err(|e| WalError::io("stat", name, e))?;
    let mut bytes = vec![0; usize::try_from(len).map_err(|_| corrupt(name, "file too large"))?];
    reader
        .read_exact_at(0, &mut bytes)
        .map_err(|e| WalError::io("read", name, e))?;
    let header = SnapshotHeader::decode(&bytes).map_err(|why| corrupt(name, why))?;
    if parse_numbered(name, SNAPSHOT_SUFFIX) != Some(header.covers_seq) {
        return Err(corrupt(
            name,
            format!(
                "header covers seq {} but the name says otherwise",
                header.covers_seq
            ),
        ));
    }
    if header.blob_len != len - SNAPSHOT_HEADER_LEN as u64 {
        return Err(corrupt(
            name,
            format!(
                "header says {} blob bytes, file holds {}",
                header.blob_len,
                len - SNAPSHOT_HEADER_LEN as u64
            ),
        ));
    }
    bytes.drain(..SNAPSHOT_HEADER_LEN);
    if *blake3::hash(&bytes).as_bytes() != header.blob_hash {
        return Err(corrupt(name, "blob hash mismatch"));
    }
    Ok((header, bytes))
}

/// Writes a snapshot durably: temp file, fsync, rename, fsync the directory.
pub(crate) fn write_snapshot(
    storage: &dyn Storage,
    covers_seq: u64,
    chain_hash: Hash,
    blob: &[u8],
) -> Result<(), WalError> {
    let name = snapshot_name(covers_seq);
    let tmp = format!("{name}{TMP_SUFFIX}");
    let header = SnapshotHeader {
        covers_seq,
        chain_hash,
        blob_len: blob.len() as u64,
        blob_hash: *blake3::hash(blob).as_bytes(),
    };
    let mut file = storage
        .create(&tmp)
        .map_err(|e| WalError::io("create", &tmp, e))?;
    write_all(file.as_mut(), &header.encode(), &tmp)?;
    write_all(file.as_mut(), blob, &tmp)?;
    file.sync_data()
        .map_err(|e| WalError::io("sync_data", &tmp, e))?;
    drop(file);
    storage
        .rename(&tmp, &name)
        .map_err(|e| WalError::io("rename", &tmp, e))?;
    storage
        .sync_dir()
        .map_err(|e| WalError::io("sync_dir", storage.describe(), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_of_another_format_version_is_refused_by_name() {
        let header = SnapshotHeader {
            covers_seq: 42,
            chain_hash: [7; 32],
            blob_len: 9,
            blob_hash: [3; 32],
        };
        let bytes = header.encode();
        assert_eq!(SnapshotHeader::decode(&bytes), Ok(header));
        // Another version, with a valid checksum.
        let with_version = |version: u32| {
            let mut other = bytes;
            other[8..12].copy_from_slice(&version.to_le_bytes());
            let crc = crc32c::crc32c(&other[..100]);
            other[100..104].copy_from_slice(&crc.to_le_bytes());
            other
        };
        // Version 1, as earlier builds wrote it, and a version from a later build.
        for version in [1, SNAPSHOT_VERSION + 1] {
            let refused = SnapshotHeader::decode(&with_version(version)).expect_err("refused");
            assert_eq!(
                refused,
                format!("unsupported snapshot format version {version}")
            );
        }
        // Version 2 holds no small records, which this build reads as well.
        assert_eq!(SnapshotHeader::decode(&with_version(2)), Ok(header));
    }
}
