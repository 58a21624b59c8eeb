//! SMA SCP-0499 ("Scale Serial Communication Protocol", levels 1 and 2), scales.md §1.4.
//!
//! Commands are `<LF>cmd<CR>`, replies `<LF>…<CR>`. The standard weight reply body is
//! `<s><r><n><m><f><weight:10><unit:3>` (18 bytes): status (`Z` centre of zero, `O` over,
//! `U` under, `E`/`I`/`T` zero/initial-zero/tare error with a dashed weight), range digit,
//! `G`/`N`/`T` (gross, net, tare; lower case = high resolution), `M` = motion, a reserved
//! byte, the right-justified weight with decimal point, and the unit (`kg `, `lb `, `t  `).
//! `<LF>?<CR>` answers an unknown command, `<LF>!<CR>` a transmission error, and the `A`/`B`
//! "about" dialogue answers `SMA:2/1.0`, `MFG:…`, … `END:`.
//!
//! Level 1 commands used here: `W` (weight now), `Z`, `A`/`B`. Level 2 commands a weighbridge
//! needs: `P` (weight only when stable; scales.md marks this [B], so the registration command
//! is configurable and the motion flag is checked regardless), `T`, `M`, `C`.

use serde::{Deserialize, Serialize};

use crate::scale::framing::{CodecError, Framing, RawFrame};
use crate::scale::protocol::{Protocol, Refusal, Reply, Request, ScaleProtocol};
use crate::scale::reading::{
    Reading, TareKind, Unit, Weight, WeightParseError, parse_weight_field,
};

/// `<LF>`, which opens every SMA frame.
pub const LF: u8 = b'\n';
/// `<CR>`, which closes every SMA frame.
pub const CR: u8 = b'\r';
/// Length of a standard weight reply body.
pub const WEIGHT_BODY_BYTES: usize = 18;
/// Longest SMA reply body accepted (about/info lines are short too).
const MAX_FRAME_BYTES: usize = 64;

fn default_register_command() -> String {
    "P".to_owned()
}

fn default_poll_command() -> String {
    "W".to_owned()
}

fn default_handshake_command() -> String {
    "A".to_owned()
}

/// Options for `protocol = "sma"`, table `[scales.sma]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmaOptions {
    /// Live weight command (level 1 `W`).
    #[serde(default = "default_poll_command")]
    pub poll_command: String,
    /// Registration command: level 2 `P` (stable only, per Minebea) by default; some
    /// terminals treat `P` like `W` (scales.md [B]), which is safe because the motion flag of
    /// the reply is checked too.
    #[serde(default = "default_register_command")]
    pub register_command: String,
    /// Identity command for the optional handshake (level 1 `A`, answers `SMA:…`).
    #[serde(default = "default_handshake_command")]
    pub handshake_command: String,
}

impl Default for SmaOptions {
    fn default() -> Self {
        Self {
            poll_command: default_poll_command(),
            register_command: default_register_command(),
            handshake_command: default_handshake_command(),
        }
    }
}

impl SmaOptions {
    /// Commands must be printable ASCII without the frame bytes.
    pub fn validate(&self) -> Result<(), String> {
        for (name, value) in [
            ("sma.poll_command", &self.poll_command),
            ("sma.register_command", &self.register_command),
            ("sma.handshake_command", &self.handshake_command),
        ] {
            if value.is_empty() || value.len() > 16 || !value.bytes().all(|b| b.is_ascii_graphic())
            {
                return Err(format!("{name} must be 1-16 printable ASCII characters"));
            }
        }
        Ok(())
    }
}

/// Why an SMA frame is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SmaError {
    /// Neither a weight reply nor one of the short replies.
    #[error("reply of {0} bytes is neither a weight reply nor an info line")]
    Shape(usize),
    /// Bytes outside printable ASCII.
    #[error("reply contains non-printable bytes")]
    NotAscii,
    /// A status character outside the standard's set.
    #[error("unknown {field} character {value:?}")]
    BadField {
        /// Which field.
        field: &'static str,
        /// What was found.
        value: char,
    },
    /// The unit field names no supported unit.
    #[error("unsupported unit {0:?}")]
    Unit(String),
    /// The weight field does not parse.
    #[error("bad weight field: {0}")]
    Weight(#[from] WeightParseError),
}

fn parse_unit(text: &str) -> Result<Unit, SmaError> {
    match text.trim_matches([' ', '_']) {
        "kg" => Ok(Unit::Kg),
        "lb" => Ok(Unit::Lb),
        "g" => Ok(Unit::G),
        "t" => Ok(Unit::T),
        other => Err(SmaError::Unit(other.to_owned())),
    }
}

/// Parses one reply body (between LF and CR).
pub fn parse_body(body: &[u8], raw: &[u8]) -> Result<Reply, SmaError> {
    if !body.iter().all(|b| (0x20..0x7f).contains(b)) {
        return Err(SmaError::NotAscii);
    }
    let text = std::str::from_utf8(body).map_err(|_| SmaError::NotAscii)?;
    match text {
        "?" => {
            return Ok(Reply::Refused(Refusal::General(
                "? (unknown command)".to_owned(),
            )));
        }
        "!" => {
            return Ok(Reply::Refused(Refusal::General(
                "! (transmission error)".to_owned(),
            )));
        }
        _ => {}
    }
    if body.len() != WEIGHT_BODY_BYTES {
        return match text.split_once(':') {
            Some((topic, rest)) if !topic.is_empty() && topic.len() <= 4 => Ok(Reply::Info {
                topic: topic.to_owned(),
                text: rest.to_owned(),
            }),
            _ => Err(SmaError::Shape(body.len())),
        };
    }
    let chars: Vec<char> = text.chars().collect();
    let (status, range, mode, motion) = (chars[0], chars[1], chars[2], chars[3]);
    if !range.is_ascii_digit() {
        return Err(SmaError::BadField {
            field: "range",
            value: range,
        });
    }
    if !matches!(motion, 'M' | ' ') {
        return Err(SmaError::BadField {
            field: "motion",
            value: motion,
        });
    }
    let unit = parse_unit(&text[15..18])?;
    let field = &text[5..15];
    match status {
        'E' => return Ok(Reply::Refused(Refusal::Weight("E (zero error)".to_owned()))),
        'I' => {
            return Ok(Reply::Refused(Refusal::Weight(
                "I (initial zero error)".to_owned(),
            )));
        }
        'T' => return Ok(Reply::Refused(Refusal::Weight("T (tare error)".to_owned()))),
        'Z' | 'O' | 'U' | ' ' => {}
        other => {
            return Err(SmaError::BadField {
                field: "status",
                value: other,
            });
        }
    }
    let (overload, underload) = (status == 'O', status == 'U');
    // A dashed weight without an error status: `P` gave up waiting for stability.
    let dashed = field.trim().chars().all(|c| c == '-') && !field.trim().is_empty();
    if dashed && !overload && !underload {
        return Ok(Reply::Refused(Refusal::NotStable));
    }
    let weight = if dashed || overload || underload {
        None
    } else {
        parse_weight_field(field, unit)?
    };
    let net_mode = match mode {
        'G' | 'g' => false,
        'N' | 'n' => true,
        'T' => {
            return Ok(Reply::Info {
                topic: "tare".to_owned(),
                text: field.trim().to_owned(),
            });
        }
        other => {
            return Err(SmaError::BadField {
                field: "gross/net",
                value: other,
            });
        }
    };
    let gross: Option<Weight> = if net_mode { None } else { weight };
    Ok(Reply::Reading(Reading {
        net: weight,
        gross,
        tare: None,
        unit: Some(unit),
        stable: motion == ' ' && !overload && !underload,
        overload,
        underload,
        center_of_zero: Some(status == 'Z'),
        net_mode: Some(net_mode),
        tare_kind: (!net_mode).then_some(TareKind::None),
        raw: raw.to_vec(),
    }))
}

/// What the simulator puts in a weight reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SmaWeight {
    /// Status character (`Z`, `O`, `U`, `E`, ' ').
    pub status: char,
    /// `G`, `N` or `T`.
    pub mode: char,
    /// In motion.
    pub motion: bool,
    /// Whole kilograms; None for a dashed field.
    pub kg: Option<i64>,
}

/// Formats a weight reply frame `<LF>…<CR>` in kilograms.
pub fn encode_weight(w: &SmaWeight) -> Vec<u8> {
    let field = match w.kg {
        Some(kg) => format!("{kg:>10}"),
        None => "-".repeat(10),
    };
    let motion = if w.motion { 'M' } else { ' ' };
    frame(&format!("{}1{}{motion} {field}kg ", w.status, w.mode))
}

/// Wraps a body or command in `<LF>…<CR>`.
pub fn frame(body: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 2);
    out.push(LF);
    out.extend_from_slice(body.as_bytes());
    out.push(CR);
    out
}

/// SMA SCP-0499 with its options.
#[derive(Debug, Clone, Default)]
pub struct SmaProtocol {
    options: SmaOptions,
}

impl SmaProtocol {
    /// The protocol with `options`.
    pub fn new(options: SmaOptions) -> Self {
        Self { options }
    }
}

impl ScaleProtocol for SmaProtocol {
    fn protocol(&self) -> Protocol {
        Protocol::Sma
    }

    fn framing(&self) -> Framing {
        Framing::delimited(LF, CR, 0, MAX_FRAME_BYTES)
    }

    fn encode(&self, request: Request) -> Option<Vec<u8>> {
        match request {
            Request::Poll => Some(frame(&self.options.poll_command)),
            Request::Register => Some(frame(&self.options.register_command)),
            Request::Handshake => Some(frame(&self.options.handshake_command)),
            // Streaming (`R`) is not used: a poll costs one short frame and keeps the line free.
            Request::Next | Request::StartStream | Request::StopStream => None,
        }
    }

    fn parse(&self, frame: &RawFrame) -> Result<Reply, CodecError> {
        parse_body(frame.body(), &frame.raw).map_err(|e| CodecError::frame(e, &frame.raw))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn protocol() -> Arc<dyn ScaleProtocol> {
        Arc::new(SmaProtocol::default())
    }

    fn one(bytes: &[u8]) -> Result<Reply, String> {
        let out = decode_chunks(protocol(), &[bytes.to_vec()]);
        assert_eq!(out.len(), 1, "{out:?}");
        out.into_iter().next().unwrap_or(Err("none".to_owned()))
    }

    fn reading(bytes: &[u8]) -> Reading {
        match one(bytes) {
            Ok(Reply::Reading(r)) => r,
            other => panic!(
                "{}: {other:?}",
                String::from_utf8_lossy(bytes).escape_debug()
            ),
        }
    }

    /// Golden: the examples of scales.md §1.4 and the replies a weighbridge sees.
    #[test]
    fn golden_replies() {
        let bridge = reading(b"\n 1G       12340kg \r");
        assert_eq!(bridge.net, Some(Weight::kg(12_340)));
        assert_eq!(bridge.gross, Some(Weight::kg(12_340)));
        assert!(bridge.stable);
        assert_eq!(bridge.center_of_zero, Some(false));
        let lb = reading(b"\n 1G       5.025lb \r");
        assert_eq!(lb.net, Some(Weight::new(5025, 3, Unit::Lb)));
        let zero = reading(b"\nZ1G       0.000lb \r");
        assert_eq!(zero.center_of_zero, Some(true));
        let net = reading(b"\n 1N       0.000kg \r");
        assert_eq!(net.net_mode, Some(true));
        assert_eq!(net.gross, None);
        let moving = reading(b"\n 1GM      12360kg \r");
        assert!(!moving.stable);
        let over = reading(b"\nO1G       99999kg \r");
        assert!(over.overload && over.net.is_none() && !over.stable);
        let under = reading(b"\nU1G        -400kg \r");
        assert!(under.underload);
        assert_eq!(
            one(b"\nE1GM ----------kg \r"),
            Ok(Reply::Refused(Refusal::Weight("E (zero error)".to_owned())))
        );
        assert_eq!(
            one(b"\n 1G  ----------kg \r"),
            Ok(Reply::Refused(Refusal::NotStable))
        );
        assert_eq!(
            one(b"\n?\r"),
            Ok(Reply::Refused(Refusal::General(
                "? (unknown command)".to_owned()
            )))
        );
        assert_eq!(
            one(b"\nSMA:2/1.0\r"),
            Ok(Reply::Info {
                topic: "SMA".to_owned(),
                text: "2/1.0".to_owned()
            })
        );
        assert!(matches!(
            one(b"\n 1T       0.200kg \r"),
            Ok(Reply::Info { .. })
        ));
    }

    #[test]
    fn golden_errors() {
        for (bytes, needle) in [
            (&b"\n 1X       12340kg \r"[..], "gross/net"),
            (b"\n 1G       12340oz \r", "unsupported unit"),
            (b"\n 1G       12a40kg \r", "bad weight"),
            (b"\nQ1G       12340kg \r", "status"),
            (b"\nshort\r", "neither"),
            (b"\n 1G  \x01    12340kg \r", "non-printable"),
        ] {
            let error = one(bytes).unwrap_err();
            assert!(error.contains(needle), "{error}");
        }
        assert_eq!(
            SmaProtocol::default().encode(Request::Register).unwrap(),
            b"\nP\r"
        );
        assert!(
            SmaOptions {
                register_command: "P\r".to_owned(),
                ..SmaOptions::default()
            }
            .validate()
            .is_err()
        );
    }

    fn arb_frames() -> impl Strategy<Value = Vec<(Vec<u8>, Reply)>> {
        proptest::collection::vec(
            (-99_999_999i64..=999_999_999, any::<bool>(), any::<bool>()).prop_map(
                |(kg, motion, net)| {
                    let raw = encode_weight(&SmaWeight {
                        status: ' ',
                        mode: if net { 'N' } else { 'G' },
                        motion,
                        kg: Some(kg),
                    });
                    let body = &raw[1..raw.len() - 1];
                    let reply = parse_body(body, &raw).unwrap();
                    (raw, reply)
                },
            ),
            1..8,
        )
    }

    crate::scale::protocol::decoder_properties!(protocol(), arb_frames());
}
