//! Cash sales, TSE outages, TSE descriptions, closings and the TSE log
//! messages, materialised from the boxes' records, and the check of every
//! signature.
//!
//! Central trusts no box: each log message a sale carries is parsed and
//! verified here against the TSE's public key (whose SHA-256 must be the
//! TSE serial), and its fields must be the sale's (client, transaction,
//! process data). A sale without log messages (a cloud TSE that keeps
//! them) is verified through its QR code. A failed check never drops a
//! record: the sale is stored with the reason, for an auditor to see.

use base64::Engine;
use rusqlite::{OptionalExtension, params};
use serde::Serialize;
use valeo_drivers::tse::logmsg::{self, LogKind, LogMessage, Operation, QrFields};
use valeo_records::cash::{
    CashClosing, CashSale, KIND_CASH_CLOSING, KIND_CASH_SALE, KIND_TSE_INFO, KIND_TSE_OUTAGE,
    TseDescription, TseOutage, process_data,
};
use valeo_sync::wire::Record;

use super::{Store, StoreError};

pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS tse_devices (
    serial_hex TEXT PRIMARY KEY,
    device_id TEXT NOT NULL,
    description TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS cash_sales (
    id INTEGER PRIMARY KEY,
    device_id TEXT NOT NULL,
    cash_point TEXT NOT NULL,
    receipt_no INTEGER NOT NULL,
    finished_at TEXT NOT NULL,
    gross_cents INTEGER NOT NULL,
    tse_serial TEXT,
    verification TEXT NOT NULL,
    sale TEXT NOT NULL,
    epoch TEXT NOT NULL,
    seq INTEGER NOT NULL,
    UNIQUE (device_id, epoch, cash_point, receipt_no)
);
CREATE INDEX IF NOT EXISTS cash_sales_by_time ON cash_sales (cash_point, finished_at);
CREATE TABLE IF NOT EXISTS tse_logs (
    serial_hex TEXT NOT NULL,
    signature_counter INTEGER NOT NULL,
    log_time_unix INTEGER NOT NULL,
    file_name TEXT NOT NULL,
    log BLOB NOT NULL,
    PRIMARY KEY (serial_hex, signature_counter)
);
CREATE TABLE IF NOT EXISTS tse_outages (
    outage_id TEXT PRIMARY KEY,
    device_id TEXT NOT NULL,
    cash_point TEXT NOT NULL,
    started_at TEXT NOT NULL,
    ended_at TEXT,
    outage TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS cash_closings (
    device_id TEXT NOT NULL,
    cash_point TEXT NOT NULL,
    z_nr INTEGER NOT NULL,
    business_day TEXT NOT NULL,
    closing TEXT NOT NULL,
    PRIMARY KEY (device_id, cash_point, z_nr)
);
";

/// Whether a record kind is fiscal (handled here).
pub(super) fn is_fiscal(kind: &str) -> bool {
    [
        KIND_CASH_SALE,
        KIND_TSE_OUTAGE,
        KIND_TSE_INFO,
        KIND_CASH_CLOSING,
    ]
    .contains(&kind)
}

/// Applies a fiscal record.
pub(super) fn materialize(tx: &rusqlite::Transaction<'_>, record: &Record) -> Result<(), String> {
    let payload = record.payload.clone();
    let sql = |e: rusqlite::Error| e.to_string();
    match record.kind.as_str() {
        KIND_TSE_INFO => {
            let info: TseDescription = serde_json::from_value(payload)
                .map_err(|e| format!("{KIND_TSE_INFO} payload: {e}"))?;
            let key = base64::engine::general_purpose::STANDARD
                .decode(&info.public_key_base64)
                .map_err(|_| format!("{KIND_TSE_INFO}: the public key is not base64"))?;
            if !hex::encode(logmsg::serial_number(&key)).eq_ignore_ascii_case(&info.serial_hex) {
                return Err(format!(
                    "{KIND_TSE_INFO}: serial {} is not the SHA-256 of the public key",
                    info.serial_hex
                ));
            }
            // A box may describe its own TSE again, never another box's.
            let changed = tx
                .execute(
                    "INSERT INTO tse_devices (serial_hex, device_id, description) VALUES (?1, ?2, ?3)
                     ON CONFLICT (serial_hex) DO UPDATE SET description = excluded.description
                     WHERE tse_devices.device_id = excluded.device_id",
                    params![
                        info.serial_hex.to_ascii_lowercase(),
                        record.device_id,
                        serde_json::to_string(&info).unwrap_or_default()
                    ],
                )
                .map_err(sql)?;
            if changed == 0 {
                return Err(format!(
                    "{KIND_TSE_INFO}: TSE {} is registered for another device",
                    info.serial_hex
                ));
            }
        }
        KIND_TSE_OUTAGE => {
            let outage: TseOutage = serde_json::from_value(payload)
                .map_err(|e| format!("{KIND_TSE_OUTAGE} payload: {e}"))?;
            tx.execute(
                "INSERT INTO tse_outages (outage_id, device_id, cash_point, started_at, ended_at, outage)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (outage_id) DO UPDATE SET ended_at = excluded.ended_at,
                     outage = excluded.outage",
                params![
                    outage.outage_id,
                    record.device_id,
                    outage.cash_point,
                    outage.started_at,
                    outage.ended_at,
                    serde_json::to_string(&outage).unwrap_or_default()
                ],
            )
            .map_err(sql)?;
        }
        KIND_CASH_CLOSING => {
            let closing: CashClosing = serde_json::from_value(payload)
                .map_err(|e| format!("{KIND_CASH_CLOSING} payload: {e}"))?;
            tx.execute(
                "INSERT OR IGNORE INTO cash_closings (device_id, cash_point, z_nr, business_day, closing)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    record.device_id,
                    closing.cash_point,
                    closing.z_nr as i64,
                    closing.business_day,
                    serde_json::to_string(&closing).unwrap_or_default()
                ],
            )
            .map_err(sql)?;
        }
        _ => {
            let sale: CashSale = serde_json::from_value(payload)
                .map_err(|e| format!("{KIND_CASH_SALE} payload: {e}"))?;
            let (mut verification, logs) = verify_sale(&sale);
            let reused: Option<String> = tx
                .query_row(
                    "SELECT epoch FROM cash_sales WHERE device_id = ?1 AND cash_point = ?2
                       AND receipt_no = ?3 AND epoch <> ?4 LIMIT 1",
                    params![
                        record.device_id,
                        sale.cash_point,
                        sale.receipt_no as i64,
                        record.epoch
                    ],
                    |r| r.get(0),
                )
                .optional()
                .map_err(sql)?;
            if reused.is_some() {
                verification = format!(
                    "invalid: receipt number {} was already used before the box's database was recreated",
                    sale.receipt_no
                );
            }
            let mut fresh = Vec::new();
            for log in &logs {
                let serial = hex::encode(&log.serial_number);
                let stored: Option<Vec<u8>> = tx
                    .query_row(
                        "SELECT log FROM tse_logs WHERE serial_hex = ?1 AND signature_counter = ?2",
                        params![serial, log.signature_counter as i64],
                        |r| r.get(0),
                    )
                    .optional()
                    .map_err(sql)?;
                let bytes = logmsg::assemble(&log.dtbs, &log.signature);
                match stored {
                    // A TSE signs each counter once: a second message with the
                    // same counter means one of them is not what it claims.
                    Some(other) if other != bytes => {
                        verification = format!(
                            "invalid: signature counter {} of TSE {serial} was already used by another log message",
                            log.signature_counter
                        );
                    }
                    Some(_) => {}
                    None => fresh.push((serial, log, bytes)),
                }
            }
            if verification != "valid" && !verification.starts_with("unsigned") {
                tracing::warn!(device_id = %record.device_id, receipt_no = sale.receipt_no, %verification, "cash sale failed verification");
            }
            // Only messages of a sale that checked out go into TAR exports.
            if verification == "valid" {
                for (serial, log, bytes) in fresh {
                    tx.execute(
                            "INSERT INTO tse_logs (serial_hex, signature_counter, log_time_unix, file_name, log)
                             VALUES (?1, ?2, ?3, ?4, ?5)",
                            params![
                                serial,
                                log.signature_counter as i64,
                                log.log_time.unix().unwrap_or(0),
                                logmsg::file_name(log),
                                bytes
                            ],
                        )
                        .map_err(sql)?;
                }
            }
            let gross: i64 = sale.lines.iter().map(|l| l.gross_cents).sum();
            tx.execute(
                "INSERT INTO cash_sales (device_id, cash_point, receipt_no, finished_at,
                     gross_cents, tse_serial, verification, sale, epoch, seq)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                params![
                    record.device_id,
                    sale.cash_point,
                    sale.receipt_no as i64,
                    sale.finished_at,
                    gross,
                    sale.tse.as_ref().map(|t| t.serial_hex.to_ascii_lowercase()),
                    verification,
                    serde_json::to_string(&sale).unwrap_or_default(),
                    record.epoch,
                    record.seq as i64
                ],
            )
            .map_err(sql)?;
        }
    }
    Ok(())
}

/// Checks a sale's TSE data; returns `valid`, `unsigned: …` or `invalid: …`
/// and the log messages that verified.
pub fn verify_sale(sale: &CashSale) -> (String, Vec<LogMessage>) {
    // The receipt's own lines and payments must be what was given to the
    // TSE: otherwise a signature over one amount could cover another.
    let expected = process_data(sale.receipt_type, &sale.lines, &sale.payments);
    if sale.process_data != expected {
        return (
            format!(
                "invalid: the process data {:?} is not the receipt's lines and payments ({expected:?})",
                sale.process_data
            ),
            Vec::new(),
        );
    }
    let Some(tse) = &sale.tse else {
        return (
            format!(
                "unsigned: {}",
                sale.tse_error.as_deref().unwrap_or("no TSE data")
            ),
            Vec::new(),
        );
    };
    let b64 = base64::engine::general_purpose::STANDARD;
    let Ok(public_key) = b64.decode(&tse.public_key_base64) else {
        return ("invalid: the public key is not base64".into(), Vec::new());
    };
    if !hex::encode(logmsg::serial_number(&public_key)).eq_ignore_ascii_case(&tse.serial_hex) {
        return (
            "invalid: the TSE serial is not the SHA-256 of its public key".into(),
            Vec::new(),
        );
    }
    // The QR code must be exactly the one the receipt's own TSE data give,
    // so a genuine QR code of another receipt (or another key) cannot stand in.
    let Ok(signature) = b64.decode(&tse.signature_base64) else {
        return ("invalid: the signature is not base64".into(), Vec::new());
    };
    let rebuilt = logmsg::qr_code(&QrFields {
        client_id: &sale.cash_point,
        process_type: &sale.process_type,
        process_data: &sale.process_data,
        transaction_number: tse.transaction_number,
        signature_counter: tse.signature_counter,
        start_unix: tse.start_unix,
        finish_unix: tse.finish_unix,
        signature_algorithm: &tse.signature_algorithm,
        time_format: &tse.time_format,
        signature: &signature,
        public_key: &public_key,
    });
    if rebuilt != tse.qr_code {
        return (
            "invalid: the QR code is not the receipt's TSE data".into(),
            Vec::new(),
        );
    }
    if tse.log_messages_base64.is_empty() {
        return match logmsg::verify_qr(&tse.qr_code) {
            Ok(()) => ("valid".into(), Vec::new()),
            Err(error) => (format!("invalid: QR code: {error}"), Vec::new()),
        };
    }
    let mut logs = Vec::new();
    for (i, text) in tse.log_messages_base64.iter().enumerate() {
        let Ok(bytes) = b64.decode(text) else {
            return (format!("invalid: log message {i} is not base64"), logs);
        };
        let log = match logmsg::parse(&bytes) {
            Ok(log) => log,
            Err(error) => return (format!("invalid: log message {i}: {error}"), logs),
        };
        if let Err(error) = logmsg::verify(&log, &public_key) {
            return (format!("invalid: log message {i}: {error}"), logs);
        }
        logs.push(log);
    }
    if let Err(error) = logmsg::check_sequence(&logs) {
        return (format!("invalid: {error}"), logs);
    }
    match logs.last().map(|l| (&l.kind, l.signature_counter)) {
        Some((
            LogKind::Transaction {
                operation: Operation::Finish,
                client_id,
                process_data,
                transaction_number,
                ..
            },
            counter,
        )) => {
            if client_id != &sale.cash_point {
                return (
                    format!(
                        "invalid: signed for client {client_id:?}, not {:?}",
                        sale.cash_point
                    ),
                    logs,
                );
            }
            if process_data.as_slice() != sale.process_data.as_bytes() {
                return (
                    "invalid: the signed process data is not the receipt's".into(),
                    logs,
                );
            }
            if *transaction_number != tse.transaction_number || counter != tse.signature_counter {
                return (
                    "invalid: transaction number or signature counter differ from the receipt"
                        .into(),
                    logs,
                );
            }
            ("valid".into(), logs)
        }
        _ => ("invalid: the last log message is not a finish".into(), logs),
    }
}

/// A cash sale as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[schema(example = json!({
    "id": 17,
    "device_id": "yard-1",
    "verification": "valid",
    "tse_certified": false,
    "sale": {
        "cash_point": "KASSE-1", "receipt_no": 42, "receipt_type": "Beleg",
        "started_at": "2026-11-29T08:10:00Z", "finished_at": "2026-11-29T08:10:30Z",
        "operator": "Anna",
        "lines": [{"text": "Weizensaat", "quantity_milli": 25000, "unit": "kg",
                   "unit_price_cents": 120, "gross_cents": 3000, "vat_key": 2}],
        "payments": [{"type": "Bar", "amount_cents": 3000}],
        "process_type": "Kassenbeleg-V1",
        "process_data": "Beleg^0.00_30.00_0.00_0.00_0.00^30.00:Bar"
    }
}))]
pub struct CashSaleView {
    pub id: i64,
    pub device_id: String,
    /// `valid`, `unsigned: …` (the TSE failed; the receipt says so) or
    /// `invalid: …` with the reason the check failed.
    pub verification: String,
    /// Whether the signing TSE is certified, as its box described it (the
    /// software TSE is not); `None` for an unsigned sale or an unknown TSE.
    pub tse_certified: Option<bool>,
    #[schema(value_type = crate::api::openapi::records::CashSaleSchema)]
    pub sale: CashSale,
}

/// Which sales to list.
#[derive(Debug, Clone, Default)]
pub struct CashSaleFilter {
    pub device_id: Option<String>,
    pub cash_point: Option<String>,
    /// RFC 3339 or a date; compared as text against `finished_at`.
    pub from: Option<String>,
    pub to: Option<String>,
    pub limit: u32,
    pub offset: u64,
}

/// The columns `sale_view` reads, with the signing TSE's certification.
const SALE_COLUMNS: &str = "s.id, s.device_id, s.verification, s.sale,
    (SELECT json_extract(d.description, '$.certified') FROM tse_devices d
      WHERE d.serial_hex = s.tse_serial)";

fn sale_view(r: &rusqlite::Row<'_>) -> rusqlite::Result<CashSaleView> {
    let sale: String = r.get(3)?;
    Ok(CashSaleView {
        id: r.get(0)?,
        device_id: r.get(1)?,
        verification: r.get(2)?,
        tse_certified: r.get::<_, Option<i64>>(4)?.map(|c| c != 0),
        sale: serde_json::from_str(&sale).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(3, rusqlite::types::Type::Text, e.into())
        })?,
    })
}

/// A TSE as central knows it: the box that uses it and its description.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct TseView {
    pub device_id: String,
    #[serde(flatten)]
    #[schema(value_type = crate::api::openapi::records::TseDescriptionSchema)]
    pub description: TseDescription,
}

impl Store {
    pub fn cash_sales(&self, filter: &CashSaleFilter) -> Result<Vec<CashSaleView>, StoreError> {
        let conn = self.reader();
        let mut stmt = conn.prepare(&format!(
            "SELECT {SALE_COLUMNS} FROM cash_sales s
             WHERE (?1 IS NULL OR s.device_id = ?1) AND (?2 IS NULL OR s.cash_point = ?2)
               AND (?3 IS NULL OR s.finished_at >= ?3) AND (?4 IS NULL OR s.finished_at < ?4)
             ORDER BY s.finished_at DESC, s.id DESC LIMIT ?5 OFFSET ?6"
        ))?;
        let rows = stmt.query_map(
            params![
                filter.device_id,
                filter.cash_point,
                filter.from,
                filter.to,
                filter.limit,
                filter.offset as i64
            ],
            sale_view,
        )?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    pub fn cash_sale(&self, id: i64) -> Result<Option<CashSaleView>, StoreError> {
        let conn = self.reader();
        Ok(conn
            .query_row(
                &format!("SELECT {SALE_COLUMNS} FROM cash_sales s WHERE s.id = ?1"),
                [id],
                sale_view,
            )
            .optional()?)
    }

    pub fn tse_outages(&self, device_id: Option<&str>) -> Result<Vec<TseOutage>, StoreError> {
        let conn = self.reader();
        let mut stmt = conn.prepare(
            "SELECT outage FROM tse_outages WHERE (?1 IS NULL OR device_id = ?1)
             ORDER BY started_at DESC LIMIT 1000",
        )?;
        let rows = stmt.query_map([device_id], |r| r.get::<_, String>(0))?;
        Ok(rows
            .filter_map(|r| r.ok().and_then(|s| serde_json::from_str(&s).ok()))
            .collect())
    }

    pub fn tses(&self) -> Result<Vec<TseView>, StoreError> {
        let conn = self.reader();
        let mut stmt =
            conn.prepare("SELECT device_id, description FROM tse_devices ORDER BY serial_hex")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
        Ok(rows
            .filter_map(|r| r.ok())
            .filter_map(|(device_id, d)| {
                serde_json::from_str(&d).ok().map(|description| TseView {
                    device_id,
                    description,
                })
            })
            .collect())
    }

    /// The closings of a cash point whose business day is in `from..=to`
    /// (`YYYY-MM-DD`), each with its sales.
    pub fn closings_with_sales(
        &self,
        device_id: &str,
        cash_point: &str,
        from: &str,
        to: &str,
    ) -> Result<Vec<(CashClosing, Vec<CashSale>)>, StoreError> {
        let conn = self.reader();
        let mut stmt = conn.prepare(
            "SELECT closing FROM cash_closings WHERE device_id = ?1 AND cash_point = ?2
               AND business_day >= ?3 AND business_day <= ?4 ORDER BY z_nr",
        )?;
        let closings: Vec<CashClosing> = stmt
            .query_map(params![device_id, cash_point, from, to], |r| {
                r.get::<_, String>(0)
            })?
            .filter_map(|r| r.ok().and_then(|s| serde_json::from_str(&s).ok()))
            .collect();
        let mut out = Vec::with_capacity(closings.len());
        let mut sales_stmt = conn.prepare(
            "SELECT sale FROM cash_sales WHERE device_id = ?1 AND cash_point = ?2
               AND receipt_no >= ?3 AND receipt_no <= ?4 ORDER BY receipt_no",
        )?;
        for closing in closings {
            let sales = match (closing.first_receipt_no, closing.last_receipt_no) {
                (Some(first), Some(last)) => sales_stmt
                    .query_map(
                        params![device_id, cash_point, first as i64, last as i64],
                        |r| r.get::<_, String>(0),
                    )?
                    .filter_map(|r| r.ok().and_then(|s| serde_json::from_str(&s).ok()))
                    .collect(),
                _ => Vec::new(),
            };
            out.push((closing, sales));
        }
        Ok(out)
    }

    /// The stored log messages of a TSE with a log time in `from..to` (Unix
    /// seconds), by signature counter, with their TAR file names.
    pub fn tse_logs(
        &self,
        serial_hex: &str,
        from_unix: i64,
        to_unix: i64,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let conn = self.reader();
        let mut stmt = conn.prepare(
            "SELECT file_name, log FROM tse_logs WHERE serial_hex = ?1
               AND log_time_unix >= ?2 AND log_time_unix < ?3 ORDER BY signature_counter",
        )?;
        let rows = stmt.query_map(
            params![serial_hex.to_ascii_lowercase(), from_unix, to_unix],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// The boxes that closed days of `cash_point`.
    pub fn devices_of_cash_point(&self, cash_point: &str) -> Result<Vec<String>, StoreError> {
        let conn = self.reader();
        let mut stmt = conn.prepare(
            "SELECT DISTINCT device_id FROM cash_closings WHERE cash_point = ?1 ORDER BY device_id",
        )?;
        let rows = stmt.query_map([cash_point], |r| r.get(0))?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// The description of a TSE.
    pub fn tse(&self, serial_hex: &str) -> Result<Option<TseDescription>, StoreError> {
        let conn = self.reader();
        let description: Option<String> = conn
            .query_row(
                "SELECT description FROM tse_devices WHERE serial_hex = ?1",
                [serial_hex.to_ascii_lowercase()],
                |r| r.get(0),
            )
            .optional()?;
        Ok(description.and_then(|d| serde_json::from_str(&d).ok()))
    }
}
