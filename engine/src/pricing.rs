//! Pricing: the unit price a dealer gets for a line, now.
//!
//! An active (`starts_at ≤ now < ends_at`), tier-eligible promotion whose remaining
//! quota and the dealer's remaining per-dealer allowance both cover the whole line
//! prices it, the lowest such price winning, ties by promotion code; else the dealer's
//! tier price; else its region price; else the base price.

use crate::ids::{DealerId, PromotionId, SkuId};
use crate::ledger::{usage_key, Ledger};

impl Ledger {
    /// The unit price of `qty` units of `sku` for `dealer` at `now_ms`, and the
    /// promotion that gives it, if any.
    ///
    /// Inlined, with the list price returned in a register: the pair returned from a
    /// call went through memory in narrow stores read back by a wide load, which
    /// stalls until every earlier store has reached the cache.
    #[inline]
    pub(crate) fn price(
        &self,
        sku: SkuId,
        dealer: DealerId,
        qty: u64,
        now_ms: u64,
    ) -> (i64, Option<PromotionId>) {
        if !self.index.sku_promotions.is_empty() {
            if let Some((price, promotion)) = self.best_promotion(sku, dealer, qty, now_ms) {
                return (price, Some(promotion));
            }
        }
        (self.list_price(sku, dealer), None)
    }

    /// The dealer's price of `sku` without promotions: its tier price, else its region
    /// price, else the base price.
    fn list_price(&self, sku: SkuId, dealer: DealerId) -> i64 {
        let sku = &self.state.skus[sku.index()];
        let account = &self.state.dealers[dealer.index()];
        if let Some(p) = sku.tier_prices.iter().find(|p| p.tier == account.tier) {
            return p.price;
        }
        if let Some(p) = sku
            .region_prices
            .iter()
            .find(|p| p.region == account.region)
        {
            return p.price;
        }
        sku.base_price
    }

    fn best_promotion(
        &self,
        sku: SkuId,
        dealer: DealerId,
        qty: u64,
        now_ms: u64,
    ) -> Option<(i64, PromotionId)> {
        let tier = self.state.dealers[dealer.index()].tier;
        let mut best: Option<(i64, PromotionId)> = None;
        // The list is in code order, so keeping the first of equal prices breaks ties
        // by code.
        let promotions = self.index.sku_promotions.get(&sku)?;
        for &id in promotions {
            let promotion = &self.state.promotions[id.index()];
            let active = promotion.starts_at_ms <= now_ms && now_ms < promotion.ends_at_ms;
            let eligible = promotion.tiers.is_empty() || promotion.tiers.contains(&tier);
            if !active || !eligible || best.is_some_and(|(price, _)| price <= promotion.price) {
                continue;
            }
            let quota_left = promotion
                .quota
                .map_or(u64::MAX, |q| q.saturating_sub(promotion.used));
            let dealer_used = self
                .state
                .promotion_usage
                .get(&usage_key(id, dealer))
                .copied()
                .unwrap_or(0);
            let dealer_left = promotion
                .per_dealer_limit
                .map_or(u64::MAX, |l| l.saturating_sub(dealer_used));
            if qty <= quota_left && qty <= dealer_left {
                best = Some((promotion.price, id));
            }
        }
        best
    }
}
