//! Commands central sent to the boxes, and their results. A command is
//! stored before it is published; its result arrives later as a
//! `command.result` record through the box's outbox and is applied in the
//! same transaction as the record, like every other record.

use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::{OptionalExtension, params};
use serde::Serialize;
use valeo_records::command::{
    CommandAction, CommandOutcome, CommandResult, DeviceCommand, KIND_COMMAND_RESULT,
};
use valeo_sync::wire::Record;

use super::{Store, StoreError};

/// A command and what became of it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[schema(example = json!({
    "command_id": "3f2a9c0d4b5e6f708192a3b4c5d6e7f8",
    "device_id": "yard-1",
    "action": {"kind": "modbus_write", "device": "silo-1", "point": "fill_valve", "value": true},
    "requested_by": "anna@office",
    "requested_at": "2026-11-29T08:00:00.000Z",
    "expires_at": "2026-11-29T08:01:00.000Z",
    "status": "done",
    "overdue": false,
    "error": null,
    "finished_at": "2026-11-29T08:00:01.250Z"
}))]
pub struct CommandView {
    pub command_id: String,
    pub device_id: String,
    #[schema(value_type = crate::api::openapi::records::CommandActionSchema)]
    pub action: CommandAction,
    pub requested_by: String,
    /// RFC 3339.
    pub requested_at: String,
    /// RFC 3339; a box that gets the command later refuses it as expired.
    pub expires_at: String,
    /// `pending` until the box's result arrives, then `done`, `failed`,
    /// `refused` or `expired`.
    #[schema(schema_with = status_schema)]
    pub status: String,
    /// Still pending after `expires_at`: the box did not answer in time (it
    /// may be offline; if it gets the command later it refuses it as expired).
    pub overdue: bool,
    /// Why it failed or was refused.
    pub error: Option<String>,
    /// RFC 3339, when the box finished with it.
    pub finished_at: Option<String>,
}

/// The schema of [`CommandView::status`]: the outcomes a box reports, and
/// `pending` before it does.
fn status_schema() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .enum_values(Some(["pending", "done", "failed", "refused", "expired"]))
        .build()
}

/// Why a command was not stored.
#[derive(Debug, thiserror::Error)]
pub enum NewCommandError {
    #[error("no device {0:?} is registered")]
    UnknownDevice(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

const COLUMNS: &str = "command_id, device_id, action, requested_by, requested_at, expires_at,
     outcome, error, finished_at";

fn view(r: &rusqlite::Row<'_>, now: DateTime<Utc>) -> rusqlite::Result<CommandView> {
    let action: String = r.get(2)?;
    let expires_at: String = r.get(5)?;
    let outcome: Option<String> = r.get(6)?;
    let overdue =
        outcome.is_none() && DateTime::parse_from_rfc3339(&expires_at).is_ok_and(|at| at < now);
    Ok(CommandView {
        command_id: r.get(0)?,
        device_id: r.get(1)?,
        action: serde_json::from_str(&action).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(2, rusqlite::types::Type::Text, e.into())
        })?,
        requested_by: r.get(3)?,
        requested_at: r.get(4)?,
        expires_at,
        status: outcome.unwrap_or_else(|| "pending".into()),
        overdue,
        error: r.get(7)?,
        finished_at: r.get(8)?,
    })
}

impl Store {
    /// Stores a new command for `device_id` and returns the document to
    /// publish. The id is random, so a repeated request is a new command.
    pub fn new_command(
        &self,
        device_id: &str,
        action: CommandAction,
        requested_by: &str,
        ttl_ms: u64,
        now: DateTime<Utc>,
    ) -> Result<DeviceCommand, NewCommandError> {
        let conn = self.writer();
        let known: bool = conn
            .query_row(
                "SELECT 1 FROM devices WHERE device_id = ?1",
                [device_id],
                |_| Ok(()),
            )
            .optional()
            .map_err(StoreError::from)?
            .is_some();
        if !known {
            return Err(NewCommandError::UnknownDevice(device_id.to_owned()));
        }
        let at = |t: DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Millis, true);
        let command = DeviceCommand {
            v: valeo_records::command::COMMAND_VERSION,
            id: format!("{:032x}", rand::random::<u128>()),
            action,
            requested_by: requested_by.to_owned(),
            requested_at: at(now),
            expires_at: at(now + chrono::Duration::milliseconds(ttl_ms as i64)),
        };
        let action = serde_json::to_string(&command.action).unwrap_or_default();
        conn.execute(
            "INSERT INTO commands (command_id, device_id, action, requested_by, requested_at, expires_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                command.id,
                device_id,
                action,
                command.requested_by,
                command.requested_at,
                command.expires_at
            ],
        )
        .map_err(StoreError::from)?;
        Ok(command)
    }

    /// One command.
    pub fn command(
        &self,
        command_id: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<CommandView>, StoreError> {
        let conn = self.reader();
        Ok(conn
            .query_row(
                &format!("SELECT {COLUMNS} FROM commands WHERE command_id = ?1"),
                [command_id],
                |r| view(r, now),
            )
            .optional()?)
    }

    /// The newest commands, of one box or all.
    pub fn commands(
        &self,
        device_id: Option<&str>,
        limit: u32,
        now: DateTime<Utc>,
    ) -> Result<Vec<CommandView>, StoreError> {
        let conn = self.reader();
        let mut stmt = conn.prepare(&format!(
            "SELECT {COLUMNS} FROM commands WHERE (?1 IS NULL OR device_id = ?1)
             ORDER BY requested_at DESC, command_id LIMIT ?2"
        ))?;
        let rows = stmt.query_map(params![device_id, limit], |r| view(r, now))?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }
}

/// Applies a box's `command.result` record. A result for a command this
/// database does not know (sent by an earlier installation) is kept as a
/// command of its own, so nothing a box reports is hidden.
pub(super) fn command_result(
    tx: &rusqlite::Transaction<'_>,
    record: &Record,
) -> Result<(), String> {
    let result: CommandResult = serde_json::from_value(record.payload.clone())
        .map_err(|e| format!("{KIND_COMMAND_RESULT} payload: {e}"))?;
    let outcome = result.outcome.as_str();
    let updated = tx
        .execute(
            "UPDATE commands SET outcome = ?3, error = ?4, finished_at = ?5, result_seq = ?6
             WHERE command_id = ?1 AND device_id = ?2",
            params![
                result.command_id,
                record.device_id,
                outcome,
                result.error,
                result.at,
                record.seq as i64
            ],
        )
        .map_err(|e| e.to_string())?;
    if updated == 0 {
        let action = serde_json::to_string(&result.action).unwrap_or_default();
        tx.execute(
            "INSERT OR IGNORE INTO commands (command_id, device_id, action, requested_by,
                 requested_at, expires_at, outcome, error, finished_at, result_seq)
             VALUES (?1, ?2, ?3, ?4, ?5, ?5, ?6, ?7, ?5, ?8)",
            params![
                result.command_id,
                record.device_id,
                action,
                result.requested_by,
                result.at,
                outcome,
                result.error,
                record.seq as i64
            ],
        )
        .map_err(|e| e.to_string())?;
    }
    // Only `Done` moved something; the others are worth a line in the log.
    if result.outcome != CommandOutcome::Done {
        tracing::info!(command_id = %result.command_id, device_id = %record.device_id, outcome, error = ?result.error, "command not carried out");
    }
    Ok(())
}
