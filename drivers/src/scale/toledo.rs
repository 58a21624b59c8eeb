//! Toledo "standard continuous output": the terminal sends, unasked and continuously,
//! `<STX> SWA SWB SWC wwwwww tttttt <CR> [CHK]` (scales.md §1.2).
//!
//! * SWA bits 0–2: decimal position (`000` = ×100 … `010` = ×1 … `111` = 5 decimals);
//!   bits 3–4: count-by (`01` ×1, `10` ×2, `11` ×5).
//! * SWB: b0 net, b1 negative, b2 out of range, b3 motion, b4 kg (else lb), b6 zero not
//!   captured after power-up.
//! * SWC bits 0–2: unit (`000` lb/kg per SWB b4, `001` g, `010` t); b6 keyboard tare on
//!   Fairbanks only.
//! * CHK = two's complement of the 7 low bits of the sum of STX … CR.
//!
//! Bit 7 of every byte may be a parity bit on 7-bit lines, so status bytes are masked.
//! Vendor differences (scales.md uncertainty register 2) are options, not guesses: whether a
//! checksum follows, whether the tare field is sent, whether SWC b6 means keyboard tare, and
//! which unit "no units" (`111`) stands for.

use serde::{Deserialize, Serialize};

use crate::scale::framing::{CodecError, Framing, RawFrame};
use crate::scale::protocol::{Protocol, Reply, Request, ScaleProtocol};
use crate::scale::reading::{Reading, TareKind, Unit, Weight, checked_add};

/// `<STX>`
pub const STX: u8 = 0x02;
/// `<CR>`
pub const CR: u8 = 0x0D;
/// Status words plus two 6-digit fields.
const BODY_WITH_TARE: usize = 15;
/// Status words plus the weight field ("short" form without tare).
const BODY_WITHOUT_TARE: usize = 9;
/// Digits per weight field.
const FIELD_DIGITS: usize = 6;

fn yes() -> bool {
    true
}

/// Options for `protocol = "toledo-continuous"`, table `[scales.toledo]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToledoOptions {
    /// A checksum byte follows the CR (terminal setting; off on most factory defaults).
    #[serde(default)]
    pub checksum: bool,
    /// The 6-digit tare field is sent (the "short" format omits it).
    #[serde(default = "yes")]
    pub tare_field: bool,
    /// SWC bit 6 means keyboard (preset) tare, as on Fairbanks; MT/Ohaus send 0 there.
    #[serde(default)]
    pub hand_tare_bit: bool,
    /// The unit meant by SWC units `111` ("no units"/custom); unset = such frames are errors.
    #[serde(default)]
    pub no_units_unit: Option<Unit>,
}

impl Default for ToledoOptions {
    fn default() -> Self {
        Self {
            checksum: false,
            tare_field: true,
            hand_tare_bit: false,
            no_units_unit: None,
        }
    }
}

/// Why a Toledo frame is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ToledoError {
    /// The body has the wrong length for the configured format.
    #[error("frame body has {got} bytes, expected {expected}")]
    Length {
        /// Bytes between STX and CR.
        got: usize,
        /// What the configured format needs.
        expected: usize,
    },
    /// The checksum byte does not match.
    #[error("checksum {got:#04x} does not match computed {expected:#04x}")]
    Checksum {
        /// Received.
        got: u8,
        /// Computed over STX … CR.
        expected: u8,
    },
    /// A weight field holds something other than digits and leading spaces.
    #[error("weight field {0:?} is not 6 digits")]
    BadDigits(String),
    /// SWA count-by bits are `00`.
    #[error("status word A {0:#04x} has no valid count-by")]
    BadCountBy(u8),
    /// SWC names a unit this crate does not support.
    #[error("status word C unit code {0:#05b} is not supported")]
    UnsupportedUnit(u8),
}

/// Checksum over STX … CR: `(-(Σ & 0x7F)) & 0x7F`.
pub fn checksum(bytes: &[u8]) -> u8 {
    let sum = bytes.iter().fold(0u8, |acc, b| acc.wrapping_add(*b));
    (sum & 0x7F).wrapping_neg() & 0x7F
}

/// What a continuous-output frame says, before it becomes a `Reading`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToledoFrame {
    /// Status word A (decimal position, count-by).
    pub swa: u8,
    /// Status word B (net, sign, range, motion, kg).
    pub swb: u8,
    /// Status word C (unit, print request, keyboard tare).
    pub swc: u8,
    /// Displayed digits, unsigned.
    pub displayed: u32,
    /// Tare digits, when sent.
    pub tare: Option<u32>,
}

impl ToledoFrame {
    /// The count-by multiplier (1, 2 or 5).
    pub fn count_by(&self) -> Result<u8, ToledoError> {
        match (self.swa >> 3) & 0b11 {
            0b01 => Ok(1),
            0b10 => Ok(2),
            0b11 => Ok(5),
            _ => Err(ToledoError::BadCountBy(self.swa)),
        }
    }
}

fn parse_digits(field: &[u8]) -> Result<u32, ToledoError> {
    let bad = || ToledoError::BadDigits(String::from_utf8_lossy(field).into_owned());
    let text = std::str::from_utf8(field).map_err(|_| bad())?;
    let digits = text.trim_start_matches(' ');
    if digits.is_empty() {
        return Ok(0);
    }
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    digits.parse().map_err(|_| bad())
}

/// The Toledo continuous protocol with its options.
#[derive(Debug, Clone, Default)]
pub struct ToledoProtocol {
    options: ToledoOptions,
}

impl ToledoProtocol {
    /// The protocol with `options`.
    pub fn new(options: ToledoOptions) -> Self {
        Self { options }
    }

    fn body_len(&self) -> usize {
        if self.options.tare_field {
            BODY_WITH_TARE
        } else {
            BODY_WITHOUT_TARE
        }
    }

    /// Checks length and checksum and splits the fields.
    pub fn parse_frame(&self, frame: &RawFrame) -> Result<ToledoFrame, ToledoError> {
        let body = frame.body();
        if body.len() != self.body_len() {
            return Err(ToledoError::Length {
                got: body.len(),
                expected: self.body_len(),
            });
        }
        if self.options.checksum {
            let covered = &frame.raw[..frame.raw.len() - 1];
            let expected = checksum(covered);
            let got = frame.trailer().first().copied().unwrap_or(0) & 0x7F;
            if got != expected {
                return Err(ToledoError::Checksum { got, expected });
            }
        }
        let tare = if self.options.tare_field {
            Some(parse_digits(&body[3 + FIELD_DIGITS..])?)
        } else {
            None
        };
        Ok(ToledoFrame {
            swa: body[0] & 0x7F,
            swb: body[1] & 0x7F,
            swc: body[2] & 0x7F,
            displayed: parse_digits(&body[3..3 + FIELD_DIGITS])?,
            tare,
        })
    }

    /// The reading a frame describes.
    pub fn to_reading(&self, frame: &ToledoFrame, raw: &[u8]) -> Result<Reading, ToledoError> {
        frame.count_by()?;
        let unit = match frame.swc & 0b111 {
            0b000 if frame.swb & 0x10 != 0 => Unit::Kg,
            0b000 => Unit::Lb,
            0b001 => Unit::G,
            0b010 => Unit::T,
            0b111 => self
                .options
                .no_units_unit
                .ok_or(ToledoError::UnsupportedUnit(frame.swc & 0b111))?,
            other => return Err(ToledoError::UnsupportedUnit(other)),
        };
        // Decimal position: codes 0 and 1 mean trailing fixed zeros (×100, ×10).
        let (factor, decimals) = match frame.swa & 0b111 {
            0 => (100, 0),
            1 => (10, 0),
            code => (1, code - 2),
        };
        let weight = |digits: u32, negative: bool| {
            let value = i64::from(digits) * factor;
            Weight::new(if negative { -value } else { value }, decimals, unit)
        };
        let net_mode = frame.swb & 0x01 != 0;
        let negative = frame.swb & 0x02 != 0;
        let out_of_range = frame.swb & 0x04 != 0;
        let motion = frame.swb & 0x08 != 0;
        let zero_not_captured = frame.swb & 0x40 != 0;
        let displayed = weight(frame.displayed, negative);
        let tare = frame.tare.map(|t| weight(t, false));
        let hand_tare = self.options.hand_tare_bit && frame.swc & 0x40 != 0;
        let (net, gross) = if out_of_range {
            (None, None)
        } else if net_mode {
            let gross = tare.and_then(|t| checked_add(&displayed, &t));
            (Some(displayed), gross)
        } else {
            (Some(displayed), Some(displayed))
        };
        let tare_kind = match (net_mode, hand_tare) {
            (false, _) => TareKind::None,
            (true, true) => TareKind::Preset,
            (true, false) => TareKind::Weighed,
        };
        Ok(Reading {
            net,
            gross,
            tare,
            unit: Some(unit),
            // A terminal that has not captured zero since power-up shows no valid weight.
            stable: !motion && !zero_not_captured && !out_of_range,
            overload: out_of_range && !negative,
            underload: out_of_range && negative,
            center_of_zero: None,
            net_mode: Some(net_mode),
            tare_kind: Some(tare_kind),
            raw: raw.to_vec(),
        })
    }
}

/// What the simulator puts in a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ToledoOutput {
    /// Displayed whole kilograms (net in net mode), sign included.
    pub displayed_kg: i64,
    /// Tare in whole kilograms.
    pub tare_kg: i64,
    /// Net mode.
    pub net_mode: bool,
    /// In motion.
    pub motion: bool,
    /// Out of range.
    pub out_of_range: bool,
    /// Count-by multiplier bits for SWA (1, 2 or 5).
    pub count_by: u8,
}

/// Formats a frame as a terminal sends it (whole kg, decimal code `010`, kg).
pub fn encode_frame(output: &ToledoOutput, options: &ToledoOptions) -> Vec<u8> {
    let count_bits: u8 = match output.count_by {
        2 => 0b10,
        5 => 0b11,
        _ => 0b01,
    };
    let swa = 0x20 | (count_bits << 3) | 0b010;
    let mut swb = 0x20 | 0x10;
    if output.net_mode {
        swb |= 0x01;
    }
    if output.displayed_kg < 0 {
        swb |= 0x02;
    }
    if output.out_of_range {
        swb |= 0x04;
    }
    if output.motion {
        swb |= 0x08;
    }
    let swc = 0x20;
    let field = |kg: i64| format!("{:>6}", kg.unsigned_abs().min(999_999));
    let mut out = vec![STX, swa, swb, swc];
    out.extend_from_slice(field(output.displayed_kg).as_bytes());
    if options.tare_field {
        out.extend_from_slice(field(output.tare_kg).as_bytes());
    }
    out.push(CR);
    if options.checksum {
        out.push(checksum(&out));
    }
    out
}

impl ScaleProtocol for ToledoProtocol {
    fn protocol(&self) -> Protocol {
        Protocol::ToledoContinuous
    }

    fn framing(&self) -> Framing {
        Framing::delimited(STX, CR, usize::from(self.options.checksum), BODY_WITH_TARE)
    }

    fn encode(&self, request: Request) -> Option<Vec<u8>> {
        match request {
            // Nothing to send: the terminal streams; a frame is the answer.
            Request::Next | Request::StartStream | Request::Handshake => Some(Vec::new()),
            Request::Poll | Request::Register | Request::StopStream => None,
        }
    }

    fn parse(&self, frame: &RawFrame) -> Result<Reply, CodecError> {
        let fields = self
            .parse_frame(frame)
            .map_err(|e| CodecError::frame(e, &frame.raw))?;
        let reading = self
            .to_reading(&fields, &frame.raw)
            .map_err(|e| CodecError::frame(e, &frame.raw))?;
        Ok(Reply::Reading(reading))
    }

    fn answers(&self, request: Request, reply: &Reply) -> bool {
        matches!(reply, Reply::Reading(_))
            && matches!(
                request,
                Request::Next | Request::StartStream | Request::Handshake
            )
    }

    fn streams_by_itself(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn with_checksum() -> ToledoOptions {
        ToledoOptions {
            checksum: true,
            ..ToledoOptions::default()
        }
    }

    fn protocol_with(options: ToledoOptions) -> Arc<dyn ScaleProtocol> {
        Arc::new(ToledoProtocol::new(options))
    }

    fn reading(raw: &[u8], options: ToledoOptions) -> Result<Reply, String> {
        let out = decode_chunks(protocol_with(options), &[raw.to_vec()]);
        assert_eq!(out.len(), 1, "{out:?}");
        out.into_iter().next().unwrap_or(Err("none".to_owned()))
    }

    /// The worked example of scales.md §1.2, byte for byte.
    const WORKED: &[u8] =
        b"\x02\x32\x30\x20\x20\x31\x32\x33\x34\x30\x20\x20\x20\x20\x20\x30\x0D\x05";

    #[test]
    fn worked_example_from_scales_md() {
        assert_eq!(checksum(&WORKED[..17]), 0x05);
        let Ok(Reply::Reading(r)) = reading(WORKED, with_checksum()) else {
            panic!("worked example did not decode");
        };
        assert_eq!(r.net, Some(Weight::kg(12_340)));
        assert_eq!(r.gross, Some(Weight::kg(12_340)));
        assert_eq!(r.tare, Some(Weight::kg(0)));
        assert!(r.stable && !r.overload && !r.underload);
        assert_eq!(r.net_mode, Some(false));
        assert_eq!(r.tare_kind, Some(TareKind::None));
        assert_eq!(r.raw, WORKED);
        let fields = ToledoProtocol::new(with_checksum())
            .parse_frame(&decode_raw(WORKED))
            .unwrap();
        assert_eq!(fields.count_by(), Ok(2));
        let output = ToledoOutput {
            displayed_kg: 12_340,
            tare_kg: 0,
            net_mode: false,
            motion: false,
            out_of_range: false,
            count_by: 2,
        };
        assert_eq!(encode_frame(&output, &with_checksum()), WORKED);
    }

    fn decode_raw(bytes: &[u8]) -> RawFrame {
        let mut buf = bytes::BytesMut::from(bytes);
        crate::scale::framing::FrameSplitter::new(ToledoProtocol::new(with_checksum()).framing())
            .next_frame(&mut buf)
            .unwrap()
            .unwrap()
    }

    /// Golden: byte streams → readings or errors.
    #[test]
    fn golden_frames() {
        // Net mode, motion, preset tare via the Fairbanks bit, decimals 1 (code 011), tonnes.
        let options = ToledoOptions {
            hand_tare_bit: true,
            ..ToledoOptions::default()
        };
        let Ok(Reply::Reading(r)) = reading(b"\x02\x2b\x39\x62   123    20\r", options) else {
            panic!("net frame did not decode");
        };
        assert_eq!(r.net, Some(Weight::new(123, 1, Unit::T)));
        assert_eq!(r.tare, Some(Weight::new(20, 1, Unit::T)));
        assert_eq!(r.gross, Some(Weight::new(143, 1, Unit::T)));
        assert!(!r.stable);
        assert_eq!(r.tare_kind, Some(TareKind::Preset));
        // Out of range, positive: overload; negative: underload.
        let Ok(Reply::Reading(over)) =
            reading(b"\x02\x32\x34\x20 99999     0\r", ToledoOptions::default())
        else {
            panic!("overload frame did not decode");
        };
        assert!(over.overload && !over.underload && over.net.is_none());
        let Ok(Reply::Reading(under)) =
            reading(b"\x02\x32\x36\x20   100     0\r", ToledoOptions::default())
        else {
            panic!("underload frame did not decode");
        };
        assert!(under.underload && !under.overload);
        // Code 000: fixed zeros, ×100; lb from SWB b4 = 0.
        let Ok(Reply::Reading(lb)) =
            reading(b"\x02\x28\x20\x20    12     0\r", ToledoOptions::default())
        else {
            panic!("lb frame did not decode");
        };
        assert_eq!(lb.net, Some(Weight::new(1200, 0, Unit::Lb)));
    }

    #[test]
    fn golden_errors() {
        let mut bad_sum = WORKED.to_vec();
        bad_sum[17] = 0x06;
        let error = reading(&bad_sum, with_checksum()).unwrap_err();
        assert!(error.contains("checksum 0x06"), "{error}");
        let error = reading(b"\x02\x32\x30\x20 12a40     0\r", ToledoOptions::default());
        assert!(error.unwrap_err().contains("not 6 digits"));
        let error = reading(b"\x02\x22\x30\x20 12340     0\r", ToledoOptions::default());
        assert!(error.unwrap_err().contains("count-by"));
        let error = reading(b"\x02\x32\x30\x23 12340     0\r", ToledoOptions::default());
        assert!(error.unwrap_err().contains("unit code"));
        let error = reading(b"\x02\x32\x30\x20 12340\r", ToledoOptions::default());
        assert!(error.unwrap_err().contains("expected 15"));
        let short = ToledoOptions {
            tare_field: false,
            ..ToledoOptions::default()
        };
        assert!(matches!(
            reading(b"\x02\x32\x30\x20 12340\r", short),
            Ok(Reply::Reading(_))
        ));
    }

    fn arb_frames() -> impl Strategy<Value = Vec<(Vec<u8>, Reply)>> {
        proptest::collection::vec(
            (
                -999_999i64..=999_999,
                0i64..=99_999,
                any::<bool>(),
                any::<bool>(),
            )
                .prop_map(|(displayed_kg, tare_kg, net_mode, motion)| {
                    let output = ToledoOutput {
                        displayed_kg,
                        tare_kg,
                        net_mode,
                        motion,
                        out_of_range: false,
                        count_by: 1,
                    };
                    let raw = encode_frame(&output, &with_checksum());
                    let protocol = ToledoProtocol::new(with_checksum());
                    let reply = protocol.parse(&decode_raw(&raw)).unwrap();
                    (raw, reply)
                }),
            1..8,
        )
    }

    crate::scale::protocol::decoder_properties!(protocol_with(with_checksum()), arb_frames());
}
