//! Orders: the record of what was promised, and the lifecycle that moves it.
//!
//! ```text
//! held ──confirm──▶ confirmed ──ship──▶ shipped
//!  │  └─expire (time)─▶ expired
//! pending_approval ──approve──▶ confirmed      ──reject──▶ rejected
//! backordered ──(restock fills every line)──▶ held (or pending_approval)
//! held | pending_approval | backordered | confirmed ──cancel──▶ cancelled
//! ```

use std::borrow::Cow;

use crate::command::{plain_data, PlaceOrder, Unit};
use crate::dealer_orders::Listed;
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

/// Every order of a book, by id (`orders[id - 1]`).
///
/// An open order is an [`Order`] in a slot of a pool; a slot that an order leaves when
/// it closes takes the next new one, so a book in steady state writes new orders into
/// memory it has just used. A closed order never changes again and is kept as a short
/// record (see `closed`), about a quarter of an [`Order`]'s size: a book that keeps its
/// history faults in far less fresh memory per order.
///
/// Ids come in chunks of `ORDERS_PER_CHUNK`, each with where its orders are kept and
/// the records of its closed ones, so the book never moves millions of orders at once
/// to grow. A pruned order (see `Settings::order_retention_s`) leaves an empty slot,
/// and a chunk whose orders were all pruned is freed, so a book with retention stays
/// bounded; a freed chunk's allocations are kept (unless a larger spare is kept
/// already) and become the next chunk's. The pool keeps the size of the most orders
/// ever open at once.
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
    chunks: Vec<Chunk>,
    /// Open orders, in chunks of `OPEN_PER_CHUNK` slots; `None` is a free slot.
    open: Vec<Vec<Option<Order>>>,
    /// The free slots of `open`, the one freed last at the end (it is taken first).
    free: Vec<u32>,
    /// Ids given out: the last order id.
    len: usize,
    /// An emptied chunk's allocations, kept for the next chunk, and the length of the
    /// last record written (not book state).
    #[serde(skip)]
    #[rkyv(with = rkyv::with::Skip)]
    spare: SpareChunk,
}

/// `ORDERS_PER_CHUNK` consecutive ids (fewer in the last chunk).
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
struct Chunk {
    /// Where each id's order is; empty once the chunk is freed.
    slots: Vec<Slot>,
    /// The records of the chunk's closed orders, back to back (a pruned order's
    /// record stays until the chunk is freed).
    closed: Vec<u8>,
    /// Orders not pruned.
    live: u32,
}

/// Where an order is: pruned, open in a slot of the pool, or closed with its record
/// at an offset in its chunk's records. A tag in the top two bits, then the place.
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
#[serde(transparent)]
struct Slot(u64);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Place {
    Pruned,
    Open(usize),
    Closed(usize),
}

impl Slot {
    const PRUNED: Self = Self(0);
    const OPEN: u64 = 1 << 62;
    const CLOSED: u64 = 2 << 62;
    const PLACE: u64 = (1 << 62) - 1;

    fn open(at: usize) -> Self {
        Self(Self::OPEN | at as u64)
    }

    fn closed(at: usize) -> Self {
        debug_assert!(at as u64 <= Self::PLACE);
        Self(Self::CLOSED | at as u64)
    }

    #[inline]
    fn place(self) -> Option<Place> {
        let at = (self.0 & Self::PLACE) as usize;
        match self.0 & !Self::PLACE {
            0 if at == 0 => Some(Place::Pruned),
            Self::OPEN => Some(Place::Open(at)),
            Self::CLOSED => Some(Place::Closed(at)),
            // Only a forged snapshot has these (refused by `is_well_formed`).
            _ => None,
        }
    }
}

/// The allocations of a freed chunk, empty but with their capacity, and the length of
/// the last record written (to size new chunks' records). Not part of the book: it
/// compares equal to any other, is not serialized, and a clone does not copy it.
#[derive(Default)]
struct SpareChunk {
    slots: Vec<Slot>,
    closed: Vec<u8>,
    record_len: usize,
}

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
        write!(
            f,
            "SpareChunk(capacity {} slots, {} record bytes)",
            self.slots.capacity(),
            self.closed.capacity()
        )
    }
}

/// Ids per chunk of [`Orders`]: 32 KiB of slots. Snapshots record the chunks as they
/// are, so this is part of the snapshot format.
const ORDERS_PER_CHUNK: usize = 1 << 12;

/// How far past the last record [`Orders::close`] starts loading memory for the next
/// ones: about two records of a small order.
const RECORD_AHEAD: usize = 128;

/// The record length a new chunk makes room for when no record was written yet: a
/// narrow record of 4 lines with a 24-byte key.
const RECORD_LEN_GUESS: usize = 7 + 24 + 8 + 13 + 4 * 14;

/// The most room a chunk makes for its records up front (a chunk of very large
/// orders grows its vector past it as they close).
const RECORDS_ROOM_MAX: usize = 16 << 20;

/// Slots per chunk of the open-order pool: about 300 KB.
const OPEN_PER_CHUNK: usize = 1 << 10;

/// A free slot of the pool held an order: the free list is wrong.
#[cold]
#[inline(never)]
fn slot_taken() -> ! {
    panic!("a free slot of the order pool holds an order")
}

/// An order of a book as [`Orders`] keeps it: an open [`Order`], or the record of a
/// closed one, whose status, dealer, key and close time read without decoding it.
#[derive(Clone, Copy, Debug)]
pub struct OrderRef<'a>(Kept<'a>);

#[derive(Clone, Copy, Debug)]
enum Kept<'a> {
    Open(&'a Order),
    Closed(OrderId, crate::closed::Header<'a>),
}

impl<'a> OrderRef<'a> {
    pub fn id(&self) -> OrderId {
        match self.0 {
            Kept::Open(order) => order.id,
            Kept::Closed(id, _) => id,
        }
    }

    #[inline]
    pub fn status(&self) -> OrderStatus {
        match self.0 {
            Kept::Open(order) => order.status,
            Kept::Closed(_, header) => header.status,
        }
    }

    #[inline]
    pub fn dealer(&self) -> DealerId {
        match self.0 {
            Kept::Open(order) => order.dealer,
            Kept::Closed(_, header) => header.dealer,
        }
    }

    pub fn client_order_id(&self) -> &'a str {
        match self.0 {
            Kept::Open(order) => &order.client_order_id,
            Kept::Closed(_, header) => std::str::from_utf8(header.key)
                .expect("closed records are checked when written or restored"),
        }
    }

    /// The idempotency key's bytes (no check that they are text).
    #[inline]
    pub(crate) fn key(&self) -> &'a [u8] {
        match self.0 {
            Kept::Open(order) => order.client_order_id.as_bytes(),
            Kept::Closed(_, header) => header.key,
        }
    }

    /// When the order last changed (for a closed order, when it closed).
    pub fn updated_at_ms(&self) -> u64 {
        match self.0 {
            Kept::Open(order) => order.updated_at_ms,
            Kept::Closed(_, header) => header.updated_at_ms,
        }
    }

    /// The order, if it is open.
    #[inline]
    pub fn open(&self) -> Option<&'a Order> {
        match self.0 {
            Kept::Open(order) => Some(order),
            Kept::Closed(..) => None,
        }
    }

    /// The whole order: borrowed if open, decoded from its record if closed.
    pub fn to_order(&self) -> Cow<'a, Order> {
        match self.0 {
            Kept::Open(order) => Cow::Borrowed(order),
            Kept::Closed(id, header) => Cow::Owned(
                header
                    .decode(id)
                    .expect("closed records are checked when written or restored")
                    .0,
            ),
        }
    }

    /// Each line's promotion and quantity, for the lines priced at one.
    pub(crate) fn promotion_lines(&self) -> smallvec::SmallVec<[(PromotionId, u64); 4]> {
        match self.0 {
            Kept::Open(order) => order
                .lines
                .iter()
                .filter_map(|l| Some((l.promotion?, l.qty)))
                .collect(),
            Kept::Closed(_, header) => header
                .promotion_lines()
                .expect("closed records are checked when written or restored"),
        }
    }
}

impl Orders {
    /// How many orders were ever placed (the last id), pruned ones included.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The order in `slot` (id − 1), unless there is none or it was pruned.
    #[inline]
    pub fn get(&self, slot: usize) -> Option<OrderRef<'_>> {
        let chunk = self.chunks.get(slot / ORDERS_PER_CHUNK)?;
        self.kept(slot, chunk, *chunk.slots.get(slot % ORDERS_PER_CHUNK)?)
    }

    #[inline]
    fn kept<'a>(&'a self, slot: usize, chunk: &'a Chunk, at: Slot) -> Option<OrderRef<'a>> {
        match at.place()? {
            Place::Pruned => None,
            Place::Open(at) => {
                let order = self
                    .open
                    .get(at / OPEN_PER_CHUNK)?
                    .get(at % OPEN_PER_CHUNK)?;
                Some(OrderRef(Kept::Open(order.as_ref()?)))
            }
            Place::Closed(at) => {
                let header = crate::closed::header(chunk.closed.get(at..)?)?;
                Some(OrderRef(Kept::Closed(OrderId(slot as u64 + 1), header)))
            }
        }
    }

    /// Whether there is an order in `slot` (not pruned), without reading it.
    #[inline]
    pub fn contains(&self, slot: usize) -> bool {
        self.chunks
            .get(slot / ORDERS_PER_CHUNK)
            .and_then(|c| c.slots.get(slot % ORDERS_PER_CHUNK))
            .is_some_and(|&at| at != Slot::PRUNED)
    }

    /// What the book holds of order `id`: open, closed, or nothing (pruned, or never
    /// placed), without reading the order.
    #[inline]
    pub(crate) fn listed(&self, id: OrderId) -> Listed {
        let place = id.slot().and_then(|slot| {
            self.chunks
                .get(slot / ORDERS_PER_CHUNK)?
                .slots
                .get(slot % ORDERS_PER_CHUNK)?
                .place()
        });
        match place {
            Some(Place::Open(_)) => Listed::Open,
            Some(Place::Closed(_)) => Listed::Closed,
            Some(Place::Pruned) | None => Listed::Pruned,
        }
    }

    /// The open order in `slot`, if it is open.
    #[inline]
    pub fn get_open(&self, slot: usize) -> Option<&Order> {
        let Pooled(at) = self.pooled(slot)?;
        self.open
            .get(at / OPEN_PER_CHUNK)?
            .get(at % OPEN_PER_CHUNK)?
            .as_ref()
    }

    /// Where the open order in `slot` is in the pool, if it is open.
    #[inline]
    pub(crate) fn pooled(&self, slot: usize) -> Option<Pooled> {
        let chunk = self.chunks.get(slot / ORDERS_PER_CHUNK)?;
        match chunk.slots.get(slot % ORDERS_PER_CHUNK)?.place()? {
            Place::Open(at) => Some(Pooled(at)),
            Place::Pruned | Place::Closed(_) => None,
        }
    }

    /// A new order, open, with the next id.
    #[inline]
    pub fn push(&mut self, order: Order) {
        self.push_with(|| order);
    }

    /// A new open order with the next id, made by `make` straight into its slot of
    /// the pool (a placement then adds its lines there: an order built elsewhere and
    /// moved in would be written twice). Returns the order in its slot.
    #[inline]
    pub(crate) fn push_with(&mut self, make: impl FnOnce() -> Order) -> &mut Order {
        if self.len % ORDERS_PER_CHUNK == 0 {
            self.new_chunk();
        }
        let at = match self.free.pop() {
            Some(at) => at as usize,
            None => self.grow_pool(),
        };
        let chunk = self
            .chunks
            .last_mut()
            .expect("a chunk with room was ensured");
        chunk.slots.push(Slot::open(at));
        chunk.live += 1;
        self.len += 1;
        // The slot is known empty before the order moves in, so there is nothing to
        // drop.
        let kept = &mut self.open[at / OPEN_PER_CHUNK][at % OPEN_PER_CHUNK];
        if kept.is_some() {
            slot_taken();
        }
        let order = kept.insert(make());
        debug_assert!(order.status.is_open() && order.id.slot() == Some(self.len - 1));
        order
    }

    /// Starts the next chunk of ids, in the spare chunk's allocations if there is one.
    #[cold]
    #[inline(never)]
    fn new_chunk(&mut self) {
        let records = self.records_room(self.chunks.last());
        if let Some(last) = self.chunks.last_mut().filter(|c| c.live == 0) {
            // Its orders were all pruned while it was the last chunk.
            let emptied = std::mem::take(last);
            self.keep_spare(emptied);
        }
        let spare = std::mem::take(&mut self.spare);
        self.spare.record_len = spare.record_len;
        let mut chunk = Chunk {
            slots: spare.slots,
            closed: spare.closed,
            live: 0,
        };
        chunk.slots.reserve_exact(ORDERS_PER_CHUNK);
        chunk.closed.reserve_exact(records);
        self.chunks.push(chunk);
    }

    /// Room for a chunk's records: each as long as those of `like` so far (or, if few
    /// of its orders have closed, as the last record written), and an eighth more. A
    /// record vector that outgrows its room is copied whole to one twice as large,
    /// fresh memory; room not written is never touched.
    fn records_room(&self, like: Option<&Chunk>) -> usize {
        let per_record = like
            .and_then(|c| {
                let closed = c
                    .slots
                    .iter()
                    .filter(|s| !matches!(s.place(), Some(Place::Open(_))))
                    .count();
                (closed >= ORDERS_PER_CHUNK / 64).then(|| c.closed.len() / closed)
            })
            .unwrap_or(match self.spare.record_len {
                0 => RECORD_LEN_GUESS,
                len => len,
            });
        per_record
            .saturating_mul(ORDERS_PER_CHUNK + ORDERS_PER_CHUNK / 8)
            .min(RECORDS_ROOM_MAX)
    }

    /// Makes room in the last chunk of decoded (and checked) orders, whose vectors
    /// hold no more than they need, for the rest of its ids and their records.
    pub(crate) fn make_room_after_decode(&mut self) {
        let records = self.records_room(self.chunks.last());
        if let Some(last) = self.chunks.last_mut() {
            last.slots
                .reserve_exact(ORDERS_PER_CHUNK - last.slots.len().min(ORDERS_PER_CHUNK));
            last.closed
                .reserve_exact(records.saturating_sub(last.closed.len()));
        }
    }

    /// Adds a slot at the end of the pool (none is free); returns it.
    #[cold]
    #[inline(never)]
    fn grow_pool(&mut self) -> usize {
        let full = self.open.last().is_none_or(|c| c.len() == OPEN_PER_CHUNK);
        if full {
            self.open.push(Vec::with_capacity(OPEN_PER_CHUNK));
        }
        let chunks = self.open.len();
        let last = self.open.last_mut().expect("a pool chunk with room");
        last.push(None);
        (chunks - 1) * OPEN_PER_CHUNK + last.len() - 1
    }

    /// The open order in `slot` has closed (its status is final): keep it as a
    /// record, and free its slot in the pool.
    pub(crate) fn close(&mut self, slot: usize) {
        let chunk = &mut self.chunks[slot / ORDERS_PER_CHUNK];
        let entry = &mut chunk.slots[slot % ORDERS_PER_CHUNK];
        let Some(Place::Open(at)) = entry.place() else {
            panic!("only an open order closes");
        };
        let kept = &mut self.open[at / OPEN_PER_CHUNK][at % OPEN_PER_CHUNK];
        let start = chunk.closed.len();
        *entry = Slot::closed(start);
        crate::closed::encode(
            kept.as_ref().expect("an open slot holds its order"),
            &mut chunk.closed,
        );
        self.spare.record_len = chunk.closed.len() - start;
        // The next records go just past this one, into memory not written yet: start
        // loading it now, so that writing them does not wait for it.
        prefetch_index::prefetch_index(&chunk.closed, chunk.closed.len() + RECORD_AHEAD);
        *kept = None;
        self.free
            .push(u32::try_from(at).expect("fewer than 2^32 orders open at once"));
    }

    /// Drops the order in `slot`, leaving it empty; frees the chunk once all its
    /// orders are gone (except the last chunk, which still takes new orders). Returns
    /// whether there was one.
    pub(crate) fn remove(&mut self, slot: usize) -> bool {
        let c = slot / ORDERS_PER_CHUNK;
        let last = self.chunks.len().saturating_sub(1);
        let Some(chunk) = self.chunks.get_mut(c) else {
            return false;
        };
        let Some(entry) = chunk.slots.get_mut(slot % ORDERS_PER_CHUNK) else {
            return false;
        };
        match entry.place() {
            Some(Place::Open(at)) => {
                self.open[at / OPEN_PER_CHUNK][at % OPEN_PER_CHUNK] = None;
                self.free
                    .push(u32::try_from(at).expect("fewer than 2^32 orders open at once"));
            }
            Some(Place::Closed(_)) => {}
            Some(Place::Pruned) | None => return false,
        }
        *entry = Slot::PRUNED;
        chunk.live -= 1;
        if chunk.live == 0 && c < last {
            let emptied = std::mem::take(chunk);
            self.keep_spare(emptied);
        }
        true
    }

    /// Keeps an emptied chunk's allocations for the next chunk, unless a spare as big
    /// is kept already (then they are freed).
    fn keep_spare(&mut self, emptied: Chunk) {
        let Chunk {
            mut slots,
            mut closed,
            ..
        } = emptied;
        if closed.capacity() > self.spare.closed.capacity() {
            slots.clear();
            closed.clear();
            self.spare = SpareChunk {
                slots,
                closed,
                record_len: self.spare.record_len,
            };
        }
    }

    /// The orders not pruned, in id order.
    pub fn iter(&self) -> impl Iterator<Item = OrderRef<'_>> {
        self.chunks.iter().enumerate().flat_map(move |(c, chunk)| {
            chunk
                .slots
                .iter()
                .enumerate()
                .filter_map(move |(i, &at)| self.kept(c * ORDERS_PER_CHUNK + i, chunk, at))
        })
    }

    /// The open orders, in id order.
    pub fn iter_open(&self) -> impl Iterator<Item = &Order> {
        self.iter().filter_map(|o| o.open())
    }

    /// Whether the chunks, slots, records and pool agree (a decoded book is checked
    /// before use): every chunk but the last is full or freed, the last is not empty;
    /// each open slot names a pool slot that holds the order of its id, and the pool
    /// holds nothing else; each closed slot names a whole record of a closed order,
    /// records in id order, none overlapping; the free list names each empty pool slot
    /// once.
    pub(crate) fn is_well_formed(&self) -> bool {
        self.chunks_well_formed() && self.pool_well_formed()
    }

    fn chunks_well_formed(&self) -> bool {
        let Some((last, earlier)) = self.chunks.split_last() else {
            return self.len == 0;
        };
        let shaped = earlier.iter().all(|c| {
            c.slots.len() == ORDERS_PER_CHUNK
                || (c.slots.is_empty() && c.closed.is_empty() && c.live == 0)
        }) && !last.slots.is_empty()
            && last.slots.len() <= ORDERS_PER_CHUNK
            && earlier.len() * ORDERS_PER_CHUNK + last.slots.len() == self.len;
        shaped
            && self
                .chunks
                .iter()
                .enumerate()
                .all(|(c, chunk)| self.chunk_well_formed(c, chunk))
    }

    /// Each slot of chunk `c` names its order; the records do not overlap (they are
    /// written in the order the orders closed, not in id order). Records are decoded
    /// in the order of their offsets, each within the bytes before the next, so a
    /// forged chunk cannot make one record decode many times or claim more lines
    /// than its own bytes hold.
    fn chunk_well_formed(&self, c: usize, chunk: &Chunk) -> bool {
        let mut live = 0usize;
        let mut records = Vec::new();
        for (i, &at) in chunk.slots.iter().enumerate() {
            let id = OrderId((c * ORDERS_PER_CHUNK + i) as u64 + 1);
            match at.place() {
                None => return false,
                Some(Place::Pruned) => {}
                Some(Place::Open(at)) => {
                    live += 1;
                    let holds_it = self
                        .open
                        .get(at / OPEN_PER_CHUNK)
                        .and_then(|p| p.get(at % OPEN_PER_CHUNK))
                        .and_then(Option::as_ref)
                        .is_some_and(|o| o.id == id && o.status.is_open());
                    if !holds_it {
                        return false;
                    }
                }
                Some(Place::Closed(at)) => {
                    live += 1;
                    records.push((at, id));
                }
            }
        }
        if live != chunk.live as usize {
            return false;
        }
        records.sort_unstable();
        let ends = records
            .iter()
            .skip(1)
            .map(|&(next, _)| next)
            .chain([chunk.closed.len()]);
        records.iter().zip(ends).all(|(&(at, id), end)| {
            chunk
                .closed
                .get(at..end)
                .and_then(crate::closed::header)
                .filter(|h| !h.status.is_open())
                .and_then(|h| h.decode(id))
                .is_some()
        })
    }

    fn pool_well_formed(&self) -> bool {
        let Some((last, earlier)) = self.open.split_last() else {
            return self.free.is_empty();
        };
        if !earlier.iter().all(|p| p.len() == OPEN_PER_CHUNK) || last.len() > OPEN_PER_CHUNK {
            return false;
        }
        let held = self.open.iter().flatten().filter(|o| o.is_some()).count();
        let open_slots = self
            .chunks
            .iter()
            .flat_map(|c| &c.slots)
            .filter(|s| matches!(s.place(), Some(Place::Open(_))))
            .count();
        let size = earlier.len() * OPEN_PER_CHUNK + last.len();
        let mut listed = vec![false; size];
        let free_ok = self.free.iter().all(|&at| {
            let at = at as usize;
            let fresh = listed.get(at).is_some_and(|&seen| !seen);
            if fresh {
                listed[at] = true;
            }
            fresh && self.open[at / OPEN_PER_CHUNK][at % OPEN_PER_CHUNK].is_none()
        });
        // Each open slot's order has that slot's id, so no two slots share one.
        held == open_slots && free_ok && self.free.len() + held == size
    }
}

/// Where an open order is in the pool: found once from its slot (see
/// [`Orders::pooled`]), it reaches the order without the slot's indirection, for a
/// command that reads and changes the order several times. Valid until the order
/// closes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Pooled(usize);

impl std::ops::Index<Pooled> for Orders {
    type Output = Order;

    #[inline]
    fn index(&self, Pooled(at): Pooled) -> &Order {
        self.open[at / OPEN_PER_CHUNK][at % OPEN_PER_CHUNK]
            .as_ref()
            .expect("a pooled order is open")
    }
}

impl std::ops::IndexMut<Pooled> for Orders {
    #[inline]
    fn index_mut(&mut self, Pooled(at): Pooled) -> &mut Order {
        self.open[at / OPEN_PER_CHUNK][at % OPEN_PER_CHUNK]
            .as_mut()
            .expect("a pooled order is open")
    }
}

impl std::ops::Index<usize> for Orders {
    type Output = Order;

    /// The open order in `slot` (the engine indexes only orders it knows are open).
    #[inline]
    fn index(&self, slot: usize) -> &Order {
        self.get_open(slot).expect("an indexed order is open")
    }
}

impl std::ops::IndexMut<usize> for Orders {
    #[inline]
    fn index_mut(&mut self, slot: usize) -> &mut Order {
        let at = self.pooled(slot).expect("an indexed order is open");
        &mut self[at]
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
        // Every action needs an open order: a closed one's status is read from its
        // record only to say why the action is refused.
        let Some((slot, at)) = id
            .slot()
            .and_then(|slot| Some((slot, self.state.orders.pooled(slot)?)))
        else {
            return Err(self.not_open(id, action));
        };
        let order = &self.state.orders[at];
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
            OrderAction::Confirm | OrderAction::Approve => self.confirm(at)?,
            OrderAction::Ship => self.ship(at, now_ms, events)?,
            OrderAction::Reject | OrderAction::Cancel => {}
        }
        let order = &mut self.state.orders[at];
        order.status = to;
        order.updated_at_ms = now_ms;
        if let Some(deadline) = order.hold_expires_at_ms.take() {
            let removed = self.index.holds.remove((deadline, id));
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
            let orders = &self.state.orders;
            let listed = |o| orders.listed(o);
            self.index.dealer_orders.closed(dealer, id, listed);
            self.note_closed(id, now_ms);
        }
        if matches!(action, OrderAction::Reject | OrderAction::Cancel) {
            self.release(at, from, now_ms, events);
        }
        if !to.is_open() {
            self.state.orders.close(slot);
        }
        Ok(Effect::OrderUpdated(id))
    }

    /// Move the order's credit from held to used.
    fn confirm(&mut self, at: Pooled) -> Result<(), Rejection> {
        let order = &self.state.orders[at];
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
    fn ship(&mut self, at: Pooled, now_ms: u64, events: &mut Vec<Event>) -> Result<(), Rejection> {
        let order = &self.state.orders[at];
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
        let order = &self.state.orders[at];
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
            let order = self.state.orders[at].id;
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
        at: Pooled,
        from: OrderStatus,
        now_ms: u64,
        events: &mut Vec<Event>,
    ) {
        // A backordered order's lines wait in the queues at its dealer's rank.
        let rank = if from == OrderStatus::Backordered {
            self.tier_rank(self.state.orders[at].dealer)
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
        let order = &orders[at];
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
        // The released stock may fill backorders (other orders, never this one).
        for line in 0..order.lines.len() {
            let sku = self.state.orders[at].lines[line].sku;
            self.settle_sku(sku, now_ms, events);
        }
    }

    /// Why `action` cannot be taken on order `id`, which is not open: it is closed, or
    /// there is no such order.
    #[cold]
    #[inline(never)]
    fn not_open(&self, id: OrderId, action: OrderAction) -> Rejection {
        match self.find_order(id) {
            Ok((_, order)) => Rejection::InvalidTransition {
                order: id,
                from: order.status(),
                action,
            },
            Err(rejection) => rejection,
        }
    }

    /// The order with id `id`, and its slot.
    pub(crate) fn find_order(&self, id: OrderId) -> Result<(usize, OrderRef<'_>), Rejection> {
        match id
            .slot()
            .and_then(|slot| Some((slot, self.state.orders.get(slot)?)))
        {
            Some(found) => Ok(found),
            None => Err(Rejection::UnknownOrder { order: id }),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn order(id: u64) -> Order {
        Order::held_for_test(OrderId(id), DealerId(0), &format!("k{id}"))
    }

    /// Closes the open order in `slot` as the engine does: final status, no deadline.
    fn close(orders: &mut Orders, slot: usize, status: OrderStatus) {
        let order = &mut orders[slot];
        order.status = status;
        order.hold_expires_at_ms = None;
        order.updated_at_ms = slot as u64 * 3;
        orders.close(slot);
    }

    fn encode(orders: &Orders) -> Vec<u8> {
        rkyv::to_bytes::<rkyv::rancor::Error>(orders)
            .expect("encodes")
            .to_vec()
    }

    fn decode(bytes: &[u8]) -> Orders {
        rkyv::from_bytes::<Orders, rkyv::rancor::Error>(bytes).expect("decodes")
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
            orders.get(count as usize - 1).map(|o| o.id()),
            Some(OrderId(count))
        );
        assert!(orders.get(count as usize).is_none());
        assert!(orders.iter().map(|o| o.id().0).eq(1..=count));
        let mut decoded = decode(&encode(&orders));
        assert_eq!(decoded, orders);
        decoded.push(order(count + 1));
        assert_eq!(decoded[count as usize].id, OrderId(count + 1));
        assert!(decoded.is_well_formed());
    }

    #[test]
    fn a_closed_order_reads_back_whole_and_its_slot_takes_the_next_order() {
        let mut orders = Orders::default();
        for id in 1..=5 {
            orders.push(order(id));
        }
        orders[1].lines.push(OrderLine {
            sku: SkuId(4),
            requested_qty: 2,
            unit: Unit::Case,
            qty: 24,
            unit_price: 1_250,
            backordered: 0,
            promotion: Some(PromotionId(1)),
        });
        let pool_slot = |orders: &Orders, slot: usize| match orders.chunks[0].slots[slot].place() {
            Some(Place::Open(at)) => at,
            other => panic!("slot {slot} is {other:?}"),
        };
        let (freed_first, freed_last) = (pool_slot(&orders, 1), pool_slot(&orders, 3));
        close(&mut orders, 1, OrderStatus::Shipped);
        close(&mut orders, 3, OrderStatus::Cancelled);
        let shipped = orders.get(1).expect("kept");
        assert!(shipped.open().is_none(), "kept as a record");
        assert_eq!(shipped.status(), OrderStatus::Shipped);
        assert_eq!(shipped.client_order_id(), "k2");
        assert_eq!(shipped.updated_at_ms(), 3);
        assert_eq!(shipped.promotion_lines().to_vec(), [(PromotionId(1), 24)]);
        let whole = shipped.to_order().into_owned();
        assert_eq!(whole.id, OrderId(2));
        assert_eq!(whole.lines.len(), 1);
        assert_eq!(whole.lines[0].qty, 24);
        assert_eq!(
            orders.iter_open().map(|o| o.id.0).collect::<Vec<_>>(),
            [1, 3, 5]
        );
        assert!(orders.get_open(3).is_none() && orders.get_open(2).is_some());
        // The slot freed last is taken first, then the one before; then the pool grows.
        let pool_size = orders.open.iter().map(Vec::len).sum::<usize>();
        orders.push(order(6));
        orders.push(order(7));
        orders.push(order(8));
        assert_eq!(pool_slot(&orders, 5), freed_last);
        assert_eq!(pool_slot(&orders, 6), freed_first);
        assert_eq!(pool_slot(&orders, 7), pool_size);
        assert_eq!(
            orders.open.iter().map(Vec::len).sum::<usize>(),
            pool_size + 1
        );
        assert_eq!(orders[5].id, OrderId(6));
        assert!(orders.is_well_formed());
        let decoded = decode(&encode(&orders));
        assert_eq!(decoded, orders);
        assert!(decoded.is_well_formed());
        assert!(orders.remove(1) && !orders.remove(1), "pruned once");
        assert!(orders.remove(2), "an open order can be removed too");
        assert!(orders.get(1).is_none() && orders.get(2).is_none());
        assert!(orders.is_well_formed());
    }

    #[test]
    fn removing_every_order_of_a_chunk_frees_it_but_never_the_last() {
        let count = ORDERS_PER_CHUNK + 3;
        let mut orders = Orders::default();
        for id in 1..=count as u64 {
            orders.push(order(id));
        }
        for slot in 0..ORDERS_PER_CHUNK {
            close(&mut orders, slot, OrderStatus::Expired);
        }
        let records = orders.chunks[0].closed.capacity();
        for slot in 0..ORDERS_PER_CHUNK {
            assert_eq!(orders.get(slot).map(|o| o.id().0), Some(slot as u64 + 1));
            assert!(orders.remove(slot));
        }
        assert!(
            orders.chunks[0].slots.capacity() == 0 && orders.chunks[0].closed.capacity() == 0,
            "the emptied chunk is freed"
        );
        assert_eq!(
            orders.spare.closed.capacity(),
            records,
            "its allocations are kept for the next chunk"
        );
        assert!(orders.get(0).is_none() && !orders.remove(0));
        assert_eq!(orders.len(), count, "ids are never reused");
        assert!(orders
            .iter()
            .map(|o| o.id().0)
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
        let decoded = decode(&encode(&orders));
        assert_eq!(decoded, orders);
        assert!(decoded.is_well_formed());
    }

    /// A chunk whose orders were all pruned while it was the last one is freed when
    /// the next chunk begins (a quiet book with a retention must not keep it).
    #[test]
    fn a_last_chunk_emptied_before_the_next_begins_is_freed_then() {
        let mut orders = Orders::default();
        for id in 1..=ORDERS_PER_CHUNK as u64 {
            orders.push(order(id));
        }
        for slot in 0..ORDERS_PER_CHUNK {
            close(&mut orders, slot, OrderStatus::Cancelled);
            assert!(orders.remove(slot));
        }
        assert_eq!(
            orders.chunks[0].slots.len(),
            ORDERS_PER_CHUNK,
            "still the last"
        );
        let records = orders.chunks[0].closed.capacity();
        orders.push(order(ORDERS_PER_CHUNK as u64 + 1));
        assert!(
            orders.chunks[0].slots.capacity() == 0 && orders.chunks[0].closed.capacity() == 0,
            "freed"
        );
        assert_eq!(orders.chunks[1].closed.capacity(), records, "and lent on");
        assert_eq!(orders.iter().count(), 1);
        assert!(orders.is_well_formed());
    }

    #[test]
    fn an_emptied_chunk_becomes_the_next_chunk() {
        let mut orders = Orders::default();
        for id in 1..=2 * ORDERS_PER_CHUNK as u64 {
            orders.push(order(id));
        }
        for slot in 0..ORDERS_PER_CHUNK {
            close(&mut orders, slot, OrderStatus::Cancelled);
        }
        let first = orders.chunks[0].closed.as_ptr();
        for slot in 0..ORDERS_PER_CHUNK {
            assert!(orders.remove(slot));
        }
        assert_eq!(
            encode(&orders),
            encode(&orders.clone()),
            "the spare is not part of the book"
        );
        assert_eq!(
            orders.clone().spare.closed.capacity(),
            0,
            "nor of its clones"
        );
        orders.push(order(2 * ORDERS_PER_CHUNK as u64 + 1));
        assert_eq!(
            orders.chunks[2].closed.as_ptr(),
            first,
            "the allocation is reused"
        );
        assert_eq!(orders.spare.closed.capacity(), 0);
        close(&mut orders, 2 * ORDERS_PER_CHUNK, OrderStatus::Cancelled);
        assert_eq!(orders.chunks[2].closed.as_ptr(), first);
        assert!(orders.is_well_formed());
    }

    /// Orders that close long after their chunk began (holds expiring, say) find room
    /// made for their records: the record vector is never copied to a larger one.
    #[test]
    fn records_of_orders_closed_late_fit_the_room_made_for_them() {
        let mut orders = Orders::default();
        for id in 1..=3 * ORDERS_PER_CHUNK as u64 {
            orders.push(order(id));
        }
        let room = RECORD_LEN_GUESS * (ORDERS_PER_CHUNK + ORDERS_PER_CHUNK / 8);
        for slot in ORDERS_PER_CHUNK..3 * ORDERS_PER_CHUNK {
            close(&mut orders, slot, OrderStatus::Expired);
        }
        for chunk in &orders.chunks[1..] {
            assert!(chunk.closed.len() > ORDERS_PER_CHUNK * 20);
            assert_eq!(chunk.closed.capacity(), room, "made once, never regrown");
        }
        // The next chunk makes room by the records of the chunk before.
        let per_record = orders.chunks[2].closed.len() / ORDERS_PER_CHUNK;
        orders.push(order(3 * ORDERS_PER_CHUNK as u64 + 1));
        assert_eq!(
            orders.chunks[3].closed.capacity(),
            per_record * (ORDERS_PER_CHUNK + ORDERS_PER_CHUNK / 8)
        );
        assert!(orders.is_well_formed());
    }

    /// A book of `count` orders, open, closed and pruned, for the checks of decoded
    /// ones.
    fn mixed(count: usize) -> Orders {
        let mut orders = Orders::default();
        for id in 1..=count as u64 {
            orders.push(order(id));
        }
        for slot in (0..count).filter(|s| s % 3 != 0) {
            close(&mut orders, slot, OrderStatus::Shipped);
        }
        for slot in (0..count).filter(|s| s % 5 == 1) {
            assert!(orders.remove(slot));
        }
        orders
    }

    #[test]
    fn a_decoded_book_whose_parts_disagree_is_refused() {
        let good = mixed(ORDERS_PER_CHUNK + 10);
        assert!(good.is_well_formed());
        let refused = |change: &dyn Fn(&mut Orders), why: &str| {
            let mut orders = good.clone();
            change(&mut orders);
            assert!(!orders.is_well_formed(), "{why}");
        };
        refused(&|o| o.len += 1, "a length past the slots");
        refused(&|o| o.chunks[0].live += 1, "a miscounted chunk");
        refused(
            &|o| o.chunks[0].slots.truncate(10),
            "a short chunk before the last",
        );
        refused(&|o| o.chunks[1].slots[1] = Slot(3 << 62), "an unknown tag");
        refused(
            &|o| o.chunks[1].slots[1] = Slot(5),
            "a pruned slot with a place",
        );
        refused(
            &|o| o.chunks[0].slots[0] = o.chunks[0].slots[3],
            "two ids, one pool slot",
        );
        refused(
            &|o| o.chunks[0].slots[2] = o.chunks[0].slots[5],
            "two ids, one record",
        );
        refused(
            &|o| {
                let one = o.chunks[0].slots[5];
                let closed = o.chunks[0]
                    .slots
                    .iter()
                    .filter(|s| matches!(s.place(), Some(Place::Closed(_))))
                    .count();
                for slot in &mut o.chunks[0].slots {
                    if matches!(slot.place(), Some(Place::Closed(_))) {
                        *slot = one;
                    }
                }
                assert!(closed > 1000);
            },
            "every id of a chunk on one record",
        );
        refused(
            &|o| o.chunks[0].slots[2] = Slot::closed(1),
            "a record cut in two",
        );
        refused(
            &|o| {
                let Some(Place::Closed(at)) = o.chunks[0].slots[2].place() else {
                    panic!("order 3 is closed");
                };
                o.chunks[0].closed[at] = OrderStatus::Held as u8;
            },
            "an open status in a record",
        );
        refused(&|o| o.chunks[0].closed.truncate(7), "records cut short");
        refused(&|o| o.free.push(o.free[0]), "a free slot listed twice");
        refused(
            &|o| {
                o.free.pop();
            },
            "a free slot not listed",
        );
        refused(&|o| o.free.push(0), "a held slot listed as free");
        refused(
            &|o| {
                let at = o.free.pop().expect("a free slot");
                o.open[at as usize / OPEN_PER_CHUNK][at as usize % OPEN_PER_CHUNK] =
                    Some(order(99));
            },
            "an order in the pool that no id names",
        );
        refused(
            &|o| o.open[0].iter_mut().flatten().for_each(|x| x.id.0 += 1),
            "a pool order under another id",
        );
    }

    #[test]
    fn forged_bytes_are_refused_without_panic() {
        let bytes = encode(&mixed(40));
        let (mut decoded, mut refused) = (0, 0);
        for i in 0..bytes.len() {
            let mut forged = bytes.clone();
            forged[i] ^= 0x5a;
            if let Ok(orders) = rkyv::from_bytes::<Orders, rkyv::rancor::Error>(&forged) {
                decoded += 1;
                if orders.is_well_formed() {
                    // What passes the check reads whole.
                    assert!(orders.iter().all(|o| o.to_order().id == o.id()));
                } else {
                    refused += 1;
                }
            }
        }
        assert!(refused > 0 && decoded > refused, "{refused} of {decoded}");
    }

    /// A book whose orders close as new ones arrive keeps its pool at the number of
    /// orders open at once, and its closed orders as records far smaller than orders.
    #[test]
    fn a_steady_book_reuses_its_pool_and_keeps_history_small() {
        use crate::command::{Command, DealerSpec, SkuSpec, WarehouseSpec};
        use crate::Ledger;
        const OPEN: u64 = 100;
        let mut ledger = Ledger::default();
        let mut events = Vec::new();
        let mut run = |ledger: &mut Ledger, command: Command| {
            let outcome = ledger.apply(1, &command, &mut events);
            assert!(outcome.result.is_ok(), "{outcome:?}");
            events.clear();
        };
        let warehouse = WarehouseSpec {
            code: "W".into(),
            region: "R".into(),
        };
        run(&mut ledger, Command::PutWarehouse(warehouse));
        for sku in ["S1", "S2", "S3"] {
            run(&mut ledger, Command::PutSku(SkuSpec::new(sku, 100)));
            let receive = Command::Receive {
                sku: sku.into(),
                warehouse: "W".into(),
                qty: 1_000_000_000,
            };
            run(&mut ledger, receive);
        }
        let dealer = DealerSpec::new("D", "gold", "R", 1_000_000_000_000);
        run(&mut ledger, Command::PutDealer(dealer));
        let count = 3 * ORDERS_PER_CHUNK as u64;
        for i in 1..=count {
            let lines = [("S1", 2), ("S2", 1), ("S3", 5)];
            let request = PlaceOrder::new(format!("PO-{i}"), "D".to_owned(), &lines);
            run(&mut ledger, Command::PlaceOrder(request));
            if i > OPEN {
                // Every other order is shipped, the rest cancelled.
                let order = OrderId(i - OPEN);
                let actions: &[OrderAction] = if i % 2 == 0 {
                    &[OrderAction::Cancel]
                } else {
                    &[OrderAction::Confirm, OrderAction::Ship]
                };
                for &action in actions {
                    run(&mut ledger, Command::ActOnOrder { order, action });
                }
            }
        }
        let orders = &ledger.state.orders;
        let pool: usize = orders.open.iter().map(Vec::len).sum();
        assert_eq!(
            pool as u64,
            OPEN + 1,
            "one slot per open order, and one free"
        );
        assert_eq!(orders.iter_open().count() as u64, OPEN);
        // Every closed order of the first chunk is a narrow record in its small
        // variant (the book's ids and quantities are small, and no rebate is used):
        // header, key (`PO-` and four digits or fewer), three lines.
        let chunk = &orders.chunks[0];
        for (slot, at) in chunk.slots.iter().enumerate() {
            let Some(Place::Closed(at)) = at.place() else {
                panic!("order {} is closed", slot + 1);
            };
            let header = crate::closed::header(&chunk.closed[at..]).expect("a record");
            assert!(header.is_small(), "order {}", slot + 1);
        }
        assert!(chunk.closed.len() <= ORDERS_PER_CHUNK * (7 + 7 + 8 + 9 + 3 * 9));
        // The estimate made room for the next chunks' records: no copy to a larger
        // vector, so no more room than an eighth over what the chunk before used.
        for pair in orders.chunks[..3].windows(2) {
            let (before, after) = (pair[0].closed.len(), pair[1].closed.capacity());
            assert!(after <= before + before / 8 + 256, "{after} for {before}");
        }
        assert!(ledger.check_invariants().is_ok());
        let mut restored = Ledger::restore(&ledger.snapshot()).expect("restores");
        assert!(restored == ledger);
        // Decoded vectors hold only what they need; the last chunk gets room again,
        // so its next records are not a copy to a larger vector.
        let last = restored.state.orders.chunks.last().expect("chunks");
        let (len, room) = (last.closed.len(), last.closed.capacity());
        assert!(room >= len + 100 * 77, "{room} for {len}");
        assert_eq!(last.slots.capacity(), ORDERS_PER_CHUNK);
        let closed_before = restored
            .state
            .orders
            .chunks
            .last()
            .map(|c| c.closed.as_ptr());
        let order = OrderId(count - OPEN + 1);
        let cancel = Command::ActOnOrder {
            order,
            action: OrderAction::Cancel,
        };
        assert!(restored.apply(1, &cancel, &mut Vec::new()).result.is_ok());
        let closed_after = restored
            .state
            .orders
            .chunks
            .last()
            .map(|c| c.closed.as_ptr());
        assert_eq!(closed_before, closed_after, "no copy");
    }
}
