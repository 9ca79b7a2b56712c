//! Hold expiry. Held orders sit in a deadline-ordered set, so expiring the due ones
//! costs in proportion to how many expire, not to how many are open. A hold is valid
//! on `[placed or filled, hold_expires_at)`: at its deadline it has expired.

use crate::event::{Event, EventKind};
use crate::ledger::Ledger;
use crate::order::OrderStatus;

impl Ledger {
    /// Expire every hold whose deadline is at or before `now_ms`; returns how many.
    pub(crate) fn expire_due(&mut self, now_ms: u64, events: &mut Vec<Event>) -> u32 {
        let mut expired = 0;
        while let Some((deadline, id)) = self.index.holds.first() {
            if deadline > now_ms {
                break;
            }
            self.index.holds.pop_first();
            let slot = id.slot().expect("held orders exist");
            let at = self
                .state
                .orders
                .pooled(slot)
                .expect("held orders are open");
            let order = &mut self.state.orders[at];
            assert_eq!(
                order.status,
                OrderStatus::Held,
                "only held orders have deadlines"
            );
            order.status = OrderStatus::Expired;
            order.hold_expires_at_ms = None;
            order.updated_at_ms = now_ms;
            let dealer = order.dealer;
            let orders = &self.state.orders;
            self.index
                .dealer_orders
                .closed(dealer, id, |o| orders.listed(o));
            self.note_closed(id, now_ms);
            self.emit(now_ms, EventKind::HoldExpired { order: id, dealer }, events);
            self.release(at, OrderStatus::Held, now_ms, events);
            self.state.orders.close(slot);
            expired += 1;
        }
        expired
    }
}
