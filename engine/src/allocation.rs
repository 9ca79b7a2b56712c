//! Allocation: matching a line's demand to warehouse stock. Warehouses in the dealer's
//! region come first, then the others; within each group the one with most available
//! first, ties by warehouse code. A line may be split across warehouses. Backorder
//! fills take stock in the same order.

use crate::catalog::Sku;
use crate::ids::{PromotionId, RegionId, SkuId, WarehouseId};

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
    /// (sort key, warehouse, available) of one SKU's candidate cells.
    pub candidates: Vec<(u64, WarehouseId, u64)>,
    pub picks: Vec<(WarehouseId, u64)>,
}

/// Choose where `qty` units of `sku` come from, for a dealer in `region`, into `picks`
/// as (warehouse, units); returns the units found (less than `qty` if stock is short).
pub(crate) fn pick_warehouses(
    sku: &Sku,
    region: RegionId,
    warehouse_region: impl Fn(WarehouseId) -> RegionId,
    warehouse_rank: &[u32],
    qty: u64,
    candidates: &mut Vec<(u64, WarehouseId, u64)>,
    picks: &mut Vec<(WarehouseId, u64)>,
) -> u64 {
    picks.clear();
    candidates.clear();
    for cell in &sku.cells {
        let available = cell.available();
        if available == 0 {
            continue;
        }
        // One integer orders the first two criteria: the out-of-region bit on top,
        // then available descending (quantities are bounded far below 2^63); the code
        // rank breaks ties.
        let other_region = u64::from(warehouse_region(cell.warehouse) != region);
        let key = (other_region << 63) | ((u64::MAX >> 1) - available.min(u64::MAX >> 1));
        candidates.push((key, cell.warehouse, available));
    }
    let order_key =
        |&(key, warehouse, _): &(u64, WarehouseId, u64)| (key, warehouse_rank[warehouse.index()]);
    // Usually the first warehouse covers the line: find it in one pass and sort only
    // when the line must be split.
    if let Some(first) = candidates.iter().min_by_key(|c| order_key(c)) {
        if first.2 >= qty {
            picks.push((first.1, qty));
            return qty;
        }
    }
    candidates.sort_unstable_by_key(order_key);
    let mut remaining = qty;
    for &(_, warehouse, available) in candidates.iter() {
        if remaining == 0 {
            break;
        }
        let take = available.min(remaining);
        picks.push((warehouse, take));
        remaining -= take;
    }
    qty - remaining
}
