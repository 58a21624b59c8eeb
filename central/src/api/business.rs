//! The business API office staff and the rest of the ERP use: weighing
//! tickets (filtered list, CSV export, detail with proof), master data
//! (seven kinds, each with versions as ETags), delivery notes, stock and
//! reports. Master-data changes are published to the boxes at once.

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use valeo_process::markup::escape;
use valeo_process::problem::Problem;

use super::{ApiQuery, AppState, INTERNAL_DETAIL, json_or_problem, page_limit, query};
use crate::master_data::{
    Article, Contract, Entity, Location, Lot, Partner, Site, Vehicle, Versioned,
};
use crate::store::{
    CancelDeliveryNote, CorrectionError, DeliveryNote, GroupBy, MasterError, MovementFilter,
    NewCorrection, NewDeliveryNote, NoteError, NoteFilter, Report, Sort, StockLevel, StockMovement,
    WeighingDetail, WeighingFilter, WeighingPage, WeighingStatus, WeighingView,
};

/// Most tickets in one CSV export; a wider filter is refused, not cut.
pub const MAX_CSV_ROWS: u32 = 50_000;

/// Who is asking, as the authentication layer named them.
#[derive(Debug)]
pub struct Actor(pub String);

impl<S: Send + Sync> FromRequestParts<S> for Actor {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Actor(
            parts
                .extensions
                .get::<crate::auth::Caller>()
                .map_or_else(|| "anonymous".to_owned(), |c| c.actor.clone()),
        ))
    }
}

/// A problem+json answer, for the OpenAPI document.
type ProblemBody = crate::api::auth::ProblemSchema;

/// The business routes.
pub fn routes() -> Router<AppState> {
    let router = Router::new()
        .route("/api/v1/weighings", get(list_weighings))
        .route("/api/v1/weighings.csv", get(export_weighings))
        .route("/api/v1/weighings/{id}", get(get_weighing))
        .route(
            "/api/v1/delivery-notes",
            get(list_delivery_notes).post(create_delivery_note),
        )
        .route("/api/v1/delivery-notes/{id}", get(get_delivery_note))
        .route(
            "/api/v1/delivery-notes/{id}/document",
            get(delivery_note_document),
        )
        .route(
            "/api/v1/delivery-notes/{id}/cancel",
            post(cancel_delivery_note),
        )
        .route("/api/v1/stock", get(stock))
        .route(
            "/api/v1/stock-movements",
            get(stock_movements).post(book_correction),
        )
        .route("/api/v1/reports/weighings", get(weighing_report));
    master::routes(router)
}

/// A point in time from a query: `YYYY-MM-DD` (that day's start, or with
/// `end_of_day` the next day's) or RFC 3339, as UTC.
fn parse_time(field: &str, text: &str, end_of_day: bool) -> Result<String, Problem> {
    if let Ok(date) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        let date = if end_of_day {
            date.succ_opt().unwrap_or(date)
        } else {
            date
        };
        return Ok(format!("{}T00:00:00.000Z", date.format("%Y-%m-%d")));
    }
    DateTime::parse_from_rfc3339(text)
        .map(|t| {
            t.with_timezone(&Utc)
                .to_rfc3339_opts(SecondsFormat::Millis, true)
        })
        .map_err(|_| {
            Problem::bad_request(format!(
                "{field} must be a date (YYYY-MM-DD) or an RFC 3339 time, got {text:?}"
            ))
        })
}

fn parse_range(
    from: Option<&str>,
    to: Option<&str>,
) -> Result<(Option<String>, Option<String>), Problem> {
    let from = from.map(|f| parse_time("from", f, false)).transpose()?;
    let to = to.map(|t| parse_time("to", t, true)).transpose()?;
    Ok((from, to))
}

fn offset(offset: Option<u64>) -> Result<u64, Problem> {
    let offset = offset.unwrap_or(0);
    if offset > i64::MAX as u64 {
        return Err(Problem::bad_request("offset is too large"));
    }
    Ok(offset)
}

/// An id from a path that must be a positive integer.
fn path_id(kind: &str, id: &str) -> Result<i64, Problem> {
    id.parse::<i64>().ok().filter(|id| *id > 0).ok_or_else(|| {
        Problem::bad_request(format!("{kind} id must be a positive integer, got {id:?}"))
    })
}

/// A JSON body, or a problem naming what is wrong with it: 422 for a
/// field of the wrong shape, 400 for a body that is not JSON.
pub(super) fn body<T>(body: Result<Json<T>, JsonRejection>) -> Result<T, Problem> {
    match body {
        Ok(Json(value)) => Ok(value),
        Err(JsonRejection::JsonDataError(e)) => Err(Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            e.body_text(),
        )),
        Err(rejection) => Err(Problem::bad_request(rejection.body_text())),
    }
}

/// Filters of the weighing list and its CSV export.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct WeighingParams {
    /// First weighing on or after: `YYYY-MM-DD` or RFC 3339.
    from: Option<String>,
    /// First weighing before (a date includes that whole day).
    to: Option<String>,
    site_id: Option<String>,
    device_id: Option<String>,
    partner_id: Option<String>,
    article_id: Option<String>,
    lot_id: Option<String>,
    contract_id: Option<String>,
    /// Start of the plate; compared in upper case with single blanks.
    plate: Option<String>,
    status: Option<WeighingStatus>,
    /// `intake` or `outgoing`.
    #[param(pattern = "^(intake|outgoing)$")]
    direction: Option<String>,
    #[param(inline)]
    sort: Option<Sort>,
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
    #[param(minimum = 0)]
    offset: Option<u64>,
    /// CSV only: `de` for `;` and decimal commas, else `,` and points.
    #[param(pattern = "^(de|en)$")]
    lang: Option<String>,
}

impl WeighingParams {
    fn filter(self, limit: u32) -> Result<WeighingFilter, Problem> {
        let (from, to) = parse_range(self.from.as_deref(), self.to.as_deref())?;
        if let Some(direction) = &self.direction
            && direction != "intake"
            && direction != "outgoing"
        {
            return Err(Problem::bad_request(format!(
                "direction must be intake or outgoing, got {direction:?}"
            )));
        }
        Ok(WeighingFilter {
            from,
            to,
            site_id: self.site_id,
            device_id: self.device_id,
            partner_id: self.partner_id,
            article_id: self.article_id,
            lot_id: self.lot_id,
            contract_id: self.contract_id,
            plate: self
                .plate
                .map(|p| valeo_records::master_data::normalise_plate(&p))
                .filter(|p| !p.is_empty()),
            status: self.status,
            direction: self.direction,
            sort: self.sort.unwrap_or_default(),
            limit,
            offset: offset(self.offset)?,
        })
    }
}

/// Lists weighing tickets, newest first unless sorted otherwise.
#[utoipa::path(get, path = "/api/v1/weighings", tag = "weighings", params(WeighingParams),
    responses(
        (status = 200, description = "One page of tickets", body = WeighingPage),
        (status = 400, description = "A parameter is wrong; the detail names it", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn list_weighings(
    State(state): State<AppState>,
    ApiQuery(params): ApiQuery<WeighingParams>,
) -> Response {
    let filter = match page_limit(params.limit).and_then(|limit| params.filter(limit)) {
        Ok(filter) => filter,
        Err(problem) => return problem.into_response(),
    };
    json_or_problem(query(&state, move |store| store.list_weighings(&filter)).await)
}

/// One field of a CSV file: quoted when needed; text that a spreadsheet
/// would run as a formula gets a leading apostrophe.
fn csv_field(text: &str, separator: char) -> String {
    let text = if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{text}")
    } else {
        text.to_owned()
    };
    if text.contains([separator, '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text
    }
}

fn csv_number(value: Option<f64>, decimal_comma: bool) -> String {
    value.map_or_else(String::new, |v| {
        let text = v.to_string();
        if decimal_comma {
            text.replace('.', ",")
        } else {
            text
        }
    })
}

/// The tickets as CSV, one row each.
pub fn weighings_csv(items: &[WeighingView], german: bool) -> String {
    let sep = if german { ';' } else { ',' };
    let header = [
        "id",
        "device_id",
        "site_id",
        "ticket_no",
        "status",
        "direction",
        "plate",
        "partner_id",
        "partner",
        "article_id",
        "article",
        "lot_id",
        "contract_id",
        "first_weighed_at",
        "second_weighed_at",
        "gross",
        "tare",
        "net",
        "unit",
        "first_alibi_id",
        "second_alibi_id",
        "legal_for_trade",
        "delivery_note",
    ];
    // A byte-order mark for the German (spreadsheet) flavour: without it
    // Excel reads UTF-8 as Windows-1252 and garbles umlauts.
    let mut out = if german {
        "\u{feff}".to_owned()
    } else {
        String::new()
    };
    out.push_str(&header.join(&sep.to_string()));
    out.push_str("\r\n");
    for w in items {
        let text = |s: Option<&str>| csv_field(s.unwrap_or(""), sep);
        let fields = [
            w.id.to_string(),
            text(Some(&w.device_id)),
            text(w.site_id.as_deref()),
            w.ticket_no.to_string(),
            w.status.clone(),
            w.direction.clone(),
            text(Some(&w.plate)),
            text(w.partner.as_ref().map(|p| p.id.as_str())),
            text(w.partner.as_ref().map(|p| p.name.as_str())),
            text(w.article.as_ref().map(|a| a.id.as_str())),
            text(w.article.as_ref().map(|a| a.name.as_str())),
            text(w.lot.as_ref().map(|l| l.id.as_str())),
            text(w.contract_id.as_deref()),
            text(Some(&w.first.weighed_at)),
            text(w.second.as_ref().map(|s| s.weighed_at.as_str())),
            csv_number(w.gross, german),
            csv_number(w.tare, german),
            csv_number(w.net, german),
            text(Some(&w.unit)),
            text(w.first.alibi_id.as_deref()),
            text(w.second.as_ref().and_then(|s| s.alibi_id.as_deref())),
            w.legal_for_trade.to_string(),
            text(w.delivery_note.as_ref().map(|n| n.number.as_str())),
        ];
        out.push_str(&fields.join(&sep.to_string()));
        out.push_str("\r\n");
    }
    out
}

/// The filtered tickets as a CSV download (at most `MAX_CSV_ROWS`).
#[utoipa::path(get, path = "/api/v1/weighings.csv", tag = "weighings", params(WeighingParams),
    responses(
        (status = 200, description = "CSV, UTF-8, a header row, CRLF line ends", body = String, content_type = "text/csv"),
        (status = 400, description = "A parameter is wrong", body = ProblemBody, content_type = "application/problem+json"),
        (status = 422, description = "More tickets match than one export holds", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn export_weighings(
    State(state): State<AppState>,
    ApiQuery(params): ApiQuery<WeighingParams>,
) -> Response {
    let german = params.lang.as_deref() == Some("de");
    let filter = match params.filter(MAX_CSV_ROWS) {
        Ok(filter) => filter,
        Err(problem) => return problem.into_response(),
    };
    let count_up_to = filter.offset.saturating_add(u64::from(MAX_CSV_ROWS));
    let page = match query(&state, move |store| {
        store.list_weighings_counting(&filter, count_up_to)
    })
    .await
    {
        Ok(page) => page,
        Err(problem) => return problem.into_response(),
    };
    if !page.total_exact {
        return Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "more tickets match than one export holds ({MAX_CSV_ROWS}): narrow the date range or use offset"
            ),
        )
        .into_response();
    }
    let file = format!("weighings-{}.csv", Utc::now().format("%Y%m%d-%H%M%S"));
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{file}\""),
            ),
        ],
        weighings_csv(&page.items, german),
    )
        .into_response()
}

/// One ticket with its proof: its raw records, re-hashed, and their links.
#[utoipa::path(get, path = "/api/v1/weighings/{id}", tag = "weighings",
    params(("id" = i64, Path, description = "The ticket's id at central", minimum = 1)),
    responses(
        (status = 200, description = "The ticket", body = WeighingDetail),
        (status = 400, description = "The id is not a positive integer", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "No such ticket", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn get_weighing(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    let id = match path_id("weighing", &id) {
        Ok(id) => id,
        Err(problem) => return problem.into_response(),
    };
    match query(&state, move |store| store.get_weighing_detail(id)).await {
        Ok(Some(weighing)) => Json(weighing).into_response(),
        Ok(None) => Problem::not_found(format!("no weighing with id {id}")).into_response(),
        Err(problem) => problem.into_response(),
    }
}

/// A page of anything.
#[derive(Debug, Serialize, ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub total: u64,
    pub limit: u32,
    pub offset: u64,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct NoteParams {
    /// Issued on or after: `YYYY-MM-DD` or RFC 3339.
    from: Option<String>,
    /// Issued before (a date includes that whole day).
    to: Option<String>,
    partner_id: Option<String>,
    /// `issued` or `cancelled`.
    #[param(pattern = "^(issued|cancelled)$")]
    status: Option<String>,
    #[param(minimum = 1)]
    weighing_id: Option<i64>,
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
    #[param(minimum = 0)]
    offset: Option<u64>,
}

/// Lists delivery notes, newest first.
#[utoipa::path(get, path = "/api/v1/delivery-notes", tag = "delivery-notes", params(NoteParams),
    responses(
        (status = 200, description = "One page of notes", body = Page<DeliveryNote>),
        (status = 400, description = "A parameter is wrong", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn list_delivery_notes(
    State(state): State<AppState>,
    ApiQuery(params): ApiQuery<NoteParams>,
) -> Response {
    let filter = (|| {
        let limit = page_limit(params.limit)?;
        let (from, to) = parse_range(params.from.as_deref(), params.to.as_deref())?;
        if let Some(status) = &params.status
            && status != "issued"
            && status != "cancelled"
        {
            return Err(Problem::bad_request(format!(
                "status must be issued or cancelled, got {status:?}"
            )));
        }
        Ok(NoteFilter {
            from,
            to,
            partner_id: params.partner_id.clone(),
            status: params.status.clone(),
            weighing_id: params.weighing_id,
            limit,
            offset: offset(params.offset)?,
        })
    })();
    let filter = match filter {
        Ok(filter) => filter,
        Err(problem) => return problem.into_response(),
    };
    let (limit, offset) = (filter.limit, filter.offset);
    json_or_problem(
        query(&state, move |store| store.list_delivery_notes(&filter))
            .await
            .map(|(items, total)| Page {
                items,
                total,
                limit,
                offset,
            }),
    )
}

fn note_problem(error: NoteError) -> Problem {
    match error {
        NoteError::NotFound(_) => Problem::not_found(error.to_string()),
        NoteError::NoWeighing(_) => Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("weighing_id: {error}"),
        ),
        NoteError::Conflict(_) => Problem::new(StatusCode::CONFLICT, error.to_string()),
        NoteError::Invalid(_) => Problem::new(StatusCode::UNPROCESSABLE_ENTITY, error.to_string()),
        NoteError::Store(e) => Problem::internal(&e, INTERNAL_DETAIL),
    }
}

/// Runs a store change on the blocking pool, mapping its error.
async fn change<T, E, F>(state: &AppState, f: F, map: fn(E) -> Problem) -> Result<T, Problem>
where
    F: FnOnce(&crate::store::Store) -> Result<T, E> + Send + 'static,
    T: Send + 'static,
    E: Send + 'static,
{
    let store = state.store.clone();
    match tokio::task::spawn_blocking(move || f(&store)).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(map(error)),
        Err(error) => Err(Problem::internal(&error, INTERNAL_DETAIL)),
    }
}

/// Issues the delivery note of a complete weighing.
#[utoipa::path(post, path = "/api/v1/delivery-notes", tag = "delivery-notes",
    request_body = NewDeliveryNote,
    responses(
        (status = 201, description = "Issued", body = DeliveryNote),
        (status = 400, description = "The body is not JSON", body = ProblemBody, content_type = "application/problem+json"),
        (status = 409, description = "The weighing is not complete, is cancelled, or has a note", body = ProblemBody, content_type = "application/problem+json"),
        (status = 422, description = "A field is wrong or the weighing does not exist", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn create_delivery_note(
    State(state): State<AppState>,
    Actor(actor): Actor,
    request: Result<Json<NewDeliveryNote>, JsonRejection>,
) -> Response {
    let request = match body(request) {
        Ok(request) => request,
        Err(problem) => return problem.into_response(),
    };
    match change(
        &state,
        move |store| store.create_delivery_note(&request, &actor),
        note_problem,
    )
    .await
    {
        Ok(note) => (
            StatusCode::CREATED,
            [(
                header::LOCATION,
                format!("/api/v1/delivery-notes/{}", note.id),
            )],
            Json(note),
        )
            .into_response(),
        Err(problem) => problem.into_response(),
    }
}

async fn load_note(state: &AppState, id: &str) -> Result<DeliveryNote, Problem> {
    let id = path_id("delivery note", id)?;
    match query(state, move |store| store.get_delivery_note(id)).await? {
        Some(note) => Ok(note),
        None => Err(Problem::not_found(format!("no delivery note {id}"))),
    }
}

/// One delivery note.
#[utoipa::path(get, path = "/api/v1/delivery-notes/{id}", tag = "delivery-notes",
    params(("id" = i64, Path, minimum = 1)),
    responses(
        (status = 200, description = "The note", body = DeliveryNote),
        (status = 400, description = "The id is not a positive integer", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "No such note", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn get_delivery_note(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    match load_note(&state, &id).await {
        Ok(note) => Json(note).into_response(),
        Err(problem) => problem.into_response(),
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct LangParams {
    /// `de` (default) or `en`.
    #[param(pattern = "^(de|en)$")]
    lang: Option<String>,
}

/// The printable note (HTML, A4).
#[utoipa::path(get, path = "/api/v1/delivery-notes/{id}/document", tag = "delivery-notes",
    params(("id" = i64, Path, minimum = 1), LangParams),
    responses(
        (status = 200, description = "The note as a printable page", body = String, content_type = "text/html"),
        (status = 400, description = "A parameter is wrong", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "No such note", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn delivery_note_document(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiQuery(params): ApiQuery<LangParams>,
) -> Response {
    let english = match params.lang.as_deref() {
        None | Some("de") => false,
        Some("en") => true,
        Some(other) => {
            return Problem::bad_request(format!("lang must be de or en, got {other:?}"))
                .into_response();
        }
    };
    match load_note(&state, &id).await {
        Ok(note) => (
            [
                (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                (
                    header::CONTENT_SECURITY_POLICY,
                    "default-src 'none'; style-src 'unsafe-inline'",
                ),
            ],
            note_page(&note, english),
        )
            .into_response(),
        Err(problem) => problem.into_response(),
    }
}

/// The delivery note as a page to print.
pub fn note_page(note: &DeliveryNote, english: bool) -> String {
    let t = |de: &'static str, en: &'static str| if english { en } else { de };
    let weight = |w: Option<f64>| {
        w.map_or_else(String::new, |w| {
            let text = format!("{w} {}", note.unit);
            if english {
                text
            } else {
                text.replace('.', ",")
            }
        })
    };
    let name = |r: &Option<valeo_records::Ref>| {
        r.as_ref()
            .map_or_else(String::new, |r| escape(&format!("{} ({})", r.name, r.id)))
    };
    let mut rows = vec![
        (
            t("Lieferschein-Nr.", "Delivery note no."),
            escape(&note.number),
        ),
        (t("Ausgestellt", "Issued"), escape(&note.created_at)),
        (
            t("Wiegeschein", "Weighing ticket"),
            escape(&format!("{} / {}", note.device_id, note.ticket_no)),
        ),
        (t("Kennzeichen", "Plate"), escape(&note.plate)),
        (t("Partner", "Partner"), name(&note.partner)),
        (t("Artikel", "Article"), name(&note.article)),
        (t("Charge", "Lot"), name(&note.lot)),
        (t("Lagerort", "Location"), name(&note.location)),
        (
            t("Kontrakt", "Contract"),
            escape(note.contract_id.as_deref().unwrap_or("")),
        ),
        (t("Brutto", "Gross"), weight(note.gross)),
        (t("Tara", "Tare"), weight(note.tare)),
        (
            t("Netto", "Net"),
            format!("<strong>{}</strong>", weight(note.net)),
        ),
        (t("Gewogen", "Weighed"), escape(&note.weighed_at)),
        (
            t("Alibi-Nr.", "Alibi no."),
            escape(&note.alibi_ids.join(", ")),
        ),
        (
            t("Eichfähig", "Legal for trade"),
            if note.legal_for_trade {
                t("ja", "yes")
            } else {
                t("nein", "no")
            }
            .to_owned(),
        ),
    ];
    if let Some(remarks) = &note.remarks {
        rows.push((t("Bemerkungen", "Remarks"), escape(remarks)));
    }
    let body: String = rows
        .iter()
        .map(|(k, v)| format!("<tr><th>{k}</th><td>{v}</td></tr>\n"))
        .collect();
    let cancelled = if note.status == "cancelled" {
        format!(
            "<p class=\"void\">{} {}: {}</p>",
            t("STORNIERT", "CANCELLED"),
            escape(note.cancelled_at.as_deref().unwrap_or("")),
            escape(note.cancel_reason.as_deref().unwrap_or(""))
        )
    } else {
        String::new()
    };
    format!(
        "<!doctype html>\n<html lang=\"{lang}\"><head><meta charset=\"utf-8\"><title>{title} {number}</title>\
         <style>body{{font-family:sans-serif;max-width:180mm;margin:10mm auto}}th{{text-align:left;padding-right:2em}}\
         td,th{{padding:2px 0}}.void{{color:#b00;font-weight:bold;font-size:1.4em}}@page{{size:A4}}</style></head>\
         <body><h1>{title}</h1>{cancelled}<table>\n{body}</table>\
         <p>{sign}</p></body></html>\n",
        lang = if english { "en" } else { "de" },
        title = t("Lieferschein", "Delivery note"),
        number = escape(&note.number),
        sign = t(
            "Unterschrift Empfänger: ______________________",
            "Received by: ______________________"
        ),
    )
}

/// Cancels an issued note; its weighing may then get a new one.
#[utoipa::path(post, path = "/api/v1/delivery-notes/{id}/cancel", tag = "delivery-notes",
    params(("id" = i64, Path, minimum = 1)),
    request_body = CancelDeliveryNote,
    responses(
        (status = 200, description = "Cancelled", body = DeliveryNote),
        (status = 400, description = "The id or body is malformed", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "No such note", body = ProblemBody, content_type = "application/problem+json"),
        (status = 409, description = "The note is cancelled already", body = ProblemBody, content_type = "application/problem+json"),
        (status = 422, description = "The reason is missing or too long", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn cancel_delivery_note(
    State(state): State<AppState>,
    Actor(actor): Actor,
    Path(id): Path<String>,
    request: Result<Json<CancelDeliveryNote>, JsonRejection>,
) -> Response {
    let (id, request) = match path_id("delivery note", &id).and_then(|id| Ok((id, body(request)?)))
    {
        Ok(v) => v,
        Err(problem) => return problem.into_response(),
    };
    json_or_problem(
        change(
            &state,
            move |store| store.cancel_delivery_note(id, &request, &actor),
            note_problem,
        )
        .await,
    )
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct StockParams {
    article_id: Option<String>,
    location_id: Option<String>,
}

/// Stock levels per article and location.
#[derive(Debug, Serialize, ToSchema)]
pub struct StockLevels {
    pub items: Vec<StockLevel>,
    /// True when there are more than `MAX_STOCK_LEVELS`; filter by article
    /// or location.
    pub truncated: bool,
}

/// Stock per article and location: the sum of all movements.
#[utoipa::path(get, path = "/api/v1/stock", tag = "stock", params(StockParams),
    responses(
        (status = 200, description = "Stock levels", body = StockLevels),
        (status = 400, description = "A parameter is wrong", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn stock(
    State(state): State<AppState>,
    ApiQuery(params): ApiQuery<StockParams>,
) -> Response {
    json_or_problem(
        query(&state, move |store| {
            store.stock(params.article_id.as_deref(), params.location_id.as_deref())
        })
        .await
        .map(|items| StockLevels {
            truncated: items.len() >= crate::store::MAX_STOCK_LEVELS as usize,
            items,
        }),
    )
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct MovementParams {
    article_id: Option<String>,
    location_id: Option<String>,
    /// On or after: `YYYY-MM-DD` or RFC 3339.
    from: Option<String>,
    /// Before (a date includes that whole day).
    to: Option<String>,
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
    #[param(minimum = 0)]
    offset: Option<u64>,
}

/// Stock movements, newest first.
#[utoipa::path(get, path = "/api/v1/stock-movements", tag = "stock", params(MovementParams),
    responses(
        (status = 200, description = "One page of movements", body = Page<StockMovement>),
        (status = 400, description = "A parameter is wrong", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn stock_movements(
    State(state): State<AppState>,
    ApiQuery(params): ApiQuery<MovementParams>,
) -> Response {
    let filter = (|| {
        let (from, to) = parse_range(params.from.as_deref(), params.to.as_deref())?;
        Ok::<_, Problem>(MovementFilter {
            article_id: params.article_id.clone(),
            location_id: params.location_id.clone(),
            from,
            to,
            limit: page_limit(params.limit)?,
            offset: offset(params.offset)?,
        })
    })();
    let filter = match filter {
        Ok(filter) => filter,
        Err(problem) => return problem.into_response(),
    };
    let (limit, offset) = (filter.limit, filter.offset);
    json_or_problem(
        query(&state, move |store| store.stock_movements(&filter))
            .await
            .map(|(items, total)| Page {
                items,
                total,
                limit,
                offset,
            }),
    )
}

/// Books a stock correction (inventory count, loss, transfer leg).
#[utoipa::path(post, path = "/api/v1/stock-movements", tag = "stock",
    request_body = NewCorrection,
    responses(
        (status = 201, description = "Booked", body = StockMovement),
        (status = 400, description = "The body is not JSON", body = ProblemBody, content_type = "application/problem+json"),
        (status = 422, description = "A field is wrong; the detail names it", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn book_correction(
    State(state): State<AppState>,
    Actor(actor): Actor,
    request: Result<Json<NewCorrection>, JsonRejection>,
) -> Response {
    let request = match body(request) {
        Ok(request) => request,
        Err(problem) => return problem.into_response(),
    };
    let map = |error: CorrectionError| match error {
        CorrectionError::Invalid(reason) => Problem::new(StatusCode::UNPROCESSABLE_ENTITY, reason),
        CorrectionError::Store(e) => Problem::internal(&e, INTERNAL_DETAIL),
    };
    match change(
        &state,
        move |store| store.book_correction(&request, &actor),
        map,
    )
    .await
    {
        Ok(movement) => (StatusCode::CREATED, Json(movement)).into_response(),
        Err(problem) => problem.into_response(),
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ReportParams {
    #[param(inline)]
    group_by: GroupBy,
    /// First weighing on or after: `YYYY-MM-DD` or RFC 3339.
    from: Option<String>,
    /// First weighing before (a date includes that whole day).
    to: Option<String>,
}

/// Net weight and count of complete weighings in a period, grouped.
#[utoipa::path(get, path = "/api/v1/reports/weighings", tag = "reports", params(ReportParams),
    responses(
        (status = 200, description = "The report", body = Report),
        (status = 400, description = "A parameter is wrong", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn weighing_report(
    State(state): State<AppState>,
    ApiQuery(params): ApiQuery<ReportParams>,
) -> Response {
    let (from, to) = match parse_range(params.from.as_deref(), params.to.as_deref()) {
        Ok(range) => range,
        Err(problem) => return problem.into_response(),
    };
    json_or_problem(
        query(&state, move |store| {
            store.weighing_report(params.group_by, from.as_deref(), to.as_deref())
        })
        .await,
    )
}

/// Master data: list, read, create, replace and delete, the same for all
/// seven kinds; `macro_rules` gives each kind its own documented handlers.
mod master {
    use super::*;

    #[derive(Debug, Deserialize, IntoParams)]
    #[serde(deny_unknown_fields)]
    #[into_params(parameter_in = Query)]
    pub struct EntityParams {
        /// Part of the id or name.
        q: Option<String>,
        #[param(minimum = 1, maximum = 500)]
        limit: Option<u32>,
        #[param(minimum = 0)]
        offset: Option<u64>,
    }

    fn master_problem(error: MasterError) -> Problem {
        match error {
            MasterError::NotFound { .. } => Problem::not_found(error.to_string()),
            MasterError::Exists { .. } | MasterError::InUse(_) => {
                Problem::new(StatusCode::CONFLICT, error.to_string())
            }
            MasterError::VersionMismatch { .. } => {
                Problem::new(StatusCode::PRECONDITION_FAILED, error.to_string())
            }
            MasterError::Invalid(_) => {
                Problem::new(StatusCode::UNPROCESSABLE_ENTITY, error.to_string())
            }
            MasterError::Store(e) => Problem::internal(&e, INTERNAL_DETAIL),
        }
    }

    /// The version `If-Match` names; changes without one are refused
    /// (428), so nobody overwrites a change they have not seen.
    fn if_match(headers: &HeaderMap) -> Result<u64, Problem> {
        let Some(value) = headers.get(header::IF_MATCH) else {
            return Err(Problem::new(
                StatusCode::PRECONDITION_REQUIRED,
                "If-Match is required: send the ETag you read, like \"3\"",
            ));
        };
        let text = value
            .to_str()
            .map_err(|_| Problem::bad_request("If-Match is not ASCII"))?;
        text.trim()
            .trim_start_matches("W/")
            .trim_matches('"')
            .parse::<u64>()
            .map_err(|_| {
                Problem::bad_request(format!(
                    "If-Match must be an ETag of this resource like \"3\", got {text:?}"
                ))
            })
    }

    fn with_etag<E: Serialize>(status: StatusCode, item: &Versioned<E>) -> Response {
        (
            status,
            [(header::ETAG, super::super::etag(item.version))],
            Json(item),
        )
            .into_response()
    }

    /// The fields of what a client read (`version`, `updated_at`,
    /// `updated_by`, `delivered_kg`) are ignored, so a read entity can be
    /// sent back changed; any other unknown field is refused, named.
    fn entity_body<E: Entity>(
        request: Result<Json<serde_json::Value>, JsonRejection>,
    ) -> Result<E, Problem> {
        let mut value = body(request)?;
        let Some(object) = value.as_object_mut() else {
            return Err(Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("the body must be a JSON object: one {}", E::KIND.singular()),
            ));
        };
        for read_only in ["version", "updated_at", "updated_by", "delivered_kg"] {
            object.remove(read_only);
        }
        // The entity types accept unknown fields (so the OpenAPI schema of
        // an entity read back with its version stays open); here they are
        // refused, named.
        let mut unknown = Vec::new();
        let mut note_unknown = |path: serde_ignored::Path<'_>| unknown.push(path.to_string());
        let entity: E = serde_path_to_error::deserialize(serde_ignored::Deserializer::new(
            value,
            &mut note_unknown,
        ))
        .map_err(|e| {
            Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("{}: {}", e.path(), e.inner()),
            )
        })?;
        if let Some(field) = unknown.first() {
            return Err(Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("{field}: unknown field"),
            ));
        }
        Ok(entity)
    }

    pub(super) async fn list<E: Entity + Serialize>(
        state: AppState,
        params: EntityParams,
    ) -> Response {
        let (limit, offset) =
            match page_limit(params.limit).and_then(|l| Ok((l, offset(params.offset)?))) {
                Ok(v) => v,
                Err(problem) => return problem.into_response(),
            };
        json_or_problem(
            query(&state, move |store| {
                store.list_entities::<E>(params.q.as_deref(), limit, offset)
            })
            .await
            .map(|(items, total)| Page {
                items,
                total,
                limit,
                offset,
            }),
        )
    }

    pub(super) async fn get_one<E: Entity + Serialize>(state: AppState, id: String) -> Response {
        let id = E::normalise_id(&id);
        let shown = id.clone();
        match query(&state, move |store| store.get_entity::<E>(&id)).await {
            Ok(Some(item)) => with_etag(StatusCode::OK, &item),
            Ok(None) => {
                Problem::not_found(format!("no {} {shown:?}", E::KIND.singular())).into_response()
            }
            Err(problem) => problem.into_response(),
        }
    }

    pub(super) async fn create<E: Entity + Serialize>(
        state: AppState,
        actor: String,
        request: Result<Json<serde_json::Value>, JsonRejection>,
    ) -> Response {
        let mut entity = match entity_body::<E>(request) {
            Ok(entity) => entity,
            Err(problem) => return problem.into_response(),
        };
        if let Err(reason) = entity.check() {
            return Problem::new(StatusCode::UNPROCESSABLE_ENTITY, reason).into_response();
        }
        match change(
            &state,
            move |store| store.create_entity(entity, &actor),
            master_problem,
        )
        .await
        {
            Ok((item, _)) => {
                state.master_data.changed();
                let location = format!(
                    "/api/v1/{}/{}",
                    E::KIND.as_str(),
                    urlencoding::encode(item.data.id())
                );
                let mut response = with_etag(StatusCode::CREATED, &item);
                if let Ok(value) = location.parse() {
                    response.headers_mut().insert(header::LOCATION, value);
                }
                response
            }
            Err(problem) => problem.into_response(),
        }
    }

    pub(super) async fn replace<E: Entity + Serialize>(
        state: AppState,
        actor: String,
        id: String,
        headers: HeaderMap,
        request: Result<Json<serde_json::Value>, JsonRejection>,
    ) -> Response {
        let version = match if_match(&headers) {
            Ok(version) => version,
            Err(problem) => return problem.into_response(),
        };
        let id = E::normalise_id(&id);
        let mut entity = match entity_body::<E>(request) {
            Ok(entity) => entity,
            Err(problem) => return problem.into_response(),
        };
        if let Err(reason) = entity.check() {
            return Problem::new(StatusCode::UNPROCESSABLE_ENTITY, reason).into_response();
        }
        match change(
            &state,
            move |store| store.replace_entity(&id, entity, version, &actor),
            master_problem,
        )
        .await
        {
            Ok((item, _)) => {
                state.master_data.changed();
                with_etag(StatusCode::OK, &item)
            }
            Err(problem) => problem.into_response(),
        }
    }

    pub(super) async fn delete<E: Entity>(
        state: AppState,
        actor: String,
        id: String,
        headers: HeaderMap,
    ) -> Response {
        let version = match if_match(&headers) {
            Ok(version) => version,
            Err(problem) => return problem.into_response(),
        };
        let id = E::normalise_id(&id);
        match change(
            &state,
            move |store| store.delete_entity::<E>(&id, version, &actor),
            master_problem,
        )
        .await
        {
            Ok(_) => {
                state.master_data.changed();
                StatusCode::NO_CONTENT.into_response()
            }
            Err(problem) => problem.into_response(),
        }
    }

    /// The five documented handlers of one kind.
    macro_rules! kind {
        ($module:ident, $entity:ty, $list:tt, $item:tt, $tag:tt, [$l:tt, $g:tt, $c:tt, $r:tt, $d:tt]) => {
            pub mod $module {
                use super::*;

                #[doc = concat!("Lists ", $tag, ", ordered by id.")]
                #[utoipa::path(get, path = $list, tag = $tag, operation_id = $l, params(EntityParams),
                    responses(
                        (status = 200, description = "One page", body = Page<Versioned<$entity>>),
                        (status = 400, description = "A parameter is wrong", body = ProblemBody, content_type = "application/problem+json"),
                    ))]
                pub async fn list(
                    State(state): State<AppState>,
                    ApiQuery(params): ApiQuery<EntityParams>,
                ) -> Response {
                    super::list::<$entity>(state, params).await
                }

                #[doc = concat!("One of the ", $tag, ", with its version as ETag.")]
                #[utoipa::path(get, path = $item, tag = $tag, operation_id = $g,
                    params(("id" = String, Path, max_length = 64)),
                    responses(
                        (status = 200, description = "The entity", body = Versioned<$entity>,
                            headers(("ETag" = String, description = "The version, quoted"))),
                        (status = 404, description = "No such entity", body = ProblemBody, content_type = "application/problem+json"),
                    ))]
                pub async fn get(State(state): State<AppState>, Path(id): Path<String>) -> Response {
                    super::get_one::<$entity>(state, id).await
                }

                #[doc = concat!("Creates one of the ", $tag, "; the boxes get the new master data.")]
                #[utoipa::path(post, path = $list, tag = $tag, operation_id = $c, request_body = $entity,
                    responses(
                        (status = 201, description = "Created", body = Versioned<$entity>,
                            headers(("ETag" = String), ("Location" = String))),
                        (status = 400, description = "The body is not JSON", body = ProblemBody, content_type = "application/problem+json"),
                        (status = 409, description = "The id exists already", body = ProblemBody, content_type = "application/problem+json"),
                        (status = 422, description = "A field is wrong or refers to nothing; the detail names it", body = ProblemBody, content_type = "application/problem+json"),
                    ))]
                pub async fn create(
                    State(state): State<AppState>,
                    Actor(actor): Actor,
                    request: Result<Json<serde_json::Value>, JsonRejection>,
                ) -> Response {
                    super::create::<$entity>(state, actor, request).await
                }

                #[doc = concat!("Replaces one of the ", $tag, " at the version in If-Match.")]
                #[utoipa::path(put, path = $item, tag = $tag, operation_id = $r, request_body = $entity,
                    params(("id" = String, Path, max_length = 64),
                        ("If-Match" = String, Header, description = "The ETag read before, like \"3\"")),
                    responses(
                        (status = 200, description = "Replaced", body = Versioned<$entity>, headers(("ETag" = String))),
                        (status = 400, description = "The body or If-Match is malformed", body = ProblemBody, content_type = "application/problem+json"),
                        (status = 404, description = "No such entity", body = ProblemBody, content_type = "application/problem+json"),
                        (status = 412, description = "Changed meanwhile: read it again", body = ProblemBody, content_type = "application/problem+json"),
                        (status = 422, description = "A field is wrong or refers to nothing", body = ProblemBody, content_type = "application/problem+json"),
                        (status = 428, description = "If-Match is missing", body = ProblemBody, content_type = "application/problem+json"),
                    ))]
                pub async fn replace(
                    State(state): State<AppState>,
                    Actor(actor): Actor,
                    Path(id): Path<String>,
                    headers: HeaderMap,
                    request: Result<Json<serde_json::Value>, JsonRejection>,
                ) -> Response {
                    super::replace::<$entity>(state, actor, id, headers, request).await
                }

                #[doc = concat!("Deletes one of the ", $tag, " nothing refers to any more.")]
                #[utoipa::path(delete, path = $item, tag = $tag, operation_id = $d,
                    params(("id" = String, Path, max_length = 64),
                        ("If-Match" = String, Header, description = "The ETag read before, like \"3\"")),
                    responses(
                        (status = 204, description = "Deleted"),
                        (status = 400, description = "If-Match is malformed", body = ProblemBody, content_type = "application/problem+json"),
                        (status = 404, description = "No such entity", body = ProblemBody, content_type = "application/problem+json"),
                        (status = 409, description = "Still referred to", body = ProblemBody, content_type = "application/problem+json"),
                        (status = 412, description = "Changed meanwhile: read it again", body = ProblemBody, content_type = "application/problem+json"),
                        (status = 428, description = "If-Match is missing", body = ProblemBody, content_type = "application/problem+json"),
                    ))]
                pub async fn delete(
                    State(state): State<AppState>,
                    Actor(actor): Actor,
                    Path(id): Path<String>,
                    headers: HeaderMap,
                ) -> Response {
                    super::delete::<$entity>(state, actor, id, headers).await
                }
            }
        };
    }

    kind!(
        sites,
        Site,
        "/api/v1/sites",
        "/api/v1/sites/{id}",
        "sites",
        [
            "list_sites",
            "get_site",
            "create_site",
            "replace_site",
            "delete_site"
        ]
    );
    kind!(
        partners,
        Partner,
        "/api/v1/partners",
        "/api/v1/partners/{id}",
        "partners",
        [
            "list_partners",
            "get_partner",
            "create_partner",
            "replace_partner",
            "delete_partner"
        ]
    );
    kind!(
        articles,
        Article,
        "/api/v1/articles",
        "/api/v1/articles/{id}",
        "articles",
        [
            "list_articles",
            "get_article",
            "create_article",
            "replace_article",
            "delete_article"
        ]
    );
    kind!(
        vehicles,
        Vehicle,
        "/api/v1/vehicles",
        "/api/v1/vehicles/{id}",
        "vehicles",
        [
            "list_vehicles",
            "get_vehicle",
            "create_vehicle",
            "replace_vehicle",
            "delete_vehicle"
        ]
    );
    kind!(
        locations,
        Location,
        "/api/v1/locations",
        "/api/v1/locations/{id}",
        "locations",
        [
            "list_locations",
            "get_location",
            "create_location",
            "replace_location",
            "delete_location"
        ]
    );
    kind!(
        lots,
        Lot,
        "/api/v1/lots",
        "/api/v1/lots/{id}",
        "lots",
        [
            "list_lots",
            "get_lot",
            "create_lot",
            "replace_lot",
            "delete_lot"
        ]
    );
    kind!(
        contracts,
        Contract,
        "/api/v1/contracts",
        "/api/v1/contracts/{id}",
        "contracts",
        [
            "list_contracts",
            "get_contract",
            "create_contract",
            "replace_contract",
            "delete_contract"
        ]
    );

    /// Adds the routes of all kinds.
    pub(super) fn routes(router: Router<AppState>) -> Router<AppState> {
        macro_rules! add {
            ($router:expr, $module:ident, $list:tt, $item:tt) => {
                $router
                    .route($list, get($module::list).post($module::create))
                    .route(
                        $item,
                        get($module::get)
                            .put($module::replace)
                            .delete($module::delete),
                    )
            };
        }
        let router = add!(router, sites, "/api/v1/sites", "/api/v1/sites/{id}");
        let router = add!(
            router,
            partners,
            "/api/v1/partners",
            "/api/v1/partners/{id}"
        );
        let router = add!(
            router,
            articles,
            "/api/v1/articles",
            "/api/v1/articles/{id}"
        );
        let router = add!(
            router,
            vehicles,
            "/api/v1/vehicles",
            "/api/v1/vehicles/{id}"
        );
        let router = add!(
            router,
            locations,
            "/api/v1/locations",
            "/api/v1/locations/{id}"
        );
        let router = add!(router, lots, "/api/v1/lots", "/api/v1/lots/{id}");
        add!(
            router,
            contracts,
            "/api/v1/contracts",
            "/api/v1/contracts/{id}"
        )
    }
}

pub use master::{articles, contracts, locations, lots, partners, sites, vehicles};

/// The business part of the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(
        list_weighings, export_weighings, get_weighing,
        list_delivery_notes, create_delivery_note, get_delivery_note, delivery_note_document,
        cancel_delivery_note, stock, stock_movements, book_correction, weighing_report,
        sites::list, sites::get, sites::create, sites::replace, sites::delete,
        partners::list, partners::get, partners::create, partners::replace, partners::delete,
        articles::list, articles::get, articles::create, articles::replace, articles::delete,
        vehicles::list, vehicles::get, vehicles::create, vehicles::replace, vehicles::delete,
        locations::list, locations::get, locations::create, locations::replace, locations::delete,
        lots::list, lots::get, lots::create, lots::replace, lots::delete,
        contracts::list, contracts::get, contracts::create, contracts::replace, contracts::delete,
    ),
    components(schemas(
        WeighingPage, WeighingView, WeighingDetail, DeliveryNote, NewDeliveryNote,
        CancelDeliveryNote, StockLevels, StockMovement, NewCorrection, Report, GroupBy, Sort,
        WeighingStatus,
        Site, Partner, Article, Vehicle, Location, Lot, Contract,
    )),
    tags(
        (name = "weighings", description = "Weighing tickets from the boxes, with their proof"),
        (name = "delivery-notes", description = "Delivery notes (Lieferscheine) issued from complete weighings"),
        (name = "stock", description = "Stock per article and location, and its movements"),
        (name = "reports", description = "Daily and period reports"),
        (name = "sites", description = "Master data: sites"),
        (name = "partners", description = "Master data: customers, suppliers, hauliers"),
        (name = "articles", description = "Master data: articles"),
        (name = "vehicles", description = "Master data: vehicles and stored tares"),
        (name = "locations", description = "Master data: storage locations"),
        (name = "lots", description = "Master data: lots (Chargen)"),
        (name = "contracts", description = "Master data: contracts"),
    )
)]
#[derive(Debug)]
pub struct BusinessApi;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_and_formulas_defused() {
        assert_eq!(csv_field("plain", ';'), "plain");
        assert_eq!(csv_field("a;b", ';'), "\"a;b\"");
        assert_eq!(csv_field("say \"hi\"", ','), "\"say \"\"hi\"\"\"");
        assert_eq!(
            csv_field("=HYPERLINK(\"x\")", ','),
            "\"'=HYPERLINK(\"\"x\"\")\""
        );
        assert_eq!(csv_field("-5", ';'), "'-5");
        assert_eq!(csv_number(Some(12.5), true), "12,5");
        assert_eq!(csv_number(Some(12.5), false), "12.5");
    }

    #[test]
    fn times_from_queries() {
        assert_eq!(
            parse_time("from", "2026-11-29", false).unwrap(),
            "2026-11-29T00:00:00.000Z"
        );
        assert_eq!(
            parse_time("to", "2026-11-29", true).unwrap(),
            "2026-11-30T00:00:00.000Z"
        );
        assert_eq!(
            parse_time("from", "2026-11-29T10:00:00+01:00", false).unwrap(),
            "2026-11-29T09:00:00.000Z"
        );
        let problem = parse_time("to", "yesterday", true).unwrap_err();
        assert!(format!("{problem:?}").contains("to must be a date"));
    }
}
