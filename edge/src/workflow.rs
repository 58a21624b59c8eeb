//! The weighbridge workflow: a vehicle arrives, is weighed, is weighed
//! again (or once, against its stored tare), and leaves with a ticket;
//! tickets can be cancelled (storno), reprinted and given quality values.
//!
//! The rules of a ticket's life are the shared state machine in
//! [`valeo_records::ticket`]; this module decides each step (reads the
//! scale, checks master data) and makes it durable. Ticket state lives in a
//! `tickets` table in the outbox database and changes in the same
//! transaction that appends the step's record (transactional outbox), so a
//! ticket number is never reused or skipped, also across restarts, and no
//! step exists without its record. A weighing never waits for the network:
//! master data comes from the local cache.

use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::{OptionalExtension, params};
use valeo_drivers::analyzer::{AnalyzerError, AnalyzerHandle};
use valeo_drivers::scale::ScaleError;
use valeo_drivers::scale::device::ScaleHandle;
use valeo_drivers::scale::reading::{LegalWeighing, Unit, Weight};
use valeo_drivers::site_io::{InterlockError, SiteIoHandle, WeighingGuard};
use valeo_records::master_data::{MasterData, normalise_plate};
use valeo_records::{
    Cancellation, Direction, FirstWeighing, QualitySample, QualitySource, Ref, Reprint,
    SecondWeighing, StepSource, StoredTareWeighing, Ticket, TicketContext, TicketEvent,
    TicketState, TransitionError, WeighingStep,
};
use valeo_sync::OutboxError;
use valeo_sync::outbox::{AppendError, Outbox};

use crate::config::WeighingConfig;
use crate::master_data::MasterDataCache;

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

/// Why a step did not happen. Nothing was recorded in any case.
#[derive(Debug, thiserror::Error)]
pub enum WorkflowError {
    #[error("unknown scale {0:?}")]
    UnknownScale(String),
    #[error("scale: {0}")]
    Scale(#[from] ScaleError),
    #[error("{0}")]
    Transition(#[from] TransitionError),
    #[error("plate must be 1-20 characters, got {0:?}")]
    BadPlate(String),
    #[error("vehicle {0:?} already has open ticket {1}")]
    AlreadyOnSite(String, u64),
    #[error("unknown {kind} {id:?} (master data version {version})")]
    UnknownMasterData {
        kind: &'static str,
        id: String,
        version: u64,
    },
    #[error("{0} is required")]
    MissingField(&'static str),
    #[error("{0}")]
    MasterDataMismatch(String),
    #[error("vehicle {0:?} has no stored tare")]
    NoStoredTare(String),
    #[error(
        "the stored tare of {plate:?} was weighed at {weighed_at}, more than {max_age_days} days ago: weigh the empty vehicle"
    )]
    StoredTareTooOld {
        plate: String,
        weighed_at: String,
        max_age_days: u32,
    },
    #[error("{field}: {reason}")]
    BadInput { field: &'static str, reason: String },
    #[error("{0}")]
    Interlock(#[from] InterlockError),
    #[error("unknown analyzer {0:?}")]
    UnknownAnalyzer(String),
    #[error("{0}")]
    Analyzer(#[from] AnalyzerError),
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

fn bad_input(field: &'static str, reason: impl Into<String>) -> WorkflowError {
    WorkflowError::BadInput {
        field,
        reason: reason.into(),
    }
}

/// How a weight is taken.
#[derive(Debug, Clone, PartialEq)]
pub enum Weighing {
    /// A registered weighing from the scale terminal.
    Scale,
    /// One weighing from the scale; the tare is the vehicle's stored tare.
    StoredTare,
    /// Typed in by the operator; never legal for trade.
    Manual { weight_kg: f64, reason: String },
}

/// A vehicle's arrival: opens a ticket.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenRequest {
    pub plate: String,
    pub direction: Direction,
    pub partner_id: Option<String>,
    pub article_id: Option<String>,
    pub contract_id: Option<String>,
    pub lot_id: Option<String>,
    pub location_id: Option<String>,
    pub operator: Option<String>,
    pub scale_id: Option<String>,
    pub weighing: Weighing,
}

impl OpenRequest {
    /// A scale weighing of `plate` with nothing else known.
    pub fn scale(plate: &str, direction: Direction, scale_id: Option<&str>) -> OpenRequest {
        OpenRequest {
            plate: plate.to_owned(),
            direction,
            partner_id: None,
            article_id: None,
            contract_id: None,
            lot_id: None,
            location_id: None,
            operator: None,
            scale_id: scale_id.map(str::to_owned),
            weighing: Weighing::Scale,
        }
    }
}

/// The vehicle's second weighing.
#[derive(Debug, Clone, PartialEq)]
pub struct SecondRequest {
    pub operator: Option<String>,
    pub scale_id: Option<String>,
    /// `Scale` or `Manual`.
    pub weighing: Weighing,
}

/// Analyzer values entered for a ticket.
#[derive(Debug, Clone, PartialEq)]
pub struct QualityRequest {
    pub operator: String,
    pub source: QualitySource,
    pub device_id: Option<String>,
    pub moisture_percent: Option<f64>,
    pub hectolitre_kg: Option<f64>,
    pub protein_percent: Option<f64>,
}

/// The workflow of one site. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Workflow {
    outbox: Outbox,
    scales: Arc<Vec<ScaleHandle>>,
    rules: WeighingConfig,
    master: MasterDataCache,
    clock: Arc<dyn Clock>,
    on_record: OnRecord,
    /// Lights, barriers and position sensors, when the site has them.
    site: Option<SiteIoHandle>,
    analyzers: Arc<Vec<AnalyzerHandle>>,
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
/// Longest free text (reasons, operator names) kept in a record.
const MAX_TEXT_CHARS: usize = 200;
/// Largest weight accepted by hand: above any road vehicle.
const MAX_MANUAL_WEIGHT_KG: f64 = 200_000.0;

impl Workflow {
    /// Creates the workflow's table beside the outbox records.
    pub fn new(
        outbox: Outbox,
        scales: Vec<ScaleHandle>,
        rules: WeighingConfig,
        master: MasterDataCache,
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
            rules,
            master,
            clock,
            on_record,
            site: None,
            analyzers: Arc::new(Vec::new()),
        })
    }

    /// Quality samples can be read from these analyzers.
    pub fn with_analyzers(mut self, analyzers: Vec<AnalyzerHandle>) -> Workflow {
        self.analyzers = Arc::new(analyzers);
        self
    }

    pub fn analyzers(&self) -> &[AnalyzerHandle] {
        &self.analyzers
    }

    /// Weighings go through the site's interlock: refused while the vehicle
    /// is not positioned, and the exit opens once the step is recorded.
    pub fn with_site(mut self, site: SiteIoHandle) -> Workflow {
        self.site = Some(site);
        self
    }

    pub fn site(&self) -> Option<&SiteIoHandle> {
        self.site.as_ref()
    }

    pub fn scales(&self) -> &[ScaleHandle] {
        &self.scales
    }

    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    pub fn master_data(&self) -> &MasterDataCache {
        &self.master
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

    fn now_text(&self) -> String {
        self.clock
            .now()
            .to_rfc3339_opts(SecondsFormat::Millis, true)
    }

    fn step(&self, weighing: LegalWeighing) -> WeighingStep {
        WeighingStep {
            scale_id: weighing.terminal_id,
            weight: weighing.weight,
            alibi_id: weighing.alibi_id,
            weighed_at: self.now_text(),
            terminal_time: weighing.terminal_time,
            source: StepSource::Scale,
            manual_reason: None,
            operator: None,
        }
    }

    /// A vehicle arrives: takes its first weighing and opens a ticket, or,
    /// with [`Weighing::StoredTare`], weighs it once and completes one.
    pub async fn open_ticket(&self, request: OpenRequest) -> Result<Ticket, WorkflowError> {
        let plate = check_plate(&request.plate)?;
        let operator = check_text("operator", request.operator.as_deref())?;
        let master = self.master.current();
        let mut context = resolve_context(&master, &self.rules, &request, &plate)?;
        context.operator = operator;
        let check_plate = plate.clone();
        if let Some(open) = self
            .read(move |conn| open_ticket_for(conn, &check_plate))
            .await?
        {
            return Err(WorkflowError::AlreadyOnSite(plate, open));
        }
        let scale_id = request.scale_id.as_deref();
        let stored_tare = match request.weighing {
            Weighing::StoredTare => Some(self.stored_tare_step(&master, &plate, scale_id)?),
            _ => None,
        };
        let (mut step, guard) = self.take(scale_id, &request.weighing, None).await?;
        step.operator = context.operator.clone();
        let direction = request.direction;
        let (kind, ticket) = match stored_tare {
            None => (valeo_records::KIND_FIRST_WEIGHING, None),
            Some(tare) => (valeo_records::KIND_STORED_TARE_WEIGHING, Some(tare)),
        };
        let ticket = self
            .append(kind, move |tx, _| {
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
                Ok(match ticket {
                    None => TicketEvent::First(FirstWeighing {
                        ticket_no,
                        plate,
                        direction,
                        first: step,
                        context,
                    }),
                    Some(tare) => {
                        if step.weight.to_kg_f64() <= tare.weight.to_kg_f64() {
                            return Err(WorkflowError::MasterDataMismatch(format!(
                                "the weighing ({}) is not heavier than the stored tare ({}): weigh the loaded vehicle",
                                step.weight, tare.weight
                            )));
                        }
                        let (gross, tare_w, net) = totals(ticket_no, &step.weight, &tare.weight)?;
                        TicketEvent::StoredTare(StoredTareWeighing {
                            ticket_no,
                            plate,
                            direction,
                            weighing: step,
                            stored_tare: tare,
                            gross,
                            tare: tare_w,
                            net,
                            context,
                        })
                    }
                })
            })
            .await?;
        if let Some(guard) = guard {
            guard.recorded();
        }
        tracing::info!(ticket_no = ticket.ticket_no, plate = %ticket.plate, weight = %ticket.first.weight, state = %ticket.state, "ticket opened");
        Ok(ticket)
    }

    /// Takes the second weighing of an open ticket and completes it.
    pub async fn second_weighing(
        &self,
        ticket_no: u64,
        request: SecondRequest,
    ) -> Result<Ticket, WorkflowError> {
        let operator = check_text("operator", request.operator.as_deref())?;
        if matches!(request.weighing, Weighing::StoredTare) {
            return Err(bad_input(
                "weighing",
                "a second weighing is taken on the scale or entered by hand",
            ));
        }
        let current = self
            .ticket(ticket_no)
            .await?
            .ok_or(TransitionError::NoSuchTicket { ticket_no })?;
        if current.state != TicketState::Open {
            return Err(TransitionError::NotAllowed {
                ticket_no,
                state: current.state,
                event: "second weighing",
            }
            .into());
        }
        let (mut step, guard) = self
            .take(
                request.scale_id.as_deref(),
                &request.weighing,
                Some(&current.first.weight),
            )
            .await?;
        step.operator = operator.clone();
        let ticket = self
            .append(valeo_records::KIND_SECOND_WEIGHING, move |_, current| {
                // The ticket as it is now, inside the transaction: another
                // request may have completed it while the scale settled.
                let current = current.ok_or(TransitionError::NoSuchTicket { ticket_no })?;
                let (gross, tare, net) = totals(ticket_no, &current.first.weight, &step.weight)?;
                Ok(TicketEvent::Second(SecondWeighing {
                    ticket_no,
                    plate: current.plate.clone(),
                    direction: current.direction,
                    first: current.first.clone(),
                    second: step,
                    gross,
                    tare,
                    net,
                    operator,
                }))
            })
            .with_ticket(ticket_no)
            .await?;
        if let Some(guard) = guard {
            guard.recorded();
        }
        tracing::info!(ticket_no, net = ?ticket.net.map(|n| n.to_string()), "second weighing, ticket complete");
        Ok(ticket)
    }

    /// Cancels (storno) a ticket; its weighings stay on record.
    pub async fn cancel(
        &self,
        ticket_no: u64,
        operator: &str,
        reason: &str,
    ) -> Result<Ticket, WorkflowError> {
        let operator = required_text("operator", operator)?;
        let reason = required_text("reason", reason)?;
        let at = self.now_text();
        let ticket = self
            .append(valeo_records::KIND_CANCELLATION, move |_, _| {
                Ok(TicketEvent::Cancel(Cancellation {
                    ticket_no,
                    at,
                    operator,
                    reason,
                }))
            })
            .with_ticket(ticket_no)
            .await?;
        tracing::info!(ticket_no, "ticket cancelled");
        Ok(ticket)
    }

    /// Records a reprint; the copy number counts up from 1.
    pub async fn reprint(&self, ticket_no: u64, operator: &str) -> Result<Ticket, WorkflowError> {
        let operator = required_text("operator", operator)?;
        let at = self.now_text();
        self.append(valeo_records::KIND_REPRINT, move |_, current| {
            let prints = current.map_or(0, |t| t.prints);
            Ok(TicketEvent::Reprint(Reprint {
                ticket_no,
                at,
                operator,
                copy_no: prints + 1,
            }))
        })
        .with_ticket(ticket_no)
        .await
    }

    /// Attaches analyzer values to a ticket: typed in, or measured now by
    /// the named analyzer.
    pub async fn add_quality(
        &self,
        ticket_no: u64,
        mut request: QualityRequest,
    ) -> Result<Ticket, WorkflowError> {
        let operator = required_text("operator", &request.operator)?;
        let mut raw = None;
        if request.source == QualitySource::Device {
            let id = request
                .device_id
                .clone()
                .ok_or_else(|| bad_input("device_id", "name the analyzer to read from"))?;
            if request.moisture_percent.is_some()
                || request.hectolitre_kg.is_some()
                || request.protein_percent.is_some()
            {
                return Err(bad_input(
                    "source",
                    "values from a device are read from it, not sent along",
                ));
            }
            // Checked before the analyzer spends its measuring time.
            if self.ticket(ticket_no).await?.is_none() {
                return Err(TransitionError::NoSuchTicket { ticket_no }.into());
            }
            let analyzer = self
                .analyzers
                .iter()
                .find(|a| a.id() == id)
                .ok_or_else(|| WorkflowError::UnknownAnalyzer(id.clone()))?;
            let values = analyzer.measure().await?;
            request.moisture_percent = values.moisture_percent;
            request.hectolitre_kg = values.hectolitre_kg;
            request.protein_percent = values.protein_percent;
            raw = Some(values.raw);
        }
        let checks = [
            ("moisture_percent", request.moisture_percent, 100.0),
            ("hectolitre_kg", request.hectolitre_kg, 150.0),
            ("protein_percent", request.protein_percent, 100.0),
        ];
        for (field, value, max) in checks {
            if let Some(v) = value
                && !(v.is_finite() && (0.0..=max).contains(&v))
            {
                return Err(bad_input(field, format!("must be 0 to {max}, got {v}")));
            }
        }
        if checks.iter().all(|(_, v, _)| v.is_none()) {
            return Err(bad_input(
                "quality",
                "give at least one of moisture_percent, hectolitre_kg, protein_percent",
            ));
        }
        if (request.source == QualitySource::Device) != request.device_id.is_some() {
            return Err(bad_input(
                "device_id",
                "name the analyzer exactly when the source is a device",
            ));
        }
        let taken_at = self.now_text();
        self.append(valeo_records::KIND_QUALITY_SAMPLE, move |_, _| {
            Ok(TicketEvent::Quality(QualitySample {
                ticket_no,
                taken_at,
                source: request.source,
                device_id: request.device_id,
                operator,
                moisture_percent: request.moisture_percent,
                hectolitre_kg: request.hectolitre_kg,
                protein_percent: request.protein_percent,
                raw,
            }))
        })
        .with_ticket(ticket_no)
        .await
    }

    /// For a kiosk or plate camera: weighs the vehicle with this plate; its
    /// second weighing when it has an open ticket, else a first weighing
    /// (with `direction`, required then).
    pub async fn weigh_by_plate(
        &self,
        mut request: OpenRequest,
        direction_given: bool,
    ) -> Result<Ticket, WorkflowError> {
        let plate = check_plate(&request.plate)?;
        let check = plate.clone();
        let open = self.read(move |conn| open_ticket_for(conn, &check)).await?;
        match open {
            Some(ticket_no) => {
                self.second_weighing(
                    ticket_no,
                    SecondRequest {
                        operator: request.operator,
                        scale_id: request.scale_id,
                        weighing: request.weighing,
                    },
                )
                .await
            }
            None if !direction_given => Err(WorkflowError::MissingField(
                "direction (the vehicle has no open ticket)",
            )),
            None => {
                request.plate = plate;
                self.open_ticket(request).await
            }
        }
    }

    pub async fn ticket(&self, ticket_no: u64) -> Result<Option<Ticket>, WorkflowError> {
        let device_id = self.outbox.device_id().to_owned();
        self.read(move |conn| load(conn, &device_id, ticket_no))
            .await
    }

    /// Tickets, newest first; only those in `state` when given.
    pub async fn tickets(
        &self,
        state: Option<TicketState>,
        limit: u32,
    ) -> Result<Vec<Ticket>, WorkflowError> {
        let device_id = self.outbox.device_id().to_owned();
        self.read(move |conn| {
            let mut stmt = conn.prepare(
                "SELECT ticket FROM tickets WHERE (?1 IS NULL OR state = ?1)
                 ORDER BY ticket_no DESC LIMIT ?2",
            )?;
            let rows = stmt
                .query_map(params![state.map(TicketState::as_str), limit as i64], |r| {
                    r.get::<_, String>(0)
                })?;
            rows.map(|row| parse_ticket(&row?, &device_id)).collect()
        })
        .await
    }

    /// The weight of one step: from the scale, or typed in (then in the
    /// unit and resolution of `like`, the ticket's other weighing). With
    /// site I/O, the interlock's guard comes along: the caller marks it
    /// recorded once the step is stored; dropped, it reports a failure.
    async fn take(
        &self,
        scale_id: Option<&str>,
        weighing: &Weighing,
        like: Option<&Weight>,
    ) -> Result<(WeighingStep, Option<WeighingGuard>), WorkflowError> {
        let guard = match &self.site {
            Some(site) => Some(site.begin_weighing().await?),
            None => None,
        };
        Ok((self.take_weight(scale_id, weighing, like).await?, guard))
    }

    async fn take_weight(
        &self,
        scale_id: Option<&str>,
        weighing: &Weighing,
        like: Option<&Weight>,
    ) -> Result<WeighingStep, WorkflowError> {
        match weighing {
            Weighing::Scale | Weighing::StoredTare => {
                let weighing = self
                    .scale(scale_id)?
                    .register_weighing(self.rules.min_load)
                    .await?;
                Ok(self.step(weighing))
            }
            Weighing::Manual { weight_kg, reason } => {
                let reason = required_text("manual_reason", reason)?;
                let weight = manual_weight(*weight_kg, like)?;
                if weight.to_kg_f64() < self.rules.min_load.to_kg_f64() {
                    return Err(ScaleError::BelowMinimumLoad {
                        weight,
                        min: self.rules.min_load,
                    }
                    .into());
                }
                Ok(WeighingStep {
                    scale_id: self.scale(scale_id)?.id().to_owned(),
                    weight,
                    alibi_id: None,
                    weighed_at: self.now_text(),
                    terminal_time: None,
                    source: StepSource::Manual,
                    manual_reason: Some(reason),
                    operator: None,
                })
            }
        }
    }

    fn stored_tare_step(
        &self,
        master: &MasterData,
        plate: &str,
        scale_id: Option<&str>,
    ) -> Result<WeighingStep, WorkflowError> {
        let tare = master
            .vehicle(plate)
            .and_then(|v| v.stored_tare.as_ref())
            .ok_or_else(|| WorkflowError::NoStoredTare(plate.to_owned()))?;
        let too_old = || WorkflowError::StoredTareTooOld {
            plate: plate.to_owned(),
            weighed_at: tare.weighed_at.clone(),
            max_age_days: self.rules.stored_tare_max_age_days,
        };
        let weighed_at = DateTime::parse_from_rfc3339(&tare.weighed_at).map_err(|_| too_old())?;
        let age = self.clock.now() - weighed_at.with_timezone(&Utc);
        if age.num_days() >= i64::from(self.rules.stored_tare_max_age_days) {
            return Err(too_old());
        }
        Ok(WeighingStep {
            scale_id: match &tare.scale_id {
                Some(id) => id.clone(),
                None => self.scale(scale_id)?.id().to_owned(),
            },
            weight: tare.weight,
            alibi_id: tare.alibi_id.clone(),
            weighed_at: tare.weighed_at.clone(),
            terminal_time: None,
            source: StepSource::StoredTare,
            manual_reason: None,
            operator: None,
        })
    }

    /// Appends the record of the event `build` returns and saves the ticket
    /// it leads to, in one transaction; then wakes the uplink. `build` gets
    /// the ticket as it is inside the transaction (when the step names one).
    fn append<F>(&self, kind: &'static str, build: F) -> Append<'_, F>
    where
        F: FnOnce(
                &rusqlite::Transaction<'_>,
                Option<&Ticket>,
            ) -> Result<TicketEvent, WorkflowError>
            + Send
            + 'static,
    {
        Append {
            workflow: self,
            kind,
            ticket_no: None,
            build,
        }
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

/// A pending append; `.await` runs it.
struct Append<'a, F> {
    workflow: &'a Workflow,
    kind: &'static str,
    ticket_no: Option<u64>,
    build: F,
}

impl<F> Append<'_, F>
where
    F: FnOnce(&rusqlite::Transaction<'_>, Option<&Ticket>) -> Result<TicketEvent, WorkflowError>
        + Send
        + 'static,
{
    /// The step is about this existing ticket.
    fn with_ticket(mut self, ticket_no: u64) -> Self {
        self.ticket_no = Some(ticket_no);
        self
    }
}

impl<'a, F> std::future::IntoFuture for Append<'a, F>
where
    F: FnOnce(&rusqlite::Transaction<'_>, Option<&Ticket>) -> Result<TicketEvent, WorkflowError>
        + Send
        + 'static,
{
    type Output = Result<Ticket, WorkflowError>;
    type IntoFuture =
        std::pin::Pin<Box<dyn std::future::Future<Output = Self::Output> + Send + 'a>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            let Append {
                workflow,
                kind,
                ticket_no,
                build,
            } = self;
            let (outbox, now) = (workflow.outbox.clone(), workflow.clock.now());
            let device_id = outbox.device_id().to_owned();
            let (_, ticket) = tokio::task::spawn_blocking(move || {
                outbox.append_with(kind, now, |tx| {
                    let before = match ticket_no {
                        Some(no) => Some(
                            load(tx, &device_id, no)?
                                .ok_or(TransitionError::NoSuchTicket { ticket_no: no })?,
                        ),
                        None => None,
                    };
                    let event = build(tx, before.as_ref())?;
                    debug_assert_eq!(event.kind(), kind);
                    let before = match before {
                        Some(t) => Some(t),
                        None => load(tx, &device_id, event.ticket_no())?,
                    };
                    let ticket = Ticket::apply(before.as_ref(), &device_id, &event)?;
                    save(tx, &ticket)?;
                    Ok::<_, WorkflowError>((event.to_json(), ticket))
                })
            })
            .await
            .map_err(|e| WorkflowError::Corrupt(e.to_string()))?
            .map_err(AppendError::<WorkflowError>::into_inner)?;
            (workflow.on_record.0)();
            Ok(ticket)
        })
    }
}

fn totals(
    ticket_no: u64,
    a: &Weight,
    b: &Weight,
) -> Result<(Weight, Weight, Weight), WorkflowError> {
    valeo_records::gross_tare_net(a, b).map_err(|e| {
        TransitionError::Inconsistent {
            ticket_no,
            reason: e.to_string(),
        }
        .into()
    })
}

/// A weight typed in, in kg, as a weight in the unit and resolution of
/// `like` (so it can be subtracted from it), or whole kg.
fn manual_weight(kg: f64, like: Option<&Weight>) -> Result<Weight, WorkflowError> {
    if !(kg.is_finite() && kg > 0.0 && kg <= MAX_MANUAL_WEIGHT_KG) {
        return Err(bad_input(
            "manual_weight_kg",
            format!("must be more than 0 and at most {MAX_MANUAL_WEIGHT_KG}, got {kg}"),
        ));
    }
    let (unit, decimals) = like.map_or((Unit::Kg, 0), |w| (w.unit, w.decimals));
    let value = (kg / unit.kg_factor() * 10f64.powi(i32::from(decimals))).round() as i64;
    Ok(Weight::new(value, decimals, unit))
}

/// Finds the master data the request names and checks that it fits
/// together; the records keep id and name as they are now.
fn resolve_context(
    master: &MasterData,
    rules: &WeighingConfig,
    request: &OpenRequest,
    plate: &str,
) -> Result<TicketContext, WorkflowError> {
    let version = master.version;
    let unknown = |kind, id: &str| WorkflowError::UnknownMasterData {
        kind,
        id: id.to_owned(),
        version,
    };
    let id_of =
        |field: &'static str, id: &Option<String>| -> Result<Option<String>, WorkflowError> {
            match id.as_deref().map(str::trim) {
                None | Some("") => Ok(None),
                Some(id) if id.chars().count() > MAX_TEXT_CHARS => {
                    Err(bad_input(field, "longer than 200 characters"))
                }
                Some(id) => Ok(Some(id.to_owned())),
            }
        };
    if rules.require_known_vehicle && master.vehicle(plate).is_none() {
        return Err(unknown("vehicle", plate));
    }
    let contract = match id_of("contract_id", &request.contract_id)? {
        Some(id) => Some(
            master
                .contract(&id)
                .ok_or_else(|| unknown("contract", &id))?,
        ),
        None => None,
    };
    let lot = match id_of("lot_id", &request.lot_id)? {
        Some(id) => Some(master.lot(&id).ok_or_else(|| unknown("lot", &id))?),
        None => None,
    };
    // The article may follow from the lot or the contract.
    let article_id = id_of("article_id", &request.article_id)?
        .or_else(|| lot.map(|l| l.article_id.clone()))
        .or_else(|| contract.map(|c| c.article_id.clone()));
    let article = match &article_id {
        Some(id) => Some(master.article(id).ok_or_else(|| unknown("article", id))?),
        None => None,
    };
    let partner_id = id_of("partner_id", &request.partner_id)?
        .or_else(|| contract.map(|c| c.partner_id.clone()));
    let partner = match &partner_id {
        Some(id) => Some(master.partner(id).ok_or_else(|| unknown("partner", id))?),
        None => None,
    };
    let location = match id_of("location_id", &request.location_id)? {
        Some(id) => Some(
            master
                .location(&id)
                .ok_or_else(|| unknown("location", &id))?,
        ),
        None => None,
    };
    if let (Some(lot), Some(article)) = (lot, article)
        && lot.article_id != article.id
    {
        return Err(WorkflowError::MasterDataMismatch(format!(
            "lot {:?} holds article {:?}, not {:?}",
            lot.id, lot.article_id, article.id
        )));
    }
    if let Some(c) = contract {
        if partner.is_some_and(|p| p.id != c.partner_id) {
            return Err(WorkflowError::MasterDataMismatch(format!(
                "contract {:?} is with partner {:?}",
                c.id, c.partner_id
            )));
        }
        if article.is_some_and(|a| a.id != c.article_id) {
            return Err(WorkflowError::MasterDataMismatch(format!(
                "contract {:?} is for article {:?}",
                c.id, c.article_id
            )));
        }
    }
    if rules.require_partner && partner.is_none() {
        return Err(WorkflowError::MissingField("partner"));
    }
    if rules.require_article && article.is_none() {
        return Err(WorkflowError::MissingField("article"));
    }
    let as_ref = |id: &str, name: &str| Ref {
        id: id.to_owned(),
        name: name.to_owned(),
    };
    Ok(TicketContext {
        partner: partner.map(|p| as_ref(&p.id, &p.name)),
        article: article.map(|a| as_ref(&a.id, &a.name)),
        contract_id: contract.map(|c| c.id.clone()),
        lot: lot.map(|l| as_ref(&l.id, &l.name)),
        location: location.map(|l| as_ref(&l.id, &l.name)),
        operator: None,
    })
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

fn check_plate(plate: &str) -> Result<String, WorkflowError> {
    let plate = normalise_plate(plate);
    if plate.is_empty()
        || plate.chars().count() > MAX_PLATE_CHARS
        || plate.chars().any(char::is_control)
    {
        return Err(WorkflowError::BadPlate(plate));
    }
    Ok(plate)
}

/// Optional free text: trimmed, bounded, `None` when blank.
fn check_text(field: &'static str, text: Option<&str>) -> Result<Option<String>, WorkflowError> {
    match text.map(str::trim) {
        None | Some("") => Ok(None),
        Some(t) if t.chars().count() > MAX_TEXT_CHARS || t.chars().any(char::is_control) => Err(
            bad_input(field, "at most 200 characters, no control characters"),
        ),
        Some(t) => Ok(Some(t.to_owned())),
    }
}

fn required_text(field: &'static str, text: &str) -> Result<String, WorkflowError> {
    check_text(field, Some(text))?.ok_or_else(|| bad_input(field, "must not be empty"))
}

fn save(conn: &rusqlite::Connection, ticket: &Ticket) -> Result<(), WorkflowError> {
    let text = serde_json::to_string(ticket).map_err(|e| WorkflowError::Corrupt(e.to_string()))?;
    conn.execute(
        "INSERT INTO tickets (ticket_no, plate, state, ticket) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (ticket_no) DO UPDATE SET state = excluded.state, ticket = excluded.ticket",
        params![
            ticket.ticket_no as i64,
            ticket.plate,
            ticket.state.as_str(),
            text
        ],
    )?;
    Ok(())
}

fn load(
    conn: &rusqlite::Connection,
    device_id: &str,
    ticket_no: u64,
) -> Result<Option<Ticket>, WorkflowError> {
    let text: Option<String> = conn
        .query_row(
            "SELECT ticket FROM tickets WHERE ticket_no = ?1",
            params![ticket_no as i64],
            |r| r.get(0),
        )
        .optional()?;
    text.map(|t| parse_ticket(&t, device_id)).transpose()
}

/// The stored JSON of a ticket, read back. Boxes of the first release
/// stored a smaller ticket; those rows are read by replaying them as
/// records through the state machine.
fn parse_ticket(text: &str, device_id: &str) -> Result<Ticket, WorkflowError> {
    let corrupt = |e: serde_json::Error| WorkflowError::Corrupt(e.to_string());
    if let Ok(ticket) = serde_json::from_str::<Ticket>(text) {
        return Ok(ticket);
    }
    #[derive(serde::Deserialize)]
    struct FirstRelease {
        ticket_no: u64,
        plate: String,
        direction: Direction,
        first: WeighingStep,
        second: Option<WeighingStep>,
    }
    let old: FirstRelease = serde_json::from_str(text).map_err(corrupt)?;
    let first = TicketEvent::First(FirstWeighing {
        ticket_no: old.ticket_no,
        plate: old.plate.clone(),
        direction: old.direction,
        first: old.first.clone(),
        context: TicketContext::default(),
    });
    let mut ticket = Ticket::apply(None, device_id, &first)?;
    if let Some(second) = old.second {
        let (gross, tare, net) = totals(old.ticket_no, &old.first.weight, &second.weight)?;
        let event = TicketEvent::Second(SecondWeighing {
            ticket_no: old.ticket_no,
            plate: old.plate,
            direction: old.direction,
            first: old.first,
            second,
            gross,
            tare,
            net,
            operator: None,
        });
        ticket = Ticket::apply(Some(&ticket), device_id, &event)?;
    }
    Ok(ticket)
}
