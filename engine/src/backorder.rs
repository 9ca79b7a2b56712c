//! Backorder queues. Each SKU has one queue of (dealer tier rank, order id): FIFO, or
//! tiers in the tenant's priority order first. Backorders are never overtaken:
//! whenever a SKU's available stock rises, its queue is filled first, the head taking
//! partial fills until it is whole, so a SKU with a non-empty queue always has zero
//! available. A fill costs in proportion to the entries it touches.

use crate::event::{Event, EventKind};
use crate::ids::SkuId;
use crate::ledger::Ledger;
use crate::order::{Allocation, OrderStatus};

impl Ledger {
    /// Give available stock of `sku` to its queue, head first.
    pub(crate) fn fill_backorders(&mut self, sku: SkuId, now_ms: u64, events: &mut Vec<Event>) {
        // The SKU counts the units its queue waits for: with none, the queue is empty
        // and need not be looked at.
        if self.state.skus[sku.index()].backordered == 0 {
            debug_assert!(self.index.queues[sku.index()].is_empty());
            return;
        }
        let mut scratch = self.take_scratch();
        loop {
            let available = self.state.skus[sku.index()].available();
            if available == 0 {
                break;
            }
            let Some(&(rank, id)) = self.index.queues[sku.index()].first() else {
                break;
            };
            let slot = id.slot().expect("queued orders exist");
            let order = &self.state.orders[slot];
            assert_eq!(
                order.status,
                OrderStatus::Backordered,
                "only backordered orders queue"
            );
            let line = order
                .lines
                .iter()
                .position(|l| l.sku == sku)
                .expect("queued line exists");
            let take = order.lines[line].backordered.min(available);
            let region = self.state.dealers[order.dealer.index()].region;
            self.pick_and_reserve(sku, region, take, &mut scratch.pick);
            let mut remaining = self.state.orders[slot].lines[line].backordered;
            for &(warehouse, qty) in &scratch.pick.reserved {
                remaining -= qty;
                let order = &mut self.state.orders[slot];
                let line_index = line as u32;
                let existing = order
                    .allocations
                    .iter_mut()
                    .find(|a| a.line == line_index && a.warehouse == warehouse);
                match existing {
                    Some(allocation) => allocation.qty += qty,
                    None => order.allocations.push(Allocation {
                        line: line_index,
                        warehouse,
                        qty,
                    }),
                }
                let kind = EventKind::BackorderFilled {
                    order: id,
                    sku,
                    warehouse,
                    qty,
                    remaining,
                };
                self.emit(now_ms, kind, events);
            }
            self.state.orders[slot].lines[line].backordered = remaining;
            self.state.orders[slot].updated_at_ms = now_ms;
            self.state.skus[sku.index()].backordered -= take;
            if remaining == 0 {
                self.index.queues[sku.index()].remove(&(rank, id));
                if self.state.orders[slot]
                    .lines
                    .iter()
                    .all(|l| l.backordered == 0)
                {
                    self.complete_backorder(slot, now_ms, events);
                }
            }
        }
        self.scratch = Some(scratch);
    }

    /// Every line of a backordered order is whole: it is held (its hold clock starts
    /// now) or waits for approval.
    fn complete_backorder(&mut self, slot: usize, now_ms: u64, events: &mut Vec<Event>) {
        let deadline = self.hold_deadline(now_ms);
        let order = &mut self.state.orders[slot];
        let account = &self.state.dealers[order.dealer.index()];
        let to = if account.approval_threshold.is_some_and(|t| order.total > t) {
            OrderStatus::PendingApproval
        } else {
            OrderStatus::Held
        };
        order.status = to;
        if to == OrderStatus::Held {
            order.hold_expires_at_ms = Some(deadline);
            self.index.holds.insert((deadline, order.id));
        }
        let kind = EventKind::OrderStatusChanged {
            order: order.id,
            dealer: order.dealer,
            from: OrderStatus::Backordered,
            to,
        };
        self.emit(now_ms, kind, events);
    }
}
