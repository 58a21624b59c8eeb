//! Central's database. Every SQL statement of central lives in this module,
//! so another engine (PostgreSQL) can be added behind the same functions.
//!
//! Two layers of data:
//! - `records`: the raw, hash-chained records exactly as the boxes sent
//!   them, unique on `(device_id, epoch, seq)`; never updated or deleted.
//! - `weighings`: tickets materialised from those records in the same
//!   transaction, for the API, by the same state machine the boxes run
//!   (`valeo_records::ticket`); the full ticket is kept as JSON beside the
//!   columns the lists filter on. It can always be rebuilt from `records`.
//!
//! And the master data central publishes to the boxes (`master_data`), and
//! the commands sent to them with their results (`commands`), and the
//! fiscal data: cash sales with the check of their TSE signatures, TSE
//! outages, closings and the log messages for TAR exports (`fiscal`).
//!
//! A batch is committed in one `BEGIN IMMEDIATE` transaction with
//! `synchronous=FULL`; the receiver acks only after `commit` returns.

pub mod auth;
mod commands;
pub mod events;
mod fiscal;

pub use commands::{CommandView, NewCommandError};
pub use fiscal::{CashSaleFilter, CashSaleView, TseView, verify_sale};

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::{SecondsFormat, Utc};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use serde::Serialize;
use valeo_records::command::KIND_COMMAND_RESULT;
use valeo_records::master_data::MasterData;
use valeo_records::ticket::{CancellationInfo, QualityEntry, TareSource};
use valeo_records::{FieldValue, KIND_MODBUS_VALUE, Ref, Ticket, TicketEvent};
use valeo_sync::outbox::open_durable;
use valeo_sync::receiver::{BatchSink, CommitOutcome, DeadLetter, RejectReason, SinkError};
use valeo_sync::wire::{Batch, GENESIS_HASH, Record};

/// Why master data was not stored.
#[derive(Debug, thiserror::Error)]
pub enum PutMasterDataError {
    #[error("master data is at version {current}, not the one the update was based on")]
    VersionMismatch { current: u64 },
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Errors of the store, for the API layer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database {path}: {source}")]
    Open {
        path: String,
        source: rusqlite::Error,
    },
    #[error("database: {0}")]
    Sqlite(#[from] rusqlite::Error),
}

/// Handle to the database; cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    writer: Arc<Mutex<Connection>>,
    reader: Arc<Mutex<Connection>>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS records (
    device_id TEXT NOT NULL,
    epoch TEXT NOT NULL,
    seq INTEGER NOT NULL,
    kind TEXT NOT NULL,
    created_at TEXT NOT NULL,
    payload TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL,
    received_at TEXT NOT NULL,
    materialize_error TEXT,
    PRIMARY KEY (device_id, epoch, seq)
);
CREATE TABLE IF NOT EXISTS chains (
    device_id TEXT NOT NULL,
    epoch TEXT NOT NULL,
    head_seq INTEGER NOT NULL,
    head_hash TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (device_id, epoch)
);
CREATE TABLE IF NOT EXISTS weighings (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    device_id TEXT NOT NULL,
    ticket_no INTEGER NOT NULL,
    plate TEXT NOT NULL,
    direction TEXT NOT NULL,
    status TEXT NOT NULL,
    unit TEXT NOT NULL,
    decimals INTEGER NOT NULL,
    first_scale_id TEXT NOT NULL,
    first_value INTEGER NOT NULL,
    first_alibi_id TEXT,
    first_weighed_at TEXT NOT NULL,
    second_scale_id TEXT,
    second_value INTEGER,
    second_alibi_id TEXT,
    second_weighed_at TEXT,
    gross_value INTEGER,
    tare_value INTEGER,
    net_value INTEGER,
    first_record_seq INTEGER NOT NULL,
    second_record_seq INTEGER,
    epoch TEXT NOT NULL,
    ticket TEXT,
    UNIQUE (device_id, ticket_no)
);
CREATE INDEX IF NOT EXISTS weighings_by_time ON weighings (first_weighed_at);
CREATE TABLE IF NOT EXISTS devices (
    device_id TEXT PRIMARY KEY,
    public_key TEXT NOT NULL,
    registered_at TEXT NOT NULL,
    last_batch_at TEXT,
    gap_expected_seq INTEGER,
    gap_seen_at TEXT,
    gaps_total INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS field_values (
    device_id TEXT NOT NULL,
    field_device TEXT NOT NULL,
    point TEXT NOT NULL,
    value TEXT NOT NULL,
    unit TEXT,
    at TEXT NOT NULL,
    epoch TEXT NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (device_id, field_device, point)
);
CREATE TABLE IF NOT EXISTS commands (
    command_id TEXT PRIMARY KEY,
    device_id TEXT NOT NULL,
    action TEXT NOT NULL,
    requested_by TEXT NOT NULL,
    requested_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    outcome TEXT,
    error TEXT,
    finished_at TEXT,
    result_seq INTEGER
);
CREATE INDEX IF NOT EXISTS commands_by_device ON commands (device_id, requested_at);
CREATE TABLE IF NOT EXISTS master_data (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    version INTEGER NOT NULL,
    updated_at TEXT NOT NULL,
    document TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    received_at TEXT NOT NULL,
    topic TEXT NOT NULL,
    device_id TEXT,
    reason TEXT NOT NULL,
    detail TEXT NOT NULL,
    payload_bytes INTEGER NOT NULL,
    payload_excerpt TEXT NOT NULL
);
";

/// Most dead letters kept; older ones are deleted first, so a device
/// sending garbage in a loop cannot fill the disk.
pub const MAX_DEAD_LETTERS: i64 = 100_000;

impl Store {
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        // Central is the system of record and acks depend on its commits.
        let open = || {
            open_durable(path).map_err(|source| StoreError::Open {
                path: path.display().to_string(),
                source,
            })
        };
        let writer = open()?;
        writer.execute_batch(SCHEMA)?;
        writer.execute_batch(fiscal::SCHEMA)?;
        writer.execute_batch(auth::SCHEMA)?;
        writer.execute_batch(events::SCHEMA)?;
        let reader = open()?;
        let store = Store {
            writer: Arc::new(Mutex::new(writer)),
            reader: Arc::new(Mutex::new(reader)),
        };
        store.migrate()?;
        Ok(store)
    }

    /// Brings a database of an earlier release up to date. Databases from
    /// before the full ticket was kept get their tickets rebuilt from the
    /// raw records.
    fn migrate(&self) -> Result<(), StoreError> {
        let mut conn = self.writer();
        let has_ticket: bool = conn.query_row(
            "SELECT COUNT(*) FROM pragma_table_info('weighings') WHERE name = 'ticket'",
            [],
            |r| r.get::<_, i64>(0).map(|n| n > 0),
        )?;
        if has_ticket {
            return Ok(());
        }
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute_batch("ALTER TABLE weighings ADD COLUMN ticket TEXT; DELETE FROM weighings;")?;
        let records = {
            let mut stmt = tx.prepare(
                "SELECT device_id, epoch, seq, kind, created_at, payload, prev_hash, hash
                 FROM records ORDER BY rowid",
            )?;
            let rows = stmt.query_map([], |r| {
                let payload: String = r.get(5)?;
                Ok(Record {
                    device_id: r.get(0)?,
                    epoch: r.get(1)?,
                    seq: r.get::<_, i64>(2)? as u64,
                    kind: r.get(3)?,
                    created_at: r.get(4)?,
                    payload: serde_json::from_str(&payload).unwrap_or_default(),
                    prev_hash: r.get(6)?,
                    hash: r.get(7)?,
                })
            })?;
            rows.collect::<Result<Vec<_>, _>>()?
        };
        for record in &records {
            let error = materialize(&tx, record).err();
            tx.execute(
                "UPDATE records SET materialize_error = ?4
                 WHERE device_id = ?1 AND epoch = ?2 AND seq = ?3",
                params![record.device_id, record.epoch, record.seq as i64, error],
            )?;
        }
        tx.commit()?;
        tracing::info!(
            records = records.len(),
            "tickets rebuilt from the raw records"
        );
        Ok(())
    }

    /// Latest recorded field-device values, of one box or all.
    pub fn field_values(&self, device_id: Option<&str>) -> Result<Vec<FieldValueView>, StoreError> {
        let conn = self.reader();
        let mut stmt = conn.prepare(
            "SELECT device_id, field_device, point, value, unit, at FROM field_values
             WHERE (?1 IS NULL OR device_id = ?1) ORDER BY device_id, field_device, point LIMIT 10000",
        )?;
        let rows = stmt.query_map(params![device_id], |r| {
            let value: String = r.get(3)?;
            Ok(FieldValueView {
                device_id: r.get(0)?,
                field_device: r.get(1)?,
                point: r.get(2)?,
                value: serde_json::from_str(&value).unwrap_or(serde_json::Value::Null),
                unit: r.get(4)?,
                at: r.get(5)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The master data document, if one was ever stored.
    pub fn master_data(&self) -> Result<Option<MasterData>, StoreError> {
        let text: Option<String> = self
            .reader()
            .query_row("SELECT document FROM master_data WHERE id = 1", [], |r| {
                r.get(0)
            })
            .optional()?;
        Ok(text.and_then(|t| serde_json::from_str(&t).ok()))
    }

    /// Replaces the master data with `document` (its `version` is ignored)
    /// and returns it with the new version, one above the stored one. With
    /// `if_version`, only when that is still the stored version.
    pub fn put_master_data(
        &self,
        mut document: serde_json::Value,
        if_version: Option<u64>,
    ) -> Result<MasterData, PutMasterDataError> {
        let mut conn = self.writer();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(StoreError::from)?;
        let current: u64 = tx
            .query_row(
                "SELECT COALESCE(MAX(version), 0) FROM master_data",
                [],
                |r| r.get::<_, i64>(0),
            )
            .map_err(StoreError::from)? as u64;
        if let Some(expected) = if_version
            && expected != current
        {
            return Err(PutMasterDataError::VersionMismatch { current });
        }
        let version = current + 1;
        let Some(object) = document.as_object_mut() else {
            return Err(PutMasterDataError::Invalid(
                "master data must be a JSON object".into(),
            ));
        };
        object.insert("version".into(), version.into());
        let text = document.to_string();
        let data = MasterData::decode(text.as_bytes())
            .map_err(|e| PutMasterDataError::Invalid(e.to_string()))?;
        let now = Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true);
        tx.execute(
            "INSERT INTO master_data (id, version, updated_at, document) VALUES (1, ?1, ?2, ?3)
             ON CONFLICT (id) DO UPDATE SET version = excluded.version,
                 updated_at = excluded.updated_at, document = excluded.document",
            params![version as i64, now, text],
        )
        .map_err(StoreError::from)?;
        tx.commit().map_err(StoreError::from)?;
        Ok(data)
    }

    fn writer(&self) -> MutexGuard<'_, Connection> {
        // SQLite rolls back an interrupted transaction, so a poisoned lock
        // still guards a consistent connection.
        self.writer.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn reader(&self) -> MutexGuard<'_, Connection> {
        self.reader.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Commits a verified batch: new records are appended and materialised,
    /// duplicates are recognised by their hash, a gap stops the batch.
    pub fn commit_batch(&self, batch: &Batch) -> Result<CommitOutcome, SinkError> {
        let storage = |e: rusqlite::Error| SinkError::Storage(e.to_string());
        let reject = |reason: RejectReason, detail: String| SinkError::Rejected { reason, detail };
        let mut conn = self.writer();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(storage)?;
        let public_key: Option<String> = tx
            .query_row(
                "SELECT public_key FROM devices WHERE device_id = ?1",
                params![batch.device_id],
                |r| r.get(0),
            )
            .optional()
            .map_err(storage)?;
        let Some(public_key) = public_key else {
            return Err(reject(
                RejectReason::UnknownDevice,
                format!("device {:?} is not registered", batch.device_id),
            ));
        };
        valeo_sync::identity::verify(batch, &public_key)
            .map_err(|e| reject(RejectReason::BadSignature, e.to_string()))?;
        let (mut head_seq, mut head_hash) = tx
            .query_row(
                "SELECT head_seq, head_hash FROM chains WHERE device_id = ?1 AND epoch = ?2",
                params![batch.device_id, batch.epoch],
                |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, String>(1)?)),
            )
            .optional()
            .map_err(storage)?
            .unwrap_or((0, GENESIS_HASH.to_owned()));
        let mut outcome = CommitOutcome::default();
        let now = Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true);
        for record in &batch.records {
            if record.seq <= head_seq {
                let stored: Option<String> = tx
                    .query_row(
                        "SELECT hash FROM records WHERE device_id = ?1 AND epoch = ?2 AND seq = ?3",
                        params![record.device_id, record.epoch, record.seq as i64],
                        |r| r.get(0),
                    )
                    .optional()
                    .map_err(storage)?;
                match stored {
                    Some(hash) if hash == record.hash => outcome.duplicates += 1,
                    _ => {
                        return Err(reject(
                            RejectReason::Conflict,
                            format!(
                                "device {} epoch {} seq {} differs from the stored record",
                                record.device_id, record.epoch, record.seq
                            ),
                        ));
                    }
                }
                continue;
            }
            if record.seq != head_seq + 1 {
                outcome.resend_from = Some(head_seq + 1);
                break;
            }
            if record.prev_hash != head_hash {
                return Err(reject(
                    RejectReason::ChainBreak,
                    format!(
                        "device {} epoch {} seq {} does not link to the stored chain",
                        record.device_id, record.epoch, record.seq
                    ),
                ));
            }
            let materialize_error = materialize(&tx, record).err();
            if let Some(reason) = &materialize_error {
                tracing::warn!(device_id = %record.device_id, seq = record.seq, %reason, "record stored but not materialised");
            }
            tx.execute(
                "INSERT INTO records (device_id, epoch, seq, kind, created_at, payload, prev_hash, hash, received_at, materialize_error)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                params![
                    record.device_id,
                    record.epoch,
                    record.seq as i64,
                    record.kind,
                    record.created_at,
                    record.payload.to_string(),
                    record.prev_hash,
                    record.hash,
                    now,
                    materialize_error
                ],
            )
            .map_err(storage)?;
            head_seq = record.seq;
            head_hash = record.hash.clone();
            outcome.inserted += 1;
        }
        tx.execute(
            "INSERT INTO chains (device_id, epoch, head_seq, head_hash, updated_at) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (device_id, epoch) DO UPDATE SET head_seq = excluded.head_seq,
                 head_hash = excluded.head_hash, updated_at = excluded.updated_at",
            params![batch.device_id, batch.epoch, head_seq as i64, head_hash, now],
        )
        .map_err(storage)?;
        // A gap is reported on the device until the chain catches up.
        match outcome.resend_from {
            Some(expected) => tx.execute(
                "UPDATE devices SET last_batch_at = ?2, gap_expected_seq = ?3, gap_seen_at = ?2,
                     gaps_total = gaps_total + 1 WHERE device_id = ?1",
                params![batch.device_id, now, expected as i64],
            ),
            None => tx.execute(
                "UPDATE devices SET last_batch_at = ?2, gap_expected_seq = NULL WHERE device_id = ?1",
                params![batch.device_id, now],
            ),
        }
        .map_err(storage)?;
        tx.commit().map_err(storage)?;
        outcome.acked_seq = head_seq;
        Ok(outcome)
    }

    /// Registers (or re-keys) a device. Returns whether anything changed.
    pub fn register_device(&self, device_id: &str, public_key: &str) -> Result<bool, StoreError> {
        let now = Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true);
        let changed = self.writer().execute(
            "INSERT INTO devices (device_id, public_key, registered_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (device_id) DO UPDATE SET public_key = excluded.public_key,
                 registered_at = excluded.registered_at
             WHERE devices.public_key != excluded.public_key",
            params![device_id, public_key, now],
        )?;
        Ok(changed > 0)
    }

    /// Keeps a rejected message, bounded to [`MAX_DEAD_LETTERS`].
    pub fn store_dead_letter(&self, letter: &DeadLetter) -> Result<(), StoreError> {
        let now = Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true);
        let mut conn = self.writer();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute(
            "INSERT INTO dead_letters (received_at, topic, device_id, reason, detail, payload_bytes, payload_excerpt)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                now,
                letter.topic,
                letter.device_id,
                letter.reason.as_str(),
                letter.detail,
                letter.payload_bytes as i64,
                letter.payload_excerpt
            ],
        )?;
        tx.execute(
            "DELETE FROM dead_letters WHERE id <= (SELECT MAX(id) FROM dead_letters) - ?1",
            params![MAX_DEAD_LETTERS],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Dead letters per reason, for metrics and `/health`.
    pub fn dead_letter_counts(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let conn = self.reader();
        let mut stmt = conn
            .prepare("SELECT reason, COUNT(*) FROM dead_letters GROUP BY reason ORDER BY reason")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// The newest dead letters, newest first.
    pub fn dead_letters(&self, limit: u32) -> Result<Vec<DeadLetterView>, StoreError> {
        let conn = self.reader();
        let mut stmt = conn.prepare(
            "SELECT id, received_at, topic, device_id, reason, detail, payload_bytes
             FROM dead_letters ORDER BY id DESC LIMIT ?1",
        )?;
        let rows = stmt.query_map(params![limit], |r| {
            Ok(DeadLetterView {
                id: r.get(0)?,
                received_at: r.get(1)?,
                topic: r.get(2)?,
                device_id: r.get(3)?,
                reason: r.get(4)?,
                detail: r.get(5)?,
                payload_bytes: r.get::<_, i64>(6)? as u64,
            })
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// Every registered device with its sync state.
    pub fn devices(&self) -> Result<Vec<DeviceView>, StoreError> {
        let conn = self.reader();
        let mut stmt = conn.prepare(
            "SELECT d.device_id, d.public_key, d.last_batch_at, d.gap_expected_seq, d.gap_seen_at, d.gaps_total,
                    (SELECT c.epoch FROM chains c WHERE c.device_id = d.device_id ORDER BY c.updated_at DESC LIMIT 1),
                    (SELECT c.head_seq FROM chains c WHERE c.device_id = d.device_id ORDER BY c.updated_at DESC LIMIT 1)
             FROM devices d ORDER BY d.device_id",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(DeviceView {
                device_id: r.get(0)?,
                public_key: r.get(1)?,
                last_batch_at: r.get(2)?,
                gap_expected_seq: r.get::<_, Option<i64>>(3)?.map(|v| v as u64),
                gap_seen_at: r.get(4)?,
                gaps_total: r.get::<_, i64>(5)? as u64,
                epoch: r.get(6)?,
                head_seq: r.get::<_, Option<i64>>(7)?.map(|v| v as u64),
            })
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// One page of weighings, newest first.
    pub fn list_weighings(&self, filter: &WeighingFilter) -> Result<WeighingPage, StoreError> {
        let conn = self.reader();
        let mut clauses = Vec::new();
        let mut values: Vec<rusqlite::types::Value> = Vec::new();
        if let Some(device_id) = &filter.device_id {
            clauses.push("device_id = ?");
            values.push(device_id.clone().into());
        }
        if let Some(status) = &filter.status {
            clauses.push("status = ?");
            values.push(status.as_str().to_owned().into());
        }
        if let Some(plate) = &filter.plate {
            clauses.push("plate = ?");
            values.push(plate.clone().into());
        }
        let where_sql = if clauses.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", clauses.join(" AND "))
        };
        let total: i64 = conn.query_row(
            &format!("SELECT COUNT(*) FROM weighings {where_sql}"),
            rusqlite::params_from_iter(values.iter()),
            |r| r.get(0),
        )?;
        let mut page_values = values.clone();
        page_values.push(i64::from(filter.limit).into());
        page_values.push((filter.offset as i64).into());
        let mut stmt = conn.prepare(&format!(
            "SELECT {WEIGHING_COLUMNS} FROM weighings {where_sql} ORDER BY id DESC LIMIT ? OFFSET ?"
        ))?;
        let items = stmt
            .query_map(
                rusqlite::params_from_iter(page_values.iter()),
                weighing_from_row,
            )?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(WeighingPage {
            items,
            total: total as u64,
            limit: filter.limit,
            offset: filter.offset,
        })
    }

    pub fn get_weighing(&self, id: i64) -> Result<Option<WeighingView>, StoreError> {
        let conn = self.reader();
        Ok(conn
            .query_row(
                &format!("SELECT {WEIGHING_COLUMNS} FROM weighings WHERE id = ?1"),
                params![id],
                weighing_from_row,
            )
            .optional()?)
    }

    /// Cheap liveness check of the database.
    /// Writes a consistent copy of the database to `path` (which must not
    /// exist) while the service keeps running.
    pub fn backup_into(&self, path: &Path) -> Result<(), StoreError> {
        self.reader()
            .execute("VACUUM INTO ?1", [path.to_string_lossy()])?;
        Ok(())
    }

    pub fn ping(&self) -> Result<(), StoreError> {
        self.reader().query_row("SELECT 1", [], |_| Ok(()))?;
        Ok(())
    }

    /// Per device: the newest epoch's head and when it last moved.
    pub fn device_heads(&self) -> Result<Vec<DeviceHead>, StoreError> {
        let conn = self.reader();
        let mut stmt = conn.prepare(
            "SELECT device_id, epoch, head_seq, updated_at FROM chains ORDER BY device_id, updated_at",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(DeviceHead {
                device_id: r.get(0)?,
                epoch: r.get(1)?,
                head_seq: r.get::<_, i64>(2)? as u64,
                last_record_at: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }
}

impl BatchSink for Store {
    fn commit(&self, batch: &Batch) -> Result<CommitOutcome, SinkError> {
        self.commit_batch(batch)
    }

    fn dead_letter(&self, letter: DeadLetter) {
        if let Err(error) = self.store_dead_letter(&letter) {
            tracing::error!(%error, reason = letter.reason.as_str(), "dead letter not stored");
        }
    }
}

/// A dead letter as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeadLetterView {
    pub id: i64,
    pub received_at: String,
    pub topic: String,
    pub device_id: Option<String>,
    pub reason: String,
    pub detail: String,
    pub payload_bytes: u64,
}

/// A registered device and where its chain stands.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeviceView {
    pub device_id: String,
    pub public_key: String,
    pub last_batch_at: Option<String>,
    pub epoch: Option<String>,
    pub head_seq: Option<u64>,
    /// Set while central waits for a record the device has not sent yet.
    pub gap_expected_seq: Option<u64>,
    pub gap_seen_at: Option<String>,
    pub gaps_total: u64,
}

/// Applies one record to the business tables through the ticket state
/// machine. An error here means the record is valid on the wire but not
/// understood or not a possible step; the caller keeps it raw.
fn materialize(tx: &rusqlite::Transaction<'_>, record: &Record) -> Result<(), String> {
    if record.kind == KIND_MODBUS_VALUE {
        return field_value(tx, record);
    }
    if record.kind == KIND_COMMAND_RESULT {
        return commands::command_result(tx, record);
    }
    if fiscal::is_fiscal(&record.kind) {
        return fiscal::materialize(tx, record);
    }
    let event = TicketEvent::from_record(&record.kind, &record.payload)
        .map_err(|e| format!("{} payload: {e}", record.kind))?
        .ok_or_else(|| format!("unknown record kind {:?}", record.kind))?;
    let ticket_no = event.ticket_no();
    let stored: Option<Option<String>> = tx
        .query_row(
            "SELECT ticket FROM weighings WHERE device_id = ?1 AND ticket_no = ?2",
            params![record.device_id, ticket_no as i64],
            |r| r.get(0),
        )
        .optional()
        .map_err(|e| e.to_string())?;
    let current: Option<Ticket> = stored
        .flatten()
        .map(|t| serde_json::from_str(&t))
        .transpose()
        .map_err(|e| format!("stored ticket {ticket_no}: {e}"))?;
    let ticket =
        Ticket::apply(current.as_ref(), &record.device_id, &event).map_err(|e| e.to_string())?;
    let completes = matches!(event, TicketEvent::Second(_) | TicketEvent::StoredTare(_));
    upsert_ticket(tx, record, &ticket, completes).map_err(|e| e.to_string())
}

/// Keeps the latest recorded value of each field-device point; the history
/// stays in `records`.
fn field_value(tx: &rusqlite::Transaction<'_>, record: &Record) -> Result<(), String> {
    let v: FieldValue = serde_json::from_value(record.payload.clone())
        .map_err(|e| format!("{KIND_MODBUS_VALUE} payload: {e}"))?;
    tx.execute(
        "INSERT INTO field_values (device_id, field_device, point, value, unit, at, epoch, seq)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
         ON CONFLICT (device_id, field_device, point) DO UPDATE SET value = excluded.value,
             unit = excluded.unit, at = excluded.at, epoch = excluded.epoch, seq = excluded.seq
         WHERE excluded.at >= field_values.at",
        params![
            record.device_id,
            v.device_id,
            v.point,
            v.value.to_string(),
            v.unit,
            v.at,
            record.epoch,
            record.seq as i64
        ],
    )
    .map_err(|e| e.to_string())?;
    Ok(())
}

/// The latest recorded value of a field-device point.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldValueView {
    pub device_id: String,
    pub field_device: String,
    pub point: String,
    pub value: serde_json::Value,
    pub unit: Option<String>,
    pub at: String,
}

fn upsert_ticket(
    tx: &rusqlite::Transaction<'_>,
    record: &Record,
    ticket: &Ticket,
    completes: bool,
) -> rusqlite::Result<()> {
    let (first, second) = (&ticket.first, ticket.second.as_ref());
    tx.execute(
        "INSERT INTO weighings (device_id, ticket_no, plate, direction, status, unit, decimals,
             first_scale_id, first_value, first_alibi_id, first_weighed_at, first_record_seq, epoch,
             second_scale_id, second_value, second_alibi_id, second_weighed_at, second_record_seq,
             gross_value, tare_value, net_value, ticket)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18,
             ?19, ?20, ?21, ?22)
         ON CONFLICT (device_id, ticket_no) DO UPDATE SET status = excluded.status,
             second_scale_id = excluded.second_scale_id, second_value = excluded.second_value,
             second_alibi_id = excluded.second_alibi_id, second_weighed_at = excluded.second_weighed_at,
             second_record_seq = COALESCE(excluded.second_record_seq, weighings.second_record_seq),
             gross_value = excluded.gross_value, tare_value = excluded.tare_value,
             net_value = excluded.net_value, ticket = excluded.ticket",
        params![
            record.device_id,
            ticket.ticket_no as i64,
            ticket.plate,
            direction_str(ticket.direction),
            ticket.state.as_str(),
            first.weight.unit.to_string(),
            first.weight.decimals,
            first.scale_id,
            first.weight.value,
            first.alibi_id,
            first.weighed_at,
            record.seq as i64,
            record.epoch,
            second.map(|s| s.scale_id.clone()),
            second.map(|s| s.weight.value),
            second.and_then(|s| s.alibi_id.clone()),
            second.map(|s| s.weighed_at.clone()),
            completes.then_some(record.seq as i64),
            ticket.gross.map(|w| w.value),
            ticket.tare.map(|w| w.value),
            ticket.net.map(|w| w.value),
            serde_json::to_string(ticket).unwrap_or_default(),
        ],
    )?;
    Ok(())
}

fn direction_str(direction: valeo_records::Direction) -> &'static str {
    match direction {
        valeo_records::Direction::Intake => "intake",
        valeo_records::Direction::Outgoing => "outgoing",
    }
}

/// Ticket state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WeighingStatus {
    Open,
    Complete,
    Cancelled,
}

impl WeighingStatus {
    fn as_str(self) -> &'static str {
        match self {
            WeighingStatus::Open => "open",
            WeighingStatus::Complete => "complete",
            WeighingStatus::Cancelled => "cancelled",
        }
    }
}

/// Filters and paging of the weighing list.
#[derive(Debug, Clone, Default)]
pub struct WeighingFilter {
    pub device_id: Option<String>,
    pub status: Option<WeighingStatus>,
    pub plate: Option<String>,
    pub limit: u32,
    pub offset: u64,
}

/// One weighing of a ticket.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepView {
    pub scale_id: String,
    pub weight: f64,
    pub alibi_id: Option<String>,
    pub weighed_at: String,
}

/// A ticket as the API shows it. Weights are in `unit`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WeighingView {
    pub id: i64,
    pub device_id: String,
    pub ticket_no: u64,
    pub plate: String,
    pub direction: String,
    pub status: String,
    pub unit: String,
    pub first: StepView,
    pub second: Option<StepView>,
    pub gross: Option<f64>,
    pub tare: Option<f64>,
    pub net: Option<f64>,
    /// True only when every weighing carries a terminal alibi number and
    /// none was entered by hand.
    pub legal_for_trade: bool,
    pub partner: Option<Ref>,
    pub article: Option<Ref>,
    pub lot: Option<Ref>,
    pub location: Option<Ref>,
    pub contract_id: Option<String>,
    pub operator: Option<String>,
    /// `weighed` or `stored` (one-pass weighing against a stored tare).
    pub tare_source: Option<TareSource>,
    /// Set when the ticket was cancelled (storno).
    pub cancellation: Option<CancellationInfo>,
    pub quality: Vec<QualityEntry>,
    /// Copies printed at the box after the original.
    pub prints: u32,
    /// Where the raw records of this ticket are in the device's chain.
    pub epoch: String,
    pub first_record_seq: u64,
    pub second_record_seq: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WeighingPage {
    pub items: Vec<WeighingView>,
    pub total: u64,
    pub limit: u32,
    pub offset: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeviceHead {
    pub device_id: String,
    pub epoch: String,
    pub head_seq: u64,
    pub last_record_at: String,
}

const WEIGHING_COLUMNS: &str = "id, device_id, ticket_no, plate, direction, status, unit, decimals,
    first_scale_id, first_value, first_alibi_id, first_weighed_at,
    second_scale_id, second_value, second_alibi_id, second_weighed_at,
    gross_value, tare_value, net_value, epoch, first_record_seq, second_record_seq, ticket";

fn weighing_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<WeighingView> {
    let decimals: u32 = row.get(7)?;
    let scale = |v: i64| v as f64 / 10f64.powi(decimals as i32);
    let second_value: Option<i64> = row.get(13)?;
    let second = match second_value {
        Some(value) => Some(StepView {
            scale_id: row.get::<_, Option<String>>(12)?.unwrap_or_default(),
            weight: scale(value),
            alibi_id: row.get(14)?,
            weighed_at: row.get::<_, Option<String>>(15)?.unwrap_or_default(),
        }),
        None => None,
    };
    let first = StepView {
        scale_id: row.get(8)?,
        weight: scale(row.get(9)?),
        alibi_id: row.get(10)?,
        weighed_at: row.get(11)?,
    };
    let ticket: Option<Ticket> = row
        .get::<_, Option<String>>(22)?
        .and_then(|t| serde_json::from_str(&t).ok());
    let legal_for_trade = match &ticket {
        Some(t) => t.legal_for_trade,
        None => first.alibi_id.is_some() && second.as_ref().is_some_and(|s| s.alibi_id.is_some()),
    };
    let t = ticket.as_ref();
    Ok(WeighingView {
        partner: t.and_then(|t| t.partner.clone()),
        article: t.and_then(|t| t.article.clone()),
        lot: t.and_then(|t| t.lot.clone()),
        location: t.and_then(|t| t.location.clone()),
        contract_id: t.and_then(|t| t.contract_id.clone()),
        operator: t.and_then(|t| t.operator.clone()),
        tare_source: t.and_then(|t| t.tare_source),
        cancellation: t.and_then(|t| t.cancellation.clone()),
        quality: t.map(|t| t.quality.clone()).unwrap_or_default(),
        prints: t.map_or(0, |t| t.prints),
        id: row.get(0)?,
        device_id: row.get(1)?,
        ticket_no: row.get::<_, i64>(2)? as u64,
        plate: row.get(3)?,
        direction: row.get(4)?,
        status: row.get(5)?,
        unit: row.get(6)?,
        first,
        second,
        gross: row.get::<_, Option<i64>>(16)?.map(scale),
        tare: row.get::<_, Option<i64>>(17)?.map(scale),
        net: row.get::<_, Option<i64>>(18)?.map(scale),
        legal_for_trade,
        epoch: row.get(19)?,
        first_record_seq: row.get::<_, i64>(20)? as u64,
        second_record_seq: row.get::<_, Option<i64>>(21)?.map(|v| v as u64),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use valeo_drivers::scale::reading::{Unit, Weight};
    use valeo_records::{
        Direction, FirstWeighing, KIND_FIRST_WEIGHING, KIND_SECOND_WEIGHING, SecondWeighing,
        StepSource, TicketContext, WeighingStep,
    };
    use valeo_sync::identity::DeviceKey;

    use super::*;

    fn kg(value: i64) -> Weight {
        Weight::new(value, 0, Unit::Kg)
    }

    fn step(value: i64, alibi: Option<&str>) -> WeighingStep {
        WeighingStep {
            scale_id: "bridge-1".into(),
            weight: kg(value),
            alibi_id: alibi.map(str::to_owned),
            weighed_at: "2026-11-22T08:00:00.000Z".into(),
            terminal_time: None,
            source: StepSource::Scale,
            manual_reason: None,
            operator: None,
        }
    }

    /// A chain of records of `device` starting after `prev`.
    fn chain(
        device: &str,
        start_seq: u64,
        prev_hash: &str,
        payloads: Vec<(&str, serde_json::Value)>,
    ) -> Vec<Record> {
        let mut prev = prev_hash.to_owned();
        let mut out = Vec::new();
        for (i, (kind, payload)) in payloads.into_iter().enumerate() {
            let r = Record::new(
                device,
                "ep",
                start_seq + i as u64,
                kind,
                "2026-11-22T08:00:00.000Z",
                payload,
                &prev,
            );
            prev = r.hash.clone();
            out.push(r);
        }
        out
    }

    fn key(device: &str) -> DeviceKey {
        DeviceKey::from_secret([device.len() as u8; 32])
    }

    /// A batch signed by `device`'s test key.
    fn batch(device: &str, records: Vec<Record>) -> Batch {
        let mut batch = Batch {
            v: 1,
            device_id: device.into(),
            epoch: "ep".into(),
            records,
            sig: String::new(),
        };
        key(device).sign(&mut batch);
        batch
    }

    fn ticket_records() -> Vec<Record> {
        let first = FirstWeighing {
            ticket_no: 1,
            plate: "OS-A 1".into(),
            direction: Direction::Intake,
            first: step(40_000, Some("A-1")),
            context: TicketContext::default(),
        };
        let second = SecondWeighing {
            ticket_no: 1,
            plate: "OS-A 1".into(),
            direction: Direction::Intake,
            first: step(40_000, Some("A-1")),
            second: step(14_980, Some("A-2")),
            gross: kg(40_000),
            tare: kg(14_980),
            net: kg(25_020),
            operator: None,
        };
        chain(
            "box",
            1,
            GENESIS_HASH,
            vec![
                (KIND_FIRST_WEIGHING, serde_json::to_value(first).unwrap()),
                (KIND_SECOND_WEIGHING, serde_json::to_value(second).unwrap()),
            ],
        )
    }

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("central.db")).unwrap();
        for device in ["box", "box-2"] {
            store
                .register_device(device, &key(device).public_key_hex())
                .unwrap();
        }
        (dir, store)
    }

    #[test]
    fn unknown_devices_and_bad_signatures_are_rejected_with_their_reason() {
        let (_dir, store) = store();
        let unknown = store
            .commit_batch(&batch("stranger", ticket_records()))
            .unwrap_err();
        assert!(
            matches!(
                unknown,
                SinkError::Rejected {
                    reason: RejectReason::UnknownDevice,
                    ..
                }
            ),
            "{unknown}"
        );
        // Signed by box-2's key but claiming to be box.
        let mut forged = batch("box-2", ticket_records());
        forged.device_id = "box".into();
        for r in &mut forged.records {
            r.device_id = "box".into();
        }
        let err = store.commit_batch(&forged).unwrap_err();
        assert!(
            matches!(
                err,
                SinkError::Rejected {
                    reason: RejectReason::BadSignature,
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(store.device_heads().unwrap().len(), 0, "nothing stored");
    }

    #[test]
    fn gaps_are_reported_on_the_device_until_filled() {
        let (_dir, store) = store();
        let records = ticket_records();
        store
            .commit_batch(&batch("box", vec![records[1].clone()]))
            .unwrap();
        let device = store
            .devices()
            .unwrap()
            .into_iter()
            .find(|d| d.device_id == "box")
            .unwrap();
        assert_eq!((device.gap_expected_seq, device.gaps_total), (Some(1), 1));
        store.commit_batch(&batch("box", records)).unwrap();
        let device = store
            .devices()
            .unwrap()
            .into_iter()
            .find(|d| d.device_id == "box")
            .unwrap();
        assert_eq!((device.gap_expected_seq, device.head_seq), (None, Some(2)));
    }

    #[test]
    fn dead_letters_are_kept_and_counted() {
        let (_dir, store) = store();
        let letter = DeadLetter {
            topic: "valeo/v1/box/records".into(),
            device_id: Some("box".into()),
            reason: RejectReason::Malformed,
            detail: "expected value".into(),
            payload_bytes: 3,
            payload_excerpt: "abc".into(),
        };
        store.store_dead_letter(&letter).unwrap();
        store.store_dead_letter(&letter).unwrap();
        assert_eq!(
            store.dead_letter_counts().unwrap(),
            vec![("malformed".to_owned(), 2)]
        );
        assert_eq!(store.dead_letters(1).unwrap()[0].detail, "expected value");
    }

    #[test]
    fn a_ticket_is_materialised_and_a_resent_batch_is_not_stored_twice() {
        let (_dir, store) = store();
        let records = ticket_records();
        let outcome = store.commit_batch(&batch("box", records.clone())).unwrap();
        assert_eq!(
            outcome,
            CommitOutcome {
                acked_seq: 2,
                resend_from: None,
                inserted: 2,
                duplicates: 0
            }
        );
        let again = store.commit_batch(&batch("box", records)).unwrap();
        assert_eq!(
            again,
            CommitOutcome {
                acked_seq: 2,
                resend_from: None,
                inserted: 0,
                duplicates: 2
            }
        );

        let page = store
            .list_weighings(&WeighingFilter {
                limit: 10,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(page.total, 1);
        let ticket = &page.items[0];
        assert_eq!(
            (ticket.gross, ticket.tare, ticket.net),
            (Some(40_000.0), Some(14_980.0), Some(25_020.0))
        );
        assert_eq!(ticket.status, "complete");
        assert!(ticket.legal_for_trade, "both weighings carry alibi numbers");
        assert_eq!(
            store.get_weighing(ticket.id).unwrap().as_ref(),
            Some(ticket)
        );
    }

    #[test]
    fn a_gap_is_not_stored_and_asks_for_a_resend() {
        let (_dir, store) = store();
        let records = ticket_records();
        let outcome = store
            .commit_batch(&batch("box", vec![records[1].clone()]))
            .unwrap();
        assert_eq!(outcome.acked_seq, 0);
        assert_eq!(outcome.resend_from, Some(1));
        assert_eq!(outcome.inserted, 0);
        // The missing record arrives, then the rest.
        let outcome = store.commit_batch(&batch("box", records)).unwrap();
        assert_eq!((outcome.acked_seq, outcome.inserted), (2, 2));
    }

    #[test]
    fn a_different_record_under_a_stored_seq_is_rejected() {
        let (_dir, store) = store();
        store.commit_batch(&batch("box", ticket_records())).unwrap();
        let forged = chain(
            "box",
            1,
            GENESIS_HASH,
            vec![("note", json!({"text": "rewritten history"}))],
        );
        let err = store.commit_batch(&batch("box", forged)).unwrap_err();
        assert!(
            matches!(
                err,
                SinkError::Rejected {
                    reason: RejectReason::Conflict,
                    ..
                }
            ),
            "{err}"
        );
        let broken = chain("box", 3, GENESIS_HASH, vec![("note", json!({}))]);
        let err = store.commit_batch(&batch("box", broken)).unwrap_err();
        assert!(err.to_string().contains("does not link"), "{err}");
    }

    #[test]
    fn an_unknown_or_inconsistent_record_is_kept_raw_without_blocking_the_chain() {
        let (_dir, store) = store();
        let mut bad_second = serde_json::to_value(SecondWeighing {
            ticket_no: 9,
            plate: "X".into(),
            direction: Direction::Intake,
            first: step(40_000, None),
            second: step(10_000, None),
            gross: kg(40_000),
            tare: kg(10_000),
            net: kg(31_000),
            operator: None,
        })
        .unwrap();
        bad_second["plate"] = json!("X");
        let records = chain(
            "box",
            1,
            GENESIS_HASH,
            vec![
                ("future.kind", json!({"a": 1})),
                (KIND_SECOND_WEIGHING, bad_second),
                (KIND_FIRST_WEIGHING, json!({"nonsense": true})),
            ],
        );
        let outcome = store.commit_batch(&batch("box", records)).unwrap();
        assert_eq!((outcome.acked_seq, outcome.inserted), (3, 3));
        let page = store
            .list_weighings(&WeighingFilter {
                limit: 10,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(page.total, 0, "nothing wrong is shown as a ticket");
        let errors: i64 = store
            .reader()
            .query_row(
                "SELECT COUNT(*) FROM records WHERE materialize_error IS NOT NULL",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(errors, 3);
    }

    #[test]
    fn lists_filter_and_page() {
        let (_dir, store) = store();
        store.commit_batch(&batch("box", ticket_records())).unwrap();
        let mut other = ticket_records();
        // Same tickets from another device: a separate chain.
        other = chain(
            "box-2",
            1,
            GENESIS_HASH,
            other
                .into_iter()
                .map(|r| {
                    (
                        if r.seq == 1 {
                            KIND_FIRST_WEIGHING
                        } else {
                            KIND_SECOND_WEIGHING
                        },
                        r.payload,
                    )
                })
                .collect(),
        );
        store.commit_batch(&batch("box-2", other)).unwrap();
        let all = store
            .list_weighings(&WeighingFilter {
                limit: 1,
                ..Default::default()
            })
            .unwrap();
        assert_eq!((all.total, all.items.len()), (2, 1));
        let only = store
            .list_weighings(&WeighingFilter {
                device_id: Some("box-2".into()),
                status: Some(WeighingStatus::Complete),
                limit: 10,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(only.total, 1);
        assert_eq!(only.items[0].device_id, "box-2");
        let none = store
            .list_weighings(&WeighingFilter {
                status: Some(WeighingStatus::Open),
                limit: 10,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(none.total, 0);
        assert_eq!(store.device_heads().unwrap().len(), 2);
    }

    #[test]
    fn master_data_versions_grow_and_if_match_guards_updates() {
        let (_dir, store) = store();
        assert_eq!(store.master_data().unwrap(), None);
        let doc = json!({"version": 77, "articles": [{"id": "A", "name": "Weizen"}]});
        let first = store.put_master_data(doc.clone(), None).unwrap();
        assert_eq!(
            first.version, 1,
            "the version is central's, not the client's"
        );
        let second = store.put_master_data(doc.clone(), Some(1)).unwrap();
        assert_eq!(second.version, 2);
        assert!(matches!(
            store.put_master_data(doc, Some(1)),
            Err(PutMasterDataError::VersionMismatch { current: 2 })
        ));
        let dangling = json!({"lots": [{"id": "L", "name": "x", "article_id": "NOPE"}]});
        let err = store.put_master_data(dangling, None).unwrap_err();
        assert!(err.to_string().contains("unknown article"), "{err}");
        assert_eq!(store.master_data().unwrap().unwrap().version, 2);
    }

    #[test]
    fn a_database_of_the_first_release_gets_its_tickets_rebuilt_from_the_records() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("central.db");
        {
            let store = Store::open(&path).unwrap();
            store
                .register_device("box", &key("box").public_key_hex())
                .unwrap();
            store.commit_batch(&batch("box", ticket_records())).unwrap();
            // What the first release's schema looked like: no ticket column.
            let conn = store.writer();
            conn.execute_batch("ALTER TABLE weighings DROP COLUMN ticket;")
                .unwrap();
        }
        let store = Store::open(&path).unwrap();
        let page = store
            .list_weighings(&WeighingFilter {
                limit: 10,
                ..WeighingFilter::default()
            })
            .unwrap();
        assert_eq!(page.total, 1);
        let ticket = &page.items[0];
        assert_eq!(
            (ticket.status.as_str(), ticket.net),
            ("complete", Some(25_020.0))
        );
        assert!(ticket.legal_for_trade);
    }
}
