//! SysTec IT terminals (IT1/IT3/IT3000/IT6000/IT8000), scales.md §1.6: commands in angle
//! brackets, optionally followed by the scale number (`<RM1>`), replies in angle brackets
//! followed by CR LF. `<RM>` reads the weight, `<RN>` reads it **and** stores it in the alibi
//! memory, returning the Ident-No.
//!
//! Reply body (1-based positions inside the brackets): 1–2 error code (`00` = OK), 3–4 scale
//! status (1st digit ≠ 0: no standstill; 2nd ≠ 0: no valid weight), 5–12 date, 13–17 time,
//! 18–21 Ident-No., 22 scale number, 23–30 gross, 31–38 tare, 39–46 net, 47–48 unit, 49–50
//! tare code (`PT` preset, ` T` weighed). Bytes after 50 (range, terminal number, CRC-16) are
//! [C] in scales.md and are kept in `raw` but not interpreted.
//!
//! Uncertain points made explicit: `<RM>` is assumed to reply in the `<RN>` layout with Ident
//! 0; the 2nd status digit only says "no valid weight", so it is reported as underload for a
//! negative gross and overload otherwise; whether the Ident-No. restarts daily is an option
//! (`ident_restarts_daily`): when it does, the alibi id is `date/ident`.

use serde::{Deserialize, Serialize};

use crate::scale::framing::{CodecError, Framing, RawFrame};
use crate::scale::protocol::{Protocol, Refusal, Reply, Request, ScaleProtocol};
use crate::scale::reading::{
    Reading, TareKind, Unit, WeightParseError, checked_sub, parse_weight_field,
};

/// Opens a SysTec frame.
pub const OPEN: u8 = b'<';
/// Closes a SysTec frame.
pub const CLOSE: u8 = b'>';
/// Length of the fields we interpret.
pub const REPLY_FIELDS_BYTES: usize = 50;
/// Longest reply accepted (50 fields plus the optional tail).
const MAX_FRAME_BYTES: usize = 96;

fn yes() -> bool {
    true
}

/// Options for `protocol = "systec"`, table `[scales.systec]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SystecOptions {
    /// The Ident-No. restarts every day (scales.md [B]); the alibi id then includes the date.
    #[serde(default = "yes")]
    pub ident_restarts_daily: bool,
}

impl Default for SystecOptions {
    fn default() -> Self {
        Self {
            ident_restarts_daily: true,
        }
    }
}

/// Why a SysTec reply is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SystecError {
    /// Too short for the fixed layout.
    #[error("reply has {0} bytes, the layout needs {REPLY_FIELDS_BYTES}")]
    TooShort(usize),
    /// Bytes outside printable ASCII.
    #[error("reply contains non-printable bytes")]
    NotAscii,
    /// Error code or status is not two digits.
    #[error("{field} {value:?} is not two digits")]
    NotDigits {
        /// Which field.
        field: &'static str,
        /// What was found.
        value: String,
    },
    /// Unit not supported.
    #[error("unsupported unit {0:?}")]
    Unit(String),
    /// A weight field does not parse.
    #[error("bad weight field: {0}")]
    Weight(#[from] WeightParseError),
    /// Unknown tare code.
    #[error("unknown tare code {0:?}")]
    TareCode(String),
}

fn two_digits(field: &'static str, value: &str) -> Result<(), SystecError> {
    if value.len() == 2 && value.bytes().all(|b| b.is_ascii_digit()) {
        Ok(())
    } else {
        Err(SystecError::NotDigits {
            field,
            value: value.to_owned(),
        })
    }
}

/// A parsed weight reply.
#[derive(Debug, Clone, PartialEq)]
pub struct SystecReply {
    /// The reading.
    pub reading: Reading,
    /// Ident-No. as sent (trimmed); "0" without alibi memory.
    pub ident: String,
    /// Date as sent.
    pub date: String,
    /// Time as sent.
    pub time: String,
    /// Scale number as sent.
    pub scale: char,
}

/// Parses a reply body (between `<` and `>`); an error code other than `00` is a refusal.
pub fn parse_body(body: &[u8], raw: &[u8]) -> Result<Result<SystecReply, String>, SystecError> {
    if !body.iter().all(|b| (0x20..0x7f).contains(b)) {
        return Err(SystecError::NotAscii);
    }
    let text = std::str::from_utf8(body).map_err(|_| SystecError::NotAscii)?;
    let field = |from: usize, to: usize| text.get(from - 1..to).unwrap_or("");
    let code = field(1, 2);
    two_digits("error code", code)?;
    if code != "00" {
        return Ok(Err(format!("error code {code}")));
    }
    if body.len() < REPLY_FIELDS_BYTES {
        return Err(SystecError::TooShort(body.len()));
    }
    let status = field(3, 4);
    two_digits("scale status", status)?;
    let unit = match field(47, 48).trim_matches([' ', '_']) {
        "kg" => Unit::Kg,
        "g" => Unit::G,
        "t" => Unit::T,
        "lb" => Unit::Lb,
        other => return Err(SystecError::Unit(other.to_owned())),
    };
    let gross = parse_weight_field(field(23, 30), unit)?;
    let tare = parse_weight_field(field(31, 38), unit)?;
    let net = parse_weight_field(field(39, 46), unit)?;
    let tare_kind = match field(49, 50).replace('_', " ").as_str() {
        "PT" => TareKind::Preset,
        " T" | "T " => TareKind::Weighed,
        "  " => TareKind::None,
        other => return Err(SystecError::TareCode(other.to_owned())),
    };
    let settled = status.as_bytes()[0] == b'0';
    let valid = status.as_bytes()[1] == b'0';
    let negative = gross.is_some_and(|g| g.value < 0);
    let net = net.or_else(|| gross.zip(tare).and_then(|(g, t)| checked_sub(&g, &t)));
    let net_mode = tare_kind != TareKind::None || tare.is_some_and(|t| t.value != 0);
    Ok(Ok(SystecReply {
        reading: Reading {
            net: if valid { net } else { None },
            gross: if valid { gross } else { None },
            tare,
            unit: Some(unit),
            stable: settled && valid,
            overload: !valid && !negative,
            underload: !valid && negative,
            center_of_zero: None,
            net_mode: Some(net_mode),
            tare_kind: Some(tare_kind),
            raw: raw.to_vec(),
        },
        ident: field(18, 21).trim().to_owned(),
        date: field(5, 12).to_owned(),
        time: field(13, 17).to_owned(),
        scale: field(22, 22).chars().next().unwrap_or(' '),
    }))
}

/// What the simulator puts in a reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystecOutput {
    /// `00` or an error code.
    pub error_code: u8,
    /// In motion.
    pub motion: bool,
    /// Over or under range.
    pub invalid: bool,
    /// `dd.mm.yy`.
    pub date: String,
    /// `HH:MM`.
    pub time: String,
    /// Ident-No. (0 for `<RM>`).
    pub ident: u32,
    /// Scale number digit.
    pub scale: u8,
    /// Gross in whole kg.
    pub gross_kg: i64,
    /// Tare in whole kg.
    pub tare_kg: i64,
}

/// Formats a reply as the terminal sends it, CR LF included.
pub fn encode_reply(o: &SystecOutput) -> Vec<u8> {
    if o.error_code != 0 {
        return format!("<{:02}>\r\n", o.error_code.min(99)).into_bytes();
    }
    let tare_code = if o.tare_kg != 0 { " T" } else { "  " };
    let text = format!(
        "<00{}{}{:>8.8}{:>5.5}{:>4}{}{:>8}{:>8}{:>8}kg{tare_code}>\r\n",
        u8::from(o.motion),
        u8::from(o.invalid),
        o.date,
        o.time,
        o.ident % 10_000,
        o.scale % 10,
        o.gross_kg.clamp(-9_999_999, 99_999_999),
        o.tare_kg.clamp(-9_999_999, 99_999_999),
        (o.gross_kg - o.tare_kg).clamp(-9_999_999, 99_999_999),
    );
    text.into_bytes()
}

/// SysTec IT with its options and the device's scale number.
#[derive(Debug, Clone, Default)]
pub struct SystecProtocol {
    options: SystecOptions,
    scale: Option<u8>,
}

impl SystecProtocol {
    /// The protocol for scale number `scale` (None: the terminal's default scale).
    pub fn new(options: SystecOptions, scale: Option<u8>) -> Self {
        Self { options, scale }
    }

    fn command(&self, name: &str) -> Vec<u8> {
        match self.scale {
            Some(n) => format!("<{name}{n}>").into_bytes(),
            None => format!("<{name}>").into_bytes(),
        }
    }
}

impl ScaleProtocol for SystecProtocol {
    fn protocol(&self) -> Protocol {
        Protocol::Systec
    }

    fn framing(&self) -> Framing {
        Framing::delimited(OPEN, CLOSE, 0, MAX_FRAME_BYTES)
    }

    fn encode(&self, request: Request) -> Option<Vec<u8>> {
        match request {
            Request::Poll | Request::Handshake => Some(self.command("RM")),
            Request::Register => Some(self.command("RN")),
            Request::Next | Request::StartStream | Request::StopStream => None,
        }
    }

    fn parse(&self, frame: &RawFrame) -> Result<Reply, CodecError> {
        let parsed =
            parse_body(frame.body(), &frame.raw).map_err(|e| CodecError::frame(e, &frame.raw))?;
        let reply = match parsed {
            Err(code) => return Ok(Reply::Refused(Refusal::Weight(code))),
            Ok(reply) => reply,
        };
        if let Some(expected) = self.scale
            && reply.scale.to_digit(10) != Some(u32::from(expected))
        {
            // Another scale's reply on the same terminal; not ours.
            return Ok(Reply::Info {
                topic: format!("scale {}", reply.scale),
                text: String::new(),
            });
        }
        let ident = reply.ident.trim_start_matches('0');
        let alibi_id = (!ident.is_empty()).then(|| {
            if self.options.ident_restarts_daily {
                format!("{}/{ident}", reply.date.trim())
            } else {
                ident.to_owned()
            }
        });
        Ok(Reply::Registered {
            reading: reply.reading,
            alibi_id,
            terminal_time: Some(format!("{} {}", reply.date.trim(), reply.time.trim())),
        })
    }

    fn answers(&self, request: Request, reply: &Reply) -> bool {
        match reply {
            Reply::Registered { .. } | Reply::Refused(_) => {
                matches!(
                    request,
                    Request::Poll | Request::Register | Request::Handshake
                )
            }
            Reply::Reading(_) | Reply::Info { .. } => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::scale::reading::Weight;

    fn protocol() -> Arc<dyn ScaleProtocol> {
        Arc::new(SystecProtocol::default())
    }

    fn one(bytes: &[u8]) -> Result<Reply, String> {
        let out = decode_chunks(protocol(), &[bytes.to_vec()]);
        assert_eq!(out.len(), 1, "{out:?}");
        out.into_iter().next().unwrap_or(Err("none".to_owned()))
    }

    const RN_REPLY: &[u8] = b"<000005.06.1813:12  211   20000       0   20000kg  >\r\n";

    #[test]
    fn golden_register_reply() {
        let Ok(Reply::Registered {
            reading,
            alibi_id,
            terminal_time,
        }) = one(RN_REPLY)
        else {
            panic!("RN reply did not decode");
        };
        assert_eq!(reading.gross, Some(Weight::kg(20_000)));
        assert_eq!(reading.net, Some(Weight::kg(20_000)));
        assert_eq!(reading.tare, Some(Weight::kg(0)));
        assert!(reading.stable);
        assert_eq!(reading.tare_kind, Some(TareKind::None));
        assert_eq!(alibi_id.as_deref(), Some("05.06.18/21"));
        assert_eq!(terminal_time.as_deref(), Some("05.06.18 13:12"));
        assert_eq!(reading.raw, &RN_REPLY[..RN_REPLY.len() - 2]);
    }

    #[test]
    fn golden_status_and_errors() {
        let moving = b"<001005.06.1813:12   01   21000    1000   20000kg T>\r\n";
        let Ok(Reply::Registered {
            reading, alibi_id, ..
        }) = one(moving)
        else {
            panic!("motion reply did not decode");
        };
        assert!(!reading.stable);
        assert_eq!(alibi_id, None);
        assert_eq!(reading.tare_kind, Some(TareKind::Weighed));
        let preset = b"<000005.06.1813:12   01   21000    1000   20000kgPT>\r\n";
        let Ok(Reply::Registered { reading, .. }) = one(preset) else {
            panic!("preset tare reply did not decode");
        };
        assert_eq!(reading.tare_kind, Some(TareKind::Preset));
        let invalid = b"<000105.06.1813:12   01     -60       0     -60kg  >\r\n";
        let Ok(Reply::Registered { reading, .. }) = one(invalid) else {
            panic!("invalid reply did not decode");
        };
        assert!(reading.underload && reading.net.is_none());
        assert_eq!(
            one(b"<13>\r\n"),
            Ok(Reply::Refused(Refusal::Weight("error code 13".to_owned())))
        );
        // The example in the SysTec note has its spaces collapsed: a typed error, no panic.
        let collapsed = b"<000005.06.1813:12 21 20000 0 20000kg 1 27387>\r\n";
        assert!(one(collapsed).unwrap_err().contains("layout needs 50"));
        assert!(one(b"<XX>").unwrap_err().contains("not two digits"));
        let unit = b"<000005.06.1813:12  211   20000       0   20000oz  >";
        assert!(one(unit).unwrap_err().contains("unsupported unit"));
    }

    #[test]
    fn commands_carry_the_scale_number_and_other_scales_are_not_ours() {
        let p = SystecProtocol::new(SystecOptions::default(), Some(2));
        assert_eq!(p.encode(Request::Register).unwrap(), b"<RN2>");
        let out = decode_chunks(Arc::new(p), &[RN_REPLY.to_vec()]);
        assert!(matches!(out[0], Ok(Reply::Info { .. })), "{out:?}");
        assert_eq!(
            SystecProtocol::default().encode(Request::Poll).unwrap(),
            b"<RM>"
        );
    }

    fn arb_frames() -> impl Strategy<Value = Vec<(Vec<u8>, Reply)>> {
        proptest::collection::vec(
            (0i64..=9_999_999, 0i64..=99_999, 0u32..=9999, any::<bool>()).prop_map(
                |(gross_kg, tare_kg, ident, motion)| {
                    let raw = encode_reply(&SystecOutput {
                        error_code: 0,
                        motion,
                        invalid: false,
                        date: "01.02.25".to_owned(),
                        time: "08:15".to_owned(),
                        ident,
                        scale: 1,
                        gross_kg,
                        tare_kg,
                    });
                    let reply = crate::scale::protocol::decode_one(protocol(), &raw);
                    (raw, reply)
                },
            ),
            1..8,
        )
    }

    crate::scale::protocol::decoder_properties!(protocol(), arb_frames());
}
