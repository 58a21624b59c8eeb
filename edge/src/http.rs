//! The edge agent's local HTTP API for the operator terminal and for
//! monitoring: `/health`, the live weight, and the weighing steps.
//!
//! Errors are problem+json; the operator sees why a weighing was refused
//! (not stable, below minimum load, no such ticket) and nothing internal.

mod cash;
mod modbus;
mod simulation;
mod terminal;
mod tickets;

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;
use valeo_drivers::analyzer::AnalyzerError;
use valeo_drivers::scale::ScaleError;
use valeo_drivers::sim::truck::TruckScale;
use valeo_drivers::site_io::{InterlockError, SimulatedPins};
use valeo_process::problem::Problem;
use valeo_records::TransitionError;
use valeo_sync::uplink::UplinkHandle;

use crate::field_commands::FieldWrites;
use crate::workflow::{Workflow, WorkflowError};

#[derive(Debug, Clone)]
pub struct AppState {
    pub workflow: Workflow,
    pub uplink: UplinkHandle,
    pub device_id: String,
    /// The simulated weighbridge, when `[simulation]` is enabled.
    pub simulation: Option<Simulation>,
    /// The Modbus lines the agent polls, and writes to them.
    pub field: FieldWrites,
    /// The cash desk, when `[cash]` is configured.
    pub cash: Option<crate::cash::CashDesk>,
}

/// What a simulating agent lets the API drive.
#[derive(Debug, Clone)]
pub struct Simulation {
    pub truck: TruckScale,
    /// The `[site_io]` pins of kind `simulated`.
    pub pins: SimulatedPins,
    /// Faults of the software TSE, when the cash desk signs with it.
    pub tse_faults: Option<valeo_drivers::tse::software::TseFaults>,
}

pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/api/v1/scales", get(scales))
        .route("/api/v1/scales/{scale_id}/live", get(live))
        .route("/api/v1/master-data", get(tickets::master_data))
        .route("/api/v1/site", get(site))
        .route("/api/v1/analyzers", get(analyzers))
        .route("/api/v1/modbus", get(modbus::list))
        .route("/api/v1/modbus/{device}/{point}", post(modbus::write))
        .route("/api/v1/tickets", get(tickets::list).post(tickets::open))
        .route("/api/v1/tickets/{ticket_no}", get(tickets::get))
        .route(
            "/api/v1/tickets/{ticket_no}/second-weighing",
            post(tickets::second),
        )
        .route("/api/v1/tickets/{ticket_no}/cancel", post(tickets::cancel))
        .route(
            "/api/v1/tickets/{ticket_no}/reprint",
            post(tickets::reprint),
        )
        .route(
            "/api/v1/tickets/{ticket_no}/quality",
            post(tickets::quality),
        )
        .route("/api/v1/weighings", post(tickets::by_plate))
        .route("/api/v1/tse", get(cash::tse_status))
        .route("/api/v1/tse/export", get(cash::tse_export))
        .route("/api/v1/sales", post(cash::create_sale))
        .route("/api/v1/sales/open", get(cash::open_sales))
        .route("/api/v1/sales/open/{id}/lines", post(cash::add_line))
        .route("/api/v1/sales/open/{id}/finish", post(cash::finish))
        .route("/api/v1/sales/open/{id}/abort", post(cash::abort))
        .route("/api/v1/receipts", get(cash::receipts))
        .route("/api/v1/receipts/{n}", get(cash::receipt))
        .route("/api/v1/receipts/{n}/print", get(cash::print))
        .route("/api/v1/receipts/{n}/storno", post(cash::storno))
        .route("/api/v1/cash/closing", post(cash::closing))
        .route("/api/v1/simulation", get(simulation::status))
        .route(
            "/api/v1/simulation/truck",
            post(simulation::drive_on).delete(simulation::drive_off),
        )
        .route(
            "/api/v1/simulation/sensors/{name}",
            axum::routing::put(simulation::set_sensor),
        )
        .route(
            "/api/v1/simulation/tse",
            axum::routing::put(simulation::set_tse_fault),
        )
        .merge(terminal::routes())
        .fallback(|| async { problem(StatusCode::NOT_FOUND, "no such resource") })
        .with_state(state)
}

fn problem(status: StatusCode, detail: &str) -> Response {
    Problem::new(status, detail).into_response()
}

impl IntoResponse for WorkflowError {
    fn into_response(self) -> Response {
        let status = match &self {
            WorkflowError::UnknownScale(_)
            | WorkflowError::Transition(TransitionError::NoSuchTicket { .. }) => {
                StatusCode::NOT_FOUND
            }
            WorkflowError::BadPlate(_)
            | WorkflowError::BadInput { .. }
            | WorkflowError::MissingField(_)
            | WorkflowError::UnknownMasterData { .. }
            | WorkflowError::MasterDataMismatch(_)
            | WorkflowError::NoStoredTare(_)
            | WorkflowError::StoredTareTooOld { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            WorkflowError::AlreadyOnSite(..) | WorkflowError::Transition(_) => StatusCode::CONFLICT,
            WorkflowError::Interlock(InterlockError::Unavailable) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            WorkflowError::Interlock(_) => StatusCode::CONFLICT,
            WorkflowError::UnknownAnalyzer(_) => StatusCode::UNPROCESSABLE_ENTITY,
            WorkflowError::Analyzer(AnalyzerError::Refused { .. }) => StatusCode::CONFLICT,
            WorkflowError::Analyzer(
                AnalyzerError::NoMatch { .. } | AnalyzerError::BadNumber { .. },
            ) => StatusCode::BAD_GATEWAY,
            WorkflowError::Analyzer(_) => StatusCode::SERVICE_UNAVAILABLE,
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
                tracing::error!(error = %self, "weighing step failed");
                return problem(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the step could not be stored; nothing was recorded",
                );
            }
        };
        problem(status, &self.to_string())
    }
}

/// The poll health of every Modbus device on every line.
fn modbus_health(state: &AppState) -> Vec<valeo_drivers::modbus::poller::DeviceHealth> {
    state
        .field
        .lines()
        .iter()
        .flat_map(|line| {
            line.devices()
                .iter()
                .map(|(_, rx)| rx.borrow().health.clone())
        })
        .collect()
}

/// `GET /api/v1/site`: lights, barriers and position sensors; 404 when
/// the site has none configured.
async fn site(State(state): State<AppState>) -> Response {
    match state.workflow.site() {
        Some(site) => Json(site.status().borrow().clone()).into_response(),
        None => problem(StatusCode::NOT_FOUND, "no site I/O configured ([site_io])"),
    }
}

/// `GET /api/v1/analyzers`: the analyzers quality samples can be read from.
async fn analyzers(State(state): State<AppState>) -> Response {
    let ids: Vec<_> = state
        .workflow
        .analyzers()
        .iter()
        .map(|a| serde_json::json!({"id": a.id()}))
        .collect();
    Json(ids).into_response()
}

/// One live reading as the terminal shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
struct LiveReading {
    scale_id: String,
    connected: bool,
    weight: Option<valeo_drivers::scale::reading::Weight>,
    display: Option<String>,
    stable: bool,
    overload: bool,
    underload: bool,
}

/// How often the live stream says it is still there while nothing changes.
const LIVE_KEEPALIVE_MS: u64 = 10_000;

/// `GET /api/v1/scales/{id}/live`: Server-Sent Events, one `reading` event
/// per change of the scale's status (as fast as the terminal is polled).
async fn live(State(state): State<AppState>, Path(scale_id): Path<String>) -> Response {
    let Some(scale) = state.workflow.scales().iter().find(|s| s.id() == scale_id) else {
        return problem(
            StatusCode::NOT_FOUND,
            &format!("unknown scale {scale_id:?}"),
        );
    };
    let rx = scale.status();
    let stream = futures::stream::unfold(
        (rx, scale_id, None::<LiveReading>, true),
        |(mut rx, id, last, first)| async move {
            loop {
                if !first && rx.changed().await.is_err() {
                    return None;
                }
                let status = rx.borrow_and_update().clone();
                let reading = status.last_reading.as_ref();
                let live = LiveReading {
                    scale_id: id.clone(),
                    connected: status.connected,
                    weight: reading.and_then(|r| r.net),
                    display: reading.and_then(|r| r.net).map(|w| w.to_string()),
                    stable: reading.is_some_and(|r| r.stable),
                    overload: reading.is_some_and(|r| r.overload),
                    underload: reading.is_some_and(|r| r.underload),
                };
                // Polls that read the same weight are not news.
                if last.as_ref() == Some(&live) {
                    continue;
                }
                let event = Event::default()
                    .event("reading")
                    .json_data(&live)
                    .unwrap_or_else(|_| Event::default().comment("unserialisable reading"));
                return Some((Ok::<_, Infallible>(event), (rx, id, Some(live), false)));
            }
        },
    );
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_millis(LIVE_KEEPALIVE_MS)))
        .into_response()
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
    let master = state.workflow.master_data().snapshot();
    let site = state.workflow.site().map(|s| s.status().borrow().clone());
    let pin_fault = site.as_ref().is_some_and(|s| s.pin_fault);
    let mut alarms = Vec::new();
    if disk_alarm {
        alarms.push("outbox disk quota nearly reached".to_owned());
    }
    if pin_fault {
        alarms.push("site I/O pin fault: lights red, barriers closed".to_owned());
    }
    if let Some(error) = &master.last_error {
        alarms.push(error.clone());
    }
    let modbus_health = modbus_health(&state);
    for device in modbus_health.iter().filter(|d| d.degraded) {
        alarms.push(format!("modbus device {:?} degraded", device.device_id));
    }
    let tse = state.cash.as_ref().map(crate::cash::CashDesk::status);
    let tse_outage = tse.as_ref().and_then(|t| t.outage.as_ref());
    if let Some(outage) = tse_outage {
        alarms.push(format!(
            "TSE outage since {}: {} (receipts are issued without signature)",
            outage.started_at, outage.cause
        ));
    }
    let healthy = outbox.is_some()
        && !disk_alarm
        && !pin_fault
        && tse_outage.is_none()
        && scales.iter().all(|s| s.connected);
    let body = serde_json::json!({
        "master_data": {
            "version": master.data.version,
            "received_at": master.received_at,
            "last_error": master.last_error,
        },
        "site_io": site.map(|s| serde_json::json!({
            "state": s.state,
            "pin_fault": s.pin_fault,
            "last_pin_error": s.last_pin_error,
        })),
        "status": if healthy { "ok" } else { "degraded" },
        "device_id": state.device_id,
        "version": crate::VERSION,
        "outbox": outbox.as_ref().map(|o| o.stats),
        "outbox_oldest_pending_age_s": outbox.as_ref().map(|o| o.oldest_pending_age_s),
        "disk": outbox.as_ref().map(|o| o.disk),
        "alarms": alarms,
        "uplink": uplink,
        "scales": scales,
        "modbus": modbus_health,
        "tse": tse,
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
    m.gauge(
        "valeo_edge_master_data_version",
        "Version of the cached master data (0: none received yet).",
        state.workflow.master_data().current().version as f64,
    );
    if let Some(site) = state.workflow.site() {
        m.gauge(
            "valeo_edge_site_io_pin_fault",
            "1 while a light, barrier or sensor pin fails (all red, barriers closed).",
            f64::from(u8::from(site.status().borrow().pin_fault)),
        );
    }
    let modbus = modbus_health(&state);
    let per_device = |f: fn(&valeo_drivers::modbus::poller::DeviceHealth) -> f64| {
        modbus.iter().map(move |h| (h.device_id.as_str(), f(h)))
    };
    m.by_label(
        "valeo_edge_modbus_requests_total",
        "Modbus requests sent.",
        "counter",
        "device",
        per_device(|h| h.requests_total as f64),
    )
    .by_label(
        "valeo_edge_modbus_requests_failed_total",
        "Modbus requests that timed out or failed on the transport.",
        "counter",
        "device",
        per_device(|h| h.requests_failed as f64),
    )
    .by_label(
        "valeo_edge_modbus_exceptions_total",
        "Modbus exception answers.",
        "counter",
        "device",
        per_device(|h| h.exceptions_total as f64),
    )
    .by_label(
        "valeo_edge_modbus_last_latency_seconds",
        "Latency of the last answered request.",
        "gauge",
        "device",
        per_device(|h| h.last_latency_ms.map_or(f64::NAN, |ms| ms / 1000.0)),
    )
    .by_label(
        "valeo_edge_modbus_degraded",
        "1 while the device is skipped after repeated failures.",
        "gauge",
        "device",
        per_device(|h| f64::from(u8::from(h.degraded))),
    );
    if let Some(cash) = &state.cash {
        let tse = cash.status();
        m.gauge(
            "valeo_edge_tse_outage",
            "1 while the TSE fails: sales go on, receipts unsigned and marked.",
            f64::from(u8::from(tse.outage.is_some())),
        )
        .gauge(
            "valeo_edge_tse_certified",
            "1 when the TSE in use says it is certified (the software TSE is not).",
            f64::from(u8::from(tse.info.as_ref().is_some_and(|i| i.certified))),
        );
    }
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
