//! Stock per (SKU, warehouse): receipts, counts, and the low-stock watch.
//! Invariant, always: `0 ≤ reserved ≤ on_hand` per cell, and the SKU's sums agree.

use crate::catalog::{check_qty, Sku};
use crate::command::plain_data;
use crate::error::Rejection;
use crate::event::{Event, EventKind};
use crate::ids::{SkuId, WarehouseId};
use crate::ledger::{Effect, Ledger};
use crate::limits::QTY_MAX;

plain_data! {
    /// One warehouse's stock of one SKU.
    pub struct StockCell {
        pub warehouse: WarehouseId,
        pub on_hand: u64,
        pub reserved: u64,
    }
}

/// A SKU's cells: up to `INLINE_CELLS` inline in the SKU, so that placing an order
/// reads a SKU and its stock without following a pointer.
pub type StockCells = smallvec::SmallVec<[StockCell; INLINE_CELLS]>;
/// Cells kept inline in a [`Sku`].
pub const INLINE_CELLS: usize = 8;

impl StockCell {
    /// `on_hand - reserved`.
    pub fn available(&self) -> u64 {
        self.on_hand - self.reserved
    }
}

impl Sku {
    pub(crate) fn cell_mut(&mut self, warehouse: WarehouseId) -> Option<&mut StockCell> {
        let at = cell_index(&self.cells, warehouse)?;
        self.cells.get_mut(at)
    }

    /// The cell of `warehouse`, if it was ever stocked.
    pub fn cell(&self, warehouse: WarehouseId) -> Option<&StockCell> {
        self.cells.get(cell_index(&self.cells, warehouse)?)
    }
}

/// Where the cell of `warehouse` is in a SKU's `cells`. Cells are added as warehouses
/// first stock the SKU, so where a SKU was first stocked in its warehouses in the
/// order they were created (as when every SKU is stocked everywhere), a warehouse's
/// cell sits at its own id: that place is tried first.
#[inline]
pub(crate) fn cell_index(cells: &[StockCell], warehouse: WarehouseId) -> Option<usize> {
    let guess = warehouse.index();
    if cells.get(guess).is_some_and(|c| c.warehouse == warehouse) {
        return Some(guess);
    }
    cells.iter().position(|c| c.warehouse == warehouse)
}

impl Ledger {
    pub(crate) fn stock_ids(
        &self,
        sku: &str,
        warehouse: &str,
    ) -> Result<(SkuId, WarehouseId), Rejection> {
        let sku_id = *self
            .index
            .skus
            .get(sku)
            .ok_or_else(|| Rejection::UnknownSku {
                sku: sku.to_owned(),
            })?;
        let warehouse_id =
            *self
                .index
                .warehouses
                .get(warehouse)
                .ok_or_else(|| Rejection::UnknownWarehouse {
                    warehouse: warehouse.to_owned(),
                })?;
        Ok((sku_id, warehouse_id))
    }

    pub(crate) fn receive(
        &mut self,
        sku: &str,
        warehouse: &str,
        qty: u64,
        now_ms: u64,
        events: &mut Vec<Event>,
    ) -> Result<Effect, Rejection> {
        let (sku_id, warehouse_id) = self.stock_ids(sku, warehouse)?;
        check_qty("qty", qty, 1)?;
        let current = self.state.skus[sku_id.index()]
            .cell(warehouse_id)
            .map_or(0, |c| c.on_hand);
        let on_hand = current
            .checked_add(qty)
            .filter(|&q| q <= QTY_MAX)
            .ok_or_else(|| Rejection::overflow("on_hand"))?;
        self.set_on_hand(sku_id, warehouse_id, on_hand)?;
        let kind = EventKind::StockReceived {
            sku: sku_id,
            warehouse: warehouse_id,
            qty,
            on_hand,
        };
        self.emit(now_ms, kind, events);
        self.settle_sku(sku_id, now_ms, events);
        Ok(Effect::Applied)
    }

    pub(crate) fn adjust(
        &mut self,
        sku: &str,
        warehouse: &str,
        on_hand: u64,
        now_ms: u64,
        events: &mut Vec<Event>,
    ) -> Result<Effect, Rejection> {
        let (sku_id, warehouse_id) = self.stock_ids(sku, warehouse)?;
        check_qty("on_hand", on_hand, 0)?;
        self.set_on_hand(sku_id, warehouse_id, on_hand)?;
        let kind = EventKind::StockAdjusted {
            sku: sku_id,
            warehouse: warehouse_id,
            on_hand,
        };
        self.emit(now_ms, kind, events);
        self.settle_sku(sku_id, now_ms, events);
        Ok(Effect::Applied)
    }

    /// Set a cell's on_hand (creating the cell), keeping the SKU's sum; refused below
    /// what the cell has reserved.
    fn set_on_hand(
        &mut self,
        sku: SkuId,
        warehouse: WarehouseId,
        on_hand: u64,
    ) -> Result<(), Rejection> {
        let sku = &mut self.state.skus[sku.index()];
        let (current, reserved) = sku
            .cell(warehouse)
            .map_or((0, 0), |c| (c.on_hand, c.reserved));
        if on_hand < reserved {
            return Err(Rejection::BelowReserved { on_hand, reserved });
        }
        let total = (sku.on_hand - current)
            .checked_add(on_hand)
            .ok_or_else(|| Rejection::overflow("on_hand"))?;
        match sku.cell_mut(warehouse) {
            Some(cell) => cell.on_hand = on_hand,
            None => sku.cells.push(StockCell {
                warehouse,
                on_hand,
                reserved: 0,
            }),
        }
        sku.on_hand = total;
        Ok(())
    }

    /// After any change to a SKU's stock: fill its backorder queue from what is
    /// available, then watch the low-stock threshold.
    pub(crate) fn settle_sku(&mut self, sku: SkuId, now_ms: u64, events: &mut Vec<Event>) {
        self.fill_backorders(sku, now_ms, events);
        self.check_low_stock(sku, now_ms, events);
    }

    /// Fire `low_stock` when total available crosses below the threshold.
    pub(crate) fn check_low_stock(&mut self, sku_id: SkuId, now_ms: u64, events: &mut Vec<Event>) {
        let sku = &mut self.state.skus[sku_id.index()];
        let threshold = sku.low_stock_threshold;
        let available = sku.available();
        let below = threshold > 0 && available < threshold;
        let crossed = below && !sku.below_threshold;
        sku.below_threshold = below;
        if crossed {
            self.emit(
                now_ms,
                EventKind::LowStock {
                    sku: sku_id,
                    available,
                    threshold,
                },
                events,
            );
        }
    }
}
