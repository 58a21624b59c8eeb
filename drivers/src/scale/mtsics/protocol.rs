//! MT-SICS as a `ScaleProtocol`: `SI` polls, `S` registers (the terminal waits for its own
//! stability), `SIR` streams, and `I4` (serial number) both confirms the protocol and marks
//! the end of a stream, because its reply cannot be mistaken for stream output.

use crate::scale::framing::{CodecError, Framing, RawFrame};
use crate::scale::mtsics::codec::DEFAULT_MAX_FRAME_BYTES;
use crate::scale::mtsics::frame::{Command, Reply as SicsReply, Response, WeightReply, parse_line};
use crate::scale::protocol::{Protocol, Refusal, Reply, Request, ScaleProtocol};

/// MT-SICS level 0/1 for the device task.
#[derive(Debug, Clone, Default)]
pub struct MtSicsProtocol;

fn error_text(response: &Response) -> String {
    response.format()
}

impl ScaleProtocol for MtSicsProtocol {
    fn protocol(&self) -> Protocol {
        Protocol::MtSics
    }

    fn framing(&self) -> Framing {
        Framing::lines(DEFAULT_MAX_FRAME_BYTES)
    }

    fn encode(&self, request: Request) -> Option<Vec<u8>> {
        let command = match request {
            Request::Poll => Command::ImmediateWeight,
            Request::Next => return Some(Vec::new()),
            Request::Register => Command::StableWeight,
            Request::StartStream => Command::ImmediateWeightRepeat,
            Request::StopStream | Request::Handshake => Command::SerialNumber,
        };
        Some(command.encode())
    }

    fn parse(&self, frame: &RawFrame) -> Result<Reply, CodecError> {
        let response = parse_line(frame.body()).map_err(|e| CodecError::frame(e, frame.body()))?;
        if let Some(reading) = response.to_reading(&frame.raw) {
            return Ok(Reply::Reading(reading));
        }
        Ok(match &response {
            Response::Weight(WeightReply::NotExecutable) => Reply::Refused(Refusal::NotStable),
            Response::Error(_) => Reply::Refused(Refusal::General(error_text(&response))),
            Response::SerialNumber(SicsReply::Value(text)) => Reply::Info {
                topic: Command::SerialNumber.as_str().to_owned(),
                text: text.clone(),
            },
            other => Reply::Info {
                topic: format!("other:{}", other.format()),
                text: other.format(),
            },
        })
    }

    fn answers(&self, request: Request, reply: &Reply) -> bool {
        match reply {
            Reply::Info { topic, .. } => {
                matches!(request, Request::Handshake | Request::StopStream)
                    && topic == Command::SerialNumber.as_str()
            }
            Reply::Refused(Refusal::General(_)) => true,
            Reply::Refused(_) | Reply::Reading(_) => request.wants_weight(),
            Reply::Registered { .. } => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::scale::mtsics::frame::Response as R;
    use crate::scale::reading::{Reading, Unit, Weight};

    fn protocol() -> Arc<dyn ScaleProtocol> {
        Arc::new(MtSicsProtocol)
    }

    fn arb_frames() -> impl Strategy<Value = Vec<(Vec<u8>, Reply)>> {
        proptest::collection::vec(
            (-9_999_999i64..=9_999_999, 0u8..=3, any::<bool>()).prop_map(|(v, d, stable)| {
                let w = Weight::new(v, d, Unit::Kg);
                let response = if stable {
                    R::Weight(WeightReply::Stable(w))
                } else {
                    R::Weight(WeightReply::Dynamic(w))
                };
                let raw = response.encode();
                let reading = Reading {
                    net: Some(w),
                    unit: Some(Unit::Kg),
                    stable,
                    raw: raw.clone(),
                    ..Reading::default()
                };
                (raw, Reply::Reading(reading))
            }),
            1..8,
        )
    }

    crate::scale::protocol::decoder_properties!(protocol(), arb_frames());

    #[test]
    fn requests_and_answers() {
        let p = MtSicsProtocol;
        assert_eq!(p.encode(Request::Poll).unwrap(), b"SI\r\n");
        assert_eq!(p.encode(Request::Register).unwrap(), b"S\r\n");
        assert_eq!(p.encode(Request::StartStream).unwrap(), b"SIR\r\n");
        assert_eq!(p.encode(Request::StopStream).unwrap(), b"I4\r\n");
        let es = Reply::Refused(Refusal::General("ES".to_owned()));
        assert!(p.answers(Request::Handshake, &es));
        let zero = Reply::Info {
            topic: "other:Z A".to_owned(),
            text: "Z A".to_owned(),
        };
        assert!(!p.answers(Request::StopStream, &zero));
        let serial = Reply::Info {
            topic: "I4".to_owned(),
            text: "1".to_owned(),
        };
        assert!(p.answers(Request::StopStream, &serial));
        assert!(!p.answers(Request::Register, &serial));
        assert!(!p.answers(Request::StopStream, &Reply::Refused(Refusal::NotStable)));
    }
}
