//! Allocation: matching a line's demand to warehouse stock. Warehouses in the dealer's
//! region come first, then the others; within each group the one with most available
//! first, ties by warehouse code. A line may be split across warehouses. Backorder
//! fills take stock in the same order.

use std::cmp::Reverse;

use crate::ids::{PromotionId, RegionId, SkuId, WarehouseId};
use crate::stock::{cell_index, StockCell};

/// One validated, priced line of an order being placed.
#[derive(Clone, Debug)]
pub(crate) struct LinePlan {
    pub sku: SkuId,
    pub qty: u64,
    pub unit_price: i64,
    pub promotion: Option<PromotionId>,
    /// Units that can be reserved now (the rest is short).
    pub available: u64,
}

/// Buffers reused across placements so that the hot path does not allocate.
#[derive(Clone, Debug, Default)]
pub(crate) struct Scratch {
    pub lines: Vec<LinePlan>,
    pub sku_ids: Vec<Option<SkuId>>,
    pub sorted_skus: Vec<SkuId>,
    pub pick: PickScratch,
}

/// A cell with stock, as it sorts in allocation order: out of the dealer's region
/// last, most available first, then by warehouse code rank; and the cell's index.
pub(crate) type Candidate = (bool, Reverse<u64>, u32, usize);

/// Buffers of one line's allocation.
#[derive(Clone, Debug, Default)]
pub(crate) struct PickScratch {
    /// One SKU's cells with stock, when a line is split.
    pub candidates: Vec<Candidate>,
    /// Cells picked, as (cell index, units).
    pub picks: Vec<(usize, u64)>,
    /// The picks as (warehouse, units).
    pub reserved: Vec<(WarehouseId, u64)>,
}

/// The cell a line takes its units from first, for a dealer in `region`: in-region
/// first, then most available, then code rank; as (cell index, available). `None` if
/// no cell has stock. `warehouses` gives each warehouse's (region, code rank), and
/// `local` the warehouses of `region` in code order.
#[inline]
pub(crate) fn first_cell(
    cells: &[StockCell],
    region: RegionId,
    warehouses: &[(RegionId, u32)],
    local: &[WarehouseId],
) -> Option<(usize, u64)> {
    let in_region = if local.len() <= LOCAL_LOOKUPS_MAX {
        best_local_cell(cells, local)
    } else {
        best_cell(cells, warehouses, |own| own == region)
    };
    in_region.or_else(|| best_cell(cells, warehouses, |own| own != region))
}

/// Warehouses in a region up to which the region's cells are found by looking each
/// warehouse's cell up, rather than by reading every cell of the SKU (a book has a
/// few warehouses per region; a SKU may have a cell in each of many regions).
const LOCAL_LOOKUPS_MAX: usize = 4;

/// The cell with most available (ties by code rank) among the cells of `local` (a
/// region's warehouses, in code order) with stock, as (index, available).
#[inline]
fn best_local_cell(cells: &[StockCell], local: &[WarehouseId]) -> Option<(usize, u64)> {
    let mut best: Option<(usize, u64)> = None;
    for &warehouse in local {
        if let Some(i) = cell_index(cells, warehouse) {
            let available = cells[i].available();
            // Strictly more: of equal amounts, the first in code order stays.
            if available > best.map_or(0, |(_, most)| most) {
                best = Some((i, available));
            }
        }
    }
    best
}

/// Choose where `qty` units of a SKU with `cells` come from when the first cell (see
/// [`first_cell`]) does not cover them, for a dealer in `region`, into `picks` as
/// (cell index, units); returns the units found (less than `qty` if stock is short).
/// `warehouses` gives each warehouse's (region, code rank).
pub(crate) fn split_picks(
    cells: &[StockCell],
    region: RegionId,
    warehouses: &[(RegionId, u32)],
    qty: u64,
    candidates: &mut Vec<Candidate>,
    picks: &mut Vec<(usize, u64)>,
) -> u64 {
    picks.clear();
    candidates.clear();
    for (i, cell) in cells.iter().enumerate() {
        let available = cell.available();
        if available > 0 {
            let (own, rank) = warehouses[cell.warehouse.index()];
            candidates.push((own != region, Reverse(available), rank, i));
        }
    }
    candidates.sort_unstable();
    let mut remaining = qty;
    for &(_, Reverse(available), _, i) in candidates.iter() {
        if remaining == 0 {
            break;
        }
        let take = available.min(remaining);
        picks.push((i, take));
        remaining -= take;
    }
    qty - remaining
}

/// The cell with most available (ties by warehouse rank) among the cells with stock
/// whose warehouse region passes `in_group`, as (index, available).
fn best_cell(
    cells: &[StockCell],
    warehouses: &[(RegionId, u32)],
    in_group: impl Fn(RegionId) -> bool,
) -> Option<(usize, u64)> {
    let mut best: Option<(usize, u64, u32)> = None;
    for (i, cell) in cells.iter().enumerate() {
        let (own, rank) = warehouses[cell.warehouse.index()];
        let available = cell.available();
        if available == 0 || !in_group(own) {
            continue;
        }
        if best
            .is_none_or(|(_, most, first)| available > most || (available == most && rank < first))
        {
            best = Some((i, available, rank));
        }
    }
    best.map(|(i, available, _)| (i, available))
}
