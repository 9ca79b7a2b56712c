//! The audit: every query answer of the engine against the model's, the engine's
//! own invariant check, and the invariants restated independently from the
//! engine's public answers (no oversell, reserved = open allocations, balances
//! never negative, waiting backorders mean nothing is available).

use std::borrow::Cow;
use std::collections::BTreeMap;

use allot_engine::query::StockQuery;
use allot_engine::{Ledger, Order, OrderId, OrderStatus};

use crate::model::{LineView, Model, OrderView};
use crate::rng::Rng;

macro_rules! same {
    ($what:expr, $engine:expr, $model:expr) => {{
        let (engine, model) = ($engine, $model);
        if engine != model {
            return Err(format!(
                "{} differs\n  engine: {:?}\n  model:  {:?}",
                $what, engine, model
            ));
        }
    }};
}

/// The engine's order in the model's terms.
pub fn order_view(ledger: &Ledger, order: &Order) -> OrderView {
    let state = ledger.state();
    OrderView {
        id: order.id.0,
        client_order_id: order.client_order_id.to_string(),
        dealer: ledger.dealer_code(order.dealer).to_owned(),
        status: order.status,
        lines: order
            .lines
            .iter()
            .map(|l| LineView {
                sku: ledger.sku_code(l.sku).to_owned(),
                requested_qty: l.requested_qty,
                unit: l.unit,
                qty: l.qty,
                unit_price: l.unit_price,
                backordered: l.backordered,
                promotion: l
                    .promotion
                    .map(|p| state.promotions[p.index()].code.clone()),
            })
            .collect(),
        allocations: order
            .allocations
            .iter()
            .map(|a| {
                (
                    a.line as usize,
                    ledger.warehouse_code(a.warehouse).to_owned(),
                    a.qty,
                )
            })
            .collect(),
        total: order.total,
        rebate_used: order.rebate_used,
        backorder: order.backorder,
        created_at_ms: order.created_at_ms,
        updated_at_ms: order.updated_at_ms,
        hold_expires_at_ms: order.hold_expires_at_ms,
    }
}

/// Compare everything; `rng` picks the filters and page sizes of this round.
pub fn audit(ledger: &Ledger, model: &Model, now_ms: u64, rng: &mut Rng) -> Result<(), String> {
    ledger
        .check_invariants()
        .map_err(|e| format!("engine invariant broken: {e}"))?;
    stock(ledger, model, rng)?;
    dealers(ledger, model, rng)?;
    orders(ledger, model)?;
    skus(ledger, model, now_ms, rng)?;
    same!("low_stock", ledger.low_stock(), model.low_stock());
    let within = rng.below(2_000_000);
    let limit = rng.range(1, 20) as usize;
    let holds: Vec<u64> = ledger
        .holds_expiring(now_ms, within, limit)
        .iter()
        .map(|o| o.id.0)
        .collect();
    same!(
        "holds_expiring",
        holds,
        model.holds_expiring(now_ms, within, limit)
    );
    promotions(ledger, model)?;
    let s = ledger.settings();
    let priority: Vec<String> = s
        .backorder_priority
        .iter()
        .map(|t| ledger.state().tiers[t.index()].clone())
        .collect();
    same!(
        "settings",
        (s.hold_ttl_s, s.max_lines, priority),
        model.settings()
    );
    invariants(ledger)
}

fn stock(ledger: &Ledger, model: &Model, rng: &mut Rng) -> Result<(), String> {
    let full = StockQuery {
        limit: 1000,
        ..StockQuery::default()
    };
    same!(
        "stock_page",
        ledger.stock_page(&full),
        model.stock_page(&full)
    );
    let skus = model.sku_codes();
    let warehouses = model.warehouse_codes();
    let mut query = StockQuery {
        sku: rng.chance(1, 4).then(|| rng.pick(&skus).clone()),
        warehouse: rng.chance(1, 3).then(|| rng.pick(&warehouses).clone()),
        below_threshold: rng.chance(1, 3),
        cursor: None,
        limit: rng.range(1, 4) as usize,
    };
    if rng.chance(1, 20) {
        query.warehouse = Some("W-unknown".into());
    }
    // Walk every page of a filtered listing.
    for _ in 0..=skus.len() {
        let engine = ledger.stock_page(&query);
        same!(
            format!("stock_page {query:?}"),
            &engine,
            &model.stock_page(&query)
        );
        match engine {
            Ok(page) if page.next_cursor.is_some() => query.cursor = page.next_cursor,
            _ => return Ok(()),
        }
    }
    Err("stock paging does not end".into())
}

fn dealers(ledger: &Ledger, model: &Model, rng: &mut Rng) -> Result<(), String> {
    same!(
        "dealer(unknown)",
        ledger.dealer("D-unknown"),
        model.dealer("D-unknown")
    );
    for code in model.dealer_codes() {
        same!(
            format!("dealer {code}"),
            ledger.dealer(&code),
            model.dealer(&code)
        );
        same!(
            format!("dealer_stock {code}"),
            ledger.dealer_stock(&code),
            model.dealer_stock(&code)
        );
        let ids = |r: Result<(Vec<Cow<'_, Order>>, Option<OrderId>), _>| {
            r.map(|(page, next): (Vec<Cow<'_, Order>>, Option<OrderId>)| {
                (
                    page.iter().map(|o| o.id.0).collect::<Vec<_>>(),
                    next.map(|n| n.0),
                )
            })
        };
        same!(
            format!("dealer_orders {code}"),
            ids(ledger.dealer_orders(&code, None, None, 1000)),
            model.dealer_orders(&code, None, None, 1000)
        );
        let status = rng.chance(1, 2).then(|| *rng.pick(&OrderStatus::ALL));
        let limit = rng.range(1, 3) as usize;
        let mut before = None;
        for _ in 0..=model.order_count() {
            let engine = ids(ledger.dealer_orders(&code, status, before.map(OrderId), limit));
            same!(
                format!("dealer_orders {code} {status:?} before {before:?} limit {limit}"),
                &engine,
                &model.dealer_orders(&code, status, before, limit)
            );
            match engine {
                Ok((_, Some(next))) => before = Some(next),
                _ => break,
            }
        }
    }
    Ok(())
}

fn orders(ledger: &Ledger, model: &Model) -> Result<(), String> {
    same!("order count", ledger.order_count(), model.order_count());
    for expected in model.orders() {
        if model.is_pruned(expected.id) {
            same!(
                format!("order {} pruned", expected.id),
                ledger.order(OrderId(expected.id)).map(|o| o.id),
                None
            );
            continue;
        }
        let order = ledger
            .order(OrderId(expected.id))
            .ok_or_else(|| format!("order {} missing", expected.id))?;
        same!(
            format!("order {}", expected.id),
            &order_view(ledger, &order),
            expected
        );
        let by_key = ledger
            .order_by_client_id(&expected.dealer, &expected.client_order_id)
            .map(|o| o.id.0);
        same!(
            format!("order_by_client_id {}", expected.id),
            by_key,
            Some(expected.id)
        );
    }
    Ok(())
}

fn skus(ledger: &Ledger, model: &Model, now_ms: u64, rng: &mut Rng) -> Result<(), String> {
    let dealers = model.dealer_codes();
    for code in model.sku_codes() {
        same!(
            format!("sku_view {code}"),
            ledger.sku_view(&code, None, now_ms),
            model.sku_view(&code, None, now_ms)
        );
        let dealer = rng.pick(&dealers);
        same!(
            format!("sku_view {code} for {dealer}"),
            ledger.sku_view(&code, Some(dealer), now_ms),
            model.sku_view(&code, Some(dealer), now_ms)
        );
    }
    Ok(())
}

fn promotions(ledger: &Ledger, model: &Model) -> Result<(), String> {
    let state = ledger.state();
    let used: BTreeMap<String, u64> = state
        .promotions
        .iter()
        .map(|p| (p.code.clone(), p.used))
        .collect();
    let per_dealer: BTreeMap<(String, String), u64> = state
        .promotion_usage
        .iter()
        .map(|(&key, &units)| {
            let promotion = state.promotions[(key >> 32) as usize].code.clone();
            let dealer = state.dealers[(key & 0xffff_ffff) as usize].code.clone();
            ((promotion, dealer), units)
        })
        .collect();
    same!(
        "promotion usage",
        (used, per_dealer),
        model.promotion_usage()
    );
    Ok(())
}

/// The ledger's invariants, restated from its public answers.
fn invariants(ledger: &Ledger) -> Result<(), String> {
    let page = ledger
        .stock_page(&StockQuery {
            limit: 1000,
            ..StockQuery::default()
        })
        .map_err(|e| e.to_string())?;
    let mut open: BTreeMap<(String, String), u64> = BTreeMap::new();
    for order in ledger.state().orders.iter() {
        let order = order.to_order();
        if order.status.is_open() {
            for a in &order.allocations {
                let sku = ledger.sku_code(order.lines[a.line as usize].sku).to_owned();
                *open
                    .entry((sku, ledger.warehouse_code(a.warehouse).to_owned()))
                    .or_default() += a.qty;
            }
        }
    }
    for sku in &page.skus {
        let (mut on_hand, mut reserved) = (0, 0);
        for row in &sku.warehouses {
            if row.reserved > row.on_hand || row.available != row.on_hand - row.reserved {
                return Err(format!(
                    "oversold: {} at {}: {row:?}",
                    sku.sku, row.warehouse
                ));
            }
            let held = open
                .get(&(sku.sku.clone(), row.warehouse.clone()))
                .copied()
                .unwrap_or(0);
            if row.reserved != held {
                return Err(format!(
                    "{} at {}: reserved {} but open orders hold {held}",
                    sku.sku, row.warehouse, row.reserved
                ));
            }
            on_hand += row.on_hand;
            reserved += row.reserved;
        }
        if (on_hand, reserved) != (sku.on_hand, sku.reserved) {
            return Err(format!("{}: totals disagree with rows", sku.sku));
        }
        if sku.backordered > 0 && sku.available > 0 {
            return Err(format!("{}: available while backorders wait", sku.sku));
        }
    }
    for dealer in &ledger.state().dealers {
        let view = ledger.dealer(&dealer.code).map_err(|e| e.to_string())?;
        if view.credit_held < 0 || view.credit_used < 0 || view.rebate_balance < 0 {
            return Err(format!("dealer {}: negative balance {view:?}", view.code));
        }
    }
    Ok(())
}
