//! Stock: movements per article and storage location, from completed
//! weighings (intake adds, outgoing takes), their cancellations (a
//! reversing movement, never a deletion) and corrections booked by office
//! staff. Stock is the sum of the movements.

use chrono::{SecondsFormat, Utc};
use rusqlite::{OptionalExtension, Transaction, TransactionBehavior, params};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use valeo_records::{Direction, Ref, Ticket};

use super::{Store, StoreError};

pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS stock_movements (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at TEXT NOT NULL,
    article_id TEXT NOT NULL,
    article_name TEXT NOT NULL,
    location_id TEXT,
    location_name TEXT,
    quantity_kg REAL NOT NULL,
    reason TEXT NOT NULL,
    weighing_id INTEGER,
    note TEXT,
    created_by TEXT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS stock_movements_once
    ON stock_movements (weighing_id, reason) WHERE weighing_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS stock_movements_by_article ON stock_movements (article_id, at);
";

/// Most stock levels (article × location) in one answer.
pub const MAX_STOCK_LEVELS: u32 = 10_000;

/// Largest correction, kilograms either way.
pub const MAX_CORRECTION_KG: f64 = 1e9;

/// An id with its name, as the API shows references.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Named {
    pub id: String,
    pub name: String,
}

/// Stock of one article at one location (none: not assigned to one).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct StockLevel {
    pub article: Named,
    pub location: Option<Named>,
    pub quantity_kg: f64,
}

/// One booking.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct StockMovement {
    pub id: i64,
    pub at: String,
    pub article: Named,
    pub location: Option<Named>,
    pub quantity_kg: f64,
    /// `weighing`, `cancellation` or `correction`.
    pub reason: String,
    pub weighing_id: Option<i64>,
    pub note: Option<String>,
    pub created_by: String,
}

/// A correction as office staff book it.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"article_id": "A-WHEAT", "location_id": "SILO-3", "quantity_kg": -1200.0, "note": "Inventur Silo 3"}))]
pub struct NewCorrection {
    pub article_id: String,
    #[serde(default)]
    pub location_id: Option<String>,
    /// Positive adds, negative takes away.
    pub quantity_kg: f64,
    pub note: String,
}

/// Filters of the movement list.
#[derive(Debug, Clone, Default)]
pub struct MovementFilter {
    pub article_id: Option<String>,
    pub location_id: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub limit: u32,
    pub offset: u64,
}

fn named(id: Option<String>, name: Option<String>) -> Option<Named> {
    id.map(|id| Named {
        name: name.unwrap_or_else(|| id.clone()),
        id,
    })
}

/// Books the stock change of a weighing that just completed: intake adds
/// its net weight, outgoing takes it away. Weighings without an article or
/// a net weight change no stock.
pub(super) fn book_weighing(
    tx: &Transaction<'_>,
    weighing_id: i64,
    ticket: &Ticket,
) -> rusqlite::Result<()> {
    let (Some(article), Some(net)) = (&ticket.article, &ticket.net) else {
        return Ok(());
    };
    let sign = match ticket.direction {
        Direction::Intake => 1.0,
        Direction::Outgoing => -1.0,
    };
    insert(
        tx,
        super::weighings::weighed_at(ticket),
        article,
        ticket.location.as_ref(),
        sign * net.to_kg_f64(),
        "weighing",
        Some(weighing_id),
        &format!("system:device:{}", ticket.device_id),
    )
}

/// Reverses the booking of a weighing that was cancelled after it
/// completed.
pub(super) fn reverse_weighing(
    tx: &Transaction<'_>,
    weighing_id: i64,
    at: &str,
    actor: &str,
) -> rusqlite::Result<()> {
    let booked: Option<(Ref, Option<Ref>, f64)> = tx
        .query_row(
            "SELECT article_id, article_name, location_id, location_name, quantity_kg
             FROM stock_movements WHERE weighing_id = ?1 AND reason = 'weighing'",
            [weighing_id],
            |r| {
                let location = named(r.get(2)?, r.get(3)?).map(|n| Ref {
                    id: n.id,
                    name: n.name,
                });
                Ok((
                    Ref {
                        id: r.get(0)?,
                        name: r.get(1)?,
                    },
                    location,
                    r.get(4)?,
                ))
            },
        )
        .optional()?;
    let Some((article, location, quantity)) = booked else {
        return Ok(());
    };
    insert(
        tx,
        at,
        &article,
        location.as_ref(),
        -quantity,
        "cancellation",
        Some(weighing_id),
        actor,
    )
}

#[allow(
    clippy::too_many_arguments,
    reason = "one column each; the callers name them"
)]
fn insert(
    tx: &Transaction<'_>,
    at: &str,
    article: &Ref,
    location: Option<&Ref>,
    quantity_kg: f64,
    reason: &str,
    weighing_id: Option<i64>,
    actor: &str,
) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO stock_movements (at, article_id, article_name, location_id, location_name,
             quantity_kg, reason, weighing_id, note, created_by)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, NULL, ?9) ON CONFLICT DO NOTHING",
        params![
            at,
            article.id,
            article.name,
            location.map(|l| &l.id),
            location.map(|l| &l.name),
            quantity_kg,
            reason,
            weighing_id,
            actor
        ],
    )?;
    Ok(())
}

/// Why a correction was refused.
#[derive(Debug, thiserror::Error)]
pub enum CorrectionError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Store {
    /// Stock per article and location, of one article or location or all.
    pub fn stock(
        &self,
        article_id: Option<&str>,
        location_id: Option<&str>,
    ) -> Result<Vec<StockLevel>, StoreError> {
        let conn = self.reader();
        let mut stmt = conn.prepare(
            "SELECT article_id, MAX(article_name), location_id, MAX(location_name), SUM(quantity_kg)
             FROM stock_movements
             WHERE (?1 IS NULL OR article_id = ?1) AND (?2 IS NULL OR location_id = ?2)
             GROUP BY article_id, location_id ORDER BY article_id, location_id LIMIT ?3",
        )?;
        let rows = stmt.query_map(params![article_id, location_id, MAX_STOCK_LEVELS], |r| {
            Ok(StockLevel {
                article: Named {
                    id: r.get(0)?,
                    name: r.get(1)?,
                },
                location: named(r.get(2)?, r.get(3)?),
                quantity_kg: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// One page of movements, newest first, and how many match.
    pub fn stock_movements(
        &self,
        filter: &MovementFilter,
    ) -> Result<(Vec<StockMovement>, u64), StoreError> {
        let conn = self.reader();
        let clause = "(?1 IS NULL OR article_id = ?1) AND (?2 IS NULL OR location_id = ?2)
             AND (?3 IS NULL OR at >= ?3) AND (?4 IS NULL OR at < ?4)";
        let args = params![
            filter.article_id,
            filter.location_id,
            filter.from,
            filter.to
        ];
        let total: i64 = conn.query_row(
            &format!("SELECT COUNT(*) FROM stock_movements WHERE {clause}"),
            args,
            |r| r.get(0),
        )?;
        let mut stmt = conn.prepare(&format!(
            "SELECT id, at, article_id, article_name, location_id, location_name, quantity_kg,
                 reason, weighing_id, note, created_by
             FROM stock_movements WHERE {clause} ORDER BY id DESC LIMIT ?5 OFFSET ?6"
        ))?;
        let rows = stmt.query_map(
            params![
                filter.article_id,
                filter.location_id,
                filter.from,
                filter.to,
                i64::from(filter.limit),
                filter.offset.min(i64::MAX as u64) as i64
            ],
            |r| {
                Ok(StockMovement {
                    id: r.get(0)?,
                    at: r.get(1)?,
                    article: Named {
                        id: r.get(2)?,
                        name: r.get(3)?,
                    },
                    location: named(r.get(4)?, r.get(5)?),
                    quantity_kg: r.get(6)?,
                    reason: r.get(7)?,
                    weighing_id: r.get(8)?,
                    note: r.get(9)?,
                    created_by: r.get(10)?,
                })
            },
        )?;
        Ok((rows.collect::<Result<_, _>>()?, total as u64))
    }

    /// Books a correction against articles and locations that exist in the
    /// master data.
    pub fn book_correction(
        &self,
        correction: &NewCorrection,
        actor: &str,
    ) -> Result<StockMovement, CorrectionError> {
        let q = correction.quantity_kg;
        if !q.is_finite() || q == 0.0 || q.abs() > MAX_CORRECTION_KG {
            return Err(CorrectionError::Invalid(format!(
                "quantity_kg: must be a non-zero number of kilograms of at most {MAX_CORRECTION_KG} either way"
            )));
        }
        let note = correction.note.trim();
        if note.is_empty() || note.chars().count() > crate::master_data::MAX_TEXT_CHARS {
            return Err(CorrectionError::Invalid(format!(
                "note: say why (1 to {} characters)",
                crate::master_data::MAX_TEXT_CHARS
            )));
        }
        let mut conn = self.writer();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(StoreError::from)?;
        let name_of = |kind: &str, id: &str| -> Result<String, CorrectionError> {
            let name: Option<Option<String>> = tx
                .query_row(
                    "SELECT json_extract(body, '$.name') FROM master_entities
                     WHERE kind = ?1 AND id = ?2",
                    params![kind, id],
                    |r| r.get(0),
                )
                .optional()
                .map_err(StoreError::from)?;
            name.map(|n| n.unwrap_or_else(|| id.to_owned()))
                .ok_or_else(|| {
                    CorrectionError::Invalid(format!(
                        "{}_id: no {} {id:?} in the master data",
                        &kind[..kind.len() - 1],
                        &kind[..kind.len() - 1]
                    ))
                })
        };
        let article = Ref {
            name: name_of("articles", &correction.article_id)?,
            id: correction.article_id.clone(),
        };
        let location = match &correction.location_id {
            Some(id) => Some(Ref {
                name: name_of("locations", id)?,
                id: id.clone(),
            }),
            None => None,
        };
        let at = Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true);
        tx.execute(
            "INSERT INTO stock_movements (at, article_id, article_name, location_id, location_name,
                 quantity_kg, reason, weighing_id, note, created_by)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'correction', NULL, ?7, ?8)",
            params![
                at,
                article.id,
                article.name,
                location.as_ref().map(|l| &l.id),
                location.as_ref().map(|l| &l.name),
                q,
                note,
                actor
            ],
        )
        .map_err(StoreError::from)?;
        let id = tx.last_insert_rowid();
        super::events::enqueue(
            &tx,
            "stock.corrected",
            &id.to_string(),
            &serde_json::json!({
                "movement_id": id, "article_id": article.id, "location_id": correction.location_id,
                "quantity_kg": q, "note": note, "created_by": actor,
            }),
        )
        .map_err(StoreError::from)?;
        tx.commit().map_err(StoreError::from)?;
        Ok(StockMovement {
            id,
            at,
            article: Named {
                id: article.id,
                name: article.name,
            },
            location: location.map(|l| Named {
                id: l.id,
                name: l.name,
            }),
            quantity_kg: q,
            reason: "correction".into(),
            weighing_id: None,
            note: Some(note.to_owned()),
            created_by: actor.to_owned(),
        })
    }
}
