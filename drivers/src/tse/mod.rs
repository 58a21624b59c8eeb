//! Fiscal TSEs (technische Sicherheitseinrichtung, BSI TR-03151/TR-03153):
//! signing cash transactions under § 146a AO / KassenSichV.
//!
//! Layering, like the other drivers:
//! - `der` and `logmsg`: the TR-03151 log message (DER, version 2 as the
//!   certified TSEs in the field emit; version 3 and BER indefinite-length
//!   process data accepted when parsing), its signature input, verification
//!   and the receipt QR code;
//! - backends behind [`TseBackend`]: `software` (a non-certified TSE for
//!   development, demos and tests) and `fiskaly` (the SIGN DE v2 cloud
//!   TSE); a hardware TSE (Swissbit, Epson, Diebold Nixdorf) is one more
//!   implementation of the trait, callers do not change;
//! - [`TseHandle`]: the one task that owns a TSE; everyone else talks to it
//!   through a channel, each call bounded by a timeout.

pub mod der;
pub mod export;
pub mod fiskaly;
pub mod logmsg;
pub mod software;

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

/// What a TSE says about itself; goes on receipts, into exports and to central.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TseInfo {
    /// Lower-case hex of SHA-256 over the public key (TR-03116-5).
    pub serial_hex: String,
    /// The log-signing public key as an uncompressed point `04‖X‖Y`, base64.
    pub public_key_base64: String,
    /// DSFinV-K name, e.g. `ecdsa-plain-SHA256`.
    pub signature_algorithm: String,
    /// DSFinV-K name of the log time format, e.g. `unixTime`.
    pub time_format: String,
    /// The TSE certificate (DER, base64), if the TSE gives it out.
    pub certificate_base64: Option<String>,
    /// False for the software TSE: its signatures are worthless for taxes.
    pub certified: bool,
    /// `info.csv` fields.
    pub description: String,
    pub manufacturer: String,
    pub version: String,
}

/// One signed log message, as a TSE call returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedLog {
    pub transaction_number: u64,
    pub signature_counter: u64,
    /// The log time, Unix seconds UTC.
    pub log_time_unix: i64,
    /// Plain `r‖s`, base64.
    pub signature_base64: String,
    /// The whole DER log message, base64, when the TSE gives it out (the
    /// software TSE always; fiskaly on request). Central verifies it.
    pub log_message_base64: Option<String>,
}

/// What an export should contain; empty means everything.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportFilter {
    pub start_unix: Option<i64>,
    pub end_unix: Option<i64>,
    pub client_id: Option<String>,
}

/// Why a TSE call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TseError {
    /// No answer within the call timeout.
    #[error("the TSE did not answer within {0} ms")]
    Timeout(u64),
    /// Not reachable (network down, device unplugged, service unavailable).
    #[error("the TSE is not reachable: {0}")]
    Unavailable(String),
    /// The TSE answered something we cannot understand.
    #[error("the TSE answered garbage: {0}")]
    Garbage(String),
    /// The TSE refused the call (unknown transaction, client not registered, ...).
    #[error("the TSE refused: {0}")]
    Refused(String),
    /// The TSE's clock is not set; it must not sign (TR-03153-1).
    #[error("the TSE's time is not set")]
    TimeNotSet,
    /// The task owning the TSE has stopped.
    #[error("the TSE task has stopped")]
    Gone,
}

/// A TSE. Implementations are driven by one task ([`TseHandle`]), so they
/// may keep state without locks; every call may fail and the caller decides
/// what an outage means.
#[async_trait]
pub trait TseBackend: Send {
    async fn info(&mut self) -> Result<TseInfo, TseError>;
    /// Registers the ERS (cash point) serial as a client; idempotent.
    async fn register_client(&mut self, client_id: &str) -> Result<(), TseError>;
    async fn update_time(&mut self, now_unix: i64) -> Result<(), TseError>;
    async fn self_test(&mut self) -> Result<(), TseError>;
    async fn start_transaction(
        &mut self,
        client_id: &str,
        process_type: &str,
        process_data: &[u8],
    ) -> Result<SignedLog, TseError>;
    async fn update_transaction(
        &mut self,
        client_id: &str,
        transaction_number: u64,
        process_type: &str,
        process_data: &[u8],
    ) -> Result<SignedLog, TseError>;
    async fn finish_transaction(
        &mut self,
        client_id: &str,
        transaction_number: u64,
        process_type: &str,
        process_data: &[u8],
    ) -> Result<SignedLog, TseError>;
    /// The TR-03151 TAR export.
    async fn export(&mut self, filter: &ExportFilter) -> Result<Vec<u8>, TseError>;
}

/// Calls waiting for the TSE task.
pub const TSE_QUEUE_CAPACITY: usize = 64;

type Job =
    Box<dyn for<'a> FnOnce(&'a mut dyn TseBackend) -> futures::future::BoxFuture<'a, ()> + Send>;

/// Handle to the task that owns a TSE. Cheap to clone.
#[derive(Clone)]
pub struct TseHandle {
    jobs: mpsc::Sender<Job>,
    call_timeout: Duration,
}

impl std::fmt::Debug for TseHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TseHandle")
            .field("call_timeout", &self.call_timeout)
            .finish_non_exhaustive()
    }
}

impl TseHandle {
    /// Starts the task owning `backend`. A call that takes longer than
    /// `call_timeout_ms` is answered with [`TseError::Timeout`]; the task
    /// finishes it anyway, so the TSE never sees a call cut in half.
    pub fn spawn(backend: Box<dyn TseBackend>, call_timeout_ms: u64) -> Self {
        let (jobs, mut rx) = mpsc::channel::<Job>(TSE_QUEUE_CAPACITY);
        tokio::spawn(async move {
            let mut backend = backend;
            while let Some(job) = rx.recv().await {
                job(backend.as_mut()).await;
            }
        });
        Self {
            jobs,
            call_timeout: Duration::from_millis(call_timeout_ms),
        }
    }

    async fn call<T, F>(&self, f: F) -> Result<T, TseError>
    where
        T: Send + 'static,
        F: for<'a> FnOnce(
                &'a mut dyn TseBackend,
            ) -> futures::future::BoxFuture<'a, Result<T, TseError>>
            + Send
            + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job: Job = Box::new(move |backend| {
            Box::pin(async move {
                let result = f(backend).await;
                drop(reply.send(result));
            })
        });
        let timeout_ms = self.call_timeout.as_millis() as u64;
        let sent = tokio::time::timeout(self.call_timeout, self.jobs.send(job)).await;
        match sent {
            Err(_) => return Err(TseError::Timeout(timeout_ms)),
            Ok(Err(_)) => return Err(TseError::Gone),
            Ok(Ok(())) => {}
        }
        match tokio::time::timeout(self.call_timeout, answer).await {
            Err(_) => Err(TseError::Timeout(timeout_ms)),
            Ok(Err(_)) => Err(TseError::Gone),
            Ok(Ok(result)) => result,
        }
    }

    pub async fn info(&self) -> Result<TseInfo, TseError> {
        self.call(|b| b.info()).await
    }

    pub async fn register_client(&self, client_id: &str) -> Result<(), TseError> {
        let client_id = client_id.to_owned();
        self.call(move |b| Box::pin(async move { b.register_client(&client_id).await }))
            .await
    }

    pub async fn update_time(&self, now_unix: i64) -> Result<(), TseError> {
        self.call(move |b| b.update_time(now_unix)).await
    }

    pub async fn self_test(&self) -> Result<(), TseError> {
        self.call(|b| b.self_test()).await
    }

    pub async fn start_transaction(
        &self,
        client_id: &str,
        process_type: &str,
        process_data: &[u8],
    ) -> Result<SignedLog, TseError> {
        let (c, t, d) = (
            client_id.to_owned(),
            process_type.to_owned(),
            process_data.to_vec(),
        );
        self.call(move |b| Box::pin(async move { b.start_transaction(&c, &t, &d).await }))
            .await
    }

    pub async fn update_transaction(
        &self,
        client_id: &str,
        transaction_number: u64,
        process_type: &str,
        process_data: &[u8],
    ) -> Result<SignedLog, TseError> {
        self.continue_transaction(
            false,
            client_id,
            transaction_number,
            process_type,
            process_data,
        )
        .await
    }

    pub async fn finish_transaction(
        &self,
        client_id: &str,
        transaction_number: u64,
        process_type: &str,
        process_data: &[u8],
    ) -> Result<SignedLog, TseError> {
        self.continue_transaction(
            true,
            client_id,
            transaction_number,
            process_type,
            process_data,
        )
        .await
    }

    /// An update or (with `finish`) the finish of an open transaction.
    async fn continue_transaction(
        &self,
        finish: bool,
        client_id: &str,
        transaction_number: u64,
        process_type: &str,
        process_data: &[u8],
    ) -> Result<SignedLog, TseError> {
        let (c, t, d) = (
            client_id.to_owned(),
            process_type.to_owned(),
            process_data.to_vec(),
        );
        self.call(move |b| {
            Box::pin(async move {
                if finish {
                    b.finish_transaction(&c, transaction_number, &t, &d).await
                } else {
                    b.update_transaction(&c, transaction_number, &t, &d).await
                }
            })
        })
        .await
    }

    pub async fn export(&self, filter: ExportFilter) -> Result<Vec<u8>, TseError> {
        self.call(move |b| Box::pin(async move { b.export(&filter).await }))
            .await
    }
}
