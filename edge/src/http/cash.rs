//! The cash desk at the local API: sales, receipts (JSON and a printable
//! page with everything KassenSichV § 6 asks for and the DSFinV-K QR code),
//! stornos, the daily closing, the TSE's status and its TAR export.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;
use valeo_drivers::tse::ExportFilter;
use valeo_process::markup::escape;
use valeo_process::problem::Problem;
use valeo_records::cash::{
    CashSale, Payment, ReceiptType, SaleLine, format_cents, split_vat, vat_rate_basis_points,
};

use super::AppState;
use super::tickets::body;
use crate::cash::{CashDesk, CashError, NewSale};

impl IntoResponse for CashError {
    fn into_response(self) -> Response {
        let status = match &self {
            CashError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            CashError::NoSuchSale(_) | CashError::NoSuchReceipt(_) => StatusCode::NOT_FOUND,
            CashError::AlreadyCancelled(..)
            | CashError::NotCancellable(..)
            | CashError::TooManyOpen
            | CashError::Busy
            | CashError::TooManyLines => StatusCode::CONFLICT,
            CashError::Storage(_) => {
                return Problem::internal(&self, "the request could not be completed")
                    .into_response();
            }
        };
        Problem::new(status, self.to_string()).into_response()
    }
}

fn desk(state: &AppState) -> Result<&CashDesk, Problem> {
    state
        .cash
        .as_ref()
        .ok_or_else(|| Problem::not_found("this box has no cash desk (no [cash] section)"))
}

fn answer<T: serde::Serialize>(status: StatusCode, result: Result<T, CashError>) -> Response {
    match result {
        Ok(value) => (status, Json(value)).into_response(),
        Err(error) => error.into_response(),
    }
}

/// `GET /api/v1/tse`: the TSE's description, availability and any outage.
pub(super) async fn tse_status(State(state): State<AppState>) -> Response {
    match desk(&state) {
        Ok(desk) => Json(desk.status()).into_response(),
        Err(answer) => answer.into_response(),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ExportParams {
    start_unix: Option<i64>,
    end_unix: Option<i64>,
}

/// `GET /api/v1/tse/export?start_unix=&end_unix=`: the TSE's TAR export.
pub(super) async fn tse_export(
    State(state): State<AppState>,
    Query(params): Query<ExportParams>,
) -> Response {
    let desk = match desk(&state) {
        Ok(desk) => desk,
        Err(answer) => return answer.into_response(),
    };
    let filter = ExportFilter {
        start_unix: params.start_unix,
        end_unix: params.end_unix,
        client_id: None,
    };
    match desk.tse_export(filter).await {
        Ok(tar) => (
            [
                (header::CONTENT_TYPE, "application/x-tar".to_owned()),
                (
                    header::CONTENT_DISPOSITION,
                    format!(
                        "attachment; filename=\"TSE_Export_{}.tar\"",
                        desk.settings().cash_point.replace(' ', "_")
                    ),
                ),
            ],
            tar,
        )
            .into_response(),
        Err(error) => {
            Problem::new(StatusCode::SERVICE_UNAVAILABLE, error.to_string()).into_response()
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SaleRequest {
    operator: String,
    #[serde(default)]
    ticket_no: Option<u64>,
    #[serde(default)]
    customer: Option<String>,
    /// With payments: a counter sale, opened and finished at once.
    #[serde(default)]
    lines: Vec<SaleLine>,
    #[serde(default)]
    payments: Option<Vec<Payment>>,
}

/// `POST /api/v1/sales`: opens a sale, or with `payments` sells at once.
pub(super) async fn create_sale(
    State(state): State<AppState>,
    request: Result<Json<SaleRequest>, JsonRejection>,
) -> Response {
    let desk = match desk(&state) {
        Ok(desk) => desk,
        Err(answer) => return answer.into_response(),
    };
    let request = match body(request) {
        Ok(r) => r,
        Err(problem) => return problem.into_response(),
    };
    let new = NewSale {
        operator: request.operator,
        ticket_no: request.ticket_no,
        customer: request.customer,
    };
    match request.payments {
        Some(payments) => answer(
            StatusCode::CREATED,
            desk.sell(new, request.lines, payments).await,
        ),
        None if request.lines.is_empty() => answer(StatusCode::CREATED, desk.open_sale(new).await),
        None => Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "lines without payments: open the sale first, then add lines",
        )
        .into_response(),
    }
}

/// `GET /api/v1/sales/open`.
pub(super) async fn open_sales(State(state): State<AppState>) -> Response {
    match desk(&state) {
        Ok(desk) => answer(StatusCode::OK, desk.open_sales().await),
        Err(answer) => answer.into_response(),
    }
}

fn sale_id(text: &str) -> Result<i64, Problem> {
    text.parse()
        .map_err(|_| Problem::bad_request(format!("sale id must be an integer, got {text:?}")))
}

fn receipt_no(text: &str) -> Result<u64, Problem> {
    text.parse().map_err(|_| {
        Problem::bad_request(format!("receipt number must be an integer, got {text:?}"))
    })
}

/// `POST /api/v1/sales/open/{id}/lines`.
pub(super) async fn add_line(
    State(state): State<AppState>,
    Path(id): Path<String>,
    request: Result<Json<SaleLine>, JsonRejection>,
) -> Response {
    let (desk, id) = match (desk(&state), sale_id(&id)) {
        (Ok(desk), Ok(id)) => (desk, id),
        (Err(answer), _) | (_, Err(answer)) => return answer.into_response(),
    };
    match body(request) {
        Ok(line) => answer(StatusCode::OK, desk.add_line(id, line).await),
        Err(problem) => problem.into_response(),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FinishRequest {
    payments: Vec<Payment>,
}

/// `POST /api/v1/sales/open/{id}/finish` `{"payments": [...]}`.
pub(super) async fn finish(
    State(state): State<AppState>,
    Path(id): Path<String>,
    request: Result<Json<FinishRequest>, JsonRejection>,
) -> Response {
    let (desk, id) = match (desk(&state), sale_id(&id)) {
        (Ok(desk), Ok(id)) => (desk, id),
        (Err(answer), _) | (_, Err(answer)) => return answer.into_response(),
    };
    match body(request) {
        Ok(r) => answer(StatusCode::CREATED, desk.finish_sale(id, r.payments).await),
        Err(problem) => problem.into_response(),
    }
}

/// `POST /api/v1/sales/open/{id}/abort`.
pub(super) async fn abort(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    match (desk(&state), sale_id(&id)) {
        (Ok(desk), Ok(id)) => answer(StatusCode::CREATED, desk.abort_sale(id).await),
        (Err(answer), _) | (_, Err(answer)) => answer.into_response(),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ListParams {
    limit: Option<u32>,
}

/// `GET /api/v1/receipts?limit=`: newest first.
pub(super) async fn receipts(
    State(state): State<AppState>,
    Query(params): Query<ListParams>,
) -> Response {
    let limit = params.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Problem::bad_request(format!("limit must be 1..=500, got {limit}")).into_response();
    }
    match desk(&state) {
        Ok(desk) => answer(StatusCode::OK, desk.receipts(limit).await),
        Err(answer) => answer.into_response(),
    }
}

/// `GET /api/v1/receipts/{n}`.
pub(super) async fn receipt(State(state): State<AppState>, Path(n): Path<String>) -> Response {
    let (desk, n) = match (desk(&state), receipt_no(&n)) {
        (Ok(desk), Ok(n)) => (desk, n),
        (Err(answer), _) | (_, Err(answer)) => return answer.into_response(),
    };
    match desk.receipt(n).await {
        Ok((sale, cancelled_by)) => Json(serde_json::json!({
            "sale": sale,
            "cancelled_by": cancelled_by,
        }))
        .into_response(),
        Err(error) => error.into_response(),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct StornoRequest {
    operator: String,
}

/// `POST /api/v1/receipts/{n}/storno` `{"operator": "..."}`.
pub(super) async fn storno(
    State(state): State<AppState>,
    Path(n): Path<String>,
    request: Result<Json<StornoRequest>, JsonRejection>,
) -> Response {
    let (desk, n) = match (desk(&state), receipt_no(&n)) {
        (Ok(desk), Ok(n)) => (desk, n),
        (Err(answer), _) | (_, Err(answer)) => return answer.into_response(),
    };
    match body(request) {
        Ok(r) => answer(StatusCode::CREATED, desk.storno(n, r.operator).await),
        Err(problem) => problem.into_response(),
    }
}

/// `POST /api/v1/cash/closing`: the daily closing.
pub(super) async fn closing(State(state): State<AppState>) -> Response {
    match desk(&state) {
        Ok(desk) => answer(StatusCode::CREATED, desk.close_day().await),
        Err(answer) => answer.into_response(),
    }
}

fn qr_svg(data: &str) -> String {
    match qrcode::QrCode::with_error_correction_level(data, qrcode::EcLevel::M) {
        Ok(code) => code
            .render::<qrcode::render::svg::Color<'_>>()
            .min_dimensions(220, 220)
            .build(),
        Err(error) => format!(
            "<p>QR code not drawable: {}</p>",
            escape(&error.to_string())
        ),
    }
}

fn time_of(unix: i64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp(unix, 0)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%S.000Z").to_string())
        .unwrap_or_default()
}

/// The receipt as a printable page (KassenSichV § 6): trader, date and
/// times, lines, VAT per rate, payments, transaction number, ERS and TSE
/// serials, signature counter and check value, and the DSFinV-K QR code.
pub(super) fn receipt_html(
    desk: &CashDesk,
    sale: &CashSale,
    cancelled_by: Option<u64>,
    certified: Option<bool>,
) -> String {
    let s = desk.settings();
    let mut html = String::from(
        "<!doctype html><html lang=\"de\"><head><meta charset=\"utf-8\"><title>Beleg</title>\
         <style>body{font-family:monospace;max-width:80mm;margin:1em auto}table{width:100%;border-collapse:collapse}\
         td.n{text-align:right}.mark{border:2px solid;padding:.3em;margin:.5em 0;font-weight:bold}\
         .sig{word-break:break-all;font-size:.8em}</style></head><body>",
    );
    html.push_str(&format!(
        "<h1>{}</h1><p>{}</p>",
        escape(&s.trader_name),
        escape(&s.trader_address)
    ));
    if let Some(n) = &s.tax_number {
        html.push_str(&format!("<p>St.-Nr. {}</p>", escape(n)));
    }
    if let Some(v) = &s.vat_id {
        html.push_str(&format!("<p>USt-IdNr. {}</p>", escape(v)));
    }
    html.push_str(&format!(
        "<p id=\"receipt-no\">Beleg Nr. {} &middot; {}</p><p>Beginn {} &middot; Ende {}</p><p>Bediener {}</p>",
        sale.receipt_no,
        sale.receipt_type.as_str(),
        escape(&sale.started_at),
        escape(&sale.finished_at),
        escape(&sale.operator)
    ));
    if let Some(original) = sale.cancels_receipt_no {
        html.push_str(&format!(
            "<p class=\"mark\" id=\"storno\">STORNO zu Beleg Nr. {original}</p>"
        ));
    }
    if let Some(by) = cancelled_by {
        html.push_str(&format!(
            "<p class=\"mark\">Storniert durch Beleg Nr. {by}</p>"
        ));
    }
    if sale.receipt_type == ReceiptType::AVBelegabbruch {
        html.push_str("<p class=\"mark\">Abgebrochener Vorgang</p>");
    }
    html.push_str("<table id=\"lines\">");
    for line in &sale.lines {
        html.push_str(&format!(
            "<tr><td>{} {} {}</td><td class=\"n\">{} {}</td></tr>",
            format_milli(line.quantity_milli),
            escape(&line.unit),
            escape(&line.text),
            format_cents(line.gross_cents).replace('.', ","),
            vat_letter(line.vat_key)
        ));
    }
    let total: i64 = sale.lines.iter().map(|l| l.gross_cents).sum();
    html.push_str(&format!(
        "<tr><td><b>Summe EUR</b></td><td class=\"n\" id=\"total\"><b>{}</b></td></tr></table>",
        format_cents(total).replace('.', ",")
    ));
    html.push_str("<table id=\"vat\"><tr><td>USt</td><td class=\"n\">Netto</td><td class=\"n\">USt</td><td class=\"n\">Brutto</td></tr>");
    let mut keys: Vec<u16> = sale.lines.iter().map(|l| l.vat_key).collect();
    keys.sort_unstable();
    keys.dedup();
    for key in keys {
        let gross: i64 = sale
            .lines
            .iter()
            .filter(|l| l.vat_key == key)
            .map(|l| l.gross_cents)
            .sum();
        let (net, vat) = split_vat(gross, key).unwrap_or((gross, 0));
        let rate = vat_rate_basis_points(key).unwrap_or(0);
        html.push_str(&format!(
            "<tr><td>{} {},{:02} %</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            vat_letter(key),
            rate / 100,
            rate % 100,
            format_cents(net).replace('.', ","),
            format_cents(vat).replace('.', ","),
            format_cents(gross).replace('.', ",")
        ));
    }
    html.push_str("</table><table id=\"payments\">");
    for p in &sale.payments {
        html.push_str(&format!(
            "<tr><td>{}</td><td class=\"n\">{}</td></tr>",
            p.kind.as_str(),
            format_cents(p.amount_cents).replace('.', ",")
        ));
    }
    html.push_str("</table>");
    html.push_str(&format!(
        "<p>Kasse (Seriennr.) {}</p>",
        escape(&sale.cash_point)
    ));
    match &sale.tse {
        Some(tse) => {
            html.push_str(&format!(
                "<div id=\"tse\"><p>TSE-Seriennr. {}</p><p>TSE-Transaktion {}</p>\
                 <p>Signaturzähler {}</p><p>TSE-Start {}</p><p>TSE-Ende {}</p>\
                 <p>{} &middot; {}</p><p class=\"sig\">Prüfwert {}</p></div>",
                escape(&tse.serial_hex),
                tse.transaction_number,
                tse.signature_counter,
                time_of(tse.start_unix),
                time_of(tse.finish_unix),
                escape(&tse.signature_algorithm),
                escape(&tse.time_format),
                escape(&tse.signature_base64),
            ));
            html.push_str(&format!(
                "<div id=\"qr\" data-qr=\"{}\">{}</div>",
                escape(&tse.qr_code),
                qr_svg(&tse.qr_code)
            ));
            // The TSE that signed decides; older records without the flag
            // fall back to the TSE in use now.
            if tse.certified.or(certified) == Some(false) {
                html.push_str(
                    "<p class=\"mark\" id=\"not-certified\">Software-TSE, nicht zertifiziert: \
                     kein gültiger Beleg im Sinne der KassenSichV</p>",
                );
            }
        }
        None => html.push_str(&format!(
            "<p class=\"mark\" id=\"tse-outage\">TSE ausgefallen: Beleg ohne Signatur ({})</p>",
            escape(sale.tse_error.as_deref().unwrap_or("unbekannt"))
        )),
    }
    html.push_str("</body></html>");
    html
}

fn vat_letter(key: u16) -> &'static str {
    match key {
        1 => "A",
        2 => "B",
        3 => "C",
        4 => "D",
        _ => "E",
    }
}

fn format_milli(milli: i64) -> String {
    let sign = if milli < 0 { "-" } else { "" };
    let abs = milli.unsigned_abs();
    let (whole, frac) = (abs / 1000, abs % 1000);
    if frac == 0 {
        format!("{sign}{whole}")
    } else {
        format!("{sign}{whole},{frac:03}")
            .trim_end_matches('0')
            .to_owned()
    }
}

/// `GET /api/v1/receipts/{n}/print`: the printable receipt.
pub(super) async fn print(State(state): State<AppState>, Path(n): Path<String>) -> Response {
    let (desk, n) = match (desk(&state), receipt_no(&n)) {
        (Ok(desk), Ok(n)) => (desk, n),
        (Err(answer), _) | (_, Err(answer)) => return answer.into_response(),
    };
    match desk.receipt(n).await {
        Ok((sale, cancelled_by)) => {
            let certified = desk.status().info.map(|i| i.certified);
            Html(receipt_html(desk, &sale, cancelled_by, certified)).into_response()
        }
        Err(error) => error.into_response(),
    }
}
