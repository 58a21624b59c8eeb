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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TseFault {
    /// While set, every call to the software TSE fails with this cause.
    failing: Option<String>,
    /// Every call to the software TSE first waits this long (a TSE that
    /// answers late, so the desk's call timeout fires).
    #[serde(default)]
    delay_ms: u64,
}

/// `PUT /api/v1/simulation/tse {"failing": "USB unplugged", "delay_ms": 0}`:
/// makes the software TSE fail or answer late, to show and test the outage
/// handling. 404 unless the agent simulates and signs with the software TSE.
pub(super) async fn set_tse_fault(
    State(state): State<AppState>,
    request: Result<Json<TseFault>, JsonRejection>,
) -> Response {
    let faults = match simulated(&state) {
        Ok(sim) => sim.tse_faults.as_ref(),
        Err(answer) => return answer.into_response(),
    };
    let Some(faults) = faults else {
        return Problem::not_found("this agent does not sign with the software TSE")
            .into_response();
    };
    let request = match body(request) {
        Ok(r) => r,
        Err(answer) => return answer.into_response(),
    };
    if request.delay_ms > 600_000 {
        return Problem::bad_request("delay_ms must be at most 600000").into_response();
    }
    faults.set_failing(request.failing);
    faults.set_delay_ms(request.delay_ms);
    StatusCode::NO_CONTENT.into_response()
}
