//! Central's HTTP API (axum): `/health` and the weighings under `/api/v1`.
//!
//! Errors are RFC 9457 problem+json documents. Client errors say what was
//! wrong with the request; server errors say only that something failed and
//! log the cause, so no internals leak.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use valeo_sync::receiver::ReceiverCounters;

use crate::store::{Store, WeighingFilter, WeighingStatus};

/// What the handlers share.
#[derive(Debug, Clone)]
pub struct AppState {
    pub store: Store,
    pub receiver: Arc<ReceiverCounters>,
    pub version: &'static str,
}

/// Largest page of a list.
pub const MAX_PAGE_LIMIT: u32 = 500;
const DEFAULT_PAGE_LIMIT: u32 = 50;

/// The router; tests call it without a server.
pub fn app(state: AppState, request_timeout_ms: u64) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/api/v1/weighings", get(list_weighings))
        .route("/api/v1/weighings/{id}", get(get_weighing))
        .fallback(|| async { Problem::not_found("no such resource") })
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            Duration::from_millis(request_timeout_ms),
        ))
        .with_state(state)
}

/// An RFC 9457 problem document.
#[derive(Debug, Serialize)]
pub struct Problem {
    #[serde(rename = "type")]
    kind: &'static str,
    title: &'static str,
    status: u16,
    detail: String,
}

impl Problem {
    fn new(status: StatusCode, title: &'static str, detail: impl Into<String>) -> Problem {
        Problem {
            kind: "about:blank",
            title,
            status: status.as_u16(),
            detail: detail.into(),
        }
    }

    pub fn bad_request(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::BAD_REQUEST, "Bad Request", detail)
    }

    pub fn not_found(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::NOT_FOUND, "Not Found", detail)
    }

    /// Logs the cause and answers without it.
    fn internal(cause: &dyn std::fmt::Display) -> Problem {
        tracing::error!(%cause, "request failed");
        Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Internal Server Error",
            "the request could not be completed",
        )
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (
            status,
            [(header::CONTENT_TYPE, "application/problem+json")],
            Json(self),
        )
            .into_response()
    }
}

/// `Query` whose rejection is a problem document naming the parameter.
struct ApiQuery<T>(T);

impl<T, S> FromRequestParts<S> for ApiQuery<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(value)| ApiQuery(value))
            .map_err(|rejection: QueryRejection| Problem::bad_request(rejection.body_text()))
    }
}

#[derive(Debug, Serialize)]
struct Health {
    status: &'static str,
    version: &'static str,
    database: &'static str,
    broker_connected: bool,
    receiver: valeo_sync::receiver::ReceiverStats,
    devices: Vec<crate::store::DeviceHead>,
}

async fn health(State(state): State<AppState>) -> Response {
    let store = state.store.clone();
    let checked = tokio::task::spawn_blocking(move || {
        let ping = store.ping();
        let devices = store.device_heads().unwrap_or_default();
        (ping.is_ok(), devices)
    })
    .await;
    let (db_ok, devices) = checked.unwrap_or((false, Vec::new()));
    let receiver = state.receiver.snapshot();
    let healthy = db_ok && receiver.connected;
    let body = Health {
        status: if healthy { "ok" } else { "degraded" },
        version: state.version,
        database: if db_ok { "ok" } else { "failing" },
        broker_connected: receiver.connected,
        receiver,
        devices,
    };
    let code = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body)).into_response()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListParams {
    limit: Option<u32>,
    offset: Option<u64>,
    device_id: Option<String>,
    status: Option<WeighingStatus>,
    plate: Option<String>,
}

async fn list_weighings(
    State(state): State<AppState>,
    ApiQuery(params): ApiQuery<ListParams>,
) -> Response {
    let limit = params.limit.unwrap_or(DEFAULT_PAGE_LIMIT);
    if !(1..=MAX_PAGE_LIMIT).contains(&limit) {
        return Problem::bad_request(format!("limit must be 1..={MAX_PAGE_LIMIT}, got {limit}"))
            .into_response();
    }
    let offset = params.offset.unwrap_or(0);
    if offset > i64::MAX as u64 {
        return Problem::bad_request("offset is too large").into_response();
    }
    let filter = WeighingFilter {
        device_id: params.device_id,
        status: params.status,
        plate: params.plate,
        limit,
        offset,
    };
    let store = state.store.clone();
    match tokio::task::spawn_blocking(move || store.list_weighings(&filter)).await {
        Ok(Ok(page)) => Json(page).into_response(),
        Ok(Err(error)) => Problem::internal(&error).into_response(),
        Err(error) => Problem::internal(&error).into_response(),
    }
}

async fn get_weighing(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    let Ok(id) = id.parse::<i64>() else {
        return Problem::bad_request(format!("weighing id must be an integer, got {id:?}"))
            .into_response();
    };
    let store = state.store.clone();
    match tokio::task::spawn_blocking(move || store.get_weighing(id)).await {
        Ok(Ok(Some(weighing))) => Json(weighing).into_response(),
        Ok(Ok(None)) => Problem::not_found(format!("no weighing with id {id}")).into_response(),
        Ok(Err(error)) => Problem::internal(&error).into_response(),
        Err(error) => Problem::internal(&error).into_response(),
    }
}
