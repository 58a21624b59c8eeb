//! The field around the boxes at the API: live values from their telemetry,
//! and commands to them (Modbus writes) with the results they report.
//!
//! A command is stored, then published on the box's commands topic; the box
//! answers with a `command.result` record, so `GET /api/v1/commands/{id}`
//! shows `pending` until that record is committed here.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use chrono::Utc;
use serde::Deserialize;
use valeo_process::problem::Problem;
use valeo_records::command::{CommandAction, MAX_COMMAND_TTL_MS};

use super::{ApiQuery, AppState, INTERNAL_DETAIL, json_or_problem, page_limit, query};
use crate::store::NewCommandError;

/// Validity of a command when the request does not say.
pub const DEFAULT_COMMAND_TTL_MS: u64 = 60_000;
/// Shortest validity a request may ask for.
const MIN_COMMAND_TTL_MS: u64 = 1_000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LiveParams {
    device_id: Option<String>,
    prefix: Option<String>,
}

/// `GET /api/v1/live-values?device_id=&prefix=`: the latest telemetry
/// sample of every name (scale weights, Modbus points), as received.
pub(super) async fn list_live_values(
    State(state): State<AppState>,
    ApiQuery(params): ApiQuery<LiveParams>,
) -> Response {
    Json(
        state
            .live
            .list(params.device_id.as_deref(), params.prefix.as_deref()),
    )
    .into_response()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NewCommand {
    action: CommandAction,
    /// Who asks; shown in the box's log and its result record.
    requested_by: String,
    /// How long the box may still carry it out.
    #[serde(default)]
    ttl_ms: Option<u64>,
}

/// `POST /api/v1/devices/{device_id}/commands`: stores the command and
/// sends it; answers 202 with the command (status `pending`).
pub(super) async fn create_command(
    State(state): State<AppState>,
    Path(device_id): Path<String>,
    body: Result<Json<NewCommand>, JsonRejection>,
) -> Response {
    let request = match body {
        Ok(Json(request)) => request,
        Err(rejection) => return Problem::bad_request(rejection.body_text()).into_response(),
    };
    let ttl_ms = request.ttl_ms.unwrap_or(DEFAULT_COMMAND_TTL_MS);
    if !(MIN_COMMAND_TTL_MS..=MAX_COMMAND_TTL_MS).contains(&ttl_ms) {
        return Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("ttl_ms must be {MIN_COMMAND_TTL_MS}..={MAX_COMMAND_TTL_MS}, got {ttl_ms}"),
        )
        .into_response();
    }
    if let Err(error) = request.action.validate() {
        return Problem::new(StatusCode::UNPROCESSABLE_ENTITY, error.to_string()).into_response();
    }
    if let Err(error) = valeo_records::command::check_requested_by(&request.requested_by) {
        return Problem::new(StatusCode::UNPROCESSABLE_ENTITY, error.to_string()).into_response();
    }
    let by = request.requested_by.clone();
    let store = state.store.clone();
    let device = device_id.clone();
    let stored = tokio::task::spawn_blocking(move || {
        store.new_command(&device, request.action, &by, ttl_ms, Utc::now())
    })
    .await;
    let command = match stored {
        Ok(Ok(command)) => command,
        Ok(Err(NewCommandError::UnknownDevice(device))) => {
            return Problem::not_found(format!("no device {device:?} is registered"))
                .into_response();
        }
        Ok(Err(NewCommandError::Store(error))) => {
            return Problem::internal(&error, INTERNAL_DETAIL).into_response();
        }
        Err(error) => return Problem::internal(&error, INTERNAL_DETAIL).into_response(),
    };
    let payload = Bytes::from(serde_json::to_vec(&command).unwrap_or_default());
    if let Err(error) = state.publisher.command(&device_id, payload).await {
        return Problem::internal(&error, INTERNAL_DETAIL).into_response();
    }
    tracing::info!(command_id = %command.id, device_id, requested_by = %command.requested_by, "command sent");
    let id = command.id.clone();
    match query(&state, move |store| store.command(&id, Utc::now())).await {
        Ok(Some(view)) => (
            StatusCode::ACCEPTED,
            [(
                header::LOCATION,
                format!("/api/v1/commands/{}", view.command_id),
            )],
            Json(view),
        )
            .into_response(),
        Ok(None) => {
            Problem::internal(&"command vanished after insert", INTERNAL_DETAIL).into_response()
        }
        Err(problem) => problem.into_response(),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CommandParams {
    device_id: Option<String>,
    limit: Option<u32>,
}

/// `GET /api/v1/commands?device_id=&limit=`: the newest commands first.
pub(super) async fn list_commands(
    State(state): State<AppState>,
    ApiQuery(params): ApiQuery<CommandParams>,
) -> Response {
    let limit = match page_limit(params.limit) {
        Ok(limit) => limit,
        Err(problem) => return problem.into_response(),
    };
    json_or_problem(
        query(&state, move |store| {
            store.commands(params.device_id.as_deref(), limit, Utc::now())
        })
        .await,
    )
}

/// `GET /api/v1/commands/{id}`.
pub(super) async fn get_command(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    let key = id.clone();
    match query(&state, move |store| store.command(&key, Utc::now())).await {
        Ok(Some(view)) => Json(view).into_response(),
        Ok(None) => Problem::not_found(format!("no command {id:?}")).into_response(),
        Err(problem) => problem.into_response(),
    }
}
