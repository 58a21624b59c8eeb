//! The cash desk at the box: sales signed by the TSE (§ 146a AO,
//! KassenSichV), receipts, stornos, TSE outages and the daily closing.
//!
//! A sale is opened (the TSE starts a transaction), gets lines (the TSE is
//! told within `update_interval_ms`, at most MAX_UPDATE_DELAY = 45 s after a
//! change, TR-03116-5) and is finished with its payments: the TSE finishes
//! the transaction over the `Kassenbeleg-V1` process data and the sale is
//! appended to the outbox as a `cash.sale` record in the same SQLite
//! transaction that assigns its receipt number (BON_NR, gap-free).
//!
//! When the TSE fails or does not answer within `call_timeout_ms`, selling
//! goes on (AEAO zu § 146a): the receipt is recorded without TSE data and
//! with the reason, the outage is recorded when it starts and when it ends
//! (`tse.outage`), and a probe notices when the TSE is back. Transactions
//! the TSE started but could not finish are aborted then
//! (`AVBelegabbruch`), so none stays open. Nothing is signed afterwards.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};
use valeo_drivers::tse::logmsg::{QrFields, qr_code};
use valeo_drivers::tse::{SignedLog, TseError, TseHandle, TseInfo};
use valeo_records::cash::{
    CashClosing, CashSale, KIND_CASH_CLOSING, KIND_CASH_SALE, KIND_TSE_INFO, KIND_TSE_OUTAGE,
    PROCESS_TYPE_RECEIPT, Payment, ReceiptType, SaleError, SaleLine, SaleTse, TseDescription,
    TseOutage, check_sale, process_data,
};
use valeo_sync::outbox::{AppendError, Outbox};

use crate::workflow::{Clock, OnRecord};

/// MAX_UPDATE_DELAY of TR-03116-5: the TSE must hear of a change within this.
pub const MAX_UPDATE_DELAY_MS: u64 = 45_000;
/// Longest TSE_TA_FEHLER text (DSFinV-K).
pub const MAX_TSE_ERROR_CHARS: usize = 200;
/// Open sales at one time.
pub const MAX_OPEN_SALES: usize = 50;

/// Process data of an aborted transaction (DSFinV-K Anhang I).
const ABORT_PROCESS_DATA: &str = "AVBelegabbruch^0.00_0.00_0.00_0.00_0.00^";

/// Which TSE signs.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum TseConfig {
    /// The software TSE (NOT certified: development, demos, tests), keeping
    /// its keys and logs in `dir` (default `<data_dir>/tse`).
    Software {
        #[serde(default)]
        dir: Option<std::path::PathBuf>,
    },
    /// The fiskaly SIGN DE v2 cloud TSE.
    Fiskaly(valeo_drivers::tse::fiskaly::FiskalyConfig),
}

/// `[cash]`: the cash desk and its TSE.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CashSettings {
    pub tse: TseConfig,
    /// The ERS serial number, which is also the TSE client id.
    pub cash_point: String,
    #[serde(default = "default_call_timeout_ms")]
    pub call_timeout_ms: u64,
    /// How often open sales with changes are signed as updates; at most 45 s.
    #[serde(default = "default_update_interval_ms")]
    pub update_interval_ms: u64,
    /// How often the TSE is probed during an outage.
    #[serde(default = "default_outage_probe_ms")]
    pub outage_probe_ms: u64,
    /// Receipt header (KassenSichV § 6 Nr. 1).
    pub trader_name: String,
    pub trader_address: String,
    #[serde(default)]
    pub tax_number: Option<String>,
    #[serde(default)]
    pub vat_id: Option<String>,
}

fn default_call_timeout_ms() -> u64 {
    5_000
}
fn default_update_interval_ms() -> u64 {
    5_000
}
fn default_outage_probe_ms() -> u64 {
    30_000
}

/// Characters TR-03151-1 allows in a client id (and so in TAR file names).
pub fn check_cash_point(id: &str) -> Result<(), String> {
    let ok = !id.is_empty()
        && id.len() <= 30
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || " '()+-,.=".contains(c));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{id:?} must be 1-30 of A-Z a-z 0-9 space ' ( ) + - , . = (TR-03151-1 client id)"
        ))
    }
}

impl CashSettings {
    pub fn validate(&self) -> Result<(), String> {
        check_cash_point(&self.cash_point).map_err(|e| format!("cash_point: {e}"))?;
        if let TseConfig::Fiskaly(fiskaly) = &self.tse {
            fiskaly.validate().map_err(|e| format!("tse: {e}"))?;
        }
        if !(100..=60_000).contains(&self.call_timeout_ms) {
            return Err("call_timeout_ms must be 100..=60000".into());
        }
        // A change waits at most one interval plus one call for its update.
        if self.update_interval_ms < 100
            || self.update_interval_ms + self.call_timeout_ms > MAX_UPDATE_DELAY_MS
        {
            return Err(format!(
                "update_interval_ms + call_timeout_ms must stay within MAX_UPDATE_DELAY \
                 ({MAX_UPDATE_DELAY_MS} ms), and update_interval_ms at least 100"
            ));
        }
        if !(100..=3_600_000).contains(&self.outage_probe_ms) {
            return Err("outage_probe_ms must be 100..=3600000".into());
        }
        if self.trader_name.trim().is_empty() || self.trader_address.trim().is_empty() {
            return Err(
                "trader_name and trader_address go on every receipt; they are required".into(),
            );
        }
        Ok(())
    }
}

/// Why a cash step did not happen. Nothing was recorded.
#[derive(Debug, thiserror::Error)]
pub enum CashError {
    #[error("{0}")]
    Invalid(#[from] SaleError),
    #[error("no open sale {0}")]
    NoSuchSale(i64),
    #[error("no receipt {0}")]
    NoSuchReceipt(u64),
    #[error("receipt {0} is already cancelled by receipt {1}")]
    AlreadyCancelled(u64, u64),
    #[error("receipt {0} cannot be cancelled: {1}")]
    NotCancellable(u64, &'static str),
    #[error("{MAX_OPEN_SALES} sales are open; finish or abort one first")]
    TooManyOpen,
    #[error("another request is finishing this sale or cancelling this receipt right now")]
    Busy,
    #[error("a sale has at most {max} lines", max = valeo_records::cash::MAX_SALE_LINES)]
    TooManyLines,
    #[error("storage: {0}")]
    Storage(String),
}

impl From<rusqlite::Error> for CashError {
    fn from(e: rusqlite::Error) -> Self {
        CashError::Storage(e.to_string())
    }
}

impl From<valeo_sync::OutboxError> for CashError {
    fn from(e: valeo_sync::OutboxError) -> Self {
        CashError::Storage(e.to_string())
    }
}

/// An open sale as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpenSale {
    pub sale_id: i64,
    pub operator: String,
    pub ticket_no: Option<u64>,
    pub customer: Option<String>,
    pub lines: Vec<SaleLine>,
    pub started_at: String,
    /// The TSE transaction, once started.
    pub tse_transaction: Option<u64>,
    /// The start log, as the TSE returned it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tse_start: Option<SignedLog>,
    /// Update logs signed so far.
    #[serde(default)]
    pub tse_updates: Vec<SignedLog>,
    /// Why the TSE could not start the transaction.
    pub tse_error: Option<String>,
    /// Lines changed since the TSE last heard of them.
    #[serde(default)]
    pub unsigned_change: bool,
}

/// The cash desk's view of its TSE, for `/health` and the terminal.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TseStatus {
    pub available: bool,
    pub info: Option<TseInfo>,
    /// The outage in progress.
    pub outage: Option<TseOutage>,
    pub last_error: Option<String>,
}

/// Options of a new sale.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewSale {
    pub operator: String,
    #[serde(default)]
    pub ticket_no: Option<u64>,
    #[serde(default)]
    pub customer: Option<String>,
}

/// The cash desk. Cheap to clone.
#[derive(Clone)]
pub struct CashDesk {
    outbox: Outbox,
    tse: TseHandle,
    settings: Arc<CashSettings>,
    clock: Arc<dyn Clock>,
    on_record: OnRecord,
    status: Arc<Mutex<TseStatus>>,
    /// Open sales being finished and receipts being cancelled right now: a
    /// second request for the same one (a double click) is refused instead
    /// of signing and recording it twice.
    claims: Arc<Mutex<std::collections::HashSet<Claim>>>,
}

/// What a request is working on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Claim {
    Sale(i64),
    Receipt(u64),
}

/// Holds a claim until dropped.
struct ClaimGuard {
    claims: Arc<Mutex<std::collections::HashSet<Claim>>>,
    claim: Claim,
}

impl Drop for ClaimGuard {
    fn drop(&mut self) {
        self.claims
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.claim);
    }
}

impl std::fmt::Debug for CashDesk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CashDesk")
            .field("cash_point", &self.settings.cash_point)
            .finish_non_exhaustive()
    }
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn short(error: &str) -> String {
    error.chars().take(MAX_TSE_ERROR_CHARS).collect()
}

fn meta_get(conn: &rusqlite::Connection, key: &str) -> rusqlite::Result<Option<String>> {
    conn.query_row("SELECT value FROM cash_meta WHERE key = ?1", [key], |r| {
        r.get(0)
    })
    .optional()
}

fn meta_set(conn: &rusqlite::Connection, key: &str, value: Option<&str>) -> rusqlite::Result<()> {
    match value {
        Some(v) => conn.execute(
            "INSERT INTO cash_meta (key, value) VALUES (?1, ?2)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            params![key, v],
        ),
        None => conn.execute("DELETE FROM cash_meta WHERE key = ?1", [key]),
    }
    .map(drop)
}

fn load_open(conn: &rusqlite::Connection, sale_id: i64) -> rusqlite::Result<Option<OpenSale>> {
    conn.query_row(
        "SELECT sale FROM cash_open_sales WHERE sale_id = ?1",
        [sale_id],
        |r| r.get::<_, String>(0),
    )
    .optional()
    .map(|s| s.and_then(|s| serde_json::from_str(&s).ok()))
}

fn save_open(conn: &rusqlite::Connection, sale: &OpenSale) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE cash_open_sales SET sale = ?2 WHERE sale_id = ?1",
        params![
            sale.sale_id,
            serde_json::to_string(sale).unwrap_or_default()
        ],
    )
    .map(drop)
}

impl CashDesk {
    /// Creates the cash tables beside the outbox records and restores an
    /// outage that was open when the box stopped.
    pub fn open(
        outbox: Outbox,
        tse: TseHandle,
        settings: CashSettings,
        clock: Arc<dyn Clock>,
        on_record: OnRecord,
    ) -> Result<CashDesk, CashError> {
        let outage = outbox.read(|conn| {
            conn.execute_batch(
                "CREATE TABLE IF NOT EXISTS cash_receipts (
                    receipt_no INTEGER PRIMARY KEY,
                    sale TEXT NOT NULL,
                    cancelled_by INTEGER
                );
                CREATE TABLE IF NOT EXISTS cash_open_sales (
                    sale_id INTEGER PRIMARY KEY AUTOINCREMENT,
                    sale TEXT NOT NULL
                );
                CREATE TABLE IF NOT EXISTS cash_dangling_tse (
                    transaction_number INTEGER PRIMARY KEY,
                    since TEXT NOT NULL
                );
                CREATE TABLE IF NOT EXISTS cash_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);",
            )?;
            meta_get(conn, "outage")
        })?;
        let outage = outage.and_then(|o| serde_json::from_str::<TseOutage>(&o).ok());
        let status = TseStatus {
            available: outage.is_none(),
            outage,
            ..TseStatus::default()
        };
        Ok(CashDesk {
            outbox,
            tse,
            settings: Arc::new(settings),
            clock,
            on_record,
            status: Arc::new(Mutex::new(status)),
            claims: Arc::default(),
        })
    }

    /// Claims a sale or receipt for this request, or says it is busy.
    fn claim(&self, claim: Claim) -> Result<ClaimGuard, CashError> {
        let fresh = self
            .claims
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(claim);
        if fresh {
            Ok(ClaimGuard {
                claims: Arc::clone(&self.claims),
                claim,
            })
        } else {
            Err(CashError::Busy)
        }
    }

    pub fn settings(&self) -> &CashSettings {
        &self.settings
    }

    pub fn status(&self) -> TseStatus {
        self.status
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Appends a record on the blocking pool; `build` runs inside the
    /// append transaction.
    async fn append<T, F>(&self, kind: &'static str, build: F) -> Result<T, CashError>
    where
        T: Send + 'static,
        F: FnOnce(&rusqlite::Transaction<'_>) -> Result<(serde_json::Value, T), CashError>
            + Send
            + 'static,
    {
        let (outbox, now) = (self.outbox.clone(), self.clock.now());
        let (_, value) = tokio::task::spawn_blocking(move || outbox.append_with(kind, now, build))
            .await
            .map_err(|e| CashError::Storage(e.to_string()))?
            .map_err(AppendError::into_inner)?;
        (self.on_record.0)();
        Ok(value)
    }

    async fn read<T, F>(&self, f: F) -> Result<T, CashError>
    where
        T: Send + 'static,
        F: FnOnce(&rusqlite::Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let outbox = self.outbox.clone();
        tokio::task::spawn_blocking(move || outbox.read(f))
            .await
            .map_err(|e| CashError::Storage(e.to_string()))?
            .map_err(CashError::from)
    }

    /// Notes a failed TSE call: the first failure starts an outage record.
    async fn tse_failed(&self, error: &TseError) {
        let cause = short(&error.to_string());
        let started = {
            let mut status = self.status.lock().unwrap_or_else(PoisonError::into_inner);
            status.available = false;
            status.last_error = Some(cause.clone());
            if status.outage.is_some() {
                None
            } else {
                let outage = TseOutage {
                    outage_id: format!("{:016x}", rand::random::<u64>()),
                    cash_point: self.settings.cash_point.clone(),
                    tse_serial_hex: status.info.as_ref().map(|i| i.serial_hex.clone()),
                    started_at: rfc3339(self.clock.now()),
                    ended_at: None,
                    cause,
                };
                status.outage = Some(outage.clone());
                Some(outage)
            }
        };
        if let Some(outage) = started {
            tracing::error!(cause = %outage.cause, "TSE outage: selling continues, receipts are marked");
            let result = self
                .append(KIND_TSE_OUTAGE, move |tx| {
                    let json = serde_json::to_string(&outage).unwrap_or_default();
                    meta_set(tx, "outage", Some(&json))?;
                    Ok((serde_json::to_value(&outage).unwrap_or_default(), ()))
                })
                .await;
            if let Err(error) = result {
                tracing::error!(%error, "TSE outage not recorded");
            }
        }
    }

    /// Notes a TSE call that worked: an outage in progress ends.
    async fn tse_worked(&self) {
        let ended = {
            let mut status = self.status.lock().unwrap_or_else(PoisonError::into_inner);
            status.available = true;
            status.outage.take().map(|mut outage| {
                outage.ended_at = Some(rfc3339(self.clock.now()));
                outage
            })
        };
        if let Some(outage) = ended {
            tracing::info!(outage_id = %outage.outage_id, "TSE back; outage ended");
            let result = self
                .append(KIND_TSE_OUTAGE, move |tx| {
                    meta_set(tx, "outage", None)?;
                    Ok((serde_json::to_value(&outage).unwrap_or_default(), ()))
                })
                .await;
            if let Err(error) = result {
                tracing::error!(%error, "end of the TSE outage not recorded");
            }
            self.abort_dangling().await;
        }
    }

    /// Runs a TSE call and keeps the outage bookkeeping.
    async fn tse_call<T>(
        &self,
        call: impl std::future::Future<Output = Result<T, TseError>>,
    ) -> Result<T, TseError> {
        match call.await {
            Ok(value) => {
                self.tse_worked().await;
                Ok(value)
            }
            // A refusal (unknown or finished transaction) is an answer: the
            // TSE works, so it is no outage.
            Err(error @ TseError::Refused(_)) => Err(error),
            Err(error) => {
                self.tse_failed(&error).await;
                Err(error)
            }
        }
    }

    /// Brings the TSE up: registers the cash point, sets the time, runs the
    /// self test and records the TSE's description when it is new.
    pub async fn start_tse(&self) {
        let cash_point = self.settings.cash_point.clone();
        let setup = async {
            let info = self.tse.info().await?;
            self.tse.update_time(self.clock.now().timestamp()).await?;
            self.tse.self_test().await?;
            self.tse.register_client(&cash_point).await?;
            Ok::<_, TseError>(info)
        };
        let Ok(info) = self.tse_call(setup).await else {
            return;
        };
        if !info.certified {
            tracing::warn!(serial = %info.serial_hex, "the TSE is NOT certified: receipts are not valid for tax purposes");
        }
        self.status
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .info = Some(info.clone());
        let description = TseDescription {
            cash_point,
            serial_hex: info.serial_hex.clone(),
            public_key_base64: info.public_key_base64.clone(),
            signature_algorithm: info.signature_algorithm.clone(),
            time_format: info.time_format.clone(),
            certificate_base64: info.certificate_base64.clone(),
            certified: info.certified,
            description: info.description.clone(),
            manufacturer: info.manufacturer.clone(),
            version: info.version.clone(),
        };
        let serial = info.serial_hex.clone();
        let known = self
            .read(move |conn| meta_get(conn, "tse_serial"))
            .await
            .ok()
            .flatten();
        if known.as_deref() != Some(serial.as_str()) {
            let result = self
                .append(KIND_TSE_INFO, move |tx| {
                    meta_set(tx, "tse_serial", Some(&serial))?;
                    Ok((serde_json::to_value(&description).unwrap_or_default(), ()))
                })
                .await;
            if let Err(error) = result {
                tracing::error!(%error, "TSE description not recorded");
            }
        }
        self.abort_dangling().await;
    }

    /// Aborts transactions the TSE started but never finished (a failed
    /// finish, a crash), so none stays open.
    async fn abort_dangling(&self) {
        let dangling: Vec<i64> = match self
            .read(|conn| {
                let mut stmt = conn.prepare("SELECT transaction_number FROM cash_dangling_tse")?;
                let rows = stmt.query_map([], |r| r.get(0))?;
                rows.collect()
            })
            .await
        {
            Ok(d) => d,
            Err(error) => {
                tracing::warn!(%error, "cannot read dangling TSE transactions");
                return;
            }
        };
        for number in dangling {
            let finished = self
                .tse
                .finish_transaction(
                    &self.settings.cash_point,
                    number as u64,
                    PROCESS_TYPE_RECEIPT,
                    ABORT_PROCESS_DATA.as_bytes(),
                )
                .await;
            match finished {
                Ok(_) | Err(TseError::Refused(_)) => {
                    // Refused: the TSE no longer knows it as open; nothing left to abort.
                    let removed = self
                        .read(move |conn| {
                            conn.execute(
                                "DELETE FROM cash_dangling_tse WHERE transaction_number = ?1",
                                [number],
                            )
                        })
                        .await;
                    if let Err(error) = removed {
                        tracing::warn!(%error, "dangling TSE transaction not cleared");
                    }
                    tracing::info!(transaction = number, "dangling TSE transaction aborted");
                }
                Err(error) => {
                    tracing::warn!(%error, transaction = number, "dangling TSE transaction not aborted yet");
                    return;
                }
            }
        }
    }

    /// Opens a sale: the TSE starts its transaction (or the outage is noted).
    pub async fn open_sale(&self, new: NewSale) -> Result<OpenSale, CashError> {
        if new.operator.trim().is_empty() {
            return Err(SaleError {
                field: "operator".into(),
                problem: "is required".into(),
            }
            .into());
        }
        let open: i64 = self
            .read(|conn| conn.query_row("SELECT COUNT(*) FROM cash_open_sales", [], |r| r.get(0)))
            .await?;
        if open as usize >= MAX_OPEN_SALES {
            return Err(CashError::TooManyOpen);
        }
        let started = self
            .tse_call(self.tse.start_transaction(
                &self.settings.cash_point,
                PROCESS_TYPE_RECEIPT,
                b"",
            ))
            .await;
        let (tse_start, tse_error) = match started {
            Ok(log) => (Some(log), None),
            Err(error) => (None, Some(short(&error.to_string()))),
        };
        let mut sale = OpenSale {
            sale_id: 0,
            operator: new.operator,
            ticket_no: new.ticket_no,
            customer: new.customer,
            lines: Vec::new(),
            started_at: rfc3339(self.clock.now()),
            tse_transaction: tse_start.as_ref().map(|l| l.transaction_number),
            tse_start,
            tse_updates: Vec::new(),
            tse_error,
            unsigned_change: false,
        };
        let stored = sale.clone();
        let sale_id = self
            .read(move |conn| {
                conn.execute(
                    "INSERT INTO cash_open_sales (sale) VALUES (?1)",
                    [serde_json::to_string(&stored).unwrap_or_default()],
                )?;
                let id = conn.last_insert_rowid();
                let mut stored = stored;
                stored.sale_id = id;
                save_open(conn, &stored)?;
                Ok(id)
            })
            .await?;
        sale.sale_id = sale_id;
        Ok(sale)
    }

    pub async fn open_sales(&self) -> Result<Vec<OpenSale>, CashError> {
        self.read(|conn| {
            let mut stmt = conn.prepare("SELECT sale FROM cash_open_sales ORDER BY sale_id")?;
            let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
            Ok(rows
                .filter_map(|r| r.ok().and_then(|s| serde_json::from_str(&s).ok()))
                .collect())
        })
        .await
    }

    /// Adds a line to an open sale; the TSE hears of it with the next update.
    pub async fn add_line(&self, sale_id: i64, line: SaleLine) -> Result<OpenSale, CashError> {
        // The line alone, paid exactly, is checked like a whole receipt.
        let paid = Payment {
            kind: valeo_records::cash::PaymentType::Bar,
            amount_cents: line.gross_cents,
        };
        check_sale(std::slice::from_ref(&line), &[paid])?;
        self.read(move |conn| {
            let Some(mut sale) = load_open(conn, sale_id)? else {
                return Ok(None);
            };
            if sale.lines.len() >= valeo_records::cash::MAX_SALE_LINES {
                return Ok(Some(Err(CashError::TooManyLines)));
            }
            sale.lines.push(line);
            sale.unsigned_change = true;
            save_open(conn, &sale)?;
            Ok(Some(Ok(sale)))
        })
        .await?
        .ok_or(CashError::NoSuchSale(sale_id))?
    }

    /// Signs the changed lines of every open sale as update logs; run at
    /// least every MAX_UPDATE_DELAY.
    pub async fn sign_updates(&self) {
        let Ok(sales) = self.open_sales().await else {
            return;
        };
        for sale in sales.into_iter().filter(|s| s.unsigned_change) {
            let Some(number) = sale.tse_transaction else {
                continue;
            };
            let signed_lines = sale.lines.len();
            let data = process_data(ReceiptType::Beleg, &sale.lines, &[]);
            let update = self
                .tse_call(self.tse.update_transaction(
                    &self.settings.cash_point,
                    number,
                    PROCESS_TYPE_RECEIPT,
                    data.as_bytes(),
                ))
                .await;
            let Ok(log) = update else {
                continue;
            };
            let sale_id = sale.sale_id;
            let saved = self
                .read(move |conn| {
                    if let Some(mut sale) = load_open(conn, sale_id)? {
                        sale.tse_updates.push(log);
                        // A line added while the TSE was signing is not in this
                        // update: it stays unsigned until the next round.
                        sale.unsigned_change = sale.lines.len() != signed_lines;
                        save_open(conn, &sale)?;
                    }
                    Ok(())
                })
                .await;
            if let Err(error) = saved {
                tracing::warn!(%error, sale_id, "signed update not stored");
            }
        }
    }

    /// Finishes an open sale with its payments: signs it and records it.
    pub async fn finish_sale(
        &self,
        sale_id: i64,
        payments: Vec<Payment>,
    ) -> Result<CashSale, CashError> {
        let _claim = self.claim(Claim::Sale(sale_id))?;
        let sale = self
            .read(move |conn| load_open(conn, sale_id))
            .await?
            .ok_or(CashError::NoSuchSale(sale_id))?;
        check_sale(&sale.lines, &payments)?;
        self.complete(Some(sale_id), sale, ReceiptType::Beleg, payments, None)
            .await
    }

    /// Aborts an open sale (AVBelegabbruch): signed and recorded, no money.
    pub async fn abort_sale(&self, sale_id: i64) -> Result<CashSale, CashError> {
        let _claim = self.claim(Claim::Sale(sale_id))?;
        let mut sale = self
            .read(move |conn| load_open(conn, sale_id))
            .await?
            .ok_or(CashError::NoSuchSale(sale_id))?;
        sale.lines.clear();
        self.complete(
            Some(sale_id),
            sale,
            ReceiptType::AVBelegabbruch,
            Vec::new(),
            None,
        )
        .await
    }

    /// Opens and finishes a sale in one step (a counter sale).
    pub async fn sell(
        &self,
        new: NewSale,
        lines: Vec<SaleLine>,
        payments: Vec<Payment>,
    ) -> Result<CashSale, CashError> {
        check_sale(&lines, &payments)?;
        let mut sale = self.open_sale(new).await?;
        sale.lines = lines;
        self.complete(Some(sale.sale_id), sale, ReceiptType::Beleg, payments, None)
            .await
    }

    /// Cancels a receipt: a new receipt with every amount negated that
    /// refers to it (a storno is never an edit).
    pub async fn storno(&self, receipt_no: u64, operator: String) -> Result<CashSale, CashError> {
        let _claim = self.claim(Claim::Receipt(receipt_no))?;
        let (original, cancelled_by) = self.receipt(receipt_no).await?;
        if let Some(by) = cancelled_by {
            return Err(CashError::AlreadyCancelled(receipt_no, by));
        }
        if original.receipt_type != ReceiptType::Beleg {
            return Err(CashError::NotCancellable(receipt_no, "it is no sale"));
        }
        if original.cancels_receipt_no.is_some() {
            return Err(CashError::NotCancellable(
                receipt_no,
                "it is a storno itself",
            ));
        }
        let lines: Vec<SaleLine> = original
            .lines
            .iter()
            .map(|l| SaleLine {
                quantity_milli: -l.quantity_milli,
                gross_cents: -l.gross_cents,
                ..l.clone()
            })
            .collect();
        let payments: Vec<Payment> = original
            .payments
            .iter()
            .map(|p| Payment {
                kind: p.kind,
                amount_cents: -p.amount_cents,
            })
            .collect();
        let mut sale = self
            .open_sale(NewSale {
                operator,
                ticket_no: original.ticket_no,
                customer: original.customer.clone(),
            })
            .await?;
        sale.lines = lines;
        self.complete(
            Some(sale.sale_id),
            sale,
            ReceiptType::Beleg,
            payments,
            Some(receipt_no),
        )
        .await
    }

    /// Finishes the TSE transaction (starting one if the start had failed
    /// and the TSE is back) and records the sale with the next receipt number.
    async fn complete(
        &self,
        sale_id: Option<i64>,
        sale: OpenSale,
        receipt_type: ReceiptType,
        payments: Vec<Payment>,
        cancels: Option<u64>,
    ) -> Result<CashSale, CashError> {
        let data = process_data(receipt_type, &sale.lines, &payments);
        let cash_point = self.settings.cash_point.clone();
        let mut start = sale.tse_start.clone();
        let mut tse_error = None;
        if start.is_none() {
            // The start failed earlier; if the TSE is back, sign the whole sale now.
            match self
                .tse_call(
                    self.tse
                        .start_transaction(&cash_point, PROCESS_TYPE_RECEIPT, b""),
                )
                .await
            {
                Ok(log) => start = Some(log),
                Err(error) => tse_error = Some(short(&error.to_string())),
            }
        }
        let mut finish = None;
        let mut dangling = None;
        if let Some(start) = &start {
            match self
                .tse_call(self.tse.finish_transaction(
                    &cash_point,
                    start.transaction_number,
                    PROCESS_TYPE_RECEIPT,
                    data.as_bytes(),
                ))
                .await
            {
                Ok(log) => finish = Some(log),
                Err(error) => {
                    tse_error = Some(short(&format!(
                        "TSE transaction {} not finished: {error}",
                        start.transaction_number
                    )));
                    dangling = Some(start.transaction_number);
                }
            }
        }
        let info = match self.status().info {
            Some(info) => Some(info),
            // The TSE was down at start-up and works now: ask who it is.
            None if finish.is_some() => self.tse.info().await.ok().inspect(|info| {
                self.status
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .info = Some(info.clone());
            }),
            None => None,
        };
        let tse = match (&start, &finish, &info) {
            (Some(start), Some(finish), Some(info)) => {
                Some(self.sale_tse(info, start, &sale.tse_updates, finish, &data))
            }
            _ => None,
        };
        if tse.is_none() && tse_error.is_none() {
            tse_error = Some("the TSE did not describe itself (no serial, no key)".into());
        }
        let now = rfc3339(self.clock.now());
        let record = CashSale {
            cash_point,
            receipt_no: 0,
            receipt_type,
            cancels_receipt_no: cancels,
            started_at: sale.started_at.clone(),
            finished_at: now.clone(),
            operator: sale.operator.clone(),
            ticket_no: sale.ticket_no,
            customer: sale.customer.clone(),
            lines: sale.lines.clone(),
            payments,
            process_type: PROCESS_TYPE_RECEIPT.into(),
            process_data: data,
            tse,
            tse_error,
        };
        self.append(KIND_CASH_SALE, move |tx| {
            let last: Option<i64> =
                tx.query_row("SELECT MAX(receipt_no) FROM cash_receipts", [], |r| r.get(0))?;
            let mut record = record;
            record.receipt_no = last.unwrap_or(0) as u64 + 1;
            tx.execute(
                "INSERT INTO cash_receipts (receipt_no, sale) VALUES (?1, ?2)",
                params![
                    record.receipt_no as i64,
                    serde_json::to_string(&record).unwrap_or_default()
                ],
            )?;
            // Backstops to the claims: the transaction rolls back unless this
            // request is the one that cancels, and the one that closes the sale.
            if let Some(cancelled) = cancels {
                let marked = tx.execute(
                    "UPDATE cash_receipts SET cancelled_by = ?2
                     WHERE receipt_no = ?1 AND cancelled_by IS NULL",
                    params![cancelled as i64, record.receipt_no as i64],
                )?;
                if marked != 1 {
                    return Err(CashError::Busy);
                }
            }
            if let Some(id) = sale_id {
                let removed = tx.execute("DELETE FROM cash_open_sales WHERE sale_id = ?1", [id])?;
                if removed != 1 {
                    return Err(CashError::NoSuchSale(id));
                }
            }
            if let Some(number) = dangling {
                tx.execute(
                    "INSERT OR IGNORE INTO cash_dangling_tse (transaction_number, since) VALUES (?1, ?2)",
                    params![number as i64, now],
                )?;
            }
            Ok((serde_json::to_value(&record).unwrap_or_default(), record))
        })
        .await
    }

    fn sale_tse(
        &self,
        info: &TseInfo,
        start: &SignedLog,
        updates: &[SignedLog],
        finish: &SignedLog,
        data: &str,
    ) -> SaleTse {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD;
        let signature = b64.decode(&finish.signature_base64).unwrap_or_default();
        let public_key = b64.decode(&info.public_key_base64).unwrap_or_default();
        let qr = qr_code(&QrFields {
            client_id: &self.settings.cash_point,
            process_type: PROCESS_TYPE_RECEIPT,
            process_data: data,
            transaction_number: finish.transaction_number,
            signature_counter: finish.signature_counter,
            start_unix: start.log_time_unix,
            finish_unix: finish.log_time_unix,
            signature_algorithm: &info.signature_algorithm,
            time_format: &info.time_format,
            signature: &signature,
            public_key: &public_key,
        });
        SaleTse {
            serial_hex: info.serial_hex.clone(),
            transaction_number: finish.transaction_number,
            signature_counter: finish.signature_counter,
            start_unix: start.log_time_unix,
            finish_unix: finish.log_time_unix,
            signature_base64: finish.signature_base64.clone(),
            public_key_base64: info.public_key_base64.clone(),
            signature_algorithm: info.signature_algorithm.clone(),
            time_format: info.time_format.clone(),
            log_messages_base64: std::iter::once(start)
                .chain(updates)
                .chain(std::iter::once(finish))
                .filter_map(|l| l.log_message_base64.clone())
                .collect(),
            qr_code: qr,
            certified: Some(info.certified),
        }
    }

    /// The TSE's TAR export (TR-03151).
    pub async fn tse_export(
        &self,
        filter: valeo_drivers::tse::ExportFilter,
    ) -> Result<Vec<u8>, TseError> {
        self.tse.export(filter).await
    }

    /// A recorded receipt.
    pub async fn receipt(&self, receipt_no: u64) -> Result<(CashSale, Option<u64>), CashError> {
        let row = self
            .read(move |conn| {
                conn.query_row(
                    "SELECT sale, cancelled_by FROM cash_receipts WHERE receipt_no = ?1",
                    [receipt_no as i64],
                    |r| Ok((r.get::<_, String>(0)?, r.get::<_, Option<i64>>(1)?)),
                )
                .optional()
            })
            .await?
            .ok_or(CashError::NoSuchReceipt(receipt_no))?;
        let sale = serde_json::from_str(&row.0).map_err(|e| CashError::Storage(e.to_string()))?;
        Ok((sale, row.1.map(|n| n as u64)))
    }

    /// The newest receipts first.
    pub async fn receipts(&self, limit: u32) -> Result<Vec<CashSale>, CashError> {
        self.read(move |conn| {
            let mut stmt =
                conn.prepare("SELECT sale FROM cash_receipts ORDER BY receipt_no DESC LIMIT ?1")?;
            let rows = stmt.query_map([limit], |r| r.get::<_, String>(0))?;
            Ok(rows
                .filter_map(|r| r.ok().and_then(|s| serde_json::from_str(&s).ok()))
                .collect())
        })
        .await
    }

    /// The daily closing (Z report) over every receipt since the last one.
    pub async fn close_day(&self) -> Result<CashClosing, CashError> {
        let cash_point = self.settings.cash_point.clone();
        let now = self.clock.now();
        self.append(KIND_CASH_CLOSING, move |tx| {
            let last_z: i64 = meta_get(tx, "last_z_nr")?
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let after: i64 = meta_get(tx, "last_closed_receipt")?
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let mut stmt = tx.prepare(
                "SELECT receipt_no, sale FROM cash_receipts WHERE receipt_no > ?1 ORDER BY receipt_no",
            )?;
            let sales: Vec<(i64, CashSale)> = stmt
                .query_map([after], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))?
                .filter_map(|r| r.ok())
                .filter_map(|(n, s)| serde_json::from_str(&s).ok().map(|s| (n, s)))
                .collect();
            drop(stmt);
            let total_gross_cents = sales
                .iter()
                .flat_map(|(_, s)| &s.lines)
                .map(|l| l.gross_cents)
                .sum();
            let total_cash_cents = sales
                .iter()
                .flat_map(|(_, s)| &s.payments)
                .filter(|p| p.kind.is_cash())
                .map(|p| p.amount_cents)
                .sum();
            let closing = CashClosing {
                cash_point,
                z_nr: last_z as u64 + 1,
                created_at: rfc3339(now),
                business_day: now.format("%Y-%m-%d").to_string(),
                first_receipt_no: sales.first().map(|(n, _)| *n as u64),
                last_receipt_no: sales.last().map(|(n, _)| *n as u64),
                total_gross_cents,
                total_cash_cents,
            };
            meta_set(tx, "last_z_nr", Some(&closing.z_nr.to_string()))?;
            if let Some(last) = closing.last_receipt_no {
                meta_set(tx, "last_closed_receipt", Some(&last.to_string()))?;
            }
            Ok((serde_json::to_value(&closing).unwrap_or_default(), closing))
        })
        .await
    }
}

/// Signs open sales' changes every `update_interval_ms` and, during an
/// outage, probes the TSE every `outage_probe_ms`, until the process ends.
pub async fn run(desk: CashDesk) {
    desk.start_tse().await;
    let mut updates =
        tokio::time::interval(Duration::from_millis(desk.settings.update_interval_ms));
    updates.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut probe = tokio::time::interval(Duration::from_millis(desk.settings.outage_probe_ms));
    probe.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = updates.tick() => desk.sign_updates().await,
            _ = probe.tick() => {
                if desk.status().outage.is_some() {
                    desk.start_tse().await;
                }
            }
        }
    }
}
