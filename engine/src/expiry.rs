//! Hold expiry. Held orders sit in a deadline-ordered set, so expiring the due ones
//! costs in proportion to how many expire, not to how many are open. A hold is valid
//! on `[placed or filled, hold_expires_at)`: at its deadline it has expired.

use std::collections::{BTreeSet, VecDeque};

use crate::event::{Event, EventKind};
use crate::ids::OrderId;
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
            let slot = self.order_slot(id).expect("held orders exist");
            let order = &mut self.state.orders[slot];
            assert_eq!(
                order.status,
                OrderStatus::Held,
                "only held orders have deadlines"
            );
            order.status = OrderStatus::Expired;
            order.hold_expires_at_ms = None;
            order.updated_at_ms = now_ms;
            let dealer = order.dealer;
            self.index.dealer_open[dealer.index()].remove(&id);
            self.note_closed(id, now_ms);
            self.emit(now_ms, EventKind::HoldExpired { order: id, dealer }, events);
            self.release(slot, OrderStatus::Held, now_ms, events);
            expired += 1;
        }
        expired
    }
}

/// Held orders by deadline, soonest first.
///
/// Deadlines almost always arrive in order (each is `now + hold TTL`, and time moves
/// forward), so they append to a sorted deque: O(1) to add, to expire and to find the
/// next, where a B-tree pays a search and node splits for each. A deadline that would
/// break the order (the TTL was shortened, or the clock stepped back) goes to a small
/// ordered set instead. An order confirmed or cancelled before its deadline is found
/// by binary search and marked removed; marks at the front are dropped at once, and the
/// deque is compacted when marks outnumber live entries, so it stays within twice the
/// open holds.
#[derive(Clone, Debug, Default)]
pub(crate) struct Deadlines {
    /// (deadline, order id), sorted; a removed entry has `REMOVED` set in its id.
    queue: VecDeque<(u64, u64)>,
    /// Entries of `queue` marked removed.
    removed: usize,
    /// Entries that arrived out of order.
    late: BTreeSet<(u64, OrderId)>,
}

/// The mark of a removed entry (order ids stay far below 2^63).
const REMOVED: u64 = 1 << 63;

impl Deadlines {
    /// Builds the queue from entries in any order.
    pub fn from_entries(mut entries: Vec<(u64, OrderId)>) -> Self {
        entries.sort_unstable();
        Self {
            queue: entries.into_iter().map(|(at, id)| (at, id.0)).collect(),
            removed: 0,
            late: BTreeSet::new(),
        }
    }

    pub fn insert(&mut self, at: u64, id: OrderId) {
        debug_assert!(id.0 & REMOVED == 0, "order ids stay below 2^63");
        match self.queue.back() {
            Some(&(last_at, last)) if (at, id.0) <= (last_at, last & !REMOVED) => {
                self.late.insert((at, id));
            }
            _ => self.queue.push_back((at, id.0)),
        }
    }

    /// Removes the entry; returns whether it was there.
    pub fn remove(&mut self, at: u64, id: OrderId) -> bool {
        let found = self
            .queue
            .binary_search_by(|&(a, raw)| (a, raw & !REMOVED).cmp(&(at, id.0)));
        match found {
            Ok(i) if self.queue[i].1 & REMOVED == 0 => {
                self.queue[i].1 |= REMOVED;
                self.removed += 1;
                self.drop_removed_front();
                if self.removed > 64 && self.removed * 2 > self.queue.len() {
                    self.queue.retain(|&(_, raw)| raw & REMOVED == 0);
                    self.removed = 0;
                }
                true
            }
            _ => self.late.remove(&(at, id)),
        }
    }

    fn drop_removed_front(&mut self) {
        while self
            .queue
            .front()
            .is_some_and(|&(_, raw)| raw & REMOVED != 0)
        {
            self.queue.pop_front();
            self.removed -= 1;
        }
    }

    /// The soonest deadline and its order.
    pub fn first(&self) -> Option<(u64, OrderId)> {
        // The front of `queue` is never a removed entry.
        let queued = self.queue.front().map(|&(at, raw)| (at, OrderId(raw)));
        match (queued, self.late.first().copied()) {
            (Some(q), Some(l)) => Some(q.min(l)),
            (q, l) => q.or(l),
        }
    }

    /// Removes and returns the soonest entry.
    pub fn pop_first(&mut self) -> Option<(u64, OrderId)> {
        let first = self.first()?;
        if self.late.first() == Some(&first) {
            self.late.pop_first();
        } else {
            self.queue.pop_front();
            self.drop_removed_front();
        }
        Some(first)
    }

    /// Every entry, soonest first.
    pub fn iter(&self) -> impl Iterator<Item = (u64, OrderId)> + '_ {
        let mut queued = self
            .queue
            .iter()
            .filter(|&&(_, raw)| raw & REMOVED == 0)
            .map(|&(at, raw)| (at, OrderId(raw)))
            .peekable();
        let mut late = self.late.iter().copied().peekable();
        std::iter::from_fn(move || match (queued.peek(), late.peek()) {
            (Some(q), Some(l)) if l < q => late.next(),
            (Some(_), _) => queued.next(),
            (None, _) => late.next(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(deadlines: &Deadlines) -> Vec<(u64, u64)> {
        deadlines.iter().map(|(at, id)| (at, id.0)).collect()
    }

    #[test]
    fn deadlines_keep_order_whatever_the_arrival_order() {
        let mut deadlines = Deadlines::default();
        for (at, id) in [(10, 1), (20, 2), (20, 3), (5, 4), (30, 5), (20, 6), (25, 7)] {
            deadlines.insert(at, OrderId(id));
        }
        let expected = vec![(5, 4), (10, 1), (20, 2), (20, 3), (20, 6), (25, 7), (30, 5)];
        assert_eq!(ids(&deadlines), expected);
        assert!(deadlines.remove(20, OrderId(3)));
        assert!(
            deadlines.remove(25, OrderId(7)),
            "an entry that arrived late"
        );
        assert!(!deadlines.remove(25, OrderId(7)), "already removed");
        assert!(!deadlines.remove(20, OrderId(9)), "never there");
        let mut popped = Vec::new();
        while let Some((at, id)) = deadlines.pop_first() {
            popped.push((at, id.0));
        }
        assert_eq!(popped, vec![(5, 4), (10, 1), (20, 2), (20, 6), (30, 5)]);
        assert_eq!(deadlines.first(), None);
    }

    #[test]
    fn removed_entries_are_compacted_and_never_returned() {
        let mut deadlines = Deadlines::default();
        for id in 1..=1_000 {
            deadlines.insert(id * 10, OrderId(id));
        }
        // Remove all but every tenth, from the back, so no removal is at the front.
        for id in (1..=1_000).rev().filter(|id| id % 10 != 1) {
            assert!(deadlines.remove(id * 10, OrderId(id)));
        }
        assert!(
            deadlines.queue.len() < 300,
            "marks are compacted: {} entries left",
            deadlines.queue.len()
        );
        let left: Vec<u64> = deadlines.iter().map(|(_, id)| id.0).collect();
        assert_eq!(
            left,
            (1..=1_000).filter(|id| id % 10 == 1).collect::<Vec<_>>()
        );
        assert_eq!(deadlines.first(), Some((10, OrderId(1))));
        assert!(deadlines.remove(10, OrderId(1)));
        assert_eq!(
            deadlines.first(),
            Some((110, OrderId(11))),
            "a removed front entry is dropped at once"
        );
    }

    #[test]
    fn rebuilt_deadlines_match_inserted_ones() {
        let entries = vec![(7, OrderId(3)), (3, OrderId(9)), (7, OrderId(1))];
        let mut inserted = Deadlines::default();
        for &(at, id) in &entries {
            inserted.insert(at, id);
        }
        let rebuilt = Deadlines::from_entries(entries);
        assert_eq!(ids(&inserted), ids(&rebuilt));
        assert_eq!(ids(&rebuilt), vec![(3, 9), (7, 1), (7, 3)]);
    }
}
