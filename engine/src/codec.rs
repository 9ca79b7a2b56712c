//! Binary encoding: commands for the log and the whole book for snapshots, with rkyv.
//! Decoding validates the bytes (rkyv's checked access) and copies them to an aligned
//! buffer first, so it accepts payloads read from anywhere and never trusts them.

use rkyv::rancor;
use rkyv::util::AlignedVec;

use crate::command::Command;
use crate::ledger::{Ledger, State};

/// Bytes that do not decode.
#[derive(Debug, thiserror::Error)]
#[error("cannot decode {what}: {reason}")]
pub struct CodecError {
    pub what: &'static str,
    pub reason: String,
}

fn aligned(bytes: &[u8]) -> AlignedVec {
    let mut buffer = AlignedVec::with_capacity(bytes.len());
    buffer.extend_from_slice(bytes);
    buffer
}

/// Encode a command for the log.
pub fn encode_command(command: &Command) -> Vec<u8> {
    rkyv::to_bytes::<rancor::Error>(command)
        .expect("plain data always serializes")
        .into_vec()
}

/// Decode a logged command.
pub fn decode_command(bytes: &[u8]) -> Result<Command, CodecError> {
    rkyv::from_bytes::<Command, rancor::Error>(&aligned(bytes)).map_err(|e| CodecError {
        what: "command",
        reason: e.to_string(),
    })
}

impl Ledger {
    /// The whole book as bytes. `Ledger::restore(&ledger.snapshot())` is equal to
    /// `ledger` (indexes are derived and rebuilt).
    pub fn snapshot(&self) -> Vec<u8> {
        rkyv::to_bytes::<rancor::Error>(&self.state)
            .expect("plain data always serializes")
            .into_vec()
    }

    /// A ledger from [`Ledger::snapshot`] bytes. The restored book is checked against
    /// its invariants, so a snapshot that decodes but does not add up is refused.
    pub fn restore(bytes: &[u8]) -> Result<Self, CodecError> {
        let state =
            rkyv::from_bytes::<State, rancor::Error>(&aligned(bytes)).map_err(|e| CodecError {
                what: "ledger snapshot",
                reason: e.to_string(),
            })?;
        let mut ledger = Self {
            state,
            ..Self::default()
        };
        ledger.check_references().map_err(|reason| CodecError {
            what: "ledger snapshot",
            reason,
        })?;
        ledger.rebuild_index();
        ledger.check_invariants().map_err(|reason| CodecError {
            what: "ledger snapshot",
            reason,
        })?;
        ledger.state.orders.make_room_after_decode();
        Ok(ledger)
    }

    /// A BLAKE3 hash of the whole book: equal books have equal digests, and replaying
    /// the same commands gives the same digest.
    pub fn digest(&self) -> [u8; 32] {
        *blake3::hash(&self.snapshot()).as_bytes()
    }
}
