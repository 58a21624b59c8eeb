//! The fiscal side of central's API: cash sales with the result of the
//! signature check, TSE outages, the TSEs, and the two exports an auditor
//! asks for: DSFinV-K (a ZIP of index.xml and the CSV files) for a cash
//! point and a range of business days, and the TSE's TAR export (TR-03151)
//! assembled from the log messages central has verified.

use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use chrono::NaiveDate;
use serde::Deserialize;
use valeo_process::problem::Problem;

use super::openapi::records::TseOutageSchema;
use super::openapi::{PROBLEM_JSON, ProblemSchema};
use super::{ApiQuery, AppState, INTERNAL_DETAIL, json_or_problem, page_limit, query};
use crate::dsfinvk::{self, CashRegister, ClosingExport, Company, TseMaster};
use crate::store::{CashSaleFilter, CashSaleView, TseView};

/// The operations of this module, for the API's document.
#[derive(Debug, utoipa::OpenApi)]
#[openapi(paths(list_sales, get_sale, outages, tses, tse_export, dsfinvk_export))]
pub(super) struct FiscalApi;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct SaleParams {
    /// Only this box's sales.
    #[param(nullable = false, example = "yard-1")]
    device_id: Option<String>,
    /// Only this cash point's sales.
    #[param(nullable = false, example = "KASSE-1")]
    cash_point: Option<String>,
    /// `YYYY-MM-DD` or RFC 3339, inclusive; compared with `finished_at`.
    #[param(nullable = false, example = "2026-11-01")]
    from: Option<String>,
    /// `YYYY-MM-DD` or RFC 3339, exclusive.
    #[param(nullable = false, example = "2026-12-01")]
    to: Option<String>,
    /// Page size.
    #[param(nullable = false, minimum = 1, maximum = 500, default = 50)]
    limit: Option<u32>,
    /// Sales to skip.
    #[param(nullable = false, minimum = 0, default = 0)]
    offset: Option<u64>,
}

/// List cash sales
///
/// Newest first, each with `verification`: `valid`, `unsigned: …` during a
/// TSE outage, or `invalid: …`.
#[utoipa::path(
    get,
    path = "/api/v1/cash-sales",
    tag = "fiscal",
    params(SaleParams),
    responses(
        (status = 200, description = "Newest first.", body = Vec<CashSaleView>),
        (status = 400, description = "A query parameter is unknown, malformed or out of bounds.",
            body = ProblemSchema, content_type = PROBLEM_JSON),
        (status = 500, description = "The sales could not be read.",
            body = ProblemSchema, content_type = PROBLEM_JSON),
    )
)]
pub(super) async fn list_sales(
    State(state): State<AppState>,
    ApiQuery(params): ApiQuery<SaleParams>,
) -> Response {
    let limit = match page_limit(params.limit) {
        Ok(limit) => limit,
        Err(problem) => return problem.into_response(),
    };
    let filter = CashSaleFilter {
        device_id: params.device_id,
        cash_point: params.cash_point,
        from: params.from,
        to: params.to,
        limit,
        offset: params.offset.unwrap_or(0).min(i64::MAX as u64),
    };
    json_or_problem(query(&state, move |store| store.cash_sales(&filter)).await)
}

/// One cash sale
#[utoipa::path(
    get,
    path = "/api/v1/cash-sales/{id}",
    tag = "fiscal",
    params(("id" = i64, Path, description = "The sale's id.", example = 17)),
    responses(
        (status = 200, description = "The sale with its verification.", body = CashSaleView),
        (status = 400, description = "The id is not an integer.",
            body = ProblemSchema, content_type = PROBLEM_JSON),
        (status = 404, description = "No sale with this id.",
            body = ProblemSchema, content_type = PROBLEM_JSON),
        (status = 500, description = "The sale could not be read.",
            body = ProblemSchema, content_type = PROBLEM_JSON),
    )
)]
pub(super) async fn get_sale(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    let Ok(id) = id.parse::<i64>() else {
        return Problem::bad_request(format!("cash sale id must be an integer, got {id:?}"))
            .into_response();
    };
    match query(&state, move |store| store.cash_sale(id)).await {
        Ok(Some(sale)) => axum::Json(sale).into_response(),
        Ok(None) => Problem::not_found(format!("no cash sale {id}")).into_response(),
        Err(problem) => problem.into_response(),
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct DeviceParams {
    /// Only this box's outages.
    #[param(nullable = false, example = "yard-1")]
    device_id: Option<String>,
}

/// List TSE outages
///
/// The newest 1000 first, of one box or all; an outage without `ended_at`
/// still lasts.
#[utoipa::path(
    get,
    path = "/api/v1/tse-outages",
    tag = "fiscal",
    params(DeviceParams),
    responses(
        (status = 200, description = "Newest first, at most 1000.", body = Vec<TseOutageSchema>),
        (status = 400, description = "A query parameter is unknown or malformed.",
            body = ProblemSchema, content_type = PROBLEM_JSON),
        (status = 500, description = "The outages could not be read.",
            body = ProblemSchema, content_type = PROBLEM_JSON),
    )
)]
pub(super) async fn outages(
    State(state): State<AppState>,
    ApiQuery(params): ApiQuery<DeviceParams>,
) -> Response {
    json_or_problem(
        query(&state, move |store| {
            store.tse_outages(params.device_id.as_deref())
        })
        .await,
    )
}

/// List TSEs
///
/// Every TSE a box described, by serial.
#[utoipa::path(
    get,
    path = "/api/v1/tses",
    tag = "fiscal",
    responses(
        (status = 200, description = "By serial.", body = Vec<TseView>),
        (status = 500, description = "The TSEs could not be read.",
            body = ProblemSchema, content_type = PROBLEM_JSON),
    )
)]
pub(super) async fn tses(State(state): State<AppState>) -> Response {
    json_or_problem(query(&state, |store| store.tses()).await)
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct RangeParams {
    /// First day, `YYYY-MM-DD`.
    #[param(format = Date, example = "2026-11-01")]
    from: String,
    /// Last day, `YYYY-MM-DD`, inclusive; at most ten years after `from`.
    #[param(format = Date, example = "2026-11-30")]
    to: String,
}

fn days(params: &RangeParams) -> Result<(NaiveDate, NaiveDate), Problem> {
    let parse = |name: &str, text: &str| {
        NaiveDate::parse_from_str(text, "%Y-%m-%d").map_err(|_| {
            Problem::bad_request(format!("{name} must be a date YYYY-MM-DD, got {text:?}"))
        })
    };
    let (from, to) = (parse("from", &params.from)?, parse("to", &params.to)?);
    if to < from {
        return Err(Problem::bad_request("to is before from"));
    }
    if (to - from).num_days() > 3660 {
        return Err(Problem::bad_request("at most ten years per export"));
    }
    Ok((from, to))
}

/// TSE export (TAR)
///
/// The TR-03151 TAR export of the TSE's log messages with a log time in
/// those days (UTC), with its certificate and `info.csv`: only messages of
/// sales whose signatures checked out.
#[utoipa::path(
    get,
    path = "/api/v1/tses/{serial}/export",
    tag = "fiscal",
    params(
        ("serial" = String, Path, description = "The TSE's serial (hex of the SHA-256 of its public key).",
            example = "5a2f0f5d0c1e8c3b6f5e2b1a0d9c8b7a6f5e4d3c2b1a09f8e7d6c5b4a3928170"),
        RangeParams,
    ),
    responses(
        (status = 200, description = "The TAR file.", content_type = "application/x-tar",
            headers(("Content-Disposition" = String,
                description = "`attachment; filename=\"Export_<serial>_<from>_<to>.tar\"`"))),
        (status = 400, description = "`from` or `to` is missing or not a date, `to` is before `from`, or the range is longer than ten years.",
            body = ProblemSchema, content_type = PROBLEM_JSON),
        (status = 404, description = "No TSE with this serial.",
            body = ProblemSchema, content_type = PROBLEM_JSON),
        (status = 500, description = "The export could not be written.",
            body = ProblemSchema, content_type = PROBLEM_JSON),
    )
)]
pub(super) async fn tse_export(
    State(state): State<AppState>,
    Path(serial): Path<String>,
    ApiQuery(params): ApiQuery<RangeParams>,
) -> Response {
    let (from, to) = match days(&params) {
        Ok(days) => days,
        Err(problem) => return problem.into_response(),
    };
    let start = from
        .and_hms_opt(0, 0, 0)
        .map(|t| t.and_utc().timestamp())
        .unwrap_or(0);
    let end = to
        .succ_opt()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc().timestamp())
        .unwrap_or(i64::MAX);
    let key = serial.clone();
    let read = query(&state, move |store| {
        Ok((store.tse(&key)?, store.tse_logs(&key, start, end)?))
    })
    .await;
    let (description, logs) = match read {
        Ok((Some(description), logs)) => (description, logs),
        Ok((None, _)) => {
            return Problem::not_found(format!("no TSE with serial {serial:?}")).into_response();
        }
        Err(problem) => return problem.into_response(),
    };
    let certificate = description
        .certificate_base64
        .as_deref()
        .and_then(|c| base64::engine::general_purpose::STANDARD.decode(c).ok())
        .unwrap_or_default();
    let certificate_name = format!("{}_X509.der", description.serial_hex.to_ascii_lowercase());
    let info = format!(
        "\"description:\",\"{}\",\"manufacturer:\",\"{}\",\"version:\",\"{}\"\n",
        description.description.replace('"', "'"),
        description.manufacturer.replace('"', "'"),
        description.version.replace('"', "'")
    );
    match valeo_drivers::tse::export::write_export(&logs, (&certificate_name, &certificate), &info)
    {
        Ok(tar) => (
            [
                (header::CONTENT_TYPE, "application/x-tar".to_owned()),
                (
                    header::CONTENT_DISPOSITION,
                    format!(
                        "attachment; filename=\"Export_{}_{}_{}.tar\"",
                        description.serial_hex, params.from, params.to
                    ),
                ),
            ],
            tar,
        )
            .into_response(),
        Err(error) => Problem::internal(&error, INTERNAL_DETAIL).into_response(),
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct DsfinvkParams {
    /// The cash point (KASSE_SERIENNR).
    #[param(example = "KASSE-1")]
    cash_point: String,
    /// The box; needed when two boxes use the same cash point name.
    #[param(nullable = false, example = "yard-1")]
    device_id: Option<String>,
    /// First business day, `YYYY-MM-DD`.
    #[param(format = Date, example = "2026-11-01")]
    from: String,
    /// Last business day, `YYYY-MM-DD`, inclusive; at most ten years after `from`.
    #[param(format = Date, example = "2026-11-30")]
    to: String,
}

/// DSFinV-K export (ZIP)
///
/// The DSFinV-K export (index.xml and the CSV files) of every closing of
/// the cash point whose business day is in the range, with the trader data
/// of central's `[fiscal]` configuration.
#[utoipa::path(
    get,
    path = "/api/v1/dsfinvk",
    tag = "fiscal",
    params(DsfinvkParams),
    responses(
        (status = 200, description = "The ZIP file.", content_type = "application/zip",
            headers(("Content-Disposition" = String,
                description = "`attachment; filename=\"DSFinV-K_<cash point>_<from>_<to>.zip\"`"))),
        (status = 400, description = "A parameter is missing, unknown or not a date, `to` is before `from`, or the range is longer than ten years.",
            body = ProblemSchema, content_type = PROBLEM_JSON),
        (status = 404, description = "The cash point has no closing in the range.",
            body = ProblemSchema, content_type = PROBLEM_JSON),
        (status = 409, description = "Central has no `[fiscal]` section, or several boxes use the cash point and `device_id` is missing.",
            body = ProblemSchema, content_type = PROBLEM_JSON),
        (status = 500, description = "The export could not be written.",
            body = ProblemSchema, content_type = PROBLEM_JSON),
    )
)]
pub(super) async fn dsfinvk_export(
    State(state): State<AppState>,
    ApiQuery(params): ApiQuery<DsfinvkParams>,
) -> Response {
    let range = RangeParams {
        from: params.from.clone(),
        to: params.to.clone(),
    };
    if let Err(problem) = days(&range) {
        return problem.into_response();
    }
    let Some(fiscal) = state.fiscal.clone() else {
        return Problem::new(
            axum::http::StatusCode::CONFLICT,
            "central has no [fiscal] section (trader name and address) to export with",
        )
        .into_response();
    };
    let (cash_point, from, to) = (
        params.cash_point.clone(),
        params.from.clone(),
        params.to.clone(),
    );
    let device = params.device_id.clone();
    let read = query(&state, move |store| {
        let devices = store.devices_of_cash_point(&cash_point)?;
        let device = match device {
            Some(device) => Some(device),
            None if devices.len() > 1 => return Ok(Err(devices)),
            None => devices.into_iter().next(),
        };
        let closings = match &device {
            Some(device) => store.closings_with_sales(device, &cash_point, &from, &to)?,
            None => Vec::new(),
        };
        Ok(Ok((closings, store.tses()?, device)))
    })
    .await;
    let (closings, tses, device) = match read {
        Ok(Ok(read)) => read,
        Ok(Err(devices)) => {
            return Problem::new(
                axum::http::StatusCode::CONFLICT,
                format!(
                    "cash point {:?} is used by several boxes ({}); give device_id",
                    params.cash_point,
                    devices.join(", ")
                ),
            )
            .into_response();
        }
        Err(problem) => return problem.into_response(),
    };
    if closings.is_empty() {
        return Problem::not_found(format!(
            "cash point {:?} has no closing between {} and {}",
            params.cash_point, params.from, params.to
        ))
        .into_response();
    }
    let tses: Vec<TseMaster> = tses
        .into_iter()
        .filter(|t| {
            t.description.cash_point == params.cash_point && Some(&t.device_id) == device.as_ref()
        })
        .enumerate()
        .map(|(i, t)| TseMaster {
            tse_id: i as u64 + 1,
            serial_hex: t.description.serial_hex,
            signature_algorithm: t.description.signature_algorithm,
            time_format: t.description.time_format,
            pd_encoding: "UTF-8".into(),
            public_key_base64: t.description.public_key_base64,
            certificate_base64: t.description.certificate_base64.unwrap_or_default(),
        })
        .collect();
    let company = Company {
        name: fiscal.company_name.clone(),
        street: fiscal.street.clone(),
        zip: fiscal.zip.clone(),
        city: fiscal.city.clone(),
        country: fiscal.country.clone(),
        tax_number: fiscal.tax_number.clone(),
        vat_id: fiscal.vat_id.clone(),
    };
    let register = CashRegister {
        serial: params.cash_point.clone(),
        brand: fiscal.register_brand.clone(),
        model: fiscal.register_model.clone(),
        software_brand: "Valeo Edge".into(),
        software_version: state.version.into(),
        base_currency: "EUR".into(),
    };
    let exports: Vec<ClosingExport> = closings
        .into_iter()
        .map(|(closing, sales)| ClosingExport {
            closing,
            company: company.clone(),
            register: register.clone(),
            tses: tses.clone(),
            sales,
        })
        .collect();
    let zipped = dsfinvk::write(&exports).and_then(|files| dsfinvk::zip(&files));
    match zipped {
        Ok(bytes) => (
            [
                (header::CONTENT_TYPE, "application/zip".to_owned()),
                (
                    header::CONTENT_DISPOSITION,
                    format!(
                        "attachment; filename=\"DSFinV-K_{}_{}_{}.zip\"",
                        params.cash_point.replace(' ', "_"),
                        params.from,
                        params.to
                    ),
                ),
            ],
            bytes,
        )
            .into_response(),
        Err(error) => Problem::internal(&error, INTERNAL_DETAIL).into_response(),
    }
}
