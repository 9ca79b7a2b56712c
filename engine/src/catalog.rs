//! Master data: warehouses, SKUs, dealers, promotions and the tenant's settings, and
//! the upserts that maintain them. A `Put*` of an existing code changes master data
//! only: stock, credit and rebate balances and promotion usage stay.

use std::collections::BTreeMap;

use crate::command::{
    plain_data, DealerSpec, PromotionSpec, SettingsPatch, SkuSpec, WarehouseSpec,
};
use crate::error::Rejection;
use crate::event::Event;
use crate::ids::{is_valid_code, DealerId, PromotionId, RegionId, SkuId, TierId, WarehouseId};
use crate::ledger::{Effect, Ledger};
use crate::limits::{
    ATTRIBUTES_MAX, ATTRIBUTE_LEN_MAX, CASE_SIZE_MAX, HOLD_TTL_S_MAX, HOLD_TTL_S_MIN, MONEY_MAX,
    NAME_LEN_MAX, ORDER_LINES_MAX_CAP, ORDER_RETENTION_S_MAX, PRICE_ENTRIES_MAX,
    PRIORITY_TIERS_MAX, QTY_MAX, REBATE_RATE_BP_MAX,
};
use crate::stock::StockCells;

plain_data! {
    pub struct Warehouse {
        pub code: String,
        pub region: RegionId,
    }

    /// A SKU: master data plus its stock in every warehouse that ever stocked it.
    pub struct Sku {
        pub code: String,
        pub name: String,
        pub case_size: u32,
        pub split_case: bool,
        pub min_qty: u64,
        pub base_price: i64,
        pub tier_prices: TierPrices,
        pub region_prices: RegionPrices,
        pub low_stock_threshold: u64,
        pub attributes: BTreeMap<String, String>,
        /// Stock per warehouse, one cell per warehouse ever stocked, in creation order.
        pub cells: StockCells,
        /// Sums over `cells`.
        pub on_hand: u64,
        pub reserved: u64,
        /// Units waiting in this SKU's backorder queue.
        pub backordered: u64,
        /// Whether total available is below the low-stock threshold (to fire
        /// `low_stock` once per crossing).
        pub below_threshold: bool,
    }

    pub struct TierPrice {
        pub tier: TierId,
        pub price: i64,
    }

    pub struct RegionPrice {
        pub region: RegionId,
        pub price: i64,
    }

    /// A dealer: master data and its credit and rebate ledger.
    pub struct Dealer {
        pub code: String,
        pub name: String,
        pub tier: TierId,
        pub region: RegionId,
        pub credit_limit: i64,
        pub approval_threshold: Option<i64>,
        pub rebate_rate_bp: u32,
        /// Credit of open, unconfirmed orders.
        pub credit_held: i64,
        /// Credit of confirmed orders not yet paid for.
        pub credit_used: i64,
        pub rebate_balance: i64,
    }

    pub struct Promotion {
        pub code: String,
        pub sku: SkuId,
        pub price: i64,
        pub starts_at_ms: u64,
        pub ends_at_ms: u64,
        /// Eligible tiers; empty means all.
        pub tiers: Vec<TierId>,
        pub quota: Option<u64>,
        pub per_dealer_limit: Option<u64>,
        /// Units sold at this price by open or shipped orders.
        pub used: u64,
    }
}

/// A SKU's tier prices: one inline in the SKU, in the room a `Vec` takes, so that
/// pricing a line does not follow a pointer (a cache miss) for a SKU with one.
pub type TierPrices = smallvec::SmallVec<[TierPrice; 1]>;
/// A SKU's region prices, one inline as for [`TierPrices`].
pub type RegionPrices = smallvec::SmallVec<[RegionPrice; 1]>;

impl Sku {
    /// `on_hand - reserved` over every warehouse.
    pub fn available(&self) -> u64 {
        self.on_hand - self.reserved
    }
}

impl Dealer {
    /// `credit_limit - credit_held - credit_used`; negative when the limit was lowered
    /// below what is already held and used.
    pub fn available_credit(&self) -> i64 {
        self.credit_limit - self.credit_held - self.credit_used
    }
}

fn check_code(field: &str, code: &str) -> Result<(), Rejection> {
    if is_valid_code(code) {
        Ok(())
    } else {
        Err(Rejection::invalid(
            field,
            "must be 1-64 characters of [A-Za-z0-9._-]",
        ))
    }
}

fn check_name(field: &str, name: &str) -> Result<(), Rejection> {
    if name.len() <= NAME_LEN_MAX {
        Ok(())
    } else {
        Err(Rejection::invalid(
            field,
            format!("must be at most {NAME_LEN_MAX} bytes"),
        ))
    }
}

pub(crate) fn check_money(field: &str, amount: i64) -> Result<(), Rejection> {
    if (0..=MONEY_MAX).contains(&amount) {
        Ok(())
    } else {
        Err(Rejection::invalid(
            field,
            format!("must be between 0 and {MONEY_MAX}"),
        ))
    }
}

pub(crate) fn check_qty(field: &str, qty: u64, min: u64) -> Result<(), Rejection> {
    if (min..=QTY_MAX).contains(&qty) {
        Ok(())
    } else {
        Err(Rejection::invalid(
            field,
            format!("must be between {min} and {QTY_MAX}"),
        ))
    }
}

fn check_prices(field: &str, prices: &BTreeMap<String, i64>) -> Result<(), Rejection> {
    if prices.len() > PRICE_ENTRIES_MAX {
        return Err(Rejection::invalid(
            field,
            format!("at most {PRICE_ENTRIES_MAX} entries"),
        ));
    }
    for (name, &price) in prices {
        check_code(field, name)?;
        check_money(&format!("{field}.{name}"), price)?;
    }
    Ok(())
}

fn check_sku(spec: &SkuSpec) -> Result<(), Rejection> {
    check_code("code", &spec.code)?;
    check_name("name", &spec.name)?;
    if !(1..=CASE_SIZE_MAX).contains(&spec.case_size) {
        return Err(Rejection::invalid(
            "case_size",
            format!("must be between 1 and {CASE_SIZE_MAX}"),
        ));
    }
    check_qty("min_qty", spec.min_qty, 0)?;
    check_money("base_price", spec.base_price)?;
    check_prices("tier_prices", &spec.tier_prices)?;
    check_prices("region_prices", &spec.region_prices)?;
    check_qty("low_stock_threshold", spec.low_stock_threshold, 0)?;
    if spec.attributes.len() > ATTRIBUTES_MAX {
        return Err(Rejection::invalid(
            "attributes",
            format!("at most {ATTRIBUTES_MAX} entries"),
        ));
    }
    if spec
        .attributes
        .iter()
        .any(|(k, v)| k.len() > ATTRIBUTE_LEN_MAX || v.len() > ATTRIBUTE_LEN_MAX)
    {
        return Err(Rejection::invalid(
            "attributes",
            format!("keys and values must be at most {ATTRIBUTE_LEN_MAX} bytes"),
        ));
    }
    Ok(())
}

fn check_dealer(spec: &DealerSpec) -> Result<(), Rejection> {
    check_code("code", &spec.code)?;
    check_name("name", &spec.name)?;
    check_code("tier", &spec.tier)?;
    check_code("region", &spec.region)?;
    check_money("credit_limit", spec.credit_limit)?;
    if let Some(threshold) = spec.approval_threshold {
        check_money("approval_threshold", threshold)?;
    }
    if spec.rebate_rate_bp > REBATE_RATE_BP_MAX {
        return Err(Rejection::invalid(
            "rebate_rate_bp",
            format!("must be between 0 and {REBATE_RATE_BP_MAX}"),
        ));
    }
    Ok(())
}

fn check_promotion(spec: &PromotionSpec) -> Result<(), Rejection> {
    check_code("code", &spec.code)?;
    check_code("sku", &spec.sku)?;
    check_money("price", spec.price)?;
    if spec.starts_at_ms >= spec.ends_at_ms {
        return Err(Rejection::invalid("ends_at", "must be after starts_at"));
    }
    if spec.tiers.len() > PRICE_ENTRIES_MAX {
        return Err(Rejection::invalid(
            "tiers",
            format!("at most {PRICE_ENTRIES_MAX} entries"),
        ));
    }
    for tier in &spec.tiers {
        check_code("tiers", tier)?;
    }
    if let Some(quota) = spec.quota {
        check_qty("quota", quota, 0)?;
    }
    if let Some(limit) = spec.per_dealer_limit {
        check_qty("per_dealer_limit", limit, 0)?;
    }
    Ok(())
}

impl Ledger {
    pub(crate) fn put_warehouse(&mut self, spec: &WarehouseSpec) -> Result<Effect, Rejection> {
        check_code("code", &spec.code)?;
        check_code("region", &spec.region)?;
        let region = self.intern_region(&spec.region);
        if let Some(&id) = self.index.warehouses.get(spec.code.as_str()) {
            self.state.warehouses[id.index()].region = region;
            self.rank_warehouses();
        } else {
            let id = WarehouseId(self.state.warehouses.len() as u32);
            self.state.warehouses.push(Warehouse {
                code: spec.code.clone(),
                region,
            });
            self.index.warehouses.insert(&spec.code, id);
            self.rank_warehouses();
        }
        Ok(Effect::Applied)
    }

    pub(crate) fn put_sku(
        &mut self,
        spec: &SkuSpec,
        now_ms: u64,
        events: &mut Vec<Event>,
    ) -> Result<Effect, Rejection> {
        check_sku(spec)?;
        let tier_prices = spec
            .tier_prices
            .iter()
            .map(|(tier, &price)| TierPrice {
                tier: self.intern_tier(tier),
                price,
            })
            .collect();
        let region_prices = spec
            .region_prices
            .iter()
            .map(|(region, &price)| RegionPrice {
                region: self.intern_region(region),
                price,
            })
            .collect();
        let id = if let Some(&id) = self.index.skus.get(spec.code.as_str()) {
            id
        } else {
            let id = SkuId(self.state.skus.len() as u32);
            self.state.skus.push(Sku {
                code: spec.code.clone(),
                name: String::new(),
                case_size: 1,
                split_case: true,
                min_qty: 0,
                base_price: 0,
                tier_prices: TierPrices::new(),
                region_prices: RegionPrices::new(),
                low_stock_threshold: 0,
                attributes: BTreeMap::new(),
                cells: StockCells::new(),
                on_hand: 0,
                reserved: 0,
                backordered: 0,
                // A new SKU with a threshold starts below it, silently: it was never
                // stocked, so nothing ran low.
                below_threshold: spec.low_stock_threshold > 0,
            });
            self.index.skus.insert(&spec.code, id);
            self.index.skus_by_code.insert(spec.code.clone(), id);
            self.index.queues.push(std::collections::BTreeSet::new());
            id
        };
        let sku = &mut self.state.skus[id.index()];
        sku.name.clone_from(&spec.name);
        sku.case_size = spec.case_size;
        sku.split_case = spec.split_case;
        sku.min_qty = spec.min_qty;
        sku.base_price = spec.base_price;
        sku.tier_prices = tier_prices;
        sku.region_prices = region_prices;
        sku.low_stock_threshold = spec.low_stock_threshold;
        sku.attributes.clone_from(&spec.attributes);
        self.check_low_stock(id, now_ms, events);
        Ok(Effect::Applied)
    }

    pub(crate) fn put_dealer(&mut self, spec: &DealerSpec) -> Result<Effect, Rejection> {
        check_dealer(spec)?;
        let tier = self.intern_tier(&spec.tier);
        let region = self.intern_region(&spec.region);
        let id = if let Some(&id) = self.index.dealers.get(spec.code.as_str()) {
            id
        } else {
            let id = DealerId(self.state.dealers.len() as u32);
            self.state.dealers.push(Dealer {
                code: spec.code.clone(),
                name: String::new(),
                tier,
                region,
                credit_limit: 0,
                approval_threshold: None,
                rebate_rate_bp: 0,
                credit_held: 0,
                credit_used: 0,
                rebate_balance: 0,
            });
            self.index.dealers.insert(&spec.code, id);
            self.index.dealer_orders.add_dealer();
            id
        };
        let dealer = &mut self.state.dealers[id.index()];
        let tier_changed = dealer.tier != tier;
        dealer.name.clone_from(&spec.name);
        dealer.tier = tier;
        dealer.region = region;
        dealer.credit_limit = spec.credit_limit;
        dealer.approval_threshold = spec.approval_threshold;
        dealer.rebate_rate_bp = spec.rebate_rate_bp;
        if tier_changed && !self.state.settings.backorder_priority.is_empty() {
            // Queue places are keyed by tier rank; a new tier moves the dealer's places.
            self.rebuild_queues();
        }
        Ok(Effect::Applied)
    }

    pub(crate) fn put_promotion(&mut self, spec: &PromotionSpec) -> Result<Effect, Rejection> {
        check_promotion(spec)?;
        let sku = *self
            .index
            .skus
            .get(spec.sku.as_str())
            .ok_or_else(|| Rejection::UnknownSku {
                sku: spec.sku.clone(),
            })?;
        let existing = self.index.promotions.get(spec.code.as_str()).copied();
        if let Some(id) = existing {
            if self.state.promotions[id.index()].sku != sku {
                return Err(Rejection::invalid("sku", "a promotion's SKU cannot change"));
            }
        }
        let tiers = spec.tiers.iter().map(|t| self.intern_tier(t)).collect();
        let id = existing.unwrap_or_else(|| {
            let id = PromotionId(self.state.promotions.len() as u32);
            self.state.promotions.push(Promotion {
                code: spec.code.clone(),
                sku,
                price: 0,
                starts_at_ms: 0,
                ends_at_ms: 0,
                tiers: Vec::new(),
                quota: None,
                per_dealer_limit: None,
                used: 0,
            });
            self.index.promotions.insert(&spec.code, id);
            let promotions = &self.state.promotions;
            let list = self.index.sku_promotions.entry(sku).or_default();
            let at = list.partition_point(|p| promotions[p.index()].code < spec.code);
            list.insert(at, id);
            id
        });
        let promotion = &mut self.state.promotions[id.index()];
        promotion.price = spec.price;
        promotion.starts_at_ms = spec.starts_at_ms;
        promotion.ends_at_ms = spec.ends_at_ms;
        promotion.tiers = tiers;
        promotion.quota = spec.quota;
        promotion.per_dealer_limit = spec.per_dealer_limit;
        Ok(Effect::Applied)
    }

    pub(crate) fn put_settings(&mut self, patch: &SettingsPatch) -> Result<Effect, Rejection> {
        if let Some(ttl) = patch.hold_ttl_s {
            if !(HOLD_TTL_S_MIN..=HOLD_TTL_S_MAX).contains(&ttl) {
                return Err(Rejection::invalid(
                    "hold_ttl_s",
                    format!("must be between {HOLD_TTL_S_MIN} and {HOLD_TTL_S_MAX}"),
                ));
            }
        }
        if let Some(max_lines) = patch.max_lines {
            if !(1..=ORDER_LINES_MAX_CAP).contains(&max_lines) {
                return Err(Rejection::invalid(
                    "max_lines",
                    format!("must be between 1 and {ORDER_LINES_MAX_CAP}"),
                ));
            }
        }
        if let Some(tiers) = &patch.backorder_priority {
            if tiers.len() > PRIORITY_TIERS_MAX {
                return Err(Rejection::invalid(
                    "backorder_priority",
                    format!("at most {PRIORITY_TIERS_MAX} tiers"),
                ));
            }
            for (i, tier) in tiers.iter().enumerate() {
                check_code("backorder_priority", tier)?;
                if tiers[..i].contains(tier) {
                    return Err(Rejection::invalid(
                        "backorder_priority",
                        format!("`{tier}` is listed twice"),
                    ));
                }
            }
        }
        if let Some(retention) = patch.order_retention_s {
            if retention > ORDER_RETENTION_S_MAX {
                return Err(Rejection::invalid(
                    "order_retention_s",
                    format!("must be between 0 (forever) and {ORDER_RETENTION_S_MAX}"),
                ));
            }
        }
        if let Some(ttl) = patch.hold_ttl_s {
            self.state.settings.hold_ttl_s = ttl;
        }
        if let Some(retention) = patch.order_retention_s {
            if retention != self.state.settings.order_retention_s {
                self.state.settings.order_retention_s = retention;
                self.rebuild_closed();
            }
        }
        if let Some(max_lines) = patch.max_lines {
            self.state.settings.max_lines = max_lines;
        }
        if let Some(tiers) = &patch.backorder_priority {
            let priority: Vec<TierId> = tiers.iter().map(|t| self.intern_tier(t)).collect();
            if priority != self.state.settings.backorder_priority {
                self.state.settings.backorder_priority = priority;
                self.rebuild_queues();
            }
        }
        Ok(Effect::Applied)
    }
}
