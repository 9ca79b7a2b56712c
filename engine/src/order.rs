//! Orders: the record of what was promised, and the lifecycle that moves it.
//!
//! ```text
//! held ──confirm──▶ confirmed ──ship──▶ shipped
//!  │  └─expire (time)─▶ expired
//! pending_approval ──approve──▶ confirmed      ──reject──▶ rejected
//! backordered ──(restock fills every line)──▶ held (or pending_approval)
//! held | pending_approval | backordered | confirmed ──cancel──▶ cancelled
//! ```

use crate::command::{plain_data, PlaceOrder, Unit};
use crate::error::Rejection;
use crate::event::{Event, EventKind};
use crate::ids::{DealerId, OrderId, PromotionId, SkuId, WarehouseId};
use crate::ledger::{Effect, Ledger};

/// Where an order is in its lifecycle. Every order is in exactly one.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    serde::Serialize,
    serde::Deserialize,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    Held,
    PendingApproval,
    Backordered,
    Confirmed,
    Shipped,
    Cancelled,
    Expired,
    Rejected,
}

impl OrderStatus {
    /// Every status, in lifecycle order.
    pub const ALL: [Self; 8] = [
        Self::Held,
        Self::PendingApproval,
        Self::Backordered,
        Self::Confirmed,
        Self::Shipped,
        Self::Cancelled,
        Self::Expired,
        Self::Rejected,
    ];

    /// Whether the order still holds stock, credit or a queue place.
    pub fn is_open(self) -> bool {
        matches!(
            self,
            Self::Held | Self::PendingApproval | Self::Backordered | Self::Confirmed
        )
    }

    /// The lowercase name, as on the wire.
    pub fn name(self) -> &'static str {
        match self {
            Self::Held => "held",
            Self::PendingApproval => "pending_approval",
            Self::Backordered => "backordered",
            Self::Confirmed => "confirmed",
            Self::Shipped => "shipped",
            Self::Cancelled => "cancelled",
            Self::Expired => "expired",
            Self::Rejected => "rejected",
        }
    }

    /// The status with this wire name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }
}

/// What an admin or portal does to an order.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    serde::Serialize,
    serde::Deserialize,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum OrderAction {
    Confirm,
    Approve,
    Reject,
    Ship,
    Cancel,
}

impl OrderAction {
    /// The status this action leads to from `from`, if it may be taken there.
    pub fn target(self, from: OrderStatus) -> Option<OrderStatus> {
        use OrderStatus as S;
        match (self, from) {
            (Self::Confirm, S::Held) | (Self::Approve, S::PendingApproval) => Some(S::Confirmed),
            (Self::Reject, S::PendingApproval) => Some(S::Rejected),
            (Self::Ship, S::Confirmed) => Some(S::Shipped),
            (Self::Cancel, S::Held | S::PendingApproval | S::Backordered | S::Confirmed) => {
                Some(S::Cancelled)
            }
            _ => None,
        }
    }
}

plain_data! {
    /// An order, as the ledger keeps it (closed orders stay as history).
    pub struct Order {
        pub id: OrderId,
        /// Kept inline (no allocation of its own) up to 24 bytes.
        pub client_order_id: compact_str::CompactString,
        pub dealer: DealerId,
        pub status: OrderStatus,
        pub lines: OrderLines,
        /// Every reservation made for the order, by line index and warehouse (one entry
        /// per pair). Kept as history once the order is closed.
        pub allocations: Allocations,
        /// Sum of `qty * unit_price` over the lines, before rebate.
        pub total: i64,
        pub rebate_used: i64,
        /// Whether the order was placed with `backorder: true`.
        pub backorder: bool,
        pub created_at_ms: u64,
        pub updated_at_ms: u64,
        pub hold_expires_at_ms: Option<u64>,
    }

    /// One line of an order.
    pub struct OrderLine {
        pub sku: SkuId,
        /// The quantity and unit as requested (kept to recognise idempotent replays).
        pub requested_qty: u64,
        pub unit: Unit,
        /// The quantity in units.
        pub qty: u64,
        pub unit_price: i64,
        /// Units still waiting in the backorder queue (history once the order closes).
        pub backordered: u64,
        /// The promotion that priced this line, if any.
        pub promotion: Option<PromotionId>,
    }

    /// Units of one line reserved in one warehouse.
    pub struct Allocation {
        pub line: u32,
        pub warehouse: WarehouseId,
        pub qty: u64,
    }
}

/// An order's lines: up to `INLINE_LINES` inline in the order, more on the heap.
pub type OrderLines = smallvec::SmallVec<[OrderLine; INLINE_LINES]>;
/// An order's allocations: as many inline as lines.
pub type Allocations = smallvec::SmallVec<[Allocation; INLINE_LINES]>;
/// Lines (and allocations) kept inline in an [`Order`]: most orders are small.
pub const INLINE_LINES: usize = 3;

/// Orders in id order (`orders[id - 1]`), stored in fixed-size chunks so that the
/// book never moves millions of orders at once to grow: appending is O(1) without
/// the latency spike of a large vector's reallocation. A pruned order (see
/// `Settings::order_retention_s`) leaves an empty slot, and a chunk whose orders were
/// all pruned is freed, so a book with retention stays bounded; the most recently
/// freed chunk is kept as a spare and becomes the next new chunk, so a book in steady
/// state with retention reuses its memory instead of faulting in a fresh chunk
/// (about 1.2 MB) every `ORDERS_PER_CHUNK` orders.
#[derive(
    Clone,
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
pub struct Orders {
    chunks: Vec<Vec<Option<Order>>>,
    /// Orders not pruned, per chunk.
    live: Vec<u32>,
    /// Slots given out: the last order id.
    len: usize,
    /// An emptied chunk's allocation, kept for the next chunk (not book state).
    #[serde(skip)]
    #[rkyv(with = rkyv::with::Skip)]
    spare: SpareChunk,
}

/// The allocation of a freed chunk of [`Orders`], empty but with its capacity. It is
/// not part of the book: it compares equal to any other, is not serialized, and a
/// clone does not copy it.
#[derive(Default)]
struct SpareChunk(Vec<Option<Order>>);

impl Clone for SpareChunk {
    fn clone(&self) -> Self {
        Self::default()
    }
}

impl PartialEq for SpareChunk {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for SpareChunk {}

impl std::fmt::Debug for SpareChunk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SpareChunk(capacity {})", self.0.capacity())
    }
}

/// Orders per chunk of [`Orders`]: about 1.2 MB of orders. Small enough that, in a
/// book with retention, the chunk emptied last (the spare) was written recently and is
/// still in the CPU's caches when new orders are written into it; chunks of 65,536
/// (about 20 MB) came back cold, and writing each new order waited on memory.
/// Snapshots record the chunks as they are; one written with another chunk size is
/// re-chunked when restored (see [`Orders::rechunked`]).
const ORDERS_PER_CHUNK: usize = 1 << 12;

impl Orders {
    /// How many orders were ever placed (the last id), pruned ones included.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The order in `slot`, unless there is none or it was pruned.
    #[inline]
    pub fn get(&self, slot: usize) -> Option<&Order> {
        self.chunks
            .get(slot / ORDERS_PER_CHUNK)?
            .get(slot % ORDERS_PER_CHUNK)?
            .as_ref()
    }

    #[inline]
    pub fn push(&mut self, order: Order) {
        if self.len % ORDERS_PER_CHUNK == 0 || self.last_chunk_full() {
            self.make_room();
        }
        let chunk = self
            .chunks
            .last_mut()
            .expect("a chunk with room was ensured");
        chunk.push(Some(order));
        *self.live.last_mut().expect("a count per chunk") += 1;
        self.len += 1;
    }

    /// Whether the last chunk has no spare capacity (a decoded chunk has only the room
    /// it needed).
    #[inline]
    fn last_chunk_full(&self) -> bool {
        self.chunks.last().is_some_and(|c| c.len() == c.capacity())
    }

    /// Makes room for the next order: a new chunk when the last one is complete, or
    /// the rest of a decoded chunk's capacity.
    #[cold]
    #[inline(never)]
    fn make_room(&mut self) {
        if self.len % ORDERS_PER_CHUNK == 0 {
            // The first chunk grows as a vector does, so a small book stays small; a
            // book that filled a chunk gets each next one whole, up front.
            let capacity = if self.chunks.is_empty() {
                0
            } else {
                ORDERS_PER_CHUNK
            };
            if let (Some(previous), Some(0)) = (self.chunks.last_mut(), self.live.last()) {
                // Its orders were all pruned while it was the last chunk.
                let emptied = std::mem::take(previous);
                self.keep_spare(emptied);
            }
            let chunk = if capacity > 0 && self.spare.0.capacity() >= capacity {
                std::mem::take(&mut self.spare.0)
            } else {
                Vec::with_capacity(capacity)
            };
            self.chunks.push(chunk);
            self.live.push(0);
        }
        let multi_chunk = self.chunks.len() > 1;
        let chunk = self.chunks.last_mut().expect("a chunk was just ensured");
        if chunk.len() == chunk.capacity() {
            if multi_chunk {
                // A decoded chunk has only the room it needed; fill it without
                // regrowing.
                chunk.reserve_exact(ORDERS_PER_CHUNK - chunk.len());
            } else {
                chunk.reserve(1);
            }
        }
    }

    /// Drops the order in `slot`, leaving it empty (in place: an order is not copied
    /// out to be dropped); frees the chunk once all its orders are gone (except the
    /// last chunk, which still takes new orders). Returns whether there was one.
    pub(crate) fn remove(&mut self, slot: usize) -> bool {
        let chunk = slot / ORDERS_PER_CHUNK;
        let Some(entry) = self
            .chunks
            .get_mut(chunk)
            .and_then(|c| c.get_mut(slot % ORDERS_PER_CHUNK))
            .filter(|entry| entry.is_some())
        else {
            return false;
        };
        *entry = None;
        self.live[chunk] -= 1;
        if self.live[chunk] == 0 && chunk + 1 < self.chunks.len() {
            let emptied = std::mem::take(&mut self.chunks[chunk]);
            self.keep_spare(emptied);
        }
        true
    }

    /// Keeps an emptied chunk's allocation for the next chunk, unless a spare as big
    /// is kept already (then it is freed).
    fn keep_spare(&mut self, mut emptied: Vec<Option<Order>>) {
        if emptied.capacity() > self.spare.0.capacity() {
            emptied.clear();
            self.spare.0 = emptied;
        }
    }

    /// The orders not pruned, in id order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &Order> {
        self.chunks.iter().flatten().flatten()
    }

    /// These orders in chunks of this build's size, for a book decoded from a snapshot
    /// that may have been written with another: every chunk but the last holds the
    /// same number of slots (or was freed, empty, with no live orders). `None` if the
    /// decoded chunks do not fit that shape; the result still goes through
    /// [`Orders::is_well_formed`].
    pub(crate) fn rechunked(self) -> Option<Self> {
        let Some((last, earlier)) = self.chunks.split_last() else {
            return Some(self);
        };
        let decoded_size = if earlier.is_empty() {
            last.len()
        } else {
            self.len.checked_sub(last.len())? / earlier.len()
        };
        if decoded_size == ORDERS_PER_CHUNK
            || (earlier.is_empty() && last.len() <= ORDERS_PER_CHUNK)
        {
            return Some(self);
        }
        let shaped = (1..=DECODED_CHUNK_MAX).contains(&decoded_size)
            && self.live.len() == self.chunks.len()
            && earlier
                .len()
                .checked_mul(decoded_size)?
                .checked_add(last.len())?
                == self.len
            && earlier
                .iter()
                .zip(&self.live)
                .all(|(c, &live)| c.len() == decoded_size || (c.is_empty() && live == 0));
        if !shaped {
            return None;
        }
        let mut rebuilt = Orders::default();
        for chunk in self.chunks {
            if chunk.is_empty() {
                rebuilt.skip_slots(decoded_size);
            } else {
                for slot in chunk {
                    rebuilt.push_slot(slot);
                }
            }
        }
        rebuilt.free_emptied();
        Some(rebuilt)
    }

    /// Whether the chunks, counts and `len` agree (a decoded book is checked before
    /// use): every chunk but the last is full or freed, the last is not empty and
    /// not over full.
    pub(crate) fn is_well_formed(&self) -> bool {
        let Some((last, earlier)) = self.chunks.split_last() else {
            return self.len == 0 && self.live.is_empty();
        };
        self.live.len() == self.chunks.len()
            && earlier
                .iter()
                .zip(&self.live)
                .all(|(c, &live)| c.len() == ORDERS_PER_CHUNK || (c.is_empty() && live == 0))
            && !last.is_empty()
            && last.len() <= ORDERS_PER_CHUNK
            && self
                .chunks
                .iter()
                .zip(&self.live)
                .all(|(c, &live)| c.iter().filter(|o| o.is_some()).count() == live as usize)
            && earlier.len() * ORDERS_PER_CHUNK + last.len() == self.len
    }
}

/// The largest chunk size [`Orders::rechunked`] accepts from a snapshot (every build
/// of allot so far used at most 65,536), so that a forged snapshot cannot make it
/// build millions of chunks.
const DECODED_CHUNK_MAX: usize = 1 << 20;

/// Building [`Orders`] slot by slot in this build's chunking (see
/// [`Orders::rechunked`]).
impl Orders {
    fn push_slot(&mut self, slot: Option<Order>) {
        if self.len % ORDERS_PER_CHUNK == 0 {
            self.chunks.push(Vec::with_capacity(ORDERS_PER_CHUNK));
            self.live.push(0);
        }
        let live = slot.is_some();
        self.chunks
            .last_mut()
            .expect("a chunk was just ensured")
            .push(slot);
        *self.live.last_mut().expect("a count per chunk") += u32::from(live);
        self.len += 1;
    }

    /// `count` pruned slots.
    fn skip_slots(&mut self, mut count: usize) {
        while count > 0 && self.len % ORDERS_PER_CHUNK != 0 {
            self.push_slot(None);
            count -= 1;
        }
        // Whole chunks of pruned slots: a freed chunk each, but keep the last slots
        // as a chunk of its own in case nothing follows (the last chunk is never
        // freed).
        while count > ORDERS_PER_CHUNK {
            self.chunks.push(Vec::new());
            self.live.push(0);
            self.len += ORDERS_PER_CHUNK;
            count -= ORDERS_PER_CHUNK;
        }
        for _ in 0..count {
            self.push_slot(None);
        }
    }

    /// Frees the chunks left with no live order, as pruning frees them, except the
    /// last.
    fn free_emptied(&mut self) {
        if let Some((_, earlier)) = self.chunks.split_last_mut() {
            for (chunk, &live) in earlier.iter_mut().zip(&self.live) {
                if live == 0 {
                    *chunk = Vec::new();
                }
            }
        }
    }
}

impl std::ops::Index<usize> for Orders {
    type Output = Order;

    #[inline]
    fn index(&self, slot: usize) -> &Order {
        self.chunks[slot / ORDERS_PER_CHUNK][slot % ORDERS_PER_CHUNK]
            .as_ref()
            .expect("an indexed slot holds an order")
    }
}

impl std::ops::IndexMut<usize> for Orders {
    #[inline]
    fn index_mut(&mut self, slot: usize) -> &mut Order {
        self.chunks[slot / ORDERS_PER_CHUNK][slot % ORDERS_PER_CHUNK]
            .as_mut()
            .expect("an indexed slot holds an order")
    }
}

impl<'a> IntoIterator for &'a Orders {
    type Item = &'a Order;
    type IntoIter =
        std::iter::Flatten<std::iter::Flatten<std::slice::Iter<'a, Vec<Option<Order>>>>>;

    fn into_iter(self) -> Self::IntoIter {
        self.chunks.iter().flatten().flatten()
    }
}

impl Order {
    /// An empty held order, for tests of the structures that hold orders.
    #[cfg(test)]
    pub(crate) fn held_for_test(id: OrderId, dealer: DealerId, client_order_id: &str) -> Self {
        Self {
            id,
            client_order_id: client_order_id.into(),
            dealer,
            status: OrderStatus::Held,
            lines: OrderLines::new(),
            allocations: Allocations::new(),
            total: 0,
            rebate_used: 0,
            backorder: false,
            created_at_ms: 0,
            updated_at_ms: 0,
            hold_expires_at_ms: Some(1),
        }
    }

    /// What the order holds against the dealer's credit: its total less rebate.
    pub fn credit_amount(&self) -> i64 {
        self.total - self.rebate_used
    }

    /// Units of `line` reserved, over all warehouses.
    pub fn allocated(&self, line: usize) -> u64 {
        self.allocations
            .iter()
            .filter(|a| a.line as usize == line)
            .map(|a| a.qty)
            .sum()
    }

    /// Whether `request` is the same body this order was placed with (defaults applied).
    pub(crate) fn same_request(&self, request: &PlaceOrder, sku_ids: &[Option<SkuId>]) -> bool {
        self.backorder == request.backorder
            && self.rebate_used == request.use_rebate
            && self.lines.len() == request.lines.len()
            && self
                .lines
                .iter()
                .zip(&request.lines)
                .zip(sku_ids)
                .all(|((line, req), id)| {
                    Some(line.sku) == *id && line.requested_qty == req.qty && line.unit == req.unit
                })
    }
}

impl Ledger {
    /// Confirm, approve, reject, ship or cancel.
    pub(crate) fn act_on_order(
        &mut self,
        now_ms: u64,
        id: OrderId,
        action: OrderAction,
        events: &mut Vec<Event>,
    ) -> Result<Effect, Rejection> {
        let slot = self.order_slot(id)?;
        let order = &self.state.orders[slot];
        let (from, dealer) = (order.status, order.dealer);
        // A `let else`, not `ok_or`: a rejection built eagerly is dropped on every
        // success, and dropping one is a call.
        let Some(to) = action.target(from) else {
            return Err(Rejection::InvalidTransition {
                order: id,
                from,
                action,
            });
        };
        if matches!(
            to,
            OrderStatus::Shipped | OrderStatus::Cancelled | OrderStatus::Rejected
        ) {
            // Stock moves: start loading the cells of the order's SKUs now.
            for line in &order.lines {
                crate::placement::prefetch_cells(&self.state.skus[line.sku.index()]);
            }
        }
        match action {
            OrderAction::Confirm | OrderAction::Approve => self.confirm(slot)?,
            OrderAction::Ship => self.ship(slot, now_ms, events)?,
            OrderAction::Reject | OrderAction::Cancel => {}
        }
        let order = &mut self.state.orders[slot];
        order.status = to;
        order.updated_at_ms = now_ms;
        if let Some(at) = order.hold_expires_at_ms.take() {
            let removed = self.index.holds.remove((at, id));
            debug_assert!(removed, "a held order has its deadline queued");
        }
        self.emit(
            now_ms,
            EventKind::OrderStatusChanged {
                order: id,
                dealer,
                from,
                to,
            },
            events,
        );
        if !to.is_open() {
            self.index.dealer_open[dealer.index()].remove(id);
            self.note_closed(id, now_ms);
        }
        if matches!(action, OrderAction::Reject | OrderAction::Cancel) {
            self.release(slot, from, now_ms, events);
        }
        Ok(Effect::OrderUpdated(id))
    }

    /// Move the order's credit from held to used.
    fn confirm(&mut self, slot: usize) -> Result<(), Rejection> {
        let order = &self.state.orders[slot];
        let amount = order.credit_amount();
        let dealer = &mut self.state.dealers[order.dealer.index()];
        let used = dealer
            .credit_used
            .checked_add(amount)
            .ok_or_else(|| Rejection::overflow("credit_used"))?;
        dealer.credit_held -= amount;
        dealer.credit_used = used;
        Ok(())
    }

    /// Take the shipped units out of stock and accrue the dealer's rebate.
    fn ship(&mut self, slot: usize, now_ms: u64, events: &mut Vec<Event>) -> Result<(), Rejection> {
        let order = &self.state.orders[slot];
        let dealer_id = order.dealer;
        let rate = i128::from(self.state.dealers[dealer_id.index()].rebate_rate_bp);
        let rebate = if rate == 0 {
            0
        } else {
            i64::try_from(i128::from(order.total) * rate / 10_000)
                .map_err(|_| Rejection::overflow("rebate_balance"))?
        };
        let balance = self.state.dealers[dealer_id.index()]
            .rebate_balance
            .checked_add(rebate)
            .ok_or_else(|| Rejection::overflow("rebate_balance"))?;
        let order = &self.state.orders[slot];
        for allocation in &order.allocations {
            let sku = order.lines[allocation.line as usize].sku;
            let sku = &mut self.state.skus[sku.index()];
            let cell = sku
                .cell_mut(allocation.warehouse)
                .expect("an allocation names a stocked cell");
            cell.on_hand -= allocation.qty;
            cell.reserved -= allocation.qty;
            sku.on_hand -= allocation.qty;
            sku.reserved -= allocation.qty;
        }
        self.state.dealers[dealer_id.index()].rebate_balance = balance;
        if rebate > 0 {
            let order = self.state.orders[slot].id;
            self.emit(
                now_ms,
                EventKind::RebateAccrued {
                    dealer: dealer_id,
                    order,
                    amount: rebate,
                },
                events,
            );
        }
        Ok(())
    }

    /// Give back everything an order closed from `from` held: reservations, queue
    /// places, promotion quota, credit and rebate; then let the released stock fill
    /// backorders.
    pub(crate) fn release(
        &mut self,
        slot: usize,
        from: OrderStatus,
        now_ms: u64,
        events: &mut Vec<Event>,
    ) {
        // A backordered order's lines wait in the queues at its dealer's rank.
        let rank = if from == OrderStatus::Backordered {
            self.tier_rank(self.state.orders[slot].dealer)
        } else {
            0
        };
        // The order is read while the stock, promotions, queues and credit it holds
        // are given back: borrowed apart from them, it is looked up once.
        let crate::ledger::State {
            orders,
            skus,
            promotions,
            promotion_usage,
            dealers,
            next_event_seq,
            ..
        } = &mut self.state;
        let order = &orders[slot];
        let (id, dealer) = (order.id, order.dealer);
        for allocation in &order.allocations {
            let sku_id = order.lines[allocation.line as usize].sku;
            let sku = &mut skus[sku_id.index()];
            let cell = sku
                .cell_mut(allocation.warehouse)
                .expect("an allocation names a stocked cell");
            cell.reserved -= allocation.qty;
            sku.reserved -= allocation.qty;
            let kind = EventKind::StockReleased {
                order: id,
                sku: sku_id,
                warehouse: allocation.warehouse,
                qty: allocation.qty,
            };
            crate::ledger::emit_to(next_event_seq, now_ms, kind, events);
        }
        for line in &order.lines {
            if from == OrderStatus::Backordered && line.backordered > 0 {
                let removed = self.index.queues[line.sku.index()].remove(&(rank, id));
                assert!(removed, "a backordered line is queued");
                skus[line.sku.index()].backordered -= line.backordered;
            }
            if let Some(promotion) = line.promotion {
                promotions[promotion.index()].used -= line.qty;
                let key = crate::ledger::usage_key(promotion, dealer);
                let used = promotion_usage.get_mut(&key).expect("promo usage recorded");
                *used -= line.qty;
                if *used == 0 {
                    promotion_usage.remove(&key);
                }
            }
        }
        let amount = order.credit_amount();
        let account = &mut dealers[dealer.index()];
        if from == OrderStatus::Confirmed {
            account.credit_used = (account.credit_used - amount).max(0);
        } else {
            account.credit_held -= amount;
        }
        // The rebate was part of this balance before; only accruals since could push
        // it to the limit, and saturating there is the conservative answer.
        account.rebate_balance = account.rebate_balance.saturating_add(order.rebate_used);
        let released: smallvec::SmallVec<[SkuId; INLINE_LINES]> =
            order.lines.iter().map(|l| l.sku).collect();
        for sku in released {
            self.settle_sku(sku, now_ms, events);
        }
    }

    pub(crate) fn order_slot(&self, id: OrderId) -> Result<usize, Rejection> {
        match id.slot() {
            Some(slot) if self.state.orders.get(slot).is_some() => Ok(slot),
            _ => Err(Rejection::UnknownOrder { order: id }),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn order(id: u64) -> Order {
        Order::held_for_test(OrderId(id), DealerId(0), &format!("k{id}"))
    }

    #[test]
    fn orders_index_across_chunks_and_survive_encoding() {
        let count = ORDERS_PER_CHUNK as u64 * 2 + 5;
        let mut orders = Orders::default();
        for id in 1..=count {
            orders.push(order(id));
        }
        assert_eq!(orders.len() as u64, count);
        assert!(orders.is_well_formed());
        assert_eq!(
            orders[ORDERS_PER_CHUNK].id,
            OrderId(ORDERS_PER_CHUNK as u64 + 1)
        );
        assert_eq!(
            orders.get(count as usize - 1).map(|o| o.id),
            Some(OrderId(count))
        );
        assert!(orders.get(count as usize).is_none());
        assert!(orders.iter().map(|o| o.id.0).eq(1..=count));
        let bytes = rkyv::to_bytes::<rkyv::rancor::Error>(&orders).expect("encodes");
        let mut decoded: Orders =
            rkyv::from_bytes::<Orders, rkyv::rancor::Error>(&bytes).expect("decodes");
        assert_eq!(decoded, orders);
        decoded.push(order(count + 1));
        assert_eq!(decoded[count as usize].id, OrderId(count + 1));
        assert!(decoded.is_well_formed());
    }

    #[test]
    fn removing_every_order_of_a_chunk_frees_it_but_never_the_last() {
        let count = ORDERS_PER_CHUNK + 3;
        let mut orders = Orders::default();
        for id in 1..=count as u64 {
            orders.push(order(id));
        }
        for slot in 0..ORDERS_PER_CHUNK {
            assert_eq!(orders.get(slot).map(|o| o.id.0), Some(slot as u64 + 1));
            assert!(orders.remove(slot));
        }
        assert!(
            orders.chunks[0].capacity() == 0,
            "the emptied chunk is freed"
        );
        assert_eq!(
            orders.spare.0.capacity(),
            ORDERS_PER_CHUNK,
            "its allocation is kept for the next chunk"
        );
        assert!(orders.get(0).is_none() && !orders.remove(0));
        assert_eq!(orders.len(), count, "ids are never reused");
        assert!(orders
            .iter()
            .map(|o| o.id.0)
            .eq(ORDERS_PER_CHUNK as u64 + 1..=count as u64));
        assert!(orders.is_well_formed());
        for slot in ORDERS_PER_CHUNK..count {
            assert!(orders.remove(slot));
        }
        assert!(
            orders.is_well_formed(),
            "the last chunk stays, empty of orders"
        );
        orders.push(order(count as u64 + 1));
        assert_eq!(orders[count].id.0, count as u64 + 1);
        let bytes = rkyv::to_bytes::<rkyv::rancor::Error>(&orders).expect("encodes");
        let decoded = rkyv::from_bytes::<Orders, rkyv::rancor::Error>(&bytes).expect("decodes");
        assert_eq!(decoded, orders);
        assert!(decoded.is_well_formed());
    }

    impl Orders {
        /// Moves the first chunk's last slot to the start of the second chunk: chunks
        /// of two sizes, which no build writes.
        pub(crate) fn unevenly_for_test(&mut self) {
            let moved = self.chunks[0].pop().expect("a full first chunk");
            self.chunks[1].insert(0, moved);
        }
    }

    /// `orders` as a build with chunks of `size` would have stored them: full chunks,
    /// freed ones where no order is left, the last one partial.
    pub(crate) fn chunked_as(orders: &Orders, size: usize) -> Orders {
        let mut chunks: Vec<Vec<Option<Order>>> = Vec::new();
        let mut live = Vec::new();
        for slot in 0..orders.len() {
            if slot % size == 0 {
                chunks.push(Vec::new());
                live.push(0);
            }
            let order = orders.get(slot).cloned();
            *live.last_mut().expect("a count per chunk") += u32::from(order.is_some());
            chunks.last_mut().expect("a chunk").push(order);
        }
        let last = chunks.len().saturating_sub(1);
        for (i, chunk) in chunks.iter_mut().enumerate() {
            if i < last && live[i] == 0 {
                *chunk = Vec::new();
            }
        }
        Orders {
            chunks,
            live,
            len: orders.len(),
            spare: SpareChunk::default(),
        }
    }

    #[test]
    fn orders_stored_in_other_chunk_sizes_are_rechunked() {
        // Orders with runs of pruned slots: a whole chunk's worth and more (freed
        // chunks in either chunking), single ones, and pruned slots at the end.
        let count = 3 * ORDERS_PER_CHUNK + 10;
        let mut orders = Orders::default();
        for id in 1..=count as u64 {
            orders.push(order(id));
        }
        let pruned = |slot: usize| {
            (5..ORDERS_PER_CHUNK + 200).contains(&slot) || slot % 7 == 3 || slot + 4 >= count
        };
        for slot in (0..count).filter(|&s| pruned(s)) {
            assert!(orders.remove(slot));
        }
        assert!(orders.is_well_formed());
        for size in [
            1,
            3,
            100,
            ORDERS_PER_CHUNK - 1,
            ORDERS_PER_CHUNK * 2 + 3,
            1 << 16,
        ] {
            let stored = chunked_as(&orders, size);
            assert_eq!(stored.is_well_formed(), size == ORDERS_PER_CHUNK);
            let rechunked = stored.rechunked().expect("one chunk size");
            assert!(rechunked.is_well_formed(), "from chunks of {size}");
            assert_eq!(rechunked, orders, "from chunks of {size}");
            let (_, earlier) = rechunked.chunks.split_last().expect("chunks");
            assert!(
                earlier
                    .iter()
                    .zip(&rechunked.live)
                    .all(|(c, &live)| live > 0 || c.is_empty()),
                "chunks left with no order are freed"
            );
        }
        // Everything pruned: only the last chunk remains, empty of orders.
        let mut all_gone = orders.clone();
        for slot in 0..count {
            all_gone.remove(slot);
        }
        let rechunked = chunked_as(&all_gone, 3)
            .rechunked()
            .expect("one chunk size");
        assert!(rechunked.is_well_formed());
        assert_eq!(rechunked.len(), count);
        assert_eq!(rechunked.iter().count(), 0);
        let mut grown = rechunked;
        grown.push(order(count as u64 + 1));
        assert_eq!(grown[count].id.0, count as u64 + 1);
        assert!(grown.is_well_formed());
    }

    #[test]
    fn orders_in_chunks_of_different_sizes_are_refused() {
        let mut orders = Orders::default();
        for id in 1..=10 {
            orders.push(order(id));
        }
        let mut uneven = chunked_as(&orders, 3);
        uneven.unevenly_for_test();
        assert!(uneven.rechunked().is_none());
        let mut miscounted = chunked_as(&orders, 3);
        miscounted.len += 1;
        assert!(miscounted.rechunked().is_none());
        let mut freed_with_orders = chunked_as(&orders, 3);
        freed_with_orders.chunks[0] = Vec::new();
        assert!(freed_with_orders.rechunked().is_none());
    }

    #[test]
    fn an_emptied_chunk_becomes_the_next_chunk() {
        let mut orders = Orders::default();
        for id in 1..=2 * ORDERS_PER_CHUNK as u64 {
            orders.push(order(id));
        }
        let first = orders.chunks[0].as_ptr();
        for slot in 0..ORDERS_PER_CHUNK {
            assert!(orders.remove(slot));
        }
        let encode = |orders: &Orders| {
            rkyv::to_bytes::<rkyv::rancor::Error>(orders)
                .expect("encodes")
                .to_vec()
        };
        assert_eq!(
            encode(&orders),
            encode(&orders.clone()),
            "the spare is not part of the book"
        );
        assert_eq!(orders.clone().spare.0.capacity(), 0, "nor of its clones");
        orders.push(order(2 * ORDERS_PER_CHUNK as u64 + 1));
        assert_eq!(orders.chunks[2].as_ptr(), first, "the allocation is reused");
        assert_eq!(orders.spare.0.capacity(), 0);
        assert_eq!(
            orders[2 * ORDERS_PER_CHUNK].id.0,
            2 * ORDERS_PER_CHUNK as u64 + 1
        );
        assert!(orders.is_well_formed());
    }
}
