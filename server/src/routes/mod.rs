//! The router: portal (`/v1`), admin (`/admin`) and ops routes, the extractors they
//! share (caller, strict JSON body, query string), and the layers every request goes
//! through (latency metrics, panic catching, body and request timeouts).

mod admin;
mod ops;
mod portal;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{FromRequest, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde::de::DeserializeOwned;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::timeout::{RequestBodyTimeoutLayer, TimeoutLayer};

use crate::auth::{Auth, Caller, Role};
use crate::config::Config;
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::shard::Shards;

/// A handler's answer as a JSON value (the less frequent routes).
pub(crate) type Answer = Result<(StatusCode, axum::Json<serde_json::Value>), ApiError>;

/// A handler's answer rendered once to JSON text (orders and events: the hot paths).
pub(crate) type RawAnswer = Result<(StatusCode, crate::dto::JsonText), ApiError>;

/// Longest time a client may take to send its body.
const BODY_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// What every handler can reach.
pub struct AppParts {
    pub shards: Arc<Shards>,
    pub auth: Arc<Auth>,
    pub metrics: Arc<Metrics>,
    pub config: Arc<Config>,
}

/// The handlers' state: one shared pointer, so the clones axum makes per request cost
/// one atomic increment, not one per part.
#[derive(Clone)]
pub struct AppState(Arc<AppParts>);

impl AppState {
    pub fn new(parts: AppParts) -> Self {
        Self(Arc::new(parts))
    }
}

impl std::ops::Deref for AppState {
    type Target = AppParts;

    fn deref(&self) -> &AppParts {
        &self.0
    }
}

/// The whole HTTP API.
pub fn router(state: AppState) -> Router {
    let request_timeout = state.config.request_timeout;
    Router::new()
        .merge(portal::routes())
        .merge(admin::routes())
        .merge(ops::routes())
        .fallback(|| async { ApiError::not_found("no such route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "method not allowed",
            )
        })
        .layer(axum::middleware::from_fn_with_state(state.clone(), track))
        .layer(CatchPanicLayer::custom(
            |_: Box<dyn std::any::Any + Send>| {
                ApiError::internal("a handler panicked").into_response()
            },
        ))
        .layer(RequestBodyTimeoutLayer::new(BODY_READ_TIMEOUT))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            request_timeout,
        ))
        .with_state(state)
}

/// Records each request's status and latency.
async fn track(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let response = next.run(request).await;
    state
        .metrics
        .request(response.status().as_u16(), started.elapsed());
    response
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        state.auth.caller(&parts.headers)
    }
}

/// A caller with an admin key.
pub struct Admin(pub Caller);

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let caller = state.auth.caller(&parts.headers)?;
        if caller.role != Role::Admin {
            return Err(ApiError::forbidden("this needs an admin key"));
        }
        Ok(Self(caller))
    }
}

/// A strict JSON body (see [`crate::dto::parse_json`]), at most `body_limit_bytes`.
pub struct Json<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, ApiError> {
        let bytes = read_body(request, state.config.body_limit_bytes).await?;
        crate::dto::parse_json(&bytes).map(Json)
    }
}

/// Reads a whole body of at most `limit` bytes: 413 above it.
pub async fn read_body(request: Request, limit: usize) -> Result<axum::body::Bytes, ApiError> {
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("the body is over {limit} bytes"),
        )
    };
    let declared = request
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    axum::body::to_bytes(request.into_body(), limit)
        .await
        .map_err(|e| {
            let mut source: Option<&dyn std::error::Error> = Some(&e);
            while let Some(s) = source {
                if s.to_string().contains("length limit exceeded") {
                    return too_large();
                }
                if s.to_string().contains("timed out") || s.to_string().contains("timeout") {
                    return ApiError::new(
                        StatusCode::REQUEST_TIMEOUT,
                        "timeout",
                        "the body was too slow",
                    );
                }
                source = s.source();
            }
            ApiError::malformed(format!("cannot read the body: {e}"))
        })
}

/// A query string decoded into `T`: 422 naming the problem on a mismatch.
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::try_from_uri(&parts.uri)
            .map(|q| Query(q.0))
            .map_err(|e| ApiError::invalid("query", e.body_text()))
    }
}

/// A path order id: a non-number names no order (404).
pub fn order_id(text: &str) -> Result<allot_engine::OrderId, ApiError> {
    text.parse::<u64>()
        .ok()
        .filter(|&id| id > 0)
        .map(allot_engine::OrderId)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "unknown_order",
                format!("unknown order {text}"),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use tower::ServiceExt;

    fn app(dir: &std::path::Path) -> (Router, Arc<Shards>) {
        let config = Arc::new(Config {
            data_dir: dir.to_owned(),
            shards: 1,
            ..Config::default()
        });
        let (shards, started) = Shards::start(Arc::clone(&config)).expect("start");
        started.recv().expect("started").expect("recovered");
        let state = AppState::new(AppParts {
            shards: Arc::clone(&shards),
            auth: Arc::new(Auth::from_config(&config)),
            metrics: Arc::new(Metrics::default()),
            config,
        });
        (router(state), shards)
    }

    async fn call(
        app: &Router,
        method: &str,
        uri: &str,
        body: &'static str,
    ) -> (StatusCode, serde_json::Value) {
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .body(Body::from(body))
            .expect("request");
        let response = app.clone().oneshot(request).await.expect("infallible");
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .expect("body");
        (status, serde_json::from_slice(&bytes).unwrap_or_default())
    }

    #[tokio::test]
    async fn routes_answer_without_a_socket() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (app, shards) = app(dir.path());
        assert_eq!(call(&app, "GET", "/healthz", "").await.0, StatusCode::OK);
        assert_eq!(
            call(&app, "POST", "/v1/orders", "{oops").await.0,
            StatusCode::BAD_REQUEST
        );
        let (status, body) = call(&app, "PUT", "/admin/warehouses/W1", r#"{"region":"n"}"#).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (StatusCode::OK, Some("W1"))
        );
        let (status, body) = call(&app, "GET", "/v1/orders/7", "").await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (StatusCode::NOT_FOUND, Some("unknown_order"))
        );
        tokio::task::spawn_blocking(move || shards.stop())
            .await
            .expect("stop");
    }
}
