//! Modbus at the local API: every device's health and latest values, and
//! writes (coils, registers) as commands whose result is reported back.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use valeo_drivers::modbus::map::Value;
use valeo_drivers::modbus::poller::ModbusError;
use valeo_process::problem::Problem;

use super::AppState;
use super::tickets::body;

/// `GET /api/v1/modbus`: lines, their devices' health and point values.
pub(super) async fn list(State(state): State<AppState>) -> Response {
    let lines: Vec<_> = state
        .modbus
        .iter()
        .map(|line| {
            serde_json::json!({
                "line_id": line.id(),
                "devices": line
                    .devices()
                    .iter()
                    .map(|(_, rx)| rx.borrow().clone())
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
    let value = match request.value {
        serde_json::Value::Bool(b) => Value::Bool(b),
        serde_json::Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => Value::Int(i),
            (_, Some(u), _) => Value::UInt(u),
            (_, _, Some(f)) => Value::Float(f),
            _ => return Problem::bad_request("value is not a number").into_response(),
        },
        serde_json::Value::String(s) => Value::Text(s),
        other => {
            return Problem::bad_request(format!(
                "value must be a boolean, number or string, got {other}"
            ))
            .into_response();
        }
    };
    let Some(line) = state
        .modbus
        .iter()
        .find(|l| l.devices().iter().any(|(id, _)| *id == device))
    else {
        return Problem::not_found(format!("no modbus device {device:?}")).into_response();
    };
    tracing::info!(device, point, by = ?request.by, "modbus write requested");
    match line.write(&device, &point, value).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(error) => {
            let status = match &error {
                ModbusError::UnknownDevice(_) | ModbusError::UnknownPoint { .. } => {
                    StatusCode::NOT_FOUND
                }
                ModbusError::ReadOnly(_) | ModbusError::Codec(_) => {
                    StatusCode::UNPROCESSABLE_ENTITY
                }
                ModbusError::Exception { .. } => StatusCode::BAD_GATEWAY,
                ModbusError::Timeout { .. }
                | ModbusError::Transport { .. }
                | ModbusError::Degraded(_)
                | ModbusError::Gone => StatusCode::SERVICE_UNAVAILABLE,
            };
            Problem::new(status, error.to_string()).into_response()
        }
    }
}
