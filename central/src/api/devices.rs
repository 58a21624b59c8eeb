//! The fleet as office staff see it: every registered box with its site,
//! whether it is online, when central last heard of it, its software
//! version, its outbox backlog and its alarms; and assigning a box to a
//! site.

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use valeo_process::problem::Problem;

use super::{AppState, INTERNAL_DETAIL, query};
use crate::store::{DeviceView, MasterError};

/// A backlog above this many records is an alarm: the box cannot send.
pub const ALARM_BACKLOG_RECORDS: u64 = 1_000;

type ProblemBody = crate::api::auth::ProblemSchema;

/// One box.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeviceOverview {
    #[serde(flatten)]
    pub device: DeviceView,
    /// From the box's retained status; null until one arrived.
    pub online: Option<bool>,
    /// The later of its last status and its last batch of records.
    pub last_seen_at: Option<String>,
    /// Software version the box reported.
    pub version: Option<String>,
    /// Records in the box's outbox not yet acknowledged.
    pub backlog_records: Option<u64>,
    /// What needs someone's attention, in words.
    pub alarms: Vec<String>,
}

/// What is wrong with a box, in words.
fn alarms(
    device: &DeviceView,
    status: Option<&crate::device_status::DeviceStatus>,
    open_outages: &[valeo_records::cash::TseOutage],
) -> Vec<String> {
    let mut alarms = Vec::new();
    match status {
        Some(s) if !s.online => alarms.push(format!("offline since {}", s.status_at)),
        None => alarms.push("no status received from the box yet".to_owned()),
        Some(_) => {}
    }
    if let Some(seq) = device.gap_expected_seq {
        alarms.push(format!(
            "chain gap: waiting for record {seq} since {}",
            device.gap_seen_at.as_deref().unwrap_or("?")
        ));
    }
    if let Some(backlog) = status.and_then(|s| s.backlog_records)
        && backlog > ALARM_BACKLOG_RECORDS
    {
        alarms.push(format!("{backlog} records waiting in the box's outbox"));
    }
    for outage in open_outages {
        alarms.push(format!(
            "TSE outage at cash point {} since {}: {}",
            outage.cash_point, outage.started_at, outage.cause
        ));
    }
    alarms
}

/// Routes of the fleet view.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/devices", get(list_devices))
        .route(
            "/api/v1/devices/{device_id}",
            axum::routing::patch(assign_site),
        )
}

/// Every registered box.
#[utoipa::path(get, path = "/api/v1/devices", tag = "devices",
    responses((status = 200, description = "The boxes", body = Vec<DeviceOverview>)))]
pub async fn list_devices(State(state): State<AppState>) -> Response {
    let read = query(&state, |store| {
        let mut devices = Vec::new();
        for device in store.devices()? {
            let open: Vec<_> = store
                .tse_outages(Some(&device.device_id))?
                .into_iter()
                .filter(|o| o.ended_at.is_none())
                .collect();
            devices.push((device, open));
        }
        Ok(devices)
    })
    .await;
    let devices = match read {
        Ok(read) => read,
        Err(problem) => return problem.into_response(),
    };
    let overview: Vec<DeviceOverview> = devices
        .into_iter()
        .map(|(device, open)| {
            let status = state.device_statuses.get(&device.device_id);
            let last_seen_at = [
                status.as_ref().map(|s| s.status_at.clone()),
                device.last_batch_at.clone(),
            ]
            .into_iter()
            .flatten()
            .max();
            DeviceOverview {
                alarms: alarms(&device, status.as_ref(), &open),
                online: status.as_ref().map(|s| s.online),
                version: status.as_ref().and_then(|s| s.version.clone()),
                backlog_records: status.as_ref().and_then(|s| s.backlog_records),
                last_seen_at,
                device,
            }
        })
        .collect();
    Json(overview).into_response()
}

/// A box's site.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"site_id": "HAFEN"}))]
pub struct DevicePatch {
    /// A site of the master data, or null for none; required, so an empty
    /// body changes nothing by accident.
    #[serde(deserialize_with = "required_nullable")]
    pub site_id: Option<String>,
}

/// A field that must be present but may be null (serde treats a missing
/// `Option` as null unless told otherwise).
fn required_nullable<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Option::<String>::deserialize(d)
}

/// Assigns a box to a site; its tickets without a site get it.
#[utoipa::path(patch, path = "/api/v1/devices/{device_id}", tag = "devices",
    params(("device_id" = String, Path, max_length = 64)),
    request_body = DevicePatch,
    responses(
        (status = 204, description = "Assigned"),
        (status = 400, description = "The body is not JSON", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "No such device", body = ProblemBody, content_type = "application/problem+json"),
        (status = 422, description = "No such site, or a wrong field", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn assign_site(
    State(state): State<AppState>,
    Path(device_id): Path<String>,
    request: Result<Json<DevicePatch>, JsonRejection>,
) -> Response {
    let patch = match super::business::body(request) {
        Ok(patch) => patch,
        Err(problem) => return problem.into_response(),
    };
    let store = state.store.clone();
    let id = device_id.clone();
    match tokio::task::spawn_blocking(move || store.set_device_site(&id, patch.site_id.as_deref()))
        .await
    {
        Ok(Ok(true)) => StatusCode::NO_CONTENT.into_response(),
        Ok(Ok(false)) => Problem::not_found(format!("no device {device_id:?}")).into_response(),
        Ok(Err(MasterError::Invalid(reason))) => {
            Problem::new(StatusCode::UNPROCESSABLE_ENTITY, reason).into_response()
        }
        Ok(Err(error)) => Problem::internal(&error, INTERNAL_DETAIL).into_response(),
        Err(error) => Problem::internal(&error, INTERNAL_DETAIL).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device_status::DeviceStatus;

    fn device(gap: Option<u64>) -> DeviceView {
        DeviceView {
            device_id: "box".into(),
            public_key: String::new(),
            last_batch_at: None,
            epoch: None,
            head_seq: None,
            gap_expected_seq: gap,
            gap_seen_at: gap.map(|_| "2026-11-29T08:00:00Z".into()),
            gaps_total: 0,
            site_id: None,
        }
    }

    #[test]
    fn alarms_name_what_needs_attention() {
        let online = DeviceStatus {
            online: true,
            version: Some("0.1.0".into()),
            backlog_records: Some(3),
            status_at: "2026-11-29T08:00:00Z".into(),
        };
        assert!(alarms(&device(None), Some(&online), &[]).is_empty());
        let offline = DeviceStatus {
            online: false,
            backlog_records: Some(5_000),
            ..online.clone()
        };
        let all = alarms(&device(Some(17)), Some(&offline), &[]);
        assert_eq!(all.len(), 3, "{all:?}");
        assert!(all[0].starts_with("offline since"));
        assert!(all[1].contains("waiting for record 17"));
        assert!(all[2].starts_with("5000 records"));
        assert_eq!(
            alarms(&device(None), None, &[]),
            ["no status received from the box yet"]
        );
    }
}
