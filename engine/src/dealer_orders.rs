//! Each dealer's orders, as the dealer's queries read them: every order, newest first
//! (the dealer's order listing), and the open ones (the dealer's stock view).
//!
//! With a thousand dealers, the end of one dealer's list is seldom in cache when that
//! dealer's next order comes, so adding each order to its dealer's lists as it was
//! placed was a cache miss or two per placement, and taking it off the open list when
//! it closed another per close, each waited for while the command was applied. So:
//! - a placement only notes its order in a short log of recent placements, and the
//!   log is entered into the lists when it is full, `RECENT_MAX` orders at a time,
//!   whose misses, independent of each other, overlap; the queries read the log too;
//! - a closing order stays on its dealer's open list, and the queries skip it; the
//!   list is compacted once its closed entries outnumber the others (more than
//!   `STALE_MIN`), counted in a small array of its own that stays in cache. A pruned
//!   order stays on the list of all orders the same way.
//!
//! So each list holds at most twice its live entries, plus `STALE_MIN`.

use crate::ids::{DealerId, OrderId};

/// Placements noted before the log is entered into the dealers' lists: enough for
/// their cache misses to overlap, few enough for a query to read the log whole.
const RECENT_MAX: usize = 64;
/// Closed (or pruned) entries a dealer's list may hold before it is compacted,
/// however few its live ones.
const STALE_MIN: u32 = 32;

/// What the book holds of an order a list names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Listed {
    Open,
    Closed,
    Pruned,
}

/// Every dealer's lists (see the module documentation).
#[derive(Clone, Debug)]
pub(crate) struct DealerOrders {
    lists: Vec<Lists>,
    /// Per dealer: entries of orders no longer open in its open list.
    closed_entries: Vec<u32>,
    /// Per dealer: entries of pruned orders in its list of all orders.
    pruned_entries: Vec<u32>,
    /// Orders placed since the log was last entered, ids ascending, with their dealers.
    recent: Vec<(DealerId, OrderId)>,
    /// `RECENT_MAX` but in tests.
    recent_max: usize,
}

#[derive(Clone, Debug, Default)]
struct Lists {
    /// Every order, ids ascending; pruned ones until compacted.
    all: Vec<OrderId>,
    /// Orders open when entered, ids ascending; closed ones until compacted.
    open: Vec<OrderId>,
}

impl Default for DealerOrders {
    fn default() -> Self {
        Self::with_recent_max(RECENT_MAX)
    }
}

impl DealerOrders {
    fn with_recent_max(recent_max: usize) -> Self {
        Self {
            lists: Vec::new(),
            closed_entries: Vec::new(),
            pruned_entries: Vec::new(),
            recent: Vec::with_capacity(recent_max),
            recent_max,
        }
    }

    /// Lists for a new dealer (dealer ids count up from 0).
    pub fn add_dealer(&mut self) {
        self.lists.push(Lists::default());
        self.closed_entries.push(0);
        self.pruned_entries.push(0);
    }

    /// Enters an order of the book being rebuilt (ids ascending, every order once).
    pub fn rebuilt(&mut self, dealer: DealerId, id: OrderId, open: bool) {
        if let Some(lists) = self.lists.get_mut(dealer.index()) {
            lists.all.push(id);
            if open {
                lists.open.push(id);
            }
        }
    }

    /// A new order (ids ascending), open in `listed`.
    #[inline]
    pub fn placed(&mut self, dealer: DealerId, id: OrderId, listed: impl Fn(OrderId) -> Listed) {
        self.recent.push((dealer, id));
        if self.recent.len() >= self.recent_max {
            self.enter_recent(listed);
        }
    }

    /// Enters the log into the lists, as the orders are now in `listed`.
    #[inline(never)]
    fn enter_recent(&mut self, listed: impl Fn(OrderId) -> Listed) {
        let Self { lists, recent, .. } = self;
        for (dealer, id) in recent.drain(..) {
            let Some(lists) = lists.get_mut(dealer.index()) else {
                continue;
            };
            match listed(id) {
                Listed::Open => {
                    lists.all.push(id);
                    lists.open.push(id);
                }
                Listed::Closed => lists.all.push(id),
                Listed::Pruned => {}
            }
        }
    }

    /// Whether order `id` is still in the log (and so in no list yet).
    fn is_recent(&self, id: OrderId) -> bool {
        self.recent.first().is_some_and(|&(_, first)| id >= first)
    }

    /// Order `id` of `dealer` has closed (whether or not `listed` says so yet).
    #[inline]
    pub fn closed(&mut self, dealer: DealerId, id: OrderId, listed: impl Fn(OrderId) -> Listed) {
        self.stale(dealer, id, false, |o| o != id && listed(o) == Listed::Open);
    }

    /// Order `id` of `dealer` was pruned (whether or not `listed` says so yet).
    #[inline]
    pub fn pruned(&mut self, dealer: DealerId, id: OrderId, listed: impl Fn(OrderId) -> Listed) {
        self.stale(dealer, id, true, |o| o != id && listed(o) != Listed::Pruned);
    }

    /// Counts order `id` as a stale entry of its dealer's open list (or, if `pruned`,
    /// of its list of all orders), and once the stale entries outnumber the others
    /// (and `STALE_MIN`), keeps only the entries `keep` holds. An order still in the
    /// log is in no list: it is entered as the book has it then.
    #[inline]
    fn stale(
        &mut self,
        dealer: DealerId,
        id: OrderId,
        pruned: bool,
        keep: impl Fn(OrderId) -> bool,
    ) {
        if self.is_recent(id) {
            return;
        }
        let d = dealer.index();
        let counts = if pruned {
            &mut self.pruned_entries
        } else {
            &mut self.closed_entries
        };
        let (Some(stale), Some(lists)) = (counts.get_mut(d), self.lists.get_mut(d)) else {
            return;
        };
        let list = if pruned {
            &mut lists.all
        } else {
            &mut lists.open
        };
        *stale += 1;
        if *stale > STALE_MIN && *stale as usize * 2 > list.len() {
            list.retain(|&o| keep(o));
            *stale = 0;
        }
    }

    /// The dealer's orders below `before` (all, without it), newest first. Pruned
    /// orders may be among them: the caller skips them.
    pub fn newest_first(
        &self,
        dealer: DealerId,
        before: Option<OrderId>,
    ) -> impl Iterator<Item = OrderId> + '_ {
        let below = move |id: &OrderId| before.is_none_or(|b| *id < b);
        let recent = self
            .recent
            .iter()
            .rev()
            .filter(move |&&(d, _)| d == dealer)
            .map(|&(_, id)| id)
            .filter(below);
        let all = self
            .lists
            .get(dealer.index())
            .map_or(&[][..], |l| &l.all[..]);
        let end = before.map_or(all.len(), |b| all.partition_point(|&i| i < b));
        recent.chain(all[..end].iter().rev().copied())
    }

    /// The dealer's orders that may be open, each once, in no particular order. Closed
    /// and pruned orders may be among them: the caller skips them.
    pub fn maybe_open(&self, dealer: DealerId) -> impl Iterator<Item = OrderId> + '_ {
        let open = self
            .lists
            .get(dealer.index())
            .map_or(&[][..], |l| &l.open[..]);
        let recent = self
            .recent
            .iter()
            .filter(move |&&(d, _)| d == dealer)
            .map(|&(_, id)| id);
        open.iter().copied().chain(recent)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    /// The lists against a plain map of every order's state, through placements,
    /// closes, prunes and rebuilds, with a log of a few orders so that it is entered
    /// often.
    #[test]
    fn lists_agree_with_the_orders() {
        use proptest::prelude::*;
        // (operation, dealer or order pick): 0 place, 1 close, 2 prune, 3 rebuild.
        let ops = proptest::collection::vec((0_u8..4, 0_u32..1_000, 1_usize..5), 1..400);
        proptest!(|(ops in ops)| {
            const DEALERS: u32 = 3;
            let mut lists = DealerOrders::with_recent_max(4);
            (0..DEALERS).for_each(|_| lists.add_dealer());
            let mut book: BTreeMap<OrderId, (DealerId, Listed)> = BTreeMap::new();
            for (op, pick, recent_max) in ops {
                // An order other than a pruned one, picked among those in `book`.
                let pick_order = |book: &BTreeMap<OrderId, (DealerId, Listed)>, want: Listed| {
                    let found: Vec<OrderId> =
                        book.iter().filter(|(_, &(_, l))| l == want).map(|(&id, _)| id).collect();
                    (!found.is_empty()).then(|| found[pick as usize % found.len()])
                };
                match op {
                    0 => {
                        let id = OrderId(book.len() as u64 + 1);
                        let dealer = DealerId(pick % DEALERS);
                        book.insert(id, (dealer, Listed::Open));
                        let listed = |o: OrderId| book[&o].1;
                        lists.placed(dealer, id, listed);
                    }
                    1 => {
                        if let Some(id) = pick_order(&book, Listed::Open) {
                            let dealer = book[&id].0;
                            // Told before the book closes it, as the ledger does.
                            let listed = |o: OrderId| book[&o].1;
                            lists.closed(dealer, id, listed);
                            book.insert(id, (dealer, Listed::Closed));
                        }
                    }
                    2 => {
                        if let Some(id) = pick_order(&book, Listed::Closed) {
                            let dealer = book[&id].0;
                            book.insert(id, (dealer, Listed::Pruned));
                            let listed = |o: OrderId| book[&o].1;
                            lists.pruned(dealer, id, listed);
                        }
                    }
                    _ => {
                        lists = DealerOrders::with_recent_max(recent_max);
                        (0..DEALERS).for_each(|_| lists.add_dealer());
                        for (&id, &(dealer, listed)) in &book {
                            if listed != Listed::Pruned {
                                lists.rebuilt(dealer, id, listed == Listed::Open);
                            }
                        }
                    }
                }
                for d in 0..DEALERS {
                    let dealer = DealerId(d);
                    let of_dealer = |want: &dyn Fn(Listed) -> bool| -> Vec<OrderId> {
                        book.iter()
                            .filter(|(_, &(o, l))| o == dealer && want(l))
                            .map(|(&id, _)| id)
                            .collect()
                    };
                    let mut listed: Vec<OrderId> = lists
                        .newest_first(dealer, None)
                        .filter(|id| book[id].1 != Listed::Pruned)
                        .collect();
                    let mut kept = of_dealer(&|l| l != Listed::Pruned);
                    kept.reverse();
                    prop_assert_eq!(&listed, &kept);
                    // A cursor in the middle, and one past every id.
                    for before in [OrderId(u64::from(pick) % (book.len() as u64 + 2)), OrderId(u64::MAX)] {
                        listed = lists
                            .newest_first(dealer, Some(before))
                            .filter(|id| book[id].1 != Listed::Pruned)
                            .collect();
                        let below: Vec<OrderId> = kept.iter().copied().filter(|&id| id < before).collect();
                        prop_assert_eq!(&listed, &below);
                    }
                    let mut open: Vec<OrderId> = lists
                        .maybe_open(dealer)
                        .filter(|id| book[id].1 == Listed::Open)
                        .collect();
                    open.sort_unstable();
                    prop_assert_eq!(open, of_dealer(&|l| l == Listed::Open));
                    // Within bounds: each list at most twice its live entries, plus
                    // the stale entries tolerated.
                    let lists_of = &lists.lists[d as usize];
                    let live_open = of_dealer(&|l| l == Listed::Open).len();
                    let live_all = kept.len();
                    prop_assert!(lists_of.open.len() <= 2 * live_open + STALE_MIN as usize + 1);
                    prop_assert!(lists_of.all.len() <= 2 * live_all + STALE_MIN as usize + 1);
                    // Each id once, ascending.
                    prop_assert!(lists_of.all.windows(2).all(|w| w[0] < w[1]));
                    prop_assert!(lists_of.open.windows(2).all(|w| w[0] < w[1]));
                }
            }
        });
    }
}
