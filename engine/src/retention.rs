//! Retention: a closed order (shipped, cancelled, expired, rejected) leaves the book
//! `order_retention_s` after it closed, with its idempotency key, so that a book under
//! steady load stays bounded. Closed orders wait in a set ordered by close time; each
//! command prunes the due ones first (at most `PRUNE_PER_APPLY_MAX`), like expiry.
//! With retention 0 (the default) nothing is pruned and the set stays empty.

use crate::append_set::AppendSet;
use crate::ids::OrderId;
use crate::ledger::{usage_key, Ledger};
use crate::limits::PRUNE_PER_APPLY_MAX;
use crate::order::OrderStatus;

impl Ledger {
    /// An order has just closed at `now_ms`.
    pub(crate) fn note_closed(&mut self, id: OrderId, now_ms: u64) {
        if self.state.settings.order_retention_s > 0 {
            self.index.closed.insert((now_ms, id));
        }
    }

    /// Recompute the closed-order set (after restore or a retention change). A closed
    /// order's `updated_at_ms` is its close time.
    pub(crate) fn rebuild_closed(&mut self) {
        self.index.closed = if self.state.settings.order_retention_s > 0 {
            AppendSet::from_keys(
                self.state
                    .orders
                    .iter()
                    .filter(|o| !o.status().is_open())
                    .map(|o| (o.updated_at_ms(), o.id()))
                    .collect(),
            )
        } else {
            AppendSet::default()
        };
    }

    /// Prune the closed orders due at `now_ms`; returns how many.
    pub(crate) fn prune_due(&mut self, now_ms: u64) -> u32 {
        let retention_ms = self.state.settings.order_retention_s.saturating_mul(1000);
        if retention_ms == 0 {
            return 0;
        }
        let mut pruned = 0;
        while pruned < PRUNE_PER_APPLY_MAX {
            let Some((closed_at_ms, id)) = self.index.closed.first() else {
                break;
            };
            if closed_at_ms.saturating_add(retention_ms) > now_ms {
                break;
            }
            self.index.closed.pop_first();
            self.prune(id);
            pruned += 1;
        }
        pruned
    }

    fn prune(&mut self, id: OrderId) {
        let slot = id.slot().expect("closed orders have valid ids");
        let state = &mut self.state;
        let order = state
            .orders
            .get(slot)
            .expect("closed orders in the set exist");
        assert!(!order.status().is_open(), "only closed orders are pruned");
        let dealer = order.dealer();
        self.index.client_orders.remove(dealer, order.key(), id);
        if order.status() == OrderStatus::Shipped {
            // Units sold at a promotion price stay sold: keep them accounted.
            for (promotion, qty) in order.promotion_lines() {
                let key = usage_key(promotion, dealer);
                *state.pruned_promotion_usage.entry(key).or_insert(0) += qty;
            }
        }
        state.orders.remove(slot);
        let orders = &self.state.orders;
        self.index
            .dealer_orders
            .pruned(dealer, id, |o| orders.listed(o));
    }
}
