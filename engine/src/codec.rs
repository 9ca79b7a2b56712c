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
        let mut state =
            rkyv::from_bytes::<State, rancor::Error>(&aligned(bytes)).map_err(|e| CodecError {
                what: "ledger snapshot",
                reason: e.to_string(),
            })?;
        // Snapshots keep orders in the chunks of the build that wrote them.
        state.orders = std::mem::take(&mut state.orders)
            .rechunked()
            .ok_or_else(|| CodecError {
                what: "ledger snapshot",
                reason: "orders are not stored in chunks of one size".to_owned(),
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
        Ok(ledger)
    }

    /// A BLAKE3 hash of the whole book: equal books have equal digests, and replaying
    /// the same commands gives the same digest.
    pub fn digest(&self) -> [u8; 32] {
        *blake3::hash(&self.snapshot()).as_bytes()
    }
}

#[cfg(test)]
mod tests {
    use crate::command::{Command, DealerSpec, PlaceOrder, SkuSpec, WarehouseSpec};
    use crate::order::{tests::chunked_as, OrderAction};
    use crate::{Ledger, OrderId};

    fn apply(ledger: &mut Ledger, command: &Command) {
        let outcome = ledger.apply(1, command, &mut Vec::new());
        assert!(outcome.result.is_ok(), "{outcome:?}");
    }

    /// A book with a few orders, some of them cancelled.
    fn book() -> Ledger {
        let mut ledger = Ledger::default();
        apply(
            &mut ledger,
            &Command::PutWarehouse(WarehouseSpec {
                code: "W".into(),
                region: "R".into(),
            }),
        );
        apply(&mut ledger, &Command::PutSku(SkuSpec::new("S", 100)));
        apply(
            &mut ledger,
            &Command::Receive {
                sku: "S".into(),
                warehouse: "W".into(),
                qty: 1_000,
            },
        );
        apply(
            &mut ledger,
            &Command::PutDealer(DealerSpec::new("D", "gold", "R", 1_000_000)),
        );
        for i in 1..=10 {
            let request = PlaceOrder::new(format!("PO-{i}"), "D".to_owned(), &[("S", 2)]);
            apply(&mut ledger, &Command::PlaceOrder(request));
        }
        for id in [2, 3, 4, 9] {
            apply(
                &mut ledger,
                &Command::ActOnOrder {
                    order: OrderId(id),
                    action: OrderAction::Cancel,
                },
            );
        }
        ledger
    }

    #[test]
    fn a_snapshot_with_orders_in_other_chunks_restores_the_same_book() {
        let ledger = book();
        for size in [3, 1 << 16] {
            let mut state = ledger.state.clone();
            state.orders = chunked_as(&state.orders, size);
            let bytes = rkyv::to_bytes::<rkyv::rancor::Error>(&state).expect("encodes");
            let restored = Ledger::restore(&bytes).expect("restores");
            assert!(restored == ledger, "from chunks of {size}");
            assert_eq!(restored.snapshot(), ledger.snapshot());
        }
        let mut state = ledger.state.clone();
        state.orders = chunked_as(&state.orders, 3);
        state.orders.unevenly_for_test();
        let bytes = rkyv::to_bytes::<rkyv::rancor::Error>(&state).expect("encodes");
        let refused = Ledger::restore(&bytes).expect_err("chunks of two sizes");
        assert!(refused.reason.contains("chunks of one size"), "{refused}");
    }
}
