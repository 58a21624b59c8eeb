//! The line owner: one task per serial port or TCP address owns the connection and runs
//! every request on it, one at a time, for every device on that line (an RS-485 bus with
//! several terminals, or one terminal). Devices send `Job`s through a bounded channel; the
//! task connects on demand, reconnects with jittered exponential backoff, and answers each
//! job with the device's own timeout, so a dead device costs the line only its timeout.
//!
//! Architecture invariant: only this task touches the connection, so requests of different
//! devices (and a weighing and a poll of the same device) never interleave on the wire.
//!
//! Lines are found by key (serial path or TCP address) in a process-wide registry of weak
//! senders: the task ends when the last device on the line is gone, and the next device
//! for that key starts a fresh one.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use rand::Rng;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tracing::Instrument;

use crate::scale::error::ScaleError;
use crate::scale::link::Link;
use crate::scale::protocol::{Answer, ProtocolCodec, Request, ScaleProtocol};
use crate::transport::{self, BoxedIo, TransportConfig};

/// Jobs queued per line; devices wait when it is full.
pub const LINE_QUEUE_CAPACITY: usize = 32;

/// Timeouts in a row, from any device, after which the connection itself is suspected and
/// re-established (a TCP link can die without an error).
pub const LINE_TIMEOUTS_BEFORE_RECONNECT: u32 = 3;

/// Lower bound on the reconnect backoff, so a zero in the config cannot make the task spin.
pub const MIN_BACKOFF_MS: u64 = 10;

/// One request of one device.
#[derive(Debug)]
pub(crate) struct Job {
    pub(crate) protocol: Arc<dyn ScaleProtocol>,
    pub(crate) request: Request,
    pub(crate) bytes: Vec<u8>,
    pub(crate) timeout_ms: u64,
    pub(crate) reply: oneshot::Sender<JobResult>,
}

/// The outcome of a job and how many frames were skipped while waiting for it.
#[derive(Debug)]
pub(crate) struct JobResult {
    pub(crate) answer: Result<Answer, ScaleError>,
    pub(crate) skipped_frames: u64,
}

/// Backoff settings of a line (taken from the first device that opened it).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Backoff {
    pub(crate) min_ms: u64,
    pub(crate) max_ms: u64,
}

/// A device's way onto its line.
#[derive(Debug, Clone)]
pub(crate) struct LineHandle {
    jobs: mpsc::Sender<Job>,
    transport: TransportConfig,
    backoff: Backoff,
}

impl LineHandle {
    /// Runs `request` for `protocol` on the line. If the line task is gone (its runtime shut
    /// down), the next call opens the line again.
    pub(crate) async fn call(
        &mut self,
        protocol: &Arc<dyn ScaleProtocol>,
        request: Request,
        timeout_ms: u64,
    ) -> JobResult {
        let Some(bytes) = protocol.encode(request) else {
            return JobResult {
                answer: Err(ScaleError::Unsupported(format!(
                    "{} has no {} command",
                    protocol.protocol(),
                    request.as_str()
                ))),
                skipped_frames: 0,
            };
        };
        if self.jobs.is_closed() {
            *self = open_line(&self.transport, self.backoff);
        }
        let (reply, answer) = oneshot::channel();
        let job = Job {
            protocol: Arc::clone(protocol),
            request,
            bytes,
            timeout_ms,
            reply,
        };
        if self.jobs.send(job).await.is_err() {
            return JobResult {
                answer: Err(ScaleError::Disconnected),
                skipped_frames: 0,
            };
        }
        answer.await.unwrap_or(JobResult {
            answer: Err(ScaleError::Disconnected),
            skipped_frames: 0,
        })
    }
}

type Registry = Mutex<HashMap<String, mpsc::WeakSender<Job>>>;

fn registry() -> &'static Registry {
    static LINES: OnceLock<Registry> = OnceLock::new();
    LINES.get_or_init(Registry::default)
}

/// The key that identifies a physical line.
pub(crate) fn line_key(transport: &TransportConfig) -> String {
    match transport {
        TransportConfig::Serial { path, .. } => format!("serial:{}", path.display()),
        TransportConfig::Tcp { address, .. } => format!("tcp:{address}"),
    }
}

/// The handle of the line `transport` names, starting its owner task if none runs.
pub(crate) fn open_line(transport: &TransportConfig, backoff: Backoff) -> LineHandle {
    let key = line_key(transport);
    let mut lines = registry().lock().unwrap_or_else(PoisonError::into_inner);
    lines.retain(|_, weak| weak.strong_count() > 0);
    if let Some(jobs) = lines.get(&key).and_then(mpsc::WeakSender::upgrade)
        && !jobs.is_closed()
    {
        return LineHandle {
            jobs,
            transport: transport.clone(),
            backoff,
        };
    }
    let (jobs, receiver) = mpsc::channel(LINE_QUEUE_CAPACITY);
    lines.insert(key.clone(), jobs.downgrade());
    let span = tracing::info_span!("line", key = %key);
    tokio::spawn(
        LineTask {
            transport: transport.clone(),
            backoff,
            jobs: receiver,
            link: None,
            next_connect_at: None,
            backoff_ms: backoff.min_ms.max(MIN_BACKOFF_MS),
            timeouts_in_a_row: 0,
        }
        .run()
        .instrument(span),
    );
    LineHandle {
        jobs,
        transport: transport.clone(),
        backoff,
    }
}

/// Next reconnect delay, "decorrelated jitter": uniform in [min, 3 × previous], capped at max.
pub(crate) fn next_backoff_ms(
    previous_ms: u64,
    min_ms: u64,
    max_ms: u64,
    rng: &mut impl Rng,
) -> u64 {
    let min_ms = min_ms.max(MIN_BACKOFF_MS);
    let max_ms = max_ms.max(min_ms);
    let upper = previous_ms.saturating_mul(3).clamp(min_ms, max_ms);
    rng.random_range(min_ms..=upper)
}

struct LineTask {
    transport: TransportConfig,
    backoff: Backoff,
    jobs: mpsc::Receiver<Job>,
    link: Option<Link<BoxedIo, ProtocolCodec>>,
    /// While set and in the future, jobs are refused instead of reconnecting.
    next_connect_at: Option<Instant>,
    backoff_ms: u64,
    timeouts_in_a_row: u32,
}

impl LineTask {
    async fn run(mut self) {
        while let Some(job) = self.jobs.recv().await {
            let result = self.serve(&job).await;
            if job.reply.send(result).is_err() {
                tracing::debug!("device gave up before the answer");
            }
        }
        tracing::debug!("last device left the line");
    }

    fn schedule_reconnect(&mut self) {
        self.link = None;
        self.backoff_ms = next_backoff_ms(
            self.backoff_ms,
            self.backoff.min_ms,
            self.backoff.max_ms,
            &mut rand::rng(),
        );
        self.next_connect_at = Some(Instant::now() + Duration::from_millis(self.backoff_ms));
    }

    async fn serve(&mut self, job: &Job) -> JobResult {
        let skipped_before = self.link.as_ref().map_or(0, Link::skipped_frames_total);
        if self.link.is_none() {
            if self.next_connect_at.is_some_and(|at| Instant::now() < at) {
                return JobResult {
                    answer: Err(ScaleError::Disconnected),
                    skipped_frames: 0,
                };
            }
            match transport::connect(&self.transport).await {
                Ok(io) => {
                    tracing::info!(transport = %self.transport.describe(), "connected");
                    self.link = Some(Link::new(io, ProtocolCodec::new(Arc::clone(&job.protocol))));
                    self.timeouts_in_a_row = 0;
                }
                Err(error) => {
                    self.schedule_reconnect();
                    return JobResult {
                        answer: Err(ScaleError::Io(error)),
                        skipped_frames: 0,
                    };
                }
            }
        }
        let Some(link) = self.link.as_mut() else {
            return JobResult {
                answer: Err(ScaleError::Disconnected),
                skipped_frames: 0,
            };
        };
        link.codec_mut().switch_to(&job.protocol);
        let (protocol, request) = (&job.protocol, job.request);
        let answer = link
            .transact(
                &job.bytes,
                job.timeout_ms,
                request.as_str(),
                |a: &Answer| protocol.answers(request, &a.reply),
            )
            .await
            .map_err(|error| match error {
                // Devices read `Disconnected` as "the line is backing off"; a peer that closed
                // the connection is a failure they count.
                ScaleError::Disconnected => ScaleError::Io(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "connection closed by the terminal",
                )),
                other => other,
            });
        let skipped_frames = link.skipped_frames_total().saturating_sub(skipped_before);
        match &answer {
            Ok(_) => {
                self.timeouts_in_a_row = 0;
                self.backoff_ms = self.backoff.min_ms.max(MIN_BACKOFF_MS);
                self.next_connect_at = None;
            }
            Err(ScaleError::Timeout { .. }) => {
                self.timeouts_in_a_row += 1;
                if self.timeouts_in_a_row >= LINE_TIMEOUTS_BEFORE_RECONNECT {
                    tracing::info!(
                        "no device answered {LINE_TIMEOUTS_BEFORE_RECONNECT} times in a row, reconnecting"
                    );
                    self.timeouts_in_a_row = 0;
                    self.schedule_reconnect();
                }
            }
            Err(error) if error.is_connection_error() => {
                tracing::info!(%error, "connection lost");
                self.schedule_reconnect();
            }
            Err(_) => {}
        }
        JobResult {
            answer,
            skipped_frames,
        }
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
    fn line_keys_tell_transports_apart() {
        let tcp = TransportConfig::Tcp {
            address: "10.0.0.1:1234".to_owned(),
            connect_timeout_ms: 1,
        };
        assert_eq!(line_key(&tcp), "tcp:10.0.0.1:1234");
    }
}
