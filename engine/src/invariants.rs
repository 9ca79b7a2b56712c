//! The ledger's invariants, checked in full. Tests run this after every step; restore
//! runs it on every snapshot. It costs time in proportion to the whole book.

use std::collections::BTreeMap;

use crate::ledger::{usage_key, Ledger};
use crate::order::OrderStatus;

impl Ledger {
    /// Every id in the state names an existing entity (checked before indexes are
    /// built from a decoded snapshot, so that building them cannot go out of bounds).
    pub(crate) fn check_references(&self) -> Result<(), String> {
        let s = &self.state;
        let ok = s
            .warehouses
            .iter()
            .all(|w| w.region.index() < s.regions.len())
            && s.dealers
                .iter()
                .all(|d| d.tier.index() < s.tiers.len() && d.region.index() < s.regions.len())
            && s.settings
                .backorder_priority
                .iter()
                .all(|t| t.index() < s.tiers.len())
            && s.promotions.iter().all(|p| {
                p.sku.index() < s.skus.len() && p.tiers.iter().all(|t| t.index() < s.tiers.len())
            })
            && s.skus.iter().all(|k| {
                k.cells
                    .iter()
                    .all(|c| c.warehouse.index() < s.warehouses.len())
                    && k.tier_prices.iter().all(|p| p.tier.index() < s.tiers.len())
                    && k.region_prices
                        .iter()
                        .all(|p| p.region.index() < s.regions.len())
            })
            && s.orders.is_well_formed()
            && s.orders.iter().all(|o| {
                let o = o.to_order();
                o.dealer.index() < s.dealers.len()
                    && crate::ids::is_valid_client_order_id(&o.client_order_id)
                    && o.lines.iter().all(|l| {
                        l.sku.index() < s.skus.len()
                            && l.promotion.is_none_or(|p| p.index() < s.promotions.len())
                    })
                    && o.allocations.iter().all(|a| {
                        (a.line as usize) < o.lines.len()
                            && a.warehouse.index() < s.warehouses.len()
                    })
                    && (o.status == OrderStatus::Held) == o.hold_expires_at_ms.is_some()
            });
        if ok {
            Ok(())
        } else {
            Err("an id in the book names nothing".to_owned())
        }
    }

    /// Check every invariant of the book; the first one broken is described.
    ///
    /// - per cell `reserved ≤ on_hand`, and each SKU's sums equal its cells';
    /// - reserved per cell equals the sum of open orders' allocations there;
    /// - a SKU's backordered units equal its backordered orders' unfilled units, and
    ///   a SKU with a non-empty queue has nothing available;
    /// - a dealer's credit held and used are what its open orders imply (used may have
    ///   been lowered by payments), and neither is negative;
    /// - promotion usage equals what open and shipped orders' lines took, within quota
    ///   and per-dealer limits.
    pub fn check_invariants(&self) -> Result<(), String> {
        let s = &self.state;
        let mut reserved: BTreeMap<(usize, u32), u64> = BTreeMap::new();
        let mut backordered = vec![0u64; s.skus.len()];
        let mut held = vec![0i64; s.dealers.len()];
        let mut usage: BTreeMap<u64, u64> = BTreeMap::new();
        let mut promo_used = vec![0u64; s.promotions.len()];
        for order in s.orders.iter() {
            let order = order.to_order();
            if order.status.is_open() {
                for a in &order.allocations {
                    let sku = order.lines[a.line as usize].sku.index();
                    *reserved.entry((sku, a.warehouse.0)).or_default() += a.qty;
                }
                if order.status != OrderStatus::Confirmed {
                    held[order.dealer.index()] += order.credit_amount();
                }
            }
            for (i, line) in order.lines.iter().enumerate() {
                let allocated = order.allocated(i);
                if allocated + line.backordered != line.qty {
                    return Err(format!(
                        "order {}: line {i} allocations do not add up",
                        order.id
                    ));
                }
                if order.status == OrderStatus::Backordered {
                    backordered[line.sku.index()] += line.backordered;
                } else if order.status.is_open() && line.backordered != 0 {
                    return Err(format!(
                        "order {}: {:?} with unfilled units",
                        order.id, order.status
                    ));
                }
                let counts = order.status.is_open() || order.status == OrderStatus::Shipped;
                if let (Some(p), true) = (line.promotion, counts) {
                    *usage.entry(usage_key(p, order.dealer)).or_default() += line.qty;
                    promo_used[p.index()] += line.qty;
                }
            }
        }
        for (i, sku) in s.skus.iter().enumerate() {
            let (mut on_hand, mut sum_reserved) = (0u64, 0u64);
            for cell in &sku.cells {
                if cell.reserved > cell.on_hand {
                    return Err(format!("SKU {}: reserved above on_hand", sku.code));
                }
                let expected = reserved.get(&(i, cell.warehouse.0)).copied().unwrap_or(0);
                if cell.reserved != expected {
                    return Err(format!(
                        "SKU {} warehouse {}: reserved {} but open orders hold {expected}",
                        sku.code, cell.warehouse.0, cell.reserved
                    ));
                }
                on_hand += cell.on_hand;
                sum_reserved += cell.reserved;
            }
            if on_hand != sku.on_hand || sum_reserved != sku.reserved {
                return Err(format!("SKU {}: totals disagree with cells", sku.code));
            }
            if backordered[i] != sku.backordered {
                return Err(format!(
                    "SKU {}: backordered total disagrees with orders",
                    sku.code
                ));
            }
            let queued = self
                .index
                .queues
                .get(i)
                .map_or(0, std::collections::BTreeSet::len);
            if queued > 0 && sku.available() > 0 {
                return Err(format!(
                    "SKU {}: stock available while backorders wait",
                    sku.code
                ));
            }
        }
        for (d, dealer) in s.dealers.iter().enumerate() {
            if dealer.credit_held != held[d] || dealer.credit_used < 0 || dealer.rebate_balance < 0
            {
                return Err(format!(
                    "dealer {}: credit ledger disagrees with orders",
                    dealer.code
                ));
            }
        }
        self.check_promotions(usage, promo_used)
    }

    /// Promotion usage, per dealer and in all, equals what the orders took (pruned
    /// shipped orders included).
    fn check_promotions(
        &self,
        mut usage: BTreeMap<u64, u64>,
        mut promo_used: Vec<u64>,
    ) -> Result<(), String> {
        let s = &self.state;
        for (&key, &units) in &s.pruned_promotion_usage {
            *usage.entry(key).or_default() += units;
            if let Some(used) = promo_used.get_mut((key >> 32) as usize) {
                *used += units;
            }
        }
        if usage != s.promotion_usage {
            return Err("promotion usage per dealer disagrees with orders".to_owned());
        }
        for (p, promotion) in s.promotions.iter().enumerate() {
            if promotion.used != promo_used[p] {
                return Err(format!(
                    "promotion {}: used disagrees with orders",
                    promotion.code
                ));
            }
        }
        Ok(())
    }
}
