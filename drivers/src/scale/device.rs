//! The device task: the single owner of one scale connection. It connects, polls `SI` for
//! the live status, serves legal weighing requests between polls, and reconnects with
//! jittered exponential backoff. Callers talk to it through a cloneable `ScaleHandle`.
//!
//! Architecture invariant: only this task touches the connection, so a weighing command can
//! never interleave with a poll on the wire.

use std::cmp::Ordering;
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::{Instant, MissedTickBehavior};
use tracing::Instrument;

use crate::scale::error::ScaleError;
use crate::scale::mtsics::MtSicsClient;
use crate::scale::reading::{LegalWeighing, Reading, Weight};
use crate::transport::{self, BoxedIo, TransportConfig};

/// Pending weighing requests per scale; senders wait when it is full.
pub const REQUEST_QUEUE_CAPACITY: usize = 16;

/// Lower bound on the poll interval, so a zero in the config cannot make the task spin.
pub const MIN_POLL_INTERVAL_MS: u64 = 10;

/// Lower bound on the reconnect backoff, for the same reason.
pub const MIN_BACKOFF_MS: u64 = 10;

/// Scale protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Protocol {
    /// Mettler-Toledo MT-SICS level 0/1.
    #[default]
    #[serde(rename = "mt-sics")]
    MtSics,
}

fn default_poll_interval_ms() -> u64 {
    250
}

fn default_response_timeout_ms() -> u64 {
    2000
}

fn default_reconnect_backoff_min_ms() -> u64 {
    500
}

fn default_reconnect_backoff_max_ms() -> u64 {
    30_000
}

/// Configuration of one scale.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScaleConfig {
    /// The scale's id, also the `terminal_id` of its legal weighings.
    pub id: String,
    /// Wire protocol.
    #[serde(default)]
    pub protocol: Protocol,
    /// Where the terminal is attached.
    pub transport: TransportConfig,
    /// How often the live weight is polled.
    #[serde(default = "default_poll_interval_ms")]
    pub poll_interval_ms: u64,
    /// How long to wait for any reply.
    #[serde(default = "default_response_timeout_ms")]
    pub response_timeout_ms: u64,
    /// First reconnect delay.
    #[serde(default = "default_reconnect_backoff_min_ms")]
    pub reconnect_backoff_min_ms: u64,
    /// Cap on the reconnect delay.
    #[serde(default = "default_reconnect_backoff_max_ms")]
    pub reconnect_backoff_max_ms: u64,
}

impl ScaleConfig {
    /// A config with the documented defaults.
    pub fn new(id: impl Into<String>, transport: TransportConfig) -> Self {
        Self {
            id: id.into(),
            protocol: Protocol::default(),
            transport,
            poll_interval_ms: default_poll_interval_ms(),
            response_timeout_ms: default_response_timeout_ms(),
            reconnect_backoff_min_ms: default_reconnect_backoff_min_ms(),
            reconnect_backoff_max_ms: default_reconnect_backoff_max_ms(),
        }
    }

    /// Checks the id, the transport and that every interval is positive and ordered.
    pub fn validate(&self) -> Result<(), String> {
        if self.id.trim().is_empty() {
            return Err("scale id is empty".to_owned());
        }
        self.transport
            .validate()
            .map_err(|e| format!("scale {}: {e}", self.id))?;
        for (name, value) in [
            ("poll_interval_ms", self.poll_interval_ms),
            ("response_timeout_ms", self.response_timeout_ms),
            ("reconnect_backoff_min_ms", self.reconnect_backoff_min_ms),
            ("reconnect_backoff_max_ms", self.reconnect_backoff_max_ms),
        ] {
            if value == 0 {
                return Err(format!("scale {}: {name} must be greater than 0", self.id));
            }
        }
        if self.reconnect_backoff_min_ms > self.reconnect_backoff_max_ms {
            return Err(format!(
                "scale {}: reconnect_backoff_min_ms ({}) exceeds reconnect_backoff_max_ms ({})",
                self.id, self.reconnect_backoff_min_ms, self.reconnect_backoff_max_ms
            ));
        }
        Ok(())
    }
}

/// Live status of a scale, published by its device task.
#[derive(Debug, Clone, Default)]
pub struct ScaleStatus {
    /// The terminal answered on the current connection.
    pub connected: bool,
    /// The latest weight reading (polled or from a weighing).
    pub last_reading: Option<Reading>,
    /// When `last_reading` arrived.
    pub last_reading_at: Option<Instant>,
    /// Readings received since the task started.
    pub readings_total: u64,
    /// Failures talking to the terminal (I/O, timeouts, protocol, refused commands).
    pub errors_total: u64,
    /// Successful connections after the first one.
    pub reconnects_total: u64,
    /// The latest failure, for display.
    pub last_error: Option<String>,
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

    /// Asks the terminal for a stable weighing (MT-SICS "S"); refuses below `min_load` with BelowMinimumLoad. Serialised with the polling on the same connection.
    pub async fn register_weighing(&self, min_load: Weight) -> Result<LegalWeighing, ScaleError> {
        let (reply, answer) = oneshot::channel();
        self.requests
            .send(WeighingRequest { min_load, reply })
            .await
            .map_err(|_| ScaleError::Disconnected)?;
        answer.await.map_err(|_| ScaleError::Disconnected)?
    }
}

/// Spawns the owning task (tokio::spawn). It connects via transport::connect, polls `SI` every
/// poll_interval_ms for the live status, serves register_weighing requests (bounded mpsc,
/// capacity 16) between polls, reconnects with exponential backoff with jitter between min and
/// max on I/O errors/timeouts, and never exits on bad bytes. The task ends when every
/// ScaleHandle is dropped.
pub fn spawn(config: ScaleConfig) -> ScaleHandle {
    let (requests_tx, requests_rx) = mpsc::channel(REQUEST_QUEUE_CAPACITY);
    let (status_tx, status_rx) = watch::channel(ScaleStatus::default());
    let id: Arc<str> = Arc::from(config.id.as_str());
    if let Err(problem) = config.validate() {
        // Keep running with clamped values: a scale that retries is better than none.
        tracing::warn!(scale = %config.id, %problem, "scale config is invalid");
    }
    let span = tracing::info_span!("scale", id = %config.id);
    tokio::spawn(
        DeviceTask {
            config,
            requests: requests_rx,
            status: status_tx,
            ever_connected: false,
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

/// Next reconnect delay, "decorrelated jitter": uniform in [min, 3 × previous], capped at max.
fn next_backoff_ms(previous_ms: u64, min_ms: u64, max_ms: u64, rng: &mut impl Rng) -> u64 {
    let min_ms = min_ms.max(MIN_BACKOFF_MS);
    let max_ms = max_ms.max(min_ms);
    let upper = previous_ms.saturating_mul(3).clamp(min_ms, max_ms);
    rng.random_range(min_ms..=upper)
}

/// Whether a session ended because the connection broke or because every handle is gone.
enum SessionEnd {
    ConnectionLost,
    HandlesDropped,
}

struct DeviceTask {
    config: ScaleConfig,
    requests: mpsc::Receiver<WeighingRequest>,
    status: watch::Sender<ScaleStatus>,
    ever_connected: bool,
}

impl DeviceTask {
    async fn run(mut self) {
        let min_ms = self.config.reconnect_backoff_min_ms.max(MIN_BACKOFF_MS);
        let max_ms = self.config.reconnect_backoff_max_ms.max(min_ms);
        let mut backoff_ms = min_ms;
        let mut first_attempt = true;
        loop {
            if !first_attempt {
                backoff_ms = next_backoff_ms(backoff_ms, min_ms, max_ms, &mut rand::rng());
                tracing::debug!(backoff_ms, "waiting before reconnecting");
                if !self
                    .refuse_requests_for(Duration::from_millis(backoff_ms))
                    .await
                {
                    return;
                }
            }
            first_attempt = false;
            let Some(io) = self.connect().await else {
                return;
            };
            let io = match io {
                Ok(io) => io,
                Err(error) => {
                    self.record_error(&ScaleError::Io(error));
                    continue;
                }
            };
            tracing::info!(transport = %self.config.transport.describe(), "connected");
            let mut answered = false;
            match self.session(io, &mut answered).await {
                SessionEnd::HandlesDropped => return,
                SessionEnd::ConnectionLost => {
                    self.status.send_modify(|s| s.connected = false);
                    // A connection that produced answers was healthy; start backing off afresh.
                    if answered {
                        backoff_ms = min_ms;
                    }
                }
            }
        }
    }

    /// Connects while answering requests with `Disconnected`; None when every handle is gone.
    async fn connect(&mut self) -> Option<std::io::Result<BoxedIo>> {
        let connecting = transport::connect(&self.config.transport);
        tokio::pin!(connecting);
        loop {
            tokio::select! {
                result = &mut connecting => return Some(result),
                request = self.requests.recv() => match request {
                    Some(request) => refuse(request),
                    None => return None,
                },
            }
        }
    }

    /// Sleeps while answering requests with `Disconnected`; false when every handle is gone.
    async fn refuse_requests_for(&mut self, duration: Duration) -> bool {
        let sleep = tokio::time::sleep(duration);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                () = &mut sleep => return true,
                request = self.requests.recv() => match request {
                    Some(request) => refuse(request),
                    None => return false,
                },
            }
        }
    }

    async fn session(&mut self, io: BoxedIo, answered: &mut bool) -> SessionEnd {
        let mut client = MtSicsClient::new(io, self.config.response_timeout_ms);
        let poll_ms = self.config.poll_interval_ms.max(MIN_POLL_INTERVAL_MS);
        let mut poll = tokio::time::interval(Duration::from_millis(poll_ms));
        poll.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                // Weighings are rare and someone waits for them; serve them before a poll.
                biased;
                request = self.requests.recv() => {
                    let Some(request) = request else {
                        return SessionEnd::HandlesDropped;
                    };
                    let result = self.weigh(&mut client, request.min_load).await;
                    let lost = self.after_exchange(result.as_ref().err(), answered);
                    if request.reply.send(result).is_err() {
                        tracing::debug!("weighing requester gave up before the answer");
                    }
                    if lost {
                        return SessionEnd::ConnectionLost;
                    }
                }
                _ = poll.tick() => {
                    match client.immediate_weight().await {
                        Ok(reading) => {
                            self.record_reading(reading);
                            self.after_exchange(None, answered);
                        }
                        Err(error) => {
                            if self.after_exchange(Some(&error), answered) {
                                return SessionEnd::ConnectionLost;
                            }
                        }
                    }
                }
            }
        }
    }

    /// Books the outcome of one exchange; true when the connection must be re-established.
    fn after_exchange(&mut self, error: Option<&ScaleError>, answered: &mut bool) -> bool {
        match error {
            Some(error) if error.is_connection_error() => {
                self.record_error(error);
                true
            }
            Some(error) => {
                // The terminal answered: the link works, it only refused or reported a condition.
                self.mark_answered(answered);
                if matches!(error, ScaleError::Rejected { .. }) {
                    self.record_error(error);
                }
                false
            }
            None => {
                self.mark_answered(answered);
                false
            }
        }
    }

    fn mark_answered(&mut self, answered: &mut bool) {
        if !*answered {
            *answered = true;
            let reconnected = self.ever_connected;
            self.ever_connected = true;
            self.status.send_modify(|s| {
                s.connected = true;
                if reconnected {
                    s.reconnects_total += 1;
                }
            });
        }
    }

    async fn weigh(
        &mut self,
        client: &mut MtSicsClient<BoxedIo>,
        min_load: Weight,
    ) -> Result<LegalWeighing, ScaleError> {
        let reading = client.stable_weight().await?;
        let raw = reading.raw.clone();
        let weight = reading.net;
        self.record_reading(reading);
        let Some(weight) = weight else {
            return Err(ScaleError::Protocol(
                "stable reply without a weight".to_owned(),
            ));
        };
        match weight.compare(&min_load) {
            Some(Ordering::Greater | Ordering::Equal) => Ok(LegalWeighing {
                weight,
                alibi_id: None,
                terminal_id: self.config.id.clone(),
                raw,
            }),
            _ => Err(ScaleError::BelowMinimumLoad {
                weight,
                min: min_load,
            }),
        }
    }

    fn record_reading(&mut self, reading: Reading) {
        self.status.send_modify(|s| {
            s.last_reading = Some(reading);
            s.last_reading_at = Some(Instant::now());
            s.readings_total += 1;
        });
    }

    fn record_error(&mut self, error: &ScaleError) {
        tracing::warn!(%error, "scale error");
        let message = error.to_string();
        self.status.send_modify(|s| {
            s.errors_total += 1;
            s.last_error = Some(message);
        });
    }
}

fn refuse(request: WeighingRequest) {
    if request.reply.send(Err(ScaleError::Disconnected)).is_err() {
        tracing::debug!("weighing requester gave up before the answer");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn backoff_grows_with_jitter_and_stays_within_bounds() {
        let mut rng = StdRng::seed_from_u64(7);
        let mut delay = 500;
        let mut seen = Vec::new();
        for _ in 0..200 {
            delay = next_backoff_ms(delay, 500, 30_000, &mut rng);
            assert!((500..=30_000).contains(&delay), "{delay}");
            seen.push(delay);
        }
        assert!(seen.iter().any(|&d| d > 10_000), "backoff never grew");
        seen.sort_unstable();
        seen.dedup();
        assert!(seen.len() > 50, "no jitter");
        assert_eq!(next_backoff_ms(0, 0, 0, &mut rng), MIN_BACKOFF_MS);
    }

    #[test]
    fn config_defaults_and_validation() {
        let cfg: ScaleConfig = toml::from_str(
            "id = \"bridge-1\"\n[transport]\nkind = \"tcp\"\naddress = \"127.0.0.1:4305\"\n",
        )
        .unwrap();
        assert_eq!(
            cfg,
            ScaleConfig::new(
                "bridge-1",
                TransportConfig::Tcp {
                    address: "127.0.0.1:4305".to_owned(),
                    connect_timeout_ms: 3000
                }
            )
        );
        cfg.validate().unwrap();
        let json = serde_json::to_value(&cfg).unwrap();
        assert_eq!(json["protocol"], "mt-sics");

        assert!(
            toml::from_str::<ScaleConfig>(
                "id = \"b\"\nspeed = 1\n[transport]\nkind = \"tcp\"\naddress = \"a:1\"\n"
            )
            .is_err()
        );
        let mut bad = cfg.clone();
        bad.reconnect_backoff_min_ms = 60_000;
        assert!(bad.validate().is_err());
        let mut bad = cfg;
        bad.poll_interval_ms = 0;
        assert!(bad.validate().is_err());
    }
}
