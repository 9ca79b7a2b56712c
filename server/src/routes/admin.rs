//! Admin routes (`/admin`): master data, settings, import, stock, order approval and
//! shipping, payments, and the stock, alert, hold and audit views. Admin keys only.

use std::fmt::Write;
use std::sync::Arc;

use allot_engine::{Command, Ledger, OrderAction};
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::routing::{get, post, put};
use axum::{Json as AxumJson, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::portal::act;
use super::{read_body, Admin, Answer, AppState, Json, Query, RawAnswer};
use crate::dto::{
    self, AdjustBody, DealerBody, PaymentBody, PromotionBody, ReceiveBody, SettingsBody, SkuBody,
    WarehouseBody,
};
use crate::error::ApiError;
use crate::shard::{Ctx, StockView, Work};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin/skus/{code}", put(put_sku))
        .route("/admin/warehouses/{code}", put(put_warehouse))
        .route("/admin/dealers/{code}", put(put_dealer))
        .route("/admin/promotions/{code}", put(put_promotion))
        .route("/admin/settings", put(put_settings))
        .route("/admin/import", post(import))
        .route("/admin/stock/{sku}/{warehouse}/receive", post(receive))
        .route("/admin/stock/{sku}/{warehouse}/adjust", post(adjust))
        .route("/admin/orders/{id}/approve", post(approve))
        .route("/admin/orders/{id}/reject", post(reject))
        .route("/admin/orders/{id}/ship", post(ship))
        .route("/admin/dealers/{code}/payments", post(payment))
        .route("/admin/dealers/{code}/stock", get(dealer_stock))
        .route("/admin/stock", get(stock))
        .route("/admin/alerts", get(alerts))
        .route("/admin/holds", get(holds))
        .route("/admin/audit", get(audit))
}

/// Applies one command; on success answers with `view` of the ledger after it.
/// `path` says whether unknown codes were named in the path (404) or body (422).
async fn apply<F>(state: &AppState, tenant: &str, command: Command, path: bool, view: F) -> Answer
where
    F: FnOnce(&Ctx<'_>) -> Result<Value, ApiError> + Send + 'static,
{
    state
        .shards
        .call(tenant, Work::Commands(vec![command]), move |ctx| {
            if let Err(rejection) = &ctx.outcomes[0].result {
                return Err(ApiError::rejection(rejection, path));
            }
            Ok((StatusCode::OK, AxumJson(view(ctx)?)))
        })
        .await
}

/// Runs a read and answers with what `view` makes of it.
async fn read<F>(state: &AppState, tenant: &str, view: F) -> Answer
where
    F: FnOnce(&Ctx<'_>) -> Result<Value, ApiError> + Send + 'static,
{
    state
        .shards
        .call(tenant, Work::Read, move |ctx| {
            Ok((StatusCode::OK, AxumJson(view(ctx)?)))
        })
        .await
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<Value, ApiError> {
    serde_json::to_value(value).map_err(|e| ApiError::internal(&e.to_string()))
}

fn sku_json(ledger: &Ledger, code: &str, now_ms: u64) -> Result<Value, ApiError> {
    let view = ledger
        .sku_view(code, None, now_ms)
        .map_err(|r| ApiError::rejection(&r, true))?;
    let mut body = to_json(&view)?;
    body["warehouses"] = view
        .warehouses
        .iter()
        .map(|r| dto::row_json(&view.sku, r))
        .collect::<Vec<_>>()
        .into();
    Ok(body)
}

async fn put_sku(
    State(state): State<AppState>,
    Admin(c): Admin,
    Path(code): Path<String>,
    Json(body): Json<SkuBody>,
) -> Answer {
    let command = body.into_command(Some(&code))?;
    apply(&state, &c.tenant, command, false, move |ctx| {
        sku_json(ctx.ledger, &code, ctx.now_ms)
    })
    .await
}

async fn put_warehouse(
    State(state): State<AppState>,
    Admin(c): Admin,
    Path(code): Path<String>,
    Json(body): Json<WarehouseBody>,
) -> Answer {
    let command = body.into_command(Some(&code))?;
    apply(&state, &c.tenant, command, false, move |ctx| {
        let id = ctx
            .ledger
            .warehouse_id(&code)
            .ok_or_else(|| ApiError::internal("warehouse missing"))?;
        let warehouse = &ctx.ledger.state().warehouses[id.index()];
        let region = &ctx.ledger.state().regions[warehouse.region.index()];
        Ok(json!({ "code": warehouse.code, "region": region }))
    })
    .await
}

async fn put_dealer(
    State(state): State<AppState>,
    Admin(c): Admin,
    Path(code): Path<String>,
    Json(body): Json<DealerBody>,
) -> Answer {
    let command = body.into_command(Some(&code))?;
    apply(&state, &c.tenant, command, false, move |ctx| {
        to_json(
            &ctx.ledger
                .dealer(&code)
                .map_err(|r| ApiError::rejection(&r, true))?,
        )
    })
    .await
}

async fn put_promotion(
    State(state): State<AppState>,
    Admin(c): Admin,
    Path(code): Path<String>,
    Json(body): Json<PromotionBody>,
) -> Answer {
    let command = body.into_command(Some(&code))?;
    apply(&state, &c.tenant, command, false, move |ctx| {
        let ledger = ctx.ledger;
        let p = ledger
            .state()
            .promotions
            .iter()
            .find(|p| p.code == code)
            .ok_or_else(|| ApiError::internal("promotion missing"))?;
        let tiers: Vec<&str> = p.tiers.iter().map(|t| ledger.state().tiers[t.index()].as_str()).collect();
        Ok(json!({
            "code": p.code, "sku": ledger.sku_code(p.sku), "price": p.price,
            "starts_at": crate::rfc3339::format(p.starts_at_ms),
            "ends_at": crate::rfc3339::format(p.ends_at_ms),
            "tiers": tiers, "quota": p.quota, "per_dealer_limit": p.per_dealer_limit, "used": p.used,
        }))
    })
    .await
}

async fn put_settings(
    State(state): State<AppState>,
    Admin(c): Admin,
    Json(body): Json<SettingsBody>,
) -> Answer {
    apply(&state, &c.tenant, body.into_command(), false, |ctx| {
        Ok(dto::settings_json(ctx.ledger))
    })
    .await
}

fn stock_row(ctx: &Ctx<'_>, sku: &str, warehouse: &str) -> Result<Value, ApiError> {
    let view = ctx
        .ledger
        .sku_view(sku, None, ctx.now_ms)
        .map_err(|r| ApiError::rejection(&r, true))?;
    let row = view.warehouses.iter().find(|r| r.warehouse == warehouse);
    Ok(match row {
        Some(row) => dto::row_json(sku, row),
        None => {
            json!({ "sku": sku, "warehouse": warehouse, "on_hand": 0, "reserved": 0, "available": 0 })
        }
    })
}

async fn receive(
    State(state): State<AppState>,
    Admin(c): Admin,
    Path((sku, warehouse)): Path<(String, String)>,
    Json(body): Json<ReceiveBody>,
) -> Answer {
    let command = Command::Receive {
        sku: sku.clone(),
        warehouse: warehouse.clone(),
        qty: body.qty,
    };
    apply(&state, &c.tenant, command, true, move |ctx| {
        stock_row(ctx, &sku, &warehouse)
    })
    .await
}

async fn adjust(
    State(state): State<AppState>,
    Admin(c): Admin,
    Path((sku, warehouse)): Path<(String, String)>,
    Json(body): Json<AdjustBody>,
) -> Answer {
    let command = Command::Adjust {
        sku: sku.clone(),
        warehouse: warehouse.clone(),
        on_hand: body.on_hand,
    };
    apply(&state, &c.tenant, command, true, move |ctx| {
        stock_row(ctx, &sku, &warehouse)
    })
    .await
}

async fn approve(
    State(state): State<AppState>,
    Admin(c): Admin,
    Path(id): Path<String>,
) -> RawAnswer {
    act(&state, &c.tenant, &id, OrderAction::Approve).await
}

async fn reject(
    State(state): State<AppState>,
    Admin(c): Admin,
    Path(id): Path<String>,
) -> RawAnswer {
    act(&state, &c.tenant, &id, OrderAction::Reject).await
}

async fn ship(State(state): State<AppState>, Admin(c): Admin, Path(id): Path<String>) -> RawAnswer {
    act(&state, &c.tenant, &id, OrderAction::Ship).await
}

async fn payment(
    State(state): State<AppState>,
    Admin(c): Admin,
    Path(code): Path<String>,
    Json(body): Json<PaymentBody>,
) -> Answer {
    let command = Command::RecordPayment {
        dealer: code.clone(),
        amount: body.amount,
    };
    apply(&state, &c.tenant, command, true, move |ctx| {
        to_json(
            &ctx.ledger
                .dealer(&code)
                .map_err(|r| ApiError::rejection(&r, true))?,
        )
    })
    .await
}

async fn dealer_stock(
    State(state): State<AppState>,
    Admin(c): Admin,
    Path(code): Path<String>,
) -> Answer {
    read(&state, &c.tenant, move |ctx| {
        let rows = ctx
            .ledger
            .dealer_stock(&code)
            .map_err(|r| ApiError::rejection(&r, true))?;
        Ok(json!({ "dealer": code, "skus": to_json(&rows)? }))
    })
    .await
}

async fn alerts(State(state): State<AppState>, Admin(c): Admin) -> Answer {
    read(&state, &c.tenant, |ctx| {
        Ok(json!({ "alerts": to_json(&ctx.ledger.low_stock())? }))
    })
    .await
}

#[derive(Debug, Deserialize)]
struct HoldsQuery {
    expiring_within: Option<u64>,
    limit: Option<usize>,
}

async fn holds(
    State(state): State<AppState>,
    Admin(c): Admin,
    Query(q): Query<HoldsQuery>,
) -> Answer {
    let within_ms = q
        .expiring_within
        .unwrap_or(u64::MAX / 2_000)
        .saturating_mul(1000);
    let limit = q.limit.unwrap_or(allot_engine::limits::PAGE_LIMIT_DEFAULT);
    read(&state, &c.tenant, move |ctx| {
        let orders: Vec<dto::RawJson> = ctx
            .ledger
            .holds_expiring(ctx.now_ms, within_ms, limit)
            .into_iter()
            .map(|o| dto::order_json(ctx.ledger, o))
            .collect();
        Ok(json!({ "orders": orders }))
    })
    .await
}

async fn audit(State(state): State<AppState>, Admin(_): Admin) -> Answer {
    let shards: Vec<Value> = (0..state.shards.len())
        .filter_map(|i| {
            let wal = state.shards.status(i).wal.get()?;
            let (seq, hash) = wal.durable_head();
            let hex: String = hash.iter().fold(String::new(), |mut s, b| {
                let _ = write!(s, "{b:02x}");
                s
            });
            Some(json!({ "shard": i, "last_seq": seq, "hash": hex }))
        })
        .collect();
    Ok((StatusCode::OK, AxumJson(json!({ "shards": shards }))))
}

#[derive(Debug, Deserialize)]
struct StockQuery {
    sku: Option<String>,
    warehouse: Option<String>,
    below_threshold: Option<bool>,
    cursor: Option<String>,
    limit: Option<usize>,
}

/// The three-level stock view, paged from the shard's published view so that a
/// read of the whole catalog never holds up the sequencer.
async fn stock(
    State(state): State<AppState>,
    Admin(c): Admin,
    Query(q): Query<StockQuery>,
) -> Answer {
    let (sku, warehouse) = (q.sku.clone(), q.warehouse.clone());
    let view: Arc<StockView> = state
        .shards
        .call(&c.tenant, Work::StockView, move |ctx| {
            if let Some(code) = &sku {
                if ctx.ledger.sku_id(code).is_none() {
                    return Err(ApiError::rejection(
                        &allot_engine::Rejection::UnknownSku { sku: code.clone() },
                        true,
                    ));
                }
            }
            if let Some(code) = &warehouse {
                if ctx.ledger.warehouse_id(code).is_none() {
                    let r = allot_engine::Rejection::UnknownWarehouse {
                        warehouse: code.clone(),
                    };
                    return Err(ApiError::rejection(&r, true));
                }
            }
            ctx.stock_view
                .clone()
                .ok_or_else(|| ApiError::internal("no stock view"))
        })
        .await?;
    Ok((StatusCode::OK, AxumJson(stock_page(&view, &q))))
}

fn stock_page(view: &StockView, q: &StockQuery) -> Value {
    let limit = q
        .limit
        .unwrap_or(allot_engine::limits::PAGE_LIMIT_DEFAULT)
        .clamp(1, allot_engine::limits::PAGE_LIMIT_MAX);
    let start = q.cursor.as_ref().map_or(0, |c| {
        view.skus
            .partition_point(|(s, _)| s.sku.as_str() <= c.as_str())
    });
    let mut page = Vec::new();
    let mut next_cursor = None;
    for (sku, below) in &view.skus[start..] {
        if q.sku.as_ref().is_some_and(|s| *s != sku.sku)
            || (q.below_threshold == Some(true) && !below)
            || q.warehouse
                .as_ref()
                .is_some_and(|w| !sku.warehouses.iter().any(|r| r.warehouse == *w))
        {
            continue;
        }
        if page.len() == limit {
            next_cursor = page
                .last()
                .and_then(|v: &Value| v["sku"].as_str().map(str::to_owned));
            break;
        }
        let mut json = dto::sku_stock_json(sku);
        if let Some(w) = &q.warehouse {
            let rows: Vec<Value> = sku
                .warehouses
                .iter()
                .filter(|r| r.warehouse == *w)
                .map(|r| dto::row_json(&sku.sku, r))
                .collect();
            json["warehouses"] = rows.into();
        }
        page.push(json);
    }
    let mut body = json!({ "as_of_seq": view.as_of_seq, "skus": page });
    if let Some(next) = next_cursor {
        body["next_cursor"] = next.into();
    }
    body
}

/// NDJSON bulk load: each line is parsed here, then applied in bounded chunks, each
/// its own job, so other commands interleave with a large import.
async fn import(State(state): State<AppState>, Admin(c): Admin, request: Request) -> Answer {
    let bytes = read_body(request, state.config.import_limit_bytes).await?;
    let text =
        std::str::from_utf8(&bytes).map_err(|_| ApiError::malformed("the body is not UTF-8"))?;
    let mut errors = Vec::new();
    let mut commands = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match crate::import::parse_line(line) {
            Ok(command) => commands.push((i + 1, command)),
            Err(e) => errors.push(line_error(i + 1, &e)),
        }
    }
    let mut applied = 0_u64;
    for chunk in commands.chunks(crate::import::CHUNK_COMMANDS) {
        let lines: Vec<usize> = chunk.iter().map(|(n, _)| *n).collect();
        let work = Work::Commands(chunk.iter().map(|(_, c)| c.clone()).collect());
        let refused: Vec<(usize, ApiError)> = state
            .shards
            .call(&c.tenant, work, move |ctx| {
                Ok(ctx
                    .outcomes
                    .iter()
                    .zip(&lines)
                    .filter_map(|(o, n)| {
                        o.result
                            .as_ref()
                            .err()
                            .map(|r| (*n, ApiError::rejection(r, false)))
                    })
                    .collect())
            })
            .await?;
        applied += (chunk.len() - refused.len()) as u64;
        errors.extend(refused.iter().map(|(n, e)| line_error(*n, e)));
    }
    errors.sort_by_key(|e| e["line"].as_u64());
    Ok((
        StatusCode::OK,
        AxumJson(json!({ "applied": applied, "errors": errors })),
    ))
}

fn line_error(line: usize, e: &ApiError) -> Value {
    json!({ "line": line, "code": e.code, "message": e.message, "details": e.details })
}
