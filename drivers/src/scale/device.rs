//! The device task: one per configured scale. It polls (or follows the stream of) its
//! terminal for the live status, serves legal weighing requests, keeps per-device timeout,
//! retry and degrade/backoff state, and publishes a `ScaleStatus`. Callers talk to it through
//! a cloneable `ScaleHandle`.
//!
//! The connection itself belongs to the line task (`scale::bus`), shared by every device on
//! the same serial port or TCP address; a device only submits requests. So a dead device on
//! an RS-485 line costs the others one timeout per (backed-off) poll, never a stall.
//!
//! Legal weighings come only from a terminal's register/print command (`S`, `P`, `<RN>`,
//! `DR`, a configured request). Terminals without one (Toledo continuous output, a line
//! protocol without `register_request`) register the terminal-stable value once the
//! band-and-time filter agrees, and such weighings carry no alibi id.

use std::cmp::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tracing::Instrument;

use crate::scale::bus::{self, Backoff, LineHandle};
pub use crate::scale::config::{Mode, Protocol, ScaleConfig};
use crate::scale::error::ScaleError;
use crate::scale::protocol::{Answer, Refusal, Reply, Request, ScaleProtocol};
use crate::scale::reading::{LegalWeighing, Reading, Unit, Weight};
use crate::scale::stability::StabilityFilter;

/// Pending weighing requests per scale; senders wait when it is full.
pub const REQUEST_QUEUE_CAPACITY: usize = 16;

/// Lower bound on the poll interval, so a zero in the config cannot make the task spin.
pub const MIN_POLL_INTERVAL_MS: u64 = 10;

/// Lower bound on the reconnect backoff.
pub const MIN_BACKOFF_MS: u64 = bus::MIN_BACKOFF_MS;

/// Live status of a scale, published by its device task (for `/health` and metrics).
#[derive(Debug, Clone, Default)]
pub struct ScaleStatus {
    /// The terminal answered on the current connection.
    pub connected: bool,
    /// The latest weight reading (polled, streamed or from a weighing).
    pub last_reading: Option<Reading>,
    /// When `last_reading` arrived.
    pub last_reading_at: Option<Instant>,
    /// Readings received since the task started.
    pub readings_total: u64,
    /// Failures talking to the terminal (I/O, timeouts, protocol, refused commands).
    pub errors_total: u64,
    /// Of `errors_total`, the requests that got no answer in time.
    pub timeouts_total: u64,
    /// Garbage or unrelated frames skipped while waiting for answers.
    pub skipped_frames_total: u64,
    /// Successful connections after the first one.
    pub reconnects_total: u64,
    /// The latest failure, for display.
    pub last_error: Option<String>,
    /// Failures in a row; reset by the next answer.
    pub consecutive_failures: u32,
    /// The device failed `degrade_after_failures` times in a row and is polled with backoff.
    pub degraded: bool,
    /// Streaming protocols: the band-and-time filter and the terminal agree the weight is
    /// settled. Poll protocols: the terminal's stable flag of the last reading.
    pub settled: bool,
}

#[derive(Debug)]
struct WeighingRequest {
    min_load: Weight,
    reply: oneshot::Sender<Result<LegalWeighing, ScaleError>>,
}

/// Cloneable handle to a scale's device task.
#[derive(Debug, Clone)]
pub struct ScaleHandle {
    id: Arc<str>,
    status: watch::Receiver<ScaleStatus>,
    requests: mpsc::Sender<WeighingRequest>,
}

impl ScaleHandle {
    /// The scale's configured id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// A receiver of the live status.
    pub fn status(&self) -> watch::Receiver<ScaleStatus> {
        self.status.clone()
    }

    /// Asks the terminal for a legal weighing with its register/print command; refuses below
    /// the larger of `min_load` and the configured minimum in e (`BelowMinimumLoad`), while
    /// unstable (`NotStable`) and on over/underload. Serialised with all other traffic on the
    /// line.
    pub async fn register_weighing(&self, min_load: Weight) -> Result<LegalWeighing, ScaleError> {
        let (reply, answer) = oneshot::channel();
        self.requests
            .send(WeighingRequest { min_load, reply })
            .await
            .map_err(|_| ScaleError::Disconnected)?;
        answer.await.map_err(|_| ScaleError::Disconnected)?
    }
}

/// Spawns the device task (tokio::spawn) and, if none runs for its port or address yet, the
/// line task that owns the connection. The device polls every `poll_interval_ms` (or follows
/// the stream), serves `register_weighing` between readings, and never exits on bad bytes.
/// It ends when every `ScaleHandle` is dropped; the line task ends with its last device.
pub fn spawn(config: ScaleConfig) -> ScaleHandle {
    let (requests_tx, requests_rx) = mpsc::channel(REQUEST_QUEUE_CAPACITY);
    let (status_tx, status_rx) = watch::channel(ScaleStatus::default());
    let id: Arc<str> = Arc::from(config.id.as_str());
    if let Err(problem) = config.validate() {
        // Keep running with clamped values: a scale that retries is better than none.
        tracing::warn!(scale = %config.id, %problem, "scale config is invalid");
    }
    let line = bus::open_line(
        &config.transport,
        Backoff {
            min_ms: config.reconnect_backoff_min_ms,
            max_ms: config.reconnect_backoff_max_ms,
        },
    );
    let protocol = config.build_protocol();
    let division = config.division.unwrap_or(Weight::new(1, 0, Unit::Kg));
    let span = tracing::info_span!("scale", id = %config.id, protocol = %config.protocol);
    let stream = config.effective_mode() == Mode::Stream;
    tokio::spawn(
        DeviceTask {
            filter: StabilityFilter::new(config.stability.clone(), division),
            config,
            protocol,
            line,
            stream,
            requests: requests_rx,
            status: status_tx,
            ever_connected: false,
            streaming: false,
            handshake_done: false,
            degraded_interval_ms: 0,
        }
        .run()
        .instrument(span),
    );
    ScaleHandle {
        id,
        status: status_rx,
        requests: requests_tx,
    }
}

struct DeviceTask {
    config: ScaleConfig,
    protocol: Arc<dyn ScaleProtocol>,
    line: LineHandle,
    /// Configured for streaming.
    stream: bool,
    requests: mpsc::Receiver<WeighingRequest>,
    status: watch::Sender<ScaleStatus>,
    filter: StabilityFilter,
    ever_connected: bool,
    /// The stream was started on the current connection.
    streaming: bool,
    handshake_done: bool,
    /// Current poll interval while degraded (0 when healthy).
    degraded_interval_ms: u64,
}

fn rejected(request: Request, text: &str) -> ScaleError {
    ScaleError::Rejected {
        command: request.as_str().to_owned(),
        reply: text.to_owned(),
    }
}

fn refusal_error(request: Request, refusal: &Refusal) -> ScaleError {
    match refusal {
        Refusal::NotStable => ScaleError::NotStable,
        Refusal::Overload => ScaleError::Overload,
        Refusal::Underload => ScaleError::Underload,
        Refusal::Weight(text) | Refusal::General(text) => rejected(request, text),
    }
}

impl DeviceTask {
    async fn run(mut self) {
        let mut next_poll = Instant::now();
        loop {
            tokio::select! {
                // Weighings are rare and someone waits for them; serve them before a poll.
                biased;
                request = self.requests.recv() => {
                    let Some(request) = request else {
                        return;
                    };
                    let result = self.weigh(request.min_load).await;
                    if let Err(error) = &result {
                        tracing::info!(%error, "weighing refused");
                    }
                    if request.reply.send(result).is_err() {
                        tracing::debug!("weighing requester gave up before the answer");
                    }
                }
                () = tokio::time::sleep_until(next_poll) => {
                    self.poll_once().await;
                    next_poll = Instant::now() + self.poll_interval();
                }
            }
        }
    }

    fn poll_interval(&self) -> Duration {
        if self.degraded_interval_ms > 0 {
            return Duration::from_millis(self.degraded_interval_ms);
        }
        if self.stream && self.streaming {
            // The stream paces itself: the next frame is awaited right away.
            return Duration::ZERO;
        }
        Duration::from_millis(self.config.poll_interval_ms.max(MIN_POLL_INTERVAL_MS))
    }

    /// One request on the line, booked in the status.
    async fn call(&mut self, request: Request, timeout_ms: u64) -> Result<Answer, ScaleError> {
        let result = self.line.call(&self.protocol, request, timeout_ms).await;
        if result.skipped_frames > 0 {
            self.status
                .send_modify(|s| s.skipped_frames_total += result.skipped_frames);
        }
        match &result.answer {
            Ok(_) => self.mark_answered(),
            Err(error) => self.record_failure(error),
        }
        result.answer
    }

    async fn poll_once(&mut self) {
        let timeout_ms = self.config.response_timeout_ms;
        if self.config.handshake && !self.handshake_done {
            match self.call(Request::Handshake, timeout_ms).await {
                Ok(_) => self.handshake_done = true,
                Err(_) => return,
            }
        }
        let request = match (self.stream, self.streaming) {
            (true, false) => Request::StartStream,
            (true, true) => Request::Next,
            (false, _) => Request::Poll,
        };
        let mut attempts = 0;
        loop {
            let result = self.call(request, timeout_ms).await;
            match result {
                Ok(answer) => {
                    if request == Request::StartStream {
                        self.streaming = true;
                    }
                    self.take_reading(&answer.reply);
                    return;
                }
                Err(ScaleError::Timeout { .. } | ScaleError::Protocol(_))
                    if attempts < self.config.retries && !self.stream =>
                {
                    attempts += 1;
                }
                Err(_) => return,
            }
        }
    }

    /// Books the reading a reply carries, if any; returns it.
    fn take_reading(&mut self, reply: &Reply) -> Option<Reading> {
        let reading = match reply {
            Reply::Reading(reading) | Reply::Registered { reading, .. } => reading.clone(),
            Reply::Refused(_) | Reply::Info { .. } => return None,
        };
        let settled = if self.stream {
            self.filter.push(&reading, Instant::now())
        } else {
            reading.stable
        };
        self.status.send_modify(|s| {
            s.last_reading = Some(reading.clone());
            s.last_reading_at = Some(Instant::now());
            s.readings_total += 1;
            s.settled = settled;
        });
        Some(reading)
    }

    async fn weigh(&mut self, min_load: Weight) -> Result<LegalWeighing, ScaleError> {
        if !self.status.borrow().connected {
            return Err(ScaleError::Disconnected);
        }
        let min_load = self.config.effective_min_load(min_load);
        let timeout_ms = self.config.response_timeout_ms;
        if self.protocol.encode(Request::Register).is_some() {
            if self.streaming {
                // End the stream so its frames cannot be taken for the registration's reply.
                self.streaming = false;
                self.call(Request::StopStream, timeout_ms).await?;
            }
            if !self.streaming && self.protocol.encode(Request::Poll).is_some() {
                self.precheck(min_load, timeout_ms).await?;
            }
            // Never retried: a lost reply may hide a registration that happened, and a retry
            // would register the truck a second time.
            let answer = self.call(Request::Register, timeout_ms).await?;
            return self.legal(Request::Register, &answer, min_load, true);
        }
        if self.stream {
            return self.weigh_from_stream(min_load).await;
        }
        let answer = self.call(Request::Poll, timeout_ms).await?;
        self.legal(Request::Poll, &answer, min_load, true)
    }

    /// Reads the live weight before a registration: terminals with an alibi memory store every
    /// registration, so an empty or overloaded bridge must be refused before it takes an alibi
    /// number that no ticket will carry. A weight still in motion is left to the registration,
    /// which waits for stability (or refuses) by itself.
    async fn precheck(&mut self, min_load: Weight, timeout_ms: u64) -> Result<(), ScaleError> {
        let answer = self.call(Request::Poll, timeout_ms).await?;
        let Some(reading) = self.take_reading(&answer.reply) else {
            return Ok(());
        };
        if reading.overload {
            return Err(ScaleError::Overload);
        }
        if reading.underload {
            return Err(ScaleError::Underload);
        }
        match reading.net {
            Some(weight)
                if reading.stable && matches!(weight.compare(&min_load), Some(Ordering::Less)) =>
            {
                Err(ScaleError::BelowMinimumLoad {
                    weight,
                    min: min_load,
                })
            }
            _ => Ok(()),
        }
    }

    /// Stream-only terminals: wait for the terminal's stable flag and the band-and-time
    /// filter to agree, up to `register_wait_ms`.
    async fn weigh_from_stream(&mut self, min_load: Weight) -> Result<LegalWeighing, ScaleError> {
        let deadline = Instant::now() + Duration::from_millis(self.config.register_wait_ms);
        let timeout_ms = self.config.response_timeout_ms;
        loop {
            let request = if self.streaming {
                Request::Next
            } else {
                Request::StartStream
            };
            let answer = self.call(request, timeout_ms).await?;
            self.streaming = true;
            self.take_reading(&answer.reply);
            let settled = self.filter.is_settled();
            let refused = matches!(&answer.reply, Reply::Reading(r) if r.overload || r.underload);
            if settled || refused || Instant::now() >= deadline {
                return self.legal(request, &answer, min_load, settled);
            }
        }
    }

    /// Turns a register answer into a `LegalWeighing`, or the reason why not.
    fn legal(
        &mut self,
        request: Request,
        answer: &Answer,
        min_load: Weight,
        settled: bool,
    ) -> Result<LegalWeighing, ScaleError> {
        let (alibi_id, terminal_time) = match &answer.reply {
            Reply::Refused(refusal) => return Err(refusal_error(request, refusal)),
            Reply::Info { text, .. } => return Err(rejected(request, text)),
            Reply::Reading(_) => (None, None),
            Reply::Registered {
                alibi_id,
                terminal_time,
                ..
            } => (alibi_id.clone(), terminal_time.clone()),
        };
        let Some(reading) = self.take_reading(&answer.reply) else {
            return Err(ScaleError::Protocol("reply without a reading".to_owned()));
        };
        if reading.overload {
            return Err(ScaleError::Overload);
        }
        if reading.underload {
            return Err(ScaleError::Underload);
        }
        if !reading.stable || !settled {
            return Err(ScaleError::NotStable);
        }
        let Some(weight) = reading.net else {
            return Err(ScaleError::Protocol(
                "stable reply without a weight".to_owned(),
            ));
        };
        match weight.compare(&min_load) {
            Some(Ordering::Greater | Ordering::Equal) => Ok(LegalWeighing {
                weight,
                gross: reading.gross,
                tare: reading.tare,
                tare_kind: reading.tare_kind,
                alibi_id,
                terminal_id: self.config.id.clone(),
                terminal_time,
                raw: answer.raw.clone(),
            }),
            _ => Err(ScaleError::BelowMinimumLoad {
                weight,
                min: min_load,
            }),
        }
    }

    fn mark_answered(&mut self) {
        let reconnected = self.ever_connected;
        self.ever_connected = true;
        self.degraded_interval_ms = 0;
        self.status.send_if_modified(|s| {
            let changed = !s.connected || s.degraded || s.consecutive_failures > 0;
            if !s.connected && reconnected {
                s.reconnects_total += 1;
            }
            s.connected = true;
            s.degraded = false;
            s.consecutive_failures = 0;
            changed
        });
    }

    fn record_failure(&mut self, error: &ScaleError) {
        let connection_lost = error.is_connection_error();
        if connection_lost {
            // A new connection needs the stream restarted, the filter refilled and the
            // protocol confirmed again.
            self.streaming = false;
            self.handshake_done = false;
            self.filter.reset();
        }
        if matches!(error, ScaleError::Disconnected) {
            // The line is backing off; that is already counted where the connection failed.
            self.status
                .send_if_modified(|s| std::mem::replace(&mut s.connected, false));
            return;
        }
        tracing::warn!(%error, "scale error");
        let message = error.to_string();
        let is_timeout = matches!(error, ScaleError::Timeout { .. });
        let degrade_after = self.config.degrade_after_failures.max(1);
        let mut degraded = false;
        self.status.send_modify(|s| {
            s.errors_total += 1;
            if is_timeout {
                s.timeouts_total += 1;
            }
            s.last_error = Some(message);
            if connection_lost {
                s.connected = false;
            }
            s.consecutive_failures = s.consecutive_failures.saturating_add(1);
            degraded = s.consecutive_failures >= degrade_after;
            s.degraded = degraded;
        });
        if degraded {
            let base = self.config.poll_interval_ms.max(MIN_POLL_INTERVAL_MS);
            let cap = self.config.degraded_poll_interval_max_ms.max(base);
            self.degraded_interval_ms =
                self.degraded_interval_ms.saturating_mul(2).clamp(base, cap);
        }
    }
}
