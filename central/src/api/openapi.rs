//! The OpenAPI 3.1 document of central's API, generated from the handlers'
//! `#[utoipa::path]` annotations and the types' `ToSchema` derives, and
//! served at `GET /api/v1/openapi.json` (public, like the docs viewer page
//! that renders it).
//!
//! [`ApiDoc`] holds what is global: the title and version, the security
//! schemes (a bearer token or the session cookie) applied to every
//! operation that does not say otherwise, and the tags. [`document`] merges
//! the sub-documents of the API's modules into it once, and completes every
//! operation with the answers the layers around the handlers give (401,
//! 403, the request timeout's 503).
//!
//! [`records`] describes the payload types of `valeo_records`, which has no
//! OpenAPI dependency, for the views that embed them.

use std::sync::LazyLock;

use axum::Router;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use utoipa::OpenApi as _;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::tag::Tag;
use utoipa::openapi::{Components, RefOr, ResponseBuilder};
use valeo_process::problem::Problem;

use super::{AppState, INTERNAL_DETAIL};

/// The media type of every error answer (RFC 9457).
pub const PROBLEM_JSON: &str = "application/problem+json";

/// The schema of every error answer.
pub use super::auth::ProblemSchema;

/// The order of the tags in the document; a tag not named here comes
/// after these.
const TAG_ORDER: &[&str] = &[
    "auth",
    "users",
    "tokens",
    "audit",
    "weighings",
    "delivery-notes",
    "stock",
    "reports",
    "master-data",
    "sites",
    "partners",
    "articles",
    "vehicles",
    "locations",
    "lots",
    "contracts",
    "devices",
    "field",
    "fiscal",
    "events",
    "operations",
    "docs",
];

/// Global parts of the document: info, security, and the tags no other
/// module describes; the other modules describe their own.
#[derive(Debug, utoipa::OpenApi)]
#[openapi(
    info(
        title = "Valeo Edge central API",
        version = crate::VERSION,
        description = "Central's HTTP API: the weighing tickets the edge boxes \
            recorded, master data for the boxes, delivery notes, stock and \
            reports, the boxes' field devices and commands, cash sales with \
            their TSE checks and fiscal exports, integration events and \
            webhooks, users and API tokens.\n\n\
            Authenticate with `Authorization: Bearer <token>` (a JWT from \
            `POST /api/v1/auth/login` or an API token), or with the session \
            cookie `valeo_session` set by the login; a session must also send \
            its CSRF token in `X-CSRF-Token` on POST, PUT, PATCH and DELETE.\n\n\
            Errors are RFC 9457 problem documents (`application/problem+json`): \
            a client error's `detail` names the field or parameter that was \
            wrong; a server error's says only that the request failed."
    ),
    paths(openapi_json),
    components(schemas(ProblemSchema)),
    modifiers(&SecuritySchemes),
    security(("bearer" = []), ("session" = [])),
    tags(
        (name = "fiscal", description = "Cash sales with the result of their signature check, \
            TSE outages, the TSEs, and the DSFinV-K and TSE (TR-03151) exports."),
        (name = "events", description = "Integration events (what changed, in order) and the \
            webhooks they are delivered to, with every delivery attempt."),
        (name = "docs", description = "This document."),
    )
)]
pub struct ApiDoc;

/// Adds the security schemes the global requirement names.
struct SecuritySchemes;

impl utoipa::Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Components::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A JWT from `POST /api/v1/auth/login`, or an API token from \
                         `POST /api/v1/tokens`.",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                "valeo_session",
                "The session cookie the login sets. Unsafe methods (POST, PUT, PATCH, \
                 DELETE) must also send the session's CSRF token in the `X-CSRF-Token` \
                 header, or they are refused with 403.",
            ))),
        );
    }
}

/// The sub-documents of the API's modules, merged into [`ApiDoc`].
fn parts() -> Vec<utoipa::openapi::OpenApi> {
    vec![
        super::CoreApi::openapi(),
        super::auth::AuthApi::openapi(),
        super::business::BusinessApi::openapi(),
        super::events::EventsApi::openapi(),
        super::field::FieldApi::openapi(),
        super::fiscal::FiscalApi::openapi(),
    ]
}

/// The whole document, built once.
pub fn document() -> utoipa::openapi::OpenApi {
    static DOCUMENT: LazyLock<utoipa::openapi::OpenApi> = LazyLock::new(build);
    DOCUMENT.clone()
}

fn build() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    for part in parts() {
        doc.merge(part);
    }
    // A module's document may name its own security requirement and tags;
    // the global ones are those of `ApiDoc`.
    doc.security = ApiDoc::openapi().security;
    complete_responses(&mut doc);
    keep_used_tags(&mut doc);
    doc
}

/// Answers the layers around the handlers give, added to every operation
/// that does not describe them itself: 401 and 403 from authentication
/// (not on public operations) and 503 from the request timeout.
fn complete_responses(doc: &mut utoipa::openapi::OpenApi) {
    let problem = |description: &str| {
        ResponseBuilder::new()
            .description(description)
            .content(
                PROBLEM_JSON,
                utoipa::openapi::ContentBuilder::new()
                    .schema(Some(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(
                        <ProblemSchema as utoipa::ToSchema>::name(),
                    ))))
                    .build(),
            )
            .build()
    };
    let unauthorized = problem("No valid bearer token or session.");
    let forbidden = problem(
        "The caller's role lacks the permission this operation needs, or a \
         session's unsafe request came without its CSRF token.",
    );
    let timeout = ResponseBuilder::new()
        .description("The request took longer than central's `request_timeout_ms`; no body.")
        .build();
    let global_security = doc.security.clone();
    for item in doc.paths.paths.values_mut() {
        for operation in operations_mut(item) {
            let public = operation
                .security
                .as_ref()
                .or(global_security.as_ref())
                .is_none_or(|requirements| {
                    requirements.is_empty()
                        || requirements.iter().any(|r| {
                            *r == utoipa::openapi::security::SecurityRequirement::default()
                        })
                });
            let responses = &mut operation.responses.responses;
            if !public {
                responses
                    .entry("401".into())
                    .or_insert_with(|| RefOr::T(unauthorized.clone()));
                responses
                    .entry("403".into())
                    .or_insert_with(|| RefOr::T(forbidden.clone()));
            }
            responses
                .entry("503".into())
                .or_insert_with(|| RefOr::T(timeout.clone()));
        }
    }
}

/// The operations of a path item, whatever their method.
fn operations_mut(
    item: &mut utoipa::openapi::PathItem,
) -> impl Iterator<Item = &mut utoipa::openapi::path::Operation> {
    [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
        &mut item.options,
        &mut item.head,
        &mut item.patch,
        &mut item.trace,
    ]
    .into_iter()
    .filter_map(Option::as_mut)
}

/// The tags operations use, once each, in [`TAG_ORDER`], with the
/// description of the first document that gave one.
fn keep_used_tags(doc: &mut utoipa::openapi::OpenApi) {
    let mut used: Vec<String> = Vec::new();
    for item in doc.paths.paths.values_mut() {
        for operation in operations_mut(item) {
            for tag in operation.tags.iter().flatten() {
                if !used.contains(tag) {
                    used.push(tag.clone());
                }
            }
        }
    }
    let rank = |name: &str| {
        TAG_ORDER
            .iter()
            .position(|t| *t == name)
            .unwrap_or(TAG_ORDER.len())
    };
    used.sort_by_key(|name| rank(name));
    let described = doc.tags.take().unwrap_or_default();
    let tags = used
        .into_iter()
        .map(|name| {
            described
                .iter()
                .find(|t| t.name == name && t.description.is_some())
                .cloned()
                .unwrap_or_else(|| Tag::new(name))
        })
        .collect();
    doc.tags = Some(tags);
}

/// `GET /api/v1/openapi.json`, public.
pub fn routes() -> Router<AppState> {
    Router::new().route("/api/v1/openapi.json", get(openapi_json))
}

/// This document.
#[utoipa::path(
    get,
    path = "/api/v1/openapi.json",
    tag = "docs",
    operation_id = "get_openapi_document",
    security(()),
    responses(
        (status = 200, description = "The OpenAPI 3.1 document of this API.",
            body = serde_json::Value, content_type = "application/json"),
        (status = 500, description = "The document could not be written.",
            body = ProblemSchema, content_type = PROBLEM_JSON),
    )
)]
async fn openapi_json() -> Response {
    static JSON: LazyLock<Result<String, String>> =
        LazyLock::new(|| document().to_json().map_err(|e| e.to_string()));
    match &*JSON {
        Ok(json) => ([(header::CONTENT_TYPE, "application/json")], json.as_str()).into_response(),
        Err(error) => Problem::internal(error, INTERNAL_DETAIL).into_response(),
    }
}

/// Schemas of the `valeo_records` payloads that central's views embed.
/// They mirror the serde form of those types field by field; the tests
/// below compare them with the real types' JSON so they cannot drift.
pub mod records {
    use serde::Serialize;
    use utoipa::ToSchema;

    /// A command's action (`kind` says which).
    #[derive(Debug, Serialize, ToSchema)]
    #[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
    #[schema(as = CommandAction, example = json!({
        "kind": "modbus_write", "device": "silo-1", "point": "fill_valve", "value": true
    }))]
    pub enum CommandActionSchema {
        /// Write a read-write point of a Modbus device on one of the box's lines.
        ModbusWrite {
            /// The Modbus device, as the box's configuration names it.
            #[schema(
                min_length = 1,
                max_length = 128,
                pattern = r"^[^\u0000-\u001F\u007F-\u009F]*$"
            )]
            device: String,
            /// The point of that device.
            #[schema(
                min_length = 1,
                max_length = 128,
                pattern = r"^[^\u0000-\u001F\u007F-\u009F]*$"
            )]
            point: String,
            /// A boolean, number or string, converted by the point's data type.
            #[schema(schema_with = scalar)]
            value: serde_json::Value,
        },
    }

    /// A boolean, number or string.
    fn scalar() -> utoipa::openapi::Object {
        use utoipa::openapi::schema::{SchemaType, Type};
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(SchemaType::from_iter([
                Type::Boolean,
                Type::Number,
                Type::String,
            ]))
            .build()
    }

    /// BON_TYP of a receipt.
    #[derive(Debug, Serialize, ToSchema)]
    #[schema(as = ReceiptType)]
    pub enum ReceiptTypeSchema {
        Beleg,
        AVBelegabbruch,
        AVTraining,
    }

    /// One line of a receipt.
    #[derive(Debug, Serialize, ToSchema)]
    #[schema(as = SaleLine)]
    pub struct SaleLineSchema {
        pub text: String,
        #[schema(nullable = false)]
        pub article_id: Option<String>,
        /// Quantity in thousandths: 2.5 kg = 2500.
        pub quantity_milli: i64,
        /// Unit of the quantity, e.g. `kg`, `Stk`.
        pub unit: String,
        /// Gross price of one unit, cents.
        pub unit_price_cents: i64,
        /// Gross amount of the line, cents (negative on a storno).
        pub gross_cents: i64,
        /// DSFinV-K UST_SCHLUESSEL (1–8).
        pub vat_key: u16,
    }

    /// Payment types (DSFinV-K ZAHLART_TYP).
    #[derive(Debug, Serialize, ToSchema)]
    #[schema(as = PaymentType)]
    pub enum PaymentTypeSchema {
        Bar,
        Unbar,
        ECKarte,
        Kreditkarte,
        ElZahlungsdienstleister,
        Guthabenkarte,
    }

    /// One payment of a receipt.
    #[derive(Debug, Serialize, ToSchema)]
    #[schema(as = Payment)]
    pub struct PaymentSchema {
        #[serde(rename = "type")]
        pub kind: PaymentTypeSchema,
        pub amount_cents: i64,
    }

    /// The TSE's part of a receipt.
    #[derive(Debug, Serialize, ToSchema)]
    #[schema(as = SaleTse)]
    pub struct SaleTseSchema {
        pub serial_hex: String,
        pub transaction_number: u64,
        /// Signature counter of the finish log.
        pub signature_counter: u64,
        /// Log time of the start log, Unix seconds.
        pub start_unix: i64,
        /// Log time of the finish log, Unix seconds.
        pub finish_unix: i64,
        /// The finish log's signature, base64 of `r‖s`.
        pub signature_base64: String,
        pub public_key_base64: String,
        pub signature_algorithm: String,
        pub time_format: String,
        /// Every log message of the transaction, DER base64; empty when the
        /// TSE does not give them out.
        pub log_messages_base64: Vec<String>,
        /// The DSFinV-K receipt QR code content (`V0;…`).
        pub qr_code: String,
        /// Whether the signing TSE said it is certified.
        #[schema(nullable = false)]
        pub certified: Option<bool>,
    }

    /// A finished cash sale as the box recorded it.
    #[derive(Debug, Serialize, ToSchema)]
    #[schema(as = CashSale)]
    pub struct CashSaleSchema {
        /// The ERS serial (KASSE_SERIENNR, the TSE client id).
        pub cash_point: String,
        /// BON_NR: per cash point, from 1, without gaps.
        pub receipt_no: u64,
        pub receipt_type: ReceiptTypeSchema,
        /// Set on a storno: the receipt it reverses.
        #[schema(nullable = false)]
        pub cancels_receipt_no: Option<u64>,
        /// RFC 3339 UTC, the box's clock.
        pub started_at: String,
        /// RFC 3339 UTC, the box's clock.
        pub finished_at: String,
        pub operator: String,
        /// The weighing ticket the sale belongs to.
        #[schema(nullable = false)]
        pub ticket_no: Option<u64>,
        #[schema(nullable = false)]
        pub customer: Option<String>,
        pub lines: Vec<SaleLineSchema>,
        pub payments: Vec<PaymentSchema>,
        /// `processType` exactly as given to the TSE.
        pub process_type: String,
        /// `processData` exactly as given to the TSE.
        pub process_data: String,
        /// Missing when the TSE failed.
        #[schema(nullable = false)]
        pub tse: Option<SaleTseSchema>,
        /// Why the TSE did not sign.
        #[schema(nullable = false)]
        pub tse_error: Option<String>,
    }

    /// A TSE outage at a cash point; `ended_at` is missing while it lasts.
    #[derive(Debug, Serialize, ToSchema)]
    #[schema(as = TseOutage)]
    pub struct TseOutageSchema {
        pub outage_id: String,
        pub cash_point: String,
        #[schema(nullable = false)]
        pub tse_serial_hex: Option<String>,
        /// RFC 3339.
        pub started_at: String,
        /// RFC 3339.
        #[schema(nullable = false)]
        pub ended_at: Option<String>,
        pub cause: String,
    }

    /// The TSE a cash point signs with, as its box described it.
    #[derive(Debug, Serialize, ToSchema)]
    #[schema(as = TseDescription)]
    pub struct TseDescriptionSchema {
        pub cash_point: String,
        /// Hex of the SHA-256 of the public key.
        pub serial_hex: String,
        pub public_key_base64: String,
        pub signature_algorithm: String,
        pub time_format: String,
        #[schema(nullable = false)]
        pub certificate_base64: Option<String>,
        /// False for the software TSE.
        pub certified: bool,
        pub description: String,
        pub manufacturer: String,
        pub version: String,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn json_document() -> Value {
        serde_json::from_str(&document().to_json().unwrap()).unwrap()
    }

    const METHODS: [&str; 8] = [
        "get", "put", "post", "delete", "options", "head", "patch", "trace",
    ];

    /// `(METHOD, path, operation)` of every operation in the document.
    fn operations(doc: &Value) -> Vec<(String, String, Value)> {
        let mut out = Vec::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for method in METHODS {
                if let Some(operation) = item.get(method) {
                    out.push((method.to_uppercase(), path.clone(), operation.clone()));
                }
            }
        }
        out
    }

    /// The schema a `$ref` points at, or the schema itself.
    fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
        match schema["$ref"].as_str() {
            Some(reference) => {
                let name = reference.trim_start_matches("#/components/schemas/");
                &doc["components"]["schemas"][name]
            }
            None => schema,
        }
    }

    #[test]
    fn the_document_is_openapi_3_1_json_with_title_version_and_security() {
        let doc = json_document();
        assert!(
            doc["openapi"].as_str().unwrap().starts_with("3.1"),
            "{}",
            doc["openapi"]
        );
        assert_eq!(doc["info"]["title"], "Valeo Edge central API");
        assert_eq!(doc["info"]["version"], crate::VERSION);
        let schemes = &doc["components"]["securitySchemes"];
        assert_eq!(schemes["bearer"]["type"], "http");
        assert_eq!(schemes["bearer"]["scheme"], "bearer");
        assert_eq!(schemes["session"]["type"], "apiKey");
        assert_eq!(schemes["session"]["in"], "cookie");
        assert_eq!(schemes["session"]["name"], "valeo_session");
        assert_eq!(doc["security"], json!([{"bearer": []}, {"session": []}]));
        assert_eq!(
            doc["paths"]["/api/v1/openapi.json"]["get"]["security"],
            json!([{}]),
            "the document itself is public"
        );
        let tags: Vec<&str> = doc["tags"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap())
            .collect();
        let mut unique = tags.clone();
        unique.dedup();
        assert_eq!(tags, unique, "each tag once");
    }

    /// The route table of the authorization matrix is kept equal to the
    /// routes declared in the source (its own tests read the files), so
    /// it is the list of what central serves.
    #[test]
    fn every_api_route_is_documented_with_its_method_and_nothing_else_is() {
        let doc = json_document();
        let documented: Vec<(String, String)> = operations(&doc)
            .into_iter()
            .map(|(method, path, _)| (method, path))
            .collect();
        let undocumented = [("GET", "/api/v1/docs")];
        let routes: Vec<(&str, &str)> = crate::auth::policy::ROUTES
            .iter()
            .map(|rule| (rule.method, rule.pattern))
            .filter(|(_, pattern)| pattern.starts_with("/api/v1/"))
            .filter(|route| !undocumented.contains(route))
            .collect();
        assert!(routes.len() > 20, "{routes:?}");
        let missing: Vec<String> = routes
            .iter()
            .filter(|(m, p)| !documented.iter().any(|(dm, dp)| dm == m && dp == p))
            .map(|(m, p)| format!("{m} {p}"))
            .collect();
        assert!(
            missing.is_empty(),
            "routes missing in the document: {missing:?}"
        );
        let served = |m: &str, p: &str| {
            crate::auth::policy::ROUTES
                .iter()
                .any(|rule| rule.method == m && rule.pattern == p)
        };
        let phantom: Vec<String> = documented
            .iter()
            .filter(|(m, p)| !served(m, p))
            .map(|(m, p)| format!("{m} {p}"))
            .collect();
        assert!(phantom.is_empty(), "documented but not served: {phantom:?}");
    }

    #[test]
    fn every_operation_has_a_success_problem_errors_parameters_and_examples() {
        let doc = json_document();
        let mut faults = Vec::new();
        for (method, path, operation) in operations(&doc) {
            let at = format!("{method} {path}");
            let responses = operation["responses"].as_object().unwrap();
            if !responses.keys().any(|code| code.starts_with('2')) {
                faults.push(format!("{at}: no 2xx answer"));
            }
            for (code, response) in responses {
                let Some(content) = response["content"].as_object() else {
                    continue;
                };
                let error = code.starts_with('4') || code.starts_with('5');
                // Health says why it is degraded in its own body.
                let own_body = path == "/health" && code == "503";
                if error && !own_body && !content.contains_key(PROBLEM_JSON) {
                    faults.push(format!("{at}: {code} is not {PROBLEM_JSON}"));
                }
            }
            let parameters = operation["parameters"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            for segment in path.split('/') {
                let Some(name) = segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) else {
                    continue;
                };
                let declared = parameters
                    .iter()
                    .any(|p| p["in"] == "path" && p["name"] == name);
                if !declared {
                    faults.push(format!("{at}: path parameter {name} is not declared"));
                }
            }
            if let Some(body) = operation["requestBody"]["content"].as_object() {
                for (media_type, content) in body {
                    let schema = resolve(&doc, &content["schema"]);
                    let example = content.get("example").is_some()
                        || content.get("examples").is_some()
                        || schema.get("example").is_some()
                        || schema.get("examples").is_some();
                    if !example {
                        faults.push(format!("{at}: request body {media_type} has no example"));
                    }
                }
            }
        }
        assert!(faults.is_empty(), "{faults:#?}");
    }

    /// Every `$ref` below `value`.
    fn references<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
        match value {
            Value::Object(object) => {
                for (key, item) in object {
                    match (key.as_str(), item) {
                        ("$ref", Value::String(reference)) => out.push(reference),
                        // Examples are data, not schema.
                        ("example" | "examples", _) => {}
                        _ => references(item, out),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|item| references(item, out)),
            _ => {}
        }
    }

    #[test]
    fn every_reference_resolves() {
        let doc = json_document();
        let mut found = Vec::new();
        references(&doc, &mut found);
        let dangling: Vec<&str> = found
            .into_iter()
            .filter(|r| {
                let name = r.trim_start_matches("#/components/schemas/");
                !r.starts_with("#/components/schemas/")
                    || doc["components"]["schemas"].get(name).is_none()
            })
            .collect();
        assert!(dangling.is_empty(), "unresolved references: {dangling:?}");
    }

    #[test]
    fn operation_ids_are_unique() {
        let doc = json_document();
        let mut ids: Vec<String> = operations(&doc)
            .iter()
            .map(|(m, p, operation)| {
                operation["operationId"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{m} {p} has no operationId"))
                    .to_owned()
            })
            .collect();
        ids.sort();
        let twice: Vec<&String> = ids
            .windows(2)
            .filter(|w| w[0] == w[1])
            .map(|w| &w[0])
            .collect();
        assert!(twice.is_empty(), "operationIds used twice: {twice:?}");
    }

    #[test]
    fn page_limits_are_the_ones_the_handlers_enforce() {
        let doc = json_document();
        for (method, path, operation) in operations(&doc) {
            for parameter in operation["parameters"].as_array().into_iter().flatten() {
                if parameter["name"] == "limit" && parameter["in"] == "query" {
                    let schema = &parameter["schema"];
                    assert_eq!(schema["minimum"], 1, "{method} {path}");
                    assert_eq!(
                        schema["maximum"],
                        super::super::MAX_PAGE_LIMIT,
                        "{method} {path}"
                    );
                }
            }
        }
    }

    /// Asserts that `value`'s object keys are the schema's properties, all
    /// the way down, and that every required property is there.
    fn assert_same_shape(doc: &Value, schema: &Value, value: &Value, at: &str) {
        let schema = resolve(doc, schema);
        if let Some(parts) = schema["allOf"].as_array() {
            let mut merged = serde_json::Map::new();
            for part in parts {
                let part = resolve(doc, part);
                for (k, v) in part["properties"].as_object().into_iter().flatten() {
                    merged.insert(k.clone(), v.clone());
                }
            }
            let merged = json!({"properties": merged});
            return assert_same_shape(doc, &merged, value, at);
        }
        if let (Some(variants), Value::Object(object)) = (schema["oneOf"].as_array(), value) {
            // The variant whose properties are the value's keys.
            let variant = variants.iter().find(|variant| {
                let properties = resolve(doc, variant)["properties"].as_object();
                properties.is_some_and(|p| {
                    p.len() == object.len() && object.keys().all(|k| p.contains_key(k))
                })
            });
            let variant = variant.unwrap_or_else(|| panic!("{at}: no variant fits {value}"));
            return assert_same_shape(doc, variant, value, at);
        }
        match value {
            Value::Object(object) => {
                let properties = schema["properties"]
                    .as_object()
                    .unwrap_or_else(|| panic!("{at}: {value} is an object, {schema} is not"));
                let mut keys: Vec<&String> = object.keys().collect();
                let mut names: Vec<&String> = properties.keys().collect();
                keys.sort();
                names.sort();
                assert_eq!(
                    keys, names,
                    "{at}: the schema's properties differ from the JSON"
                );
                for name in schema["required"].as_array().into_iter().flatten() {
                    assert!(object.contains_key(name.as_str().unwrap()), "{at}.{name}");
                }
                for (key, item) in object {
                    assert_same_shape(doc, &properties[key], item, &format!("{at}.{key}"));
                }
            }
            Value::Array(items) => {
                for item in items {
                    assert_same_shape(doc, &schema["items"], item, &format!("{at}[]"));
                }
            }
            _ => {}
        }
    }

    #[test]
    fn the_record_schemas_match_the_records_json() {
        use valeo_records::cash::{
            CashSale, Payment, PaymentType, ReceiptType, SaleLine, SaleTse, TseDescription,
            TseOutage,
        };
        let doc = json_document();
        let schema = |name: &str| json!({"$ref": format!("#/components/schemas/{name}")});
        let text = |s: &str| s.to_owned();
        let sale = CashSale {
            cash_point: text("KASSE-1"),
            receipt_no: 2,
            receipt_type: ReceiptType::Beleg,
            cancels_receipt_no: Some(1),
            started_at: text("2026-11-29T08:10:00Z"),
            finished_at: text("2026-11-29T08:10:30Z"),
            operator: text("Anna"),
            ticket_no: Some(7),
            customer: Some(text("Hof Meyer")),
            lines: vec![SaleLine {
                text: text("Weizensaat"),
                article_id: Some(text("A-1")),
                quantity_milli: 1000,
                unit: text("kg"),
                unit_price_cents: 120,
                gross_cents: 120,
                vat_key: 2,
            }],
            payments: vec![Payment {
                kind: PaymentType::Bar,
                amount_cents: 120,
            }],
            process_type: text("Kassenbeleg-V1"),
            process_data: text("Beleg^0.00_1.20_0.00_0.00_0.00^1.20:Bar"),
            tse: Some(SaleTse {
                serial_hex: text("ab"),
                transaction_number: 1,
                signature_counter: 2,
                start_unix: 1,
                finish_unix: 2,
                signature_base64: text("c2ln"),
                public_key_base64: text("a2V5"),
                signature_algorithm: text("ecdsa-plain-SHA256"),
                time_format: text("unixTime"),
                log_messages_base64: vec![text("bG9n")],
                qr_code: text("V0;KASSE-1"),
                certified: Some(false),
            }),
            tse_error: Some(text("none")),
        };
        assert_same_shape(
            &doc,
            &schema("CashSale"),
            &serde_json::to_value(&sale).unwrap(),
            "CashSale",
        );
        let description = TseDescription {
            cash_point: text("KASSE-1"),
            serial_hex: text("ab"),
            public_key_base64: text("a2V5"),
            signature_algorithm: text("ecdsa-plain-SHA256"),
            time_format: text("unixTime"),
            certificate_base64: Some(text("Y2VydA==")),
            certified: false,
            description: text("software TSE"),
            manufacturer: text("Valeo"),
            version: text("1"),
        };
        let view = crate::store::TseView {
            device_id: text("yard-1"),
            description,
        };
        assert_same_shape(
            &doc,
            &schema("TseView"),
            &serde_json::to_value(&view).unwrap(),
            "TseView",
        );
        let outage = TseOutage {
            outage_id: text("o-1"),
            cash_point: text("KASSE-1"),
            tse_serial_hex: Some(text("ab")),
            started_at: text("2026-11-29T08:00:00Z"),
            ended_at: Some(text("2026-11-29T09:00:00Z")),
            cause: text("USB-TSE abgezogen"),
        };
        assert_same_shape(
            &doc,
            &schema("TseOutage"),
            &serde_json::to_value(&outage).unwrap(),
            "TseOutage",
        );
        let action = valeo_records::command::CommandAction::ModbusWrite {
            device: text("silo-1"),
            point: text("fill_valve"),
            value: json!(true),
        };
        let action = serde_json::to_value(&action).unwrap();
        assert_same_shape(&doc, &schema("CommandAction"), &action, "CommandAction");
        let kinds: Vec<&Value> = doc["components"]["schemas"]["CommandAction"]["oneOf"]
            .as_array()
            .unwrap()
            .iter()
            .map(|variant| &variant["properties"]["kind"]["enum"][0])
            .collect();
        assert_eq!(kinds, [&action["kind"]]);
        let write = &doc["components"]["schemas"]["CommandAction"]["oneOf"][0]["properties"];
        for name in ["device", "point"] {
            assert_eq!(
                write[name]["maxLength"],
                valeo_records::command::MAX_NAME_CHARS,
                "{name}"
            );
        }
    }

    #[test]
    fn a_commands_status_is_pending_or_an_outcome_a_box_reports() {
        use valeo_records::command::CommandOutcome;
        let doc = json_document();
        let mut statuses = vec!["pending"];
        for outcome in [
            CommandOutcome::Done,
            CommandOutcome::Failed,
            CommandOutcome::Refused,
            CommandOutcome::Expired,
        ] {
            // A new outcome fails to compile here until it is listed.
            match outcome {
                CommandOutcome::Done
                | CommandOutcome::Failed
                | CommandOutcome::Refused
                | CommandOutcome::Expired => statuses.push(outcome.as_str()),
            }
        }
        assert_eq!(
            doc["components"]["schemas"]["CommandView"]["properties"]["status"]["enum"],
            json!(statuses)
        );
    }
}
