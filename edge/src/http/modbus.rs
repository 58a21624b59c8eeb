//! Modbus at the local API: every device's health and latest values, and
//! writes (coils, registers) as commands whose result is reported back.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use valeo_drivers::modbus::poller::{DeviceSnapshot, ModbusError};
use valeo_process::problem::Problem;

use super::AppState;
use super::tickets::body;
use crate::field_commands::WriteError;

/// `GET /api/v1/modbus`: lines, their devices' health and point values.
/// A point the site interlock drives is listed as not writable, with the
/// `[site_io]` field that drives it (`driven_by`).
pub(super) async fn list(State(state): State<AppState>) -> Response {
    let device_json = |device: &str, snapshot: DeviceSnapshot| {
        let mut json = serde_json::to_value(snapshot).unwrap_or_default();
        if let Some(points) = json["points"].as_object_mut() {
            for (point, reading) in points.iter_mut() {
                if let Some(field) = state.field.driven_by(device, point) {
                    reading["writable"] = false.into();
                    reading["driven_by"] = field.into();
                }
            }
        }
        json
    };
    let lines: Vec<_> = state
        .field
        .lines()
        .iter()
        .map(|line| {
            serde_json::json!({
                "line_id": line.id(),
                "devices": line
                    .devices()
                    .iter()
                    .map(|(id, rx)| device_json(id, rx.borrow().clone()))
                    .collect::<Vec<_>>(),
            })
        })
        .collect();
    Json(lines).into_response()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct WriteBody {
    value: serde_json::Value,
    /// Who asked (terminal operator, workflow, central), for the log.
    #[serde(default)]
    by: Option<String>,
}

/// `POST /api/v1/modbus/{device}/{point}` `{"value": 1}`: writes a
/// read-write point and answers once the device confirmed it.
pub(super) async fn write(
    State(state): State<AppState>,
    Path((device, point)): Path<(String, String)>,
    request: Result<Json<WriteBody>, JsonRejection>,
) -> Response {
    let request = match body(request) {
        Ok(r) => r,
        Err(answer) => return answer.into_response(),
    };
    let by = request.by.as_deref().unwrap_or("terminal");
    match state.field.write(&device, &point, &request.value, by).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(error) => {
            let status = match &error {
                WriteError::BadValue(_) => StatusCode::BAD_REQUEST,
                WriteError::UnknownDevice(_)
                | WriteError::Modbus(ModbusError::UnknownDevice(_))
                | WriteError::Modbus(ModbusError::UnknownPoint { .. }) => StatusCode::NOT_FOUND,
                WriteError::Interlocked { .. } => StatusCode::CONFLICT,
                WriteError::Modbus(ModbusError::ReadOnly(_) | ModbusError::Codec(_)) => {
                    StatusCode::UNPROCESSABLE_ENTITY
                }
                WriteError::Modbus(ModbusError::Exception { .. }) => StatusCode::BAD_GATEWAY,
                WriteError::Modbus(
                    ModbusError::Timeout { .. }
                    | ModbusError::Transport { .. }
                    | ModbusError::Degraded(_)
                    | ModbusError::Gone
                    | ModbusError::Busy,
                ) => StatusCode::SERVICE_UNAVAILABLE,
            };
            Problem::new(status, error.to_string()).into_response()
        }
    }
}
