//! Placing an order, in one atomic step: idempotency, validation, pricing, rebate and
//! credit, allocation, then either all-or-nothing rejection or reservation plus
//! backorder queueing. Everything is checked before anything changes.

use crate::allocation::{first_cell, split_picks, LinePlan, PickScratch, Scratch};
use crate::catalog::Sku;
use crate::client_orders::KeyLocation;
use crate::command::{Command, PlaceOrder, Unit};
use crate::error::{Rejection, ShortLine};
use crate::event::{Event, EventKind};
use crate::ids::{is_valid_client_order_id, DealerId, OrderId, RegionId, SkuId, WarehouseId};
use crate::ledger::{emit_to, usage_key, Effect, Ledger};
use crate::limits::{MONEY_MAX, QTY_MAX};
use crate::order::{Allocation, Order, OrderLine, OrderStatus};

/// What a checked placement passes on to be committed.
#[derive(Clone, Copy)]
struct Placed {
    dealer: DealerId,
    /// Where its idempotency key goes.
    key_at: KeyLocation,
    total: i64,
    /// Whether some line is short (the order is backordered).
    short: bool,
}

impl Ledger {
    /// Place `request`, hinting `upcoming` once its SKUs are looked up (see
    /// `Ledger::apply_hinting`).
    pub(crate) fn place(
        &mut self,
        now_ms: u64,
        request: &PlaceOrder,
        upcoming: Option<&Command>,
        events: &mut Vec<Event>,
    ) -> Result<Effect, Box<Rejection>> {
        if !is_valid_client_order_id(&request.client_order_id) {
            return Err(Rejection::invalid(
                "client_order_id",
                "must be 1-128 printable ASCII characters",
            )
            .into());
        }
        let dealer = *self
            .index
            .dealers
            .get(request.dealer.as_str())
            .ok_or_else(|| Rejection::UnknownDealer {
                dealer: request.dealer.clone(),
            })?;
        let mut scratch = self.take_scratch();
        let result = self.place_with(now_ms, request, dealer, upcoming, &mut scratch, events);
        self.scratch = Some(scratch);
        result
    }

    fn place_with(
        &mut self,
        now_ms: u64,
        request: &PlaceOrder,
        dealer: DealerId,
        upcoming: Option<&Command>,
        scratch: &mut Scratch,
        events: &mut Vec<Event>,
    ) -> Result<Effect, Box<Rejection>> {
        // The key's slot is seldom in the cache once the book holds millions of keys:
        // start loading it now, and look the key up after the lines' SKUs.
        let (keys, key) = (&self.index.client_orders, &request.client_order_id);
        let key_at = keys.locate(dealer, key);
        keys.prefetch(key_at);
        scratch.sku_ids.clear();
        scratch.sku_ids.extend(
            request
                .lines
                .iter()
                .map(|l| self.index.skus.get(l.sku.as_str()).copied()),
        );
        // The lines' SKU records come next, and are seldom in the cache: hint the next
        // command now, so that its waits overlap theirs.
        if let Some(next) = upcoming {
            self.prefetch(next);
        }
        if let Some(id) = keys.get_at(key_at, &self.state.orders, dealer, key) {
            let (_, order) = self.find_order(id)?;
            return if order.to_order().same_request(request, &scratch.sku_ids) {
                Ok(Effect::OrderReplayed(id))
            } else {
                Err(Rejection::IdempotencyConflict { order: id }.into())
            };
        }
        let (total, short) = self.plan_lines(now_ms, request, dealer, scratch)?;
        let account = &self.state.dealers[dealer.index()];
        if !(0..=MONEY_MAX).contains(&request.use_rebate) {
            return Err(Rejection::invalid(
                "use_rebate",
                format!("must be between 0 and {MONEY_MAX}"),
            )
            .into());
        }
        let allowed = account.rebate_balance.min(total);
        if request.use_rebate > allowed {
            return Err(Rejection::RebateExceeded {
                requested: request.use_rebate,
                allowed,
            }
            .into());
        }
        let needed = total - request.use_rebate;
        let available = account.available_credit();
        if needed > available {
            return Err(Rejection::CreditExceeded { needed, available }.into());
        }
        if short && !request.backorder {
            let lines = scratch
                .lines
                .iter()
                .filter(|l| l.available < l.qty)
                .map(|l| ShortLine {
                    sku: self.state.skus[l.sku.index()].code.clone(),
                    requested: l.qty,
                    available: l.available,
                })
                .collect();
            return Err(Rejection::InsufficientStock { lines }.into());
        }
        let placed = Placed {
            dealer,
            key_at,
            total,
            short,
        };
        let id = self.commit_order(now_ms, request, placed, scratch, events);
        Ok(Effect::OrderPlaced(id))
    }

    /// Validate and price every line into `scratch.lines`; returns the order total and
    /// whether some line is short of stock. (A rejection is boxed so that the result
    /// travels in registers: see `Ledger::apply`.)
    fn plan_lines(
        &self,
        now_ms: u64,
        request: &PlaceOrder,
        dealer: DealerId,
        scratch: &mut Scratch,
    ) -> Result<(i64, bool), Box<Rejection>> {
        let max_lines = self.state.settings.max_lines as usize;
        if request.lines.is_empty() || request.lines.len() > max_lines {
            return Err(
                Rejection::invalid("lines", format!("must have 1 to {max_lines} lines")).into(),
            );
        }
        scratch.lines.clear();
        let mut total: i64 = 0;
        let mut short = false;
        for (i, (line, id)) in request.lines.iter().zip(&scratch.sku_ids).enumerate() {
            let sku_id = id.ok_or_else(|| Rejection::UnknownSku {
                sku: line.sku.clone(),
            })?;
            let sku = &self.state.skus[sku_id.index()];
            prefetch_cells(sku);
            if !(1..=QTY_MAX).contains(&line.qty) {
                return Err(Rejection::invalid(
                    format!("lines[{i}].qty"),
                    format!("must be between 1 and {QTY_MAX}"),
                )
                .into());
            }
            let case_size = u64::from(sku.case_size);
            let qty = match line.unit {
                Unit::Unit => line.qty,
                Unit::Case => line
                    .qty
                    .checked_mul(case_size)
                    .filter(|&q| q <= QTY_MAX)
                    .ok_or_else(|| Rejection::overflow(format!("lines[{i}].qty")))?,
            };
            if !sku.split_case && qty % case_size != 0 {
                return Err(Rejection::invalid(
                    format!("lines[{i}].qty"),
                    format!("SKU `{}` is sold in whole cases of {case_size}", sku.code),
                )
                .into());
            }
            if qty < sku.min_qty {
                return Err(Rejection::invalid(
                    format!("lines[{i}].qty"),
                    format!("SKU `{}` needs at least {} units", sku.code, sku.min_qty),
                )
                .into());
            }
            let (unit_price, promotion) = self.price(sku_id, dealer, qty, now_ms);
            total = i64::try_from(qty)
                .ok()
                .and_then(|q| q.checked_mul(unit_price))
                .and_then(|amount| total.checked_add(amount))
                .ok_or_else(|| Rejection::overflow("total"))?;
            let available = sku.available();
            short |= available < qty;
            scratch.lines.push(LinePlan {
                sku: sku_id,
                qty,
                unit_price,
                promotion,
                available,
            });
        }
        if let Some(sku) = repeated_sku(&scratch.lines, &mut scratch.sorted_skus) {
            let code = &self.state.skus[sku.index()].code;
            return Err(Rejection::invalid("lines", format!("SKU `{code}` appears twice")).into());
        }
        Ok((total, short))
    }

    /// Make the checked order real. Cannot fail: everything was checked.
    fn commit_order(
        &mut self,
        now_ms: u64,
        request: &PlaceOrder,
        placed: Placed,
        scratch: &mut Scratch,
        events: &mut Vec<Event>,
    ) -> OrderId {
        let Placed {
            dealer,
            key_at,
            total,
            short,
        } = placed;
        let id = OrderId(self.state.orders.len() as u64 + 1);
        let region = self.state.dealers[dealer.index()].region;
        let status = self.initial_status(dealer, total, short);
        let hold_expires_at_ms = (status == OrderStatus::Held).then(|| self.hold_deadline(now_ms));
        self.emit(
            now_ms,
            EventKind::OrderPlaced {
                order: id,
                dealer,
                status,
                total,
            },
            events,
        );
        let rank = if short { self.tier_rank(dealer) } else { 0 };
        // The order is made in its slot of the pool, and its lines and allocations
        // are written there as the stock is reserved: the book's parts it changes are
        // borrowed apart from it.
        let crate::ledger::State {
            orders,
            skus,
            promotions,
            promotion_usage,
            dealers,
            next_event_seq,
            ..
        } = &mut self.state;
        let hold = hold_expires_at_ms;
        let order =
            orders.push_with(|| Order::placed(id, dealer, status, total, hold, request, now_ms));
        // The key is copied into the slot in place: built apart, as `Order::placed`
        // did, its bytes went through the stack in narrow stores and were read back
        // as words, which cannot be forwarded from those stores, so the copy waited
        // for every store before it (the new order's, to cold memory) to reach the
        // cache.
        order.client_order_id.push_str(&request.client_order_id);
        order.make_room(scratch.lines.len());
        let warehouses = &self.index.warehouse_places;
        let local = local_warehouses(&self.index.region_warehouses, region);
        for (i, (plan, request_line)) in scratch.lines.iter().zip(&request.lines).enumerate() {
            let take = plan.qty.min(plan.available);
            if take > 0 {
                let mut reserved = |warehouse, qty| {
                    let line = i as u32;
                    order.allocations.push(Allocation {
                        line,
                        warehouse,
                        qty,
                    });
                    let sku = plan.sku;
                    let kind = EventKind::StockReserved {
                        order: id,
                        sku,
                        warehouse,
                        qty,
                    };
                    emit_to(next_event_seq, now_ms, kind, events);
                };
                let pick = &mut scratch.pick;
                match reserve(skus, warehouses, local, plan.sku, region, take, pick) {
                    Some(warehouse) => reserved(warehouse, take),
                    None => pick.reserved.iter().for_each(|&(w, qty)| reserved(w, qty)),
                }
            }
            let backordered = plan.qty - take;
            if backordered > 0 {
                skus[plan.sku.index()].backordered += backordered;
                self.index.queues[plan.sku.index()].insert((rank, id));
                let kind = EventKind::BackorderQueued {
                    order: id,
                    sku: plan.sku,
                    qty: backordered,
                };
                emit_to(next_event_seq, now_ms, kind, events);
            }
            if let Some(promotion) = plan.promotion {
                promotions[promotion.index()].used += plan.qty;
                *promotion_usage
                    .entry(usage_key(promotion, dealer))
                    .or_default() += plan.qty;
            }
            order.lines.push(OrderLine {
                sku: plan.sku,
                requested_qty: request_line.qty,
                unit: request_line.unit,
                qty: plan.qty,
                unit_price: plan.unit_price,
                backordered,
                promotion: plan.promotion,
            });
        }
        let account = &mut dealers[dealer.index()];
        account.credit_held += total - request.use_rebate;
        account.rebate_balance -= request.use_rebate;
        let key = (key_at, request.client_order_id.as_str());
        self.index_new_order(dealer, id, key, hold_expires_at_ms);
        for plan in &scratch.lines {
            self.check_low_stock(plan.sku, now_ms, events);
        }
        id
    }

    /// The status a new order of `dealer` for `total` starts in: backordered if a line
    /// is `short`, else pending approval if the total is over the dealer's approval
    /// threshold, else held.
    fn initial_status(&self, dealer: DealerId, total: i64, short: bool) -> OrderStatus {
        let account = &self.state.dealers[dealer.index()];
        if short {
            OrderStatus::Backordered
        } else if account.approval_threshold.is_some_and(|t| total > t) {
            OrderStatus::PendingApproval
        } else {
            OrderStatus::Held
        }
    }

    /// Enter a new order into the derived indexes.
    fn index_new_order(
        &mut self,
        dealer: DealerId,
        id: OrderId,
        (key_at, key): (KeyLocation, &str),
        hold: Option<u64>,
    ) {
        self.index.client_orders.insert_at(key_at, dealer, key, id);
        let orders = &self.state.orders;
        self.index
            .dealer_orders
            .placed(dealer, id, |o| orders.listed(o));
        if let Some(at) = hold {
            self.index.holds.insert((at, id));
        }
    }

    /// Reserve `qty` available units of `sku` for a dealer in `region`, from the
    /// warehouses in allocation order; `scratch.reserved` says where they came from,
    /// as (warehouse, units).
    pub(crate) fn pick_and_reserve(
        &mut self,
        sku: SkuId,
        region: RegionId,
        qty: u64,
        scratch: &mut PickScratch,
    ) {
        let places = &self.index.warehouse_places;
        let local = local_warehouses(&self.index.region_warehouses, region);
        let skus = &mut self.state.skus;
        if let Some(warehouse) = reserve(skus, places, local, sku, region, qty, scratch) {
            scratch.reserved.clear();
            scratch.reserved.push((warehouse, qty));
        }
    }

    /// When a hold that starts now ends.
    pub(crate) fn hold_deadline(&self, now_ms: u64) -> u64 {
        now_ms.saturating_add(self.state.settings.hold_ttl_s * 1000)
    }
}

impl Order {
    /// Room for `lines` lines and as many allocations, made at once for an order of
    /// more lines than are kept inline (a no-op for most orders).
    #[inline]
    fn make_room(&mut self, lines: usize) {
        if lines > crate::order::INLINE_LINES {
            self.lines.reserve_exact(lines);
            self.allocations.reserve_exact(lines);
        }
    }

    /// A new order of `dealer` for `request` at `now_ms`, in `status`, with no lines
    /// yet and an empty key (a placement writes them in place).
    #[inline]
    fn placed(
        id: OrderId,
        dealer: DealerId,
        status: OrderStatus,
        total: i64,
        hold_expires_at_ms: Option<u64>,
        request: &PlaceOrder,
        now_ms: u64,
    ) -> Self {
        Self {
            id,
            // Filled in place by `commit_order`.
            client_order_id: compact_str::CompactString::const_new(""),
            dealer,
            status,
            lines: crate::order::OrderLines::new(),
            allocations: crate::order::Allocations::new(),
            total,
            rebate_used: request.use_rebate,
            backorder: request.backorder,
            created_at_ms: now_ms,
            updated_at_ms: now_ms,
            hold_expires_at_ms,
        }
    }
}

/// The warehouses of `region`, in code order, from the index's `region_warehouses`.
fn local_warehouses(by_region: &[Vec<WarehouseId>], region: RegionId) -> &[WarehouseId] {
    by_region.get(region.index()).map_or(&[], Vec::as_slice)
}

/// Reserve `qty` available units of `sku` for a dealer in `region`, from the
/// warehouses in allocation order (`places`: each warehouse's region and code rank;
/// `local`: the warehouses of `region`, in code order).
/// Usually one cell covers the line: then it returns that cell's warehouse. Else the
/// units come from several cells, listed in `scratch.reserved` as (warehouse, units),
/// and it returns `None`.
#[inline]
fn reserve(
    skus: &mut [Sku],
    places: &[(RegionId, u32)],
    local: &[WarehouseId],
    sku: SkuId,
    region: RegionId,
    qty: u64,
    scratch: &mut PickScratch,
) -> Option<WarehouseId> {
    let sku = &mut skus[sku.index()];
    match first_cell(&sku.cells, region, places, local) {
        Some((i, available)) if available >= qty => {
            let cell = &mut sku.cells[i];
            cell.reserved += qty;
            sku.reserved += qty;
            Some(cell.warehouse)
        }
        _ => {
            reserve_split(sku, places, region, qty, scratch);
            None
        }
    }
}

/// [`reserve`] of a line no one cell covers.
#[cold]
#[inline(never)]
fn reserve_split(
    sku: &mut Sku,
    places: &[(RegionId, u32)],
    region: RegionId,
    qty: u64,
    scratch: &mut PickScratch,
) {
    scratch.reserved.clear();
    let (candidates, picks) = (&mut scratch.candidates, &mut scratch.picks);
    let found = split_picks(&sku.cells, region, places, qty, candidates, picks);
    assert_eq!(found, qty, "available stock is in the cells");
    for &(i, units) in &scratch.picks {
        let cell = &mut sku.cells[i];
        cell.reserved += units;
        assert!(cell.reserved <= cell.on_hand, "reservation within on_hand");
        scratch.reserved.push((cell.warehouse, units));
    }
    sku.reserved += qty;
}

/// Starts loading a SKU's stock cells into the cache. A SKU's cells (three or four
/// cache lines) are seldom in the cache when an order for it arrives or closes:
/// allocation reads them all once the order is checked, and shipping or releasing an
/// order reads them after its other bookkeeping, which hides the wait.
#[inline]
pub(crate) fn prefetch_cells(sku: &Sku) {
    use prefetch_index::prefetch_index;
    // Every other cell's start and the address just past the last cell: cells are
    // shorter than half a cache line, so for the eight cells kept inline these reach
    // every line the cells span. (Addresses past the end are harmless: a prefetch
    // reads nothing into the program.)
    let cells = &sku.cells[..];
    for i in [0, 2, 4, 6] {
        prefetch_index(cells, i);
    }
    prefetch_index(cells, cells.len());
}

/// The smallest SKU that more than one line names, if any: pairwise for a few lines,
/// by sorting (into `sorted`) for many.
fn repeated_sku(lines: &[LinePlan], sorted: &mut Vec<SkuId>) -> Option<SkuId> {
    const PAIRWISE_MAX: usize = 8;
    if lines.len() <= PAIRWISE_MAX {
        let mut repeated: Option<SkuId> = None;
        for (i, line) in lines.iter().enumerate() {
            if lines[..i].iter().any(|l| l.sku == line.sku) {
                repeated = Some(repeated.map_or(line.sku, |r| r.min(line.sku)));
            }
        }
        return repeated;
    }
    sorted.clear();
    sorted.extend(lines.iter().map(|l| l.sku));
    sorted.sort_unstable();
    sorted.windows(2).find(|w| w[0] == w[1]).map(|w| w[0])
}
