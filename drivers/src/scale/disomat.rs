//! Schenck DISOMAT (B plus, Opus, Satus, Tersus), DDP 8785 "poll procedure", scales.md §1.7:
//! `<STX> aa#CMD#par#…# <ETX> <BCC>` with `aa` the 2-digit device address and BCC the XOR of
//! the payload and ETX (not STX).
//!
//! * `aa#TG#` → `aa#TG#<net>#<tare>#<dG/dt>#<status>#` (live weight).
//! * `aa#DR#<n>#` (register/print with pattern n) → `aa#DR#<n>#<print status>#<status>#<date>#
//!   <time>#<protocol no.>#<weight unit>#`; the protocol number is the legal reference; on
//!   overload the weight field is blank.
//!
//! Uncertain in scales.md (register item 6), hence options: whether a `<DLE>` precedes `<ETX>`
//! and is covered by the BCC (`dle_before_etx`), whether the BCC is checked at all, and the
//! scale status bit map (`status_*_mask`, the status field read as hex). Decimal commas are
//! accepted everywhere (Satus sends `-123,5`).

use serde::{Deserialize, Serialize};

use crate::scale::framing::{CodecError, Framing, RawFrame};
use crate::scale::protocol::{Protocol, Refusal, Reply, Request, ScaleProtocol};
use crate::scale::reading::{
    Reading, TareKind, Unit, Weight, WeightParseError, checked_add, parse_weight_field,
};

/// `<STX>`
pub const STX: u8 = 0x02;
/// `<ETX>`
pub const ETX: u8 = 0x03;
/// `<DLE>`
pub const DLE: u8 = 0x10;
/// Longest payload accepted.
const MAX_FRAME_BYTES: usize = 160;

fn yes() -> bool {
    true
}
fn default_unit() -> Unit {
    Unit::Kg
}
fn default_print_pattern() -> u8 {
    1
}
fn default_motion_mask() -> u16 {
    0x01
}
fn default_overload_mask() -> u16 {
    0x02
}
fn default_underload_mask() -> u16 {
    0x04
}

/// Options for `protocol = "disomat"`, table `[scales.disomat]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DisomatOptions {
    /// Frames end `<DLE><ETX>` and the BCC covers the DLE (the Perl/Go readers' variant).
    #[serde(default)]
    pub dle_before_etx: bool,
    /// Check the BCC of every reply.
    #[serde(default = "yes")]
    pub check_bcc: bool,
    /// Print pattern number sent with `DR`.
    #[serde(default = "default_print_pattern")]
    pub print_pattern: u8,
    /// Unit of the `TG` fields, which carry none.
    #[serde(default = "default_unit")]
    pub unit: Unit,
    /// Scale status bit meaning "in motion" (status field read as hex).
    #[serde(default = "default_motion_mask")]
    pub status_motion_mask: u16,
    /// Scale status bit meaning "overload".
    #[serde(default = "default_overload_mask")]
    pub status_overload_mask: u16,
    /// Scale status bit meaning "underload".
    #[serde(default = "default_underload_mask")]
    pub status_underload_mask: u16,
}

impl Default for DisomatOptions {
    fn default() -> Self {
        Self {
            dle_before_etx: false,
            check_bcc: true,
            print_pattern: default_print_pattern(),
            unit: default_unit(),
            status_motion_mask: default_motion_mask(),
            status_overload_mask: default_overload_mask(),
            status_underload_mask: default_underload_mask(),
        }
    }
}

/// Why a DISOMAT frame is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DisomatError {
    /// The BCC does not match.
    #[error("BCC {got:#04x} does not match computed {expected:#04x}")]
    Bcc {
        /// Received.
        got: u8,
        /// Computed.
        expected: u8,
    },
    /// `dle_before_etx` is set but the frame has no DLE before ETX.
    #[error("frame lacks the DLE before ETX")]
    MissingDle,
    /// Bytes outside printable ASCII in the payload.
    #[error("payload contains non-printable bytes")]
    NotAscii,
    /// Too few `#` fields for the command.
    #[error("reply {command:?} has {got} fields, needs {needed}")]
    Fields {
        /// The reply's command.
        command: String,
        /// Fields found.
        got: usize,
        /// Fields needed.
        needed: usize,
    },
    /// The status field is not hex.
    #[error("scale status {0:?} is not hex")]
    Status(String),
    /// A weight field does not parse.
    #[error("bad weight field: {0}")]
    Weight(#[from] WeightParseError),
    /// The unit after a `DR` weight is not supported.
    #[error("unsupported unit {0:?}")]
    Unit(String),
}

/// XOR of `bytes`.
pub fn bcc(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0, |acc, b| acc ^ b)
}

/// Wraps a payload into a frame: STX, payload, [DLE], ETX, BCC.
pub fn encode_frame(payload: &str, dle_before_etx: bool) -> Vec<u8> {
    let mut covered = payload.as_bytes().to_vec();
    if dle_before_etx {
        covered.push(DLE);
    }
    covered.push(ETX);
    let check = bcc(&covered);
    let mut out = Vec::with_capacity(covered.len() + 2);
    out.push(STX);
    out.extend_from_slice(&covered);
    out.push(check);
    out
}

/// A weight with its unit, `12340 kg` or `12340kg`; blank is None.
fn weight_with_unit(text: &str) -> Result<Option<Weight>, DisomatError> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    let split = text
        .find(|c: char| c.is_ascii_alphabetic())
        .unwrap_or(text.len());
    let unit = match text[split..].trim() {
        "kg" => Unit::Kg,
        "t" => Unit::T,
        "g" => Unit::G,
        "lb" => Unit::Lb,
        other => return Err(DisomatError::Unit(other.to_owned())),
    };
    Ok(parse_weight_field(&text[..split], unit)?)
}

/// DISOMAT DDP 8785 for the device at `address`.
#[derive(Debug, Clone)]
pub struct DisomatProtocol {
    options: DisomatOptions,
    address: String,
}

impl DisomatProtocol {
    /// The protocol for the 2-digit `address` (`00` when None).
    pub fn new(options: DisomatOptions, address: Option<u8>) -> Self {
        Self {
            options,
            address: format!("{:02}", address.unwrap_or(0) % 100),
        }
    }

    /// Checks the BCC and DLE, returns the payload text.
    fn payload<'a>(&self, frame: &'a RawFrame) -> Result<&'a str, DisomatError> {
        let body = frame.body();
        let payload = if self.options.dle_before_etx {
            body.strip_suffix(&[DLE]).ok_or(DisomatError::MissingDle)?
        } else {
            body
        };
        if self.options.check_bcc {
            let mut covered = body.to_vec();
            covered.push(ETX);
            let expected = bcc(&covered);
            let got = frame.trailer().first().copied().unwrap_or(0);
            if got != expected {
                return Err(DisomatError::Bcc { got, expected });
            }
        }
        if !payload.iter().all(|b| (0x20..0x7f).contains(b)) {
            return Err(DisomatError::NotAscii);
        }
        std::str::from_utf8(payload).map_err(|_| DisomatError::NotAscii)
    }

    fn status(&self, text: &str) -> Result<(bool, bool, bool), DisomatError> {
        let trimmed = text.trim();
        let bits = u16::from_str_radix(trimmed, 16)
            .map_err(|_| DisomatError::Status(trimmed.to_owned()))?;
        let o = &self.options;
        Ok((
            bits & o.status_motion_mask != 0,
            bits & o.status_overload_mask != 0,
            bits & o.status_underload_mask != 0,
        ))
    }

    fn parse_payload(&self, text: &str, raw: &[u8]) -> Result<Reply, DisomatError> {
        let fields: Vec<&str> = text.split('#').collect();
        let command = fields.get(1).copied().unwrap_or("");
        let need = |needed: usize| {
            if fields.len() < needed {
                Err(DisomatError::Fields {
                    command: command.to_owned(),
                    got: fields.len(),
                    needed,
                })
            } else {
                Ok(())
            }
        };
        need(2)?;
        if fields[0].trim() != self.address {
            // Another device on the same line.
            return Ok(Reply::Info {
                topic: format!("address {}", fields[0]),
                text: text.to_owned(),
            });
        }
        match command {
            "TG" => {
                need(6)?;
                let unit = self.options.unit;
                let net = parse_weight_field(fields[2], unit)?;
                let tare = parse_weight_field(fields[3], unit)?;
                let (motion, overload, underload) = self.status(fields[5])?;
                let valid = !overload && !underload;
                let net_mode = tare.is_some_and(|t| t.value != 0);
                Ok(Reply::Reading(Reading {
                    net: net.filter(|_| valid),
                    gross: net
                        .zip(tare)
                        .and_then(|(n, t)| checked_add(&n, &t))
                        .filter(|_| valid),
                    tare,
                    unit: Some(unit),
                    stable: !motion && valid,
                    overload,
                    underload,
                    center_of_zero: None,
                    net_mode: Some(net_mode),
                    tare_kind: None,
                    raw: raw.to_vec(),
                }))
            }
            "DR" => {
                need(9)?;
                if fields[3].trim() != "0" {
                    return Ok(Reply::Refused(Refusal::Weight(format!(
                        "print status {}",
                        fields[3].trim()
                    ))));
                }
                let (motion, overload, underload) = self.status(fields[4])?;
                let weight = weight_with_unit(fields[8])?;
                let Some(weight) = weight else {
                    return Ok(Reply::Refused(if underload {
                        Refusal::Underload
                    } else {
                        Refusal::Overload
                    }));
                };
                let protocol_no = fields[7].trim();
                Ok(Reply::Registered {
                    reading: Reading {
                        net: Some(weight),
                        gross: None,
                        tare: None,
                        unit: Some(weight.unit),
                        stable: !motion && !overload && !underload,
                        overload,
                        underload,
                        center_of_zero: None,
                        net_mode: None,
                        tare_kind: None::<TareKind>,
                        raw: raw.to_vec(),
                    },
                    alibi_id: (!protocol_no.is_empty()).then(|| protocol_no.to_owned()),
                    terminal_time: Some(format!("{} {}", fields[5].trim(), fields[6].trim())),
                })
            }
            other => Ok(Reply::Info {
                topic: other.to_owned(),
                text: text.to_owned(),
            }),
        }
    }
}

impl ScaleProtocol for DisomatProtocol {
    fn protocol(&self) -> Protocol {
        Protocol::Disomat
    }

    fn framing(&self) -> Framing {
        Framing::delimited(STX, ETX, 1, MAX_FRAME_BYTES)
    }

    fn encode(&self, request: Request) -> Option<Vec<u8>> {
        let dle = self.options.dle_before_etx;
        match request {
            Request::Poll | Request::Handshake => {
                Some(encode_frame(&format!("{}#TG#", self.address), dle))
            }
            Request::Register => Some(encode_frame(
                &format!("{}#DR#{}#", self.address, self.options.print_pattern),
                dle,
            )),
            Request::Next | Request::StartStream | Request::StopStream => None,
        }
    }

    fn parse(&self, frame: &RawFrame) -> Result<Reply, CodecError> {
        self.payload(frame)
            .and_then(|text| self.parse_payload(text, &frame.raw))
            .map_err(|e| CodecError::frame(e, &frame.raw))
    }

    fn answers(&self, request: Request, reply: &Reply) -> bool {
        match reply {
            Reply::Reading(_) => matches!(request, Request::Poll | Request::Handshake),
            Reply::Registered { .. } => request == Request::Register,
            Reply::Refused(_) => request.wants_weight(),
            Reply::Info { .. } => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn protocol() -> Arc<dyn ScaleProtocol> {
        Arc::new(DisomatProtocol::new(DisomatOptions::default(), None))
    }

    fn one(bytes: &[u8]) -> Result<Reply, String> {
        let out = decode_chunks(protocol(), &[bytes.to_vec()]);
        assert_eq!(out.len(), 1, "{out:?}");
        out.into_iter().next().unwrap_or(Err("none".to_owned()))
    }

    #[test]
    fn bcc_worked_example_from_scales_md() {
        assert_eq!(bcc(b"00#TG#\x03"), 0x10);
        assert_eq!(
            protocol().encode(Request::Poll).unwrap(),
            b"\x0200#TG#\x03\x10"
        );
        let dle = DisomatProtocol::new(
            DisomatOptions {
                dle_before_etx: true,
                ..DisomatOptions::default()
            },
            Some(3),
        );
        assert_eq!(
            dle.encode(Request::Poll).unwrap(),
            b"\x0203#TG#\x10\x03\x03"
        );
    }

    #[test]
    fn golden_replies() {
        let tg = encode_frame("00#TG#  12340#   2000#0#0#", false);
        let Ok(Reply::Reading(r)) = one(&tg) else {
            panic!("TG did not decode");
        };
        assert_eq!(r.net, Some(Weight::kg(12_340)));
        assert_eq!(r.tare, Some(Weight::kg(2000)));
        assert_eq!(r.gross, Some(Weight::kg(14_340)));
        assert!(r.stable);
        let satus = encode_frame("00#TG# -123,5#  100,0#12,3#c1#", false);
        let Ok(Reply::Reading(r)) = one(&satus) else {
            panic!("decimal-comma TG did not decode");
        };
        assert_eq!(r.net, Some(Weight::new(-1235, 1, Unit::Kg)));
        assert!(!r.stable);
        let over = encode_frame("00#TG#  99999#      0#0#2#", false);
        let Ok(Reply::Reading(r)) = one(&over) else {
            panic!("overload TG did not decode");
        };
        assert!(r.overload && r.net.is_none());
        let dr = encode_frame("00#DR#1#0#0#05.06.25#13:12#4711#  24000 kg#", false);
        assert_eq!(
            one(&dr),
            Ok(Reply::Registered {
                reading: Reading {
                    net: Some(Weight::kg(24_000)),
                    unit: Some(Unit::Kg),
                    stable: true,
                    raw: dr.clone(),
                    ..Reading::default()
                },
                alibi_id: Some("4711".to_owned()),
                terminal_time: Some("05.06.25 13:12".to_owned()),
            })
        );
        let dr_over = encode_frame("00#DR#1#0#2#05.06.25#13:12#4712#        #", false);
        assert_eq!(one(&dr_over), Ok(Reply::Refused(Refusal::Overload)));
        let dr_refused = encode_frame("00#DR#1#3#0#05.06.25#13:12##  #", false);
        assert!(matches!(
            one(&dr_refused),
            Ok(Reply::Refused(Refusal::Weight(_)))
        ));
    }

    #[test]
    fn golden_errors() {
        let mut bad = encode_frame("00#TG#  12340#   2000#0#0#", false);
        let last = bad.len() - 1;
        bad[last] ^= 0x01;
        assert!(one(&bad).unwrap_err().contains("BCC"));
        assert!(
            one(&encode_frame("00#TG#1#", false))
                .unwrap_err()
                .contains("needs 6")
        );
        assert!(
            one(&encode_frame("00#TG#1#2#0#zz#", false))
                .unwrap_err()
                .contains("not hex")
        );
        assert!(
            one(&encode_frame("00#DR#1#0#0#d#t#1#12 oz#", false))
                .unwrap_err()
                .contains("unsupported unit")
        );
        let other = encode_frame("07#TG#1#2#0#0#", false);
        assert!(matches!(one(&other), Ok(Reply::Info { .. })));
    }

    fn arb_frames() -> impl Strategy<Value = Vec<(Vec<u8>, Reply)>> {
        proptest::collection::vec(
            (-9_999_999i64..=9_999_999, 0i64..=99_999, 0u16..=1).prop_map(|(net, tare, st)| {
                let raw = encode_frame(&format!("00#TG#{net:>8}#{tare:>8}#0#{st:x}#"), false);
                let reply = crate::scale::protocol::decode_one(protocol(), &raw);
                (raw, reply)
            }),
            1..8,
        )
    }

    crate::scale::protocol::decoder_properties!(protocol(), arb_frames());
}
