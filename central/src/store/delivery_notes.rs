//! Delivery notes (Lieferscheine): issued from a complete, uncancelled
//! weighing, numbered without gaps per year (`LS-2026-000001`), cancelled
//! but never deleted. A note keeps a copy of what it certified, so a later
//! change of master data does not change an issued note.

use chrono::{Datelike, SecondsFormat, Utc};
use rusqlite::{OptionalExtension, TransactionBehavior, params};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use valeo_records::ticket::TareSource;

use super::{Store, StoreError, WeighingView};

pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS delivery_notes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    number TEXT NOT NULL UNIQUE,
    year INTEGER NOT NULL,
    year_seq INTEGER NOT NULL,
    weighing_id INTEGER NOT NULL,
    status TEXT NOT NULL,
    created_at TEXT NOT NULL,
    created_by TEXT NOT NULL,
    remarks TEXT,
    cancelled_at TEXT,
    cancelled_by TEXT,
    cancel_reason TEXT,
    partner_id TEXT,
    weighing TEXT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS delivery_notes_one_issued
    ON delivery_notes (weighing_id) WHERE status = 'issued';
CREATE INDEX IF NOT EXISTS delivery_notes_by_time ON delivery_notes (created_at);
";

/// Longest remark or cancel reason, in characters.
pub const MAX_REMARK_CHARS: usize = 500;

/// A delivery note as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct DeliveryNote {
    pub id: i64,
    /// `LS-<year>-<six digits>`, without gaps within a year.
    pub number: String,
    pub weighing_id: i64,
    /// `issued` or `cancelled`.
    pub status: String,
    pub created_at: String,
    pub created_by: String,
    pub remarks: Option<String>,
    pub cancelled_at: Option<String>,
    pub cancelled_by: Option<String>,
    pub cancel_reason: Option<String>,
    pub device_id: String,
    pub ticket_no: u64,
    pub plate: String,
    pub direction: String,
    #[schema(value_type = Option<Object>)]
    pub partner: Option<valeo_records::Ref>,
    #[schema(value_type = Option<Object>)]
    pub article: Option<valeo_records::Ref>,
    #[schema(value_type = Option<Object>)]
    pub lot: Option<valeo_records::Ref>,
    #[schema(value_type = Option<Object>)]
    pub location: Option<valeo_records::Ref>,
    pub contract_id: Option<String>,
    pub gross: Option<f64>,
    pub tare: Option<f64>,
    pub net: Option<f64>,
    pub unit: String,
    pub legal_for_trade: bool,
    /// Alibi numbers of the two weighings.
    pub alibi_ids: Vec<String>,
    pub weighed_at: String,
}

/// A request to issue a note.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"weighing_id": 42, "remarks": "Abladestelle Silo 3"}))]
pub struct NewDeliveryNote {
    pub weighing_id: i64,
    #[serde(default)]
    pub remarks: Option<String>,
}

/// A request to cancel a note.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"reason": "falscher Kunde"}))]
pub struct CancelDeliveryNote {
    pub reason: String,
}

/// Filters of the note list.
#[derive(Debug, Clone, Default)]
pub struct NoteFilter {
    pub from: Option<String>,
    pub to: Option<String>,
    pub partner_id: Option<String>,
    pub status: Option<String>,
    pub weighing_id: Option<i64>,
    pub limit: u32,
    pub offset: u64,
}

/// Why a note was not issued or cancelled.
#[derive(Debug, thiserror::Error)]
pub enum NoteError {
    #[error("no delivery note {0}")]
    NotFound(i64),
    #[error("no weighing {0}")]
    NoWeighing(i64),
    /// The weighing or note is not in a state that allows it.
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<rusqlite::Error> for NoteError {
    fn from(e: rusqlite::Error) -> Self {
        NoteError::Store(e.into())
    }
}

fn note_by_id(conn: &rusqlite::Connection, id: i64) -> rusqlite::Result<DeliveryNote> {
    conn.query_row(
        &format!("SELECT {NOTE_COLUMNS} FROM delivery_notes WHERE id = ?1"),
        [id],
        note_from_row,
    )
}

const NOTE_COLUMNS: &str = "id, number, weighing_id, status, created_at, created_by, remarks,
    cancelled_at, cancelled_by, cancel_reason, weighing";

fn note_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<DeliveryNote> {
    let weighing: String = r.get(10)?;
    let w: WeighingView = serde_json::from_str(&weighing).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(10, rusqlite::types::Type::Text, Box::new(e))
    })?;
    let alibi_ids = [
        w.first.alibi_id.clone(),
        w.second.as_ref().and_then(|s| s.alibi_id.clone()),
    ]
    .into_iter()
    .flatten()
    .collect();
    Ok(DeliveryNote {
        id: r.get(0)?,
        number: r.get(1)?,
        weighing_id: r.get(2)?,
        status: r.get(3)?,
        created_at: r.get(4)?,
        created_by: r.get(5)?,
        remarks: r.get(6)?,
        cancelled_at: r.get(7)?,
        cancelled_by: r.get(8)?,
        cancel_reason: r.get(9)?,
        weighed_at: match (&w.second, w.tare_source) {
            (Some(second), Some(TareSource::Weighed) | None) => second.weighed_at.clone(),
            _ => w.first.weighed_at.clone(),
        },
        device_id: w.device_id,
        ticket_no: w.ticket_no,
        plate: w.plate,
        direction: w.direction,
        partner: w.partner,
        article: w.article,
        lot: w.lot,
        location: w.location,
        contract_id: w.contract_id,
        gross: w.gross,
        tare: w.tare,
        net: w.net,
        unit: w.unit,
        legal_for_trade: w.legal_for_trade,
        alibi_ids,
    })
}

fn check_text(field: &str, text: Option<&str>, required: bool) -> Result<(), NoteError> {
    match text.map(str::trim) {
        None | Some("") if required => Err(NoteError::Invalid(format!("{field}: required"))),
        Some(t) if t.chars().count() > MAX_REMARK_CHARS => Err(NoteError::Invalid(format!(
            "{field}: longer than {MAX_REMARK_CHARS} characters"
        ))),
        _ => Ok(()),
    }
}

/// Cancels the issued note of a weighing the box cancelled: the note
/// certified a weighing that no longer stands. Returns the notes' ids and
/// numbers, for the integration events.
pub(super) fn cancel_for_cancelled_weighing(
    tx: &rusqlite::Transaction<'_>,
    weighing_id: i64,
    at: &str,
    actor: &str,
    reason: &str,
) -> rusqlite::Result<Vec<(i64, String)>> {
    let mut stmt = tx.prepare(
        "UPDATE delivery_notes SET status = 'cancelled', cancelled_at = ?2, cancelled_by = ?3,
             cancel_reason = ?4
         WHERE weighing_id = ?1 AND status = 'issued' RETURNING id, number",
    )?;
    let rows = stmt.query_map(
        params![
            weighing_id,
            at,
            actor,
            format!("the weighing was cancelled at the box: {reason}")
        ],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    rows.collect()
}

impl Store {
    /// Issues the note of a complete, uncancelled weighing that has none.
    pub fn create_delivery_note(
        &self,
        request: &NewDeliveryNote,
        actor: &str,
    ) -> Result<DeliveryNote, NoteError> {
        check_text("remarks", request.remarks.as_deref(), false)?;
        let weighing = self
            .get_weighing(request.weighing_id)?
            .ok_or(NoteError::NoWeighing(request.weighing_id))?;
        if weighing.status != "complete" {
            return Err(NoteError::Conflict(format!(
                "weighing {} is {}, only a complete weighing gets a delivery note",
                weighing.id, weighing.status
            )));
        }
        let mut conn = self.writer();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        // The status is read again inside the transaction: a cancellation
        // may have arrived from the box since.
        let status: String = tx.query_row(
            "SELECT status FROM weighings WHERE id = ?1",
            [weighing.id],
            |r| r.get(0),
        )?;
        if status != "complete" {
            return Err(NoteError::Conflict(format!(
                "weighing {} is {status}, only a complete weighing gets a delivery note",
                weighing.id
            )));
        }
        let existing: Option<String> = tx
            .query_row(
                "SELECT number FROM delivery_notes WHERE weighing_id = ?1 AND status = 'issued'",
                [weighing.id],
                |r| r.get(0),
            )
            .optional()?;
        if let Some(number) = existing {
            return Err(NoteError::Conflict(format!(
                "weighing {} already has delivery note {number}",
                weighing.id
            )));
        }
        let now = Utc::now();
        let year = now.year();
        let seq: i64 = tx.query_row(
            "SELECT COALESCE(MAX(year_seq), 0) + 1 FROM delivery_notes WHERE year = ?1",
            [year],
            |r| r.get(0),
        )?;
        let number = format!("LS-{year}-{seq:06}");
        let at = now.to_rfc3339_opts(SecondsFormat::Millis, true);
        let remarks = request
            .remarks
            .as_deref()
            .map(str::trim)
            .filter(|r| !r.is_empty());
        tx.execute(
            "INSERT INTO delivery_notes (number, year, year_seq, weighing_id, status, created_at,
                 created_by, remarks, partner_id, weighing)
             VALUES (?1, ?2, ?3, ?4, 'issued', ?5, ?6, ?7, ?8, ?9)",
            params![
                number,
                year,
                seq,
                weighing.id,
                at,
                actor,
                remarks,
                weighing.partner.as_ref().map(|p| &p.id),
                serde_json::to_string(&weighing).unwrap_or_default()
            ],
        )?;
        let id = tx.last_insert_rowid();
        let note = note_by_id(&tx, id)?;
        super::events::enqueue(
            &tx,
            "delivery_note.created",
            &id.to_string(),
            &serde_json::to_value(&note).unwrap_or_default(),
        )?;
        tx.commit()?;
        Ok(note)
    }

    /// Cancels an issued note; the weighing may then get a new one.
    pub fn cancel_delivery_note(
        &self,
        id: i64,
        request: &CancelDeliveryNote,
        actor: &str,
    ) -> Result<DeliveryNote, NoteError> {
        check_text("reason", Some(&request.reason), true)?;
        let mut conn = self.writer();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let status: Option<String> = tx
            .query_row(
                "SELECT status FROM delivery_notes WHERE id = ?1",
                [id],
                |r| r.get(0),
            )
            .optional()?;
        match status.as_deref() {
            None => return Err(NoteError::NotFound(id)),
            Some("issued") => {}
            Some(other) => {
                return Err(NoteError::Conflict(format!(
                    "delivery note {id} is {other}"
                )));
            }
        }
        let at = Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true);
        tx.execute(
            "UPDATE delivery_notes SET status = 'cancelled', cancelled_at = ?2, cancelled_by = ?3,
                 cancel_reason = ?4 WHERE id = ?1",
            params![id, at, actor, request.reason.trim()],
        )?;
        let note = note_by_id(&tx, id)?;
        super::events::enqueue(
            &tx,
            "delivery_note.cancelled",
            &id.to_string(),
            &serde_json::json!({"id": id, "number": note.number, "reason": note.cancel_reason,
                "cancelled_by": actor}),
        )?;
        tx.commit()?;
        Ok(note)
    }

    pub fn get_delivery_note(&self, id: i64) -> Result<Option<DeliveryNote>, StoreError> {
        Ok(self
            .reader()
            .query_row(
                &format!("SELECT {NOTE_COLUMNS} FROM delivery_notes WHERE id = ?1"),
                [id],
                note_from_row,
            )
            .optional()?)
    }

    /// One page of notes, newest first, and how many match.
    pub fn list_delivery_notes(
        &self,
        filter: &NoteFilter,
    ) -> Result<(Vec<DeliveryNote>, u64), StoreError> {
        let conn = self.reader();
        let clause = "(?1 IS NULL OR created_at >= ?1) AND (?2 IS NULL OR created_at < ?2)
             AND (?3 IS NULL OR partner_id = ?3) AND (?4 IS NULL OR status = ?4)
             AND (?5 IS NULL OR weighing_id = ?5)";
        let total: i64 = conn.query_row(
            &format!("SELECT COUNT(*) FROM delivery_notes WHERE {clause}"),
            params![
                filter.from,
                filter.to,
                filter.partner_id,
                filter.status,
                filter.weighing_id
            ],
            |r| r.get(0),
        )?;
        let mut stmt = conn.prepare(&format!(
            "SELECT {NOTE_COLUMNS} FROM delivery_notes WHERE {clause}
             ORDER BY id DESC LIMIT ?6 OFFSET ?7"
        ))?;
        let rows = stmt.query_map(
            params![
                filter.from,
                filter.to,
                filter.partner_id,
                filter.status,
                filter.weighing_id,
                i64::from(filter.limit),
                filter.offset.min(i64::MAX as u64) as i64
            ],
            note_from_row,
        )?;
        Ok((rows.collect::<Result<_, _>>()?, total as u64))
    }
}
