//! `Rejection`: why a command changed nothing. Every variant has a stable `code()`
//! that the HTTP layer puts in its error body, and a `class()` that picks the status.

use crate::ids::OrderId;
use crate::order::{OrderAction, OrderStatus};

/// A line that could not be served in full, with what there was.
#[derive(
    Clone,
    Debug,
    PartialEq,
    Eq,
    serde::Serialize,
    serde::Deserialize,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
)]
pub struct ShortLine {
    pub sku: String,
    pub requested: u64,
    pub available: u64,
}

/// How a rejection maps onto a protocol: the HTTP layer turns these into 404, 409 and
/// 422 (an unknown code named in a request path is a 404 there, in a body a 422).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RejectionClass {
    /// Something named does not exist.
    Unknown,
    /// The request is well formed, but the book's state refuses it.
    Conflict,
    /// A field has a wrong value or breaks a rule.
    Validation,
}

/// Why a command was refused. A refused command changes nothing.
#[derive(
    Clone,
    Debug,
    PartialEq,
    Eq,
    thiserror::Error,
    serde::Serialize,
    serde::Deserialize,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
)]
#[serde(tag = "code", rename_all = "snake_case")]
pub enum Rejection {
    #[error("unknown SKU `{sku}`")]
    UnknownSku { sku: String },
    #[error("unknown warehouse `{warehouse}`")]
    UnknownWarehouse { warehouse: String },
    #[error("unknown dealer `{dealer}`")]
    UnknownDealer { dealer: String },
    #[error("unknown order {order}")]
    UnknownOrder { order: OrderId },
    #[error("not enough stock for {} line(s)", lines.len())]
    InsufficientStock { lines: Vec<ShortLine> },
    #[error("credit exceeded: the order needs {needed}, the dealer has {available} available")]
    CreditExceeded { needed: i64, available: i64 },
    #[error("cannot {action:?} an order that is {from:?}")]
    InvalidTransition {
        order: OrderId,
        from: OrderStatus,
        action: OrderAction,
    },
    #[error("client_order_id was already used by order {order} with a different body")]
    IdempotencyConflict { order: OrderId },
    #[error("on_hand {on_hand} is below the {reserved} units reserved")]
    BelowReserved { on_hand: u64, reserved: u64 },
    #[error("payment {amount} is above the dealer's credit_used {credit_used}")]
    Overpayment { amount: i64, credit_used: i64 },
    #[error("use_rebate {requested} is above what may be used ({allowed})")]
    RebateExceeded { requested: i64, allowed: i64 },
    #[error("{field}: arithmetic overflow")]
    Overflow { field: String },
    #[error("{field}: {reason}")]
    Invalid { field: String, reason: String },
}

impl Rejection {
    /// The stable, snake-case code of this rejection.
    pub fn code(&self) -> &'static str {
        match self {
            Self::UnknownSku { .. } => "unknown_sku",
            Self::UnknownWarehouse { .. } => "unknown_warehouse",
            Self::UnknownDealer { .. } => "unknown_dealer",
            Self::UnknownOrder { .. } => "unknown_order",
            Self::InsufficientStock { .. } => "insufficient_stock",
            Self::CreditExceeded { .. } => "credit_exceeded",
            Self::InvalidTransition { .. } => "invalid_transition",
            Self::IdempotencyConflict { .. } => "idempotency_conflict",
            Self::BelowReserved { .. } => "below_reserved",
            Self::Overpayment { .. } => "overpayment",
            Self::RebateExceeded { .. } => "rebate_exceeded",
            Self::Overflow { .. } => "overflow",
            Self::Invalid { .. } => "invalid_field",
        }
    }

    /// Which family of protocol errors this rejection belongs to.
    pub fn class(&self) -> RejectionClass {
        match self {
            Self::UnknownSku { .. }
            | Self::UnknownWarehouse { .. }
            | Self::UnknownDealer { .. }
            | Self::UnknownOrder { .. } => RejectionClass::Unknown,
            Self::InsufficientStock { .. }
            | Self::CreditExceeded { .. }
            | Self::InvalidTransition { .. }
            | Self::IdempotencyConflict { .. }
            | Self::BelowReserved { .. } => RejectionClass::Conflict,
            Self::Overpayment { .. }
            | Self::RebateExceeded { .. }
            | Self::Overflow { .. }
            | Self::Invalid { .. } => RejectionClass::Validation,
        }
    }

    pub(crate) fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn overflow(field: impl Into<String>) -> Self {
        Self::Overflow {
            field: field.into(),
        }
    }
}
