//! Commands: everything that can change a ledger. They carry codes as strings (the
//! ledger interns them) so that a logged command means the same thing on replay.

use std::collections::BTreeMap;

use crate::ids::OrderId;
use crate::order::OrderAction;

macro_rules! plain_data {
    ($($item:item)*) => {
        $(
            #[derive(
                Clone, Debug, PartialEq, Eq,
                serde::Serialize, serde::Deserialize,
                rkyv::Archive, rkyv::Serialize, rkyv::Deserialize,
            )]
            $item
        )*
    };
}
pub(crate) use plain_data;

plain_data! {
    /// One change to a ledger. Time is not part of a command: it is passed to
    /// [`crate::Ledger::apply`] beside it, stamped once by the sequencer.
    #[serde(tag = "type", rename_all = "snake_case")]
    pub enum Command {
        PutWarehouse(WarehouseSpec),
        PutSku(SkuSpec),
        PutDealer(DealerSpec),
        PutPromotion(PromotionSpec),
        PutSettings(SettingsPatch),
        /// `on_hand += qty`, then fill the SKU's backorder queue.
        Receive { sku: String, warehouse: String, qty: u64 },
        /// Set `on_hand` (a stock count); refused below what is reserved.
        Adjust { sku: String, warehouse: String, on_hand: u64 },
        PlaceOrder(PlaceOrder),
        /// Confirm, approve, reject, ship or cancel an order.
        ActOnOrder { order: OrderId, action: OrderAction },
        /// Record a payment: `credit_used -= amount`.
        RecordPayment { dealer: String, amount: i64 },
        /// Expire every hold whose deadline has passed. (Every command does this first;
        /// `Tick` does only this.)
        Tick,
    }

    /// A warehouse's master data.
    pub struct WarehouseSpec {
        pub code: String,
        pub region: String,
    }

    /// A SKU's master data. Stock is not part of it.
    pub struct SkuSpec {
        pub code: String,
        pub name: String,
        /// Units per case, at least 1.
        pub case_size: u32,
        /// Whether loose units (not a multiple of `case_size`) may be ordered.
        pub split_case: bool,
        /// Smallest quantity of one line, in units.
        pub min_qty: u64,
        pub base_price: i64,
        /// Price by dealer tier.
        pub tier_prices: BTreeMap<String, i64>,
        /// Price by dealer region.
        pub region_prices: BTreeMap<String, i64>,
        /// A low-stock event fires when total available falls below this; 0 disables.
        pub low_stock_threshold: u64,
        pub attributes: BTreeMap<String, String>,
    }

    /// A dealer's master data. Credit and rebate balances are not part of it.
    pub struct DealerSpec {
        pub code: String,
        pub name: String,
        pub tier: String,
        pub region: String,
        pub credit_limit: i64,
        /// Orders with a total above this wait for approval.
        pub approval_threshold: Option<i64>,
        /// Rebate accrued on shipment, in basis points of the order total.
        pub rebate_rate_bp: u32,
    }

    /// A promotion: a price for one SKU during `[starts_at_ms, ends_at_ms)`.
    pub struct PromotionSpec {
        pub code: String,
        pub sku: String,
        pub price: i64,
        pub starts_at_ms: u64,
        pub ends_at_ms: u64,
        /// Eligible tiers; empty means every tier.
        pub tiers: Vec<String>,
        /// Units sold at this price, in all.
        pub quota: Option<u64>,
        /// Units sold at this price to one dealer.
        pub per_dealer_limit: Option<u64>,
    }

    /// The tenant settings a command changes; `None` leaves a setting as it is.
    #[derive(Default)]
    pub struct SettingsPatch {
        pub hold_ttl_s: Option<u64>,
        pub max_lines: Option<u32>,
        /// Tiers served first by backorder fills, in this order; empty means FIFO.
        pub backorder_priority: Option<Vec<String>>,
        /// Seconds a closed order stays in the book; 0 keeps closed orders forever.
        pub order_retention_s: Option<u64>,
    }

    /// Place an order.
    pub struct PlaceOrder {
        /// The idempotency key, unique per dealer.
        pub client_order_id: String,
        pub dealer: String,
        pub lines: Vec<LineRequest>,
        /// Queue what is short instead of rejecting the order.
        pub backorder: bool,
        /// Rebate balance to spend on this order.
        pub use_rebate: i64,
    }

    /// One requested line.
    pub struct LineRequest {
        pub sku: String,
        pub qty: u64,
        pub unit: Unit,
    }
}

/// The unit a line's quantity is given in.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    serde::Serialize,
    serde::Deserialize,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    #[default]
    Unit,
    /// `qty` cases of `case_size` units each.
    Case,
}

impl SkuSpec {
    /// A SKU with the given code and price and every other field at its default.
    pub fn new(code: impl Into<String>, base_price: i64) -> Self {
        let code = code.into();
        Self {
            name: code.clone(),
            code,
            case_size: 1,
            split_case: true,
            min_qty: 1,
            base_price,
            tier_prices: BTreeMap::new(),
            region_prices: BTreeMap::new(),
            low_stock_threshold: 0,
            attributes: BTreeMap::new(),
        }
    }
}

impl DealerSpec {
    /// A dealer with the given tier, region and limit, no approval threshold, no rebate.
    pub fn new(
        code: impl Into<String>,
        tier: impl Into<String>,
        region: impl Into<String>,
        credit_limit: i64,
    ) -> Self {
        let code = code.into();
        Self {
            name: code.clone(),
            code,
            tier: tier.into(),
            region: region.into(),
            credit_limit,
            approval_threshold: None,
            rebate_rate_bp: 0,
        }
    }
}

impl PlaceOrder {
    /// An order of whole units, all-or-nothing, without rebate.
    pub fn new(
        client_order_id: impl Into<String>,
        dealer: impl Into<String>,
        lines: &[(&str, u64)],
    ) -> Self {
        Self {
            client_order_id: client_order_id.into(),
            dealer: dealer.into(),
            lines: lines
                .iter()
                .map(|&(sku, qty)| LineRequest {
                    sku: sku.to_owned(),
                    qty,
                    unit: Unit::Unit,
                })
                .collect(),
            backorder: false,
            use_rebate: 0,
        }
    }
}
