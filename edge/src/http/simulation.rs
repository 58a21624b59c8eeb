//! Controls of the simulated weighbridge (only with `[simulation] enabled`):
//! drive a truck on and off, for demos, training and the browser tests.
//! Without a simulation these answer 404, so a production box has no way
//! to fake a load.

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use valeo_process::problem::Problem;

use super::tickets::body;
use super::{AppState, Simulation};

fn simulated(state: &AppState) -> Result<&Simulation, Problem> {
    state.simulation.as_ref().ok_or_else(|| {
        Problem::not_found("this agent has no simulated scale ([simulation] enabled = false)")
    })
}

/// `GET /api/v1/simulation`.
pub(super) async fn status(State(state): State<AppState>) -> Response {
    match simulated(&state) {
        Ok(sim) => Json(serde_json::json!({
            "enabled": true,
            "weight_kg": sim.truck.sample().weight_kg,
            "pins": sim.pins.names(),
        }))
        .into_response(),
        Err(answer) => answer.into_response(),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DriveOn {
    weight_kg: i64,
}

/// `POST /api/v1/simulation/truck {"weight_kg": 40000}`.
pub(super) async fn drive_on(
    State(state): State<AppState>,
    request: Result<Json<DriveOn>, JsonRejection>,
) -> Response {
    let scale = match simulated(&state) {
        Ok(sim) => &sim.truck,
        Err(answer) => return answer.into_response(),
    };
    let request = match body(request) {
        Ok(r) => r,
        Err(answer) => return answer.into_response(),
    };
    let max_kg = scale.params().capacity_kg * 2;
    if !(0..=max_kg).contains(&request.weight_kg) {
        return Problem::bad_request(format!("weight_kg must be 0..={max_kg}")).into_response();
    }
    scale.drive_on(request.weight_kg);
    StatusCode::NO_CONTENT.into_response()
}

/// `DELETE /api/v1/simulation/truck`.
pub(super) async fn drive_off(State(state): State<AppState>) -> Response {
    match simulated(&state) {
        Ok(sim) => {
            sim.truck.drive_off();
            StatusCode::NO_CONTENT.into_response()
        }
        Err(answer) => answer.into_response(),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Sensor {
    blocked: bool,
}

/// `PUT /api/v1/simulation/sensors/{name} {"blocked": true}`: a vehicle
/// interrupts (or clears) a simulated position sensor.
pub(super) async fn set_sensor(
    State(state): State<AppState>,
    axum::extract::Path(name): axum::extract::Path<String>,
    request: Result<Json<Sensor>, JsonRejection>,
) -> Response {
    let sim = match simulated(&state) {
        Ok(sim) => sim,
        Err(answer) => return answer.into_response(),
    };
    let request = match body(request) {
        Ok(r) => r,
        Err(answer) => return answer.into_response(),
    };
    let sensors: Vec<String> = sim
        .pins
        .names()
        .iter()
        .filter_map(|pin| pin.strip_prefix("sensor.").map(str::to_owned))
        .collect();
    if !sensors.contains(&name) {
        return Problem::not_found(format!(
            "no simulated position sensor {name:?}; configured: {}",
            if sensors.is_empty() {
                "none".to_owned()
            } else {
                sensors.join(", ")
            }
        ))
        .into_response();
    }
    match sim.pins.set_sensor_blocked(&name, request.blocked) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(error) => Problem::not_found(error.to_string()).into_response(),
    }
}
