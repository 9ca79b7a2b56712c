//! Events: what happened, in order, for portals and admins. Each carries the ledger's
//! event sequence number (per tenant, from 1, never reused) and the time it happened.
//! Entities are named by their dense ids; the ledger turns them back into codes.

use crate::ids::{DealerId, OrderId, SkuId, WarehouseId};
use crate::order::OrderStatus;

/// One event.
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
pub struct Event {
    pub seq: u64,
    pub at_ms: u64,
    pub kind: EventKind,
}

/// What happened.
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
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventKind {
    /// An order was accepted, in the status it starts with.
    OrderPlaced {
        order: OrderId,
        dealer: DealerId,
        status: OrderStatus,
        total: i64,
    },
    /// Stock was set aside for an order (at placement).
    StockReserved {
        order: OrderId,
        sku: SkuId,
        warehouse: WarehouseId,
        qty: u64,
    },
    /// Part of a line is waiting in the SKU's backorder queue.
    BackorderQueued {
        order: OrderId,
        sku: SkuId,
        qty: u64,
    },
    /// Stock arrived for a queued line; `remaining` is still waiting.
    BackorderFilled {
        order: OrderId,
        sku: SkuId,
        warehouse: WarehouseId,
        qty: u64,
        remaining: u64,
    },
    /// An order moved from one status to another (confirm, approve, reject, ship,
    /// cancel, or the last backorder fill).
    OrderStatusChanged {
        order: OrderId,
        dealer: DealerId,
        from: OrderStatus,
        to: OrderStatus,
    },
    /// A hold passed its deadline; the order is `expired` and its stock released.
    HoldExpired { order: OrderId, dealer: DealerId },
    /// Stock an order held was given back (cancel, expire, reject).
    StockReleased {
        order: OrderId,
        sku: SkuId,
        warehouse: WarehouseId,
        qty: u64,
    },
    /// Stock was received into a warehouse.
    StockReceived {
        sku: SkuId,
        warehouse: WarehouseId,
        qty: u64,
        on_hand: u64,
    },
    /// A stock count set on_hand.
    StockAdjusted {
        sku: SkuId,
        warehouse: WarehouseId,
        on_hand: u64,
    },
    /// A SKU's total available fell below its low-stock threshold.
    LowStock {
        sku: SkuId,
        available: u64,
        threshold: u64,
    },
    /// A payment lowered the dealer's credit_used.
    PaymentRecorded {
        dealer: DealerId,
        amount: i64,
        credit_used: i64,
    },
    /// A shipment earned the dealer a rebate.
    RebateAccrued {
        dealer: DealerId,
        order: OrderId,
        amount: i64,
    },
}

impl EventKind {
    /// The snake-case name of this kind, as on the wire.
    pub fn name(&self) -> &'static str {
        match self {
            Self::OrderPlaced { .. } => "order_placed",
            Self::StockReserved { .. } => "stock_reserved",
            Self::BackorderQueued { .. } => "backorder_queued",
            Self::BackorderFilled { .. } => "backorder_filled",
            Self::OrderStatusChanged { .. } => "order_status_changed",
            Self::HoldExpired { .. } => "hold_expired",
            Self::StockReleased { .. } => "stock_released",
            Self::StockReceived { .. } => "stock_received",
            Self::StockAdjusted { .. } => "stock_adjusted",
            Self::LowStock { .. } => "low_stock",
            Self::PaymentRecorded { .. } => "payment_recorded",
            Self::RebateAccrued { .. } => "rebate_accrued",
        }
    }
}
