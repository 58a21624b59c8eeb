//! The edge outbox: an append-only, hash-chained log of records in SQLite,
//! the source of truth on the box.
//!
//! On-disk layout (one database file per box):
//!
//! ```text
//! meta(key, value)          device_id, epoch, head_seq, head_hash, acked_seq
//! records(seq PK, kind, created_at, payload, prev_hash, hash, acked_at)
//! ```
//!
//! Invariants:
//! - `seq` is gap-free from 1 within the epoch; `head_*` in `meta` always
//!   describe the last appended record, even after old rows are pruned.
//! - A record is durable (`synchronous=FULL`, WAL) before `append` returns,
//!   so nobody is told about a record that a power cut could take back.
//! - Rows are only marked acknowledged when central's cumulative ack covers
//!   them; a broker PUBACK never touches this file.
//! - Every write runs in `BEGIN IMMEDIATE` so two writers never deadlock on
//!   a lock upgrade.

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::{DateTime, SecondsFormat, Utc};
use rand::RngCore;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use crate::error::OutboxError;
use crate::wire::{GENESIS_HASH, Record, validate_device_id};

/// Limits of the outbox.
#[derive(Debug, Clone)]
pub struct OutboxLimits {
    /// Appends beyond this many unacknowledged records are refused with
    /// [`OutboxError::Full`]; legal records are never dropped to make room.
    pub max_pending_records: u64,
    /// Live values waiting to be sent; beyond this the oldest are dropped
    /// (and counted): telemetry is worth less than the disk of a box that
    /// has been offline for days.
    pub max_telemetry_samples: u64,
    /// Largest payload of one record, in bytes of JSON.
    pub max_payload_bytes: usize,
    /// How many acknowledged records to keep for local lookups; older
    /// acknowledged rows are pruned (the chain head stays in `meta`).
    pub keep_acked_records: u64,
    /// Appends are refused once the database's used pages reach this size.
    pub max_db_bytes: u64,
    /// `/health` raises an alarm from this share of `max_db_bytes` on, so
    /// someone acts before weighings are refused.
    pub alarm_db_percent: u8,
}

impl Default for OutboxLimits {
    fn default() -> Self {
        OutboxLimits {
            max_pending_records: 1_000_000,
            max_telemetry_samples: 10_000,
            max_payload_bytes: 64 * 1024,
            keep_acked_records: 100_000,
            max_db_bytes: 2 * 1024 * 1024 * 1024,
            alarm_db_percent: 80,
        }
    }
}

/// An append failed in the outbox or in the caller's part of the transaction.
#[derive(Debug)]
pub enum AppendError<E> {
    Outbox(OutboxError),
    Caller(E),
}

impl<E: From<OutboxError>> AppendError<E> {
    /// Folds both cases into the caller's error type.
    pub fn into_inner(self) -> E {
        match self {
            AppendError::Outbox(e) => E::from(e),
            AppendError::Caller(e) => e,
        }
    }
}

/// Counters for `/health` and the status topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct OutboxStats {
    pub head_seq: u64,
    pub acked_seq: u64,
    pub pending_records: u64,
}

/// One live value, e.g. `{"name": "scale.bridge-1.weight", "value": {...}}`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TelemetrySample {
    pub name: String,
    pub value: serde_json::Value,
    /// RFC 3339 UTC time of the measurement.
    pub at: String,
}

/// How full the database is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct DiskUsage {
    pub used_bytes: u64,
    pub max_bytes: u64,
    /// At or above the alarm threshold.
    pub alarm: bool,
}

/// Handle to the outbox database. Cheap to clone; all clones share one
/// connection, so writes are serialised in-process as well as by SQLite.
#[derive(Debug, Clone)]
pub struct Outbox {
    conn: Arc<Mutex<Connection>>,
    device_id: String,
    epoch: String,
    limits: OutboxLimits,
}

impl Outbox {
    /// Opens (or creates) the outbox at `path` for `device_id`. A new
    /// database gets a fresh random epoch.
    pub fn open(path: &Path, device_id: &str, limits: OutboxLimits) -> Result<Outbox, OutboxError> {
        validate_device_id(device_id)?;
        // Weighings are legal records: a commit must survive a power cut.
        let conn = open_durable(path).map_err(|source| OutboxError::Open {
            path: path.display().to_string(),
            source,
        })?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS records (
                 seq INTEGER PRIMARY KEY,
                 kind TEXT NOT NULL,
                 created_at TEXT NOT NULL,
                 payload TEXT NOT NULL,
                 prev_hash TEXT NOT NULL,
                 hash TEXT NOT NULL,
                 acked_at TEXT
             );
             CREATE TABLE IF NOT EXISTS telemetry (
                 id INTEGER PRIMARY KEY AUTOINCREMENT,
                 name TEXT NOT NULL,
                 value TEXT NOT NULL,
                 at TEXT NOT NULL
             );",
        )?;
        let mut conn = conn;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let stored: Option<String> = tx
            .query_row("SELECT value FROM meta WHERE key = 'device_id'", [], |r| {
                r.get(0)
            })
            .optional()?;
        let epoch = match stored {
            Some(stored) if stored != device_id => {
                return Err(OutboxError::DeviceMismatch {
                    stored,
                    configured: device_id.to_owned(),
                });
            }
            Some(_) => get_meta(&tx, "epoch")?.unwrap_or_default(),
            None => {
                let mut bytes = [0u8; 16];
                rand::rng().fill_bytes(&mut bytes);
                let epoch = hex::encode(bytes);
                for (key, value) in [
                    ("device_id", device_id),
                    ("epoch", epoch.as_str()),
                    ("head_seq", "0"),
                    ("head_hash", GENESIS_HASH),
                    ("acked_seq", "0"),
                ] {
                    tx.execute(
                        "INSERT INTO meta (key, value) VALUES (?1, ?2)",
                        params![key, value],
                    )?;
                }
                epoch
            }
        };
        tx.commit()?;
        Ok(Outbox {
            conn: Arc::new(Mutex::new(conn)),
            device_id: device_id.to_owned(),
            epoch,
            limits,
        })
    }

    pub fn device_id(&self) -> &str {
        &self.device_id
    }

    pub fn epoch(&self) -> &str {
        &self.epoch
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite inconsistent
        // (the transaction rolls back), so a poisoned lock is still usable.
        self.conn
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Appends one record durably and returns it. Blocking: call it from a
    /// blocking context (`tokio::task::spawn_blocking`).
    pub fn append(
        &self,
        kind: &str,
        payload: serde_json::Value,
        created_at: DateTime<Utc>,
    ) -> Result<Record, OutboxError> {
        self.append_with(kind, created_at, |_| Ok::<_, OutboxError>((payload, ())))
            .map(|(record, ())| record)
            .map_err(AppendError::into_inner)
    }

    /// The transactional outbox: runs `build` inside the append transaction
    /// so the caller's own tables (in the same database file) change in the
    /// same commit as the record. `build` returns the payload and a value
    /// handed back to the caller. If `build` fails, nothing is written.
    pub fn append_with<T, E>(
        &self,
        kind: &str,
        created_at: DateTime<Utc>,
        build: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<(serde_json::Value, T), E>,
    ) -> Result<(Record, T), AppendError<E>>
    where
        E: From<OutboxError>,
    {
        let sql_err = |e: rusqlite::Error| AppendError::Outbox(OutboxError::Sqlite(e));
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql_err)?;
        let mut head = self.head_with_room(&tx, 1).map_err(AppendError::Outbox)?;
        let (payload, value) = build(&tx).map_err(AppendError::Caller)?;
        let record = self
            .insert_next(&tx, &mut head, kind, payload, created_at)
            .map_err(AppendError::Outbox)?;
        tx.commit().map_err(sql_err)?;
        Ok((record, value))
    }

    /// Group commit: appends several records in one transaction (one fsync),
    /// all or none. For producers of many records, e.g. telemetry sampled
    /// into records or an import.
    pub fn append_many(
        &self,
        items: Vec<(String, serde_json::Value)>,
        created_at: DateTime<Utc>,
    ) -> Result<Vec<Record>, OutboxError> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut head = self.head_with_room(&tx, items.len() as u64)?;
        let mut records = Vec::with_capacity(items.len());
        for (kind, payload) in items {
            records.push(self.insert_next(&tx, &mut head, &kind, payload, created_at)?);
        }
        tx.commit()?;
        Ok(records)
    }

    /// Used bytes of the database against its quota.
    pub fn disk_usage(&self) -> Result<DiskUsage, OutboxError> {
        let used_bytes = used_bytes(&self.lock())?;
        let max_bytes = self.limits.max_db_bytes;
        let alarm = used_bytes.saturating_mul(100)
            >= max_bytes.saturating_mul(u64::from(self.limits.alarm_db_percent));
        Ok(DiskUsage {
            used_bytes,
            max_bytes,
            alarm,
        })
    }

    /// The chain head, after checking that `n` more records fit.
    fn head_with_room(
        &self,
        tx: &rusqlite::Transaction<'_>,
        n: u64,
    ) -> Result<(u64, String), OutboxError> {
        let used = used_bytes(tx)?;
        if used >= self.limits.max_db_bytes {
            return Err(OutboxError::DiskQuota {
                used_bytes: used,
                max_bytes: self.limits.max_db_bytes,
            });
        }
        let head_seq = get_meta_u64(tx, "head_seq")?;
        let acked_seq = get_meta_u64(tx, "acked_seq")?;
        let pending = head_seq.saturating_sub(acked_seq);
        if pending + n > self.limits.max_pending_records {
            return Err(OutboxError::Full {
                pending_records: pending,
                max_pending_records: self.limits.max_pending_records,
            });
        }
        let head_hash = get_meta(tx, "head_hash")?.unwrap_or_else(|| GENESIS_HASH.to_owned());
        Ok((head_seq, head_hash))
    }

    /// Inserts the record after `head` and moves `head` (in memory and in
    /// `meta`) to it.
    fn insert_next(
        &self,
        tx: &rusqlite::Transaction<'_>,
        head: &mut (u64, String),
        kind: &str,
        payload: serde_json::Value,
        created_at: DateTime<Utc>,
    ) -> Result<Record, OutboxError> {
        let payload_bytes = serde_json::to_vec(&payload)
            .map(|v| v.len())
            .unwrap_or(usize::MAX);
        if payload_bytes > self.limits.max_payload_bytes {
            return Err(OutboxError::Payload {
                kind: kind.to_owned(),
                reason: format!(
                    "{payload_bytes} bytes exceed max_payload_bytes {}",
                    self.limits.max_payload_bytes
                ),
            });
        }
        let record = Record::new(
            &self.device_id,
            &self.epoch,
            head.0 + 1,
            kind,
            &created_at.to_rfc3339_opts(SecondsFormat::Millis, true),
            payload,
            &head.1,
        );
        tx.prepare_cached(
            "INSERT INTO records (seq, kind, created_at, payload, prev_hash, hash)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?
        .execute(params![
            record.seq as i64,
            record.kind,
            record.created_at,
            record.payload.to_string(),
            record.prev_hash,
            record.hash
        ])?;
        set_meta(tx, "head_seq", &record.seq.to_string())?;
        set_meta(tx, "head_hash", &record.hash)?;
        *head = (record.seq, record.hash.clone());
        Ok(record)
    }

    /// Runs a read-only query on the outbox database (for the caller's own
    /// tables kept beside the records).
    pub fn read<T>(&self, query: impl FnOnce(&Connection) -> T) -> T {
        query(&self.lock())
    }

    /// Up to `max_records` unacknowledged records with `seq > after_seq`, in
    /// order. Each row is checked against its hash before it leaves the box.
    pub fn pending_after(
        &self,
        after_seq: u64,
        max_records: usize,
    ) -> Result<Vec<Record>, OutboxError> {
        let conn = self.lock();
        let acked_seq = get_meta_u64(&conn, "acked_seq")?;
        self.records_from(&conn, after_seq.max(acked_seq), max_records)
    }

    fn records_from(
        &self,
        conn: &Connection,
        after_seq: u64,
        max_records: usize,
    ) -> Result<Vec<Record>, OutboxError> {
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {RECORD_COLUMNS} FROM records WHERE seq > ?1 ORDER BY seq LIMIT ?2"
        ))?;
        let rows = stmt.query_map(
            params![after_seq as i64, max_records as i64],
            StoredRow::read,
        )?;
        let mut out = Vec::new();
        for row in rows {
            out.push(self.to_record(row?)?);
        }
        Ok(out)
    }

    /// Records after `after_seq`, acknowledged or not, as long as they are
    /// kept (`keep_acked_records`): for a central that lost records it had
    /// acknowledged (restored from a backup) and asks for them again.
    pub fn stored_after(
        &self,
        after_seq: u64,
        max_records: usize,
    ) -> Result<Vec<Record>, OutboxError> {
        let conn = self.lock();
        self.records_from(&conn, after_seq, max_records)
    }

    /// Applies central's cumulative ack: every record up to `acked_seq` of
    /// `epoch` is committed at central. Returns how many records it newly
    /// covered. Acks for another epoch or beyond the head are ignored: they
    /// cannot be about records of this database.
    pub fn ack(&self, epoch: &str, acked_seq: u64, now: DateTime<Utc>) -> Result<u64, OutboxError> {
        if epoch != self.epoch {
            return Ok(0);
        }
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let head_seq = get_meta_u64(&tx, "head_seq")?;
        let previous = get_meta_u64(&tx, "acked_seq")?;
        if acked_seq <= previous || acked_seq > head_seq {
            return Ok(0);
        }
        tx.execute(
            "UPDATE records SET acked_at = ?1 WHERE seq > ?2 AND seq <= ?3",
            params![
                now.to_rfc3339_opts(SecondsFormat::Millis, true),
                previous as i64,
                acked_seq as i64
            ],
        )?;
        set_meta(&tx, "acked_seq", &acked_seq.to_string())?;
        let keep_from = acked_seq.saturating_sub(self.limits.keep_acked_records);
        tx.execute(
            "DELETE FROM records WHERE seq <= ?1",
            params![keep_from as i64],
        )?;
        tx.commit()?;
        Ok(acked_seq - previous)
    }

    /// [`Outbox::ack`] on the blocking thread pool.
    pub async fn ack_async(
        &self,
        epoch: String,
        acked_seq: u64,
        now: DateTime<Utc>,
    ) -> Result<u64, OutboxError> {
        let outbox = self.clone();
        tokio::task::spawn_blocking(move || outbox.ack(&epoch, acked_seq, now))
            .await
            .map_err(|_| OutboxError::WorkerGone)?
    }

    pub fn stats(&self) -> Result<OutboxStats, OutboxError> {
        let conn = self.lock();
        let head_seq = get_meta_u64(&conn, "head_seq")?;
        let acked_seq = get_meta_u64(&conn, "acked_seq")?;
        Ok(OutboxStats {
            head_seq,
            acked_seq,
            pending_records: head_seq.saturating_sub(acked_seq),
        })
    }

    /// Queues live values (e.g. the current weight) for best-effort sending.
    /// Never touches the record chain. Drops the oldest samples beyond
    /// `max_telemetry_samples` and returns how many it dropped.
    pub fn push_telemetry(&self, samples: &[TelemetrySample]) -> Result<u64, OutboxError> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        for sample in samples {
            tx.prepare_cached("INSERT INTO telemetry (name, value, at) VALUES (?1, ?2, ?3)")?
                .execute(params![sample.name, sample.value.to_string(), sample.at])?;
        }
        let dropped = tx.execute(
            "DELETE FROM telemetry WHERE id <= (SELECT MAX(id) FROM telemetry) - ?1",
            params![self.limits.max_telemetry_samples as i64],
        )? as u64;
        if dropped > 0 {
            let total = get_meta_u64(&tx, "telemetry_dropped")? + dropped;
            set_meta(&tx, "telemetry_dropped", &total.to_string())?;
        }
        tx.commit()?;
        Ok(dropped)
    }

    /// Takes up to `max` queued samples, oldest first, removing them: they
    /// are sent at most once (QoS 0), never retried.
    pub fn take_telemetry(&self, max: usize) -> Result<Vec<TelemetrySample>, OutboxError> {
        let mut conn = self.lock();
        // Checked before opening a write transaction: the uplink asks every
        // tick, and an empty queue must not cost a commit and an fsync.
        let any: Option<i64> = conn
            .query_row("SELECT id FROM telemetry LIMIT 1", [], |r| r.get(0))
            .optional()?;
        if any.is_none() {
            return Ok(Vec::new());
        }
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut samples = Vec::new();
        let mut last_id = 0i64;
        {
            let mut stmt = tx
                .prepare_cached("SELECT id, name, value, at FROM telemetry ORDER BY id LIMIT ?1")?;
            let rows = stmt.query_map(params![max as i64], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                ))
            })?;
            for row in rows {
                let (id, name, value, at) = row?;
                last_id = id;
                // A sample that does not parse is dropped with the batch.
                if let Ok(value) = serde_json::from_str(&value) {
                    samples.push(TelemetrySample { name, value, at });
                }
            }
        }
        tx.execute("DELETE FROM telemetry WHERE id <= ?1", params![last_id])?;
        tx.commit()?;
        Ok(samples)
    }

    /// Samples dropped because the queue was full, since the database was created.
    pub fn telemetry_dropped(&self) -> Result<u64, OutboxError> {
        get_meta_u64(&self.lock(), "telemetry_dropped")
    }

    /// When the oldest record central has not acknowledged was written, if any.
    pub fn oldest_pending_created_at(&self) -> Result<Option<DateTime<Utc>>, OutboxError> {
        let conn = self.lock();
        let acked_seq = get_meta_u64(&conn, "acked_seq")?;
        let created_at: Option<String> = conn
            .query_row(
                "SELECT created_at FROM records WHERE seq = ?1",
                params![(acked_seq + 1) as i64],
                |r| r.get(0),
            )
            .optional()?;
        Ok(created_at
            .and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
            .map(|t| t.with_timezone(&Utc)))
    }

    /// Reads one record by seq, acknowledged or not, if it is still kept.
    pub fn get(&self, seq: u64) -> Result<Option<Record>, OutboxError> {
        let conn = self.lock();
        let row = conn
            .query_row(
                &format!("SELECT {RECORD_COLUMNS} FROM records WHERE seq = ?1"),
                params![seq as i64],
                StoredRow::read,
            )
            .optional()?;
        row.map(|row| self.to_record(row)).transpose()
    }

    /// Rebuilds a record from its row and checks it against its hash, so a
    /// row changed behind our back is reported, never sent.
    fn to_record(&self, row: StoredRow) -> Result<Record, OutboxError> {
        let seq = row.seq;
        let corrupt = |reason: String| OutboxError::Corrupt { seq, reason };
        let record = Record {
            device_id: self.device_id.clone(),
            epoch: self.epoch.clone(),
            seq,
            kind: row.kind,
            created_at: row.created_at,
            payload: serde_json::from_str(&row.payload).map_err(|e| corrupt(e.to_string()))?,
            prev_hash: row.prev_hash,
            hash: row.hash,
        };
        record.verify_hash().map_err(|e| corrupt(e.to_string()))?;
        Ok(record)
    }
}

const RECORD_COLUMNS: &str = "seq, kind, created_at, payload, prev_hash, hash";

/// One row of `records` as stored.
struct StoredRow {
    seq: u64,
    kind: String,
    created_at: String,
    payload: String,
    prev_hash: String,
    hash: String,
}

impl StoredRow {
    fn read(row: &rusqlite::Row<'_>) -> rusqlite::Result<StoredRow> {
        Ok(StoredRow {
            seq: row.get::<_, i64>(0)? as u64,
            kind: row.get(1)?,
            created_at: row.get(2)?,
            payload: row.get(3)?,
            prev_hash: row.get(4)?,
            hash: row.get(5)?,
        })
    }
}

/// Opens a SQLite database for records that others are told about: WAL
/// (readers do not block the writer), `synchronous=FULL` (a commit survives
/// a power cut), and a bounded wait for locks. Central's store uses it too.
pub fn open_durable(path: &Path) -> Result<Connection, rusqlite::Error> {
    let conn = Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.busy_timeout(std::time::Duration::from_millis(BUSY_TIMEOUT_MS))?;
    Ok(conn)
}

/// How long a writer waits for another writer's lock before failing.
pub const BUSY_TIMEOUT_MS: u64 = 5_000;

/// Bytes in pages that hold data (freed pages of pruned rows are reused).
fn used_bytes(conn: &Connection) -> Result<u64, rusqlite::Error> {
    let pages: i64 = conn.query_row("PRAGMA page_count", [], |r| r.get(0))?;
    let free: i64 = conn.query_row("PRAGMA freelist_count", [], |r| r.get(0))?;
    let size: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
    Ok(((pages - free).max(0) * size) as u64)
}

fn get_meta(conn: &Connection, key: &str) -> Result<Option<String>, rusqlite::Error> {
    conn.query_row("SELECT value FROM meta WHERE key = ?1", params![key], |r| {
        r.get(0)
    })
    .optional()
}

fn get_meta_u64(conn: &Connection, key: &str) -> Result<u64, OutboxError> {
    let value = get_meta(conn, key)?.unwrap_or_else(|| "0".to_owned());
    value.parse().map_err(|_| OutboxError::Corrupt {
        seq: 0,
        reason: format!("meta {key} = {value:?}"),
    })
}

fn set_meta(conn: &Connection, key: &str, value: &str) -> Result<(), rusqlite::Error> {
    conn.execute(
        "INSERT INTO meta (key, value) VALUES (?1, ?2)
         ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        params![key, value],
    )
    .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn open(dir: &tempfile::TempDir) -> Outbox {
        Outbox::open(
            &dir.path().join("outbox.db"),
            "box-1",
            OutboxLimits::default(),
        )
        .unwrap()
    }

    #[test]
    fn appends_form_a_gap_free_hash_chain_that_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = open(&dir);
        let epoch = outbox.epoch().to_owned();
        for n in 0..3 {
            outbox
                .append("test", json!({ "n": n }), Utc::now())
                .unwrap();
        }
        drop(outbox);
        let outbox = open(&dir);
        assert_eq!(outbox.epoch(), epoch, "reopening keeps the epoch");
        let fourth = outbox
            .append("test", json!({ "n": 3 }), Utc::now())
            .unwrap();
        let all = outbox.pending_after(0, 100).unwrap();
        assert_eq!(
            all.iter().map(|r| r.seq).collect::<Vec<_>>(),
            vec![1, 2, 3, 4]
        );
        assert_eq!(all[0].prev_hash, GENESIS_HASH);
        for pair in all.windows(2) {
            assert_eq!(pair[1].prev_hash, pair[0].hash);
        }
        assert_eq!(all[3], fourth);
    }

    #[test]
    fn a_recreated_database_gets_a_new_epoch() {
        let first = tempfile::tempdir().unwrap();
        let second = tempfile::tempdir().unwrap();
        assert_ne!(open(&first).epoch(), open(&second).epoch());
    }

    #[test]
    fn only_a_cumulative_ack_of_the_own_epoch_releases_records() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = open(&dir);
        for n in 0..5 {
            outbox
                .append("test", json!({ "n": n }), Utc::now())
                .unwrap();
        }
        assert_eq!(outbox.ack("other-epoch", 5, Utc::now()).unwrap(), 0);
        assert_eq!(
            outbox.ack(outbox.epoch(), 9, Utc::now()).unwrap(),
            0,
            "beyond head"
        );
        assert!(outbox.oldest_pending_created_at().unwrap().is_some());
        assert_eq!(outbox.ack(outbox.epoch(), 3, Utc::now()).unwrap(), 3);
        assert_eq!(
            outbox.ack(outbox.epoch(), 2, Utc::now()).unwrap(),
            0,
            "stale ack"
        );
        let pending: Vec<u64> = outbox
            .pending_after(0, 100)
            .unwrap()
            .iter()
            .map(|r| r.seq)
            .collect();
        assert_eq!(pending, vec![4, 5]);
        assert_eq!(
            outbox.stats().unwrap(),
            OutboxStats {
                head_seq: 5,
                acked_seq: 3,
                pending_records: 2
            }
        );
        // Acknowledged records stay readable locally until pruned.
        assert!(outbox.get(1).unwrap().is_some());
    }

    #[test]
    fn refuses_a_database_of_another_device() {
        let dir = tempfile::tempdir().unwrap();
        drop(open(&dir));
        let err = Outbox::open(
            &dir.path().join("outbox.db"),
            "box-2",
            OutboxLimits::default(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("box-1"), "{err}");
    }

    #[test]
    fn a_group_commit_is_all_or_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = open(&dir);
        let items = (0..3).map(|n| ("a".to_owned(), json!(n))).collect();
        let records = outbox.append_many(items, Utc::now()).unwrap();
        assert_eq!(records.iter().map(|r| r.seq).collect::<Vec<_>>(), [1, 2, 3]);
        assert_eq!(records[2].prev_hash, records[1].hash);
        let too_big = json!("x".repeat(OutboxLimits::default().max_payload_bytes + 1));
        let items = vec![("a".to_owned(), json!(4)), ("a".to_owned(), too_big)];
        assert!(matches!(
            outbox.append_many(items, Utc::now()),
            Err(OutboxError::Payload { .. })
        ));
        assert_eq!(
            outbox.stats().unwrap().head_seq,
            3,
            "the failed group left nothing"
        );
        assert_eq!(
            outbox.append("a", json!(4), Utc::now()).unwrap().prev_hash,
            records[2].hash
        );
    }

    #[test]
    fn the_disk_quota_alarms_first_and_then_refuses() {
        let dir = tempfile::tempdir().unwrap();
        let limits = OutboxLimits {
            max_db_bytes: 64 * 1024,
            alarm_db_percent: 50,
            ..OutboxLimits::default()
        };
        let outbox = Outbox::open(&dir.path().join("o.db"), "box-1", limits).unwrap();
        assert!(!outbox.disk_usage().unwrap().alarm);
        let mut alarmed_before_full = false;
        let err = loop {
            match outbox.append("a", json!("x".repeat(1000)), Utc::now()) {
                Ok(_) => alarmed_before_full |= outbox.disk_usage().unwrap().alarm,
                Err(err) => break err,
            }
        };
        assert!(alarmed_before_full, "the alarm came before the refusal");
        assert!(matches!(err, OutboxError::DiskQuota { .. }), "{err}");
        assert!(err.to_string().contains("quota"), "{err}");
    }

    #[test]
    fn telemetry_drops_the_oldest_beyond_its_limit_and_counts_it() {
        let dir = tempfile::tempdir().unwrap();
        let limits = OutboxLimits {
            max_telemetry_samples: 3,
            ..OutboxLimits::default()
        };
        let outbox = Outbox::open(&dir.path().join("o.db"), "box-1", limits).unwrap();
        let sample = |n: i64| TelemetrySample {
            name: "w".into(),
            value: json!(n),
            at: "t".into(),
        };
        let samples: Vec<_> = (0..5).map(sample).collect();
        assert_eq!(outbox.push_telemetry(&samples).unwrap(), 2);
        assert_eq!(outbox.telemetry_dropped().unwrap(), 2);
        let taken: Vec<_> = outbox
            .take_telemetry(10)
            .unwrap()
            .into_iter()
            .map(|s| s.value)
            .collect();
        assert_eq!(taken, [json!(2), json!(3), json!(4)], "the newest survive");
        assert!(
            outbox.take_telemetry(10).unwrap().is_empty(),
            "sent at most once"
        );
        assert_eq!(
            outbox.stats().unwrap().head_seq,
            0,
            "the record chain is untouched"
        );
    }

    #[test]
    fn a_full_outbox_refuses_instead_of_dropping() {
        let dir = tempfile::tempdir().unwrap();
        let limits = OutboxLimits {
            max_pending_records: 2,
            ..OutboxLimits::default()
        };
        let outbox = Outbox::open(&dir.path().join("o.db"), "box-1", limits).unwrap();
        outbox.append("a", json!(1), Utc::now()).unwrap();
        outbox.append("a", json!(2), Utc::now()).unwrap();
        assert!(matches!(
            outbox.append("a", json!(3), Utc::now()),
            Err(OutboxError::Full { .. })
        ));
        outbox.ack(outbox.epoch(), 2, Utc::now()).unwrap();
        outbox.append("a", json!(3), Utc::now()).unwrap();
    }

    #[test]
    fn acked_records_beyond_the_retention_are_pruned_but_the_chain_continues() {
        let dir = tempfile::tempdir().unwrap();
        let limits = OutboxLimits {
            keep_acked_records: 1,
            ..OutboxLimits::default()
        };
        let outbox = Outbox::open(&dir.path().join("o.db"), "box-1", limits).unwrap();
        for n in 0..4 {
            outbox.append("a", json!(n), Utc::now()).unwrap();
        }
        outbox.ack(outbox.epoch(), 4, Utc::now()).unwrap();
        assert!(outbox.get(2).unwrap().is_none());
        assert!(outbox.get(4).unwrap().is_some());
        let fifth = outbox.append("a", json!(4), Utc::now()).unwrap();
        assert_eq!(fifth.seq, 5);
        assert_eq!(fifth.prev_hash, outbox.get(4).unwrap().unwrap().hash);
    }

    #[test]
    fn a_tampered_row_is_reported_not_sent() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = open(&dir);
        outbox.append("a", json!({"w": 1}), Utc::now()).unwrap();
        outbox
            .lock()
            .execute("UPDATE records SET payload = '{\"w\":2}'", [])
            .unwrap();
        let err = outbox.pending_after(0, 10).unwrap_err();
        assert!(matches!(err, OutboxError::Corrupt { seq: 1, .. }), "{err}");
    }
}

/// The outbox against a plain in-memory model: any sequence of appends,
/// acks (stale, future, foreign epoch), reads and reopenings leaves both
/// agreeing on what is pending, and the chain intact.
#[cfg(test)]
mod model {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    #[derive(Debug, Clone)]
    enum Op {
        Append(u8),
        Ack(u64),
        ForeignAck(u64),
        Read { after: u64, max: usize },
        Reopen,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => any::<u8>().prop_map(Op::Append),
            2 => (0u64..40).prop_map(Op::Ack),
            1 => (0u64..40).prop_map(Op::ForeignAck),
            2 => ((0u64..40), (1usize..10)).prop_map(|(after, max)| Op::Read { after, max }),
            1 => Just(Op::Reopen),
        ]
    }

    /// What the outbox should hold: every payload appended, and the ack mark.
    #[derive(Default)]
    struct Model {
        payloads: Vec<u8>,
        acked: u64,
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
        /// A stored record reads back with its hash intact whatever number
        /// it carries (JSON floats must parse back to the same bits).
        #[test]
        fn any_float_survives_the_round_trip(x in any::<f64>().prop_filter("finite", |x| x.is_finite()), scaled in 0u16..u16::MAX) {
            let dir = tempfile::tempdir().unwrap();
            let outbox = Outbox::open(&dir.path().join("o.db"), "box-1", OutboxLimits::default()).unwrap();
            outbox.append("test", json!({ "x": x, "scaled": f64::from(scaled) * 0.1 }), Utc::now()).unwrap();
            let records = outbox.pending_after(0, 10).unwrap();
            prop_assert_eq!(records[0].payload["x"].as_f64(), Some(x));
        }

        #[test]
        fn the_outbox_behaves_like_the_model(ops in proptest::collection::vec(op(), 1..60)) {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("o.db");
            let limits = OutboxLimits { keep_acked_records: 5, ..OutboxLimits::default() };
            let mut outbox = Outbox::open(&path, "box-1", limits.clone()).unwrap();
            let mut model = Model::default();
            for op in ops {
                match op {
                    Op::Append(n) => {
                        let record = outbox.append("m", json!(n), Utc::now()).unwrap();
                        model.payloads.push(n);
                        prop_assert_eq!(record.seq, model.payloads.len() as u64);
                    }
                    Op::Ack(seq) => {
                        let newly = outbox.ack(outbox.epoch(), seq, Utc::now()).unwrap();
                        let head = model.payloads.len() as u64;
                        let expected = if seq > model.acked && seq <= head { seq - model.acked } else { 0 };
                        prop_assert_eq!(newly, expected);
                        if expected > 0 {
                            model.acked = seq;
                        }
                    }
                    Op::ForeignAck(seq) => {
                        prop_assert_eq!(outbox.ack("someone-else", seq, Utc::now()).unwrap(), 0);
                    }
                    Op::Read { after, max } => {
                        let got: Vec<(u64, serde_json::Value)> = outbox
                            .pending_after(after, max)
                            .unwrap()
                            .into_iter()
                            .map(|r| (r.seq, r.payload))
                            .collect();
                        let from = after.max(model.acked);
                        let want: Vec<(u64, serde_json::Value)> = model
                            .payloads
                            .iter()
                            .enumerate()
                            .map(|(i, n)| (i as u64 + 1, json!(n)))
                            .filter(|(seq, _)| *seq > from)
                            .take(max)
                            .collect();
                        prop_assert_eq!(got, want);
                    }
                    Op::Reopen => {
                        let epoch = outbox.epoch().to_owned();
                        drop(outbox);
                        outbox = Outbox::open(&path, "box-1", limits.clone()).unwrap();
                        prop_assert_eq!(outbox.epoch(), epoch.as_str());
                    }
                }
                let stats = outbox.stats().unwrap();
                let head = model.payloads.len() as u64;
                prop_assert_eq!(stats, OutboxStats { head_seq: head, acked_seq: model.acked, pending_records: head - model.acked });
            }
            // Every pending record links to its predecessor.
            let pending = outbox.pending_after(0, 1000).unwrap();
            for pair in pending.windows(2) {
                prop_assert_eq!(&pair[1].prev_hash, &pair[0].hash);
            }
        }
    }
}
