//! Read-only views of the ledger: what portals and admins ask. Views carry codes, not
//! ids, and are plain serde data. Lists are bounded by a `limit` (clamped to
//! `PAGE_LIMIT_MAX`) and paged by a cursor.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::ops::Bound;

use serde::Serialize;

use crate::error::Rejection;
use crate::ids::{DealerId, OrderId, SkuId, WarehouseId};
use crate::ledger::Ledger;
use crate::limits::PAGE_LIMIT_MAX;
use crate::order::{Order, OrderStatus};
use crate::stock::StockCell;

/// One (SKU, warehouse) stock row.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StockRow {
    pub warehouse: String,
    pub on_hand: u64,
    pub reserved: u64,
    pub available: u64,
}

/// A SKU's enterprise totals and its per-warehouse rows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SkuStock {
    pub sku: String,
    pub on_hand: u64,
    pub reserved: u64,
    pub available: u64,
    pub backordered: u64,
    pub low_stock_threshold: u64,
    pub warehouses: Vec<StockRow>,
}

/// Filters and paging of [`Ledger::stock_page`].
#[derive(Clone, Debug, Default)]
pub struct StockQuery {
    pub sku: Option<String>,
    pub warehouse: Option<String>,
    pub below_threshold: bool,
    /// The last SKU code of the previous page.
    pub cursor: Option<String>,
    pub limit: usize,
}

/// One page of the stock view, by SKU code.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StockPage {
    pub skus: Vec<SkuStock>,
    pub next_cursor: Option<String>,
}

/// A dealer's account.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DealerView {
    pub code: String,
    pub name: String,
    pub tier: String,
    pub region: String,
    pub credit_limit: i64,
    pub credit_held: i64,
    pub credit_used: i64,
    pub available_credit: i64,
    pub rebate_balance: i64,
    pub rebate_rate_bp: u32,
    pub approval_threshold: Option<i64>,
}

/// What one dealer has reserved, confirmed and backordered of one SKU.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DealerSkuStock {
    pub sku: String,
    /// Reserved for held, pending-approval and (partly filled) backordered orders.
    pub reserved: u64,
    /// Reserved for confirmed orders.
    pub confirmed: u64,
    /// Waiting in the backorder queue.
    pub backordered: u64,
}

/// A SKU as a dealer sees it: its price now and what is available.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SkuView {
    pub sku: String,
    pub name: String,
    pub case_size: u32,
    pub split_case: bool,
    pub min_qty: u64,
    pub base_price: i64,
    /// The unit price an order of `max(min_qty, 1)` units would get now (for the
    /// dealer, if one was named).
    pub unit_price: i64,
    /// The promotion giving `unit_price`, if any.
    pub promotion: Option<String>,
    pub attributes: BTreeMap<String, String>,
    pub available: u64,
    pub warehouses: Vec<StockRow>,
}

/// A SKU below its low-stock threshold.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LowStockAlert {
    pub sku: String,
    pub available: u64,
    pub threshold: u64,
}

fn clamp_limit(limit: usize) -> usize {
    limit.clamp(1, PAGE_LIMIT_MAX)
}

impl Ledger {
    /// The order with this id.
    /// An open order is borrowed; a closed one is decoded from its record.
    pub fn order(&self, id: OrderId) -> Option<Cow<'_, Order>> {
        Some(self.state.orders.get(id.slot()?)?.to_order())
    }

    /// The order with this id, if it is open.
    pub fn open_order(&self, id: OrderId) -> Option<&Order> {
        self.state.orders.get_open(id.slot()?)
    }

    /// How many orders the ledger has (open and closed).
    pub fn order_count(&self) -> u64 {
        self.state.orders.len() as u64
    }

    pub fn sku_id(&self, code: &str) -> Option<SkuId> {
        self.index.skus.get(code).copied()
    }

    pub fn dealer_id(&self, code: &str) -> Option<DealerId> {
        self.index.dealers.get(code).copied()
    }

    pub fn warehouse_id(&self, code: &str) -> Option<WarehouseId> {
        self.index.warehouses.get(code).copied()
    }

    pub fn sku_code(&self, id: SkuId) -> &str {
        &self.state.skus[id.index()].code
    }

    pub fn dealer_code(&self, id: DealerId) -> &str {
        &self.state.dealers[id.index()].code
    }

    pub fn warehouse_code(&self, id: WarehouseId) -> &str {
        &self.state.warehouses[id.index()].code
    }

    /// The order a dealer placed under `client_order_id`.
    pub fn order_by_client_id(
        &self,
        dealer: &str,
        client_order_id: &str,
    ) -> Option<Cow<'_, Order>> {
        let dealer = self.dealer_id(dealer)?;
        let id = self
            .index
            .client_orders
            .get(&self.state.orders, dealer, client_order_id)?;
        self.order(id)
    }

    fn row(&self, cell: &StockCell) -> StockRow {
        StockRow {
            warehouse: self.warehouse_code(cell.warehouse).to_owned(),
            on_hand: cell.on_hand,
            reserved: cell.reserved,
            available: cell.available(),
        }
    }

    /// Rows of a SKU's cells in warehouse code order.
    fn rows(&self, sku: SkuId, only: Option<WarehouseId>) -> Vec<StockRow> {
        let mut cells: Vec<&StockCell> = self.state.skus[sku.index()]
            .cells
            .iter()
            .filter(|c| only.is_none_or(|w| w == c.warehouse))
            .collect();
        cells.sort_by_key(|c| self.index.warehouse_places[c.warehouse.index()].1);
        cells.into_iter().map(|c| self.row(c)).collect()
    }

    /// The three-level stock view, paged by SKU code: per-SKU totals (enterprise) with
    /// per-warehouse rows. A warehouse filter keeps SKUs stocked there and only that
    /// warehouse's row; totals stay enterprise-wide.
    pub fn stock_page(&self, query: &StockQuery) -> Result<StockPage, Rejection> {
        let only_sku = match &query.sku {
            Some(code) => Some(
                self.sku_id(code)
                    .ok_or_else(|| Rejection::UnknownSku { sku: code.clone() })?,
            ),
            None => None,
        };
        let only_warehouse = match &query.warehouse {
            Some(code) => {
                Some(
                    self.warehouse_id(code)
                        .ok_or_else(|| Rejection::UnknownWarehouse {
                            warehouse: code.clone(),
                        })?,
                )
            }
            None => None,
        };
        let limit = clamp_limit(query.limit);
        let start = query
            .cursor
            .as_ref()
            .map_or(Bound::Unbounded, |c| Bound::Excluded(c.clone()));
        let mut skus = Vec::new();
        let mut next_cursor = None;
        for (code, &id) in self.index.skus_by_code.range((start, Bound::Unbounded)) {
            let sku = &self.state.skus[id.index()];
            if only_sku.is_some_and(|s| s != id)
                || only_warehouse.is_some_and(|w| sku.cell(w).is_none())
                || (query.below_threshold && !sku.below_threshold)
            {
                continue;
            }
            if skus.len() == limit {
                next_cursor = skus.last().map(|s: &SkuStock| s.sku.clone());
                break;
            }
            skus.push(SkuStock {
                sku: code.clone(),
                on_hand: sku.on_hand,
                reserved: sku.reserved,
                available: sku.available(),
                backordered: sku.backordered,
                low_stock_threshold: sku.low_stock_threshold,
                warehouses: self.rows(id, only_warehouse),
            });
        }
        Ok(StockPage { skus, next_cursor })
    }

    /// A dealer's account.
    pub fn dealer(&self, code: &str) -> Result<DealerView, Rejection> {
        let id = self
            .dealer_id(code)
            .ok_or_else(|| Rejection::UnknownDealer {
                dealer: code.to_owned(),
            })?;
        let d = &self.state.dealers[id.index()];
        Ok(DealerView {
            code: d.code.clone(),
            name: d.name.clone(),
            tier: self.state.tiers[d.tier.index()].clone(),
            region: self.state.regions[d.region.index()].clone(),
            credit_limit: d.credit_limit,
            credit_held: d.credit_held,
            credit_used: d.credit_used,
            available_credit: d.available_credit(),
            rebate_balance: d.rebate_balance,
            rebate_rate_bp: d.rebate_rate_bp,
            approval_threshold: d.approval_threshold,
        })
    }

    /// The dealer level of the stock view: per SKU (in code order), what the dealer's
    /// open orders have reserved, confirmed and backordered.
    pub fn dealer_stock(&self, code: &str) -> Result<Vec<DealerSkuStock>, Rejection> {
        let id = self
            .dealer_id(code)
            .ok_or_else(|| Rejection::UnknownDealer {
                dealer: code.to_owned(),
            })?;
        let mut by_sku: BTreeMap<&str, DealerSkuStock> = BTreeMap::new();
        // The dealer's open list may name orders closed since: skip them.
        let open = self.index.dealer_orders.maybe_open(id);
        for order in open.filter_map(|order_id| self.open_order(order_id)) {
            for (i, line) in order.lines.iter().enumerate() {
                let code = self.sku_code(line.sku);
                let entry = by_sku.entry(code).or_insert_with(|| DealerSkuStock {
                    sku: code.to_owned(),
                    ..DealerSkuStock::default()
                });
                let allocated = order.allocated(i);
                if order.status == OrderStatus::Confirmed {
                    entry.confirmed += allocated;
                } else {
                    entry.reserved += allocated;
                }
                if order.status == OrderStatus::Backordered {
                    entry.backordered += line.backordered;
                }
            }
        }
        Ok(by_sku.into_values().collect())
    }

    /// A dealer's orders, newest first, optionally of one status; `before` is the
    /// cursor (the last id of the previous page). Returns the page and the next cursor.
    pub fn dealer_orders(
        &self,
        dealer: &str,
        status: Option<OrderStatus>,
        before: Option<OrderId>,
        limit: usize,
    ) -> Result<(Vec<Cow<'_, Order>>, Option<OrderId>), Rejection> {
        let id = self
            .dealer_id(dealer)
            .ok_or_else(|| Rejection::UnknownDealer {
                dealer: dealer.to_owned(),
            })?;
        let limit = clamp_limit(limit);
        let mut page = Vec::new();
        let mut next = None;
        // Pruned orders may still be listed until the list is compacted: skip them.
        let kept = self
            .index
            .dealer_orders
            .newest_first(id, before)
            .filter_map(|id| self.state.orders.get(id.slot()?));
        for order in kept {
            if status.is_some_and(|s| s != order.status()) {
                continue;
            }
            if page.len() == limit {
                next = page.last().map(|o: &Cow<'_, Order>| o.id);
                break;
            }
            page.push(order.to_order());
        }
        Ok((page, next))
    }

    /// A SKU's price (for `dealer`, if named) and availability at `now_ms`.
    pub fn sku_view(
        &self,
        code: &str,
        dealer: Option<&str>,
        now_ms: u64,
    ) -> Result<SkuView, Rejection> {
        let id = self.sku_id(code).ok_or_else(|| Rejection::UnknownSku {
            sku: code.to_owned(),
        })?;
        let sku = &self.state.skus[id.index()];
        let (unit_price, promotion) = match dealer {
            Some(dealer) => {
                let dealer = self
                    .dealer_id(dealer)
                    .ok_or_else(|| Rejection::UnknownDealer {
                        dealer: dealer.to_owned(),
                    })?;
                self.price(id, dealer, sku.min_qty.max(1), now_ms)
            }
            None => (sku.base_price, None),
        };
        Ok(SkuView {
            sku: sku.code.clone(),
            name: sku.name.clone(),
            case_size: sku.case_size,
            split_case: sku.split_case,
            min_qty: sku.min_qty,
            base_price: sku.base_price,
            unit_price,
            promotion: promotion.map(|p| self.state.promotions[p.index()].code.clone()),
            attributes: sku.attributes.clone(),
            available: sku.available(),
            warehouses: self.rows(id, None),
        })
    }

    /// SKUs below their low-stock threshold, in code order.
    pub fn low_stock(&self) -> Vec<LowStockAlert> {
        self.index
            .skus_by_code
            .values()
            .map(|id| &self.state.skus[id.index()])
            .filter(|sku| sku.below_threshold)
            .map(|sku| LowStockAlert {
                sku: sku.code.clone(),
                available: sku.available(),
                threshold: sku.low_stock_threshold,
            })
            .collect()
    }

    /// Held orders whose hold ends before `now_ms + within_ms`, soonest first, at most
    /// `limit` (clamped).
    pub fn holds_expiring(&self, now_ms: u64, within_ms: u64, limit: usize) -> Vec<&Order> {
        let until = now_ms.saturating_add(within_ms);
        self.index
            .holds
            .iter()
            .take_while(|&(deadline, _)| deadline < until)
            .take(clamp_limit(limit))
            .map(|(_, id)| self.open_order(id).expect("held orders exist"))
            .collect()
    }
}
