//! A software TSE for development, demos and tests. It is NOT certified:
//! its signatures are worthless for tax purposes, and [`TseInfo::certified`]
//! says so.
//!
//! It behaves like a real one where callers can tell: TR-03151 version 2
//! log messages signed with a P-256 key (ecdsa-plain-SHA256, unixTime),
//! a signature counter over all logs, transaction numbers from 1, refusal
//! to sign transactions before the time is set, registered clients only,
//! and a TR-03151 TAR export with a (self-signed) certificate.
//!
//! Durability: every log message is its own file under `<dir>/logs/`,
//! written to a temporary file, fsynced, renamed and the directory fsynced
//! before the call returns, so a signature handed out is never lost and a
//! counter never reused. The state (counters, open transactions,
//! registered clients) is not stored separately but recovered from those
//! files on open: the logs are the only truth, as in a real TSE.
//!
//! File I/O is blocking: the TSE is driven by a single task
//! ([`super::TseHandle`]) and a log file is a few hundred bytes.
//!
//! [`TseFaults`] injects outages and slowness for tests and demos.

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use p256::ecdsa::signature::{Signer as _, Verifier as _};
use p256::ecdsa::{Signature, SigningKey};
use p256::pkcs8::{DecodePrivateKey as _, EncodePrivateKey as _};
use rand::RngCore as _;

use super::der::{self, DerError};
use super::export::{self, ExportError};
use super::logmsg::{self, LogError, LogKind, LogMessage, LogTime, Operation, SigningContext};
use super::{ExportFilter, SignedLog, TseBackend, TseError, TseInfo};

/// `info.csv` description and [`TseInfo::description`].
pub const DESCRIPTION: &str = "Valeo software TSE — NOT CERTIFIED, not for tax purposes";
/// `info.csv` manufacturer.
pub const MANUFACTURER: &str = "Valeo Edge";
/// Subject and issuer common name of the self-signed certificate.
pub const CERTIFICATE_CN: &str = "Valeo Software TSE (not certified)";

const KEY_FILE: &str = "key.p8";
const CERT_FILE: &str = "cert.der";
const LOGS_DIR: &str = "logs";
const TMP_SUFFIX: &str = ".tmp";

const OID_ECDSA_WITH_SHA256: &str = "1.2.840.10045.4.3.2";
const OID_EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
const OID_PRIME256V1: &str = "1.2.840.10045.3.1.7";
const OID_COMMON_NAME: &str = "2.5.4.3";
const OID_KEY_USAGE: &str = "2.5.29.15";
const OID_BASIC_CONSTRAINTS: &str = "2.5.29.19";

/// TR-03151-1 limits processType to 100 characters.
const MAX_PROCESS_TYPE: usize = 100;
/// Client ids become file names; keep them well inside name limits.
const MAX_CLIENT_ID: usize = 100;

/// The TSE's clock: Unix seconds.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

fn system_clock() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Why the software TSE could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum SoftwareTseError {
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("key file {} is not a P-256 PKCS#8 key: {reason}", path.display())]
    BadKey { path: PathBuf, reason: String },
    #[error("certificate {} does not hold this TSE's public key", path.display())]
    CertificateMismatch { path: PathBuf },
    #[error(
        "{} holds log messages but no {KEY_FILE}; refusing to start a new key over them",
        dir.display()
    )]
    KeyMissing { dir: PathBuf },
    #[error("log file {} is unreadable: {source}", path.display())]
    BadLog { path: PathBuf, source: LogError },
    #[error("log file {} was signed by another key (serial {serial})", path.display())]
    ForeignLog { path: PathBuf, serial: String },
    #[error("building the certificate failed: {0}")]
    Certificate(String),
}

impl From<SoftwareTseError> for TseError {
    fn from(e: SoftwareTseError) -> Self {
        TseError::Unavailable(e.to_string())
    }
}

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> SoftwareTseError {
    let path = path.to_owned();
    move |source| SoftwareTseError::Io {
        action,
        path,
        source,
    }
}

/// Switches for simulated outages; clones share the switches.
#[derive(Debug, Clone, Default)]
pub struct TseFaults {
    inner: Arc<Mutex<FaultState>>,
}

#[derive(Debug, Default)]
struct FaultState {
    failing: Option<String>,
    delay_ms: u64,
}

impl TseFaults {
    fn state(&self) -> std::sync::MutexGuard<'_, FaultState> {
        // The state is two plain values, valid even after a panic elsewhere.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// While `Some(reason)`, every call fails with [`TseError::Unavailable`].
    pub fn set_failing(&self, reason: Option<String>) {
        self.state().failing = reason;
    }

    /// Every call first sleeps this long, so a caller's timeout can fire.
    pub fn set_delay_ms(&self, delay_ms: u64) {
        self.state().delay_ms = delay_ms;
    }

    pub fn failing(&self) -> Option<String> {
        self.state().failing.clone()
    }

    pub fn delay_ms(&self) -> u64 {
        self.state().delay_ms
    }

    async fn gate(&self) -> Result<(), TseError> {
        let delay = self.delay_ms();
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        match self.failing() {
            Some(reason) => Err(TseError::Unavailable(reason)),
            None => Ok(()),
        }
    }
}

/// What the logs say: recovered on open, advanced by every signed log.
#[derive(Debug, Default)]
struct State {
    signature_counter: u64,
    transaction_number: u64,
    /// Open transactions and the client that started them.
    open: HashMap<u64, String>,
    clients: BTreeSet<String>,
}

impl State {
    /// Logs must be applied in signature-counter order.
    fn apply(&mut self, msg: &LogMessage) {
        self.signature_counter = self.signature_counter.max(msg.signature_counter);
        match &msg.kind {
            LogKind::Transaction {
                operation,
                client_id,
                transaction_number,
                ..
            } => {
                self.transaction_number = self.transaction_number.max(*transaction_number);
                match operation {
                    Operation::Start => {
                        self.open.insert(*transaction_number, client_id.clone());
                    }
                    Operation::Update => {}
                    Operation::Finish => {
                        self.open.remove(transaction_number);
                    }
                }
            }
            LogKind::System {
                operation_type,
                data,
            } => {
                if let Some(client) = client_of_event(data) {
                    match operation_type.as_str() {
                        "registerClient" => {
                            self.clients.insert(client);
                        }
                        "deregisterClient" => {
                            self.clients.remove(&client);
                        }
                        _ => {}
                    }
                }
            }
            LogKind::Audit { .. } => {}
        }
    }
}

/// systemOperationData of (de)registerClient: `SEQUENCE { PrintableString clientId }`,
/// the version-3 eventData shape.
fn client_event_data(client_id: &str) -> Vec<u8> {
    der::tlv(
        der::TAG_SEQUENCE,
        &der::tlv(der::TAG_PRINTABLE_STRING, client_id.as_bytes()),
    )
}

fn client_of_event(data: &[u8]) -> Option<String> {
    let seq = der::parse_single(data).ok()?;
    let first = *seq.children().ok()?.first()?;
    Some(first.as_str().ok()?.to_owned())
}

/// TR-03151-1 Appendix A: the characters a clientId may contain, chosen so
/// that log file names are legal everywhere.
fn valid_client_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_CLIENT_ID
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || " '()+-,.=".contains(c))
}

/// PrintableString characters.
fn valid_process_type(process_type: &str) -> bool {
    process_type.len() <= MAX_PROCESS_TYPE
        && process_type
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || " '()+,-./:=?".contains(c))
}

/// A non-certified TSE keeping its key and logs in a directory.
pub struct SoftwareTse {
    dir: PathBuf,
    key: SigningKey,
    /// Uncompressed point `04‖X‖Y`.
    public_key: Vec<u8>,
    serial: [u8; 32],
    certificate: Vec<u8>,
    clock: Clock,
    /// Added to the clock once `update_time` has set the time.
    time_offset: Option<i64>,
    faults: TseFaults,
    state: State,
}

impl std::fmt::Debug for SoftwareTse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SoftwareTse")
            .field("dir", &self.dir)
            .field("serial", &hex::encode(self.serial))
            .field("time_offset", &self.time_offset)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl SoftwareTse {
    /// Opens the TSE in `dir`, creating key, certificate and log directory
    /// on first use, and recovers counters, open transactions and clients
    /// from the stored logs. The time is not set afterwards.
    pub fn open(dir: &Path) -> Result<Self, SoftwareTseError> {
        let logs = dir.join(LOGS_DIR);
        fs::create_dir_all(&logs).map_err(io_error("create", &logs))?;
        let key_path = dir.join(KEY_FILE);
        let key = if key_path.exists() {
            let der = fs::read(&key_path).map_err(io_error("read", &key_path))?;
            SigningKey::from_pkcs8_der(&der).map_err(|e| SoftwareTseError::BadKey {
                path: key_path.clone(),
                reason: e.to_string(),
            })?
        } else {
            let has_logs = fs::read_dir(&logs)
                .map_err(io_error("list", &logs))?
                .filter_map(Result::ok)
                .any(|e| e.file_name().to_string_lossy().ends_with(".log"));
            if has_logs {
                return Err(SoftwareTseError::KeyMissing {
                    dir: dir.to_owned(),
                });
            }
            let key = generate_key();
            let der = key.to_pkcs8_der().map_err(|e| SoftwareTseError::BadKey {
                path: key_path.clone(),
                reason: e.to_string(),
            })?;
            write_durably(dir, KEY_FILE, der.as_bytes(), 0o600)
                .map_err(io_error("write", &key_path))?;
            key
        };
        let public_key = key
            .verifying_key()
            .to_encoded_point(false)
            .as_bytes()
            .to_vec();
        let serial = logmsg::serial_number(&public_key);

        let cert_path = dir.join(CERT_FILE);
        let certificate = if cert_path.exists() {
            let certificate = fs::read(&cert_path).map_err(io_error("read", &cert_path))?;
            if certificate_public_key(&certificate).as_deref() != Some(public_key.as_slice()) {
                return Err(SoftwareTseError::CertificateMismatch { path: cert_path });
            }
            certificate
        } else {
            let certificate = build_certificate(&key, &public_key, &serial)
                .map_err(|e| SoftwareTseError::Certificate(e.to_string()))?;
            write_durably(dir, CERT_FILE, &certificate, 0o644)
                .map_err(io_error("write", &cert_path))?;
            certificate
        };

        let mut state = State::default();
        for (path, _, msg) in read_logs(&logs)? {
            if msg.serial_number != serial {
                return Err(SoftwareTseError::ForeignLog {
                    path,
                    serial: hex::encode(&msg.serial_number),
                });
            }
            state.apply(&msg);
        }

        Ok(Self {
            dir: dir.to_owned(),
            key,
            public_key,
            serial,
            certificate,
            clock: Arc::new(system_clock),
            time_offset: None,
            faults: TseFaults::default(),
            state,
        })
    }

    /// Replaces the system clock, e.g. with a fixed time in tests.
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// The fault switches of this TSE.
    pub fn faults(&self) -> TseFaults {
        self.faults.clone()
    }

    /// The log-signing public key, uncompressed `04‖X‖Y`.
    pub fn public_key(&self) -> &[u8] {
        &self.public_key
    }

    /// Lower-case hex of SHA-256 over the public key.
    pub fn serial_hex(&self) -> String {
        hex::encode(self.serial)
    }

    /// The self-signed X.509 certificate, DER.
    pub fn certificate(&self) -> &[u8] {
        &self.certificate
    }

    /// The last signature counter used (0 before the first log).
    pub fn signature_counter(&self) -> u64 {
        self.state.signature_counter
    }

    /// The last transaction number handed out (0 before the first start).
    pub fn transaction_number(&self) -> u64 {
        self.state.transaction_number
    }

    fn logs_dir(&self) -> PathBuf {
        self.dir.join(LOGS_DIR)
    }

    /// The TSE's time: the clock corrected by `update_time`, or the raw
    /// clock while the time is not set (only system logs are signed then).
    fn now(&self) -> i64 {
        (self.clock)() + self.time_offset.unwrap_or(0)
    }

    fn transaction_time(&self) -> Result<i64, TseError> {
        match self.time_offset {
            Some(offset) => Ok((self.clock)() + offset),
            None => Err(TseError::TimeNotSet),
        }
    }

    fn info_csv(&self) -> String {
        let quote = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
        format!(
            "{},{},{},{},{},{}\n",
            quote("description:"),
            quote(DESCRIPTION),
            quote("manufacturer:"),
            quote(MANUFACTURER),
            quote("version:"),
            quote(&version())
        )
    }

    /// Signs `kind` with the next signature counter and stores it durably.
    fn sign_and_store(
        &mut self,
        kind: LogKind,
        time: i64,
    ) -> Result<(LogMessage, Vec<u8>), TseError> {
        let signature_counter = self.state.signature_counter + 1;
        let log_time = LogTime::Unix(time);
        let algorithm_oid = logmsg::algorithm_oid(logmsg::ECDSA_PLAIN_SHA256)
            .ok_or_else(|| TseError::Unavailable("signature algorithm table broken".to_owned()))?;
        let dtbs = logmsg::encode_dtbs(
            &kind,
            &SigningContext {
                serial_number: &self.serial,
                signature_algorithm_oid: algorithm_oid,
                signature_counter,
                log_time: &log_time,
            },
        )
        .map_err(|e| TseError::Unavailable(format!("encoding the log message failed: {e}")))?;
        let signature: Signature = self
            .key
            .try_sign(&dtbs)
            .map_err(|e| TseError::Unavailable(format!("signing failed: {e}")))?;
        let signature = signature.to_bytes().to_vec();
        let bytes = logmsg::assemble(&dtbs, &signature);
        let msg = LogMessage {
            version: 2,
            kind,
            serial_number: self.serial.to_vec(),
            signature_algorithm_oid: algorithm_oid.to_owned(),
            signature_counter,
            log_time,
            signature,
            dtbs,
        };
        let name = logmsg::file_name(&msg);
        let logs = self.logs_dir();
        if let Err(e) = write_durably(&logs, &name, &bytes, 0o644) {
            // Once the file is in place its counter is taken, even though
            // the call fails: reusing it would give two logs one counter.
            if logs.join(&name).exists() {
                self.state.apply(&msg);
            }
            return Err(TseError::Unavailable(format!(
                "storing log message {name} failed: {e}"
            )));
        }
        self.state.apply(&msg);
        Ok((msg, bytes))
    }

    fn check_client(&self, client_id: &str) -> Result<(), TseError> {
        if self.state.clients.contains(client_id) {
            Ok(())
        } else {
            Err(TseError::Refused(format!(
                "client {client_id:?} is not registered"
            )))
        }
    }

    fn check_open(&self, client_id: &str, transaction_number: u64) -> Result<(), TseError> {
        match self.state.open.get(&transaction_number) {
            None => Err(TseError::Refused(format!(
                "transaction {transaction_number} is not open"
            ))),
            Some(owner) if owner != client_id => Err(TseError::Refused(format!(
                "transaction {transaction_number} belongs to client {owner:?}, not {client_id:?}"
            ))),
            Some(_) => Ok(()),
        }
    }

    fn transaction_call(
        &mut self,
        operation: Operation,
        client_id: &str,
        transaction_number: Option<u64>,
        process_type: &str,
        process_data: &[u8],
    ) -> Result<SignedLog, TseError> {
        let time = self.transaction_time()?;
        self.check_client(client_id)?;
        if !valid_process_type(process_type) {
            return Err(TseError::Refused(format!(
                "processType {process_type:?} is not a PrintableString of at most {MAX_PROCESS_TYPE} characters"
            )));
        }
        let number = match transaction_number {
            Some(number) => {
                self.check_open(client_id, number)?;
                number
            }
            None => self.state.transaction_number + 1,
        };
        let kind = LogKind::Transaction {
            operation,
            client_id: client_id.to_owned(),
            process_data: process_data.to_vec(),
            process_type: Some(process_type.to_owned()),
            transaction_number: number,
        };
        let (msg, bytes) = match self.sign_and_store(kind, time) {
            Ok(signed) => signed,
            Err(e) => {
                // TR-03153-1: a retried start gets a new number.
                if operation == Operation::Start {
                    self.state.transaction_number = self.state.transaction_number.max(number);
                }
                return Err(e);
            }
        };
        Ok(SignedLog {
            transaction_number: number,
            signature_counter: msg.signature_counter,
            log_time_unix: time,
            signature_base64: BASE64.encode(&msg.signature),
            log_message_base64: Some(BASE64.encode(&bytes)),
        })
    }

    /// Signs a probe and checks the certificate; returns (component, passed).
    fn run_self_tests(&self) -> Vec<(&'static str, bool)> {
        let probe = b"Valeo software TSE self test";
        let signing = self
            .key
            .try_sign(probe)
            .is_ok_and(|s: Signature| self.key.verifying_key().verify(probe, &s).is_ok());
        let certificate = certificate_public_key(&self.certificate).as_deref()
            == Some(self.public_key.as_slice());
        let storage = self.logs_dir().is_dir();
        vec![
            ("signing key", signing),
            ("certificate", certificate),
            ("log storage", storage),
        ]
    }
}

fn version() -> String {
    format!("Valeo software TSE {}", env!("CARGO_PKG_VERSION"))
}

fn generate_key() -> SigningKey {
    // rand 0.9 and p256 0.13 use different rand_core versions, so the key
    // is made from random bytes; a value outside the curve order (chance
    // about 2^-32) is simply drawn again.
    loop {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        if let Ok(key) = SigningKey::from_slice(&bytes) {
            return key;
        }
    }
}

/// Writes `dir/name` so that it is either absent or complete after a
/// crash: temporary file, fsync, rename, fsync of the directory.
fn write_durably(dir: &Path, name: &str, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    let target = dir.join(name);
    if target.exists() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::AlreadyExists,
            format!("{} already exists", target.display()),
        ));
    }
    let tmp = dir.join(format!(".{name}{TMP_SUFFIX}"));
    {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
    }
    fs::rename(&tmp, &target)?;
    fs::File::open(dir)?.sync_all()
}

/// Every stored log, sorted by signature counter: (path, bytes, parsed).
/// Leftover temporary files (a crash before the rename) are removed:
/// their log was never handed out.
fn read_logs(logs: &Path) -> Result<Vec<(PathBuf, Vec<u8>, LogMessage)>, SoftwareTseError> {
    let mut out = Vec::new();
    for entry in fs::read_dir(logs).map_err(io_error("list", logs))? {
        let entry = entry.map_err(io_error("list", logs))?;
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') && name.ends_with(TMP_SUFFIX) {
            fs::remove_file(&path).map_err(io_error("remove", &path))?;
            continue;
        }
        if !name.ends_with(".log") {
            continue;
        }
        let bytes = fs::read(&path).map_err(io_error("read", &path))?;
        let msg = logmsg::parse(&bytes).map_err(|source| SoftwareTseError::BadLog {
            path: path.clone(),
            source,
        })?;
        out.push((path, bytes, msg));
    }
    out.sort_by_key(|(_, _, msg)| msg.signature_counter);
    Ok(out)
}

/// The self-signed X.509 v3 certificate of the log-signing key.
fn build_certificate(
    key: &SigningKey,
    public_key: &[u8],
    serial: &[u8; 32],
) -> Result<Vec<u8>, DerError> {
    use der::{TAG_BIT_STRING, TAG_OCTET_STRING, TAG_SEQUENCE, constructed, oid, tlv};

    let name = constructed(
        TAG_SEQUENCE,
        &[&constructed(
            der::TAG_SET,
            &[&constructed(
                TAG_SEQUENCE,
                &[
                    &oid(OID_COMMON_NAME)?,
                    &tlv(der::TAG_UTF8_STRING, CERTIFICATE_CN.as_bytes()),
                ],
            )],
        )],
    );
    let algorithm = constructed(TAG_SEQUENCE, &[&oid(OID_ECDSA_WITH_SHA256)?]);
    // RFC 5280: dates up to 2049 are UTCTime.
    let validity = constructed(
        TAG_SEQUENCE,
        &[
            &tlv(der::TAG_UTC_TIME, b"240101000000Z"),
            &tlv(der::TAG_UTC_TIME, b"491231235959Z"),
        ],
    );
    let point = [&[0u8][..], public_key].concat();
    let spki = constructed(
        TAG_SEQUENCE,
        &[
            &constructed(
                TAG_SEQUENCE,
                &[&oid(OID_EC_PUBLIC_KEY)?, &oid(OID_PRIME256V1)?],
            ),
            &tlv(TAG_BIT_STRING, &point),
        ],
    );
    // Not a CA; the key only signs (digitalSignature, bit 0).
    let basic_constraints = constructed(
        TAG_SEQUENCE,
        &[
            &oid(OID_BASIC_CONSTRAINTS)?,
            &tlv(TAG_OCTET_STRING, &tlv(TAG_SEQUENCE, &[])),
        ],
    );
    let key_usage = constructed(
        TAG_SEQUENCE,
        &[
            &oid(OID_KEY_USAGE)?,
            &tlv(der::TAG_BOOLEAN, &[0xFF]),
            &tlv(TAG_OCTET_STRING, &tlv(TAG_BIT_STRING, &[0x07, 0x80])),
        ],
    );
    let extensions = constructed(
        0xA3,
        &[&constructed(
            TAG_SEQUENCE,
            &[&basic_constraints, &key_usage],
        )],
    );
    let tbs = constructed(
        TAG_SEQUENCE,
        &[
            &tlv(0xA0, &der::integer_u64(2)),
            &tlv(
                der::TAG_INTEGER,
                &der::unsigned_magnitude_content(&serial[..16]),
            ),
            &algorithm,
            &name,
            &validity,
            &name,
            &spki,
            &extensions,
        ],
    );
    // A key that cannot sign is caught by the self test; an empty
    // signature keeps the certificate structurally valid meanwhile.
    let signature = key
        .try_sign(&tbs)
        .map(|s: Signature| s.to_der().as_bytes().to_vec())
        .unwrap_or_default();
    let signature_bits = [&[0u8][..], &signature].concat();
    Ok(constructed(
        TAG_SEQUENCE,
        &[&tbs, &algorithm, &tlv(TAG_BIT_STRING, &signature_bits)],
    ))
}

/// The subject public key (the BIT STRING content without its unused-bits
/// octet) of a DER X.509 certificate, e.g. `04‖X‖Y` for an EC key.
pub fn certificate_public_key(certificate: &[u8]) -> Option<Vec<u8>> {
    let cert = der::parse_single(certificate).ok()?;
    let tbs = *cert.children().ok()?.first()?;
    let fields = tbs.children().ok()?;
    // With the explicit [0] version, the key info is the 7th field.
    let index = if fields.first()?.tag == 0xA0 { 6 } else { 5 };
    let spki = fields.get(index)?;
    let bits = *spki.children().ok()?.get(1)?;
    if bits.tag != der::TAG_BIT_STRING {
        return None;
    }
    match bits.value.split_first()? {
        (0, key) => Some(key.to_vec()),
        _ => None,
    }
}

#[async_trait]
impl TseBackend for SoftwareTse {
    async fn info(&mut self) -> Result<TseInfo, TseError> {
        self.faults.gate().await?;
        Ok(TseInfo {
            serial_hex: self.serial_hex(),
            public_key_base64: BASE64.encode(&self.public_key),
            signature_algorithm: logmsg::ECDSA_PLAIN_SHA256.to_owned(),
            time_format: logmsg::TIME_FORMAT_UNIX.to_owned(),
            certificate_base64: Some(BASE64.encode(&self.certificate)),
            certified: false,
            description: DESCRIPTION.to_owned(),
            manufacturer: MANUFACTURER.to_owned(),
            version: version(),
        })
    }

    async fn register_client(&mut self, client_id: &str) -> Result<(), TseError> {
        self.faults.gate().await?;
        if !valid_client_id(client_id) {
            return Err(TseError::Refused(format!(
                "client id {client_id:?} must be 1 to {MAX_CLIENT_ID} of A-Z a-z 0-9 space ' ( ) + - , . ="
            )));
        }
        if self.state.clients.contains(client_id) {
            return Ok(());
        }
        let kind = LogKind::System {
            operation_type: "registerClient".to_owned(),
            data: client_event_data(client_id),
        };
        self.sign_and_store(kind, self.now())?;
        Ok(())
    }

    async fn update_time(&mut self, now_unix: i64) -> Result<(), TseError> {
        self.faults.gate().await?;
        // A TSE whose time is unset counts from 0 (TR-03153-1).
        let before = self.transaction_time().unwrap_or(0);
        let mut data = Vec::new();
        der::push_tlv(&mut data, 0x81, &der::int_content(before));
        der::push_tlv(&mut data, 0x82, &der::int_content(now_unix));
        let kind = LogKind::System {
            operation_type: "updateTime".to_owned(),
            data,
        };
        self.sign_and_store(kind, now_unix)?;
        self.time_offset = Some(now_unix - (self.clock)());
        Ok(())
    }

    async fn self_test(&mut self) -> Result<(), TseError> {
        self.faults.gate().await?;
        let results = self.run_self_tests();
        let all_passed = results.iter().all(|(_, passed)| *passed);
        let boolean = |b: bool| der::tlv(der::TAG_BOOLEAN, &[if b { 0xFF } else { 0x00 }]);
        let components: Vec<Vec<u8>> = results
            .iter()
            .map(|(name, passed)| {
                der::constructed(
                    der::TAG_SEQUENCE,
                    &[
                        &der::tlv(der::TAG_UTF8_STRING, name.as_bytes()),
                        &boolean(*passed),
                    ],
                )
            })
            .collect();
        let component_refs: Vec<&[u8]> = components.iter().map(Vec::as_slice).collect();
        let data = der::constructed(
            der::TAG_SEQUENCE,
            &[
                &der::constructed(der::TAG_SEQUENCE, &component_refs),
                &boolean(all_passed),
            ],
        );
        let kind = LogKind::System {
            operation_type: "selfTest".to_owned(),
            data,
        };
        self.sign_and_store(kind, self.now())?;
        if all_passed {
            Ok(())
        } else {
            let failed: Vec<&str> = results
                .iter()
                .filter(|(_, passed)| !passed)
                .map(|(name, _)| *name)
                .collect();
            Err(TseError::Unavailable(format!(
                "self test failed: {}",
                failed.join(", ")
            )))
        }
    }

    async fn start_transaction(
        &mut self,
        client_id: &str,
        process_type: &str,
        process_data: &[u8],
    ) -> Result<SignedLog, TseError> {
        self.faults.gate().await?;
        self.transaction_call(
            Operation::Start,
            client_id,
            None,
            process_type,
            process_data,
        )
    }

    async fn update_transaction(
        &mut self,
        client_id: &str,
        transaction_number: u64,
        process_type: &str,
        process_data: &[u8],
    ) -> Result<SignedLog, TseError> {
        self.faults.gate().await?;
        self.transaction_call(
            Operation::Update,
            client_id,
            Some(transaction_number),
            process_type,
            process_data,
        )
    }

    async fn finish_transaction(
        &mut self,
        client_id: &str,
        transaction_number: u64,
        process_type: &str,
        process_data: &[u8],
    ) -> Result<SignedLog, TseError> {
        self.faults.gate().await?;
        self.transaction_call(
            Operation::Finish,
            client_id,
            Some(transaction_number),
            process_type,
            process_data,
        )
    }

    async fn export(&mut self, filter: &ExportFilter) -> Result<Vec<u8>, TseError> {
        self.faults.gate().await?;
        let logs: Vec<(String, Vec<u8>)> = read_logs(&self.logs_dir())?
            .into_iter()
            .filter(|(_, _, msg)| matches_filter(msg, filter))
            .map(|(path, bytes, _)| {
                let name = path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                (name, bytes)
            })
            .collect();
        let certificate_name = format!("{}_X509.der", self.serial_hex());
        export::write_export(
            &logs,
            (&certificate_name, &self.certificate),
            &self.info_csv(),
        )
        .map_err(|e: ExportError| TseError::Unavailable(e.to_string()))
    }
}

/// Time range on the log time; the client filter applies to transaction
/// logs only, system and audit logs of the range are always included.
fn matches_filter(msg: &LogMessage, filter: &ExportFilter) -> bool {
    let time = msg.log_time.unix().unwrap_or(i64::MIN);
    if filter.start_unix.is_some_and(|start| time < start)
        || filter.end_unix.is_some_and(|end| time > end)
    {
        return false;
    }
    match (&filter.client_id, msg.client_id()) {
        (Some(wanted), Some(client)) => wanted == client,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::{DerSignature, VerifyingKey};

    #[test]
    fn certificate_holds_the_key_and_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let tse = SoftwareTse::open(dir.path()).unwrap();
        let certificate = fs::read(dir.path().join(CERT_FILE)).unwrap();
        assert_eq!(certificate, tse.certificate());

        let cert = der::parse_single(&certificate).unwrap();
        assert_eq!(cert.tag, der::TAG_SEQUENCE);
        let parts = cert.children().unwrap();
        assert_eq!(parts.len(), 3);
        let (tbs, algorithm, signature) = (parts[0], parts[1], parts[2]);
        let fields = tbs.children().unwrap();
        assert_eq!(fields[0].raw, [0xA0, 0x03, 0x02, 0x01, 0x02], "X.509 v3");
        let algorithm_oid = algorithm.children().unwrap()[0].as_oid().unwrap();
        assert_eq!(algorithm_oid, OID_ECDSA_WITH_SHA256);
        assert_eq!(fields[2].raw, algorithm.raw);
        assert_eq!(
            fields[3].raw, fields[5].raw,
            "self-signed: issuer = subject"
        );
        let cn = fields[5].children().unwrap()[0].children().unwrap()[0]
            .children()
            .unwrap()[1];
        assert_eq!(cn.as_str().unwrap(), CERTIFICATE_CN);
        let validity = fields[4].children().unwrap();
        assert_eq!(validity[0].value, b"240101000000Z");
        assert_eq!(validity[1].value, b"491231235959Z");

        let spki = fields[6].children().unwrap();
        let key_algorithm: Vec<String> = spki[0]
            .children()
            .unwrap()
            .iter()
            .map(|t| t.as_oid().unwrap())
            .collect();
        assert_eq!(key_algorithm, [OID_EC_PUBLIC_KEY, OID_PRIME256V1]);
        assert_eq!(&spki[1].value[1..], tse.public_key());
        assert_eq!(
            certificate_public_key(&certificate).as_deref(),
            Some(tse.public_key())
        );

        let signature = DerSignature::from_bytes(&signature.value[1..]).unwrap();
        let key = VerifyingKey::from_sec1_bytes(tse.public_key()).unwrap();
        key.verify(tbs.raw, &signature).unwrap();
    }

    #[test]
    fn key_file_is_private_and_reloads() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let first = SoftwareTse::open(dir.path()).unwrap();
        let mode = fs::metadata(dir.path().join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let second = SoftwareTse::open(dir.path()).unwrap();
        assert_eq!(first.public_key(), second.public_key());
        assert_eq!(first.certificate(), second.certificate());
    }

    #[test]
    fn client_ids_follow_tr_03151_1() {
        assert!(valid_client_id("ERS 8cb8e2de-1234 (Kasse 1),x=y.'+"));
        for bad in ["", "a/b", "a_b", "a:b", "a;b", "ä", &"x".repeat(101)] {
            assert!(!valid_client_id(bad), "{bad:?}");
        }
        assert_eq!(
            client_of_event(&client_event_data("ERS-1")).as_deref(),
            Some("ERS-1")
        );
    }
}
