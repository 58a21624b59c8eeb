//! The fiskaly SIGN DE v2 backend against a fake fiskaly over real HTTP.
//!
//! The fake follows the documented API (OpenAPI 2.2.2, tse.md §10): bearer
//! tokens from `/auth` that expire, the TSS life cycle with admin PIN and
//! PUK, client registration only on an `INITIALIZED` TSS, transactions as
//! revisioned upserts with increasing numbers, one signature counter per TSS
//! that every signed log (system logs too) moves on, signatures made with a
//! real P-256 key, exports going `PENDING` → `WORKING` → `COMPLETED` with a
//! TAR file, and errors as `{status_code, error, code, message}`. Where the
//! documentation does not say what fiskaly answers (a stale revision, an
//! update of a finished transaction), the fake answers `E_TX_UPSERT`.

#![allow(clippy::unwrap_used, reason = "a failed step is the test failure")]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use p256::ecdsa::signature::{Signer as _, Verifier as _};
use p256::ecdsa::{Signature, SigningKey, VerifyingKey};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use valeo_drivers::tse::fiskaly::{FiskalyConfig, FiskalyTse};
use valeo_drivers::tse::{ExportFilter, TseBackend, TseError};

const API_KEY: &str = "test_5yq2kd3mb8vgqt5jn1ubc4q2";
const API_SECRET: &str = "Zr8Qx2vLk0pTm9Yw4NcE7hS1aB6dF3gJ";
const TSS_ID: &str = "0b6f7c4e-3a52-4e0e-9d77-8d1b1f3b2a10";
const CLIENT_ID: &str = "5a3e2f10-7c1d-4b7e-8f3a-2e9d6c4b1a00";
const ERS: &str = "ERS 8cb8e2de-0001";
const PIN: &str = "246810";
const PUK: &str = "PUK7F3A9C21E";
const VERSION: &str = "2.2.2";

/// What the fake does to every call but `/auth`, until told otherwise.
#[derive(Clone)]
enum Fault {
    /// 503 with a fiskaly error body.
    Unavailable,
    /// 200 with this body.
    Body(&'static str),
    /// Answers normally after this long.
    Slow(Duration),
}

/// One log the fake TSS signed.
#[derive(Clone, Debug)]
struct SignedRecord {
    counter: u64,
    operation: String,
    number: Option<u64>,
    time: i64,
    message: Vec<u8>,
    signature: String,
}

struct Client {
    serial: String,
    state: &'static str,
}

struct Tx {
    id: String,
    number: u64,
    client_id: String,
    state: String,
    /// Request body of every revision, for idempotent replays.
    requests: Vec<Value>,
    /// Answer of every revision.
    answers: Vec<Value>,
}

struct Export {
    state: &'static str,
    query: HashMap<String, String>,
    file: Vec<u8>,
}

struct Tss {
    id: String,
    state: &'static str,
    pin: Option<String>,
    admin: bool,
    key: SigningKey,
    signature_counter: u64,
    transaction_counter: u64,
    clients: HashMap<String, Client>,
    txs: Vec<Tx>,
    exports: HashMap<String, Export>,
    signed: Vec<SignedRecord>,
}

struct Fake {
    token_lifetime_s: u64,
    tokens: HashMap<String, Instant>,
    refresh_tokens: Vec<String>,
    issued: u64,
    credential_logins: u32,
    refresh_logins: u32,
    rejected_tokens: u32,
    fault: Option<Fault>,
    export_outcome: &'static str,
    tss: Option<Tss>,
}

type Shared = Arc<Mutex<Fake>>;

fn error(status: u16, code: &str, message: &str) -> Response {
    let status = StatusCode::from_u16(status).unwrap();
    let body = json!({
        "status_code": status.as_u16(),
        "error": status.canonical_reason().unwrap_or("Error"),
        "code": code,
        "message": message,
    });
    (status, axum::Json(body)).into_response()
}

fn ok(body: Value) -> Response {
    (StatusCode::OK, axum::Json(body)).into_response()
}

fn now_unix() -> i64 {
    chrono::Utc::now().timestamp()
}

/// A DER certificate stand-in: `SEQUENCE { INTEGER 1, OCTET STRING point }`.
fn certificate_der(point: &[u8]) -> Vec<u8> {
    let mut der = vec![0x30, 0x46, 0x02, 0x01, 0x01, 0x04, 0x41];
    der.extend_from_slice(point);
    der
}

impl Tss {
    fn new(id: &str) -> Self {
        Self {
            id: id.to_owned(),
            state: "CREATED",
            pin: None,
            admin: false,
            key: SigningKey::from_slice(&[0x5c; 32]).unwrap(),
            signature_counter: 0,
            transaction_counter: 0,
            clients: HashMap::new(),
            txs: Vec::new(),
            exports: HashMap::new(),
            signed: Vec::new(),
        }
    }

    fn point(&self) -> Vec<u8> {
        VerifyingKey::from(&self.key)
            .to_encoded_point(false)
            .as_bytes()
            .to_vec()
    }

    fn serial(&self) -> String {
        hex::encode(Sha256::digest(self.point()))
    }

    /// Every signed log, system or transaction, moves the counter on.
    fn sign(&mut self, operation: &str, number: Option<u64>, data: &str) -> SignedRecord {
        self.signature_counter += 1;
        let time = now_unix();
        let message = format!(
            "{operation}|{}|{}|{time}|{data}",
            number.unwrap_or(0),
            self.signature_counter
        )
        .into_bytes();
        let signature: Signature = self.key.sign(&message);
        let record = SignedRecord {
            counter: self.signature_counter,
            operation: operation.to_owned(),
            number,
            time,
            message,
            signature: B64.encode(signature.to_bytes()),
        };
        self.signed.push(record.clone());
        record
    }

    fn json(&self, puk: bool) -> Value {
        let pem = format!(
            "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
            B64.encode(certificate_der(&self.point()))
        );
        let mut tss = json!({
            "_id": self.id, "_type": "TSS", "_env": "TEST", "_version": VERSION,
            "state": self.state,
            "description": format!("fiskaly sign cloud-TSE ({})", self.id),
            "serial_number": self.serial(),
            "public_key": B64.encode(self.point()),
            "certificate": pem,
            "signature_algorithm": "ecdsa-plain-SHA256",
            "signature_timestamp_format": "unixTime",
            "transaction_data_encoding": "UTF-8",
            "signature_counter": self.signature_counter.to_string(),
            "transaction_counter": self.transaction_counter.to_string(),
            "bsi_certification_id": "BSI-K-TR-0717-2025",
            "max_number_registered_clients": 199,
            "max_number_active_transactions": 2000,
            "supported_update_variants": "SIGNED",
            "time_creation": now_unix(),
            "metadata": {},
        });
        if puk {
            tss["admin_puk"] = json!(PUK);
        }
        tss
    }

    fn client_json(&self, client_id: &str) -> Option<Value> {
        let client = self.clients.get(client_id)?;
        Some(json!({
            "_id": client_id, "_type": "CLIENT", "_env": "TEST", "_version": VERSION,
            "serial_number": client.serial, "state": client.state, "tss_id": self.id,
            "time_creation": now_unix(), "time_update": now_unix(), "metadata": {},
        }))
    }

    fn export_tar(&self, query: &HashMap<String, String>) -> Vec<u8> {
        let mut tar = tar::Builder::new(Vec::new());
        let mut add = |name: &str, data: &[u8]| {
            let mut header = tar::Header::new_ustar();
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            tar.append_data(&mut header, name, data).unwrap();
        };
        add("info.csv", format!("serial;{}\n", self.serial()).as_bytes());
        for log in &self.signed {
            let Some(number) = log.number else { continue };
            let tx = self.txs.iter().find(|tx| tx.number == number).unwrap();
            if query.get("client_id").is_some_and(|c| *c != tx.client_id) {
                continue;
            }
            let serial = &self.clients[&tx.client_id].serial;
            let name = format!(
                "Unixt_{}_Sig-{}_Log-Tra_No-{number}_{}_Client-{serial}.log",
                log.time, log.counter, log.operation
            );
            add(&name, &log.message);
        }
        tar.into_inner().unwrap()
    }
}

impl Fake {
    fn new() -> Self {
        Self {
            token_lifetime_s: 600,
            tokens: HashMap::new(),
            refresh_tokens: Vec::new(),
            issued: 0,
            credential_logins: 0,
            refresh_logins: 0,
            rejected_tokens: 0,
            fault: None,
            export_outcome: "COMPLETED",
            tss: None,
        }
    }

    fn route(
        &mut self,
        method: &Method,
        path: &str,
        query: &HashMap<String, String>,
        headers: &HeaderMap,
        body: &Value,
    ) -> Response {
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        if method == Method::POST && segments == ["auth"] {
            return self.auth(body);
        }
        if !self.token_is_valid(headers) {
            self.rejected_tokens += 1;
            return error(401, "E_UNAUTHORIZED", "Token is invalid or expired");
        }
        let Some(tss) = self
            .tss
            .as_mut()
            .filter(|t| segments.get(1) == Some(&t.id.as_str()))
        else {
            if method == Method::PUT && segments.len() == 2 && segments[0] == "tss" {
                let mut tss = Tss::new(segments[1]);
                let answer = tss.json(true);
                tss.state = "CREATED";
                self.tss = Some(tss);
                return ok(answer);
            }
            return error(404, "E_TSS_NOT_FOUND", "TSS not found");
        };
        match (method.as_str(), &segments[2..]) {
            ("GET", []) => ok(tss.json(false)),
            // createTss is idempotent while the TSS is CREATED.
            ("PUT", []) if tss.state == "CREATED" => ok(tss.json(true)),
            ("PUT", []) => error(409, "E_TSS_CONFLICT", "TSS already exists"),
            ("PATCH", []) => update_tss(tss, body),
            ("PATCH", ["admin"]) => change_admin_pin(tss, body),
            ("POST", ["admin", "auth"]) => admin_auth(tss, body),
            ("POST", ["admin", "logout"]) => {
                tss.admin = false;
                tss.sign("logOut", None, "admin");
                ok(json!({}))
            }
            ("GET", ["client", client]) => match tss.client_json(client) {
                Some(answer) => ok(answer),
                None => error(404, "E_CLIENT_NOT_FOUND", "client not found"),
            },
            ("PUT", ["client", client]) => create_client(tss, client, body),
            ("GET", ["tx", tx]) => get_tx(tss, tx),
            ("PUT", ["tx", tx]) => upsert_tx(tss, tx, query, body),
            ("PUT", ["export", export]) => trigger_export(tss, export, query),
            ("GET", ["export", export]) => {
                let outcome = self.export_outcome;
                match tss.exports.get_mut(*export) {
                    Some(found) => {
                        found.state = match found.state {
                            "PENDING" => "WORKING",
                            "WORKING" => outcome,
                            done => done,
                        };
                        let mut answer = json!({
                            "_id": export, "_type": "EXPORT", "_env": "TEST",
                            "_version": VERSION, "state": found.state,
                            "time_request": now_unix(), "tss_id": tss.id,
                        });
                        if found.state == "ERROR" {
                            answer["exception"] = json!("E_NO_DATA_AVAILABLE");
                        }
                        ok(answer)
                    }
                    None => error(404, "E_EXPORT_NOT_FOUND", "export not found"),
                }
            }
            ("GET", ["export", export, "file"]) => match tss.exports.get(*export) {
                Some(found) if found.state == "COMPLETED" => (
                    StatusCode::OK,
                    [("content-type", "application/x-tar")],
                    found.file.clone(),
                )
                    .into_response(),
                Some(_) => error(404, "E_EXPORT_NOT_COMPLETED", "export is not COMPLETED"),
                None => error(404, "E_EXPORT_NOT_FOUND", "export not found"),
            },
            _ => error(404, "E_NOT_FOUND", "no such route"),
        }
    }

    fn auth(&mut self, body: &Value) -> Response {
        let by_key = body["api_key"] == API_KEY && body["api_secret"] == API_SECRET;
        let refresh = body["refresh_token"].as_str().unwrap_or_default();
        let by_refresh = self.refresh_tokens.iter().any(|t| t == refresh);
        if by_key {
            self.credential_logins += 1;
        } else if by_refresh {
            self.refresh_tokens.retain(|t| t != refresh);
            self.refresh_logins += 1;
        } else {
            return error(401, "E_UNAUTHORIZED", "Invalid credentials");
        }
        self.issued += 1;
        let access = format!("access-{}", self.issued);
        let refresh = format!("refresh-{}", self.issued);
        let lifetime = self.token_lifetime_s;
        self.tokens.insert(
            access.clone(),
            Instant::now() + Duration::from_secs(lifetime),
        );
        self.refresh_tokens.push(refresh.clone());
        ok(json!({
            "access_token": access,
            "access_token_claims": {"env": "TEST", "organization_id": "0bd118a1-eed7-4065-9e6b-710ab3aaf445"},
            "access_token_expires_in": lifetime,
            "access_token_expires_at": now_unix() + i64::try_from(lifetime).unwrap(),
            "refresh_token": refresh,
            "refresh_token_expires_in": 2 * lifetime,
            "refresh_token_expires_at": now_unix() + 2 * i64::try_from(lifetime).unwrap(),
        }))
    }

    fn token_is_valid(&self, headers: &HeaderMap) -> bool {
        let token = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        self.tokens
            .get(token)
            .is_some_and(|expiry| Instant::now() < *expiry)
    }

    /// Every token issued so far stops working now.
    fn expire_tokens(&mut self) {
        let now = Instant::now();
        for expiry in self.tokens.values_mut() {
            *expiry = now;
        }
    }

    fn tss(&mut self) -> &mut Tss {
        self.tss.as_mut().unwrap()
    }
}

fn update_tss(tss: &mut Tss, body: &Value) -> Response {
    let target = body["state"].as_str().unwrap_or_default();
    match (tss.state, target) {
        ("CREATED", "UNINITIALIZED") => {
            tss.state = "UNINITIALIZED";
            tss.sign("updateDevice", None, "UNINITIALIZED");
        }
        ("UNINITIALIZED", "INITIALIZED") if tss.admin => {
            tss.state = "INITIALIZED";
            tss.sign("initialize", None, "INITIALIZED");
        }
        ("UNINITIALIZED", "INITIALIZED") => {
            return error(403, "E_ACCESS_DENIED", "admin authentication required");
        }
        ("UNINITIALIZED" | "INITIALIZED", "DISABLED") => {
            tss.state = "DISABLED";
            tss.sign("disableSecureElement", None, "DISABLED");
        }
        (from, to) => {
            return error(
                400,
                "E_ILLEGAL_TSS_STATE_CHANGE",
                &format!("{from} to {to:?} is not allowed"),
            );
        }
    }
    ok(tss.json(false))
}

fn change_admin_pin(tss: &mut Tss, body: &Value) -> Response {
    if !matches!(tss.state, "UNINITIALIZED" | "INITIALIZED") {
        return error(400, "E_TSS_NOT_INITIALIZED", "TSS is not initialized");
    }
    if body["admin_puk"] != PUK {
        return error(400, "E_CHANGE_ADMIN_PIN_FAILED", "wrong admin_puk");
    }
    let Some(pin) = body["new_admin_pin"].as_str().filter(|p| p.len() >= 6) else {
        return error(400, "E_FAILED_SCHEMA_VALIDATION", "new_admin_pin too short");
    };
    tss.pin = Some(pin.to_owned());
    tss.sign("unblockPin", None, "admin");
    ok(json!({}))
}

fn admin_auth(tss: &mut Tss, body: &Value) -> Response {
    if tss.state == "CREATED" {
        return error(400, "E_TSS_NOT_INITIALIZED", "TSS is not initialized");
    }
    if tss.pin.is_none() || body["admin_pin"].as_str() != tss.pin.as_deref() {
        return error(401, "E_UNAUTHORIZED", "Invalid admin PIN");
    }
    tss.admin = true;
    tss.sign("authenticateUser", None, "admin");
    ok(json!({}))
}

fn create_client(tss: &mut Tss, client_id: &str, body: &Value) -> Response {
    if tss.state != "INITIALIZED" {
        return error(400, "E_TSS_NOT_INITIALIZED", "TSS is not initialized");
    }
    let Some(serial) = body["serial_number"].as_str() else {
        return error(
            400,
            "E_FAILED_SCHEMA_VALIDATION",
            "serial_number is required",
        );
    };
    if let Some(existing) = tss.clients.get(client_id) {
        return if existing.serial == serial {
            ok(tss.client_json(client_id).unwrap())
        } else {
            error(409, "E_CLIENT_CONFLICT", "client exists")
        };
    }
    if !tss.admin {
        return error(401, "E_UNAUTHORIZED", "admin authentication required");
    }
    tss.clients.insert(
        client_id.to_owned(),
        Client {
            serial: serial.to_owned(),
            state: "REGISTERED",
        },
    );
    tss.sign("registerClient", None, serial);
    ok(tss.client_json(client_id).unwrap())
}

fn find_tx<'a>(tss: &'a mut Tss, id_or_number: &str) -> Option<&'a mut Tx> {
    tss.txs
        .iter_mut()
        .find(|tx| tx.id == id_or_number || tx.number.to_string() == id_or_number)
}

fn get_tx(tss: &mut Tss, id_or_number: &str) -> Response {
    match find_tx(tss, id_or_number) {
        Some(tx) => {
            let mut answer = tx.answers.last().unwrap().clone();
            answer["latest_revision"] = json!(tx.answers.len());
            ok(answer)
        }
        None => error(404, "E_TX_NOT_FOUND", "transaction not found"),
    }
}

fn upsert_tx(
    tss: &mut Tss,
    tx_id: &str,
    query: &HashMap<String, String>,
    body: &Value,
) -> Response {
    if tss.state != "INITIALIZED" {
        return error(400, "E_TSS_NOT_INITIALIZED", "TSS is not initialized");
    }
    let Some(revision) = query
        .get("tx_revision")
        .and_then(|r| r.parse::<usize>().ok())
        .filter(|r| *r >= 1)
    else {
        return error(400, "E_FAILED_SCHEMA_VALIDATION", "tx_revision is required");
    };
    let state = body["state"].as_str().unwrap_or_default();
    let client_id = body["client_id"].as_str().unwrap_or_default();
    let process_type = body["schema"]["raw"]["process_type"].as_str();
    let process_data = body["schema"]["raw"]["process_data"].as_str();
    if !matches!(state, "ACTIVE" | "FINISHED" | "CANCELLED")
        || process_type.is_none()
        || process_data.is_none_or(|d| B64.decode(d).is_err())
    {
        return error(
            400,
            "E_FAILED_SCHEMA_VALIDATION",
            "invalid transaction body",
        );
    }
    let Some(client_serial) = tss
        .clients
        .get(client_id)
        .filter(|c| c.state == "REGISTERED")
        .map(|c| c.serial.clone())
    else {
        return error(400, "E_CLIENT_NOT_FOUND", "client not found");
    };
    let data = format!(
        "{}|{}",
        process_type.unwrap_or_default(),
        process_data.unwrap_or_default()
    );
    let (number, operation) = match find_tx(tss, tx_id) {
        None if revision != 1 => return error(404, "E_TX_NOT_FOUND", "transaction not found"),
        None if state != "ACTIVE" => {
            return error(400, "E_TX_UPSERT", "a transaction starts ACTIVE");
        }
        None => {
            tss.transaction_counter += 1;
            (tss.transaction_counter, "Start")
        }
        Some(tx) => {
            let latest = tx.answers.len();
            if revision <= latest {
                // Idempotent replay of the same request, or a stale writer.
                return if tx.requests[revision - 1] == *body {
                    ok(tx.answers[revision - 1].clone())
                } else {
                    error(
                        409,
                        "E_TX_UPSERT",
                        &format!("revision {revision} already exists"),
                    )
                };
            }
            if tx.state != "ACTIVE" {
                return error(400, "E_TX_UPSERT", &format!("transaction is {}", tx.state));
            }
            if revision > latest + 1 {
                return error(400, "E_TX_REVISION_NOT_FOUND", "no such tx_revision");
            }
            if tx.client_id != client_id {
                return error(400, "E_TX_UPSERT", "transaction belongs to another client");
            }
            (
                tx.number,
                if state == "ACTIVE" {
                    "Update"
                } else {
                    "Finish"
                },
            )
        }
    };
    let record = tss.sign(operation, Some(number), &data);
    let answer = json!({
        "_id": tx_id, "_type": "TRANSACTION", "_env": "TEST", "_version": VERSION,
        "number": number, "state": state, "client_id": client_id,
        "client_serial_number": client_serial, "tss_id": tss.id,
        "tss_serial_number": tss.serial(), "revision": revision, "latest_revision": revision,
        "time_start": record.time,
        "schema": body["schema"],
        "log": {"operation": operation, "timestamp": record.time, "timestamp_format": "unixTime"},
        // The middleware sends the counter as a number (fiskaly known issue).
        "signature": {
            "value": record.signature, "algorithm": "ecdsa-plain-SHA256",
            "counter": record.counter, "public_key": B64.encode(tss.point()),
        },
        "metadata": {},
    });
    match find_tx(tss, tx_id) {
        Some(tx) => {
            tx.state = state.to_owned();
            tx.requests.push(body.clone());
            tx.answers.push(answer.clone());
        }
        None => tss.txs.push(Tx {
            id: tx_id.to_owned(),
            number,
            client_id: client_id.to_owned(),
            state: state.to_owned(),
            requests: vec![body.clone()],
            answers: vec![answer.clone()],
        }),
    }
    ok(answer)
}

fn trigger_export(tss: &mut Tss, export_id: &str, query: &HashMap<String, String>) -> Response {
    if !matches!(tss.state, "INITIALIZED" | "DISABLED") {
        return error(
            409,
            "E_TSS_ILLEGAL_STATE_TO_PERFORM_EXPORT",
            "TSS must be INITIALIZED or DISABLED",
        );
    }
    let file = tss.export_tar(query);
    tss.exports.insert(
        export_id.to_owned(),
        Export {
            state: "PENDING",
            query: query.clone(),
            file,
        },
    );
    ok(json!({
        "_id": export_id, "_type": "EXPORT", "_env": "TEST", "_version": VERSION,
        "state": "PENDING", "time_request": now_unix(), "tss_id": tss.id, "metadata": {},
    }))
}

fn parse_query(query: Option<&str>) -> HashMap<String, String> {
    query
        .unwrap_or_default()
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

async fn handle(
    State(fake): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(path) = uri.path().strip_prefix("/api/v2") else {
        return error(404, "E_NOT_FOUND", "no such route");
    };
    let body: Value = if body.is_empty() {
        Value::Null
    } else {
        match serde_json::from_slice(&body) {
            Ok(value) => value,
            Err(_) => return error(400, "E_FAILED_SCHEMA_VALIDATION", "body is not JSON"),
        }
    };
    if path != "/auth" {
        let fault = fake.lock().unwrap().fault.clone();
        match fault {
            Some(Fault::Slow(delay)) => tokio::time::sleep(delay).await,
            Some(Fault::Unavailable) => {
                return error(503, "E_TSS_LOCKED", "The TSS is in maintenance");
            }
            Some(Fault::Body(text)) => {
                return (StatusCode::OK, [("content-type", "application/json")], text)
                    .into_response();
            }
            None => {}
        }
    }
    let query = parse_query(uri.query());
    fake.lock()
        .unwrap()
        .route(&method, path, &query, &headers, &body)
}

/// The fake on a free port, and the base URL to give the backend.
async fn start_fake() -> (Shared, String) {
    let fake = Arc::new(Mutex::new(Fake::new()));
    let app = Router::new().fallback(handle).with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (fake, format!("http://{address}/api/v2"))
}

fn config(base_url: &str) -> FiskalyConfig {
    FiskalyConfig {
        base_url: base_url.to_owned(),
        api_key: API_KEY.to_owned(),
        api_secret: API_SECRET.to_owned(),
        tss_id: TSS_ID.to_owned(),
        client_id: CLIENT_ID.to_owned(),
        admin_pin: Some(PIN.to_owned()),
        request_timeout_ms: 2000,
    }
}

fn backend(config: FiskalyConfig) -> FiskalyTse {
    FiskalyTse::new(config)
        .unwrap()
        .with_export_polling(Duration::from_millis(20), 10)
}

/// A fake with an initialized TSS and our client registered.
async fn ready() -> (Shared, String, FiskalyTse) {
    let (fake, url) = start_fake().await;
    let mut tse = backend(config(&url));
    tse.set_up_tss(PIN).await.unwrap();
    tse.register_client(ERS).await.unwrap();
    (fake, url, tse)
}

fn assert_refused(result: Result<impl std::fmt::Debug, TseError>, needle: &str) {
    match result {
        Err(TseError::Refused(reason)) => {
            assert!(reason.contains(needle), "{reason:?} should name {needle}");
        }
        other => panic!("expected a refusal naming {needle}, got {other:?}"),
    }
}

#[tokio::test]
async fn full_lifecycle_signs_with_what_fiskaly_assigns() {
    let (fake, url) = start_fake().await;
    let mut tse = backend(config(&url));

    // No TSS yet: nothing to register a client on.
    assert_refused(tse.register_client(ERS).await, "E_TSS_NOT_FOUND");

    tse.set_up_tss(PIN).await.unwrap();
    assert_eq!(fake.lock().unwrap().tss().state, "INITIALIZED");
    assert!(!fake.lock().unwrap().tss().admin, "admin logged out again");
    assert_eq!(tse.admin_puk(), Some(PUK));
    tse.set_up_tss(PIN).await.unwrap();

    tse.register_client(ERS).await.unwrap();
    tse.register_client(ERS).await.unwrap();
    assert_eq!(fake.lock().unwrap().tss().clients.len(), 1);
    assert!(!fake.lock().unwrap().tss().admin);
    assert_refused(tse.register_client("ERS_bad").await, "'_'");

    let start = tse
        .start_transaction(ERS, "Kassenbeleg-V1", b"")
        .await
        .unwrap();
    let data = b"Beleg^75.33_7.99_0.00_0.00_0.00^10.00:Bar_73.32:Unbar";
    let update = tse
        .update_transaction(ERS, start.transaction_number, "Kassenbeleg-V1", data)
        .await
        .unwrap();
    let finish = tse
        .finish_transaction(ERS, start.transaction_number, "Kassenbeleg-V1", data)
        .await
        .unwrap();
    let second = tse
        .start_transaction(ERS, "Kassenbeleg-V1", b"")
        .await
        .unwrap();

    let signed = fake.lock().unwrap().tss().signed.clone();
    let verifying = VerifyingKey::from(&fake.lock().unwrap().tss().key);
    let transaction_logs: Vec<&SignedRecord> =
        signed.iter().filter(|log| log.number.is_some()).collect();
    assert_eq!(transaction_logs.len(), 4);
    for (log, record) in [&start, &update, &finish, &second]
        .into_iter()
        .zip(&transaction_logs)
    {
        assert_eq!(Some(log.transaction_number), record.number);
        assert_eq!(log.signature_counter, record.counter);
        assert_eq!(log.log_time_unix, record.time);
        assert_eq!(log.signature_base64, record.signature);
        assert_eq!(log.log_message_base64, None);
        let signature = Signature::from_slice(&B64.decode(&log.signature_base64).unwrap()).unwrap();
        verifying.verify(&record.message, &signature).unwrap();
    }
    assert_eq!(start.transaction_number, 1);
    assert_eq!(second.transaction_number, 2);
    // System logs came first, so the first transaction log is not counter 1;
    // afterwards every signed operation moves the counter by one.
    assert!(start.signature_counter > 1);
    assert_eq!(update.signature_counter, start.signature_counter + 1);
    assert_eq!(finish.signature_counter, start.signature_counter + 2);
    assert_eq!(second.signature_counter, start.signature_counter + 3);
    assert_eq!(
        [&start, &update, &finish, &second].map(|l| l.log_time_unix >= start.log_time_unix),
        [true; 4]
    );

    // A finished transaction cannot change; another ERS serial cannot sign.
    assert_refused(
        tse.update_transaction(ERS, 1, "Kassenbeleg-V1", data).await,
        "FINISHED",
    );
    assert_refused(
        tse.start_transaction("ERS other", "Kassenbeleg-V1", b"")
            .await,
        "ERS other",
    );
    assert_refused(
        tse.update_transaction(ERS, 99, "Kassenbeleg-V1", data)
            .await,
        "E_TX_NOT_FOUND",
    );

    let info = tse.info().await.unwrap();
    let point = fake.lock().unwrap().tss().point();
    assert_eq!(info.public_key_base64, B64.encode(&point));
    assert_eq!(info.serial_hex, hex::encode(Sha256::digest(&point)));
    assert_eq!(info.signature_algorithm, "ecdsa-plain-SHA256");
    assert_eq!(info.time_format, "unixTime");
    assert_eq!(
        info.certificate_base64,
        Some(B64.encode(certificate_der(&point)))
    );
    assert!(info.certified);
    assert_eq!(info.manufacturer, "fiskaly GmbH");
    assert!(info.version.contains("BSI-K-TR-0717-2025"));

    tse.self_test().await.unwrap();
    tse.update_time(now_unix()).await.unwrap();
}

#[tokio::test]
async fn exports_are_polled_until_completed_and_downloaded() {
    let (fake, _url, mut tse) = ready().await;
    let log = tse
        .start_transaction(ERS, "Kassenbeleg-V1", b"")
        .await
        .unwrap();
    tse.finish_transaction(ERS, log.transaction_number, "Kassenbeleg-V1", b"Beleg^")
        .await
        .unwrap();

    let tar = tse.export(&ExportFilter::default()).await.unwrap();
    let names: Vec<String> = tar::Archive::new(tar.as_slice())
        .entries()
        .unwrap()
        .map(|entry| entry.unwrap().path().unwrap().display().to_string())
        .collect();
    assert!(names.contains(&"info.csv".to_owned()), "{names:?}");
    assert_eq!(
        names
            .iter()
            .filter(|n| n.contains("_Log-Tra_No-1_"))
            .count(),
        2,
        "{names:?}"
    );

    // The ERS serial in the filter becomes fiskaly's client UUID; the dates
    // go as unix seconds.
    let filter = ExportFilter {
        start_unix: Some(1_700_000_000),
        end_unix: Some(1_900_000_000),
        client_id: None,
    };
    tse.export(&filter).await.unwrap();
    let filter = ExportFilter {
        client_id: Some(ERS.to_owned()),
        ..ExportFilter::default()
    };
    tse.export(&filter).await.unwrap();
    let queries: Vec<HashMap<String, String>> = fake
        .lock()
        .unwrap()
        .tss()
        .exports
        .values()
        .map(|e| e.query.clone())
        .collect();
    assert!(queries.iter().any(
        |q| q.get("start_date").map(String::as_str) == Some("1700000000")
            && q.get("end_date").map(String::as_str) == Some("1900000000")
    ));
    assert!(
        queries
            .iter()
            .any(|q| q.get("client_id").map(String::as_str) == Some(CLIENT_ID))
    );
    assert!(
        fake.lock()
            .unwrap()
            .tss()
            .exports
            .values()
            .all(|e| e.state == "COMPLETED")
    );
}

#[tokio::test]
async fn failed_or_endless_exports_are_errors() {
    let (fake, _url, mut tse) = ready().await;
    fake.lock().unwrap().export_outcome = "ERROR";
    let failed = tse.export(&ExportFilter::default()).await;
    assert_refused(failed, "E_NO_DATA_AVAILABLE");

    fake.lock().unwrap().export_outcome = "WORKING";
    let endless = tse.export(&ExportFilter::default()).await;
    assert_eq!(endless, Err(TseError::Timeout(200)));
}

#[tokio::test]
async fn registration_is_refused_before_the_tss_is_initialized() {
    let (fake, url) = start_fake().await;
    {
        let mut fake = fake.lock().unwrap();
        let mut tss = Tss::new(TSS_ID);
        tss.state = "UNINITIALIZED";
        tss.pin = Some(PIN.to_owned());
        fake.tss = Some(tss);
    }
    let mut tse = backend(config(&url));
    assert_refused(tse.register_client(ERS).await, "E_TSS_NOT_INITIALIZED");
    assert!(!fake.lock().unwrap().tss().admin, "admin logged out again");
    assert_refused(
        tse.start_transaction(ERS, "Kassenbeleg-V1", b"").await,
        "does not exist",
    );
}

#[tokio::test]
async fn registration_without_admin_pin_is_refused() {
    let (_fake, url) = start_fake().await;
    let mut tse = backend(config(&url));
    tse.set_up_tss(PIN).await.unwrap();
    let mut without_pin = config(&url);
    without_pin.admin_pin = None;
    let mut tse = backend(without_pin);
    assert_refused(tse.register_client(ERS).await, "admin_pin");
}

#[tokio::test]
async fn an_expired_token_is_replaced_transparently() {
    let (fake, _url, mut tse) = ready().await;
    assert_eq!(fake.lock().unwrap().credential_logins, 1);
    fake.lock().unwrap().expire_tokens();

    let log = tse
        .start_transaction(ERS, "Kassenbeleg-V1", b"")
        .await
        .unwrap();
    assert_eq!(log.transaction_number, 1);
    let fake = fake.lock().unwrap();
    assert_eq!(fake.rejected_tokens, 1);
    assert_eq!(fake.credential_logins, 2);
}

#[tokio::test]
async fn a_token_is_renewed_with_the_refresh_token_before_it_expires() {
    let (fake, url) = start_fake().await;
    fake.lock().unwrap().token_lifetime_s = 1;
    let mut tse = backend(config(&url));
    tse.set_up_tss(PIN).await.unwrap();
    tokio::time::sleep(Duration::from_millis(950)).await;
    tse.info().await.unwrap();
    let fake = fake.lock().unwrap();
    assert_eq!(fake.credential_logins, 1);
    assert_eq!(fake.refresh_logins, 1);
    assert_eq!(
        fake.rejected_tokens, 0,
        "no request left with a dying token"
    );
}

#[tokio::test]
async fn bad_credentials_are_refused_naming_e_unauthorized() {
    let (_fake, url) = start_fake().await;
    let mut wrong = config(&url);
    wrong.api_secret = "not-the-secret-0815".to_owned();
    let mut tse = backend(wrong);
    let result = tse.info().await;
    assert_refused(result.clone(), "E_UNAUTHORIZED");
    assert!(!format!("{result:?}").contains("not-the-secret-0815"));
}

#[tokio::test]
async fn stale_revisions_and_finished_transactions_are_refused() {
    let (fake, url, mut till) = ready().await;
    let log = till
        .start_transaction(ERS, "Kassenbeleg-V1", b"")
        .await
        .unwrap();
    let number = log.transaction_number;

    // A second backend (as after a restart) finds the transaction by number
    // and moves it on; the first now holds a stale revision.
    let mut restarted = backend(config(&url));
    restarted
        .update_transaction(ERS, number, "Kassenbeleg-V1", b"Beleg^1")
        .await
        .unwrap();
    assert_refused(
        till.update_transaction(ERS, number, "Kassenbeleg-V1", b"Beleg^2")
            .await,
        "E_TX_UPSERT",
    );
    // The refusal dropped the stale revision; the next call reads it afresh.
    till.update_transaction(ERS, number, "Kassenbeleg-V1", b"Beleg^2")
        .await
        .unwrap();
    till.finish_transaction(ERS, number, "Kassenbeleg-V1", b"Beleg^3")
        .await
        .unwrap();
    // The restarted backend still believes revision 2 is the latest: fiskaly
    // refuses, and a fresh look shows the transaction is finished.
    assert_refused(
        restarted
            .finish_transaction(ERS, number, "Kassenbeleg-V1", b"Beleg^9")
            .await,
        "E_TX_UPSERT",
    );
    assert_refused(
        restarted
            .finish_transaction(ERS, number, "Kassenbeleg-V1", b"Beleg^9")
            .await,
        "FINISHED",
    );
    let tss = &fake.lock().unwrap().tss;
    let tx = &tss.as_ref().unwrap().txs[0];
    assert_eq!((tx.answers.len(), tx.state.as_str()), (4, "FINISHED"));
}

#[tokio::test]
async fn server_errors_mean_unavailable() {
    let (fake, _url, mut tse) = ready().await;
    fake.lock().unwrap().fault = Some(Fault::Unavailable);
    match tse.start_transaction(ERS, "Kassenbeleg-V1", b"").await {
        Err(TseError::Unavailable(reason)) => {
            assert!(
                reason.contains("503") && reason.contains("E_TSS_LOCKED"),
                "{reason}"
            );
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
}

#[tokio::test]
async fn an_unreachable_fiskaly_is_unavailable() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener);
    let mut tse = backend(config(&format!("http://{address}/api/v2")));
    assert!(
        matches!(tse.info().await, Err(TseError::Unavailable(_))),
        "connection refused is an outage"
    );
}

#[tokio::test]
async fn answers_that_are_not_the_expected_json_are_garbage() {
    let (fake, _url, mut tse) = ready().await;
    fake.lock().unwrap().fault = Some(Fault::Body("not json"));
    assert!(matches!(tse.info().await, Err(TseError::Garbage(_))));
    assert!(matches!(
        tse.start_transaction(ERS, "Kassenbeleg-V1", b"").await,
        Err(TseError::Garbage(_))
    ));

    fake.lock().unwrap().fault = Some(Fault::Body(r#"{"state":"ACTIVE","revision":1}"#));
    match tse.start_transaction(ERS, "Kassenbeleg-V1", b"").await {
        Err(TseError::Garbage(reason)) => assert!(reason.contains("`number`"), "{reason}"),
        other => panic!("expected Garbage, got {other:?}"),
    }
    fake.lock().unwrap().fault = Some(Fault::Body(
        r#"{"number":1,"signature":{"value":"AAEC"},"log":{"timestamp":1}}"#,
    ));
    match tse.start_transaction(ERS, "Kassenbeleg-V1", b"").await {
        Err(TseError::Garbage(reason)) => {
            assert!(reason.contains("signature.counter"), "{reason}");
        }
        other => panic!("expected Garbage, got {other:?}"),
    }
    fake.lock().unwrap().fault = Some(Fault::Body(r#"{"public_key":"BAAA","serial_number":"00"}"#));
    assert!(matches!(tse.info().await, Err(TseError::Garbage(_))));
    fake.lock().unwrap().fault = Some(Fault::Body("[1,2,3]"));
    assert!(matches!(
        tse.export(&ExportFilter::default()).await,
        Err(TseError::Garbage(_))
    ));
}

#[tokio::test]
async fn a_slow_fiskaly_is_a_timeout() {
    let (fake, url, _tse) = ready().await;
    let mut quick = config(&url);
    quick.request_timeout_ms = 200;
    let mut tse = backend(quick);
    tse.info().await.unwrap();
    fake.lock().unwrap().fault = Some(Fault::Slow(Duration::from_millis(1500)));
    assert_eq!(
        tse.start_transaction(ERS, "Kassenbeleg-V1", b"").await,
        Err(TseError::Timeout(200))
    );
}

#[tokio::test]
async fn the_api_secret_never_shows_in_debug_output() {
    let config = config("http://127.0.0.1:9/api/v2");
    let text = format!("{config:?}");
    assert!(!text.contains(API_SECRET), "{text}");
    assert!(!text.contains(PIN), "{text}");
    assert!(text.contains(API_KEY), "{text}");
    let tse = backend(config);
    assert!(!format!("{tse:?}").contains(API_SECRET));
}
