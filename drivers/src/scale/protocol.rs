//! The protocol seam: `ScaleProtocol` is what each wire protocol implements (framing, how to
//! encode a `Request`, how to parse a frame into a protocol-independent `Reply`, and which
//! reply answers which request). It is pure: no I/O, no time. `ProtocolCodec` turns any
//! `ScaleProtocol` into a `Decode` for the shared `Link`, so all protocols share one client.

use std::fmt;
use std::sync::Arc;

use bytes::BytesMut;
use serde::{Deserialize, Serialize};

use crate::scale::framing::{CodecError, FrameSplitter, Framing, RawFrame};
use crate::scale::link::Decode;
use crate::scale::reading::Reading;

/// The wire protocol a scale is bound to. Never guessed from bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum Protocol {
    /// Mettler-Toledo MT-SICS level 0/1.
    #[default]
    #[serde(rename = "mt-sics")]
    MtSics,
    /// Toledo standard continuous output (SWA/SWB/SWC).
    #[serde(rename = "toledo-continuous")]
    ToledoContinuous,
    /// SMA SCP-0499 level 1 and 2.
    #[serde(rename = "sma")]
    Sma,
    /// SysTec IT terminals (`<RM>`, `<RN>`).
    #[serde(rename = "systec")]
    Systec,
    /// Schenck DISOMAT, DDP 8785 poll procedure (`TG`, `DR`).
    #[serde(rename = "disomat")]
    Disomat,
    /// A line protocol described entirely by configuration.
    #[serde(rename = "line")]
    Line,
}

impl Protocol {
    /// Every protocol, for tables, tests and the simulator's command line.
    pub const ALL: [Protocol; 6] = [
        Protocol::MtSics,
        Protocol::ToledoContinuous,
        Protocol::Sma,
        Protocol::Systec,
        Protocol::Disomat,
        Protocol::Line,
    ];

    /// The name used in configuration files.
    pub fn as_str(&self) -> &'static str {
        match self {
            Protocol::MtSics => "mt-sics",
            Protocol::ToledoContinuous => "toledo-continuous",
            Protocol::Sma => "sma",
            Protocol::Systec => "systec",
            Protocol::Disomat => "disomat",
            Protocol::Line => "line",
        }
    }

    /// Parses a configuration name.
    pub fn from_name(name: &str) -> Option<Protocol> {
        Protocol::ALL.into_iter().find(|p| p.as_str() == name)
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the device task asks a terminal for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Request {
    /// The live weight, stable or not (MT-SICS `SI`, SMA `W`, SysTec `<RM>`, DISOMAT `TG`).
    Poll,
    /// Nothing is sent: the next weight frame of a continuous stream.
    Next,
    /// A legal registration (MT-SICS `S`, SMA `P`, SysTec `<RN>`, DISOMAT `DR`).
    Register,
    /// Start continuous output (MT-SICS `SIR`; nothing for terminals that always stream).
    StartStream,
    /// End continuous output with a command whose own reply marks the end of the stream.
    StopStream,
    /// Confirm the terminal speaks the configured protocol (identity or status command).
    Handshake,
}

impl Request {
    /// The request's name for logs.
    pub fn as_str(&self) -> &'static str {
        match self {
            Request::Poll => "poll",
            Request::Next => "next",
            Request::Register => "register",
            Request::StartStream => "start-stream",
            Request::StopStream => "stop-stream",
            Request::Handshake => "handshake",
        }
    }

    /// Whether a weight reply (a reading or a weight refusal) is an answer to this request.
    pub fn wants_weight(&self) -> bool {
        matches!(
            self,
            Request::Poll | Request::Next | Request::Register | Request::StartStream
        )
    }
}

/// Why a terminal did not deliver a weight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// In motion, or no stability within the terminal's own wait.
    NotStable,
    /// Above the weighing range.
    Overload,
    /// Below the weighing range.
    Underload,
    /// A weight-related error status of the terminal (zero error, tare error, error code).
    Weight(String),
    /// A general error reply that answers any command (MT-SICS `ES`, SMA `?`).
    General(String),
}

/// A decoded frame, in protocol-independent terms.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// A weight report.
    Reading(Reading),
    /// The answer to a registration: the registered reading and the terminal's references.
    Registered {
        /// The registered weight and status.
        reading: Reading,
        /// Alibi/ident/protocol number.
        alibi_id: Option<String>,
        /// The terminal's own date and time, as sent.
        terminal_time: Option<String>,
    },
    /// The terminal refused or could not deliver.
    Refused(Refusal),
    /// A non-weight reply (identity, acknowledgement), tagged with its command.
    Info {
        /// The command this answers, e.g. `I4`, `A`.
        topic: String,
        /// Its text.
        text: String,
    },
}

/// One wire protocol, configured for one device (its address is part of the protocol value).
pub trait ScaleProtocol: Send + Sync + fmt::Debug {
    /// Which protocol this is.
    fn protocol(&self) -> Protocol;

    /// How replies are framed.
    fn framing(&self) -> Framing;

    /// The bytes for `request`; None when the protocol has no such command. An empty vector
    /// means the request is served without sending anything (a stream).
    fn encode(&self, request: Request) -> Option<Vec<u8>>;

    /// Parses one frame. Errors are typed by the protocol and wrapped in `CodecError::Frame`.
    fn parse(&self, frame: &RawFrame) -> Result<Reply, CodecError>;

    /// Whether `reply` answers `request` (and, on a shared line, comes from this device).
    fn answers(&self, request: Request, reply: &Reply) -> bool {
        match reply {
            Reply::Reading(_) => request.wants_weight(),
            Reply::Registered { .. } => request == Request::Register,
            Reply::Refused(Refusal::General(_)) => true,
            Reply::Refused(_) => request.wants_weight(),
            Reply::Info { .. } => matches!(request, Request::Handshake | Request::StopStream),
        }
    }

    /// True for terminals that send continuously without being asked (Toledo continuous).
    fn streams_by_itself(&self) -> bool {
        false
    }
}

/// A decoded reply with the bytes it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    /// The reply.
    pub reply: Reply,
    /// The frame as received.
    pub raw: Vec<u8>,
}

/// `Decode` for any `ScaleProtocol`: the shared splitter plus the protocol's parser.
#[derive(Debug, Clone)]
pub struct ProtocolCodec {
    protocol: Arc<dyn ScaleProtocol>,
    splitter: FrameSplitter,
}

impl ProtocolCodec {
    /// A codec for `protocol`.
    pub fn new(protocol: Arc<dyn ScaleProtocol>) -> Self {
        let splitter = FrameSplitter::new(protocol.framing());
        Self { protocol, splitter }
    }

    /// The protocol in use.
    pub fn protocol(&self) -> &Arc<dyn ScaleProtocol> {
        &self.protocol
    }

    /// Switches to another device's protocol (shared line); keeps state when it is the same.
    pub fn switch_to(&mut self, protocol: &Arc<dyn ScaleProtocol>) {
        if !Arc::ptr_eq(&self.protocol, protocol) {
            if self.protocol.framing() != protocol.framing() {
                self.splitter = FrameSplitter::new(protocol.framing());
            }
            self.protocol = Arc::clone(protocol);
        }
    }

    fn parse(&self, frame: Option<RawFrame>) -> Result<Option<Answer>, CodecError> {
        let Some(frame) = frame else {
            return Ok(None);
        };
        let reply = self.protocol.parse(&frame)?;
        Ok(Some(Answer {
            reply,
            raw: frame.raw,
        }))
    }
}

impl Decode for ProtocolCodec {
    type Item = Answer;

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Answer>, CodecError> {
        let frame = self.splitter.next_frame(buf)?;
        self.parse(frame)
    }

    fn decode_eof(&mut self, buf: &mut BytesMut) -> Result<Option<Answer>, CodecError> {
        let frame = self.splitter.finish(buf)?;
        self.parse(frame)
    }

    fn reset(&mut self) {
        self.splitter.reset();
    }
}

/// Test helper shared by every protocol's property tests: feeds `chunks` through a
/// `ProtocolCodec` and returns replies (Ok) and per-frame errors (Err, as text).
#[cfg(test)]
pub(crate) fn decode_chunks(
    protocol: Arc<dyn ScaleProtocol>,
    chunks: &[Vec<u8>],
) -> Vec<Result<Reply, String>> {
    let mut codec = ProtocolCodec::new(protocol);
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut drain = |codec: &mut ProtocolCodec, buf: &mut BytesMut, eof: bool| loop {
        let next = if eof {
            codec.decode_eof(buf)
        } else {
            codec.decode(buf)
        };
        match next {
            Ok(Some(answer)) => out.push(Ok(answer.reply)),
            Ok(None) => break,
            Err(error) => {
                assert!(error.is_recoverable(), "{error}");
                out.push(Err(error.to_string()));
            }
        }
    };
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        drain(&mut codec, &mut buf, false);
    }
    drain(&mut codec, &mut buf, true);
    out
}

/// Test helper: the reply one well-formed frame decodes to (the expected value for property
/// tests that generate frames with the simulator's encoders).
#[cfg(test)]
pub(crate) fn decode_one(protocol: Arc<dyn ScaleProtocol>, frame: &[u8]) -> Reply {
    match decode_chunks(protocol, std::slice::from_ref(&frame.to_vec())).pop() {
        Some(Ok(reply)) => reply,
        other => panic!("{frame:?} did not decode: {other:?}"),
    }
}

/// Test helper: the readings (weights only) among decoded replies.
#[cfg(test)]
pub(crate) fn replies_only(out: &[Result<Reply, String>]) -> Vec<Reply> {
    out.iter()
        .filter_map(|r| r.as_ref().ok().cloned())
        .collect()
}

/// Property tests every protocol runs against its own decoder: arbitrary bytes never panic
/// and produce at most one item per byte; valid frames split anywhere decode like the whole
/// stream; garbage in front never loses the valid frames after it.
#[cfg(test)]
macro_rules! decoder_properties {
    ($protocol:expr, $frames:expr) => {
        use crate::scale::framing::split_at_points;
        use crate::scale::protocol::{decode_chunks, replies_only};
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn arbitrary_bytes_never_panic(
                bytes in proptest::collection::vec(any::<u8>(), 0..600),
                cuts in proptest::collection::vec(any::<usize>(), 0..8),
            ) {
                let out = decode_chunks($protocol, &split_at_points(&bytes, &cuts));
                prop_assert!(out.len() <= bytes.len());
            }

            #[test]
            fn split_stream_decodes_like_whole_stream(
                frames in $frames,
                cuts in proptest::collection::vec(any::<usize>(), 0..12),
            ) {
                let stream: Vec<u8> = frames.iter().flat_map(|(bytes, _)| bytes.clone()).collect();
                let out = decode_chunks($protocol, &split_at_points(&stream, &cuts));
                let expected: Vec<Result<crate::scale::protocol::Reply, String>> =
                    frames.into_iter().map(|(_, reply)| Ok(reply)).collect();
                prop_assert_eq!(out, expected);
            }

            #[test]
            fn garbage_does_not_lose_following_frames(
                garbage in proptest::collection::vec(any::<u8>(), 0..300),
                frames in $frames,
                cuts in proptest::collection::vec(any::<usize>(), 0..8),
            ) {
                let mut stream = garbage.clone();
                for (bytes, _) in &frames {
                    stream.extend_from_slice(bytes);
                }
                let out = decode_chunks($protocol, &split_at_points(&stream, &cuts));
                let decoded = replies_only(&out);
                let expected: Vec<crate::scale::protocol::Reply> =
                    frames.into_iter().map(|(_, reply)| reply).collect();
                // Garbage may swallow at most the first frame (an unterminated frame start in
                // the garbage runs into it); every later frame must come through intact.
                let tail = &expected[expected.len().min(1)..];
                prop_assert!(decoded.len() >= tail.len());
                prop_assert_eq!(&decoded[decoded.len() - tail.len()..], tail);
            }
        }
    };
}

#[cfg(test)]
pub(crate) use decoder_properties;
