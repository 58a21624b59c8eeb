//! Integration events and webhook deliveries: every SQL statement of the
//! event outbox.
//!
//! - `events`: the outbox. A business change enqueues its event in its own
//!   transaction ([`enqueue`]), so the event exists exactly when the change
//!   was committed. Ids come from `AUTOINCREMENT` on the single writer
//!   connection: they grow in commit order and are never reused.
//! - `event_cursors`: how far a publisher got (MQTT), so a restart resumes.
//! - `webhooks`: the subscriptions, with the secret they are signed with and
//!   `cursor`, the newest event the webhook has taken into account.
//! - `webhook_deliveries`: one row per (webhook, event) being or having
//!   been delivered: attempts, last outcome, next attempt. A webhook's
//!   `pending` row with the lowest event id is its head; nothing later is
//!   sent to that webhook before the head is finished.
//!
//! Retention never deletes an event a webhook has not finished with: one
//! after a webhook's cursor, or one of a pending delivery.

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use rusqlite::{OptionalExtension, TransactionBehavior, params};
use serde::{Deserialize, Serialize};

use super::{Store, StoreError};

/// Tables of the event outbox.
pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    subject TEXT NOT NULL,
    occurred_at TEXT NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_kind ON events (kind, id);
CREATE INDEX IF NOT EXISTS events_by_subject ON events (subject, id);
CREATE TABLE IF NOT EXISTS event_cursors (
    name TEXT PRIMARY KEY,
    last_id INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS webhooks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    url TEXT NOT NULL,
    events TEXT NOT NULL,
    description TEXT,
    secret TEXT NOT NULL,
    created_at TEXT NOT NULL,
    cursor INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS webhook_deliveries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    webhook_id INTEGER NOT NULL,
    event_id INTEGER NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_status_code INTEGER,
    last_error TEXT,
    last_attempt_at TEXT,
    next_attempt_at TEXT,
    created_at TEXT NOT NULL,
    finished_at TEXT,
    UNIQUE (webhook_id, event_id)
);
CREATE INDEX IF NOT EXISTS deliveries_by_status ON webhook_deliveries (webhook_id, status, event_id);
CREATE INDEX IF NOT EXISTS deliveries_by_event ON webhook_deliveries (event_id);
";

/// The kind that stands for every kind in a webhook's `events`.
pub const ALL_KINDS: &str = "*";

/// Longest last error kept per delivery.
pub const MAX_DELIVERY_ERROR_CHARS: usize = 500;

/// Events looked at per query when a webhook's next event is searched.
const HEAD_SCAN_EVENTS: i64 = 500;

/// Queues an integration event in the caller's transaction, so the event
/// exists exactly when the change that caused it was committed.
pub fn enqueue(
    tx: &rusqlite::Transaction<'_>,
    kind: &str,
    subject: &str,
    data: &serde_json::Value,
) -> rusqlite::Result<()> {
    enqueue_at(tx, kind, subject, data, Utc::now()).map(|_| ())
}

/// [`enqueue`] at a given time; returns the event's id.
fn enqueue_at(
    tx: &rusqlite::Transaction<'_>,
    kind: &str,
    subject: &str,
    data: &serde_json::Value,
    at: DateTime<Utc>,
) -> rusqlite::Result<i64> {
    // The id grows past every id ever given (AUTOINCREMENT's sequence)
    // and is at least the time in microseconds: a database restored from
    // a backup would otherwise give ids again that consumers have seen
    // and dedupe, and so drop new events.
    let floor_us = at.timestamp_micros().max(0);
    tx.execute(
        "INSERT INTO events (id, kind, subject, occurred_at, data) VALUES (
             MAX(COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0) + 1, ?5),
             ?1, ?2, ?3, ?4)",
        params![kind, subject, timestamp(at), data.to_string(), floor_us],
    )?;
    Ok(tx.last_insert_rowid())
}

/// RFC 3339 UTC with milliseconds: sorts as text in time order.
fn timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// One integration event: the MQTT payload, the webhook body and an item of
/// the feed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Event {
    /// Grows with every event and is never reused; consumers dedupe by it.
    pub id: i64,
    /// e.g. `weighing.completed`.
    pub kind: String,
    /// What the event is about, e.g. the weighing id or the device id.
    pub subject: String,
    /// When central committed the change (RFC 3339, UTC).
    pub occurred_at: String,
    /// Kind-specific document (`docs/events.md`).
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
}

impl Event {
    /// The JSON document as published and POSTed.
    pub fn to_bytes(&self) -> Vec<u8> {
        // Serialising a struct of strings and a JSON value cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

const EVENT_COLUMNS: &str = "id, kind, subject, occurred_at, data";

fn event_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Event> {
    event_from_row_at(row, 0)
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// Not yet answered with 2xx; attempted again at `next_attempt_at`.
    Pending,
    /// Answered with 2xx.
    Delivered,
    /// Given up after `max_attempts`; an admin may retry it.
    Failed,
}

impl DeliveryStatus {
    fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Failed => "failed",
        }
    }

    fn parse(text: &str) -> DeliveryStatus {
        match text {
            "delivered" => DeliveryStatus::Delivered,
            "failed" => DeliveryStatus::Failed,
            _ => DeliveryStatus::Pending,
        }
    }
}

/// How many deliveries of a webhook are in each state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct DeliveryCounts {
    pub pending: u64,
    pub delivered: u64,
    pub failed: u64,
}

/// A webhook as the API shows it; the secret is never part of it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct WebhookView {
    pub id: i64,
    pub url: String,
    /// Event kinds delivered, or `["*"]` for all.
    pub events: Vec<String>,
    pub description: Option<String>,
    pub created_at: String,
    /// The newest event id this webhook has taken into account.
    pub cursor: i64,
    pub deliveries: DeliveryCounts,
}

/// One delivery of one event to one webhook.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct DeliveryView {
    pub id: i64,
    pub webhook_id: i64,
    pub event_id: i64,
    /// `None` once the event is no longer kept.
    pub event_kind: Option<String>,
    pub status: DeliveryStatus,
    pub attempts: u32,
    /// HTTP status of the last answer, if there was one.
    pub last_status_code: Option<u16>,
    pub last_error: Option<String>,
    pub last_attempt_at: Option<String>,
    /// Set while pending.
    pub next_attempt_at: Option<String>,
    pub created_at: String,
    pub finished_at: Option<String>,
}

/// What the dispatcher needs to deliver to a webhook. `Debug` leaves the
/// secret out, so it cannot end up in a log.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookTarget {
    pub id: i64,
    pub url: String,
    pub secret: String,
    pub events: Vec<String>,
}

impl std::fmt::Debug for WebhookTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookTarget")
            .field("id", &self.id)
            .field("url", &self.url)
            .field("events", &self.events)
            .finish_non_exhaustive()
    }
}

impl WebhookTarget {
    fn wants(&self, kind: &str) -> bool {
        self.events.iter().any(|k| k == ALL_KINDS || k == kind)
    }
}

/// The delivery a webhook must finish next.
#[derive(Debug, Clone, PartialEq)]
pub struct DueDelivery {
    pub delivery_id: i64,
    pub webhook_id: i64,
    pub event: Event,
    /// Attempts made so far.
    pub attempts: u32,
    pub next_attempt_at: DateTime<Utc>,
}

/// The outcome of one attempt, as the dispatcher decided it.
#[derive(Debug, Clone, PartialEq)]
pub enum AttemptOutcome {
    Delivered {
        status_code: u16,
    },
    /// Not delivered; try again at `next_attempt_at`.
    Retry {
        status_code: Option<u16>,
        error: String,
        next_attempt_at: DateTime<Utc>,
    },
    /// Not delivered and out of attempts.
    Failed {
        status_code: Option<u16>,
        error: String,
    },
}

/// Why a webhook was not created.
#[derive(Debug, thiserror::Error)]
pub enum CreateWebhookError {
    #[error("at most {max_webhooks} webhooks may exist")]
    TooMany { max_webhooks: u32 },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why a delivery was not retried.
#[derive(Debug, thiserror::Error)]
pub enum RetryDeliveryError {
    #[error("no such delivery of this webhook")]
    NotFound,
    #[error("only a failed delivery can be retried; this one is {}", .0.as_str())]
    NotFailed(DeliveryStatus),
    #[error("the event of this delivery is no longer kept")]
    EventGone,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What one retention pass deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    pub events: u64,
    pub deliveries: u64,
}

/// Sizes of the outbox, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct EventStats {
    pub events: u64,
    pub newest_event_id: i64,
    pub webhooks: u64,
    pub deliveries_pending: u64,
    pub deliveries_failed: u64,
}

const WEBHOOK_COLUMNS: &str = "w.id, w.url, w.events, w.description, w.created_at, w.cursor,
    (SELECT COUNT(*) FROM webhook_deliveries d WHERE d.webhook_id = w.id AND d.status = 'pending'),
    (SELECT COUNT(*) FROM webhook_deliveries d WHERE d.webhook_id = w.id AND d.status = 'delivered'),
    (SELECT COUNT(*) FROM webhook_deliveries d WHERE d.webhook_id = w.id AND d.status = 'failed')";

fn webhook_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<WebhookView> {
    let events: String = row.get(2)?;
    Ok(WebhookView {
        id: row.get(0)?,
        url: row.get(1)?,
        events: serde_json::from_str(&events).unwrap_or_default(),
        description: row.get(3)?,
        created_at: row.get(4)?,
        cursor: row.get(5)?,
        deliveries: DeliveryCounts {
            pending: row.get::<_, i64>(6)? as u64,
            delivered: row.get::<_, i64>(7)? as u64,
            failed: row.get::<_, i64>(8)? as u64,
        },
    })
}

const DELIVERY_COLUMNS: &str = "d.id, d.webhook_id, d.event_id,
    (SELECT e.kind FROM events e WHERE e.id = d.event_id), d.status, d.attempts,
    d.last_status_code, d.last_error, d.last_attempt_at, d.next_attempt_at, d.created_at,
    d.finished_at";

fn delivery_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<DeliveryView> {
    let status: String = row.get(4)?;
    Ok(DeliveryView {
        id: row.get(0)?,
        webhook_id: row.get(1)?,
        event_id: row.get(2)?,
        event_kind: row.get(3)?,
        status: DeliveryStatus::parse(&status),
        attempts: row.get::<_, i64>(5)? as u32,
        last_status_code: row.get::<_, Option<i64>>(6)?.map(|c| c as u16),
        last_error: row.get(7)?,
        last_attempt_at: row.get(8)?,
        next_attempt_at: row.get(9)?,
        created_at: row.get(10)?,
        finished_at: row.get(11)?,
    })
}

fn parse_time(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

fn truncate(text: &str, max_chars: usize) -> String {
    text.chars().take(max_chars).collect()
}

impl Store {
    /// Queues an event in a transaction of its own (for changes that are
    /// not a database write, e.g. a device going offline); returns its id.
    pub fn enqueue_event(
        &self,
        kind: &str,
        subject: &str,
        data: &serde_json::Value,
    ) -> Result<i64, StoreError> {
        let mut conn = self.writer();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let id = enqueue_at(&tx, kind, subject, data, Utc::now())?;
        tx.commit()?;
        Ok(id)
    }

    /// Queues `device.online` or `device.offline` for `device_id` unless the
    /// newest such event of the device already says so (statuses are
    /// retained and read again after every restart). Returns whether an
    /// event was queued.
    pub fn record_device_presence(
        &self,
        device_id: &str,
        online: bool,
        data: &serde_json::Value,
    ) -> Result<bool, StoreError> {
        let kind = if online {
            "device.online"
        } else {
            "device.offline"
        };
        let mut conn = self.writer();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let last: Option<String> = tx
            .query_row(
                "SELECT kind FROM events
                 WHERE subject = ?1 AND kind IN ('device.online', 'device.offline')
                 ORDER BY id DESC LIMIT 1",
                params![device_id],
                |r| r.get(0),
            )
            .optional()?;
        if last.as_deref() == Some(kind) {
            return Ok(false);
        }
        enqueue_at(&tx, kind, device_id, data, Utc::now())?;
        tx.commit()?;
        Ok(true)
    }

    /// Events after `after` in id order, of one kind or all.
    pub fn events_after(
        &self,
        after: i64,
        kind: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Event>, StoreError> {
        let conn = self.reader();
        let mut stmt = conn.prepare(&format!(
            "SELECT {EVENT_COLUMNS} FROM events
             WHERE id > ?1 AND (?2 IS NULL OR kind = ?2) ORDER BY id LIMIT ?3"
        ))?;
        let rows = stmt.query_map(params![after, kind, limit], event_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The newest event id, 0 without events.
    pub fn newest_event_id(&self) -> Result<i64, StoreError> {
        Ok(self
            .reader()
            .query_row("SELECT COALESCE(MAX(id), 0) FROM events", [], |r| r.get(0))?)
    }

    /// Where the publisher `name` got to, if it ever saved it.
    pub fn event_cursor(&self, name: &str) -> Result<Option<i64>, StoreError> {
        Ok(self
            .reader()
            .query_row(
                "SELECT last_id FROM event_cursors WHERE name = ?1",
                params![name],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Saves where the publisher `name` got to.
    pub fn set_event_cursor(&self, name: &str, last_id: i64) -> Result<(), StoreError> {
        self.writer().execute(
            "INSERT INTO event_cursors (name, last_id) VALUES (?1, ?2)
             ON CONFLICT (name) DO UPDATE SET last_id = excluded.last_id",
            params![name, last_id],
        )?;
        Ok(())
    }

    /// Creates a webhook that gets the events committed from now on.
    pub fn create_webhook(
        &self,
        url: &str,
        events: &[String],
        description: Option<&str>,
        secret: &str,
        max_webhooks: u32,
        now: DateTime<Utc>,
    ) -> Result<WebhookView, CreateWebhookError> {
        let id = {
            let mut conn = self.writer();
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(StoreError::from)?;
            let count: i64 = tx
                .query_row("SELECT COUNT(*) FROM webhooks", [], |r| r.get(0))
                .map_err(StoreError::from)?;
            if count >= i64::from(max_webhooks) {
                return Err(CreateWebhookError::TooMany { max_webhooks });
            }
            let events_json = serde_json::Value::from(events.to_vec()).to_string();
            tx.execute(
                "INSERT INTO webhooks (url, events, description, secret, created_at, cursor)
                 VALUES (?1, ?2, ?3, ?4, ?5, (SELECT COALESCE(MAX(id), 0) FROM events))",
                params![url, events_json, description, secret, timestamp(now)],
            )
            .map_err(StoreError::from)?;
            let id = tx.last_insert_rowid();
            tx.commit().map_err(StoreError::from)?;
            id
        };
        self.webhook(id)?
            .ok_or_else(|| CreateWebhookError::Store(rusqlite::Error::QueryReturnedNoRows.into()))
    }

    /// Every webhook, oldest first.
    pub fn webhooks(&self) -> Result<Vec<WebhookView>, StoreError> {
        let conn = self.reader();
        let mut stmt = conn.prepare(&format!(
            "SELECT {WEBHOOK_COLUMNS} FROM webhooks w ORDER BY w.id LIMIT 10000"
        ))?;
        let rows = stmt.query_map([], webhook_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn webhook(&self, id: i64) -> Result<Option<WebhookView>, StoreError> {
        Ok(self
            .reader()
            .query_row(
                &format!("SELECT {WEBHOOK_COLUMNS} FROM webhooks w WHERE w.id = ?1"),
                params![id],
                webhook_from_row,
            )
            .optional()?)
    }

    /// Deletes a webhook and its deliveries; false if there was none.
    pub fn delete_webhook(&self, id: i64) -> Result<bool, StoreError> {
        let mut conn = self.writer();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute(
            "DELETE FROM webhook_deliveries WHERE webhook_id = ?1",
            params![id],
        )?;
        let deleted = tx.execute("DELETE FROM webhooks WHERE id = ?1", params![id])?;
        tx.commit()?;
        Ok(deleted > 0)
    }

    /// A page of a webhook's deliveries, newest first; `None` if there is
    /// no such webhook.
    pub fn webhook_deliveries(
        &self,
        webhook_id: i64,
        limit: u32,
        offset: u64,
    ) -> Result<Option<Vec<DeliveryView>>, StoreError> {
        let conn = self.reader();
        let exists: bool = conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM webhooks WHERE id = ?1)",
            params![webhook_id],
            |r| r.get(0),
        )?;
        if !exists {
            return Ok(None);
        }
        let mut stmt = conn.prepare(&format!(
            "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries d WHERE d.webhook_id = ?1
             ORDER BY d.event_id DESC LIMIT ?2 OFFSET ?3"
        ))?;
        let rows = stmt.query_map(
            params![webhook_id, limit, offset.min(i64::MAX as u64) as i64],
            delivery_from_row,
        )?;
        Ok(Some(rows.collect::<Result<_, _>>()?))
    }

    /// Makes a failed delivery pending again, due now, with its attempts
    /// counted from zero. It becomes its webhook's head if it is the oldest.
    pub fn retry_delivery(
        &self,
        webhook_id: i64,
        delivery_id: i64,
        now: DateTime<Utc>,
    ) -> Result<DeliveryView, RetryDeliveryError> {
        let mut conn = self.writer();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(StoreError::from)?;
        let found: Option<(String, bool)> = tx
            .query_row(
                "SELECT d.status, EXISTS (SELECT 1 FROM events e WHERE e.id = d.event_id)
                 FROM webhook_deliveries d WHERE d.id = ?1 AND d.webhook_id = ?2",
                params![delivery_id, webhook_id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(StoreError::from)?;
        let Some((status, event_kept)) = found else {
            return Err(RetryDeliveryError::NotFound);
        };
        let status = DeliveryStatus::parse(&status);
        if status != DeliveryStatus::Failed {
            return Err(RetryDeliveryError::NotFailed(status));
        }
        if !event_kept {
            return Err(RetryDeliveryError::EventGone);
        }
        tx.execute(
            "UPDATE webhook_deliveries SET status = 'pending', attempts = 0,
                 next_attempt_at = ?2, finished_at = NULL
             WHERE id = ?1",
            params![delivery_id, timestamp(now)],
        )
        .map_err(StoreError::from)?;
        let view = tx
            .query_row(
                &format!("SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries d WHERE d.id = ?1"),
                params![delivery_id],
                delivery_from_row,
            )
            .map_err(StoreError::from)?;
        tx.commit().map_err(StoreError::from)?;
        Ok(view)
    }

    /// Every webhook with its secret, for the dispatcher.
    pub fn webhook_targets(&self) -> Result<Vec<WebhookTarget>, StoreError> {
        let conn = self.reader();
        let mut stmt = conn.prepare("SELECT id, url, secret, events FROM webhooks ORDER BY id")?;
        let rows = stmt.query_map([], |r| {
            let events: String = r.get(3)?;
            Ok(WebhookTarget {
                id: r.get(0)?,
                url: r.get(1)?,
                secret: r.get(2)?,
                events: serde_json::from_str(&events).unwrap_or_default(),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The delivery `webhook` must finish next: its oldest pending one, or
    /// else a new one for the next event it wants (moving its cursor past
    /// the events it does not want). `None` when it is up to date.
    pub fn webhook_head(
        &self,
        webhook: &WebhookTarget,
        now: DateTime<Utc>,
    ) -> Result<Option<DueDelivery>, StoreError> {
        let mut conn = self.writer();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let pending = tx
            .query_row(
                "SELECT d.id, d.attempts, d.next_attempt_at,
                         e.id, e.kind, e.subject, e.occurred_at, e.data
                     FROM webhook_deliveries d LEFT JOIN events e ON e.id = d.event_id
                     WHERE d.webhook_id = ?1 AND d.status = 'pending'
                     ORDER BY d.event_id LIMIT 1",
                params![webhook.id],
                |r| {
                    let delivery_id: i64 = r.get(0)?;
                    let attempts = r.get::<_, i64>(1)? as u32;
                    let next: Option<String> = r.get(2)?;
                    let event = match r.get::<_, Option<i64>>(3)? {
                        Some(_) => Some(event_from_row_at(r, 3)?),
                        None => None,
                    };
                    Ok((delivery_id, attempts, next, event))
                },
            )
            .optional()?;
        if let Some((delivery_id, attempts, next, event)) = pending {
            let due = match event {
                Some(event) => Some(DueDelivery {
                    delivery_id,
                    webhook_id: webhook.id,
                    event,
                    attempts,
                    next_attempt_at: next.as_deref().map_or(now, parse_time),
                }),
                None => {
                    // Cannot happen while retention honours pending rows;
                    // a head that can never be sent must not block the rest.
                    tx.execute(
                        "UPDATE webhook_deliveries SET status = 'failed', next_attempt_at = NULL,
                             last_error = 'the event is no longer kept', finished_at = ?2
                         WHERE id = ?1",
                        params![delivery_id, timestamp(now)],
                    )?;
                    None
                }
            };
            tx.commit()?;
            return Ok(due);
        }
        let mut cursor: i64 = tx.query_row(
            "SELECT cursor FROM webhooks WHERE id = ?1",
            params![webhook.id],
            |r| r.get(0),
        )?;
        loop {
            let batch: Vec<Event> = {
                let mut stmt = tx.prepare(&format!(
                    "SELECT {EVENT_COLUMNS} FROM events WHERE id > ?1 ORDER BY id LIMIT ?2"
                ))?;
                let rows = stmt.query_map(params![cursor, HEAD_SCAN_EVENTS], event_from_row)?;
                rows.collect::<Result<_, _>>()?
            };
            let Some(last) = batch.last().map(|e| e.id) else {
                break;
            };
            if let Some(event) = batch.into_iter().find(|e| webhook.wants(&e.kind)) {
                tx.execute(
                    "INSERT INTO webhook_deliveries
                         (webhook_id, event_id, status, attempts, next_attempt_at, created_at)
                     VALUES (?1, ?2, 'pending', 0, ?3, ?3)",
                    params![webhook.id, event.id, timestamp(now)],
                )?;
                let delivery_id = tx.last_insert_rowid();
                tx.execute(
                    "UPDATE webhooks SET cursor = ?2 WHERE id = ?1",
                    params![webhook.id, event.id],
                )?;
                tx.commit()?;
                return Ok(Some(DueDelivery {
                    delivery_id,
                    webhook_id: webhook.id,
                    event,
                    attempts: 0,
                    next_attempt_at: now,
                }));
            }
            cursor = last;
        }
        tx.execute(
            "UPDATE webhooks SET cursor = ?2 WHERE id = ?1 AND cursor < ?2",
            params![webhook.id, cursor],
        )?;
        tx.commit()?;
        Ok(None)
    }

    /// Records an attempt of a delivery. A delivery whose webhook was
    /// deleted meanwhile is gone, and so is its record.
    pub fn record_attempt(
        &self,
        delivery_id: i64,
        outcome: &AttemptOutcome,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let (status, code, error, next, finished) = match outcome {
            AttemptOutcome::Delivered { status_code } => (
                DeliveryStatus::Delivered,
                Some(*status_code),
                None,
                None,
                Some(timestamp(now)),
            ),
            AttemptOutcome::Retry {
                status_code,
                error,
                next_attempt_at,
            } => (
                DeliveryStatus::Pending,
                *status_code,
                Some(truncate(error, MAX_DELIVERY_ERROR_CHARS)),
                Some(timestamp(*next_attempt_at)),
                None,
            ),
            AttemptOutcome::Failed { status_code, error } => (
                DeliveryStatus::Failed,
                *status_code,
                Some(truncate(error, MAX_DELIVERY_ERROR_CHARS)),
                None,
                Some(timestamp(now)),
            ),
        };
        self.writer().execute(
            "UPDATE webhook_deliveries SET status = ?2, attempts = attempts + 1,
                 last_status_code = ?3, last_error = ?4, last_attempt_at = ?5,
                 next_attempt_at = ?6, finished_at = ?7
             WHERE id = ?1 AND status = 'pending'",
            params![
                delivery_id,
                status.as_str(),
                code,
                error,
                timestamp(now),
                next,
                finished
            ],
        )?;
        Ok(())
    }

    /// Deletes events older than `retention_days` and beyond the newest
    /// `max_events`, except those a webhook has not finished with, and the
    /// finished deliveries of deleted events.
    pub fn prune_events(
        &self,
        now: DateTime<Utc>,
        retention_days: u32,
        max_events: u64,
    ) -> Result<Pruned, StoreError> {
        let cutoff = timestamp(now - Duration::days(i64::from(retention_days)));
        let mut conn = self.writer();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        // Everything up to `floor` is finished by every webhook.
        let floor: i64 = tx.query_row(
            "SELECT MIN(
                 COALESCE((SELECT MIN(cursor) FROM webhooks), 9223372036854775807),
                 COALESCE((SELECT MIN(event_id) - 1 FROM webhook_deliveries
                           WHERE status = 'pending'), 9223372036854775807))",
            [],
            |r| r.get(0),
        )?;
        // Ids are not dense (they start from the time), so the bound is
        // the id of the newest event beyond `max_events`.
        let keep_from: i64 = tx.query_row(
            "SELECT COALESCE((SELECT id FROM events ORDER BY id DESC LIMIT 1 OFFSET ?1), 0)",
            [max_events.min(i64::MAX as u64) as i64],
            |r| r.get(0),
        )?;
        let events = tx.execute(
            "DELETE FROM events WHERE id <= ?1 AND (occurred_at < ?2 OR id <= ?3)",
            params![floor, cutoff, keep_from],
        )?;
        let deliveries = tx.execute(
            "DELETE FROM webhook_deliveries WHERE status <> 'pending'
                 AND NOT EXISTS (SELECT 1 FROM events e WHERE e.id = webhook_deliveries.event_id)",
            [],
        )?;
        tx.commit()?;
        Ok(Pruned {
            events: events as u64,
            deliveries: deliveries as u64,
        })
    }

    /// Sizes of the outbox, for `/metrics`.
    pub fn event_stats(&self) -> Result<EventStats, StoreError> {
        Ok(self.reader().query_row(
            "SELECT (SELECT COUNT(*) FROM events), (SELECT COALESCE(MAX(id), 0) FROM events),
                    (SELECT COUNT(*) FROM webhooks),
                    (SELECT COUNT(*) FROM webhook_deliveries WHERE status = 'pending'),
                    (SELECT COUNT(*) FROM webhook_deliveries WHERE status = 'failed')",
            [],
            |r| {
                Ok(EventStats {
                    events: r.get::<_, i64>(0)? as u64,
                    newest_event_id: r.get(1)?,
                    webhooks: r.get::<_, i64>(2)? as u64,
                    deliveries_pending: r.get::<_, i64>(3)? as u64,
                    deliveries_failed: r.get::<_, i64>(4)? as u64,
                })
            },
        )?)
    }
}

/// [`event_from_row`] for columns starting at `first`.
fn event_from_row_at(row: &rusqlite::Row<'_>, first: usize) -> rusqlite::Result<Event> {
    let data: String = row.get(first + 4)?;
    Ok(Event {
        id: row.get(first)?,
        kind: row.get(first + 1)?,
        subject: row.get(first + 2)?,
        occurred_at: row.get(first + 3)?,
        data: serde_json::from_str(&data).unwrap_or(serde_json::Value::Null),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("central.db")).unwrap();
        (dir, store)
    }

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    /// Events of `kind` that occurred on `day` (of March 2026).
    fn events_on(store: &Store, day: u32, kinds: &[&str]) -> Vec<i64> {
        let mut conn = store.writer();
        let tx = conn.transaction().unwrap();
        let ids = kinds
            .iter()
            .map(|kind| {
                let when = at(&format!("2026-03-{day:02}T08:00:00Z"));
                enqueue_at(&tx, kind, "s", &json!({}), when).unwrap()
            })
            .collect();
        tx.commit().unwrap();
        ids
    }

    fn kept(store: &Store) -> Vec<i64> {
        store
            .events_after(0, None, 1000)
            .unwrap()
            .iter()
            .map(|e| e.id)
            .collect()
    }

    #[test]
    fn an_event_exists_only_when_its_transaction_commits() {
        let (_dir, store) = store();
        {
            let mut conn = store.writer();
            let tx = conn.transaction().unwrap();
            enqueue(&tx, "stock.corrected", "m-1", &json!({"kg": 5})).unwrap();
            // Dropped without commit: the change and its event roll back.
        }
        assert!(kept(&store).is_empty());
        {
            let mut conn = store.writer();
            let tx = conn.transaction().unwrap();
            enqueue(&tx, "stock.corrected", "m-2", &json!({"kg": 5})).unwrap();
            tx.commit().unwrap();
        }
        let events = store.events_after(0, None, 10).unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].subject, "m-2");
        assert_eq!(events[0].data, json!({"kg": 5}));
        let document: serde_json::Value = serde_json::from_slice(&events[0].to_bytes()).unwrap();
        let keys: Vec<&str> = document
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys.len(), 5, "{document}");
        for key in ["id", "kind", "subject", "occurred_at", "data"] {
            assert!(keys.contains(&key), "{key} in {document}");
        }
    }

    #[test]
    fn the_feed_pages_by_id_and_filters_by_kind() {
        let (_dir, store) = store();
        let ids = events_on(
            &store,
            1,
            &["weighing.completed", "device.online", "weighing.completed"],
        );
        let page = store.events_after(0, None, 2).unwrap();
        assert_eq!(page.iter().map(|e| e.id).collect::<Vec<_>>(), ids[..2]);
        let rest = store.events_after(page[1].id, None, 2).unwrap();
        assert_eq!(rest.iter().map(|e| e.id).collect::<Vec<_>>(), ids[2..]);
        let completed = store
            .events_after(0, Some("weighing.completed"), 10)
            .unwrap();
        assert_eq!(
            completed.iter().map(|e| e.id).collect::<Vec<_>>(),
            [ids[0], ids[2]]
        );
        assert_eq!(store.newest_event_id().unwrap(), ids[2]);
    }

    #[test]
    fn retention_never_removes_what_a_webhook_has_not_finished_with() {
        let (_dir, store) = store();
        let now = at("2026-05-01T00:00:00Z");
        // Old events before any webhook existed: deleted by age.
        let before = events_on(&store, 1, &["weighing.completed"; 3]);
        let hook = store
            .create_webhook(
                "http://h.example/",
                &["weighing.completed".to_owned()],
                None,
                "s",
                50,
                now,
            )
            .unwrap();
        assert_eq!(hook.cursor, before[2], "a new webhook starts at the newest");
        let after = events_on(
            &store,
            2,
            &["weighing.completed", "device.online", "weighing.completed"],
        );
        let target = store.webhook_targets().unwrap().remove(0);

        // The webhook has taken on the first event and not finished it.
        let head = store.webhook_head(&target, now).unwrap().unwrap();
        assert_eq!(head.event.id, after[0]);
        let pruned = store.prune_events(now, 30, 100_000).unwrap();
        assert_eq!(pruned.events, 3);
        assert_eq!(kept(&store), after, "undelivered events stay, however old");

        // Delivered: the next one is the head; the delivered one may go.
        store
            .record_attempt(
                head.delivery_id,
                &AttemptOutcome::Delivered { status_code: 204 },
                now,
            )
            .unwrap();
        let next = store.webhook_head(&target, now).unwrap().unwrap();
        assert_eq!(next.event.id, after[2], "device.online is not wanted");
        store.prune_events(now, 30, 100_000).unwrap();
        assert_eq!(kept(&store), [after[2]]);

        // Failed for good counts as finished.
        store
            .record_attempt(
                next.delivery_id,
                &AttemptOutcome::Failed {
                    status_code: Some(500),
                    error: "HTTP 500".into(),
                },
                now,
            )
            .unwrap();
        assert_eq!(store.webhook_head(&target, now).unwrap(), None);
        let pruned = store.prune_events(now, 30, 100_000).unwrap();
        assert_eq!((pruned.events, pruned.deliveries), (1, 1));
        assert!(kept(&store).is_empty());
        assert!(
            store
                .webhook_deliveries(hook.id, 10, 0)
                .unwrap()
                .unwrap()
                .is_empty(),
            "deliveries go with their events"
        );
    }

    #[test]
    fn retention_keeps_at_most_max_events_and_the_recent_ones() {
        let (_dir, store) = store();
        let old = events_on(&store, 1, &["stock.corrected"; 5]);
        let recent = events_on(&store, 20, &["stock.corrected"; 5]);
        let now = at("2026-03-25T00:00:00Z");
        // Within 30 days everything stays, but only 7 may.
        store.prune_events(now, 30, 7).unwrap();
        let mut expected = old[3..].to_vec();
        expected.extend(&recent);
        assert_eq!(kept(&store), expected);
        // Ten days: only the recent ones.
        store.prune_events(now, 10, 7).unwrap();
        assert_eq!(kept(&store), recent);
    }

    #[test]
    fn heads_skip_unwanted_events_and_a_retried_delivery_goes_first() {
        let (_dir, store) = store();
        let now = at("2026-03-02T08:00:00Z");
        let hook = store
            .create_webhook(
                "http://h.example/",
                &[ALL_KINDS.to_owned()],
                Some("all"),
                "s",
                50,
                now,
            )
            .unwrap();
        assert_eq!(
            store
                .create_webhook(
                    "http://h.example/",
                    &[ALL_KINDS.to_owned()],
                    None,
                    "s",
                    1,
                    now
                )
                .unwrap_err()
                .to_string(),
            "at most 1 webhooks may exist"
        );
        let ids = events_on(&store, 2, &["weighing.completed", "weighing.cancelled"]);
        let target = store.webhook_targets().unwrap().remove(0);
        assert!(!format!("{target:?}").contains("secret: "), "{target:?}");
        let first = store.webhook_head(&target, now).unwrap().unwrap();
        let failed = AttemptOutcome::Failed {
            status_code: None,
            error: "refused".into(),
        };
        store
            .record_attempt(first.delivery_id, &failed, now)
            .unwrap();
        let second = store.webhook_head(&target, now).unwrap().unwrap();
        assert_eq!(second.event.id, ids[1]);
        assert!(matches!(
            store.retry_delivery(hook.id, second.delivery_id, now),
            Err(RetryDeliveryError::NotFailed(DeliveryStatus::Pending))
        ));
        assert!(matches!(
            store.retry_delivery(hook.id + 1, first.delivery_id, now),
            Err(RetryDeliveryError::NotFound)
        ));
        let retried = store
            .retry_delivery(hook.id, first.delivery_id, now)
            .unwrap();
        assert_eq!(
            (retried.status, retried.attempts),
            (DeliveryStatus::Pending, 0)
        );
        let head = store.webhook_head(&target, now).unwrap().unwrap();
        assert_eq!(head.event.id, ids[0], "the older event goes first again");
        let view = store.webhook(hook.id).unwrap().unwrap();
        assert_eq!(
            view.deliveries,
            DeliveryCounts {
                pending: 2,
                delivered: 0,
                failed: 0
            }
        );
        assert!(store.delete_webhook(hook.id).unwrap());
        assert!(!store.delete_webhook(hook.id).unwrap());
        assert_eq!(store.webhook_deliveries(hook.id, 10, 0).unwrap(), None);
    }
}
