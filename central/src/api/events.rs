//! Integration events at the API: the event feed for pull consumers
//! (`GET /api/v1/events`) and the webhooks (admin) with their deliveries.
//!
//! A webhook's secret is shown once, in the answer that created it; it is
//! stored (it must be, to sign) but never shown or logged again.

use axum::Json;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use chrono::Utc;
use serde::{Deserialize, Serialize};
use valeo_process::problem::Problem;

use super::openapi::{PROBLEM_JSON, ProblemSchema};
use super::{ApiQuery, AppState, INTERNAL_DETAIL, json_or_problem, page_limit, query};
use crate::events::{KINDS, is_kind, new_secret};
use crate::store::events::{
    ALL_KINDS, CreateWebhookError, DeliveryCounts, DeliveryStatus, DeliveryView, Event,
    RetryDeliveryError, WebhookView,
};

/// Longest webhook URL, in characters.
pub const MAX_URL_CHARS: usize = 2048;
/// Longest webhook description, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 500;
/// Largest body of `POST /api/v1/webhooks`.
pub const MAX_WEBHOOK_BODY_BYTES: usize = 8 * 1024;

/// The operations and types of this module, for the API's document.
#[derive(Debug, utoipa::OpenApi)]
#[openapi(
    paths(
        list_events,
        create_webhook,
        list_webhooks,
        get_webhook,
        delete_webhook,
        list_deliveries,
        retry_delivery
    ),
    components(schemas(
        Event,
        EventPage,
        NewWebhook,
        CreatedWebhook,
        WebhookView,
        DeliveryCounts,
        DeliveryView,
        DeliveryStatus,
        DeliveryPage
    ))
)]
pub struct EventsApi;

/// The routes of this module.
pub(super) fn routes() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/api/v1/events", get(list_events))
        .route(
            "/api/v1/webhooks",
            get(list_webhooks)
                .post(create_webhook)
                .layer(DefaultBodyLimit::max(MAX_WEBHOOK_BODY_BYTES)),
        )
        .route(
            "/api/v1/webhooks/{id}",
            get(get_webhook).delete(delete_webhook),
        )
        .route("/api/v1/webhooks/{id}/deliveries", get(list_deliveries))
        .route(
            "/api/v1/webhooks/{id}/deliveries/{delivery_id}/retry",
            post(retry_delivery),
        )
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct EventParams {
    /// Only events with a greater id: the `next_after` of the previous page.
    #[param(nullable = false, minimum = 0, default = 0, example = 1041)]
    after: Option<i64>,
    /// Only events of this kind.
    #[param(nullable = false, example = "weighing.completed")]
    kind: Option<String>,
    /// Page size.
    #[param(nullable = false, minimum = 1, maximum = 500, default = 50)]
    limit: Option<u32>,
}

/// A page of the event feed.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EventPage {
    /// Oldest first.
    pub items: Vec<Event>,
    /// The `after` for the next page: the last item's id, or the `after`
    /// asked for when the page is empty.
    pub next_after: i64,
}

/// Event feed
///
/// Events in id order after `after`, for consumers that pull instead of
/// subscribing. Ids grow with every event and are never reused, so a
/// consumer that keeps the `next_after` it got never misses one that is
/// still kept (`retention_days`, `max_events`).
#[utoipa::path(
    get,
    path = "/api/v1/events",
    tag = "events",
    params(EventParams),
    responses(
        (status = 200, description = "Oldest first.", body = EventPage),
        (status = 400, description = "A query parameter is unknown, malformed or out of bounds.",
            body = ProblemSchema, content_type = PROBLEM_JSON),
        (status = 500, description = "The events could not be read.",
            body = ProblemSchema, content_type = PROBLEM_JSON),
    )
)]
pub(super) async fn list_events(
    State(state): State<AppState>,
    ApiQuery(params): ApiQuery<EventParams>,
) -> Response {
    let limit = match page_limit(params.limit) {
        Ok(limit) => limit,
        Err(problem) => return problem.into_response(),
    };
    let after = params.after.unwrap_or(0);
    if after < 0 {
        return Problem::bad_request(format!("after must be 0 or more, got {after}"))
            .into_response();
    }
    if let Some(kind) = &params.kind
        && !is_kind(kind)
    {
        return Problem::bad_request(format!(
            "kind: unknown event kind {kind:?}; known: {}",
            KINDS.join(", ")
        ))
        .into_response();
    }
    let page = query(&state, move |store| {
        store.events_after(after, params.kind.as_deref(), limit)
    })
    .await
    .map(|items| EventPage {
        next_after: items.last().map_or(after, |e| e.id),
        items,
    });
    json_or_problem(page)
}

/// A webhook to create.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(example = json!({
    "url": "https://erp.example.com/hooks/valeo",
    "events": ["weighing.completed", "weighing.cancelled"],
    "description": "ERP ticket import"
}))]
pub struct NewWebhook {
    /// Where events are POSTed: `http` or `https`, at most 2048 characters.
    #[schema(max_length = 2048)]
    pub url: String,
    /// Event kinds to deliver, or `["*"]` for all.
    pub events: Vec<String>,
    #[schema(max_length = 500)]
    pub description: Option<String>,
}

/// A new webhook with its secret. The secret is shown here only.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CreatedWebhook {
    #[serde(flatten)]
    pub webhook: WebhookView,
    /// Key of the `Valeo-Signature` HMAC: 64 hex characters, used as text.
    /// Central stores it to sign; it is not shown again.
    pub secret: String,
}

/// A field of the request that is wrong, as a 422.
fn invalid(detail: String) -> Problem {
    Problem::new(StatusCode::UNPROCESSABLE_ENTITY, detail)
}

/// Checks the request body field by field, so every message names its
/// field.
fn parse_new_webhook(body: &[u8]) -> Result<NewWebhook, Problem> {
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| Problem::bad_request(format!("the body is not JSON: {e}")))?;
    let Some(object) = value.as_object() else {
        return Err(Problem::bad_request(
            "the body must be a JSON object with url and events",
        ));
    };
    if let Some(unknown) = object
        .keys()
        .find(|k| !["url", "events", "description"].contains(&k.as_str()))
    {
        return Err(invalid(format!(
            "{unknown}: unknown field; expected url, events, description"
        )));
    }
    let url = match object.get("url") {
        Some(serde_json::Value::String(url)) => url.clone(),
        Some(_) => return Err(invalid("url: must be a string".into())),
        None => return Err(invalid("url: missing".into())),
    };
    check_url(&url)?;
    let events = match object.get("events") {
        Some(serde_json::Value::Array(items)) => items,
        Some(_) => return Err(invalid("events: must be an array of event kinds".into())),
        None => return Err(invalid("events: missing".into())),
    };
    if events.is_empty() {
        return Err(invalid(
            "events: name at least one event kind, or \"*\" for all".into(),
        ));
    }
    let mut kinds: Vec<String> = Vec::new();
    for (i, item) in events.iter().enumerate() {
        let Some(kind) = item.as_str() else {
            return Err(invalid(format!("events[{i}]: must be a string")));
        };
        if kind != ALL_KINDS && !is_kind(kind) {
            return Err(invalid(format!(
                "events[{i}]: unknown event kind {:?}; known: {}, or \"*\"",
                kind.chars().take(64).collect::<String>(),
                KINDS.join(", ")
            )));
        }
        if !kinds.iter().any(|k| k == kind) {
            kinds.push(kind.to_owned());
        }
    }
    if kinds.len() > 1 && kinds.iter().any(|k| k == ALL_KINDS) {
        return Err(invalid(
            "events: \"*\" already means every kind; give it alone".into(),
        ));
    }
    let description = match object.get("description") {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(text)) => {
            if text.chars().count() > MAX_DESCRIPTION_CHARS {
                return Err(invalid(format!(
                    "description: at most {MAX_DESCRIPTION_CHARS} characters"
                )));
            }
            Some(text.clone())
        }
        Some(_) => return Err(invalid("description: must be a string".into())),
    };
    Ok(NewWebhook {
        url,
        events: kinds,
        description,
    })
}

fn check_url(url: &str) -> Result<(), Problem> {
    let chars = url.chars().count();
    if chars > MAX_URL_CHARS {
        return Err(invalid(format!(
            "url: at most {MAX_URL_CHARS} characters, got {chars}"
        )));
    }
    let parsed = reqwest::Url::parse(url)
        .map_err(|e| invalid(format!("url: not a valid absolute URL: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(invalid(format!(
            "url: the scheme must be http or https, got {:?}",
            parsed.scheme()
        )));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(invalid("url: a host is required".into()));
    }
    Ok(())
}

/// Create a webhook
///
/// Events committed from now on whose kind the webhook asks for are POSTed
/// to its URL, in id order, signed with the secret in this answer
/// (`docs/events.md`). The secret is not shown again.
#[utoipa::path(
    post,
    path = "/api/v1/webhooks",
    tag = "events",
    request_body = NewWebhook,
    responses(
        (status = 201, description = "Created; the only answer with the secret.",
            body = CreatedWebhook,
            headers(("Location" = String, description = "The webhook's URL."))),
        (status = 400, description = "The body is not a JSON object.",
            body = ProblemSchema, content_type = PROBLEM_JSON),
        (status = 409, description = "`max_webhooks` webhooks exist already.",
            body = ProblemSchema, content_type = PROBLEM_JSON),
        (status = 413, description = "The body is larger than 8 KiB.",
            body = ProblemSchema, content_type = PROBLEM_JSON),
        (status = 415, description = "The body is not `application/json`.",
            body = ProblemSchema, content_type = PROBLEM_JSON),
        (status = 422, description = "A field is missing, unknown or invalid; the detail names it.",
            body = ProblemSchema, content_type = PROBLEM_JSON),
        (status = 500, description = "The webhook could not be stored.",
            body = ProblemSchema, content_type = PROBLEM_JSON),
    )
)]
pub(super) async fn create_webhook(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(body) => body,
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("body: at most {MAX_WEBHOOK_BODY_BYTES} bytes"),
            )
            .into_response();
        }
        Err(rejection) => {
            return Problem::new(
                rejection.status(),
                format!("body: {}", rejection.body_text()),
            )
            .into_response();
        }
    };
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
        });
    if !is_json {
        return Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Content-Type: must be application/json",
        )
        .into_response();
    }
    let new = match parse_new_webhook(&body) {
        Ok(new) => new,
        Err(problem) => return problem.into_response(),
    };
    let secret = new_secret();
    let max_webhooks = state.events.config.max_webhooks;
    let store = state.store.clone();
    let key = secret.clone();
    let created = tokio::task::spawn_blocking(move || {
        store.create_webhook(
            &new.url,
            &new.events,
            new.description.as_deref(),
            &key,
            max_webhooks,
            Utc::now(),
        )
    })
    .await;
    let webhook = match created {
        Ok(Ok(webhook)) => webhook,
        Ok(Err(CreateWebhookError::TooMany { max_webhooks })) => {
            return Problem::new(
                StatusCode::CONFLICT,
                format!("max_webhooks: {max_webhooks} webhooks exist already; delete one first"),
            )
            .into_response();
        }
        Ok(Err(CreateWebhookError::Store(error))) => {
            return Problem::internal(&error, INTERNAL_DETAIL).into_response();
        }
        Err(error) => return Problem::internal(&error, INTERNAL_DETAIL).into_response(),
    };
    tracing::info!(webhook_id = webhook.id, events = ?webhook.events, "webhook created");
    state.events.wake.notify_one();
    (
        StatusCode::CREATED,
        [(header::LOCATION, format!("/api/v1/webhooks/{}", webhook.id))],
        Json(CreatedWebhook { webhook, secret }),
    )
        .into_response()
}

/// List webhooks
///
/// Every webhook, oldest first, with how many deliveries are pending,
/// delivered and failed. Secrets are not shown.
#[utoipa::path(
    get,
    path = "/api/v1/webhooks",
    tag = "events",
    responses(
        (status = 200, description = "Oldest first.", body = Vec<WebhookView>),
        (status = 500, description = "The webhooks could not be read.",
            body = ProblemSchema, content_type = PROBLEM_JSON),
    )
)]
pub(super) async fn list_webhooks(State(state): State<AppState>) -> Response {
    json_or_problem(query(&state, crate::store::Store::webhooks).await)
}

/// A path id as an integer, or a problem naming the parameter.
fn path_id(name: &str, text: &str) -> Result<i64, Problem> {
    text.parse::<i64>()
        .map_err(|_| Problem::bad_request(format!("{name} must be an integer, got {text:?}")))
}

/// One webhook
#[utoipa::path(
    get,
    path = "/api/v1/webhooks/{id}",
    tag = "events",
    params(("id" = i64, Path, description = "The webhook's id.", example = 3)),
    responses(
        (status = 200, description = "The webhook; not its secret.", body = WebhookView),
        (status = 400, description = "`id` is not an integer.",
            body = ProblemSchema, content_type = PROBLEM_JSON),
        (status = 404, description = "No webhook with this id.",
            body = ProblemSchema, content_type = PROBLEM_JSON),
        (status = 500, description = "The webhook could not be read.",
            body = ProblemSchema, content_type = PROBLEM_JSON),
    )
)]
pub(super) async fn get_webhook(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    let id = match path_id("id", &id) {
        Ok(id) => id,
        Err(problem) => return problem.into_response(),
    };
    match query(&state, move |store| store.webhook(id)).await {
        Ok(Some(webhook)) => Json(webhook).into_response(),
        Ok(None) => Problem::not_found(format!("no webhook {id}")).into_response(),
        Err(problem) => problem.into_response(),
    }
}

/// Delete a webhook
///
/// Stops deliveries to it and deletes their history. An attempt already
/// under way may still arrive.
#[utoipa::path(
    delete,
    path = "/api/v1/webhooks/{id}",
    tag = "events",
    params(("id" = i64, Path, description = "The webhook's id.", example = 3)),
    responses(
        (status = 204, description = "Deleted."),
        (status = 400, description = "`id` is not an integer.",
            body = ProblemSchema, content_type = PROBLEM_JSON),
        (status = 404, description = "No webhook with this id.",
            body = ProblemSchema, content_type = PROBLEM_JSON),
        (status = 500, description = "The webhook could not be deleted.",
            body = ProblemSchema, content_type = PROBLEM_JSON),
    )
)]
pub(super) async fn delete_webhook(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Response {
    let id = match path_id("id", &id) {
        Ok(id) => id,
        Err(problem) => return problem.into_response(),
    };
    match query(&state, move |store| store.delete_webhook(id)).await {
        Ok(true) => {
            tracing::info!(webhook_id = id, "webhook deleted");
            state.events.wake.notify_one();
            StatusCode::NO_CONTENT.into_response()
        }
        Ok(false) => Problem::not_found(format!("no webhook {id}")).into_response(),
        Err(problem) => problem.into_response(),
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct DeliveryParams {
    /// Page size.
    #[param(nullable = false, minimum = 1, maximum = 500, default = 50)]
    limit: Option<u32>,
    /// Deliveries to skip.
    #[param(nullable = false, minimum = 0, default = 0)]
    offset: Option<u64>,
}

/// A page of a webhook's deliveries.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DeliveryPage {
    /// Newest event first.
    pub items: Vec<DeliveryView>,
    pub limit: u32,
    pub offset: u64,
}

/// A webhook's deliveries
///
/// Newest event first: status, attempts, the last answer or error and when
/// the next attempt is due. Events not yet attempted have no delivery yet.
#[utoipa::path(
    get,
    path = "/api/v1/webhooks/{id}/deliveries",
    tag = "events",
    params(("id" = i64, Path, description = "The webhook's id.", example = 3), DeliveryParams),
    responses(
        (status = 200, description = "Newest event first.", body = DeliveryPage),
        (status = 400, description = "`id` or a query parameter is malformed or out of bounds.",
            body = ProblemSchema, content_type = PROBLEM_JSON),
        (status = 404, description = "No webhook with this id.",
            body = ProblemSchema, content_type = PROBLEM_JSON),
        (status = 500, description = "The deliveries could not be read.",
            body = ProblemSchema, content_type = PROBLEM_JSON),
    )
)]
pub(super) async fn list_deliveries(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiQuery(params): ApiQuery<DeliveryParams>,
) -> Response {
    let id = match path_id("id", &id) {
        Ok(id) => id,
        Err(problem) => return problem.into_response(),
    };
    let limit = match page_limit(params.limit) {
        Ok(limit) => limit,
        Err(problem) => return problem.into_response(),
    };
    let offset = params.offset.unwrap_or(0);
    if offset > i64::MAX as u64 {
        return Problem::bad_request("offset is too large").into_response();
    }
    match query(&state, move |store| {
        store.webhook_deliveries(id, limit, offset)
    })
    .await
    {
        Ok(Some(items)) => Json(DeliveryPage {
            items,
            limit,
            offset,
        })
        .into_response(),
        Ok(None) => Problem::not_found(format!("no webhook {id}")).into_response(),
        Err(problem) => problem.into_response(),
    }
}

/// Retry a failed delivery
///
/// Makes a `failed` delivery pending again with its attempts counted from
/// zero. It is the webhook's next delivery if its event is the oldest
/// pending one, and holds back later events like any pending delivery.
#[utoipa::path(
    post,
    path = "/api/v1/webhooks/{id}/deliveries/{delivery_id}/retry",
    tag = "events",
    params(
        ("id" = i64, Path, description = "The webhook's id.", example = 3),
        ("delivery_id" = i64, Path, description = "The delivery's id.", example = 120),
    ),
    responses(
        (status = 200, description = "Pending again, due now.", body = DeliveryView),
        (status = 400, description = "`id` or `delivery_id` is not an integer.",
            body = ProblemSchema, content_type = PROBLEM_JSON),
        (status = 404, description = "No such delivery of this webhook.",
            body = ProblemSchema, content_type = PROBLEM_JSON),
        (status = 409, description = "The delivery is not `failed`.",
            body = ProblemSchema, content_type = PROBLEM_JSON),
        (status = 410, description = "Its event is no longer kept.",
            body = ProblemSchema, content_type = PROBLEM_JSON),
        (status = 500, description = "The delivery could not be changed.",
            body = ProblemSchema, content_type = PROBLEM_JSON),
    )
)]
pub(super) async fn retry_delivery(
    State(state): State<AppState>,
    Path((id, delivery_id)): Path<(String, String)>,
) -> Response {
    let ids = path_id("id", &id).and_then(|id| Ok((id, path_id("delivery_id", &delivery_id)?)));
    let (id, delivery_id) = match ids {
        Ok(ids) => ids,
        Err(problem) => return problem.into_response(),
    };
    let store = state.store.clone();
    let retried =
        tokio::task::spawn_blocking(move || store.retry_delivery(id, delivery_id, Utc::now()))
            .await;
    match retried {
        Ok(Ok(view)) => {
            tracing::info!(webhook_id = id, delivery_id, "webhook delivery retried");
            state.events.wake.notify_one();
            Json(view).into_response()
        }
        Ok(Err(RetryDeliveryError::NotFound)) => {
            Problem::not_found(format!("webhook {id} has no delivery {delivery_id}"))
                .into_response()
        }
        Ok(Err(error @ RetryDeliveryError::NotFailed(_))) => {
            Problem::new(StatusCode::CONFLICT, error.to_string()).into_response()
        }
        Ok(Err(error @ RetryDeliveryError::EventGone)) => {
            Problem::new(StatusCode::GONE, error.to_string()).into_response()
        }
        Ok(Err(RetryDeliveryError::Store(error))) => {
            Problem::internal(&error, INTERNAL_DETAIL).into_response()
        }
        Err(error) => Problem::internal(&error, INTERNAL_DETAIL).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_webhooks_are_refused_naming_the_field() {
        let long_url = format!("https://example.com/{}", "a".repeat(MAX_URL_CHARS));
        let long_text = "x".repeat(MAX_DESCRIPTION_CHARS + 1);
        let cases: Vec<(serde_json::Value, u16, &str)> = vec![
            (serde_json::json!([]), 400, "JSON object"),
            (serde_json::json!({"events": ["*"]}), 422, "url: missing"),
            (
                serde_json::json!({"url": 5, "events": ["*"]}),
                422,
                "url: must be a string",
            ),
            (
                serde_json::json!({"url": "ftp://x.example/", "events": ["*"]}),
                422,
                "url: the scheme",
            ),
            (
                serde_json::json!({"url": "not a url", "events": ["*"]}),
                422,
                "url: not a valid",
            ),
            (
                serde_json::json!({"url": long_url, "events": ["*"]}),
                422,
                "url: at most 2048",
            ),
            (
                serde_json::json!({"url": "https://x.example/"}),
                422,
                "events: missing",
            ),
            (
                serde_json::json!({"url": "https://x.example/", "events": []}),
                422,
                "events: name",
            ),
            (
                serde_json::json!({"url": "https://x.example/", "events": "*"}),
                422,
                "events: must be an array",
            ),
            (
                serde_json::json!({"url": "https://x.example/", "events": ["weighing.done"]}),
                422,
                "events[0]: unknown event kind",
            ),
            (
                serde_json::json!({"url": "https://x.example/", "events": ["device.online", 3]}),
                422,
                "events[1]: must be a string",
            ),
            (
                serde_json::json!({"url": "https://x.example/", "events": ["*", "device.online"]}),
                422,
                "events: \"*\"",
            ),
            (
                serde_json::json!({"url": "https://x.example/", "events": ["*"], "secret": "mine"}),
                422,
                "secret: unknown field",
            ),
            (
                serde_json::json!({"url": "https://x.example/", "events": ["*"], "description": long_text}),
                422,
                "description: at most",
            ),
            (
                serde_json::json!({"url": "https://x.example/", "events": ["*"], "description": 1}),
                422,
                "description: must be a string",
            ),
        ];
        for (body, status, needle) in cases {
            let problem = parse_new_webhook(body.to_string().as_bytes())
                .map(|_| ())
                .unwrap_err();
            let document = serde_json::to_value(&problem).unwrap();
            assert_eq!(document["status"], status, "{body}: {document}");
            let detail = document["detail"].as_str().unwrap();
            assert!(
                detail.starts_with(needle) || detail.contains(needle),
                "{body}: {detail}"
            );
        }
        let ok = parse_new_webhook(
            br#"{"url":"http://127.0.0.1:9000/hook","events":["device.online","device.online","device.offline"],"description":null}"#,
        )
        .unwrap();
        assert_eq!(ok.events, ["device.online", "device.offline"]);
        assert_eq!(ok.description, None);
    }
}
