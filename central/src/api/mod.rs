//! Central's HTTP API (axum): `/health`, `/metrics` and under `/api/v1` the
//! weighings, master data, devices, field values, live values and commands
//! (`field`).
//!
//! Errors are RFC 9457 problem+json documents. Client errors say what was
//! wrong with the request; server errors say only that something failed and
//! log the cause, so no internals leak.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use valeo_process::problem::Problem;
use valeo_sync::receiver::{DevicePublisher, ReceiverCounters};

use crate::live::LiveValues;
use crate::store::{PutMasterDataError, Store};

pub mod auth;
pub mod business;
pub mod devices;
pub mod events;
pub mod field;
mod fiscal;
pub mod openapi;

/// What the handlers share.
#[derive(Debug, Clone)]
pub struct AppState {
    pub store: Store,
    pub receiver: Arc<ReceiverCounters>,
    /// Publishes master data to the boxes over the receiver's connection.
    pub publisher: DevicePublisher,
    /// Wakes the task that publishes master data after a change.
    pub master_data: crate::master_data::MasterDataPublisher,
    /// The latest telemetry of every box.
    pub live: LiveValues,
    /// Trader data for DSFinV-K exports.
    pub fiscal: Option<Arc<crate::config::FiscalConfig>>,
    /// Where `POST /api/v1/backups` writes.
    pub backup_dir: Arc<std::path::PathBuf>,
    /// Request latencies for `/metrics`.
    pub requests: crate::observe::RequestStats,
    /// Authentication: signing key, login limiter, settings.
    pub auth: crate::auth::AuthState,
    /// Wakes the webhook dispatcher; the `[events]` settings.
    pub events: crate::events::EventsHandle,
    /// The boxes' online status.
    pub device_statuses: crate::device_status::DeviceStatuses,
    pub version: &'static str,
}

/// What a client sees of a server error.
const INTERNAL_DETAIL: &str = "the request could not be completed";

/// Largest page of a list.
pub const MAX_PAGE_LIMIT: u32 = 500;
const DEFAULT_PAGE_LIMIT: u32 = 50;

/// The router; tests call it without a server.
pub fn app(state: AppState, request_timeout_ms: u64) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .merge(crate::ui::routes())
        .merge(openapi::routes())
        .merge(devices::routes())
        .route("/api/v1/dead-letters", get(list_dead_letters))
        .merge(business::routes())
        .merge(auth::routes())
        .merge(events::routes())
        .route("/api/v1/field-values", get(list_field_values))
        .route("/api/v1/live-values", get(field::list_live_values))
        .route(
            "/api/v1/devices/{device_id}/commands",
            axum::routing::post(field::create_command),
        )
        .route("/api/v1/commands", get(field::list_commands))
        .route("/api/v1/commands/{id}", get(field::get_command))
        .route("/api/v1/cash-sales", get(fiscal::list_sales))
        .route("/api/v1/cash-sales/{id}", get(fiscal::get_sale))
        .route("/api/v1/tse-outages", get(fiscal::outages))
        .route("/api/v1/tses", get(fiscal::tses))
        .route("/api/v1/tses/{serial}/export", get(fiscal::tse_export))
        .route("/api/v1/dsfinvk", get(fiscal::dsfinvk_export))
        .route("/api/v1/backups", get(list_backups).post(create_backup))
        .route(
            "/api/v1/master-data",
            get(get_master_data).put(put_master_data),
        )
        .fallback(|| async { Problem::not_found("no such resource") })
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            Duration::from_millis(request_timeout_ms),
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.requests.clone(),
            crate::observe::track,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::auth::middleware::authenticate,
        ))
        .with_state(state)
}

/// Runs a store query on the blocking pool; a failure becomes a 500 whose
/// cause is logged, not shown.
async fn query<T, F>(state: &AppState, f: F) -> Result<T, Problem>
where
    F: FnOnce(&Store) -> Result<T, crate::store::StoreError> + Send + 'static,
    T: Send + 'static,
{
    let store = state.store.clone();
    match tokio::task::spawn_blocking(move || f(&store)).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(Problem::internal(&error, INTERNAL_DETAIL)),
        Err(error) => Err(Problem::internal(&error, INTERNAL_DETAIL)),
    }
}

/// A query's result as JSON, or its problem.
fn json_or_problem<T: Serialize>(result: Result<T, Problem>) -> Response {
    match result {
        Ok(value) => Json(value).into_response(),
        Err(problem) => problem.into_response(),
    }
}

/// `Query` whose rejection is a problem document naming the parameter.
#[derive(Debug)]
pub struct ApiQuery<T>(pub T);

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

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct Health {
    /// `ok`, or `degraded` when the database or the broker fails.
    status: &'static str,
    version: &'static str,
    database: &'static str,
    broker_connected: bool,
    /// Ingest counters of the MQTT receiver.
    #[schema(value_type = Object)]
    receiver: valeo_sync::receiver::ReceiverStats,
    /// Dead letters kept, by reason.
    dead_letters: std::collections::BTreeMap<String, u64>,
    devices: Vec<crate::store::DeviceView>,
    /// This process's memory and CPU time.
    process: crate::observe::ProcessStats,
    /// Live values held, and those dropped (caps, unknown senders) or malformed.
    live_values: LiveCounts,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct LiveCounts {
    held: usize,
    dropped: u64,
    malformed: u64,
}

/// Whether central works: database, broker, devices, resources.
#[utoipa::path(get, path = "/health", tag = "operations",
    responses(
        (status = 200, description = "Healthy", body = Health),
        (status = 503, description = "Degraded: the database or the broker fails", body = Health),
    ))]
async fn health(State(state): State<AppState>) -> Response {
    let checked = query(&state, |store| {
        Ok((store.ping()?, store.devices()?, store.dead_letter_counts()?))
    })
    .await;
    let (db_ok, devices, dead_letters) = match checked {
        Ok(((), devices, dead)) => (true, devices, dead.into_iter().collect()),
        Err(_) => (false, Vec::new(), Default::default()),
    };
    let receiver = state.receiver.snapshot();
    let healthy = db_ok && receiver.connected;
    let body = Health {
        status: if healthy { "ok" } else { "degraded" },
        version: state.version,
        database: if db_ok { "ok" } else { "failing" },
        broker_connected: receiver.connected,
        receiver,
        dead_letters,
        devices,
        process: crate::observe::process_stats(),
        live_values: {
            let (held, dropped, malformed) = state.live.counts();
            LiveCounts {
                held,
                dropped,
                malformed,
            }
        },
    };
    let code = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body)).into_response()
}

/// Prometheus metrics: ingest counters, dead letters by reason, device
/// chains and presence, request latencies, resources.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text exposition format", body = String, content_type = "text/plain")))]
async fn metrics(State(state): State<AppState>) -> Response {
    use valeo_process::metrics::{CONTENT_TYPE, Exposition};
    let read = query(&state, |store| {
        Ok((store.dead_letter_counts()?, store.devices()?))
    })
    .await;
    let (dead, devices) = match read {
        Ok(read) => read,
        Err(problem) => return problem.into_response(),
    };
    let r = state.receiver.snapshot();
    let mut m = Exposition::new();
    m.gauge(
        "valeo_central_broker_connected",
        "1 while the receiver is connected.",
        f64::from(u8::from(r.connected)),
    )
    .counter(
        "valeo_central_batches_committed_total",
        "Batches committed and acknowledged.",
        r.batches_committed as f64,
    )
    .counter(
        "valeo_central_records_inserted_total",
        "New records stored.",
        r.records_inserted as f64,
    )
    .counter(
        "valeo_central_records_duplicate_total",
        "Records received again and recognised.",
        r.records_duplicate as f64,
    )
    .counter(
        "valeo_central_storage_errors_total",
        "Batches not stored because the database failed.",
        r.storage_errors as f64,
    );
    let dead_by_reason = valeo_sync::receiver::RejectReason::ALL.map(|reason| {
        let n = dead
            .iter()
            .find(|(name, _)| name == reason.as_str())
            .map_or(0, |(_, n)| *n);
        (reason.as_str(), n as f64)
    });
    let per_device = |f: fn(&crate::store::DeviceView) -> f64| {
        devices.iter().map(move |d| (d.device_id.as_str(), f(d)))
    };
    m.by_label(
        "valeo_central_dead_letters",
        "Dead letters kept, by reason.",
        "gauge",
        "reason",
        dead_by_reason,
    )
    .by_label(
        "valeo_central_device_head_seq",
        "Newest committed seq per device.",
        "gauge",
        "device",
        per_device(|d| d.head_seq.unwrap_or(0) as f64),
    )
    .by_label(
        "valeo_central_device_gap",
        "1 while central waits for a missing record of the device.",
        "gauge",
        "device",
        per_device(|d| f64::from(u8::from(d.gap_expected_seq.is_some()))),
    );
    let process = crate::observe::process_stats();
    if let Some(rss) = process.rss_bytes {
        m.gauge(
            "valeo_central_resident_memory_bytes",
            "Resident memory of the process.",
            rss as f64,
        );
    }
    if let Some(cpu) = process.cpu_seconds {
        m.counter(
            "valeo_central_cpu_seconds_total",
            "CPU time used by the process, user and system.",
            cpu,
        );
    }
    let (held, dropped, _) = state.live.counts();
    m.gauge(
        "valeo_central_live_values",
        "Live values held in memory.",
        held as f64,
    )
    .counter(
        "valeo_central_live_values_dropped_total",
        "Telemetry samples dropped: caps, unknown senders.",
        dropped as f64,
    )
    .gauge(
        "valeo_central_devices",
        "Registered devices.",
        devices.len() as f64,
    );
    let presence = state.device_statuses.counts();
    m.gauge(
        "valeo_central_devices_online",
        "Registered devices whose last status says online.",
        presence.online as f64,
    )
    .gauge(
        "valeo_central_devices_offline",
        "Registered devices whose last status says offline.",
        presence.offline as f64,
    );
    state.requests.expose(&mut m);
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], m.finish()).into_response()
}

/// The page size asked for, within 1..=[`MAX_PAGE_LIMIT`].
fn page_limit(limit: Option<u32>) -> Result<u32, Problem> {
    let limit = limit.unwrap_or(DEFAULT_PAGE_LIMIT);
    if (1..=MAX_PAGE_LIMIT).contains(&limit) {
        Ok(limit)
    } else {
        Err(Problem::bad_request(format!(
            "limit must be 1..={MAX_PAGE_LIMIT}, got {limit}"
        )))
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct DeadLetterParams {
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
}

/// The newest messages central could not use, with the reason.
#[utoipa::path(get, path = "/api/v1/dead-letters", tag = "operations", params(DeadLetterParams),
    responses(
        (status = 200, description = "Newest first", body = Vec<crate::store::DeadLetterView>),
        (status = 400, description = "A parameter is wrong", body = crate::api::auth::ProblemSchema, content_type = "application/problem+json"),
    ))]
async fn list_dead_letters(
    State(state): State<AppState>,
    ApiQuery(params): ApiQuery<DeadLetterParams>,
) -> Response {
    let limit = match page_limit(params.limit) {
        Ok(limit) => limit,
        Err(problem) => return problem.into_response(),
    };
    json_or_problem(query(&state, move |store| store.dead_letters(limit)).await)
}

/// The ETag of a master-data version.
fn etag(version: u64) -> String {
    format!("\"{version}\"")
}

/// The backups, newest first.
#[utoipa::path(get, path = "/api/v1/backups", tag = "operations",
    responses((status = 200, description = "The backups", body = Vec<crate::backup::BackupFile>)))]
async fn list_backups(State(state): State<AppState>) -> Response {
    let dir = Arc::clone(&state.backup_dir);
    match tokio::task::spawn_blocking(move || crate::backup::list(&dir)).await {
        Ok(Ok(files)) => Json(files).into_response(),
        Ok(Err(error)) => Problem::internal(&error, INTERNAL_DETAIL).into_response(),
        Err(error) => Problem::internal(&error, INTERNAL_DETAIL).into_response(),
    }
}

/// An online backup of the database (201 with the file); the oldest
/// beyond `backup::MAX_BACKUPS` are deleted.
#[utoipa::path(post, path = "/api/v1/backups", tag = "operations",
    responses((status = 201, description = "Written", body = crate::backup::BackupFile)))]
async fn create_backup(State(state): State<AppState>) -> Response {
    let (store, dir) = (state.store.clone(), Arc::clone(&state.backup_dir));
    match tokio::task::spawn_blocking(move || crate::backup::create(&store, &dir)).await {
        Ok(Ok(file)) => (StatusCode::CREATED, Json(file)).into_response(),
        Ok(Err(error)) => Problem::internal(&error, INTERNAL_DETAIL).into_response(),
        Err(error) => Problem::internal(&error, INTERNAL_DETAIL).into_response(),
    }
}

/// The master-data document the boxes get, with its version as ETag.
#[utoipa::path(get, path = "/api/v1/master-data", tag = "master-data",
    responses(
        (status = 200, description = "The document", body = Object, headers(("ETag" = String))),
        (status = 404, description = "None stored yet", body = crate::api::auth::ProblemSchema, content_type = "application/problem+json"),
    ))]
async fn get_master_data(State(state): State<AppState>) -> Response {
    match query(&state, Store::master_data).await {
        Ok(Some(data)) => ([(header::ETAG, etag(data.version))], Json(data)).into_response(),
        Ok(None) => Problem::not_found("no master data stored yet").into_response(),
        Err(problem) => problem.into_response(),
    }
}

/// Replaces partners, articles, vehicles, locations, lots and contracts
/// with those of a whole document (a bulk import; the version is assigned
/// here) and publishes it to every box. `If-Match` with the ETag read
/// before makes the update safe against a concurrent one (412).
#[utoipa::path(put, path = "/api/v1/master-data", tag = "master-data",
    request_body(content = Object, example = json!({"partners": [{"id": "P-100", "name": "Hof Meyer", "roles": ["supplier"]}],
        "articles": [{"id": "A-WHEAT", "name": "Weizen"}]})),
    params(("If-Match" = Option<String>, Header, description = "The ETag read before")),
    responses(
        (status = 200, description = "Stored and published", body = Object, headers(("ETag" = String))),
        (status = 400, description = "Not JSON, or a malformed If-Match", body = crate::api::auth::ProblemSchema, content_type = "application/problem+json"),
        (status = 412, description = "Changed meanwhile", body = crate::api::auth::ProblemSchema, content_type = "application/problem+json"),
        (status = 422, description = "Not valid master data; the detail names the field", body = crate::api::auth::ProblemSchema, content_type = "application/problem+json"),
    ))]
async fn put_master_data(
    State(state): State<AppState>,
    business::Actor(actor): business::Actor,
    headers: axum::http::HeaderMap,
    body: Result<Json<serde_json::Value>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let document = match body {
        Ok(Json(document)) => document,
        Err(rejection) => return Problem::bad_request(rejection.body_text()).into_response(),
    };
    let if_version = match headers.get(header::IF_MATCH).map(|v| v.to_str()) {
        None => None,
        Some(Ok(text)) => match text.trim().trim_matches('"').parse::<u64>() {
            Ok(version) => Some(version),
            Err(_) => {
                return Problem::bad_request(format!(
                    "If-Match must be an ETag of this resource like \"3\", got {text:?}"
                ))
                .into_response();
            }
        },
        Some(Err(_)) => return Problem::bad_request("If-Match is not ASCII").into_response(),
    };
    let store = state.store.clone();
    let put =
        tokio::task::spawn_blocking(move || store.put_master_data(document, if_version, &actor))
            .await;
    let data = match put {
        Ok(Ok(data)) => data,
        Ok(Err(PutMasterDataError::VersionMismatch { current })) => {
            return Problem::new(
                StatusCode::PRECONDITION_FAILED,
                format!("master data changed meanwhile; it is at version {current} now"),
            )
            .into_response();
        }
        Ok(Err(PutMasterDataError::Invalid(reason))) => {
            return Problem::new(StatusCode::UNPROCESSABLE_ENTITY, reason).into_response();
        }
        Ok(Err(PutMasterDataError::Store(error))) => {
            return Problem::internal(&error, INTERNAL_DETAIL).into_response();
        }
        Err(error) => return Problem::internal(&error, INTERNAL_DETAIL).into_response(),
    };
    state.master_data.changed();
    ([(header::ETAG, etag(data.version))], Json(data)).into_response()
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct FieldValueParams {
    device_id: Option<String>,
}

/// The latest recorded value of each field-device point (Modbus points
/// marked `record`), per box.
#[utoipa::path(get, path = "/api/v1/field-values", tag = "field", params(FieldValueParams),
    responses(
        (status = 200, description = "The values", body = Vec<crate::store::FieldValueView>),
        (status = 400, description = "A parameter is wrong; the detail names it", body = crate::api::auth::ProblemSchema, content_type = "application/problem+json"),
    ))]
async fn list_field_values(
    State(state): State<AppState>,
    ApiQuery(params): ApiQuery<FieldValueParams>,
) -> Response {
    json_or_problem(
        query(&state, move |store| {
            store.field_values(params.device_id.as_deref())
        })
        .await,
    )
}

/// The OpenAPI part of the handlers above and of the fleet view.
#[derive(Debug, utoipa::OpenApi)]
#[openapi(
    paths(
        health, metrics, list_dead_letters, list_backups, create_backup, get_master_data,
        put_master_data, list_field_values, devices::list_devices, devices::assign_site,
    ),
    components(schemas(Health, LiveCounts, devices::DeviceOverview, devices::DevicePatch)),
    tags(
        (name = "operations", description = "Health, metrics, dead letters and backups"),
        (name = "master-data", description = "The whole master-data document the boxes get"),
        (name = "devices", description = "The edge boxes: presence, version, backlog, alarms, site"),
        (name = "field", description = "Field devices: recorded and live values, commands"),
    )
)]
pub struct CoreApi;
