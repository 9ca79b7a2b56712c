//! The ledger: one tenant's book, and `apply`, the only way to change it.
//!
//! State is split in two. [`State`] is the book itself: plain vectors indexed by dense
//! ids, serialized whole by snapshots and hashed by [`Ledger::digest`]. [`Index`] is
//! everything derived from it (code lookups, the idempotency map, the hold deadlines,
//! the backorder queues); it is rebuilt from `State` on restore, so a snapshot cannot
//! disagree with its indexes.

use std::collections::{BTreeMap, BTreeSet};

use rustc_hash::FxHashMap;

use crate::append_set::AppendSet;
use crate::catalog::{Dealer, Promotion, Sku, Warehouse};
use crate::client_orders::ClientOrders;
use crate::code_index::CodeIndex;
use crate::command::{plain_data, Command};
use crate::dealer_orders::DealerOrders;
use crate::error::Rejection;
use crate::event::{Event, EventKind};
use crate::ids::{DealerId, OrderId, PromotionId, RegionId, SkuId, TierId, WarehouseId};
use crate::limits::{HOLD_TTL_S_DEFAULT, ORDER_LINES_MAX_DEFAULT};
use crate::order::{OrderStatus, Orders};

plain_data! {
    /// The tenant's settings.
    pub struct Settings {
        pub hold_ttl_s: u64,
        pub max_lines: u32,
        /// Tiers whose backorders are filled first, in this order; empty is FIFO.
        pub backorder_priority: Vec<TierId>,
        /// Closed orders (shipped, cancelled, expired, rejected) leave the book this
        /// long after they closed, with their idempotency keys; 0 keeps them forever.
        pub order_retention_s: u64,
    }

    /// The book: everything a snapshot holds.
    #[derive(Default)]
    pub struct State {
        pub settings: Settings,
        /// The last event sequence number given out.
        pub next_event_seq: u64,
        pub tiers: Vec<String>,
        pub regions: Vec<String>,
        pub warehouses: Vec<Warehouse>,
        pub skus: Vec<Sku>,
        pub dealers: Vec<Dealer>,
        pub promotions: Vec<Promotion>,
        /// Units sold at promotion price per (promotion, dealer), keyed by
        /// [`usage_key`]; absent means zero.
        pub promotion_usage: BTreeMap<u64, u64>,
        /// The part of `promotion_usage` that pruned shipped orders account for (their
        /// units stay sold).
        pub pruned_promotion_usage: BTreeMap<u64, u64>,
        /// Orders by id: `orders[id - 1]`.
        pub orders: Orders,
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            hold_ttl_s: HOLD_TTL_S_DEFAULT,
            max_lines: ORDER_LINES_MAX_DEFAULT,
            backorder_priority: Vec::new(),
            order_retention_s: 0,
        }
    }
}

/// Push an event of `kind` at `now_ms`, numbered after the last one (`last_seq`, the
/// book's event counter), for code that holds parts of the book apart.
#[inline]
pub(crate) fn emit_to(last_seq: &mut u64, now_ms: u64, kind: EventKind, events: &mut Vec<Event>) {
    *last_seq += 1;
    events.push(Event {
        seq: *last_seq,
        at_ms: now_ms,
        kind,
    });
}

/// The key of `State::promotion_usage`.
pub(crate) fn usage_key(promotion: PromotionId, dealer: DealerId) -> u64 {
    (u64::from(promotion.0) << 32) | u64::from(dealer.0)
}

/// Lookups derived from [`State`]; never serialized.
#[derive(Default, Clone, Debug)]
pub(crate) struct Index {
    pub tiers: FxHashMap<String, TierId>,
    pub regions: FxHashMap<String, RegionId>,
    pub warehouses: CodeIndex<WarehouseId>,
    /// Per warehouse: its region and its position in code order (the tie-break of
    /// allocation, and the order of stock rows), side by side for allocation.
    pub warehouse_places: Vec<(RegionId, u32)>,
    /// Per region: its warehouses in code order (allocation looks at a dealer's
    /// region's cells first). Regions without warehouses may be missing at the end.
    pub region_warehouses: Vec<Vec<WarehouseId>>,
    pub skus: CodeIndex<SkuId>,
    /// SKUs in code order, for paged stock listings.
    pub skus_by_code: BTreeMap<String, SkuId>,
    pub dealers: CodeIndex<DealerId>,
    pub promotions: CodeIndex<PromotionId>,
    /// Promotions of each SKU, in code order (the tie-break between equal prices).
    /// Only SKUs with promotions have an entry: a small map that stays in cache, where
    /// a list per SKU would cost a cache miss per order line.
    pub sku_promotions: FxHashMap<SkuId, Vec<PromotionId>>,
    /// Idempotency keys: (dealer, client_order_id) → order.
    pub client_orders: ClientOrders,
    /// Per dealer: every order, and the open ones.
    pub dealer_orders: DealerOrders,
    /// Held orders by deadline.
    pub holds: AppendSet<(u64, OrderId)>,
    /// Per SKU: queued orders by (tier rank, order id); FIFO within a rank.
    pub queues: Vec<BTreeSet<(u32, OrderId)>>,
    /// Closed orders by close time, while a retention is set.
    pub closed: AppendSet<(u64, OrderId)>,
}

/// What an applied command did.
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
#[serde(tag = "type", content = "order", rename_all = "snake_case")]
pub enum Effect {
    /// A new order was accepted.
    OrderPlaced(OrderId),
    /// The idempotency key named an existing order with the same body; nothing changed.
    OrderReplayed(OrderId),
    /// An order changed status.
    OrderUpdated(OrderId),
    /// Master data, settings, stock or a payment changed.
    Applied,
    /// Holds were expired (only `Tick` reports this; other commands expire silently
    /// first).
    Ticked { expired: u32 },
}

/// The result of [`Ledger::apply`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub result: Result<Effect, Rejection>,
    /// Whether the ledger changed, so that the command must be logged for replay. True
    /// for every applied command except an idempotent replay and a `Tick` that expired
    /// nothing, and for a refused one when holds expired before it.
    pub changed: bool,
}

/// One tenant's book.
#[derive(Clone, Debug, Default)]
pub struct Ledger {
    pub(crate) state: State,
    pub(crate) index: Index,
    /// Scratch space reused by placements, so the hot path does not allocate for it;
    /// boxed so that lending it out (see `take_scratch`) moves a pointer.
    pub(crate) scratch: Option<Box<crate::allocation::Scratch>>,
}

impl PartialEq for Ledger {
    fn eq(&self, other: &Self) -> bool {
        self.state == other.state
    }
}

impl Ledger {
    /// An empty book with the given settings.
    pub fn new(settings: Settings) -> Self {
        Self {
            state: State {
                settings,
                ..State::default()
            },
            ..Self::default()
        }
    }

    /// Starts loading into the cache what applying `command` will first wait for, so
    /// that a caller holding several commands can overlap one command's memory waits
    /// with the work of the one before: call it for the next command, then apply the
    /// current one (or let [`Self::apply_hinting`] choose when). A hint only: it
    /// changes nothing, and `apply` gives the same outcome with or without it.
    ///
    /// For a placement, that is the slot of its idempotency key: in a book of millions
    /// of orders the key index is far larger than the caches, and a new key's lookup
    /// waits on memory for longer than the rest of a placement takes.
    pub fn prefetch(&self, command: &Command) {
        if let Command::PlaceOrder(request) = command {
            let keys = &self.index.client_orders;
            if !keys.worth_prefetching() {
                return;
            }
            if let Some(&dealer) = self.index.dealers.get(request.dealer.as_str()) {
                keys.prefetch(keys.locate(dealer, &request.client_order_id));
            }
        }
    }

    /// Apply one command at time `now_ms` (milliseconds since the Unix epoch), pushing
    /// the events it causes onto `events`. Holds due at `now_ms` expire first, whatever
    /// the command. A refused command changes nothing else.
    pub fn apply(&mut self, now_ms: u64, command: &Command, events: &mut Vec<Event>) -> Outcome {
        self.apply_hinting(now_ms, command, None, events)
    }

    /// [`Self::apply`], hinting `upcoming` (the caller's next command for this ledger)
    /// as [`Self::prefetch`] does, at a point of the command where the hint's own
    /// waits overlap the command's. A placement hints once it has looked up its SKUs,
    /// before it reads their records: the hint's reads (the next request's dealer, the
    /// key slot's page) then wait alongside those, where a hint made before `apply`
    /// waited alone (in the growing `engine_mix`, 15–45 ns per order less). Any other
    /// command hints first; a placement refused before its SKU lookups (an invalid
    /// key, an unknown dealer) makes no hint, which costs only the next command's wait.
    /// The outcome, events and book are those of `apply`.
    ///
    /// (Hinting those refusals too, from a closure in the placement's early returns,
    /// made every placement about 30 ns slower in the same mix: the compiler laid the
    /// placement out differently. Measure before adding to this path.)
    pub fn apply_hinting(
        &mut self,
        now_ms: u64,
        command: &Command,
        upcoming: Option<&Command>,
        events: &mut Vec<Event>,
    ) -> Outcome {
        if let (Some(next), false) = (upcoming, matches!(command, Command::PlaceOrder(_))) {
            self.prefetch(next);
        }
        let expired = self.expire_due(now_ms, events);
        let pruned = self.prune_due(now_ms);
        // Handlers' results travel as `Result<Effect, Box<Rejection>>`, two words
        // that stay in registers; the 48-byte `Result<Effect, Rejection>` went through
        // the stack, written in narrow stores and copied out in wide loads, which
        // cannot be forwarded from the store buffer and so waited for every store
        // before them to reach the cache (the new order's lines among them).
        let result: Result<Effect, Box<Rejection>> = match command {
            Command::PutWarehouse(spec) => self.put_warehouse(spec).map_err(Box::new),
            Command::PutSku(spec) => self.put_sku(spec, now_ms, events).map_err(Box::new),
            Command::PutDealer(spec) => self.put_dealer(spec).map_err(Box::new),
            Command::PutPromotion(spec) => self.put_promotion(spec).map_err(Box::new),
            Command::PutSettings(patch) => self.put_settings(patch).map_err(Box::new),
            Command::Receive {
                sku,
                warehouse,
                qty,
            } => self
                .receive(sku, warehouse, *qty, now_ms, events)
                .map_err(Box::new),
            Command::Adjust {
                sku,
                warehouse,
                on_hand,
            } => self
                .adjust(sku, warehouse, *on_hand, now_ms, events)
                .map_err(Box::new),
            Command::PlaceOrder(request) => self.place(now_ms, request, upcoming, events),
            Command::ActOnOrder { order, action } => self
                .act_on_order(now_ms, *order, *action, events)
                .map_err(Box::new),
            Command::RecordPayment { dealer, amount } => self
                .record_payment(dealer, *amount, now_ms, events)
                .map_err(Box::new),
            Command::Tick => Ok(Effect::Ticked { expired }),
        };
        // A replay and a tick that expired nothing change nothing; expiries always do.
        let changed = expired > 0
            || pruned > 0
            || matches!(&result, Ok(effect)
                if !matches!(effect, Effect::OrderReplayed(_) | Effect::Ticked { .. }));
        Outcome {
            result: result.map_err(|rejection| *rejection),
            changed,
        }
    }

    /// The tenant's settings.
    pub fn settings(&self) -> &Settings {
        &self.state.settings
    }

    /// The book itself, read-only.
    pub fn state(&self) -> &State {
        &self.state
    }

    /// The last event sequence number given out (0 before the first event).
    pub fn last_event_seq(&self) -> u64 {
        self.state.next_event_seq
    }

    /// The scratch space, lent out while a command uses it beside `&mut self`; give it
    /// back by assigning `Some(scratch)` to `self.scratch`.
    pub(crate) fn take_scratch(&mut self) -> Box<crate::allocation::Scratch> {
        self.scratch.take().unwrap_or_default()
    }

    pub(crate) fn emit(&mut self, now_ms: u64, kind: EventKind, events: &mut Vec<Event>) {
        emit_to(&mut self.state.next_event_seq, now_ms, kind, events);
    }

    /// A dealer's place in backorder queues: its tier's position in the priority list,
    /// or after every listed tier.
    pub(crate) fn tier_rank(&self, dealer: DealerId) -> u32 {
        let tier = self.state.dealers[dealer.index()].tier;
        let priority = &self.state.settings.backorder_priority;
        priority
            .iter()
            .position(|&t| t == tier)
            .unwrap_or(priority.len()) as u32
    }

    pub(crate) fn intern_tier(&mut self, name: &str) -> TierId {
        if let Some(&id) = self.index.tiers.get(name) {
            return id;
        }
        let id = TierId(self.state.tiers.len() as u32);
        self.state.tiers.push(name.to_owned());
        self.index.tiers.insert(name.to_owned(), id);
        id
    }

    pub(crate) fn intern_region(&mut self, name: &str) -> RegionId {
        if let Some(&id) = self.index.regions.get(name) {
            return id;
        }
        let id = RegionId(self.state.regions.len() as u32);
        self.state.regions.push(name.to_owned());
        self.index.regions.insert(name.to_owned(), id);
        id
    }

    /// Rebuild every index from the state (after restore).
    pub(crate) fn rebuild_index(&mut self) {
        let state = &self.state;
        let mut index = Index {
            tiers: names_index(&state.tiers, TierId),
            regions: names_index(&state.regions, RegionId),
            warehouses: codes_index(state.warehouses.iter().map(|w| &w.code), WarehouseId),
            skus: codes_index(state.skus.iter().map(|s| &s.code), SkuId),
            dealers: codes_index(state.dealers.iter().map(|d| &d.code), DealerId),
            promotions: codes_index(state.promotions.iter().map(|p| &p.code), PromotionId),
            ..Index::default()
        };
        index.skus_by_code = state
            .skus
            .iter()
            .enumerate()
            .map(|(i, sku)| (sku.code.clone(), SkuId(i as u32)))
            .collect();
        for (i, promotion) in state.promotions.iter().enumerate() {
            index
                .sku_promotions
                .entry(promotion.sku)
                .or_default()
                .push(PromotionId(i as u32));
        }
        for list in index.sku_promotions.values_mut() {
            list.sort_by(|a, b| {
                state.promotions[a.index()]
                    .code
                    .cmp(&state.promotions[b.index()].code)
            });
        }
        let dealers = state.dealers.len();
        (0..dealers).for_each(|_| index.dealer_orders.add_dealer());
        let mut holds = Vec::new();
        for order in state.orders.iter() {
            let (id, dealer) = (order.id(), order.dealer());
            index
                .client_orders
                .insert(dealer, order.client_order_id(), id);
            let open = order.open();
            index.dealer_orders.rebuilt(dealer, id, open.is_some());
            if let Some(open) = open {
                if let Some(at) = open.hold_expires_at_ms {
                    holds.push((at, id));
                }
            }
        }
        index.holds = AppendSet::from_keys(holds);
        self.index = index;
        self.rank_warehouses();
        self.rebuild_queues();
        self.rebuild_closed();
    }

    /// Recompute every backorder queue from the backordered orders (after restore, or
    /// when the priority or a queued dealer's tier changes).
    pub(crate) fn rebuild_queues(&mut self) {
        let mut queues = vec![BTreeSet::new(); self.state.skus.len()];
        for order in self.state.orders.iter_open() {
            if order.status != OrderStatus::Backordered {
                continue;
            }
            let rank = self.tier_rank(order.dealer);
            for line in order.lines.iter().filter(|l| l.backordered > 0) {
                queues[line.sku.index()].insert((rank, order.id));
            }
        }
        self.index.queues = queues;
    }

    /// Recompute the warehouses' code order and places (when one is added or moves
    /// region).
    pub(crate) fn rank_warehouses(&mut self) {
        let mut by_code: Vec<usize> = (0..self.state.warehouses.len()).collect();
        by_code.sort_by(|&a, &b| {
            self.state.warehouses[a]
                .code
                .cmp(&self.state.warehouses[b].code)
        });
        let mut rank = vec![0; by_code.len()];
        let mut by_region: Vec<Vec<WarehouseId>> = vec![Vec::new(); self.state.regions.len()];
        for (position, &warehouse) in by_code.iter().enumerate() {
            rank[warehouse] = position as u32;
            let region = self.state.warehouses[warehouse].region.index();
            by_region[region].push(WarehouseId(warehouse as u32));
        }
        self.index.region_warehouses = by_region;
        self.index.warehouse_places = self
            .state
            .warehouses
            .iter()
            .zip(rank)
            .map(|(warehouse, rank)| (warehouse.region, rank))
            .collect();
    }
}

fn names_index<T>(names: &[String], id: impl Fn(u32) -> T) -> FxHashMap<String, T> {
    names
        .iter()
        .enumerate()
        .map(|(i, name)| (name.clone(), id(i as u32)))
        .collect()
}

fn codes_index<'a, T: Copy>(
    codes: impl Iterator<Item = &'a String>,
    id: impl Fn(u32) -> T,
) -> CodeIndex<T> {
    codes
        .enumerate()
        .map(|(i, code)| (code.as_str(), id(i as u32)))
        .collect()
}
