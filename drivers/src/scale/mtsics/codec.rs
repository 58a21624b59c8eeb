//! `MtSicsCodec`: splits an MT-SICS byte stream into lines (CR LF, bare LF accepted) with a hard
//! length cap, and turns each line into a `Response`.
//!
//! Errors are per line: after a garbage line or an over-long line the codec is in a clean state
//! and decoding simply continues with the next bytes, so a caller can log and skip. An
//! over-long line is reported once, when it crosses the cap, and its remaining bytes are
//! dropped up to the next terminator.
//!
//! Note for `tokio_util::codec::FramedRead` users: after the decoder returns an error,
//! `FramedRead` yields that error and then one `None` before it resumes. The MT-SICS client
//! therefore drives `decode_frame` itself instead of going through `FramedRead`.

use bytes::BytesMut;
use tokio_util::codec::{Decoder, Encoder};

pub use crate::scale::framing::CodecError;
use crate::scale::framing::{FrameSplitter, Framing, RawFrame};
use crate::scale::link::Decode;
use crate::scale::mtsics::frame::{Command, Response, parse_line};

/// Default cap on a line's length, terminator excluded. MT-SICS replies are well under 80 bytes.
pub const DEFAULT_MAX_FRAME_BYTES: usize = 128;

/// A decoded reply together with the bytes it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The parsed reply.
    pub response: Response,
    /// The line as received, terminator included (kept for audit).
    pub raw: Vec<u8>,
}

/// Decoder of MT-SICS replies and encoder of MT-SICS commands.
#[derive(Debug, Clone)]
pub struct MtSicsCodec {
    lines: FrameSplitter,
}

impl Default for MtSicsCodec {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_FRAME_BYTES)
    }
}

impl MtSicsCodec {
    /// A codec that refuses lines longer than `max_frame_bytes` (terminator excluded).
    pub fn new(max_frame_bytes: usize) -> Self {
        Self {
            lines: FrameSplitter::new(Framing::lines(max_frame_bytes)),
        }
    }

    fn parse(line: RawFrame) -> Result<Option<Frame>, CodecError> {
        match parse_line(line.body()) {
            Ok(response) => Ok(Some(Frame {
                response,
                raw: line.raw,
            })),
            Err(source) => Err(CodecError::frame(source, line.body())),
        }
    }

    /// Like `Decoder::decode`, but keeps the raw bytes of the reply.
    pub fn decode_frame(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, CodecError> {
        match self.lines.next_frame(buf)? {
            Some(line) => Self::parse(line),
            None => Ok(None),
        }
    }

    /// Like `Decoder::decode_eof`, but keeps the raw bytes of the reply.
    pub fn decode_frame_eof(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, CodecError> {
        match self.lines.finish(buf)? {
            Some(line) => Self::parse(line),
            None => Ok(None),
        }
    }
}

impl Decode for MtSicsCodec {
    type Item = Frame;

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, CodecError> {
        self.decode_frame(buf)
    }

    fn decode_eof(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, CodecError> {
        self.decode_frame_eof(buf)
    }

    fn reset(&mut self) {
        self.lines.reset();
    }
}

impl Decoder for MtSicsCodec {
    type Item = Response;
    type Error = CodecError;

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Response>, CodecError> {
        Ok(self.decode_frame(buf)?.map(|frame| frame.response))
    }

    fn decode_eof(&mut self, buf: &mut BytesMut) -> Result<Option<Response>, CodecError> {
        Ok(self.decode_frame_eof(buf)?.map(|frame| frame.response))
    }
}

impl Encoder<Command> for MtSicsCodec {
    type Error = CodecError;

    fn encode(&mut self, command: Command, dst: &mut BytesMut) -> Result<(), CodecError> {
        dst.extend_from_slice(&command.encode());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scale::framing::split_at_points;
    use crate::scale::mtsics::frame::{ErrorReply, Reply, Status, WeightReply};
    use crate::scale::reading::{Reading, Unit, Weight};
    use proptest::prelude::*;

    /// What one decode step produced, reduced to something comparable.
    #[derive(Debug, PartialEq)]
    enum Out {
        Ok(Response),
        TooLong,
        Bad,
        Truncated,
    }

    /// Feeds `chunks` one after another and decodes everything, then signals end of stream.
    fn decode_chunks(codec: &mut MtSicsCodec, chunks: &[&[u8]]) -> Vec<Out> {
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        let push = |result: Result<Option<Response>, CodecError>, out: &mut Vec<Out>| match result {
            Ok(Some(r)) => {
                out.push(Out::Ok(r));
                true
            }
            Ok(None) => false,
            Err(CodecError::FrameTooLong { .. }) => {
                out.push(Out::TooLong);
                true
            }
            Err(CodecError::Frame { .. } | CodecError::Garbage { .. }) => {
                out.push(Out::Bad);
                true
            }
            Err(CodecError::Truncated { .. }) => {
                out.push(Out::Truncated);
                true
            }
            Err(CodecError::Io(e)) => panic!("unexpected io error {e}"),
        };
        for chunk in chunks {
            buf.extend_from_slice(chunk);
            while push(Decoder::decode(codec, &mut buf), &mut out) {}
        }
        while push(Decoder::decode_eof(codec, &mut buf), &mut out) {}
        out
    }

    fn decode_all(bytes: &[u8]) -> Vec<Out> {
        decode_chunks(&mut MtSicsCodec::default(), &[bytes])
    }

    fn ok_responses(out: &[Out]) -> Vec<Response> {
        out.iter()
            .filter_map(|o| match o {
                Out::Ok(r) => Some(r.clone()),
                _ => None,
            })
            .collect()
    }

    fn stable(kg: i64) -> Out {
        Out::Ok(Response::Weight(WeightReply::Stable(Weight::kg(kg))))
    }

    /// Golden, data-driven: captured byte streams → decoded items in order.
    #[test]
    fn golden_streams() {
        let table: Vec<(&[u8], Vec<Out>)> = vec![
            (
                b"S S      12340 kg\r\nS D      12360 kg\r\n",
                vec![
                    stable(12_340),
                    Out::Ok(Response::Weight(WeightReply::Dynamic(Weight::kg(12_360)))),
                ],
            ),
            (
                b"Z I\r\nES\r\n",
                vec![
                    Out::Ok(Response::Zero(Status::NotExecutable)),
                    Out::Ok(Response::Error(ErrorReply::Syntax)),
                ],
            ),
            (
                b"S +\r\nS -\r\n",
                vec![
                    Out::Ok(Response::Weight(WeightReply::Overload)),
                    Out::Ok(Response::Weight(WeightReply::Underload)),
                ],
            ),
            (
                b"S S      12.34 t\nS S     -12.34 t\r\n",
                vec![
                    Out::Ok(Response::Weight(WeightReply::Stable(Weight::new(
                        1234,
                        2,
                        Unit::T,
                    )))),
                    Out::Ok(Response::Weight(WeightReply::Stable(Weight::new(
                        -1234,
                        2,
                        Unit::T,
                    )))),
                ],
            ),
            (
                b"\x00\xff\xfegarbage\r\nS S        -60 kg\r\n",
                vec![Out::Bad, stable(-60)],
            ),
            (
                b"\r\n\r\nTAC A\r\n\r\n",
                vec![Out::Ok(Response::TareCleared(Status::Executed))],
            ),
            (
                b"I4 A \"SIM-0001\"\r\nS S 20 kg",
                vec![
                    Out::Ok(Response::SerialNumber(Reply::Value("SIM-0001".to_owned()))),
                    Out::Truncated,
                ],
            ),
        ];
        for (bytes, expected) in table {
            assert_eq!(
                decode_all(bytes),
                expected,
                "{}",
                String::from_utf8_lossy(bytes)
            );
        }
    }

    /// Golden, data-driven: captured frames → readings, with the raw bytes kept for audit.
    #[test]
    fn golden_readings() {
        let table: Vec<(&[u8], Option<Reading>)> = vec![
            (
                b"S S      12340 kg\r\n",
                Some(Reading {
                    net: Some(Weight::kg(12_340)),
                    unit: Some(Unit::Kg),
                    stable: true,
                    raw: b"S S      12340 kg\r\n".to_vec(),
                    ..Reading::default()
                }),
            ),
            (
                b"S D      12360 kg\n",
                Some(Reading {
                    net: Some(Weight::kg(12_360)),
                    unit: Some(Unit::Kg),
                    raw: b"S D      12360 kg\n".to_vec(),
                    ..Reading::default()
                }),
            ),
            (
                b"S +\r\n",
                Some(Reading {
                    overload: true,
                    raw: b"S +\r\n".to_vec(),
                    ..Reading::default()
                }),
            ),
            (
                b"S -\r\n",
                Some(Reading {
                    underload: true,
                    raw: b"S -\r\n".to_vec(),
                    ..Reading::default()
                }),
            ),
            (b"S I\r\n", None),
            (b"Z A\r\n", None),
        ];
        for (bytes, expected) in table {
            let mut buf = BytesMut::from(bytes);
            let frame = MtSicsCodec::default()
                .decode_frame(&mut buf)
                .unwrap()
                .unwrap();
            assert_eq!(frame.raw, bytes);
            assert_eq!(frame.response.to_reading(&frame.raw), expected);
        }
    }

    #[test]
    fn over_long_line_is_reported_once_then_decoding_resyncs() {
        let mut codec = MtSicsCodec::new(16);
        let long = [b'9'; 40];
        let out = decode_chunks(
            &mut codec,
            &[
                b"S S ",
                &long,
                &long,
                b" kg\r\nZ A\r\n",
                b"S S 1",
                b"2 kg\r\n",
            ],
        );
        assert_eq!(
            out,
            vec![
                Out::TooLong,
                Out::Ok(Response::Zero(Status::Executed)),
                stable(12)
            ]
        );
    }

    #[test]
    fn over_long_terminated_line_in_one_chunk() {
        let mut bytes = vec![b'X'; 200];
        bytes.extend_from_slice(b"\r\nS S 20 kg\r\n");
        assert_eq!(decode_all(&bytes), vec![Out::TooLong, stable(20)]);
    }

    #[test]
    fn line_exactly_at_the_cap_is_accepted() {
        let mut codec = MtSicsCodec::new(9);
        let out = decode_chunks(&mut codec, &[b"S S 20 kg", b"\r", b"\n"]);
        assert_eq!(out, vec![stable(20)]);
    }

    #[test]
    fn encoder_writes_command_lines() {
        let mut dst = BytesMut::new();
        let mut codec = MtSicsCodec::default();
        codec.encode(Command::ImmediateWeight, &mut dst).unwrap();
        codec.encode(Command::TareClear, &mut dst).unwrap();
        assert_eq!(&dst[..], b"SI\r\nTAC\r\n");
    }

    fn arb_weight() -> impl Strategy<Value = Weight> {
        (
            -9_999_999i64..=9_999_999,
            0u8..=3,
            prop_oneof![Just(Unit::G), Just(Unit::Kg), Just(Unit::T), Just(Unit::Lb)],
        )
            .prop_map(|(value, decimals, unit)| Weight::new(value, decimals, unit))
    }

    fn arb_response() -> impl Strategy<Value = Response> {
        let status = prop_oneof![
            Just(Status::Executed),
            Just(Status::NotExecutable),
            Just(Status::LogicalError),
            Just(Status::AboveRange),
            Just(Status::BelowRange),
        ];
        let refusal = prop_oneof![
            Just(Status::NotExecutable),
            Just(Status::LogicalError),
            Just(Status::AboveRange),
            Just(Status::BelowRange),
        ];
        prop_oneof![
            arb_weight().prop_map(|w| Response::Weight(WeightReply::Stable(w))),
            arb_weight().prop_map(|w| Response::Weight(WeightReply::Dynamic(w))),
            Just(Response::Weight(WeightReply::NotExecutable)),
            Just(Response::Weight(WeightReply::Overload)),
            Just(Response::Weight(WeightReply::Underload)),
            status.clone().prop_map(Response::Zero),
            status.prop_map(Response::TareCleared),
            arb_weight().prop_map(|w| Response::Tare(Reply::Value(w))),
            refusal
                .clone()
                .prop_map(|s| Response::TareValue(Reply::Refused(s))),
            "[ -~]{0,40}".prop_map(|t| Response::DeviceData(Reply::Value(t))),
            "[A-Za-z0-9]{1,20}".prop_map(|t| Response::SerialNumber(Reply::Value(t))),
            refusal.prop_map(|s| Response::SerialNumber(Reply::Refused(s))),
            Just(Response::Error(ErrorReply::Syntax)),
            Just(Response::Error(ErrorReply::Logical)),
        ]
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(
            bytes in proptest::collection::vec(any::<u8>(), 0..600),
            cuts in proptest::collection::vec(any::<usize>(), 0..8),
            max in 1usize..200,
        ) {
            let chunks = split_at_points(&bytes, &cuts);
            let refs: Vec<&[u8]> = chunks.iter().map(Vec::as_slice).collect();
            let out = decode_chunks(&mut MtSicsCodec::new(max), &refs);
            // Every item consumed at least one byte, so there can't be more items than bytes.
            prop_assert!(out.len() <= bytes.len());
        }

        #[test]
        fn format_then_parse_round_trips(response in arb_response()) {
            prop_assert_eq!(parse_line(response.format().as_bytes()), Ok(response));
        }

        #[test]
        fn split_stream_decodes_like_whole_stream(
            responses in proptest::collection::vec(arb_response(), 0..12),
            cuts in proptest::collection::vec(any::<usize>(), 0..12),
            bare_lf in any::<bool>(),
        ) {
            let mut stream = Vec::new();
            for r in &responses {
                stream.extend_from_slice(r.format().as_bytes());
                stream.extend_from_slice(if bare_lf { b"\n" } else { b"\r\n" });
            }
            let chunks = split_at_points(&stream, &cuts);
            let refs: Vec<&[u8]> = chunks.iter().map(Vec::as_slice).collect();
            let out = decode_chunks(&mut MtSicsCodec::default(), &refs);
            let expected: Vec<Out> = responses.into_iter().map(Out::Ok).collect();
            prop_assert_eq!(out, expected);
        }

        #[test]
        fn garbage_does_not_lose_following_frames(
            garbage in proptest::collection::vec(any::<u8>(), 0..400),
            responses in proptest::collection::vec(arb_response(), 1..6),
            cuts in proptest::collection::vec(any::<usize>(), 0..8),
        ) {
            let mut stream = garbage.clone();
            stream.extend_from_slice(b"\r\n");
            for r in &responses {
                stream.extend_from_slice(&r.encode());
            }
            let chunks = split_at_points(&stream, &cuts);
            let refs: Vec<&[u8]> = chunks.iter().map(Vec::as_slice).collect();
            let out = decode_chunks(&mut MtSicsCodec::default(), &refs);
            let decoded = ok_responses(&out);
            // Garbage may itself happen to contain valid lines; the real frames are the tail.
            prop_assert!(decoded.len() >= responses.len());
            prop_assert_eq!(&decoded[decoded.len() - responses.len()..], &responses[..]);
        }
    }
}
