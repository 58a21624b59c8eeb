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

use super::openapi::{PROBLEM_JSON, ProblemSchema};
use super::{ApiQuery, AppState, INTERNAL_DETAIL, json_or_problem, page_limit, query};
use crate::live::LiveValue;
use crate::store::{CommandView, NewCommandError};

/// Validity of a command when the request does not say.
pub const DEFAULT_COMMAND_TTL_MS: u64 = 60_000;
/// Shortest validity a request may ask for.
const MIN_COMMAND_TTL_MS: u64 = 1_000;

/// The operations of this module, for the API's document.
#[derive(Debug, utoipa::OpenApi)]
#[openapi(paths(list_live_values, create_command, list_commands, get_command))]
pub(super) struct FieldApi;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct LiveParams {
    /// Only this box's values.
    #[param(nullable = false, example = "yard-1")]
    device_id: Option<String>,
    /// Only names starting with this, e.g. `modbus.` or `scale.bridge-1.`.
    #[param(nullable = false, example = "modbus.")]
    prefix: Option<String>,
}

/// Live values
///
/// The latest telemetry sample of every name (scale weights, Modbus
/// points) per box, as received: a view of now, kept in memory only.
#[utoipa::path(
    get,
    path = "/api/v1/live-values",
    tag = "field",
    params(LiveParams),
    responses(
        (status = 200, description = "Sorted by device and name.", body = Vec<LiveValue>),
        (status = 400, description = "A query parameter is unknown or malformed.",
            body = ProblemSchema, content_type = PROBLEM_JSON),
    )
)]
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

/// A command to send to a box.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "action": {"kind": "modbus_write", "device": "silo-1", "point": "fill_valve", "value": true},
    "requested_by": "anna@office",
    "ttl_ms": 60000
}))]
pub(super) struct NewCommand {
    #[schema(value_type = super::openapi::records::CommandActionSchema)]
    action: CommandAction,
    /// Who asks; shown in the box's log and its result record. No control
    /// characters.
    #[schema(
        min_length = 1,
        max_length = 128,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*$"
    )]
    requested_by: String,
    /// How long the box may still carry it out; 60000 when missing or null.
    #[serde(default)]
    #[schema(minimum = 1000, maximum = 3600000)]
    ttl_ms: Option<u64>,
}

/// Send a command
///
/// Stores the command and publishes it on the box's commands topic. The box
/// answers with a `command.result` record; until that is committed here the
/// command is `pending`.
#[utoipa::path(
    post,
    path = "/api/v1/devices/{device_id}/commands",
    tag = "field",
    params(("device_id" = String, Path, description = "A registered box.", example = "yard-1")),
    request_body(content = NewCommand, examples(
        ("open valve" = (summary = "Open a silo's fill valve", value = json!({
            "action": {"kind": "modbus_write", "device": "silo-1", "point": "fill_valve", "value": true},
            "requested_by": "anna@office"
        }))),
        ("set point" = (summary = "Set a set point, valid for 5 minutes", value = json!({
            "action": {"kind": "modbus_write", "device": "dryer", "point": "target_moisture", "value": 14.5},
            "requested_by": "erp-integration",
            "ttl_ms": 300000
        }))),
    )),
    responses(
        (status = 202, description = "Stored and sent; `status` is `pending`.", body = CommandView,
            headers(("Location" = String, description = "The command's URL."))),
        (status = 400, description = "The body is not JSON of this shape.",
            body = ProblemSchema, content_type = PROBLEM_JSON),
        (status = 404, description = "No such box is registered.",
            body = ProblemSchema, content_type = PROBLEM_JSON),
        (status = 422, description = "`ttl_ms`, the action or `requested_by` is out of bounds.",
            body = ProblemSchema, content_type = PROBLEM_JSON),
        (status = 500, description = "The command could not be stored or sent.",
            body = ProblemSchema, content_type = PROBLEM_JSON),
    )
)]
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

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct CommandParams {
    /// Only this box's commands.
    #[param(nullable = false, example = "yard-1")]
    device_id: Option<String>,
    /// Page size.
    #[param(nullable = false, minimum = 1, maximum = 500, default = 50)]
    limit: Option<u32>,
}

/// List commands
///
/// The newest commands first, of one box or all.
#[utoipa::path(
    get,
    path = "/api/v1/commands",
    tag = "field",
    params(CommandParams),
    responses(
        (status = 200, description = "Newest first.", body = Vec<CommandView>),
        (status = 400, description = "A query parameter is unknown, malformed or out of bounds.",
            body = ProblemSchema, content_type = PROBLEM_JSON),
        (status = 500, description = "The commands could not be read.",
            body = ProblemSchema, content_type = PROBLEM_JSON),
    )
)]
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

/// One command
#[utoipa::path(
    get,
    path = "/api/v1/commands/{id}",
    tag = "field",
    params(("id" = String, Path, description = "The command's id.",
        example = "3f2a9c0d4b5e6f708192a3b4c5d6e7f8")),
    responses(
        (status = 200, description = "The command and what became of it.", body = CommandView),
        (status = 404, description = "No command with this id.",
            body = ProblemSchema, content_type = PROBLEM_JSON),
        (status = 500, description = "The command could not be read.",
            body = ProblemSchema, content_type = PROBLEM_JSON),
    )
)]
pub(super) async fn get_command(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    let key = id.clone();
    match query(&state, move |store| store.command(&key, Utc::now())).await {
        Ok(Some(view)) => Json(view).into_response(),
        Ok(None) => Problem::not_found(format!("no command {id:?}")).into_response(),
        Err(problem) => problem.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use utoipa::PartialSchema;

    use super::*;

    #[test]
    fn the_documented_bounds_of_a_command_are_the_checked_ones() {
        let schema = serde_json::to_value(NewCommand::schema()).unwrap();
        let properties = &schema["properties"];
        assert_eq!(properties["ttl_ms"]["minimum"], MIN_COMMAND_TTL_MS);
        assert_eq!(properties["ttl_ms"]["maximum"], MAX_COMMAND_TTL_MS);
        assert_eq!(
            properties["requested_by"]["maxLength"],
            valeo_records::command::MAX_NAME_CHARS
        );
        let example: NewCommand = serde_json::from_value(schema["example"].clone()).unwrap();
        assert!(example.action.validate().is_ok());
        assert!(valeo_records::command::check_requested_by(&example.requested_by).is_ok());
    }
}
