//! Portal routes (`/v1`): orders, SKU prices and availability, dealer credit, events.
//! Portal and admin keys both reach them.

use std::time::Duration;

use allot_engine::{Command, Effect, OrderAction, OrderStatus};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json as AxumJson, Router};
use serde::Deserialize;
use serde_json::json;

use super::{order_id, Answer, AppState, Json, Query, RawAnswer};
use crate::auth::Caller;
use crate::dto::{self, JsonText, OrderBody, RawJson};
use crate::error::ApiError;
use crate::events::Read;
use crate::shard::Work;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/orders", post(place_order).get(list_orders))
        .route("/v1/orders/{id}", get(get_order))
        .route("/v1/orders/{id}/confirm", post(confirm_order))
        .route("/v1/orders/{id}/cancel", post(cancel_order))
        .route("/v1/skus/{code}", get(get_sku))
        .route("/v1/dealers/{code}", get(get_dealer))
        .route("/v1/events", get(get_events))
}

async fn place_order(
    State(state): State<AppState>,
    caller: Caller,
    Json(body): Json<OrderBody>,
) -> RawAnswer {
    let command = Command::PlaceOrder(body.into_command()?);
    let metrics = std::sync::Arc::clone(&state.metrics);
    state
        .shards
        .call(&caller.tenant, Work::Commands(vec![command]), move |ctx| {
            let result = &ctx.outcomes[0].result;
            let (status, id) = match result {
                Ok(Effect::OrderPlaced(id)) => (StatusCode::CREATED, *id),
                Ok(Effect::OrderReplayed(id)) => (StatusCode::OK, *id),
                Ok(other) => {
                    return Err(ApiError::internal(&format!("placement answered {other:?}")))
                }
                Err(rejection) => {
                    metrics.order(rejection.code());
                    return Err(ApiError::rejection(rejection, false));
                }
            };
            metrics.order(if status == StatusCode::CREATED {
                "placed"
            } else {
                "replayed"
            });
            let order = ctx
                .ledger
                .order(id)
                .ok_or_else(|| ApiError::internal("placed order is missing"))?;
            Ok((status, JsonText(dto::order_text(ctx.ledger, &order))))
        })
        .await
}

async fn get_order(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> RawAnswer {
    let id = order_id(&id)?;
    state
        .shards
        .call(&caller.tenant, Work::Read, move |ctx| {
            let order = ctx.ledger.order(id).ok_or_else(|| {
                ApiError::rejection(&allot_engine::Rejection::UnknownOrder { order: id }, true)
            })?;
            Ok((
                StatusCode::OK,
                JsonText(dto::order_text(ctx.ledger, &order)),
            ))
        })
        .await
}

/// Applies an action to the order named in the path and answers with the order.
pub(super) async fn act(
    state: &AppState,
    tenant: &str,
    id: &str,
    action: OrderAction,
) -> RawAnswer {
    let order = order_id(id)?;
    state
        .shards
        .call(
            tenant,
            Work::Commands(vec![Command::ActOnOrder { order, action }]),
            move |ctx| {
                if let Err(rejection) = &ctx.outcomes[0].result {
                    return Err(ApiError::rejection(rejection, true));
                }
                let order = ctx
                    .ledger
                    .order(order)
                    .ok_or_else(|| ApiError::internal("acted order is missing"))?;
                Ok((
                    StatusCode::OK,
                    JsonText(dto::order_text(ctx.ledger, &order)),
                ))
            },
        )
        .await
}

async fn confirm_order(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> RawAnswer {
    act(&state, &caller.tenant, &id, OrderAction::Confirm).await
}

async fn cancel_order(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> RawAnswer {
    act(&state, &caller.tenant, &id, OrderAction::Cancel).await
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    dealer: Option<String>,
    status: Option<String>,
    cursor: Option<u64>,
    limit: Option<usize>,
}

async fn list_orders(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<ListQuery>,
) -> RawAnswer {
    let dealer = q
        .dealer
        .ok_or_else(|| ApiError::invalid("dealer", "the query needs `dealer`"))?;
    let status = match q.status.as_deref().filter(|s| !s.is_empty()) {
        Some(name) => Some(
            OrderStatus::from_name(name)
                .ok_or_else(|| ApiError::invalid("status", format!("unknown status `{name}`")))?,
        ),
        None => None,
    };
    let limit = q.limit.unwrap_or(allot_engine::limits::PAGE_LIMIT_DEFAULT);
    let before = q.cursor.map(allot_engine::OrderId);
    state
        .shards
        .call(&caller.tenant, Work::Read, move |ctx| {
            let (orders, next) = ctx
                .ledger
                .dealer_orders(&dealer, status, before, limit)
                .map_err(|r| ApiError::rejection(&r, true))?;
            let orders: Vec<RawJson> = orders
                .iter()
                .map(|o| dto::order_json(ctx.ledger, o))
                .collect();
            let page = OrdersPage {
                orders,
                next_cursor: next.map(|id| id.0),
            };
            Ok((StatusCode::OK, dto::raw(&page).into()))
        })
        .await
}

#[derive(serde::Serialize)]
struct OrdersPage {
    orders: Vec<RawJson>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_cursor: Option<u64>,
}

#[derive(serde::Serialize)]
struct EventsPage {
    events: Vec<RawJson>,
    last_seq: u64,
}

#[derive(Debug, Deserialize)]
struct SkuQuery {
    dealer: Option<String>,
}

async fn get_sku(
    State(state): State<AppState>,
    caller: Caller,
    Path(code): Path<String>,
    Query(q): Query<SkuQuery>,
) -> Answer {
    state
        .shards
        .call(&caller.tenant, Work::Read, move |ctx| {
            let view = ctx
                .ledger
                .sku_view(&code, q.dealer.as_deref(), ctx.now_ms)
                .map_err(|r| ApiError::rejection(&r, true))?;
            let mut body =
                serde_json::to_value(&view).map_err(|e| ApiError::internal(&e.to_string()))?;
            body["warehouses"] = view
                .warehouses
                .iter()
                .map(|r| dto::row_json(&view.sku, r))
                .collect::<Vec<_>>()
                .into();
            Ok((StatusCode::OK, AxumJson(body)))
        })
        .await
}

async fn get_dealer(
    State(state): State<AppState>,
    caller: Caller,
    Path(code): Path<String>,
) -> Answer {
    state
        .shards
        .call(&caller.tenant, Work::Read, move |ctx| {
            let view = ctx
                .ledger
                .dealer(&code)
                .map_err(|r| ApiError::rejection(&r, true))?;
            let body =
                serde_json::to_value(&view).map_err(|e| ApiError::internal(&e.to_string()))?;
            Ok((StatusCode::OK, AxumJson(body)))
        })
        .await
}

#[derive(Debug, Deserialize)]
struct EventsQuery {
    after: Option<u64>,
    limit: Option<usize>,
    wait: Option<u64>,
}

/// Long poll: answers at once when events after `after` exist, else waits up to
/// `wait` seconds (capped) for some.
async fn get_events(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<EventsQuery>,
) -> RawAnswer {
    let after = q.after.unwrap_or(0);
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let wait = Duration::from_secs(q.wait.unwrap_or(0)).min(state.config.events_wait_max);
    let events = state.shards.hub.tenant(&caller.tenant);
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let notified = events.notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        match events.read(after, limit) {
            Read::Gone { oldest } => {
                return Err(ApiError::new(
                    StatusCode::GONE,
                    "events_gone",
                    format!("events after {after} are no longer kept; the oldest kept is {oldest}"),
                )
                .with_details(json!({ "oldest_seq": oldest })));
            }
            Read::Events(found) if !found.is_empty() || tokio::time::Instant::now() >= deadline => {
                let last_seq = found.last().map_or(after, |(seq, _)| *seq);
                let events = found.into_iter().map(|(_, event)| event).collect();
                return Ok((
                    StatusCode::OK,
                    dto::raw(&EventsPage { events, last_seq }).into(),
                ));
            }
            Read::Events(_) => {
                // Woken or timed out, the next turn reads again.
                let _ = tokio::time::timeout_at(deadline, notified).await;
            }
        }
    }
}
