//! Grain analyzers (moisture, hectolitre weight, protein) on a serial line
//! or TCP: the box asks for a measurement result and reads it back as one
//! text line, picked apart by a configured regex. Analyzer makers each have
//! their own output format, so the format is configuration, like the scale
//! `line` protocol.
//!
//! Layering as for scales: [`parse`] (pure: a line becomes
//! [`QualityValues`]) → [`measure`] (one request, one reply over any
//! `AsyncRead + AsyncWrite`, with framing and a timeout) → [`spawn`] (the one
//! task that owns the port or connection; others ask through a channel).
//!
//! Moisture and bulk density (hectolitre weight) are legally controlled
//! measurands in Germany (MessEV § 1); the box records what the analyzer
//! reported together with its raw line, and marks the source.

use std::time::Duration;

use bytes::BytesMut;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

use crate::scale::framing::{FrameSplitter, Framing};
use crate::scale::line::Pattern;
use crate::transport::{self, AsyncReadWrite, BoxedIo, TransportConfig};

/// Requests waiting for the analyzer's task.
pub const REQUEST_QUEUE_CAPACITY: usize = 8;
/// Bytes read from the analyzer per read call.
const READ_CHUNK_BYTES: usize = 256;

/// One `[[analyzers]]` entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnalyzerConfig {
    /// 1–64 of `A-Z a-z 0-9 - _`; recorded as the source of the values.
    pub id: String,
    pub transport: TransportConfig,
    /// Bytes that ask for the result of the current sample.
    #[serde(default = "default_request")]
    pub request: String,
    /// The byte that ends the result line (with LF a CR before it is dropped).
    #[serde(default = "default_frame_end")]
    pub frame_end: String,
    /// Longest result line accepted.
    #[serde(default = "default_max_frame_bytes")]
    pub max_frame_bytes: usize,
    /// Regex over the result line with the named groups `moisture`,
    /// `hectolitre` and `protein` (any of them; decimal point or comma).
    #[serde(default = "default_response_regex")]
    pub response_regex: Pattern,
    /// Regex over a line by which the analyzer reports that it cannot
    /// measure (no sample, drum empty); such a line ends the request.
    #[serde(default = "default_error_regex")]
    pub error_regex: Pattern,
    /// How long a measurement may take, request to result line.
    #[serde(default = "default_response_timeout_ms")]
    pub response_timeout_ms: u64,
}

fn default_request() -> String {
    "MEAS\r\n".to_owned()
}
fn default_frame_end() -> String {
    "\n".to_owned()
}
fn default_max_frame_bytes() -> usize {
    512
}
fn default_response_timeout_ms() -> u64 {
    10_000
}
/// The format of the simulated analyzer: `H2O=14.2;HLW=76.5;PROT=12.1`.
pub const SIMULATED_FORMAT: &str =
    r"^H2O=(?P<moisture>[0-9.,]+);HLW=(?P<hectolitre>[0-9.,]+);PROT=(?P<protein>[0-9.,]+)$";

fn default_error_regex() -> Pattern {
    Pattern::new("^ERR").expect("a valid regex")
}

fn default_response_regex() -> Pattern {
    Pattern::new(SIMULATED_FORMAT).expect("SIMULATED_FORMAT is a valid regex")
}

impl AnalyzerConfig {
    /// A config for `id` on `transport` with the defaults.
    pub fn new(id: impl Into<String>, transport: TransportConfig) -> Self {
        Self {
            id: id.into(),
            transport,
            request: default_request(),
            frame_end: default_frame_end(),
            max_frame_bytes: default_max_frame_bytes(),
            response_regex: default_response_regex(),
            error_regex: default_error_regex(),
            response_timeout_ms: default_response_timeout_ms(),
        }
    }

    /// Checks what serde cannot: errors name the analyzer and the field.
    pub fn validate(&self) -> Result<(), String> {
        let field =
            |name: &str, problem: String| Err(format!("analyzer {:?}: {name}: {problem}", self.id));
        if self.id.is_empty()
            || self.id.len() > 64
            || !self
                .id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return field("id", "must be 1-64 of A-Z a-z 0-9 - _".into());
        }
        if let Err(problem) = self.transport.validate() {
            return field("transport", problem);
        }
        if self.request.is_empty() {
            return field("request", "must not be empty".into());
        }
        if self.frame_end.len() != 1 {
            return field("frame_end", "must be one byte".into());
        }
        if !(16..=65_536).contains(&self.max_frame_bytes) {
            return field("max_frame_bytes", "must be 16..=65536".into());
        }
        if !(100..=120_000).contains(&self.response_timeout_ms) {
            return field("response_timeout_ms", "must be 100..=120000".into());
        }
        let groups: Vec<_> = self.response_regex.0.capture_names().flatten().collect();
        if !["moisture", "hectolitre", "protein"]
            .iter()
            .any(|g| groups.contains(g))
        {
            return field(
                "response_regex",
                "needs at least one of the named groups moisture, hectolitre, protein".into(),
            );
        }
        Ok(())
    }

    fn framing(&self) -> Framing {
        Framing {
            end: self.frame_end.as_bytes().first().copied().unwrap_or(b'\n'),
            ..Framing::lines(self.max_frame_bytes)
        }
    }
}

/// What one measurement gave.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QualityValues {
    pub moisture_percent: Option<f64>,
    /// Hectolitre weight, kg/hl.
    pub hectolitre_kg: Option<f64>,
    pub protein_percent: Option<f64>,
    /// The result line as received.
    pub raw: String,
}

/// Why a measurement gave no values.
#[derive(Debug, thiserror::Error)]
pub enum AnalyzerError {
    #[error("analyzer {id}: {source}")]
    Io {
        id: String,
        #[source]
        source: std::io::Error,
    },
    #[error("analyzer {id}: no result within {timeout_ms} ms")]
    Timeout { id: String, timeout_ms: u64 },
    #[error("the analyzer cannot measure: {line:?}")]
    Refused { line: String },
    #[error("analyzer result {line:?} does not match the configured format")]
    NoMatch { line: String },
    #[error("analyzer result {line:?}: {group} {text:?} is not a number from 0 to 1000")]
    BadNumber {
        line: String,
        group: &'static str,
        text: String,
    },
    #[error("analyzer {id} is not running")]
    Gone { id: String },
}

/// Picks the values out of one result line.
pub fn parse(pattern: &Pattern, line: &str) -> Result<QualityValues, AnalyzerError> {
    let captures = pattern
        .0
        .captures(line)
        .ok_or_else(|| AnalyzerError::NoMatch {
            line: line.to_owned(),
        })?;
    let number = |group: &'static str| -> Result<Option<f64>, AnalyzerError> {
        let Some(text) = captures.name(group).map(|m| m.as_str().trim()) else {
            return Ok(None);
        };
        let bad = || AnalyzerError::BadNumber {
            line: line.to_owned(),
            group,
            text: text.to_owned(),
        };
        let value: f64 = text.replace(',', ".").parse().map_err(|_| bad())?;
        if !(value.is_finite() && (0.0..=1000.0).contains(&value)) {
            return Err(bad());
        }
        Ok(Some(value))
    };
    let values = QualityValues {
        moisture_percent: number("moisture")?,
        hectolitre_kg: number("hectolitre")?,
        protein_percent: number("protein")?,
        raw: line.to_owned(),
    };
    if values.moisture_percent.is_none()
        && values.hectolitre_kg.is_none()
        && values.protein_percent.is_none()
    {
        return Err(AnalyzerError::NoMatch {
            line: line.to_owned(),
        });
    }
    Ok(values)
}

/// Sends the request and reads result lines until one parses; lines that
/// do not match (status chatter) are skipped. The caller bounds the time.
pub async fn measure<T: AsyncReadWrite + ?Sized>(
    io: &mut T,
    config: &AnalyzerConfig,
    buf: &mut BytesMut,
) -> Result<QualityValues, AnalyzerError> {
    let io_err = |source| AnalyzerError::Io {
        id: config.id.clone(),
        source,
    };
    // A result left over from an earlier, timed-out request is stale.
    buf.clear();
    let mut splitter = FrameSplitter::new(config.framing());
    io.write_all(config.request.as_bytes())
        .await
        .map_err(io_err)?;
    io.flush().await.map_err(io_err)?;
    let mut last_error = None;
    loop {
        while let Some(frame) = splitter.next_frame(buf).transpose() {
            let Ok(frame) = frame else {
                // Garbage or an over-long line: skipped, framing resyncs.
                continue;
            };
            let line = String::from_utf8_lossy(frame.body()).trim().to_owned();
            if line.is_empty() {
                continue;
            }
            if config.error_regex.0.is_match(&line) {
                return Err(AnalyzerError::Refused { line });
            }
            match parse(&config.response_regex, &line) {
                Ok(values) => return Ok(values),
                Err(error @ AnalyzerError::BadNumber { .. }) => return Err(error),
                Err(error) => last_error = Some(error),
            }
        }
        let mut chunk = [0u8; READ_CHUNK_BYTES];
        let n = io.read(&mut chunk).await.map_err(io_err)?;
        if n == 0 {
            return Err(last_error.unwrap_or_else(|| {
                io_err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the analyzer closed the connection",
                ))
            }));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

type Reply = oneshot::Sender<Result<QualityValues, AnalyzerError>>;

/// Handle to an analyzer's task. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AnalyzerHandle {
    id: String,
    requests: mpsc::Sender<Reply>,
}

impl AnalyzerHandle {
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Takes one measurement.
    pub async fn measure(&self) -> Result<QualityValues, AnalyzerError> {
        let gone = || AnalyzerError::Gone {
            id: self.id.clone(),
        };
        let (tx, rx) = oneshot::channel();
        self.requests.send(tx).await.map_err(|_| gone())?;
        rx.await.map_err(|_| gone())?
    }
}

/// Starts the task that owns the analyzer's port. It connects on the first
/// request and again after any error, so a replugged analyzer just works.
pub fn spawn(config: AnalyzerConfig) -> AnalyzerHandle {
    let (requests, mut rx) = mpsc::channel::<Reply>(REQUEST_QUEUE_CAPACITY);
    let id = config.id.clone();
    tokio::spawn(async move {
        let mut io: Option<BoxedIo> = None;
        let mut buf = BytesMut::new();
        let timeout = Duration::from_millis(config.response_timeout_ms);
        while let Some(reply) = rx.recv().await {
            let result =
                tokio::time::timeout(timeout, async {
                    if io.is_none() {
                        io = Some(transport::connect(&config.transport).await.map_err(
                            |source| AnalyzerError::Io {
                                id: config.id.clone(),
                                source,
                            },
                        )?);
                    }
                    match io.as_mut() {
                        Some(port) => measure(port.as_mut(), &config, &mut buf).await,
                        None => Err(AnalyzerError::Gone {
                            id: config.id.clone(),
                        }),
                    }
                })
                .await
                .unwrap_or_else(|_| {
                    Err(AnalyzerError::Timeout {
                        id: config.id.clone(),
                        timeout_ms: config.response_timeout_ms,
                    })
                });
            if matches!(
                result,
                Err(AnalyzerError::Io { .. } | AnalyzerError::Timeout { .. })
            ) {
                // Start clean: reconnect on the next request.
                io = None;
            }
            if let Err(error) = &result {
                tracing::warn!(analyzer = %config.id, %error, "measurement failed");
            }
            // The asker may have given up; nothing to do then.
            drop(reply.send(result));
        }
    });
    AnalyzerHandle { id, requests }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> AnalyzerConfig {
        AnalyzerConfig::new(
            "nir-1",
            TransportConfig::Tcp {
                address: "127.0.0.1:1".into(),
                connect_timeout_ms: 100,
            },
        )
    }

    #[test]
    fn result_lines_parse_with_point_or_comma() {
        let pattern = config().response_regex;
        type Expected = Result<[Option<f64>; 3], &'static str>;
        let cases: &[(&str, Expected)] = &[
            (
                "H2O=14.2;HLW=76.5;PROT=12.1",
                Ok([Some(14.2), Some(76.5), Some(12.1)]),
            ),
            (
                "H2O=14,2;HLW=76,5;PROT=12,1",
                Ok([Some(14.2), Some(76.5), Some(12.1)]),
            ),
            ("H2O=14.2;HLW=;PROT=12.1", Err("does not match")),
            ("ERR 3 NO SAMPLE", Err("does not match")),
            ("H2O=1.2.3;HLW=76;PROT=1", Err("H2O=1.2.3")),
            ("H2O=9999;HLW=76;PROT=1", Err("not a number from 0 to 1000")),
        ];
        for (line, expected) in cases {
            match (parse(&pattern, line), expected) {
                (Ok(v), Ok(want)) => assert_eq!(
                    [v.moisture_percent, v.hectolitre_kg, v.protein_percent],
                    *want,
                    "{line}"
                ),
                (Err(e), Err(needle)) => assert!(e.to_string().contains(needle), "{line}: {e}"),
                (got, want) => panic!("{line}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn configs_are_checked_by_field() {
        let mut c = config();
        c.response_regex = Pattern::new("^(?P<weight>[0-9]+)$").unwrap();
        assert!(c.validate().unwrap_err().contains("response_regex"));
        let mut c = config();
        c.id = "a/b".into();
        assert!(c.validate().unwrap_err().contains("id"));
        assert!(config().validate().is_ok());
    }

    #[tokio::test]
    async fn a_measurement_skips_chatter_and_stale_bytes() {
        let (mut ours, mut theirs) = tokio::io::duplex(1024);
        let config = config();
        let peer = tokio::spawn(async move {
            let mut request = [0u8; 6];
            theirs.read_exact(&mut request).await.unwrap();
            assert_eq!(&request, b"MEAS\r\n");
            theirs
                .write_all(b"\xff\xfeBUSY\r\nH2O=13.9;HLW=78.0;PROT=11.5\r\n")
                .await
                .unwrap();
        });
        let mut buf = BytesMut::from(&b"H2O=99;HLW=99;PROT=99\r\n"[..]);
        let values = measure(&mut ours, &config, &mut buf).await.unwrap();
        assert_eq!(values.moisture_percent, Some(13.9));
        assert_eq!(values.raw, "H2O=13.9;HLW=78.0;PROT=11.5");
        peer.await.unwrap();
    }

    #[tokio::test]
    async fn an_unreachable_analyzer_is_an_error_naming_it_and_the_task_goes_on() {
        let handle = spawn(config());
        for _ in 0..2 {
            let err = handle.measure().await.unwrap_err().to_string();
            assert!(err.contains("nir-1"), "{err}");
        }
    }

    proptest::proptest! {
        #[test]
        fn parsing_arbitrary_lines_never_panics(line in ".{0,200}") {
            if let Ok(values) = parse(&config().response_regex, &line) {
                proptest::prop_assert_eq!(values.raw, line);
            }
        }
    }
}
