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
mod delivery_notes;
pub mod events;
mod fiscal;
mod master;
mod reports;
mod stock;
mod weighings;

pub use delivery_notes::{
    CancelDeliveryNote, DeliveryNote, MAX_REMARK_CHARS, NewDeliveryNote, NoteError, NoteFilter,
};
pub use master::MasterError;
pub use reports::{GroupBy, MAX_REPORT_ROWS, Report, ReportRow, ReportTotal};
pub use stock::{
    CorrectionError, MAX_CORRECTION_KG, MAX_STOCK_LEVELS, MovementFilter, Named, NewCorrection,
    StockLevel, StockMovement,
};
pub use weighings::{
    MAX_COUNTED_TICKETS, NoteRef, Proof, ProofRecord, Sort, StepView, SyntheticTickets,
    WeighingDetail, WeighingFilter, WeighingPage, WeighingStatus, WeighingView,
};

pub use commands::{CommandView, NewCommandError};
pub use fiscal::{CashSaleFilter, CashSaleView, TseView, verify_sale};

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::{SecondsFormat, Utc};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use serde::Serialize;
use valeo_records::command::KIND_COMMAND_RESULT;
use valeo_records::master_data::MasterData;
use valeo_records::{FieldValue, KIND_MODBUS_VALUE, Ref, Ticket, TicketEvent, TicketState};
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
    /// A stored row that this release cannot read.
    #[error("database content: {0}")]
    Corrupt(String),
}

/// Handle to the database; cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    writer: Arc<Mutex<Connection>>,
    /// Read connections: a slow list does not hold up `/health` or the
    /// token checks of other requests (SQLite's WAL lets readers run
    /// beside the writer and each other).
    readers: Arc<[Mutex<Connection>]>,
    next_reader: Arc<std::sync::atomic::AtomicUsize>,
}

/// Rows read at a time by an upgrade that fills new columns.
const MIGRATION_STEP_ROWS: i64 = 10_000;

/// Read connections per store.
pub const READ_CONNECTIONS: usize = 4;

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
    ticket_no INTEGER,
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
    site_id TEXT,
    partner_id TEXT,
    article_id TEXT,
    lot_id TEXT,
    location_id TEXT,
    contract_id TEXT,
    net_kg REAL,
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
    gaps_total INTEGER NOT NULL DEFAULT 0,
    site_id TEXT
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
        writer.execute_batch(master::SCHEMA)?;
        writer.execute_batch(stock::SCHEMA)?;
        writer.execute_batch(delivery_notes::SCHEMA)?;
        let readers = (0..READ_CONNECTIONS)
            .map(|_| open().map(Mutex::new))
            .collect::<Result<Vec<_>, _>>()?;
        let store = Store {
            writer: Arc::new(Mutex::new(writer)),
            readers: readers.into(),
            next_reader: Arc::default(),
        };
        store.migrate()?;
        Ok(store)
    }

    /// Brings a database of an earlier release up to date.
    fn migrate(&self) -> Result<(), StoreError> {
        self.add_business_columns()?;
        self.migrate_ticket_column()?;
        self.migrate_master_entities()?;
        self.writer().execute_batch(weighings::WEIGHING_INDEXES)?;
        Ok(())
    }

    /// Databases from before the business API lack the columns tickets are
    /// filtered by; they are added and filled from the stored tickets.
    fn add_business_columns(&self) -> Result<(), StoreError> {
        let mut conn = self.writer();
        if !has_column(&conn, "devices", "site_id")? {
            conn.execute_batch("ALTER TABLE devices ADD COLUMN site_id TEXT;")?;
        }
        if !has_column(&conn, "records", "ticket_no")? {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.execute_batch("ALTER TABLE records ADD COLUMN ticket_no INTEGER;")?;
            // In steps of MIGRATION_STEP_ROWS, so a database of millions of
            // records is upgraded in bounded memory.
            let mut after = 0_i64;
            loop {
                let keys: Vec<(i64, String, String)> = {
                    let mut stmt = tx.prepare(
                        "SELECT rowid, kind, payload FROM records WHERE rowid > ?1
                         ORDER BY rowid LIMIT ?2",
                    )?;
                    stmt.query_map(params![after, MIGRATION_STEP_ROWS], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                    })?
                    .collect::<Result<_, _>>()?
                };
                let Some(last) = keys.last().map(|k| k.0) else {
                    break;
                };
                after = last;
                for (rowid, kind, payload) in keys {
                    let payload = serde_json::from_str(&payload).unwrap_or_default();
                    if let Some(no) = ticket_no_of(&kind, &payload) {
                        tx.execute(
                            "UPDATE records SET ticket_no = ?2 WHERE rowid = ?1",
                            params![rowid, no],
                        )?;
                    }
                }
            }
            tx.commit()?;
        }
        if has_column(&conn, "weighings", "net_kg")? {
            return Ok(());
        }
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        for column in [
            "site_id TEXT",
            "partner_id TEXT",
            "article_id TEXT",
            "lot_id TEXT",
            "location_id TEXT",
            "contract_id TEXT",
            "net_kg REAL",
        ] {
            tx.execute_batch(&format!("ALTER TABLE weighings ADD COLUMN {column};"))?;
        }
        if has_column(&tx, "weighings", "ticket")? {
            let mut after = 0_i64;
            loop {
                let tickets: Vec<(i64, String)> = {
                    let mut stmt = tx.prepare(
                        "SELECT id, ticket FROM weighings WHERE ticket IS NOT NULL AND id > ?1
                     ORDER BY id LIMIT ?2",
                    )?;
                    stmt.query_map(params![after, MIGRATION_STEP_ROWS], |r| {
                        Ok((r.get(0)?, r.get(1)?))
                    })?
                    .collect::<Result<_, _>>()?
                };
                let Some(last) = tickets.last().map(|t| t.0) else {
                    break;
                };
                after = last;
                for (id, text) in tickets {
                    if let Ok(ticket) = serde_json::from_str::<Ticket>(&text) {
                        let c = TicketColumns::of(&ticket);
                        tx.execute(
                            "UPDATE weighings SET partner_id = ?2, article_id = ?3, lot_id = ?4,
                             location_id = ?5, contract_id = ?6, net_kg = ?7 WHERE id = ?1",
                            params![
                                id,
                                c.partner_id,
                                c.article_id,
                                c.lot_id,
                                c.location_id,
                                c.contract_id,
                                c.net_kg
                            ],
                        )?;
                        // Stock starts with what was delivered before it was kept.
                        if ticket.state == TicketState::Complete {
                            stock::book_weighing(&tx, id, &ticket)?;
                        }
                    }
                }
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Databases from before the full ticket was kept get their tickets
    /// rebuilt from the raw records.
    fn migrate_ticket_column(&self) -> Result<(), StoreError> {
        let mut conn = self.writer();
        if has_column(&conn, "weighings", "ticket")? {
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
            let error = materialize(&tx, record, Replay::Rebuild).err();
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

    fn writer(&self) -> MutexGuard<'_, Connection> {
        // SQLite rolls back an interrupted transaction, so a poisoned lock
        // still guards a consistent connection.
        self.writer.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A free read connection, or (all busy) the next in turn.
    fn reader(&self) -> MutexGuard<'_, Connection> {
        use std::sync::TryLockError;
        for reader in self.readers.iter() {
            match reader.try_lock() {
                Ok(guard) => return guard,
                Err(TryLockError::Poisoned(p)) => return p.into_inner(),
                Err(TryLockError::WouldBlock) => {}
            }
        }
        let turn = self
            .next_reader
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.readers[turn % self.readers.len()]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
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
            let materialize_error = materialize(&tx, record, Replay::Live).err();
            if let Some(reason) = &materialize_error {
                tracing::warn!(device_id = %record.device_id, seq = record.seq, %reason, "record stored but not materialised");
            }
            tx.execute(
                "INSERT INTO records (device_id, epoch, seq, kind, created_at, payload, prev_hash, hash, received_at, materialize_error, ticket_no)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
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
                    materialize_error,
                    ticket_no_of(&record.kind, &record.payload)
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
                    (SELECT c.head_seq FROM chains c WHERE c.device_id = d.device_id ORDER BY c.updated_at DESC LIMIT 1),
                    d.site_id
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
                site_id: r.get(8)?,
            })
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// Assigns a device to a site (or none). Its tickets without a site get
    /// this one; tickets already assigned keep theirs, history stays true.
    /// `Ok(false)`: no such device.
    pub fn set_device_site(
        &self,
        device_id: &str,
        site_id: Option<&str>,
    ) -> Result<bool, MasterError> {
        let mut conn = self.writer();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        if let Some(site) = site_id {
            let known: i64 = tx.query_row(
                "SELECT COUNT(*) FROM master_entities WHERE kind = 'sites' AND id = ?1",
                [site],
                |r| r.get(0),
            )?;
            if known == 0 {
                return Err(MasterError::Invalid(format!(
                    "site_id: no site {site:?} in the master data"
                )));
            }
        }
        let changed = tx.execute(
            "UPDATE devices SET site_id = ?2 WHERE device_id = ?1",
            params![device_id, site_id],
        )?;
        if changed == 0 {
            return Ok(false);
        }
        tx.execute(
            "UPDATE weighings SET site_id = ?2 WHERE device_id = ?1 AND site_id IS NULL",
            params![device_id, site_id],
        )?;
        tx.commit()?;
        Ok(true)
    }

    /// Writes a consistent copy of the database to `path` (which must not
    /// exist) while the service keeps running.
    pub fn backup_into(&self, path: &Path) -> Result<(), StoreError> {
        self.reader()
            .execute("VACUUM INTO ?1", [path.to_string_lossy()])?;
        Ok(())
    }

    /// Cheap liveness check of the database.
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
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
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
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
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
    /// The site the device stands at, when assigned.
    pub site_id: Option<String>,
}

/// Whether `table` has `column` (a database of an earlier release may not).
fn has_column(conn: &Connection, table: &str, column: &str) -> rusqlite::Result<bool> {
    conn.query_row(
        "SELECT COUNT(*) FROM pragma_table_info(?1) WHERE name = ?2",
        params![table, column],
        |r| r.get::<_, i64>(0).map(|n| n > 0),
    )
}

/// Whether a record arrives now or is replayed to rebuild tickets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Replay {
    /// Just received: its consequences are news (integration events).
    Live,
    /// Replayed from the stored records by a migration: stock is booked,
    /// but no integration event repeats old news.
    Rebuild,
}

/// Applies one record to the business tables through the ticket state
/// machine, all or nothing: an error rolls back what this record wrote
/// (a ticket completed without its stock booking would be worse than a
/// record kept raw). An error means the record is valid on the wire but
/// not understood or not a possible step; the caller keeps it raw.
fn materialize(
    tx: &rusqlite::Transaction<'_>,
    record: &Record,
    replay: Replay,
) -> Result<(), String> {
    tx.execute_batch("SAVEPOINT materialize")
        .map_err(|e| e.to_string())?;
    let applied = apply_record(tx, record, replay);
    let end = if applied.is_ok() {
        "RELEASE materialize"
    } else {
        "ROLLBACK TO materialize; RELEASE materialize"
    };
    tx.execute_batch(end).map_err(|e| e.to_string())?;
    applied
}

fn apply_record(
    tx: &rusqlite::Transaction<'_>,
    record: &Record,
    replay: Replay,
) -> Result<(), String> {
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
    let before = current.as_ref().map(|t| t.state);
    let id = upsert_ticket(tx, record, &ticket, completes).map_err(|e| e.to_string())?;
    on_transition(tx, id, before, &ticket, replay).map_err(|e| e.to_string())
}

/// What follows from a ticket changing state: stock bookings and the
/// integration events, in the transaction that stores the change.
fn on_transition(
    tx: &rusqlite::Transaction<'_>,
    id: i64,
    before: Option<TicketState>,
    ticket: &Ticket,
    replay: Replay,
) -> rusqlite::Result<()> {
    if before == Some(ticket.state) {
        return Ok(());
    }
    let enqueue = |kind: &str, subject: i64, data: serde_json::Value| {
        if replay == Replay::Live {
            events::enqueue(tx, kind, &subject.to_string(), &data)
        } else {
            Ok(())
        }
    };
    let net_kg = ticket.net.map(|n| n.to_kg_f64());
    match ticket.state {
        TicketState::Complete => {
            stock::book_weighing(tx, id, ticket)?;
            enqueue(
                "weighing.completed",
                id,
                serde_json::json!({
                    "weighing_id": id, "device_id": ticket.device_id, "ticket_no": ticket.ticket_no,
                    "plate": ticket.plate, "direction": direction_str(ticket.direction),
                    "net_kg": net_kg, "legal_for_trade": ticket.legal_for_trade,
                    "partner": ticket.partner, "article": ticket.article, "lot": ticket.lot,
                    "location": ticket.location, "contract_id": ticket.contract_id,
                    "weighed_at": weighings::weighed_at(ticket),
                }),
            )
        }
        TicketState::Cancelled => {
            let cancellation = ticket.cancellation.as_ref();
            let at = cancellation.map_or_else(
                || Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
                |c| c.at.clone(),
            );
            let actor = format!("system:device:{}", ticket.device_id);
            stock::reverse_weighing(tx, id, &at, &actor)?;
            let reason = cancellation.map_or("", |c| c.reason.as_str());
            for (note_id, number) in
                delivery_notes::cancel_for_cancelled_weighing(tx, id, &at, &actor, reason)?
            {
                enqueue(
                    "delivery_note.cancelled",
                    note_id,
                    serde_json::json!({"id": note_id, "number": number,
                        "reason": "the weighing was cancelled at the box",
                        "cancelled_by": actor}),
                )?;
            }
            enqueue(
                "weighing.cancelled",
                id,
                serde_json::json!({
                    "weighing_id": id, "device_id": ticket.device_id, "ticket_no": ticket.ticket_no,
                    "plate": ticket.plate, "was_complete": before == Some(TicketState::Complete),
                    "cancellation": cancellation,
                }),
            )
        }
        TicketState::Open => Ok(()),
    }
}

/// The columns a ticket is filtered and summed by.
struct TicketColumns {
    partner_id: Option<String>,
    article_id: Option<String>,
    lot_id: Option<String>,
    location_id: Option<String>,
    contract_id: Option<String>,
    net_kg: Option<f64>,
}

impl TicketColumns {
    fn of(ticket: &Ticket) -> TicketColumns {
        let id = |r: &Option<Ref>| r.as_ref().map(|r| r.id.clone());
        TicketColumns {
            partner_id: id(&ticket.partner),
            article_id: id(&ticket.article),
            lot_id: id(&ticket.lot),
            location_id: id(&ticket.location),
            contract_id: ticket.contract_id.clone(),
            net_kg: ticket.net.map(|n| n.to_kg_f64()),
        }
    }
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
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct FieldValueView {
    pub device_id: String,
    pub field_device: String,
    pub point: String,
    pub value: serde_json::Value,
    pub unit: Option<String>,
    pub at: String,
}

/// The ticket a record belongs to, for ticket records.
fn ticket_no_of(kind: &str, payload: &serde_json::Value) -> Option<i64> {
    TicketEvent::from_record(kind, payload)
        .ok()
        .flatten()
        .map(|e| e.ticket_no() as i64)
}

/// Stores the ticket's current state and returns its row id.
fn upsert_ticket(
    tx: &rusqlite::Transaction<'_>,
    record: &Record,
    ticket: &Ticket,
    completes: bool,
) -> rusqlite::Result<i64> {
    let (first, second) = (&ticket.first, ticket.second.as_ref());
    let c = TicketColumns::of(ticket);
    tx.query_row(
        "INSERT INTO weighings (device_id, ticket_no, plate, direction, status, unit, decimals,
             first_scale_id, first_value, first_alibi_id, first_weighed_at, first_record_seq, epoch,
             second_scale_id, second_value, second_alibi_id, second_weighed_at, second_record_seq,
             gross_value, tare_value, net_value, ticket,
             partner_id, article_id, lot_id, location_id, contract_id, net_kg, site_id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18,
             ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26, ?27, ?28,
             (SELECT site_id FROM devices WHERE device_id = ?1))
         ON CONFLICT (device_id, ticket_no) DO UPDATE SET status = excluded.status,
             second_scale_id = excluded.second_scale_id, second_value = excluded.second_value,
             second_alibi_id = excluded.second_alibi_id, second_weighed_at = excluded.second_weighed_at,
             second_record_seq = COALESCE(excluded.second_record_seq, weighings.second_record_seq),
             gross_value = excluded.gross_value, tare_value = excluded.tare_value,
             net_value = excluded.net_value, ticket = excluded.ticket,
             partner_id = excluded.partner_id, article_id = excluded.article_id,
             lot_id = excluded.lot_id, location_id = excluded.location_id,
             contract_id = excluded.contract_id, net_kg = excluded.net_kg
         RETURNING id",
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
            c.partner_id,
            c.article_id,
            c.lot_id,
            c.location_id,
            c.contract_id,
            c.net_kg,
        ],
        |r| r.get(0),
    )
}

fn direction_str(direction: valeo_records::Direction) -> &'static str {
    match direction {
        valeo_records::Direction::Intake => "intake",
        valeo_records::Direction::Outgoing => "outgoing",
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeviceHead {
    pub device_id: String,
    pub epoch: String,
    pub head_seq: u64,
    pub last_record_at: String,
}

#[cfg(test)]
mod tests {
    mod business;
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
        let first = store.put_master_data(doc.clone(), None, "test").unwrap();
        let now_ms = Utc::now().timestamp_millis() as u64;
        assert!(
            first.version != 77 && first.version + 60_000 > now_ms,
            "the version is central's (the time in ms), not the client's: {}",
            first.version
        );
        let second = store
            .put_master_data(doc.clone(), Some(first.version), "test")
            .unwrap();
        assert!(second.version > first.version);
        assert!(matches!(
            store.put_master_data(doc, Some(first.version), "test"),
            Err(PutMasterDataError::VersionMismatch { current }) if current == second.version
        ));
        let dangling = json!({"lots": [{"id": "L", "name": "x", "article_id": "NOPE"}]});
        let err = store.put_master_data(dangling, None, "test").unwrap_err();
        assert!(err.to_string().contains("unknown article"), "{err}");
        assert_eq!(
            store.master_data().unwrap().unwrap().version,
            second.version
        );
    }

    #[test]
    fn a_database_of_the_release_before_the_business_api_gets_its_columns_and_stock() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("central.db");
        {
            let store = Store::open(&path).unwrap();
            store
                .register_device("box", &key("box").public_key_hex())
                .unwrap();
            let mut records = ticket_records();
            for r in &mut records {
                if let Some(context) = r.payload.get_mut("context") {
                    context["article"] = json!({"id": "A-WHEAT", "name": "Weizen"});
                }
            }
            let records = chain(
                "box",
                1,
                GENESIS_HASH,
                records
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
            store.commit_batch(&batch("box", records)).unwrap();
            // Back to the shape of the release before: no business columns,
            // no stock.
            let conn = store.writer();
            conn.execute_batch(
                "DROP INDEX weighings_by_partner; DROP INDEX weighings_by_article;
                 DROP INDEX weighings_by_site; DROP INDEX weighings_by_plate_status;
                 DROP INDEX weighings_by_net; DROP INDEX weighings_by_lot;
                 DROP INDEX weighings_by_contract; DROP INDEX weighings_by_status;
                 DROP INDEX records_by_ticket;
                 ALTER TABLE weighings DROP COLUMN site_id; ALTER TABLE weighings DROP COLUMN partner_id;
                 ALTER TABLE weighings DROP COLUMN article_id; ALTER TABLE weighings DROP COLUMN lot_id;
                 ALTER TABLE weighings DROP COLUMN location_id; ALTER TABLE weighings DROP COLUMN contract_id;
                 ALTER TABLE weighings DROP COLUMN net_kg; ALTER TABLE records DROP COLUMN ticket_no;
                 ALTER TABLE devices DROP COLUMN site_id; DELETE FROM stock_movements;",
            )
            .unwrap();
        }
        let store = Store::open(&path).unwrap();
        let page = store
            .list_weighings(&WeighingFilter {
                article_id: Some("A-WHEAT".into()),
                limit: 10,
                ..WeighingFilter::default()
            })
            .unwrap();
        assert_eq!(page.total, 1, "the filter columns were filled");
        let stock = store.stock(Some("A-WHEAT"), None).unwrap();
        assert_eq!(stock[0].quantity_kg, 25_020.0, "stock was booked");
        let detail = store
            .get_weighing_detail(page.items[0].id)
            .unwrap()
            .unwrap();
        assert_eq!(detail.proof.records.len(), 2, "records know their ticket");
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
