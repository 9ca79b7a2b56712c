//! Framing, checksums and the hash chain: pure functions over bytes, no IO.
//!
//! See `docs/WAL_FORMAT.md` for the layout these functions implement. All integers
//! are little-endian.

/// A chain hash (BLAKE3, 32 bytes).
pub type Hash = [u8; 32];

/// The chain hash "before the first record".
pub const GENESIS_HASH: Hash = [0; 32];

/// Bytes of a record header: length, CRC32C, sequence number, chain hash.
pub const RECORD_HEADER_LEN: usize = 48;

/// Largest payload a record may carry. Bounds memory during recovery and lets a
/// length field that is plainly garbage be rejected without reading further.
pub const RECORD_PAYLOAD_MAX: usize = 64 << 20;

/// Bytes of a segment header.
pub const SEGMENT_HEADER_LEN: usize = 64;

const SEGMENT_MAGIC: &[u8; 8] = b"ALLOTWAL";
const FORMAT_VERSION: u32 = 1;
const SEGMENT_SUFFIX: &str = ".wal";

/// The hash of record `seq` given the hash of record `seq - 1`:
/// `BLAKE3(prev_hash ‖ seq as u64 LE ‖ payload)`.
pub fn chain_hash(prev_hash: &Hash, seq: u64, payload: &[u8]) -> Hash {
    let mut hasher = blake3::Hasher::new();
    hasher.update(prev_hash);
    hasher.update(&seq.to_le_bytes());
    hasher.update(payload);
    *hasher.finalize().as_bytes()
}

/// Bytes a record with `payload_len` bytes of payload occupies on disk.
pub fn record_len(payload_len: usize) -> usize {
    RECORD_HEADER_LEN + payload_len
}

/// Appends one framed record to `out` and returns its chain hash.
///
/// The caller checks `payload.len() <= RECORD_PAYLOAD_MAX` first.
pub fn encode_record(out: &mut Vec<u8>, seq: u64, prev_hash: &Hash, payload: &[u8]) -> Hash {
    debug_assert!(payload.len() <= RECORD_PAYLOAD_MAX);
    let hash = chain_hash(prev_hash, seq, payload);
    let len =
        u32::try_from(payload.len()).expect("payload length is bounded by RECORD_PAYLOAD_MAX");
    let start = out.len();
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&hash);
    out.extend_from_slice(payload);
    let crc = record_crc(&out[start..]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    hash
}

/// CRC32C over a whole framed record except its CRC field (bytes 4..8).
fn record_crc(record: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(&record[..4]), &record[8..])
}

/// A record parsed from a byte slice, borrowing its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    /// Sequence number.
    pub seq: u64,
    /// Stored chain hash.
    pub hash: Hash,
    /// Payload bytes.
    pub payload: &'a [u8],
}

impl Frame<'_> {
    /// Bytes the frame occupies on disk.
    pub fn len(&self) -> usize {
        record_len(self.payload.len())
    }

    /// Never true: a frame always has a header.
    pub fn is_empty(&self) -> bool {
        false
    }
}

/// Why a frame could not be parsed at some offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// Fewer than `needed` bytes are available (the frame runs past the data).
    Incomplete {
        /// Bytes the frame needs in total.
        needed: usize,
    },
    /// The length field exceeds `RECORD_PAYLOAD_MAX`.
    LengthTooLarge(u32),
    /// The checksum does not match.
    BadCrc,
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Incomplete { needed } => write!(f, "incomplete record (needs {needed} bytes)"),
            Self::LengthTooLarge(len) => write!(f, "record length {len} exceeds the maximum"),
            Self::BadCrc => write!(f, "record checksum mismatch"),
        }
    }
}

/// Parses the frame at the start of `bytes` (which may hold more after it).
pub fn decode_frame(bytes: &[u8]) -> Result<Frame<'_>, FrameError> {
    if bytes.len() < RECORD_HEADER_LEN {
        return Err(FrameError::Incomplete {
            needed: RECORD_HEADER_LEN,
        });
    }
    let len = read_u32(bytes, 0);
    if len as usize > RECORD_PAYLOAD_MAX {
        return Err(FrameError::LengthTooLarge(len));
    }
    let total = record_len(len as usize);
    if bytes.len() < total {
        return Err(FrameError::Incomplete { needed: total });
    }
    let record = &bytes[..total];
    if read_u32(record, 4) != record_crc(record) {
        return Err(FrameError::BadCrc);
    }
    Ok(Frame {
        seq: read_u64(record, 8),
        hash: record[16..48].try_into().expect("slice of 32 bytes"),
        payload: &record[RECORD_HEADER_LEN..],
    })
}

/// The header at the start of every segment file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    /// Sequence number of the first record in the segment.
    pub first_seq: u64,
    /// Chain hash of record `first_seq - 1` (the genesis hash for seq 1).
    pub prev_hash: Hash,
}

impl SegmentHeader {
    /// Encodes the header into its fixed 64 bytes.
    pub fn encode(&self) -> [u8; SEGMENT_HEADER_LEN] {
        let mut out = [0; SEGMENT_HEADER_LEN];
        out[0..8].copy_from_slice(SEGMENT_MAGIC);
        out[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        out[16..24].copy_from_slice(&self.first_seq.to_le_bytes());
        out[24..56].copy_from_slice(&self.prev_hash);
        let crc = crc32c::crc32c(&out[..60]);
        out[60..64].copy_from_slice(&crc.to_le_bytes());
        out
    }

    /// Decodes and checks a header.
    ///
    /// # Errors
    /// A human-readable reason when the bytes are short or do not check out.
    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        if bytes.len() < SEGMENT_HEADER_LEN {
            return Err(format!("segment header is {} bytes, needs 64", bytes.len()));
        }
        if &bytes[0..8] != SEGMENT_MAGIC {
            return Err("segment header magic mismatch".into());
        }
        if read_u32(bytes, 60) != crc32c::crc32c(&bytes[..60]) {
            return Err("segment header checksum mismatch".into());
        }
        let version = read_u32(bytes, 8);
        if version != FORMAT_VERSION {
            return Err(format!("unsupported segment format version {version}"));
        }
        Ok(Self {
            first_seq: read_u64(bytes, 16),
            prev_hash: bytes[24..56].try_into().expect("slice of 32 bytes"),
        })
    }
}

/// The file name of the segment whose first record is `first_seq`.
pub fn segment_name(first_seq: u64) -> String {
    format!("{first_seq:020}{SEGMENT_SUFFIX}")
}

/// The first sequence number encoded in a segment file name, if it is one.
pub fn parse_segment_name(name: &str) -> Option<u64> {
    parse_numbered(name, SEGMENT_SUFFIX)
}

/// Parses `<20 digits><suffix>`.
pub(crate) fn parse_numbered(name: &str, suffix: &str) -> Option<u64> {
    let digits = name.strip_suffix(suffix)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

pub(crate) fn read_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("slice of 4 bytes"))
}

pub(crate) fn read_u64(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("slice of 8 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_round_trips() {
        let mut buf = Vec::new();
        let h1 = encode_record(&mut buf, 1, &GENESIS_HASH, b"hello");
        let h2 = encode_record(&mut buf, 2, &h1, b"");
        let f1 = decode_frame(&buf).expect("first frame");
        assert_eq!((f1.seq, f1.hash, f1.payload), (1, h1, &b"hello"[..]));
        let f2 = decode_frame(&buf[f1.len()..]).expect("second frame");
        assert_eq!((f2.seq, f2.hash, f2.payload), (2, h2, &b""[..]));
        assert_eq!(h2, chain_hash(&h1, 2, b""));
    }

    #[test]
    fn every_bit_flip_in_a_record_is_detected() {
        let mut buf = Vec::new();
        encode_record(&mut buf, 7, &GENESIS_HASH, b"payload bytes");
        for bit in 0..buf.len() * 8 {
            let mut copy = buf.clone();
            copy[bit / 8] ^= 1 << (bit % 8);
            assert!(
                decode_frame(&copy).is_err(),
                "flip of bit {bit} went unnoticed"
            );
        }
    }

    #[test]
    fn truncated_record_is_incomplete() {
        let mut buf = Vec::new();
        encode_record(&mut buf, 1, &GENESIS_HASH, b"abc");
        for cut in 0..buf.len() {
            assert!(matches!(
                decode_frame(&buf[..cut]),
                Err(FrameError::Incomplete { .. })
            ));
        }
    }

    #[test]
    fn segment_header_round_trips_and_names_parse() {
        let header = SegmentHeader {
            first_seq: 42,
            prev_hash: [9; 32],
        };
        assert_eq!(SegmentHeader::decode(&header.encode()), Ok(header));
        let mut bad = header.encode();
        bad[30] ^= 1;
        assert!(SegmentHeader::decode(&bad).is_err());
        assert_eq!(parse_segment_name(&segment_name(42)), Some(42));
        assert_eq!(parse_segment_name("42.wal"), None);
    }
}
