//! fiskaly SIGN DE API v2, the certified cloud TSE, behind [`TseBackend`].
//!
//! What the API looks like (fiskaly SIGN DE OpenAPI 2.2.2 and
//! developer.fiskaly.com/sign-de, summarised in tse.md §10):
//! - `POST /auth {api_key, api_secret}` (or `{refresh_token}`) gives a
//!   bearer `access_token` with `access_token_expires_in` seconds and a
//!   `refresh_token`;
//! - a TSS goes `CREATED` → `UNINITIALIZED` → `INITIALIZED`; creating
//!   clients and initialising need an admin login with the admin PIN;
//! - a client (one ERS) is `PUT /tss/{tss}/client/{client uuid}
//!   {serial_number}`;
//! - a transaction is an idempotent upsert of a client-chosen UUID with
//!   optimistic revisions: `PUT /tss/{tss}/tx/{tx uuid}?tx_revision=n`; the
//!   answer carries the TSE transaction `number`, `signature.counter`,
//!   `signature.value` and `log.timestamp`;
//! - an export is asynchronous: `PUT /tss/{tss}/export/{uuid}?filters`,
//!   poll until `COMPLETED`, then `GET …/file` (a TAR);
//! - errors are `{status_code, error, code, message}`; 4xx are refusals
//!   (retrying the same request gives the same answer), 5xx are temporary.
//!
//! Our trait names a transaction by its TSE number, fiskaly by the UUID we
//! chose, so this backend keeps `number → (uuid, revision)` for the open
//! transactions it started, and after a restart recovers an entry by asking
//! fiskaly for the transaction by number.
//!
//! The API secret, the admin PIN and PUK and the tokens never go into
//! `Debug` output, error texts or logs.

use std::collections::HashMap;
use std::error::Error as _;
use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use rand::Rng as _;
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use tokio::time::Instant;

use super::{ExportFilter, SignedLog, TseBackend, TseError, TseInfo};

/// The fiskaly middleware, the host fiskaly wants every call to go to.
pub const DEFAULT_BASE_URL: &str = "https://kassensichv-middleware.fiskaly.com/api/v2";
/// fiskaly recommends 3 to 5 s for the transaction calls: longer and the
/// till waits, shorter and a slow but working TSE counts as an outage.
pub const DEFAULT_REQUEST_TIMEOUT_MS: u64 = 5000;
/// fiskaly recommends at least 30 s for creating and personalising a TSS.
const SETUP_TIMEOUT: Duration = Duration::from_secs(30);
/// A TAR export can be large; its download gets more time than a signature.
const EXPORT_FILE_TIMEOUT: Duration = Duration::from_secs(120);
/// fiskaly allows 12 status requests per minute and export, so poll no
/// faster than every 5 s; 10 s leaves room for a retry.
pub const DEFAULT_EXPORT_POLL_INTERVAL: Duration = Duration::from_secs(10);
/// Ten minutes of polling; fiskaly says a big export can take an hour, the
/// caller then triggers a narrower one.
pub const DEFAULT_EXPORT_MAX_POLLS: u32 = 60;
/// Used when `/auth` gives neither `access_token_expires_in` nor
/// `access_token_expires_at` (assumed: the documented example says 600 s).
const DEFAULT_TOKEN_LIFETIME_S: u64 = 600;
/// fiskaly's `AdminPin` schema: at least 6 characters.
const MIN_ADMIN_PIN_CHARS: usize = 6;
/// DSFinV-K and fiskaly's `ClientSerialNumber`: at most 70 characters.
const MAX_CLIENT_SERIAL_CHARS: usize = 70;
/// Error messages from fiskaly are cut here so that a runaway body cannot
/// flood logs and receipts.
const MAX_MESSAGE_CHARS: usize = 300;
/// DER `SubjectPublicKeyInfo` header of a P-256 key; fiskaly is documented
/// to give the bare point, this header is stripped if it ever sends SPKI.
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

fn default_base_url() -> String {
    DEFAULT_BASE_URL.to_owned()
}

fn default_request_timeout_ms() -> u64 {
    DEFAULT_REQUEST_TIMEOUT_MS
}

/// How to reach one fiskaly TSS as one fiskaly client.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FiskalyConfig {
    /// Up to and including `/api/v2`.
    #[serde(default = "default_base_url")]
    pub base_url: String,
    pub api_key: String,
    /// Never printed: `Debug` shows `<redacted>`.
    pub api_secret: String,
    /// The TSS UUID (chosen by us when the TSS was created).
    pub tss_id: String,
    /// The fiskaly client UUID of this edge box; its `serial_number` at
    /// fiskaly is the ERS serial the trait calls `client_id`.
    pub client_id: String,
    /// Needed only to register the client (an admin operation).
    #[serde(default)]
    pub admin_pin: Option<String>,
    /// Per HTTP request, not per TSE call.
    #[serde(default = "default_request_timeout_ms")]
    pub request_timeout_ms: u64,
}

impl fmt::Debug for FiskalyConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FiskalyConfig")
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key)
            .field("api_secret", &"<redacted>")
            .field("tss_id", &self.tss_id)
            .field("client_id", &self.client_id)
            .field("admin_pin", &self.admin_pin.as_ref().map(|_| "<redacted>"))
            .field("request_timeout_ms", &self.request_timeout_ms)
            .finish()
    }
}

impl FiskalyConfig {
    /// Checks every field; the error names the first bad one (and never
    /// repeats a secret).
    pub fn validate(&self) -> Result<(), String> {
        let url = self.base_url.trim();
        let host = url
            .strip_prefix("https://")
            .or_else(|| url.strip_prefix("http://"));
        if host.is_none_or(|rest| rest.is_empty() || rest.starts_with('/')) {
            return Err(format!(
                "base_url must be an http(s) URL such as {DEFAULT_BASE_URL}, got {:?}",
                self.base_url
            ));
        }
        if self.api_key.trim().is_empty() {
            return Err("api_key is empty".to_owned());
        }
        if self.api_secret.trim().is_empty() {
            return Err("api_secret is empty".to_owned());
        }
        if !is_uuid(&self.tss_id) {
            return Err(format!(
                "tss_id must be a UUID (8-4-4-4-12 hex digits), got {:?}",
                self.tss_id
            ));
        }
        if !is_uuid(&self.client_id) {
            return Err(format!(
                "client_id must be the fiskaly client UUID (8-4-4-4-12 hex digits), got {:?}",
                self.client_id
            ));
        }
        if let Some(pin) = &self.admin_pin
            && pin.chars().count() < MIN_ADMIN_PIN_CHARS
        {
            return Err(format!(
                "admin_pin must have at least {MIN_ADMIN_PIN_CHARS} characters"
            ));
        }
        if !(1..=600_000).contains(&self.request_timeout_ms) {
            return Err(format!(
                "request_timeout_ms must be 1 to 600000, got {}",
                self.request_timeout_ms
            ));
        }
        Ok(())
    }
}

/// A bearer token and when to stop using it.
struct Token {
    access: String,
    /// Renewal happens at 90 % of the lifetime so that a request never
    /// leaves with a token that expires on the way.
    renew_at: Instant,
    refresh: Option<String>,
    refresh_until: Option<Instant>,
}

/// What we know of a transaction we may still update.
#[derive(Debug, Clone)]
struct OpenTx {
    tx_id: String,
    revision: u64,
}

/// One HTTP exchange with fiskaly.
struct Request {
    method: Method,
    path: String,
    query: Vec<(&'static str, String)>,
    body: Option<Value>,
    timeout: Duration,
    /// A 401 normally means the token died and one re-authentication and
    /// retry fixes it; for the admin login a 401 means a wrong PIN, and a
    /// retry would burn a second of the five attempts before the PIN blocks.
    retry_on_401: bool,
}

impl Request {
    fn new(method: Method, path: String, timeout: Duration) -> Self {
        Self {
            method,
            path,
            query: Vec::new(),
            body: None,
            timeout,
            retry_on_401: true,
        }
    }

    fn query(mut self, query: Vec<(&'static str, String)>) -> Self {
        self.query = query;
        self
    }

    fn body(mut self, body: Value) -> Self {
        self.body = Some(body);
        self
    }

    fn what(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

/// The fiskaly SIGN DE v2 cloud TSE.
pub struct FiskalyTse {
    config: FiskalyConfig,
    /// `config.base_url` without a trailing slash.
    base_url: String,
    http: reqwest::Client,
    timeout: Duration,
    token: Option<Token>,
    open: HashMap<u64, OpenTx>,
    /// The ERS serial fiskaly has for `config.client_id`, once known.
    client_serial: Option<String>,
    /// Shown by fiskaly once, when [`FiskalyTse::set_up_tss`] creates the TSS.
    admin_puk: Option<String>,
    export_poll_interval: Duration,
    export_max_polls: u32,
}

impl fmt::Debug for FiskalyTse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FiskalyTse")
            .field("config", &self.config)
            .field("authenticated", &self.token.is_some())
            .field("open_transactions", &self.open.len())
            .field("client_serial", &self.client_serial)
            .finish_non_exhaustive()
    }
}

impl FiskalyTse {
    /// Checks the configuration and prepares the HTTP client; nothing is
    /// sent until the first call.
    pub fn new(config: FiskalyConfig) -> Result<Self, String> {
        config.validate()?;
        let mut config = config;
        // fiskaly lower-cases every UUID it receives; doing it here keeps our
        // comparisons with its answers exact.
        config.tss_id = config.tss_id.to_ascii_lowercase();
        config.client_id = config.client_id.to_ascii_lowercase();
        let timeout = Duration::from_millis(config.request_timeout_ms);
        let http = reqwest::Client::builder()
            .connect_timeout(timeout)
            .timeout(timeout)
            .build()
            .map_err(|e| format!("cannot build the HTTP client for fiskaly: {e}"))?;
        Ok(Self {
            base_url: config.base_url.trim().trim_end_matches('/').to_owned(),
            config,
            http,
            timeout,
            token: None,
            open: HashMap::new(),
            client_serial: None,
            admin_puk: None,
            export_poll_interval: DEFAULT_EXPORT_POLL_INTERVAL,
            export_max_polls: DEFAULT_EXPORT_MAX_POLLS,
        })
    }

    /// How often and how long [`TseBackend::export`] waits for fiskaly to
    /// build the TAR (defaults: every 10 s, 60 times).
    #[must_use]
    pub fn with_export_polling(mut self, interval: Duration, max_polls: u32) -> Self {
        self.export_poll_interval = interval;
        self.export_max_polls = max_polls;
        self
    }

    /// The admin PUK fiskaly showed when [`FiskalyTse::set_up_tss`] created
    /// the TSS. fiskaly shows it only once and it is the only way to unblock
    /// the admin PIN, so the caller must store it somewhere safe.
    pub fn admin_puk(&self) -> Option<&str> {
        self.admin_puk.as_deref()
    }

    /// Takes the TSS through its life cycle up to `INITIALIZED`: create it
    /// (state `CREATED`, fiskaly shows the admin PUK), `UNINITIALIZED`, set
    /// the admin PIN with the PUK, log in as admin, `INITIALIZED`, log out.
    /// Resumes from whatever state the TSS is in, so it can be called again
    /// after a failure; an `INITIALIZED` TSS is left alone.
    ///
    /// A run that dies between `UNINITIALIZED` and setting the PIN cannot be
    /// resumed without the PUK ([`FiskalyTse::admin_puk`]).
    pub async fn set_up_tss(&mut self, admin_pin: &str) -> Result<(), TseError> {
        if admin_pin.chars().count() < MIN_ADMIN_PIN_CHARS {
            return Err(TseError::Refused(format!(
                "the admin PIN must have at least {MIN_ADMIN_PIN_CHARS} characters"
            )));
        }
        let timeout = SETUP_TIMEOUT.max(self.timeout);
        let tss_path = format!("/tss/{}", self.config.tss_id);
        let mut state = self.tss_state(timeout).await?;
        if state.as_deref().is_none_or(|s| s == "CREATED") {
            let request = Request::new(Method::PUT, tss_path.clone(), timeout).body(json!({}));
            let created: TssAnswer = self.call_json(&request).await?;
            let puk = created.admin_puk.ok_or_else(|| {
                TseError::Garbage(format!(
                    "{}: the answer has no admin_puk (fiskaly shows it only once; \
                     without it the admin PIN cannot be set)",
                    request.what()
                ))
            })?;
            self.admin_puk = Some(puk.clone());
            tracing::info!(tss = %self.config.tss_id, "fiskaly TSS created");
            let request = Request::new(Method::PATCH, tss_path.clone(), timeout)
                .body(json!({"state": "UNINITIALIZED"}));
            self.call(&request).await?;
            let request = Request::new(Method::PATCH, format!("{tss_path}/admin"), timeout)
                .body(json!({"admin_puk": puk, "new_admin_pin": admin_pin}));
            self.call(&request).await?;
            state = Some("UNINITIALIZED".to_owned());
        }
        if state.as_deref() == Some("UNINITIALIZED") {
            self.admin_login(admin_pin, timeout).await?;
            let request = Request::new(Method::PATCH, tss_path, timeout)
                .body(json!({"state": "INITIALIZED"}));
            let initialized = self.call(&request).await;
            let logout = self.admin_logout(timeout).await;
            initialized?;
            logout?;
            tracing::info!(tss = %self.config.tss_id, "fiskaly TSS initialized");
            state = Some("INITIALIZED".to_owned());
        }
        match state.as_deref() {
            Some("INITIALIZED") => Ok(()),
            other => Err(TseError::Refused(format!(
                "TSS {} is {}; only a CREATED or UNINITIALIZED TSS can be set up",
                self.config.tss_id,
                other.unwrap_or("in no state")
            ))),
        }
    }

    /// The TSS state, `None` when fiskaly does not know the TSS.
    async fn tss_state(&mut self, timeout: Duration) -> Result<Option<String>, TseError> {
        let request = Request::new(Method::GET, format!("/tss/{}", self.config.tss_id), timeout);
        let (status, body) = self.exchange(&request).await?;
        if status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !status.is_success() {
            return Err(error_from_status(status, &body, &request.what()));
        }
        let tss: TssAnswer = parse(&body, &request.what())?;
        tss.state.map(Some).ok_or_else(|| {
            TseError::Garbage(format!("{}: the answer has no `state`", request.what()))
        })
    }

    async fn admin_login(&mut self, pin: &str, timeout: Duration) -> Result<(), TseError> {
        let mut request = Request::new(
            Method::POST,
            format!("/tss/{}/admin/auth", self.config.tss_id),
            timeout,
        )
        .body(json!({"admin_pin": pin}));
        request.retry_on_401 = false;
        self.call(&request).await.map(drop)
    }

    async fn admin_logout(&mut self, timeout: Duration) -> Result<(), TseError> {
        let request = Request::new(
            Method::POST,
            format!("/tss/{}/admin/logout", self.config.tss_id),
            timeout,
        )
        .body(json!({}));
        self.call(&request).await.map(drop)
    }

    /// Our fiskaly client, `None` when fiskaly does not know it.
    async fn fetch_client(&mut self) -> Result<Option<ClientAnswer>, TseError> {
        let request = Request::new(Method::GET, self.client_path(), self.timeout);
        let (status, body) = self.exchange(&request).await?;
        if status == StatusCode::NOT_FOUND
            && error_code(&body).as_deref() != Some("E_TSS_NOT_FOUND")
        {
            return Ok(None);
        }
        if !status.is_success() {
            return Err(error_from_status(status, &body, &request.what()));
        }
        parse(&body, &request.what()).map(Some)
    }

    /// Refuses to sign for an ERS serial other than the one fiskaly has for
    /// our client UUID: the log would carry the wrong cash register.
    async fn check_client(&mut self, ers_serial: &str) -> Result<(), TseError> {
        let known = match &self.client_serial {
            Some(serial) => serial.clone(),
            None => {
                let client = self.fetch_client().await?.ok_or_else(|| {
                    TseError::Refused(format!(
                        "fiskaly client {} does not exist on TSS {}; register it first",
                        self.config.client_id, self.config.tss_id
                    ))
                })?;
                let serial = client.serial_number.ok_or_else(|| {
                    TseError::Garbage(format!(
                        "GET {}: the answer has no `serial_number`",
                        self.client_path()
                    ))
                })?;
                self.client_serial = Some(serial.clone());
                serial
            }
        };
        if known == ers_serial {
            Ok(())
        } else {
            Err(TseError::Refused(format!(
                "ERS serial {ers_serial:?} is not the serial {known:?} of fiskaly client {}",
                self.config.client_id
            )))
        }
    }

    fn client_path(&self) -> String {
        format!(
            "/tss/{}/client/{}",
            self.config.tss_id, self.config.client_id
        )
    }

    async fn upsert(
        &mut self,
        tx_id: &str,
        revision: u64,
        state: &str,
        process_type: &str,
        process_data: &[u8],
    ) -> Result<(TxAnswer, String), TseError> {
        let request = Request::new(
            Method::PUT,
            format!("/tss/{}/tx/{tx_id}", self.config.tss_id),
            self.timeout,
        )
        .query(vec![("tx_revision", revision.to_string())])
        .body(json!({
            "state": state,
            "client_id": self.config.client_id,
            "schema": {"raw": {
                "process_type": process_type,
                "process_data": B64.encode(process_data),
            }},
        }));
        let answer = self.call_json(&request).await?;
        Ok((answer, request.what()))
    }

    /// Where a transaction stands: from our map, or after a restart from
    /// fiskaly (transactions can be fetched by number).
    async fn open_tx(&mut self, number: u64) -> Result<OpenTx, TseError> {
        if let Some(open) = self.open.get(&number) {
            return Ok(open.clone());
        }
        let request = Request::new(
            Method::GET,
            format!("/tss/{}/tx/{number}", self.config.tss_id),
            self.timeout,
        );
        let what = request.what();
        let answer: TxAnswer = self.call_json(&request).await?;
        let garbage =
            |field: &str| TseError::Garbage(format!("{what}: the answer has no `{field}`"));
        let state = answer.state.as_deref().ok_or_else(|| garbage("state"))?;
        if state != "ACTIVE" {
            return Err(TseError::Refused(format!(
                "transaction {number} is {state} at fiskaly and cannot change any more"
            )));
        }
        if let Some(owner) = &answer.client_id
            && !owner.eq_ignore_ascii_case(&self.config.client_id)
        {
            return Err(TseError::Refused(format!(
                "transaction {number} belongs to fiskaly client {owner}, not to {}",
                self.config.client_id
            )));
        }
        let open = OpenTx {
            tx_id: answer.id.clone().ok_or_else(|| garbage("_id"))?,
            revision: answer
                .latest_revision
                .as_ref()
                .and_then(as_u64)
                .ok_or_else(|| garbage("latest_revision"))?,
        };
        self.open.insert(number, open.clone());
        Ok(open)
    }

    /// Update (`ACTIVE`) or finish (`FINISHED`) an open transaction.
    async fn continue_tx(
        &mut self,
        ers_serial: &str,
        number: u64,
        state: &str,
        process_type: &str,
        process_data: &[u8],
    ) -> Result<SignedLog, TseError> {
        self.check_client(ers_serial).await?;
        let open = self.open_tx(number).await?;
        let revision = open.revision.checked_add(1).ok_or_else(|| {
            TseError::Refused(format!("transaction {number} has no revision left"))
        })?;
        let result = self
            .upsert(&open.tx_id, revision, state, process_type, process_data)
            .await;
        let (answer, what) = match result {
            Ok(done) => done,
            Err(TseError::Refused(reason)) => {
                // Our revision may be stale (someone else moved the
                // transaction on); the next call reads it afresh.
                self.open.remove(&number);
                return Err(TseError::Refused(reason));
            }
            Err(other) => return Err(other),
        };
        let log = signed_log(&answer, Some(number), &what)?;
        if state == "FINISHED" {
            self.open.remove(&number);
        } else if let Some(open) = self.open.get_mut(&number) {
            open.revision = answer
                .revision
                .as_ref()
                .and_then(as_u64)
                .unwrap_or(revision);
        }
        Ok(log)
    }

    /// fiskaly filters exports by client UUID; our filter names the ERS
    /// serial (or, accepted as well, the UUID itself).
    async fn export_client_uuid(&mut self, client: &str) -> Result<String, TseError> {
        if is_uuid(client) {
            return Ok(client.to_ascii_lowercase());
        }
        self.check_client(client).await?;
        Ok(self.config.client_id.clone())
    }

    async fn access_token(&mut self) -> Result<String, TseError> {
        let now = Instant::now();
        if let Some(token) = &self.token
            && now < token.renew_at
        {
            return Ok(token.access.clone());
        }
        if let Some(Token {
            refresh: Some(refresh),
            refresh_until,
            ..
        }) = self.token.take()
            && refresh_until.is_none_or(|until| now < until)
        {
            match self
                .authenticate(json!({"refresh_token": refresh}), "refresh token")
                .await
            {
                Ok(token) => {
                    let access = token.access.clone();
                    self.token = Some(token);
                    return Ok(access);
                }
                // A refused refresh token is no reason to give up while the
                // API key still works.
                Err(TseError::Refused(reason)) => {
                    tracing::info!(%reason, "fiskaly refused the refresh token; using the API key");
                }
                Err(other) => return Err(other),
            }
        }
        let credentials = json!({
            "api_key": self.config.api_key,
            "api_secret": self.config.api_secret,
        });
        let token = self.authenticate(credentials, "API key").await?;
        let access = token.access.clone();
        self.token = Some(token);
        Ok(access)
    }

    async fn authenticate(&self, body: Value, with: &str) -> Result<Token, TseError> {
        let request = Request::new(Method::POST, "/auth".to_owned(), self.timeout).body(body);
        let (status, answer) = self.send(&request, None).await?;
        if !status.is_success() {
            return Err(error_from_status(status, &answer, &request.what()));
        }
        let answer: AuthAnswer = parse(&answer, &request.what())?;
        let now = Instant::now();
        let access = answer
            .access_token
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                TseError::Garbage("POST /auth: the answer has no access_token".into())
            })?;
        let lifetime_s = answer
            .access_token_expires_in
            .or_else(|| {
                answer
                    .access_token_expires_at
                    .map(|at| u64::try_from(at - chrono::Utc::now().timestamp()).unwrap_or(0))
            })
            .unwrap_or(DEFAULT_TOKEN_LIFETIME_S);
        tracing::info!(with, lifetime_s, "authenticated at fiskaly");
        Ok(Token {
            access,
            renew_at: now + ninety_percent(lifetime_s),
            refresh: answer.refresh_token.filter(|t| !t.is_empty()),
            refresh_until: answer
                .refresh_token_expires_in
                .map(|s| now + ninety_percent(s)),
        })
    }

    /// Sends with a valid token; on a 401 re-authenticates once and sends
    /// once more. Any status comes back; transport failures are errors.
    async fn exchange(&mut self, request: &Request) -> Result<(StatusCode, Vec<u8>), TseError> {
        let mut reauthenticated = false;
        loop {
            let token = self.access_token().await?;
            let (status, body) = self.send(request, Some(&token)).await?;
            if status == StatusCode::UNAUTHORIZED && request.retry_on_401 && !reauthenticated {
                tracing::info!(call = %request.what(), "fiskaly rejected the token; authenticating again");
                self.token = None;
                reauthenticated = true;
                continue;
            }
            return Ok((status, body));
        }
    }

    /// [`FiskalyTse::exchange`], with a non-2xx status turned into an error.
    async fn call(&mut self, request: &Request) -> Result<Vec<u8>, TseError> {
        let (status, body) = self.exchange(request).await?;
        if status.is_success() {
            Ok(body)
        } else {
            Err(error_from_status(status, &body, &request.what()))
        }
    }

    async fn call_json<T: DeserializeOwned>(&mut self, request: &Request) -> Result<T, TseError> {
        let body = self.call(request).await?;
        parse(&body, &request.what())
    }

    async fn send(
        &self,
        request: &Request,
        bearer: Option<&str>,
    ) -> Result<(StatusCode, Vec<u8>), TseError> {
        let url = format!("{}{}", self.base_url, request.path);
        let mut builder = self
            .http
            .request(request.method.clone(), &url)
            .timeout(request.timeout);
        if !request.query.is_empty() {
            builder = builder.query(&request.query);
        }
        if let Some(token) = bearer {
            builder = builder.bearer_auth(token);
        }
        if let Some(body) = &request.body {
            builder = builder.json(body);
        }
        let response = builder
            .send()
            .await
            .map_err(|e| transport_error(&e, &request.what(), request.timeout))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| transport_error(&e, &request.what(), request.timeout))?;
        tracing::debug!(call = %request.what(), status = status.as_u16(), "fiskaly answered");
        Ok((status, body.to_vec()))
    }
}

#[async_trait]
impl TseBackend for FiskalyTse {
    async fn info(&mut self) -> Result<TseInfo, TseError> {
        let request = Request::new(
            Method::GET,
            format!("/tss/{}", self.config.tss_id),
            self.timeout,
        );
        let what = request.what();
        let tss: TssAnswer = self.call_json(&request).await?;
        let garbage = |why: String| TseError::Garbage(format!("{what}: {why}"));
        let public_key = tss
            .public_key
            .as_deref()
            .ok_or_else(|| garbage("the answer has no `public_key`".into()))?;
        let point = uncompressed_point(public_key).map_err(garbage)?;
        let serial = tss
            .serial_number
            .as_deref()
            .ok_or_else(|| garbage("the answer has no `serial_number`".into()))?
            .to_ascii_lowercase();
        // TR-03116-5: the serial is SHA-256 over the public key; a mismatch
        // means the answer is not describing the key that signs.
        let expected = hex::encode(Sha256::digest(&point));
        if serial != expected {
            return Err(garbage(format!(
                "serial_number {serial} is not SHA-256 of public_key ({expected})"
            )));
        }
        let certificate_base64 = tss.certificate.as_deref().and_then(|text| {
            let der = certificate_der_base64(text);
            if der.is_none() {
                tracing::warn!("fiskaly certificate is neither PEM nor base64 DER; left out");
            }
            der
        });
        let version = match (&tss.bsi_certification_id, &tss.version) {
            (Some(certification), Some(api)) => format!("{certification} (API {api})"),
            (Some(certification), None) => certification.clone(),
            (None, Some(api)) => format!("API {api}"),
            (None, None) => "SIGN DE v2".to_owned(),
        };
        Ok(TseInfo {
            serial_hex: serial,
            public_key_base64: B64.encode(&point),
            signature_algorithm: tss
                .signature_algorithm
                .unwrap_or_else(|| "ecdsa-plain-SHA256".to_owned()),
            time_format: tss
                .signature_timestamp_format
                .unwrap_or_else(|| "unixTime".to_owned()),
            certificate_base64,
            certified: true,
            description: tss
                .description
                .filter(|d| !d.is_empty())
                .unwrap_or_else(|| format!("fiskaly sign cloud-TSE ({})", self.config.tss_id)),
            manufacturer: "fiskaly GmbH".to_owned(),
            version,
        })
    }

    /// Creates the fiskaly client with `ers_serial` as its `serial_number`
    /// (an admin operation: logs in with the configured admin PIN and out
    /// again). A client that already has this serial and is `REGISTERED` is
    /// fine as it is.
    async fn register_client(&mut self, ers_serial: &str) -> Result<(), TseError> {
        check_client_serial(ers_serial)?;
        if let Some(client) = self.fetch_client().await? {
            let serial = client.serial_number.as_deref().unwrap_or_default();
            let state = client.state.as_deref().unwrap_or_default();
            if serial != ers_serial {
                return Err(TseError::Refused(format!(
                    "fiskaly client {} already has serial {serial:?}, not {ers_serial:?}",
                    self.config.client_id
                )));
            }
            if state != "REGISTERED" {
                return Err(TseError::Refused(format!(
                    "fiskaly client {} is {state:?}; re-register it as admin",
                    self.config.client_id
                )));
            }
            self.client_serial = Some(ers_serial.to_owned());
            return Ok(());
        }
        let pin = self.config.admin_pin.clone().ok_or_else(|| {
            TseError::Refused("registering a client is an admin operation: set admin_pin".into())
        })?;
        self.admin_login(&pin, self.timeout).await?;
        let request = Request::new(Method::PUT, self.client_path(), self.timeout)
            .body(json!({"serial_number": ers_serial}));
        let created: Result<ClientAnswer, TseError> = self.call_json(&request).await;
        let logout = self.admin_logout(self.timeout).await;
        let created = created?;
        logout?;
        if created.serial_number.as_deref() != Some(ers_serial) {
            return Err(TseError::Garbage(format!(
                "{}: the answer has serial_number {:?}, not {ers_serial:?}",
                request.what(),
                created.serial_number
            )));
        }
        tracing::info!(client = %self.config.client_id, ers_serial, "fiskaly client registered");
        self.client_serial = Some(ers_serial.to_owned());
        Ok(())
    }

    /// A no-op: the cloud TSE keeps its own time (fiskaly has no call to set
    /// it), and TR-03153 time setting concerns local TSEs.
    async fn update_time(&mut self, _now_unix: i64) -> Result<(), TseError> {
        Ok(())
    }

    /// A no-op: fiskaly runs the self tests of its SMAERS and CSP-L itself
    /// and offers no call for it.
    async fn self_test(&mut self) -> Result<(), TseError> {
        Ok(())
    }

    async fn start_transaction(
        &mut self,
        client_id: &str,
        process_type: &str,
        process_data: &[u8],
    ) -> Result<SignedLog, TseError> {
        self.check_client(client_id).await?;
        let tx_id = uuid_v4();
        let (answer, what) = self
            .upsert(&tx_id, 1, "ACTIVE", process_type, process_data)
            .await?;
        let log = signed_log(&answer, None, &what)?;
        let revision = answer.revision.as_ref().and_then(as_u64).unwrap_or(1);
        self.open
            .insert(log.transaction_number, OpenTx { tx_id, revision });
        Ok(log)
    }

    async fn update_transaction(
        &mut self,
        client_id: &str,
        transaction_number: u64,
        process_type: &str,
        process_data: &[u8],
    ) -> Result<SignedLog, TseError> {
        self.continue_tx(
            client_id,
            transaction_number,
            "ACTIVE",
            process_type,
            process_data,
        )
        .await
    }

    async fn finish_transaction(
        &mut self,
        client_id: &str,
        transaction_number: u64,
        process_type: &str,
        process_data: &[u8],
    ) -> Result<SignedLog, TseError> {
        self.continue_tx(
            client_id,
            transaction_number,
            "FINISHED",
            process_type,
            process_data,
        )
        .await
    }

    /// Triggers a TAR export, waits until fiskaly has built it and downloads
    /// it. With a client filter fiskaly ignores the date filters (documented
    /// in triggerExport), so the TAR then holds all logs of that client.
    async fn export(&mut self, filter: &ExportFilter) -> Result<Vec<u8>, TseError> {
        let mut query = Vec::new();
        for (name, value) in [
            ("start_date", filter.start_unix),
            ("end_date", filter.end_unix),
        ] {
            if let Some(value) = value {
                if value < 0 {
                    return Err(TseError::Refused(format!(
                        "export {name} must not be before 1970, got {value}"
                    )));
                }
                query.push((name, value.to_string()));
            }
        }
        if let Some(client) = &filter.client_id {
            if !query.is_empty() {
                tracing::warn!("fiskaly ignores the date filters of a client export");
            }
            query = vec![("client_id", self.export_client_uuid(client).await?)];
        }
        let export_id = uuid_v4();
        let path = format!("/tss/{}/export/{export_id}", self.config.tss_id);
        let request = Request::new(Method::PUT, path.clone(), self.timeout)
            .query(query)
            .body(json!({}));
        let mut answer: ExportAnswer = self.call_json(&request).await?;
        let mut polls = 0_u32;
        loop {
            match answer.state.as_deref() {
                Some("COMPLETED") => break,
                Some("PENDING" | "WORKING") => {}
                Some(state @ ("ERROR" | "CANCELLED")) => {
                    return Err(TseError::Refused(format!(
                        "export {export_id} ended in state {state} ({})",
                        answer.exception.as_deref().unwrap_or("no exception given")
                    )));
                }
                Some(other) => {
                    return Err(TseError::Garbage(format!(
                        "GET {path}: unknown export state {other:?}"
                    )));
                }
                None => {
                    return Err(TseError::Garbage(format!(
                        "GET {path}: the answer has no `state`"
                    )));
                }
            }
            if polls >= self.export_max_polls {
                let waited = self
                    .export_poll_interval
                    .saturating_mul(self.export_max_polls);
                tracing::warn!(%export_id, "fiskaly export not ready in time");
                return Err(TseError::Timeout(millis(waited)));
            }
            polls += 1;
            tokio::time::sleep(self.export_poll_interval).await;
            answer = self
                .call_json(&Request::new(Method::GET, path.clone(), self.timeout))
                .await?;
        }
        let request = Request::new(
            Method::GET,
            format!("{path}/file"),
            EXPORT_FILE_TIMEOUT.max(self.timeout),
        );
        let tar = self.call(&request).await?;
        // Every TAR header block (ustar or pax) carries "ustar" at 257.
        if tar.get(257..262) != Some(b"ustar".as_slice()) {
            return Err(TseError::Garbage(format!(
                "{}: the file ({} bytes) is not a TAR archive",
                request.what(),
                tar.len()
            )));
        }
        Ok(tar)
    }
}

/// `POST /auth`.
#[derive(Deserialize)]
struct AuthAnswer {
    access_token: Option<String>,
    access_token_expires_in: Option<u64>,
    access_token_expires_at: Option<i64>,
    refresh_token: Option<String>,
    refresh_token_expires_in: Option<u64>,
}

/// The TSS resource (fields we use).
#[derive(Deserialize)]
struct TssAnswer {
    state: Option<String>,
    serial_number: Option<String>,
    public_key: Option<String>,
    certificate: Option<String>,
    signature_algorithm: Option<String>,
    signature_timestamp_format: Option<String>,
    description: Option<String>,
    bsi_certification_id: Option<String>,
    admin_puk: Option<String>,
    #[serde(rename = "_version")]
    version: Option<String>,
}

/// The client resource.
#[derive(Deserialize)]
struct ClientAnswer {
    serial_number: Option<String>,
    state: Option<String>,
}

/// The transaction resource. Counters and numbers are taken as any JSON
/// value: the schema says string, the middleware sends numbers (fiskaly
/// "Known issues"), and a missing field must name itself, not fail parsing.
#[derive(Deserialize)]
struct TxAnswer {
    #[serde(rename = "_id")]
    id: Option<String>,
    number: Option<Value>,
    state: Option<String>,
    client_id: Option<String>,
    revision: Option<Value>,
    latest_revision: Option<Value>,
    log: Option<TxLogAnswer>,
    signature: Option<TxSignatureAnswer>,
}

#[derive(Deserialize)]
struct TxLogAnswer {
    timestamp: Option<Value>,
}

#[derive(Deserialize)]
struct TxSignatureAnswer {
    value: Option<String>,
    counter: Option<Value>,
}

/// The export resource.
#[derive(Deserialize)]
struct ExportAnswer {
    state: Option<String>,
    exception: Option<String>,
}

/// fiskaly's error body.
#[derive(Deserialize)]
struct ErrorAnswer {
    code: Option<String>,
    message: Option<String>,
    error: Option<String>,
}

fn signed_log(answer: &TxAnswer, expected: Option<u64>, what: &str) -> Result<SignedLog, TseError> {
    let missing =
        |field: &str| TseError::Garbage(format!("{what}: the answer has no valid `{field}`"));
    let number = match (answer.number.as_ref().and_then(as_u64), expected) {
        (Some(number), Some(expected)) if number != expected => {
            return Err(TseError::Garbage(format!(
                "{what}: fiskaly answered transaction number {number}, expected {expected}"
            )));
        }
        (Some(number), _) | (None, Some(number)) => number,
        (None, None) => return Err(missing("number")),
    };
    let signature = answer
        .signature
        .as_ref()
        .ok_or_else(|| missing("signature"))?;
    let counter = signature
        .counter
        .as_ref()
        .and_then(as_u64)
        .ok_or_else(|| missing("signature.counter"))?;
    let value = signature
        .value
        .as_deref()
        .filter(|v| B64.decode(v).is_ok_and(|bytes| !bytes.is_empty()))
        .ok_or_else(|| missing("signature.value"))?;
    let log_time = answer
        .log
        .as_ref()
        .and_then(|log| log.timestamp.as_ref())
        .and_then(as_i64)
        .ok_or_else(|| missing("log.timestamp"))?;
    Ok(SignedLog {
        transaction_number: number,
        signature_counter: counter,
        log_time_unix: log_time,
        signature_base64: value.to_owned(),
        log_message_base64: None,
    })
}

fn parse<T: DeserializeOwned>(body: &[u8], what: &str) -> Result<T, TseError> {
    serde_json::from_slice(body).map_err(|e| {
        TseError::Garbage(format!("{what}: the answer is not the expected JSON ({e})"))
    })
}

fn error_code(body: &[u8]) -> Option<String> {
    serde_json::from_slice::<ErrorAnswer>(body).ok()?.code
}

/// 5xx, 429 (rate limit) and 499 (connection closed early) are temporary:
/// the TSE is unavailable. Other 4xx are refusals.
fn error_from_status(status: StatusCode, body: &[u8], what: &str) -> TseError {
    let answer = serde_json::from_slice::<ErrorAnswer>(body).ok();
    let (code, message) = match answer {
        Some(a) => (a.code, a.message.or(a.error)),
        None => (None, None),
    };
    let message = message.map(|m| m.chars().take(MAX_MESSAGE_CHARS).collect::<String>());
    let detail = match (code, message) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        (Some(code), None) => code,
        (None, Some(message)) => message,
        (None, None) => "no fiskaly error body".to_owned(),
    };
    let code = status.as_u16();
    if status.is_server_error() || code == 429 || code == 499 {
        TseError::Unavailable(format!("{what}: HTTP {code} {detail}"))
    } else if status.is_client_error() {
        TseError::Refused(format!("{detail} ({what}, HTTP {code})"))
    } else {
        TseError::Garbage(format!("{what}: unexpected HTTP {code} ({detail})"))
    }
}

fn transport_error(error: &reqwest::Error, what: &str, timeout: Duration) -> TseError {
    if error.is_timeout() {
        return TseError::Timeout(millis(timeout));
    }
    // reqwest's own text is generic ("error sending request"); the causes
    // say what happened (refused, DNS, TLS).
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    TseError::Unavailable(format!("{what}: {text}"))
}

fn as_u64(value: &Value) -> Option<u64> {
    match value {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

fn as_i64(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

fn ninety_percent(seconds: u64) -> Duration {
    Duration::from_millis(seconds.saturating_mul(900))
}

/// `8-4-4-4-12` hex digits.
fn is_uuid(text: &str) -> bool {
    text.len() == 36
        && text.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// A random (version 4) UUID, as fiskaly wants for new resources.
fn uuid_v4() -> String {
    let mut bytes = [0_u8; 16];
    rand::rng().fill(&mut bytes);
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex = hex::encode(bytes);
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// The ERS serial becomes the TSE clientId and a file name in the TAR:
/// TR-03151-1 allows `A-Z a-z 0-9 ' ( ) + , - . =` and space, DSFinV-K at
/// most 70 characters, fiskaly no leading or trailing space.
fn check_client_serial(serial: &str) -> Result<(), TseError> {
    let length = serial.chars().count();
    if length == 0 || length > MAX_CLIENT_SERIAL_CHARS {
        return Err(TseError::Refused(format!(
            "ERS serial must have 1 to {MAX_CLIENT_SERIAL_CHARS} characters, got {length}"
        )));
    }
    if let Some(bad) = serial
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || " '()+,-.=".contains(*c)))
    {
        return Err(TseError::Refused(format!(
            "ERS serial {serial:?} contains {bad:?}; allowed are A-Z a-z 0-9 space ' ( ) + , - . ="
        )));
    }
    if serial.starts_with(' ') || serial.ends_with(' ') {
        return Err(TseError::Refused(format!(
            "ERS serial {serial:?} starts or ends with a space"
        )));
    }
    Ok(())
}

/// The public key as the uncompressed point `04‖X‖Y`, from fiskaly's base64
/// (the bare point, or a P-256 SubjectPublicKeyInfo).
fn uncompressed_point(public_key_base64: &str) -> Result<Vec<u8>, String> {
    let bytes = B64
        .decode(public_key_base64.trim())
        .map_err(|e| format!("public_key is not base64 ({e})"))?;
    if bytes.first() == Some(&0x04) && matches!(bytes.len(), 65 | 97 | 133) {
        return Ok(bytes);
    }
    if let Some(point) = bytes.strip_prefix(P256_SPKI_PREFIX.as_slice())
        && point.len() == 65
        && point[0] == 0x04
    {
        return Ok(point.to_vec());
    }
    Err(format!(
        "public_key ({} bytes) is not an uncompressed EC point",
        bytes.len()
    ))
}

/// The certificate as base64 DER. fiskaly's schema says "base64-encoded",
/// clients in the field read it as PEM text; both are accepted, and base64
/// of PEM too.
fn certificate_der_base64(text: &str) -> Option<String> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    if let Some(start) = text.find(BEGIN) {
        let rest = &text[start + BEGIN.len()..];
        let body: String = rest[..rest.find(END)?]
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        let der = B64.decode(body).ok()?;
        return (der.first() == Some(&0x30)).then(|| B64.encode(der));
    }
    let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    let decoded = B64.decode(compact).ok()?;
    if decoded.starts_with(b"-----BEGIN") {
        return certificate_der_base64(std::str::from_utf8(&decoded).ok()?);
    }
    (decoded.first() == Some(&0x30)).then(|| B64.encode(decoded))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> FiskalyConfig {
        FiskalyConfig {
            base_url: DEFAULT_BASE_URL.to_owned(),
            api_key: "test_key".to_owned(),
            api_secret: "s3cr3t-value".to_owned(),
            tss_id: "0b6f7c4e-3a52-4e0e-9d77-8d1b1f3b2a10".to_owned(),
            client_id: "5a3e2f10-7c1d-4b7e-8f3a-2e9d6c4b1a00".to_owned(),
            admin_pin: Some("123456".to_owned()),
            request_timeout_ms: 5000,
        }
    }

    #[test]
    fn config_defaults_and_unknown_fields() {
        let parsed: FiskalyConfig = serde_json::from_value(json!({
            "api_key": "k", "api_secret": "s",
            "tss_id": "0b6f7c4e-3a52-4e0e-9d77-8d1b1f3b2a10",
            "client_id": "5a3e2f10-7c1d-4b7e-8f3a-2e9d6c4b1a00",
        }))
        .unwrap();
        assert_eq!(parsed.base_url, DEFAULT_BASE_URL);
        assert_eq!(parsed.request_timeout_ms, 5000);
        assert_eq!(parsed.admin_pin, None);
        parsed.validate().unwrap();
        let unknown = serde_json::from_value::<FiskalyConfig>(json!({
            "api_key": "k", "api_secret": "s", "tss_id": "x", "client_id": "y", "secret": "z",
        }));
        assert!(unknown.unwrap_err().to_string().contains("secret"));
    }

    #[test]
    fn validate_names_the_bad_field() {
        type Spoil = fn(&mut FiskalyConfig);
        let cases: [(Spoil, &str); 7] = [
            (|c| c.base_url = "ftp://x".into(), "base_url"),
            (|c| c.api_key = " ".into(), "api_key"),
            (|c| c.api_secret = String::new(), "api_secret"),
            (|c| c.tss_id = "not-a-uuid".into(), "tss_id"),
            (|c| c.client_id = "ERS 1".into(), "client_id"),
            (|c| c.admin_pin = Some("123".into()), "admin_pin"),
            (|c| c.request_timeout_ms = 0, "request_timeout_ms"),
        ];
        for (spoil, field) in cases {
            let mut c = config();
            spoil(&mut c);
            let error = c.validate().unwrap_err();
            assert!(error.contains(field), "{error} should name {field}");
        }
    }

    #[test]
    fn debug_hides_secret_and_pin() {
        let text = format!("{:?}", config());
        assert!(!text.contains("s3cr3t-value"));
        assert!(!text.contains("123456"));
        let tse = FiskalyTse::new(config()).unwrap();
        assert!(!format!("{tse:?}").contains("s3cr3t-value"));
    }

    #[test]
    fn uuid_v4_has_version_and_variant() {
        for _ in 0..100 {
            let id = uuid_v4();
            assert!(is_uuid(&id), "{id}");
            assert_eq!(&id[14..15], "4");
            assert!(matches!(&id[19..20], "8" | "9" | "a" | "b"), "{id}");
        }
    }

    #[test]
    fn client_serials_follow_tr_03151() {
        check_client_serial("ERS 8cb8e2de-1.(a)+b,c=d'e").unwrap();
        for bad in [
            "",
            " ERS",
            "ERS ",
            "ERS_1",
            "ERS/1",
            "ERS:1",
            &"x".repeat(71),
        ] {
            assert!(check_client_serial(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn public_key_point_or_spki() {
        let mut point = vec![0x04];
        point.extend([7_u8; 64]);
        assert_eq!(uncompressed_point(&B64.encode(&point)).unwrap(), point);
        let mut spki = P256_SPKI_PREFIX.to_vec();
        spki.extend(&point);
        assert_eq!(uncompressed_point(&B64.encode(&spki)).unwrap(), point);
        assert!(uncompressed_point("!!").is_err());
        assert!(uncompressed_point(&B64.encode([2_u8; 33])).is_err());
    }

    #[test]
    fn certificate_pem_base64_pem_or_der() {
        let der = [0x30_u8, 0x03, 0x02, 0x01, 0x01];
        let der_b64 = B64.encode(der);
        let pem = format!("-----BEGIN CERTIFICATE-----\n{der_b64}\n-----END CERTIFICATE-----\n");
        assert_eq!(
            certificate_der_base64(&pem).as_deref(),
            Some(der_b64.as_str())
        );
        assert_eq!(
            certificate_der_base64(&B64.encode(&pem)).as_deref(),
            Some(der_b64.as_str())
        );
        assert_eq!(
            certificate_der_base64(&der_b64).as_deref(),
            Some(der_b64.as_str())
        );
        assert_eq!(certificate_der_base64("hello"), None);
    }

    #[test]
    fn error_bodies_map_to_refused_unavailable_garbage() {
        let body = br#"{"status_code":400,"error":"Bad Request","code":"E_TSS_NOT_INITIALIZED","message":"not initialized"}"#;
        assert_eq!(
            error_from_status(StatusCode::BAD_REQUEST, body, "PUT /x"),
            TseError::Refused("E_TSS_NOT_INITIALIZED: not initialized (PUT /x, HTTP 400)".into())
        );
        let unavailable = error_from_status(StatusCode::SERVICE_UNAVAILABLE, b"<html>", "GET /y");
        assert!(matches!(unavailable, TseError::Unavailable(ref t) if t.contains("503")));
        let limited = error_from_status(StatusCode::TOO_MANY_REQUESTS, b"", "GET /y");
        assert!(matches!(limited, TseError::Unavailable(_)));
    }

    #[test]
    fn signed_log_names_what_is_missing() {
        let answer: TxAnswer = serde_json::from_value(json!({
            "number": 3, "signature": {"value": "AAEC", "counter": "17"}, "log": {},
        }))
        .unwrap();
        let error = signed_log(&answer, None, "PUT /tx").unwrap_err();
        assert!(matches!(error, TseError::Garbage(ref t) if t.contains("log.timestamp")));
        let answer: TxAnswer = serde_json::from_value(json!({
            "number": 3, "signature": {"value": "AAEC", "counter": "17"},
            "log": {"timestamp": 1_700_000_000},
        }))
        .unwrap();
        let log = signed_log(&answer, Some(3), "PUT /tx").unwrap();
        assert_eq!((log.transaction_number, log.signature_counter), (3, 17));
        assert!(signed_log(&answer, Some(4), "PUT /tx").is_err());
    }
}
