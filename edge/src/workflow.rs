//! The two-pass weighing: a vehicle is weighed when it arrives and again
//! when it leaves; the ticket gets gross, tare and net.
//!
//! State lives in a `tickets` table in the outbox database and changes in
//! the same transaction that appends the step's record (transactional
//! outbox), so a ticket number is never reused or skipped, also across
//! restarts, and no step exists without its record.
//!
//! ```text
//!   (none) --first_weighing--> open --second_weighing--> complete
//! ```

use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::{OptionalExtension, params};
use serde::Serialize;
use valeo_drivers::scale::ScaleError;
use valeo_drivers::scale::device::ScaleHandle;
use valeo_drivers::scale::reading::{LegalWeighing, Weight};
use valeo_records::{
    Direction, FirstWeighing, KIND_FIRST_WEIGHING, KIND_SECOND_WEIGHING, SecondWeighing,
    WeighingStep,
};
use valeo_sync::OutboxError;
use valeo_sync::outbox::{AppendError, Outbox};

/// The time source, injected so tests are deterministic.
pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now(&self) -> DateTime<Utc>;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// Why a weighing step did not happen. Nothing was recorded in any case.
#[derive(Debug, thiserror::Error)]
pub enum WorkflowError {
    #[error("unknown scale {0:?}")]
    UnknownScale(String),
    #[error("scale: {0}")]
    Scale(#[from] ScaleError),
    #[error("no open ticket number {0}")]
    NoOpenTicket(u64),
    #[error("plate must be 1-20 characters, got {0:?}")]
    BadPlate(String),
    #[error("vehicle {0:?} already has open ticket {1}")]
    AlreadyOnSite(String, u64),
    #[error("ticket {ticket_no}: {reason}")]
    Inconsistent { ticket_no: u64, reason: String },
    #[error("outbox: {0}")]
    Outbox(#[from] OutboxError),
    #[error("stored ticket is unreadable: {0}")]
    Corrupt(String),
}

impl From<rusqlite::Error> for WorkflowError {
    fn from(e: rusqlite::Error) -> Self {
        WorkflowError::Outbox(OutboxError::Sqlite(e))
    }
}

/// A ticket as the operator sees it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Ticket {
    pub ticket_no: u64,
    pub plate: String,
    pub direction: Direction,
    pub state: TicketState,
    pub first: WeighingStep,
    pub second: Option<WeighingStep>,
    pub gross: Option<Weight>,
    pub tare: Option<Weight>,
    pub net: Option<Weight>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TicketState {
    Open,
    Complete,
}

/// The workflow of one site. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Workflow {
    outbox: Outbox,
    scales: Arc<Vec<ScaleHandle>>,
    min_load: Weight,
    clock: Arc<dyn Clock>,
    on_record: OnRecord,
}

/// Called after each appended record, e.g. to wake the uplink.
#[derive(Clone)]
pub struct OnRecord(pub Arc<dyn Fn() + Send + Sync>);

impl std::fmt::Debug for OnRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OnRecord")
    }
}

const MAX_PLATE_CHARS: usize = 20;

impl Workflow {
    /// Creates the workflow's table beside the outbox records.
    pub fn new(
        outbox: Outbox,
        scales: Vec<ScaleHandle>,
        min_load: Weight,
        clock: Arc<dyn Clock>,
        on_record: OnRecord,
    ) -> Result<Workflow, WorkflowError> {
        outbox.read(|conn| {
            conn.execute_batch(
                "CREATE TABLE IF NOT EXISTS tickets (
                    ticket_no INTEGER PRIMARY KEY,
                    plate TEXT NOT NULL,
                    state TEXT NOT NULL,
                    ticket TEXT NOT NULL
                );
                CREATE INDEX IF NOT EXISTS tickets_open ON tickets (state, plate);",
            )
        })?;
        Ok(Workflow {
            outbox,
            scales: Arc::new(scales),
            min_load,
            clock,
            on_record,
        })
    }

    pub fn scales(&self) -> &[ScaleHandle] {
        &self.scales
    }

    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    fn scale(&self, scale_id: Option<&str>) -> Result<&ScaleHandle, WorkflowError> {
        match scale_id {
            Some(id) => self
                .scales
                .iter()
                .find(|s| s.id() == id)
                .ok_or_else(|| WorkflowError::UnknownScale(id.to_owned())),
            None => self
                .scales
                .first()
                .ok_or_else(|| WorkflowError::UnknownScale("(none)".into())),
        }
    }

    fn step(&self, weighing: LegalWeighing) -> WeighingStep {
        WeighingStep {
            scale_id: weighing.terminal_id,
            weight: weighing.weight,
            alibi_id: weighing.alibi_id,
            weighed_at: self
                .clock
                .now()
                .to_rfc3339_opts(SecondsFormat::Millis, true),
            terminal_time: weighing.terminal_time,
        }
    }

    /// Takes the first weighing of a vehicle and opens a ticket.
    pub async fn first_weighing(
        &self,
        plate: &str,
        direction: Direction,
        scale_id: Option<&str>,
    ) -> Result<Ticket, WorkflowError> {
        let plate = normalise_plate(plate)?;
        let check_plate = plate.clone();
        if let Some(open) = self
            .read(move |conn| open_ticket_for(conn, &check_plate))
            .await?
        {
            return Err(WorkflowError::AlreadyOnSite(plate, open));
        }
        let step = self.weigh(scale_id).await?;
        let ticket = self
            .append(KIND_FIRST_WEIGHING, move |tx| {
                // Checked again inside the transaction: the same truck may
                // have been weighed through another request meanwhile.
                if let Some(no) = open_ticket_for(tx, &plate)? {
                    return Err(WorkflowError::AlreadyOnSite(plate, no));
                }
                let last: i64 =
                    tx.query_row("SELECT COALESCE(MAX(ticket_no), 0) FROM tickets", [], |r| {
                        r.get(0)
                    })?;
                let ticket_no = last as u64 + 1;
                let payload = FirstWeighing {
                    ticket_no,
                    plate: plate.clone(),
                    direction,
                    first: step.clone(),
                };
                let ticket = Ticket {
                    ticket_no,
                    plate,
                    direction,
                    state: TicketState::Open,
                    first: step,
                    second: None,
                    gross: None,
                    tare: None,
                    net: None,
                };
                Ok((to_json(&payload)?, ticket))
            })
            .await?;
        tracing::info!(ticket_no = ticket.ticket_no, plate = %ticket.plate, weight = %ticket.first.weight, "first weighing");
        Ok(ticket)
    }

    /// Takes the second weighing of an open ticket and completes it.
    pub async fn second_weighing(
        &self,
        ticket_no: u64,
        scale_id: Option<&str>,
    ) -> Result<Ticket, WorkflowError> {
        if self
            .ticket(ticket_no)
            .await?
            .is_none_or(|t| t.state != TicketState::Open)
        {
            return Err(WorkflowError::NoOpenTicket(ticket_no));
        }
        let step = self.weigh(scale_id).await?;
        let ticket = self
            .append(KIND_SECOND_WEIGHING, move |tx| {
                // Re-read inside the transaction: another request may have
                // completed the ticket while the scale was settling.
                let mut ticket = load(tx, ticket_no)?
                    .filter(|t| t.state == TicketState::Open)
                    .ok_or(WorkflowError::NoOpenTicket(ticket_no))?;
                let (gross, tare, net) =
                    valeo_records::gross_tare_net(&ticket.first.weight, &step.weight).map_err(
                        |e| WorkflowError::Inconsistent {
                            ticket_no,
                            reason: e.to_string(),
                        },
                    )?;
                let payload = SecondWeighing {
                    ticket_no,
                    plate: ticket.plate.clone(),
                    direction: ticket.direction,
                    first: ticket.first.clone(),
                    second: step.clone(),
                    gross,
                    tare,
                    net,
                };
                ticket.state = TicketState::Complete;
                ticket.second = Some(step);
                ticket.gross = Some(gross);
                ticket.tare = Some(tare);
                ticket.net = Some(net);
                Ok((to_json(&payload)?, ticket))
            })
            .await?;
        tracing::info!(ticket_no, net = ?ticket.net.map(|n| n.to_string()), "second weighing, ticket complete");
        Ok(ticket)
    }

    pub async fn ticket(&self, ticket_no: u64) -> Result<Option<Ticket>, WorkflowError> {
        self.read(move |conn| load(conn, ticket_no)).await
    }

    /// Tickets, newest first; only open ones when `open_only`.
    pub async fn tickets(&self, open_only: bool, limit: u32) -> Result<Vec<Ticket>, WorkflowError> {
        self.read(move |conn| {
            let mut stmt = conn.prepare(
                "SELECT ticket FROM tickets WHERE (?1 = 0 OR state = 'open')
                 ORDER BY ticket_no DESC LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![open_only as i64, limit as i64], |r| {
                r.get::<_, String>(0)
            })?;
            rows.map(|row| parse_ticket(&row?)).collect()
        })
        .await
    }

    /// A legal weighing from the scale, as a ticket step.
    async fn weigh(&self, scale_id: Option<&str>) -> Result<WeighingStep, WorkflowError> {
        let weighing = self
            .scale(scale_id)?
            .register_weighing(self.min_load)
            .await?;
        Ok(self.step(weighing))
    }

    /// Appends a record of `kind` built by `build` and saves the ticket it
    /// returns, in one transaction; then wakes the uplink.
    async fn append(
        &self,
        kind: &'static str,
        build: impl FnOnce(
            &rusqlite::Transaction<'_>,
        ) -> Result<(serde_json::Value, Ticket), WorkflowError>
        + Send
        + 'static,
    ) -> Result<Ticket, WorkflowError> {
        let (outbox, now) = (self.outbox.clone(), self.clock.now());
        let (_, ticket) = tokio::task::spawn_blocking(move || {
            outbox.append_with(kind, now, |tx| {
                let (payload, ticket) = build(tx)?;
                save(tx, &ticket)?;
                Ok((payload, ticket))
            })
        })
        .await
        .map_err(|e| WorkflowError::Corrupt(e.to_string()))?
        .map_err(AppendError::<WorkflowError>::into_inner)?;
        (self.on_record.0)();
        Ok(ticket)
    }

    /// Runs a read on the outbox database off the async threads.
    async fn read<T: Send + 'static>(
        &self,
        query: impl FnOnce(&rusqlite::Connection) -> Result<T, WorkflowError> + Send + 'static,
    ) -> Result<T, WorkflowError> {
        let outbox = self.outbox.clone();
        tokio::task::spawn_blocking(move || outbox.read(query))
            .await
            .map_err(|e| WorkflowError::Corrupt(e.to_string()))?
    }
}

fn open_ticket_for(conn: &rusqlite::Connection, plate: &str) -> Result<Option<u64>, WorkflowError> {
    let no: Option<i64> = conn
        .query_row(
            "SELECT ticket_no FROM tickets WHERE state = 'open' AND plate = ?1",
            params![plate],
            |r| r.get(0),
        )
        .optional()?;
    Ok(no.map(|n| n as u64))
}

fn normalise_plate(plate: &str) -> Result<String, WorkflowError> {
    let plate = plate.trim().to_uppercase();
    if plate.is_empty()
        || plate.chars().count() > MAX_PLATE_CHARS
        || plate.chars().any(char::is_control)
    {
        return Err(WorkflowError::BadPlate(plate));
    }
    Ok(plate)
}

fn to_json<T: Serialize>(value: &T) -> Result<serde_json::Value, WorkflowError> {
    serde_json::to_value(value).map_err(|e| WorkflowError::Corrupt(e.to_string()))
}

fn save(conn: &rusqlite::Connection, ticket: &Ticket) -> Result<(), WorkflowError> {
    let state = match ticket.state {
        TicketState::Open => "open",
        TicketState::Complete => "complete",
    };
    conn.execute(
        "INSERT INTO tickets (ticket_no, plate, state, ticket) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (ticket_no) DO UPDATE SET state = excluded.state, ticket = excluded.ticket",
        params![
            ticket.ticket_no as i64,
            ticket.plate,
            state,
            serde_json::to_string(ticket).unwrap_or_default()
        ],
    )?;
    Ok(())
}

fn load(conn: &rusqlite::Connection, ticket_no: u64) -> Result<Option<Ticket>, WorkflowError> {
    let text: Option<String> = conn
        .query_row(
            "SELECT ticket FROM tickets WHERE ticket_no = ?1",
            params![ticket_no as i64],
            |r| r.get(0),
        )
        .optional()?;
    text.as_deref().map(parse_ticket).transpose()
}

/// The stored JSON of a ticket, read back.
fn parse_ticket(text: &str) -> Result<Ticket, WorkflowError> {
    #[derive(serde::Deserialize)]
    struct Stored {
        ticket_no: u64,
        plate: String,
        direction: Direction,
        state: String,
        first: WeighingStep,
        second: Option<WeighingStep>,
        gross: Option<Weight>,
        tare: Option<Weight>,
        net: Option<Weight>,
    }
    let s: Stored =
        serde_json::from_str(text).map_err(|e| WorkflowError::Corrupt(e.to_string()))?;
    Ok(Ticket {
        ticket_no: s.ticket_no,
        plate: s.plate,
        direction: s.direction,
        state: if s.state == "complete" {
            TicketState::Complete
        } else {
            TicketState::Open
        },
        first: s.first,
        second: s.second,
        gross: s.gross,
        tare: s.tare,
        net: s.net,
    })
}
