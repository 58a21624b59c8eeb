//! The edge agent's local HTTP API for the operator terminal and for
//! monitoring: `/health`, the live weight, and the weighing steps.
//!
//! Errors are problem+json; the operator sees why a weighing was refused
//! (not stable, below minimum load, no such ticket) and nothing internal.

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use valeo_drivers::scale::ScaleError;
use valeo_process::problem::Problem;
use valeo_records::Direction;
use valeo_sync::uplink::UplinkHandle;

use crate::workflow::{Workflow, WorkflowError};

#[derive(Debug, Clone)]
pub struct AppState {
    pub workflow: Workflow,
    pub uplink: UplinkHandle,
    pub device_id: String,
}

pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/api/v1/scales", get(scales))
        .route("/api/v1/tickets", get(list_tickets).post(first_weighing))
        .route("/api/v1/tickets/{ticket_no}", get(get_ticket))
        .route(
            "/api/v1/tickets/{ticket_no}/second-weighing",
            post(second_weighing),
        )
        .fallback(|| async { problem(StatusCode::NOT_FOUND, "no such resource") })
        .with_state(state)
}

fn problem(status: StatusCode, detail: &str) -> Response {
    Problem::new(status, detail).into_response()
}

impl IntoResponse for WorkflowError {
    fn into_response(self) -> Response {
        let status = match &self {
            WorkflowError::UnknownScale(_) | WorkflowError::NoOpenTicket(_) => {
                StatusCode::NOT_FOUND
            }
            WorkflowError::BadPlate(_) => StatusCode::UNPROCESSABLE_ENTITY,
            WorkflowError::AlreadyOnSite(..) | WorkflowError::Inconsistent { .. } => {
                StatusCode::CONFLICT
            }
            WorkflowError::Scale(
                ScaleError::NotStable
                | ScaleError::Overload
                | ScaleError::Underload
                | ScaleError::BelowMinimumLoad { .. }
                | ScaleError::Rejected { .. },
            ) => StatusCode::CONFLICT,
            WorkflowError::Scale(_) => StatusCode::SERVICE_UNAVAILABLE,
            WorkflowError::Outbox(valeo_sync::OutboxError::Full { .. }) => {
                StatusCode::INSUFFICIENT_STORAGE
            }
            WorkflowError::Outbox(_) | WorkflowError::Corrupt(_) => {
                tracing::error!(error = %self, "weighing failed");
                return problem(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the weighing could not be stored",
                );
            }
        };
        problem(status, &self.to_string())
    }
}

#[derive(Debug, Serialize)]
struct ScaleView {
    id: String,
    connected: bool,
    weight: Option<String>,
    stable: Option<bool>,
    reading_age_ms: Option<u64>,
    readings_total: u64,
    errors_total: u64,
    reconnects_total: u64,
    timeouts_total: u64,
    /// The device failed repeatedly and is polled less often until it answers.
    degraded: bool,
    last_error: Option<String>,
}

fn scale_views(workflow: &Workflow) -> Vec<ScaleView> {
    workflow
        .scales()
        .iter()
        .map(|scale| {
            let status = scale.status().borrow().clone();
            ScaleView {
                id: scale.id().to_owned(),
                connected: status.connected,
                weight: status
                    .last_reading
                    .as_ref()
                    .and_then(|r| r.net)
                    .map(|w| w.to_string()),
                stable: status.last_reading.as_ref().map(|r| r.stable),
                reading_age_ms: status
                    .last_reading_at
                    .map(|at| at.elapsed().as_millis() as u64),
                readings_total: status.readings_total,
                errors_total: status.errors_total,
                reconnects_total: status.reconnects_total,
                timeouts_total: status.timeouts_total,
                degraded: status.degraded,
                last_error: status.last_error,
            }
        })
        .collect()
}

/// What `/health` and `/metrics` read from the outbox.
#[derive(Debug)]
struct OutboxSnapshot {
    stats: valeo_sync::outbox::OutboxStats,
    telemetry_dropped: u64,
    oldest_pending_age_s: f64,
    disk: valeo_sync::outbox::DiskUsage,
}

async fn outbox_snapshot(state: &AppState) -> Option<OutboxSnapshot> {
    let outbox = state.workflow.outbox().clone();
    let read = tokio::task::spawn_blocking(move || {
        Ok::<_, valeo_sync::OutboxError>((
            outbox.stats()?,
            outbox.oldest_pending_created_at()?,
            outbox.disk_usage()?,
            outbox.telemetry_dropped()?,
        ))
    })
    .await;
    let Ok(Ok((stats, oldest, disk, telemetry_dropped))) = read else {
        return None;
    };
    let oldest_pending_age_s = oldest
        .map(|t| (chrono::Utc::now() - t).num_milliseconds().max(0) as f64 / 1000.0)
        .unwrap_or(0.0);
    Some(OutboxSnapshot {
        stats,
        telemetry_dropped,
        oldest_pending_age_s,
        disk,
    })
}

async fn health(State(state): State<AppState>) -> Response {
    let outbox = outbox_snapshot(&state).await;
    let scales = scale_views(&state.workflow);
    let uplink = state.uplink.status();
    // A box without central is still healthy: it weighs offline. It is
    // degraded when it cannot store records (or soon cannot: disk alarm) or
    // cannot reach its scale.
    let disk_alarm = outbox.as_ref().is_some_and(|o| o.disk.alarm);
    let healthy = outbox.is_some() && !disk_alarm && scales.iter().all(|s| s.connected);
    let body = serde_json::json!({
        "status": if healthy { "ok" } else { "degraded" },
        "device_id": state.device_id,
        "version": crate::VERSION,
        "outbox": outbox.as_ref().map(|o| o.stats),
        "outbox_oldest_pending_age_s": outbox.as_ref().map(|o| o.oldest_pending_age_s),
        "disk": outbox.as_ref().map(|o| o.disk),
        "alarms": if disk_alarm { vec!["outbox disk quota nearly reached"] } else { Vec::new() },
        "uplink": uplink,
        "scales": scales,
    });
    let code = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body)).into_response()
}

/// Prometheus metrics: outbox depth and age, uplink rates, scale health.
async fn metrics(State(state): State<AppState>) -> Response {
    use valeo_process::metrics::{CONTENT_TYPE, Exposition};
    let Some(OutboxSnapshot {
        stats,
        oldest_pending_age_s: oldest_age_s,
        disk,
        telemetry_dropped,
    }) = outbox_snapshot(&state).await
    else {
        return problem(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the outbox cannot be read",
        );
    };
    let uplink = state.uplink.status();
    let mut m = Exposition::new();
    m.gauge(
        "valeo_edge_outbox_pending_records",
        "Records central has not acknowledged.",
        stats.pending_records as f64,
    )
    .gauge(
        "valeo_edge_outbox_head_seq",
        "Seq of the newest record.",
        stats.head_seq as f64,
    )
    .gauge(
        "valeo_edge_outbox_acked_seq",
        "Highest seq central acknowledged.",
        stats.acked_seq as f64,
    )
    .gauge(
        "valeo_edge_outbox_oldest_pending_age_seconds",
        "Age of the oldest unacknowledged record.",
        oldest_age_s,
    )
    .gauge(
        "valeo_edge_uplink_connected",
        "1 while connected to the broker.",
        f64::from(u8::from(uplink.connected)),
    )
    .counter(
        "valeo_edge_telemetry_dropped_total",
        "Live values dropped because the offline queue was full.",
        telemetry_dropped as f64,
    )
    .counter(
        "valeo_edge_telemetry_sent_total",
        "Live values published (QoS 0).",
        uplink.telemetry_sent as f64,
    )
    .gauge(
        "valeo_edge_outbox_db_bytes",
        "Bytes the outbox database uses.",
        disk.used_bytes as f64,
    )
    .gauge(
        "valeo_edge_outbox_db_max_bytes",
        "The outbox database's quota.",
        disk.max_bytes as f64,
    )
    .counter(
        "valeo_edge_uplink_batches_sent_total",
        "Batches published.",
        uplink.batches_sent as f64,
    )
    .counter(
        "valeo_edge_uplink_records_acked_total",
        "Records central acknowledged.",
        uplink.records_acked as f64,
    )
    .counter(
        "valeo_edge_uplink_resends_total",
        "Rewinds to the acknowledged seq (reconnect, ack timeout, gap).",
        uplink.resends as f64,
    )
    .counter(
        "valeo_edge_uplink_disconnects_total",
        "Broker connections lost.",
        uplink.disconnects as f64,
    );
    let views = scale_views(&state.workflow);
    let per_scale = |f: fn(&ScaleView) -> f64| views.iter().map(move |v| (v.id.as_str(), f(v)));
    m.by_label(
        "valeo_edge_scale_connected",
        "1 while the terminal answers.",
        "gauge",
        "scale",
        per_scale(|v| f64::from(u8::from(v.connected))),
    )
    .by_label(
        "valeo_edge_scale_degraded",
        "1 while the scale is degraded (failing, polled less often).",
        "gauge",
        "scale",
        per_scale(|v| f64::from(u8::from(v.degraded))),
    )
    .by_label(
        "valeo_edge_scale_errors_total",
        "I/O errors, timeouts and protocol errors.",
        "counter",
        "scale",
        per_scale(|v| v.errors_total as f64),
    )
    .by_label(
        "valeo_edge_scale_reading_age_seconds",
        "Age of the last reading.",
        "gauge",
        "scale",
        per_scale(|v| v.reading_age_ms.map_or(f64::NAN, |ms| ms as f64 / 1000.0)),
    );
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], m.finish()).into_response()
}

async fn scales(State(state): State<AppState>) -> Response {
    Json(scale_views(&state.workflow)).into_response()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FirstWeighingRequest {
    plate: String,
    direction: Direction,
    scale_id: Option<String>,
}

async fn first_weighing(
    State(state): State<AppState>,
    body: Result<Json<FirstWeighingRequest>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Json(request) = match body {
        Ok(body) => body,
        Err(rejection) => return problem(StatusCode::BAD_REQUEST, &rejection.body_text()),
    };
    match state
        .workflow
        .first_weighing(
            &request.plate,
            request.direction,
            request.scale_id.as_deref(),
        )
        .await
    {
        Ok(ticket) => (StatusCode::CREATED, Json(ticket)).into_response(),
        Err(error) => error.into_response(),
    }
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct SecondWeighingRequest {
    scale_id: Option<String>,
}

async fn second_weighing(
    State(state): State<AppState>,
    Path(ticket_no): Path<String>,
    body: Option<Json<SecondWeighingRequest>>,
) -> Response {
    let ticket_no = match parse_ticket_no(&ticket_no) {
        Ok(no) => no,
        Err(problem) => return problem.into_response(),
    };
    let request = body.map(|Json(b)| b).unwrap_or_default();
    match state
        .workflow
        .second_weighing(ticket_no, request.scale_id.as_deref())
        .await
    {
        Ok(ticket) => Json(ticket).into_response(),
        Err(error) => error.into_response(),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListParams {
    #[serde(default)]
    open: bool,
    limit: Option<u32>,
}

async fn list_tickets(
    State(state): State<AppState>,
    params: Result<axum::extract::Query<ListParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let params = match params {
        Ok(axum::extract::Query(p)) => p,
        Err(rejection) => return problem(StatusCode::BAD_REQUEST, &rejection.body_text()),
    };
    let limit = params.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return problem(
            StatusCode::BAD_REQUEST,
            &format!("limit must be 1..=1000, got {limit}"),
        );
    }
    match state.workflow.tickets(params.open, limit).await {
        Ok(tickets) => Json(tickets).into_response(),
        Err(error) => error.into_response(),
    }
}

/// A ticket number from the path, or the 400 answer naming what was sent.
fn parse_ticket_no(text: &str) -> Result<u64, Problem> {
    text.parse().map_err(|_| {
        Problem::bad_request(format!("ticket number must be an integer, got {text:?}"))
    })
}

async fn get_ticket(State(state): State<AppState>, Path(ticket_no): Path<String>) -> Response {
    let ticket_no = match parse_ticket_no(&ticket_no) {
        Ok(no) => no,
        Err(problem) => return problem.into_response(),
    };
    match state.workflow.ticket(ticket_no).await {
        Ok(Some(ticket)) => Json(ticket).into_response(),
        Ok(None) => problem(
            StatusCode::NOT_FOUND,
            &format!("no ticket number {ticket_no}"),
        ),
        Err(error) => error.into_response(),
    }
}
