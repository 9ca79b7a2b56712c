//! The auditor's model: a deliberately naive ledger written from DESIGN.md and
//! docs/ARCHITECTURE.md, not from the engine's code. Everything is keyed by code in
//! `BTreeMap`s, and every derived quantity (reserved per cell, backordered units,
//! credit held, promotion usage, queue order, the low-stock flag) is recomputed by
//! scanning the orders instead of being maintained incrementally, so a bookkeeping
//! slip in the engine cannot be mirrored here.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};

use allot_engine::ids::{is_valid_client_order_id, is_valid_code};
use allot_engine::limits::{
    CASE_SIZE_MAX, HOLD_TTL_S_MAX, HOLD_TTL_S_MIN, MONEY_MAX, ORDER_LINES_MAX_CAP,
    ORDER_LINES_MAX_DEFAULT, PRIORITY_TIERS_MAX, QTY_MAX, REBATE_RATE_BP_MAX,
};
use allot_engine::query::{
    DealerSkuStock, DealerView, LowStockAlert, SkuStock, SkuView, StockPage, StockQuery, StockRow,
};
use allot_engine::{
    Command, DealerSpec, Effect, OrderAction, OrderId, OrderStatus, PlaceOrder, PromotionSpec,
    Rejection, SettingsPatch, ShortLine, SkuSpec, Unit,
};

/// An order as the model (and the audit's projection of the engine) sees it: codes,
/// not ids.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrderView {
    pub id: u64,
    pub client_order_id: String,
    pub dealer: String,
    pub status: OrderStatus,
    pub lines: Vec<LineView>,
    /// (line index, warehouse code, units), in the order they were made.
    pub allocations: Vec<(usize, String, u64)>,
    pub total: i64,
    pub rebate_used: i64,
    pub backorder: bool,
    pub created_at_ms: u64,
    pub updated_at_ms: u64,
    pub hold_expires_at_ms: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LineView {
    pub sku: String,
    pub requested_qty: u64,
    pub unit: Unit,
    pub qty: u64,
    pub unit_price: i64,
    pub backordered: u64,
    pub promotion: Option<String>,
}

#[derive(Clone, Debug)]
struct MSku {
    spec: SkuSpec,
    /// on_hand per warehouse code, for cells ever stocked.
    on_hand: BTreeMap<String, u64>,
}

#[derive(Clone, Debug)]
struct MDealer {
    spec: DealerSpec,
    credit_used: i64,
    rebate_balance: i64,
}

/// Quantities derived from the orders in one scan.
#[derive(Default)]
struct Derived {
    reserved: BTreeMap<(String, String), u64>,
    backordered: BTreeMap<String, u64>,
    held: BTreeMap<String, i64>,
    promo_used: BTreeMap<String, u64>,
    promo_dealer: BTreeMap<(String, String), u64>,
}

#[derive(Clone, Debug)]
pub struct Model {
    warehouses: BTreeMap<String, String>,
    skus: BTreeMap<String, MSku>,
    dealers: BTreeMap<String, MDealer>,
    promotions: BTreeMap<String, PromotionSpec>,
    orders: Vec<OrderView>,
    hold_ttl_s: u64,
    max_lines: u32,
    priority: Vec<String>,
    /// Seconds a closed order stays; 0 keeps it forever.
    retention_s: u64,
    /// Ids of orders that left the book. The model keeps them (closed orders count
    /// for nothing but promotion units already sold) and hides them from every query.
    pruned: BTreeSet<u64>,
}

impl Default for Model {
    fn default() -> Self {
        Self {
            warehouses: BTreeMap::new(),
            skus: BTreeMap::new(),
            dealers: BTreeMap::new(),
            promotions: BTreeMap::new(),
            orders: Vec::new(),
            hold_ttl_s: 900,
            max_lines: ORDER_LINES_MAX_DEFAULT,
            priority: Vec::new(),
            retention_s: 0,
            pruned: BTreeSet::new(),
        }
    }
}

fn invalid(field: &str) -> Rejection {
    Rejection::Invalid {
        field: field.to_owned(),
        reason: String::new(),
    }
}

fn money_ok(amount: i64) -> bool {
    (0..=MONEY_MAX).contains(&amount)
}

impl Model {
    // ----- reading -----------------------------------------------------------------

    pub fn order_count(&self) -> u64 {
        self.orders.len() as u64
    }

    pub fn orders(&self) -> &[OrderView] {
        &self.orders
    }

    /// How many orders have left the book.
    pub fn pruned_count(&self) -> u64 {
        self.pruned.len() as u64
    }

    /// Whether order `id` has left the book.
    pub fn is_pruned(&self, id: u64) -> bool {
        self.pruned.contains(&id)
    }

    pub fn sku_codes(&self) -> Vec<String> {
        self.skus.keys().cloned().collect()
    }

    pub fn dealer_codes(&self) -> Vec<String> {
        self.dealers.keys().cloned().collect()
    }

    pub fn warehouse_codes(&self) -> Vec<String> {
        self.warehouses.keys().cloned().collect()
    }

    pub fn dealer_spec(&self, code: &str) -> Option<&DealerSpec> {
        self.dealers.get(code).map(|d| &d.spec)
    }

    pub fn sku_spec(&self, code: &str) -> Option<&SkuSpec> {
        self.skus.get(code).map(|s| &s.spec)
    }

    pub fn promotion_specs(&self) -> Vec<PromotionSpec> {
        self.promotions.values().cloned().collect()
    }

    pub fn settings(&self) -> (u64, u32, Vec<String>) {
        (self.hold_ttl_s, self.max_lines, self.priority.clone())
    }

    fn derive(&self) -> Derived {
        let mut d = Derived::default();
        for order in &self.orders {
            let open = order.status.is_open();
            if open {
                for (line, warehouse, qty) in &order.allocations {
                    let sku = order.lines[*line].sku.clone();
                    *d.reserved.entry((sku, warehouse.clone())).or_default() += qty;
                }
                if order.status != OrderStatus::Confirmed {
                    *d.held.entry(order.dealer.clone()).or_default() +=
                        order.total - order.rebate_used;
                }
            }
            for line in &order.lines {
                if order.status == OrderStatus::Backordered {
                    *d.backordered.entry(line.sku.clone()).or_default() += line.backordered;
                }
                if let (Some(p), true) = (
                    &line.promotion,
                    open || order.status == OrderStatus::Shipped,
                ) {
                    *d.promo_used.entry(p.clone()).or_default() += line.qty;
                    *d.promo_dealer
                        .entry((p.clone(), order.dealer.clone()))
                        .or_default() += line.qty;
                }
            }
        }
        d
    }

    fn reserved_in(d: &Derived, sku: &str, warehouse: &str) -> u64 {
        d.reserved
            .get(&(sku.to_owned(), warehouse.to_owned()))
            .copied()
            .unwrap_or(0)
    }

    fn totals(&self, d: &Derived, sku: &str) -> (u64, u64) {
        let s = &self.skus[sku];
        let on_hand = s.on_hand.values().sum();
        let reserved = s.on_hand.keys().map(|w| Self::reserved_in(d, sku, w)).sum();
        (on_hand, reserved)
    }

    pub fn available(&self, sku: &str) -> u64 {
        let (on_hand, reserved) = self.totals(&self.derive(), sku);
        on_hand - reserved
    }

    pub fn credit_used(&self, dealer: &str) -> i64 {
        self.dealers.get(dealer).map_or(0, |d| d.credit_used)
    }

    pub fn rebate_balance(&self, dealer: &str) -> i64 {
        self.dealers.get(dealer).map_or(0, |d| d.rebate_balance)
    }

    pub fn on_hand(&self, sku: &str, warehouse: &str) -> Option<u64> {
        self.skus.get(sku)?.on_hand.get(warehouse).copied()
    }

    pub fn reserved(&self, sku: &str, warehouse: &str) -> u64 {
        Self::reserved_in(&self.derive(), sku, warehouse)
    }

    fn below_threshold(&self, d: &Derived, sku: &str) -> bool {
        let threshold = self.skus[sku].spec.low_stock_threshold;
        let (on_hand, reserved) = self.totals(d, sku);
        threshold > 0 && on_hand - reserved < threshold
    }

    fn rank(&self, dealer: &str) -> usize {
        let tier = &self.dealers[dealer].spec.tier;
        self.priority
            .iter()
            .position(|t| t == tier)
            .unwrap_or(self.priority.len())
    }

    /// Price of `qty` units of `sku` for `dealer` now, and the promotion giving it.
    fn price(
        &self,
        d: &Derived,
        sku: &str,
        dealer: &str,
        qty: u64,
        now_ms: u64,
    ) -> (i64, Option<String>) {
        let account = &self.dealers[dealer].spec;
        let mut best: Option<(i64, String)> = None;
        for (code, p) in &self.promotions {
            if p.sku != sku
                || !(p.starts_at_ms <= now_ms && now_ms < p.ends_at_ms)
                || !(p.tiers.is_empty() || p.tiers.contains(&account.tier))
            {
                continue;
            }
            let used = d.promo_used.get(code).copied().unwrap_or(0);
            let mine = d
                .promo_dealer
                .get(&(code.clone(), dealer.to_owned()))
                .copied()
                .unwrap_or(0);
            let quota_ok = p.quota.is_none_or(|q| qty <= q.saturating_sub(used));
            let limit_ok = p
                .per_dealer_limit
                .is_none_or(|l| qty <= l.saturating_sub(mine));
            if quota_ok && limit_ok && best.as_ref().is_none_or(|(price, _)| p.price < *price) {
                best = Some((p.price, code.clone()));
            }
        }
        if let Some((price, code)) = best {
            return (price, Some(code));
        }
        let spec = &self.skus[sku].spec;
        if let Some(&p) = spec.tier_prices.get(&account.tier) {
            return (p, None);
        }
        if let Some(&p) = spec.region_prices.get(&account.region) {
            return (p, None);
        }
        (spec.base_price, None)
    }

    /// Where `qty` units of `sku` come from for a dealer in `region`: in-region
    /// warehouses first, then most available, then warehouse code.
    fn pick(&self, d: &Derived, sku: &str, region: &str, qty: u64) -> Vec<(String, u64)> {
        let mut cells: Vec<(bool, Reverse<u64>, String)> = self.skus[sku]
            .on_hand
            .iter()
            .map(|(w, &on_hand)| (w, on_hand - Self::reserved_in(d, sku, w)))
            .filter(|&(_, available)| available > 0)
            .map(|(w, available)| (self.warehouses[w] != region, Reverse(available), w.clone()))
            .collect();
        cells.sort();
        let mut left = qty;
        let mut picks = Vec::new();
        for (_, Reverse(available), w) in cells {
            if left == 0 {
                break;
            }
            let take = available.min(left);
            picks.push((w, take));
            left -= take;
        }
        assert_eq!(left, 0, "model: picking more than is available");
        picks
    }

    // ----- changing ----------------------------------------------------------------

    /// Apply one command at `now_ms`: the result and whether anything changed (the
    /// engine must agree on both).
    pub fn apply(&mut self, now_ms: u64, command: &Command) -> (Result<Effect, Rejection>, bool) {
        let expired = self.expire(now_ms);
        let pruned = self.prune(now_ms);
        let result = match command {
            Command::PutWarehouse(spec) => {
                if is_valid_code(&spec.code) && is_valid_code(&spec.region) {
                    self.warehouses
                        .insert(spec.code.clone(), spec.region.clone());
                    Ok(Effect::Applied)
                } else {
                    Err(invalid("code"))
                }
            }
            Command::PutSku(spec) => self.put_sku(spec, now_ms),
            Command::PutDealer(spec) => self.put_dealer(spec),
            Command::PutPromotion(spec) => self.put_promotion(spec),
            Command::PutSettings(patch) => self.put_settings(patch),
            Command::Receive {
                sku,
                warehouse,
                qty,
            } => self.set_stock(sku, warehouse, *qty, true, now_ms),
            Command::Adjust {
                sku,
                warehouse,
                on_hand,
            } => self.set_stock(sku, warehouse, *on_hand, false, now_ms),
            Command::PlaceOrder(request) => self.place(now_ms, request),
            Command::ActOnOrder { order, action } => self.act(now_ms, *order, *action),
            Command::RecordPayment { dealer, amount } => self.payment(dealer, *amount),
            Command::Tick => Ok(Effect::Ticked { expired }),
        };
        // Logged: whatever expired holds or changed the book; not a replay, not a
        // tick that found nothing to expire.
        let changed = expired > 0
            || pruned > 0
            || matches!(&result, Ok(e) if !matches!(e, Effect::OrderReplayed(_) | Effect::Ticked { .. }));
        (result, changed)
    }

    /// Closed orders whose retention ran out leave the book: oldest close first (ties
    /// by id), at most `PRUNE_PER_APPLY_MAX` per command.
    fn prune(&mut self, now_ms: u64) -> u32 {
        if self.retention_s == 0 {
            return 0;
        }
        let mut due: Vec<(u64, u64)> = self
            .orders
            .iter()
            .filter(|o| !o.status.is_open() && !self.pruned.contains(&o.id))
            .map(|o| (o.updated_at_ms, o.id))
            .filter(|&(closed, _)| closed.saturating_add(self.retention_s * 1000) <= now_ms)
            .collect();
        due.sort_unstable();
        due.truncate(allot_engine::limits::PRUNE_PER_APPLY_MAX as usize);
        for &(_, id) in &due {
            self.pruned.insert(id);
        }
        due.len() as u32
    }

    fn expire(&mut self, now_ms: u64) -> u32 {
        let mut expired = 0;
        loop {
            let due = self
                .orders
                .iter()
                .enumerate()
                .filter(|(_, o)| o.status == OrderStatus::Held)
                .map(|(i, o)| (o.hold_expires_at_ms.expect("held has a deadline"), i))
                .filter(|&(at, _)| at <= now_ms)
                .min();
            let Some((_, i)) = due else { break };
            let order = &mut self.orders[i];
            order.status = OrderStatus::Expired;
            order.hold_expires_at_ms = None;
            order.updated_at_ms = now_ms;
            self.release(i, OrderStatus::Held, now_ms);
            expired += 1;
        }
        expired
    }

    fn release(&mut self, i: usize, from: OrderStatus, now_ms: u64) {
        let order = &self.orders[i];
        let amount = order.total - order.rebate_used;
        let rebate = order.rebate_used;
        let skus: Vec<String> = order.lines.iter().map(|l| l.sku.clone()).collect();
        let account = self.dealers.get_mut(&order.dealer).expect("order's dealer");
        if from == OrderStatus::Confirmed {
            account.credit_used = (account.credit_used - amount).max(0);
        }
        account.rebate_balance = account.rebate_balance.saturating_add(rebate);
        for sku in skus {
            self.fill(&sku, now_ms);
        }
    }

    /// Give what is available of `sku` to its backorder queue, head first.
    fn fill(&mut self, sku: &str, now_ms: u64) {
        loop {
            let d = self.derive();
            let (on_hand, reserved) = self.totals(&d, sku);
            let available = on_hand - reserved;
            if available == 0 {
                break;
            }
            let head = self
                .orders
                .iter()
                .enumerate()
                .filter(|(_, o)| o.status == OrderStatus::Backordered)
                .filter_map(|(i, o)| {
                    let line = o
                        .lines
                        .iter()
                        .position(|l| l.sku == sku && l.backordered > 0)?;
                    Some(((self.rank(&o.dealer), o.id), i, line))
                })
                .min();
            let Some((_, i, line)) = head else { break };
            let take = self.orders[i].lines[line].backordered.min(available);
            let region = self.dealers[&self.orders[i].dealer].spec.region.clone();
            let picks = self.pick(&d, sku, &region, take);
            let order = &mut self.orders[i];
            for (warehouse, qty) in picks {
                match order
                    .allocations
                    .iter_mut()
                    .find(|(l, w, _)| *l == line && *w == warehouse)
                {
                    Some(a) => a.2 += qty,
                    None => order.allocations.push((line, warehouse, qty)),
                }
            }
            order.lines[line].backordered -= take;
            order.updated_at_ms = now_ms;
            if order.lines.iter().all(|l| l.backordered == 0) {
                let threshold = self.dealers[&order.dealer].spec.approval_threshold;
                if threshold.is_some_and(|t| order.total > t) {
                    order.status = OrderStatus::PendingApproval;
                } else {
                    order.status = OrderStatus::Held;
                    order.hold_expires_at_ms = Some(now_ms.saturating_add(self.hold_ttl_s * 1000));
                }
            }
        }
    }

    fn put_sku(&mut self, spec: &SkuSpec, _now_ms: u64) -> Result<Effect, Rejection> {
        let prices_ok = |p: &BTreeMap<String, i64>| {
            p.iter()
                .all(|(name, &price)| is_valid_code(name) && money_ok(price))
        };
        if !is_valid_code(&spec.code)
            || !(1..=CASE_SIZE_MAX).contains(&spec.case_size)
            || spec.min_qty > QTY_MAX
            || !money_ok(spec.base_price)
            || !prices_ok(&spec.tier_prices)
            || !prices_ok(&spec.region_prices)
            || spec.low_stock_threshold > QTY_MAX
        {
            return Err(invalid("sku"));
        }
        self.skus
            .entry(spec.code.clone())
            .and_modify(|s| s.spec = spec.clone())
            .or_insert_with(|| MSku {
                spec: spec.clone(),
                on_hand: BTreeMap::new(),
            });
        Ok(Effect::Applied)
    }

    fn put_dealer(&mut self, spec: &DealerSpec) -> Result<Effect, Rejection> {
        if !is_valid_code(&spec.code)
            || !is_valid_code(&spec.tier)
            || !is_valid_code(&spec.region)
            || !money_ok(spec.credit_limit)
            || !spec.approval_threshold.is_none_or(money_ok)
            || spec.rebate_rate_bp > REBATE_RATE_BP_MAX
        {
            return Err(invalid("dealer"));
        }
        self.dealers
            .entry(spec.code.clone())
            .and_modify(|d| d.spec = spec.clone())
            .or_insert_with(|| MDealer {
                spec: spec.clone(),
                credit_used: 0,
                rebate_balance: 0,
            });
        Ok(Effect::Applied)
    }

    fn put_promotion(&mut self, spec: &PromotionSpec) -> Result<Effect, Rejection> {
        if !is_valid_code(&spec.code)
            || !is_valid_code(&spec.sku)
            || !money_ok(spec.price)
            || spec.starts_at_ms >= spec.ends_at_ms
            || !spec.tiers.iter().all(|t| is_valid_code(t))
            || spec.quota.is_some_and(|q| q > QTY_MAX)
            || spec.per_dealer_limit.is_some_and(|q| q > QTY_MAX)
        {
            return Err(invalid("promotion"));
        }
        if !self.skus.contains_key(&spec.sku) {
            return Err(Rejection::UnknownSku {
                sku: spec.sku.clone(),
            });
        }
        if self
            .promotions
            .get(&spec.code)
            .is_some_and(|p| p.sku != spec.sku)
        {
            return Err(invalid("sku"));
        }
        self.promotions.insert(spec.code.clone(), spec.clone());
        Ok(Effect::Applied)
    }

    fn put_settings(&mut self, patch: &SettingsPatch) -> Result<Effect, Rejection> {
        if patch
            .hold_ttl_s
            .is_some_and(|t| !(HOLD_TTL_S_MIN..=HOLD_TTL_S_MAX).contains(&t))
        {
            return Err(invalid("hold_ttl_s"));
        }
        if patch
            .max_lines
            .is_some_and(|m| !(1..=ORDER_LINES_MAX_CAP).contains(&m))
        {
            return Err(invalid("max_lines"));
        }
        if let Some(tiers) = &patch.backorder_priority {
            let dup = tiers
                .iter()
                .enumerate()
                .any(|(i, t)| tiers[..i].contains(t));
            if tiers.len() > PRIORITY_TIERS_MAX || dup || !tiers.iter().all(|t| is_valid_code(t)) {
                return Err(invalid("backorder_priority"));
            }
        }
        if patch
            .order_retention_s
            .is_some_and(|r| r > allot_engine::limits::ORDER_RETENTION_S_MAX)
        {
            return Err(invalid("order_retention_s"));
        }
        if let Some(t) = patch.hold_ttl_s {
            self.hold_ttl_s = t;
        }
        if let Some(r) = patch.order_retention_s {
            self.retention_s = r;
        }
        if let Some(m) = patch.max_lines {
            self.max_lines = m;
        }
        if let Some(p) = &patch.backorder_priority {
            self.priority.clone_from(p);
        }
        Ok(Effect::Applied)
    }

    fn set_stock(
        &mut self,
        sku: &str,
        warehouse: &str,
        qty: u64,
        receive: bool,
        now_ms: u64,
    ) -> Result<Effect, Rejection> {
        if !self.skus.contains_key(sku) {
            return Err(Rejection::UnknownSku {
                sku: sku.to_owned(),
            });
        }
        if !self.warehouses.contains_key(warehouse) {
            return Err(Rejection::UnknownWarehouse {
                warehouse: warehouse.to_owned(),
            });
        }
        let current = self.on_hand(sku, warehouse).unwrap_or(0);
        let on_hand = if receive {
            if !(1..=QTY_MAX).contains(&qty) {
                return Err(invalid("qty"));
            }
            match current.checked_add(qty).filter(|&q| q <= QTY_MAX) {
                Some(q) => q,
                None => {
                    return Err(Rejection::Overflow {
                        field: "on_hand".into(),
                    })
                }
            }
        } else {
            if qty > QTY_MAX {
                return Err(invalid("on_hand"));
            }
            qty
        };
        let reserved = self.reserved(sku, warehouse);
        if on_hand < reserved {
            return Err(Rejection::BelowReserved { on_hand, reserved });
        }
        let cells = &mut self.skus.get_mut(sku).expect("checked").on_hand;
        cells.insert(warehouse.to_owned(), on_hand);
        self.fill(sku, now_ms);
        Ok(Effect::Applied)
    }

    fn payment(&mut self, dealer: &str, amount: i64) -> Result<Effect, Rejection> {
        let Some(account) = self.dealers.get_mut(dealer) else {
            return Err(Rejection::UnknownDealer {
                dealer: dealer.to_owned(),
            });
        };
        if !money_ok(amount) || amount == 0 {
            return Err(invalid("amount"));
        }
        if amount > account.credit_used {
            return Err(Rejection::Overpayment {
                amount,
                credit_used: account.credit_used,
            });
        }
        account.credit_used -= amount;
        Ok(Effect::Applied)
    }

    fn act(&mut self, now_ms: u64, id: OrderId, action: OrderAction) -> Result<Effect, Rejection> {
        if id.0 == 0 || id.0 > self.order_count() || self.pruned.contains(&id.0) {
            return Err(Rejection::UnknownOrder { order: id });
        }
        let i = (id.0 - 1) as usize;
        let from = self.orders[i].status;
        let to = match (action, from) {
            (OrderAction::Confirm, OrderStatus::Held)
            | (OrderAction::Approve, OrderStatus::PendingApproval) => OrderStatus::Confirmed,
            (OrderAction::Reject, OrderStatus::PendingApproval) => OrderStatus::Rejected,
            (OrderAction::Ship, OrderStatus::Confirmed) => OrderStatus::Shipped,
            (
                OrderAction::Cancel,
                OrderStatus::Held
                | OrderStatus::PendingApproval
                | OrderStatus::Backordered
                | OrderStatus::Confirmed,
            ) => OrderStatus::Cancelled,
            _ => {
                return Err(Rejection::InvalidTransition {
                    order: id,
                    from,
                    action,
                })
            }
        };
        let order = &self.orders[i];
        let account = self.dealers.get_mut(&order.dealer).expect("order's dealer");
        match action {
            OrderAction::Confirm | OrderAction::Approve => {
                account.credit_used += order.total - order.rebate_used;
            }
            OrderAction::Ship => {
                let rebate =
                    i128::from(order.total) * i128::from(account.spec.rebate_rate_bp) / 10_000;
                account.rebate_balance += i64::try_from(rebate).expect("bounded");
                for (line, warehouse, qty) in &order.allocations {
                    let sku = self.skus.get_mut(&order.lines[*line].sku).expect("sku");
                    *sku.on_hand.get_mut(warehouse).expect("stocked cell") -= qty;
                }
            }
            OrderAction::Reject | OrderAction::Cancel => {}
        }
        let order = &mut self.orders[i];
        order.status = to;
        order.updated_at_ms = now_ms;
        order.hold_expires_at_ms = None;
        if matches!(action, OrderAction::Reject | OrderAction::Cancel) {
            self.release(i, from, now_ms);
        }
        Ok(Effect::OrderUpdated(id))
    }

    fn same_body(order: &OrderView, request: &PlaceOrder) -> bool {
        order.backorder == request.backorder
            && order.rebate_used == request.use_rebate
            && order.lines.len() == request.lines.len()
            && order
                .lines
                .iter()
                .zip(&request.lines)
                .all(|(l, r)| l.sku == r.sku && l.requested_qty == r.qty && l.unit == r.unit)
    }

    fn place(&mut self, now_ms: u64, request: &PlaceOrder) -> Result<Effect, Rejection> {
        if !is_valid_client_order_id(&request.client_order_id) {
            return Err(invalid("client_order_id"));
        }
        let Some(account) = self.dealers.get(&request.dealer) else {
            return Err(Rejection::UnknownDealer {
                dealer: request.dealer.clone(),
            });
        };
        if let Some(order) = self.orders.iter().find(|o| {
            o.dealer == request.dealer
                && o.client_order_id == request.client_order_id
                && !self.pruned.contains(&o.id)
        }) {
            let id = OrderId(order.id);
            return if Self::same_body(order, request) {
                Ok(Effect::OrderReplayed(id))
            } else {
                Err(Rejection::IdempotencyConflict { order: id })
            };
        }
        if request.lines.is_empty() || request.lines.len() > self.max_lines as usize {
            return Err(invalid("lines"));
        }
        let d = self.derive();
        // (sku, units, unit price, promotion, available now)
        let mut plans: Vec<(String, u64, i64, Option<String>, u64)> = Vec::new();
        let mut total: i64 = 0;
        for line in &request.lines {
            let Some(sku) = self.skus.get(&line.sku) else {
                return Err(Rejection::UnknownSku {
                    sku: line.sku.clone(),
                });
            };
            if !(1..=QTY_MAX).contains(&line.qty) {
                return Err(invalid("qty"));
            }
            let case = u64::from(sku.spec.case_size);
            let qty = match line.unit {
                Unit::Unit => line.qty,
                Unit::Case => match line.qty.checked_mul(case).filter(|&q| q <= QTY_MAX) {
                    Some(q) => q,
                    None => {
                        return Err(Rejection::Overflow {
                            field: "qty".into(),
                        })
                    }
                },
            };
            if (!sku.spec.split_case && qty % case != 0) || qty < sku.spec.min_qty {
                return Err(invalid("qty"));
            }
            let (price, promotion) = self.price(&d, &line.sku, &request.dealer, qty, now_ms);
            total = i64::try_from(qty)
                .ok()
                .and_then(|q| q.checked_mul(price))
                .and_then(|a| total.checked_add(a))
                .ok_or(Rejection::Overflow {
                    field: "total".into(),
                })?;
            let (on_hand, reserved) = self.totals(&d, &line.sku);
            plans.push((line.sku.clone(), qty, price, promotion, on_hand - reserved));
        }
        for (i, p) in plans.iter().enumerate() {
            if plans[..i].iter().any(|q| q.0 == p.0) {
                return Err(invalid("lines"));
            }
        }
        if !money_ok(request.use_rebate) {
            return Err(invalid("use_rebate"));
        }
        let allowed = self.dealers[&request.dealer].rebate_balance.min(total);
        if request.use_rebate > allowed {
            return Err(Rejection::RebateExceeded {
                requested: request.use_rebate,
                allowed,
            });
        }
        let needed = total - request.use_rebate;
        let held = d.held.get(&request.dealer).copied().unwrap_or(0);
        let available =
            account.spec.credit_limit - held - self.dealers[&request.dealer].credit_used;
        if needed > available {
            return Err(Rejection::CreditExceeded { needed, available });
        }
        let short = plans.iter().any(|p| p.4 < p.1);
        if short && !request.backorder {
            return Err(Rejection::InsufficientStock {
                lines: plans
                    .iter()
                    .filter(|p| p.4 < p.1)
                    .map(|p| ShortLine {
                        sku: p.0.clone(),
                        requested: p.1,
                        available: p.4,
                    })
                    .collect(),
            });
        }
        let id = self.order_count() + 1;
        let region = account.spec.region.clone();
        let status = if short {
            OrderStatus::Backordered
        } else if account.spec.approval_threshold.is_some_and(|t| total > t) {
            OrderStatus::PendingApproval
        } else {
            OrderStatus::Held
        };
        let mut order = OrderView {
            id,
            client_order_id: request.client_order_id.clone(),
            dealer: request.dealer.clone(),
            status,
            lines: Vec::new(),
            allocations: Vec::new(),
            total,
            rebate_used: request.use_rebate,
            backorder: request.backorder,
            created_at_ms: now_ms,
            updated_at_ms: now_ms,
            hold_expires_at_ms: (status == OrderStatus::Held)
                .then(|| now_ms.saturating_add(self.hold_ttl_s * 1000)),
        };
        for (i, ((sku, qty, price, promotion, available), req)) in
            plans.into_iter().zip(&request.lines).enumerate()
        {
            let take = qty.min(available);
            if take > 0 {
                for (w, q) in self.pick(&d, &sku, &region, take) {
                    order.allocations.push((i, w, q));
                }
            }
            order.lines.push(LineView {
                sku,
                requested_qty: req.qty,
                unit: req.unit,
                qty,
                unit_price: price,
                backordered: qty - take,
                promotion,
            });
        }
        self.orders.push(order);
        self.dealers
            .get_mut(&request.dealer)
            .expect("checked")
            .rebate_balance -= request.use_rebate;
        self.check_placement(id);
        Ok(Effect::OrderPlaced(OrderId(id)))
    }

    /// The model's own invariants right after a placement: within credit, within
    /// promotion quotas and per-dealer limits.
    fn check_placement(&self, id: u64) {
        let d = self.derive();
        let order = &self.orders[(id - 1) as usize];
        let account = &self.dealers[&order.dealer];
        let held = d.held.get(&order.dealer).copied().unwrap_or(0);
        assert!(
            held + account.credit_used <= account.spec.credit_limit,
            "model: placement past the credit limit"
        );
        for line in &order.lines {
            if let Some(code) = &line.promotion {
                let p = &self.promotions[code];
                let used = d.promo_used[code];
                let mine = d.promo_dealer[&(code.clone(), order.dealer.clone())];
                assert!(p.quota.is_none_or(|q| used <= q), "model: quota exceeded");
                assert!(
                    p.per_dealer_limit.is_none_or(|l| mine <= l),
                    "model: per-dealer limit exceeded"
                );
            }
        }
    }

    // ----- queries (the same answers the engine's query.rs must give) --------------

    fn rows(&self, d: &Derived, sku: &str, only: Option<&str>) -> Vec<StockRow> {
        self.skus[sku]
            .on_hand
            .iter()
            .filter(|(w, _)| only.is_none_or(|o| o == w.as_str()))
            .map(|(w, &on_hand)| {
                let reserved = Self::reserved_in(d, sku, w);
                StockRow {
                    warehouse: w.clone(),
                    on_hand,
                    reserved,
                    available: on_hand - reserved,
                }
            })
            .collect()
    }

    pub fn stock_page(&self, q: &StockQuery) -> Result<StockPage, Rejection> {
        if let Some(s) = &q.sku {
            if !self.skus.contains_key(s) {
                return Err(Rejection::UnknownSku { sku: s.clone() });
            }
        }
        if let Some(w) = &q.warehouse {
            if !self.warehouses.contains_key(w) {
                return Err(Rejection::UnknownWarehouse {
                    warehouse: w.clone(),
                });
            }
        }
        let d = self.derive();
        let limit = q.limit.clamp(1, 1000);
        let matching: Vec<&String> = self
            .skus
            .iter()
            .filter(|(code, _)| q.cursor.as_ref().is_none_or(|c| *code > c))
            .filter(|(code, _)| q.sku.as_ref().is_none_or(|s| s == *code))
            .filter(|(_, s)| {
                q.warehouse
                    .as_ref()
                    .is_none_or(|w| s.on_hand.contains_key(w))
            })
            .filter(|(code, _)| !q.below_threshold || self.below_threshold(&d, code))
            .map(|(code, _)| code)
            .collect();
        let skus: Vec<SkuStock> = matching
            .iter()
            .take(limit)
            .map(|code| {
                let (on_hand, reserved) = self.totals(&d, code);
                SkuStock {
                    sku: (*code).clone(),
                    on_hand,
                    reserved,
                    available: on_hand - reserved,
                    backordered: d.backordered.get(*code).copied().unwrap_or(0),
                    low_stock_threshold: self.skus[*code].spec.low_stock_threshold,
                    warehouses: self.rows(&d, code, q.warehouse.as_deref()),
                }
            })
            .collect();
        let next_cursor = (matching.len() > limit).then(|| matching[limit - 1].clone());
        Ok(StockPage { skus, next_cursor })
    }

    pub fn dealer(&self, code: &str) -> Result<DealerView, Rejection> {
        let a = self
            .dealers
            .get(code)
            .ok_or_else(|| Rejection::UnknownDealer {
                dealer: code.to_owned(),
            })?;
        let held = self.derive().held.get(code).copied().unwrap_or(0);
        Ok(DealerView {
            code: code.to_owned(),
            name: a.spec.name.clone(),
            tier: a.spec.tier.clone(),
            region: a.spec.region.clone(),
            credit_limit: a.spec.credit_limit,
            credit_held: held,
            credit_used: a.credit_used,
            available_credit: a.spec.credit_limit - held - a.credit_used,
            rebate_balance: a.rebate_balance,
            rebate_rate_bp: a.spec.rebate_rate_bp,
            approval_threshold: a.spec.approval_threshold,
        })
    }

    pub fn dealer_stock(&self, code: &str) -> Result<Vec<DealerSkuStock>, Rejection> {
        if !self.dealers.contains_key(code) {
            return Err(Rejection::UnknownDealer {
                dealer: code.to_owned(),
            });
        }
        let mut by_sku: BTreeMap<String, DealerSkuStock> = BTreeMap::new();
        for o in self
            .orders
            .iter()
            .filter(|o| o.dealer == code && o.status.is_open())
        {
            for (i, line) in o.lines.iter().enumerate() {
                let e = by_sku
                    .entry(line.sku.clone())
                    .or_insert_with(|| DealerSkuStock {
                        sku: line.sku.clone(),
                        ..DealerSkuStock::default()
                    });
                let allocated: u64 = o.allocations.iter().filter(|a| a.0 == i).map(|a| a.2).sum();
                if o.status == OrderStatus::Confirmed {
                    e.confirmed += allocated;
                } else {
                    e.reserved += allocated;
                }
                if o.status == OrderStatus::Backordered {
                    e.backordered += line.backordered;
                }
            }
        }
        Ok(by_sku.into_values().collect())
    }

    /// Order ids of a dealer, newest first, and the next cursor.
    pub fn dealer_orders(
        &self,
        dealer: &str,
        status: Option<OrderStatus>,
        before: Option<u64>,
        limit: usize,
    ) -> Result<(Vec<u64>, Option<u64>), Rejection> {
        if !self.dealers.contains_key(dealer) {
            return Err(Rejection::UnknownDealer {
                dealer: dealer.to_owned(),
            });
        }
        let limit = limit.clamp(1, 1000);
        let all: Vec<u64> = self
            .orders
            .iter()
            .rev()
            .filter(|o| o.dealer == dealer && !self.pruned.contains(&o.id))
            .filter(|o| before.is_none_or(|b| o.id < b))
            .filter(|o| status.is_none_or(|s| s == o.status))
            .map(|o| o.id)
            .collect();
        let next = (all.len() > limit).then(|| all[limit - 1]);
        Ok((all.into_iter().take(limit).collect(), next))
    }

    pub fn sku_view(
        &self,
        code: &str,
        dealer: Option<&str>,
        now_ms: u64,
    ) -> Result<SkuView, Rejection> {
        let s = self.skus.get(code).ok_or_else(|| Rejection::UnknownSku {
            sku: code.to_owned(),
        })?;
        let d = self.derive();
        let (unit_price, promotion) = match dealer {
            Some(dealer) => {
                if !self.dealers.contains_key(dealer) {
                    return Err(Rejection::UnknownDealer {
                        dealer: dealer.to_owned(),
                    });
                }
                self.price(&d, code, dealer, s.spec.min_qty.max(1), now_ms)
            }
            None => (s.spec.base_price, None),
        };
        let (on_hand, reserved) = self.totals(&d, code);
        Ok(SkuView {
            sku: code.to_owned(),
            name: s.spec.name.clone(),
            case_size: s.spec.case_size,
            split_case: s.spec.split_case,
            min_qty: s.spec.min_qty,
            base_price: s.spec.base_price,
            unit_price,
            promotion,
            attributes: s.spec.attributes.clone(),
            available: on_hand - reserved,
            warehouses: self.rows(&d, code, None),
        })
    }

    pub fn low_stock(&self) -> Vec<LowStockAlert> {
        let d = self.derive();
        self.skus
            .keys()
            .filter(|code| self.below_threshold(&d, code))
            .map(|code| {
                let (on_hand, reserved) = self.totals(&d, code);
                LowStockAlert {
                    sku: code.clone(),
                    available: on_hand - reserved,
                    threshold: self.skus[code].spec.low_stock_threshold,
                }
            })
            .collect()
    }

    pub fn holds_expiring(&self, now_ms: u64, within_ms: u64, limit: usize) -> Vec<u64> {
        let until = now_ms.saturating_add(within_ms);
        let mut holds: Vec<(u64, u64)> = self
            .orders
            .iter()
            .filter_map(|o| o.hold_expires_at_ms.map(|at| (at, o.id)))
            .filter(|&(at, _)| at < until)
            .collect();
        holds.sort_unstable();
        holds
            .into_iter()
            .take(limit.clamp(1, 1000))
            .map(|(_, id)| id)
            .collect()
    }

    /// Units sold at promotion price: per promotion, and per (promotion, dealer).
    pub fn promotion_usage(&self) -> (BTreeMap<String, u64>, BTreeMap<(String, String), u64>) {
        let d = self.derive();
        let mut used: BTreeMap<String, u64> =
            self.promotions.keys().map(|c| (c.clone(), 0)).collect();
        used.extend(d.promo_used);
        (
            used,
            d.promo_dealer.into_iter().filter(|(_, v)| *v > 0).collect(),
        )
    }
}
