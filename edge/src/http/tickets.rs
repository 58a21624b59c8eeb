//! The ticket endpoints behind the operator terminal, and the plate-driven
//! endpoint for kiosks and plate cameras. Request bodies are strict (unknown
//! fields are refused) so a typo in an integration fails loudly instead of
//! weighing without the field.

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use valeo_process::problem::Problem;
use valeo_records::{Direction, QualitySource, Ticket, TicketState};

use super::AppState;
use crate::workflow::{OpenRequest, QualityRequest, SecondRequest, Weighing, WorkflowError};

/// Most tickets in one list answer.
const MAX_LIST_LIMIT: u32 = 1000;

/// The body of a request, or the 400 answer naming what was wrong with it.
pub(super) fn body<T>(body: Result<Json<T>, JsonRejection>) -> Result<T, Problem> {
    body.map(|Json(b)| b)
        .map_err(|rejection| Problem::bad_request(rejection.body_text()))
}

/// The ticket number from the path and the request body.
fn ticket_and_body<T>(
    no: &str,
    request: Result<Json<T>, JsonRejection>,
) -> Result<(u64, T), Problem> {
    Ok((ticket_no(no)?, body(request)?))
}

/// A step's result: the ticket after it, or why it was refused.
fn answer(result: Result<Ticket, WorkflowError>) -> Response {
    match result {
        Ok(ticket) => Json(ticket).into_response(),
        Err(error) => error.into_response(),
    }
}

/// A ticket number from the path, or the 400 answer naming what was sent.
fn ticket_no(text: &str) -> Result<u64, Problem> {
    text.parse().map_err(|_| {
        Problem::bad_request(format!("ticket number must be an integer, got {text:?}"))
    })
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
enum Mode {
    #[default]
    Scale,
    StoredTare,
    Manual,
}

fn weighing(
    mode: Mode,
    manual_weight_kg: Option<f64>,
    manual_reason: Option<String>,
) -> Result<Weighing, Problem> {
    let refuse = |detail: &str| Err(Problem::bad_request(detail.to_owned()));
    match (mode, manual_weight_kg) {
        (Mode::Manual, Some(weight_kg)) => Ok(Weighing::Manual {
            weight_kg,
            reason: manual_reason.unwrap_or_default(),
        }),
        (Mode::Manual, None) => refuse("manual_weight_kg is required for a manual weighing"),
        (_, Some(_)) => refuse("manual_weight_kg is only allowed with weighing = \"manual\""),
        (Mode::Scale, None) => Ok(Weighing::Scale),
        (Mode::StoredTare, None) => Ok(Weighing::StoredTare),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct OpenBody {
    plate: String,
    direction: Option<Direction>,
    partner_id: Option<String>,
    article_id: Option<String>,
    contract_id: Option<String>,
    lot_id: Option<String>,
    location_id: Option<String>,
    operator: Option<String>,
    scale_id: Option<String>,
    #[serde(default)]
    weighing: Mode,
    manual_weight_kg: Option<f64>,
    manual_reason: Option<String>,
}

impl OpenBody {
    fn into_request(self, direction: Direction) -> Result<OpenRequest, Problem> {
        Ok(OpenRequest {
            weighing: weighing(self.weighing, self.manual_weight_kg, self.manual_reason)?,
            plate: self.plate,
            direction,
            partner_id: self.partner_id,
            article_id: self.article_id,
            contract_id: self.contract_id,
            lot_id: self.lot_id,
            location_id: self.location_id,
            operator: self.operator,
            scale_id: self.scale_id,
        })
    }
}

/// `POST /api/v1/tickets`: a vehicle arrives (first or stored-tare weighing).
pub(super) async fn open(
    State(state): State<AppState>,
    request: Result<Json<OpenBody>, JsonRejection>,
) -> Response {
    let request = match body(request) {
        Ok(r) => r,
        Err(answer) => return answer.into_response(),
    };
    let Some(direction) = request.direction else {
        return Problem::bad_request("direction is required (intake or outgoing)").into_response();
    };
    let request = match request.into_request(direction) {
        Ok(r) => r,
        Err(answer) => return answer.into_response(),
    };
    match state.workflow.open_ticket(request).await {
        Ok(ticket) => (StatusCode::CREATED, Json(ticket)).into_response(),
        Err(error) => error.into_response(),
    }
}

/// `POST /api/v1/weighings`: weigh the vehicle with this plate; the second
/// weighing when it has an open ticket, else the first.
pub(super) async fn by_plate(
    State(state): State<AppState>,
    request: Result<Json<OpenBody>, JsonRejection>,
) -> Response {
    let request = match body(request) {
        Ok(r) => r,
        Err(answer) => return answer.into_response(),
    };
    let given = request.direction.is_some();
    let direction = request.direction.unwrap_or(Direction::Intake);
    let request = match request.into_request(direction) {
        Ok(r) => r,
        Err(answer) => return answer.into_response(),
    };
    answer(state.workflow.weigh_by_plate(request, given).await)
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct SecondBody {
    operator: Option<String>,
    scale_id: Option<String>,
    #[serde(default)]
    weighing: Mode,
    manual_weight_kg: Option<f64>,
    manual_reason: Option<String>,
}

/// `POST /api/v1/tickets/{n}/second-weighing`.
pub(super) async fn second(
    State(state): State<AppState>,
    Path(no): Path<String>,
    request: Option<Json<SecondBody>>,
) -> Response {
    let no = match ticket_no(&no) {
        Ok(no) => no,
        Err(answer) => return answer.into_response(),
    };
    let request = request.map(|Json(b)| b).unwrap_or_default();
    let weighing = match weighing(
        request.weighing,
        request.manual_weight_kg,
        request.manual_reason,
    ) {
        Ok(w) => w,
        Err(answer) => return answer.into_response(),
    };
    let request = SecondRequest {
        operator: request.operator,
        scale_id: request.scale_id,
        weighing,
    };
    answer(state.workflow.second_weighing(no, request).await)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CancelBody {
    operator: String,
    reason: String,
}

/// `POST /api/v1/tickets/{n}/cancel`: storno.
pub(super) async fn cancel(
    State(state): State<AppState>,
    Path(no): Path<String>,
    request: Result<Json<CancelBody>, JsonRejection>,
) -> Response {
    let (no, request) = match ticket_and_body(&no, request) {
        Ok(parts) => parts,
        Err(answer) => return answer.into_response(),
    };
    answer(
        state
            .workflow
            .cancel(no, &request.operator, &request.reason)
            .await,
    )
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ReprintBody {
    operator: String,
}

/// `POST /api/v1/tickets/{n}/reprint`.
pub(super) async fn reprint(
    State(state): State<AppState>,
    Path(no): Path<String>,
    request: Result<Json<ReprintBody>, JsonRejection>,
) -> Response {
    let (no, request) = match ticket_and_body(&no, request) {
        Ok(parts) => parts,
        Err(answer) => return answer.into_response(),
    };
    answer(state.workflow.reprint(no, &request.operator).await)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct QualityBody {
    operator: String,
    source: QualitySource,
    device_id: Option<String>,
    moisture_percent: Option<f64>,
    hectolitre_kg: Option<f64>,
    protein_percent: Option<f64>,
}

/// `POST /api/v1/tickets/{n}/quality`.
pub(super) async fn quality(
    State(state): State<AppState>,
    Path(no): Path<String>,
    request: Result<Json<QualityBody>, JsonRejection>,
) -> Response {
    let (no, q) = match ticket_and_body(&no, request) {
        Ok(parts) => parts,
        Err(answer) => return answer.into_response(),
    };
    let request = QualityRequest {
        operator: q.operator,
        source: q.source,
        device_id: q.device_id,
        moisture_percent: q.moisture_percent,
        hectolitre_kg: q.hectolitre_kg,
        protein_percent: q.protein_percent,
    };
    answer(state.workflow.add_quality(no, request).await)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ListParams {
    state: Option<TicketState>,
    /// Kept for clients of the first release: `open=true` is `state=open`.
    #[serde(default)]
    open: bool,
    limit: Option<u32>,
}

/// `GET /api/v1/tickets?state=open&limit=100`, newest first.
pub(super) async fn list(
    State(state): State<AppState>,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Response {
    let params = match params {
        Ok(Query(p)) => p,
        Err(rejection) => return Problem::bad_request(rejection.body_text()).into_response(),
    };
    let limit = params.limit.unwrap_or(100);
    if !(1..=MAX_LIST_LIMIT).contains(&limit) {
        return Problem::bad_request(format!("limit must be 1..={MAX_LIST_LIMIT}, got {limit}"))
            .into_response();
    }
    let filter = params.state.or(params.open.then_some(TicketState::Open));
    match state.workflow.tickets(filter, limit).await {
        Ok(tickets) => Json(tickets).into_response(),
        Err(error) => error.into_response(),
    }
}

/// `GET /api/v1/tickets/{n}`.
pub(super) async fn get(State(state): State<AppState>, Path(no): Path<String>) -> Response {
    let no = match ticket_no(&no) {
        Ok(no) => no,
        Err(answer) => return answer.into_response(),
    };
    match state.workflow.ticket(no).await {
        Ok(Some(ticket)) => Json(ticket).into_response(),
        Ok(None) => Problem::not_found(format!("no ticket number {no}")).into_response(),
        Err(error) => error.into_response(),
    }
}

/// `GET /api/v1/master-data`: the cached document the weighings use.
pub(super) async fn master_data(State(state): State<AppState>) -> Response {
    Json(state.workflow.master_data().snapshot()).into_response()
}
