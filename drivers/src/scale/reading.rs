//! Protocol-independent weight values and readings: `Unit`, the exact decimal `Weight`, a
//! terminal `Reading` and the `LegalWeighing` that only a weighing command may produce.
//!
//! Weights are kept as integer + number of decimals exactly as the terminal displayed them,
//! because legal-for-trade records must reproduce the displayed value, not a float.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The most digits a weight value may carry; keeps every value inside `i64`.
pub const MAX_WEIGHT_DIGITS: usize = 18;

/// Weighing unit as shown by the terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Unit {
    /// Gram.
    G,
    /// Kilogram.
    Kg,
    /// Metric tonne.
    T,
    /// Avoirdupois pound.
    Lb,
}

impl Unit {
    /// The unit's symbol as terminals print it.
    pub fn as_str(&self) -> &'static str {
        match self {
            Unit::G => "g",
            Unit::Kg => "kg",
            Unit::T => "t",
            Unit::Lb => "lb",
        }
    }

    /// How many kilograms one of this unit is.
    pub fn kg_factor(&self) -> f64 {
        match self {
            Unit::G => 0.001,
            Unit::Kg => 1.0,
            Unit::T => 1000.0,
            Unit::Lb => 0.453_592_37,
        }
    }
}

impl fmt::Display for Unit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a unit or weight text could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WeightParseError {
    /// The unit symbol is not one we support.
    #[error("unknown weight unit {0:?} (expected g, kg, t or lb)")]
    UnknownUnit(String),
    /// The text is not `<value> <unit>`.
    #[error("weight {0:?} is not of the form \"<value> <unit>\"")]
    Malformed(String),
    /// The numeric part is not a plain decimal number.
    #[error("weight value {0:?} is not a decimal number")]
    BadNumber(String),
    /// More digits than fit the exact representation.
    #[error("weight value {0:?} has more than {MAX_WEIGHT_DIGITS} digits")]
    TooManyDigits(String),
}

impl FromStr for Unit {
    type Err = WeightParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "g" => Ok(Unit::G),
            "kg" => Ok(Unit::Kg),
            "t" => Ok(Unit::T),
            "lb" => Ok(Unit::Lb),
            other => Err(WeightParseError::UnknownUnit(other.to_owned())),
        }
    }
}

/// Exact decimal weight as the terminal displayed it: value 12340, decimals 0, Kg = "12340 kg"; value 1234, decimals 2, T = "12.34 t".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Weight {
    /// The displayed digits as an integer, sign included.
    pub value: i64,
    /// How many of the digits are behind the decimal point.
    pub decimals: u8,
    /// The displayed unit.
    pub unit: Unit,
}

impl Weight {
    /// A weight of `value / 10^decimals` `unit`.
    pub fn new(value: i64, decimals: u8, unit: Unit) -> Self {
        Self {
            value,
            decimals,
            unit,
        }
    }

    /// Whole kilograms, the form the weighbridge and the simulators mostly use.
    pub fn kg(value: i64) -> Self {
        Self::new(value, 0, Unit::Kg)
    }

    /// The value in its own unit, e.g. 12.34 for "12.34 t".
    pub fn to_f64(&self) -> f64 {
        self.value as f64 / 10f64.powi(i32::from(self.decimals))
    }

    /// The value converted to kilograms.
    pub fn to_kg_f64(&self) -> f64 {
        self.to_f64() * self.unit.kg_factor()
    }

    /// |self - other|, None when unit or decimals differ.
    pub fn abs_diff(&self, other: &Weight) -> Option<Weight> {
        if self.unit != other.unit || self.decimals != other.decimals {
            return None;
        }
        // The difference of two i64 can exceed i64; saturate instead of wrapping or panicking.
        let diff = i64::try_from(self.value.abs_diff(other.value)).unwrap_or(i64::MAX);
        Some(Weight::new(diff, self.decimals, self.unit))
    }

    /// Orders two weights: exactly when they share a unit, via kilograms otherwise.
    /// None only when the float comparison is undefined.
    pub fn compare(&self, other: &Weight) -> Option<Ordering> {
        if self.unit == other.unit
            && let (Some(a), Some(b)) = (
                self.scaled_value(other.decimals),
                other.scaled_value(self.decimals),
            )
        {
            return Some(a.cmp(&b));
        }
        self.to_kg_f64().partial_cmp(&other.to_kg_f64())
    }

    /// The value rescaled to `max(self.decimals, decimals)` decimals, None on overflow.
    fn scaled_value(&self, decimals: u8) -> Option<i128> {
        let target = self.decimals.max(decimals);
        let factor = 10i128.checked_pow(u32::from(target - self.decimals))?;
        i128::from(self.value).checked_mul(factor)
    }
}

impl fmt::Display for Weight {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Done on digit strings, not arithmetic, so that no `decimals` value can overflow.
        let digits = self.value.unsigned_abs().to_string();
        let decimals = usize::from(self.decimals);
        let sign = if self.value < 0 { "-" } else { "" };
        if decimals == 0 {
            return write!(f, "{sign}{digits} {}", self.unit);
        }
        let padded = format!("{digits:0>width$}", width = decimals + 1);
        let (int_part, frac_part) = padded.split_at(padded.len() - decimals);
        write!(f, "{sign}{int_part}.{frac_part} {}", self.unit)
    }
}

/// Parses a decimal number such as `-12.34` into (value, decimals), exactly.
pub(crate) fn parse_decimal(text: &str) -> Result<(i64, u8), WeightParseError> {
    let bad = || WeightParseError::BadNumber(text.to_owned());
    let (negative, unsigned) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let (int_part, frac_part) = match unsigned.split_once('.') {
        Some((i, f)) => (i, f),
        None => (unsigned, ""),
    };
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if (int_part.is_empty() && frac_part.is_empty())
        || !all_digits(int_part)
        || !all_digits(frac_part)
    {
        return Err(bad());
    }
    if unsigned.contains('.') && frac_part.is_empty() {
        return Err(bad());
    }
    if int_part.len() + frac_part.len() > MAX_WEIGHT_DIGITS {
        return Err(WeightParseError::TooManyDigits(text.to_owned()));
    }
    let mut value: i64 = 0;
    for b in int_part.bytes().chain(frac_part.bytes()) {
        // Cannot overflow: at most 18 digits were admitted above.
        value = value * 10 + i64::from(b - b'0');
    }
    if negative {
        value = -value;
    }
    let decimals = u8::try_from(frac_part.len()).map_err(|_| bad())?;
    Ok((value, decimals))
}

impl FromStr for Weight {
    type Err = WeightParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut parts = s.split_ascii_whitespace();
        let (Some(number), Some(unit), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(WeightParseError::Malformed(s.to_owned()));
        };
        let unit: Unit = unit.parse()?;
        let (value, decimals) = parse_decimal(number)?;
        Ok(Weight::new(value, decimals, unit))
    }
}

/// How the active tare was obtained (OPC 40200 `TareMode`; OIML R 76 marks preset tare `PT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TareKind {
    /// No tare is active: the displayed weight is gross.
    None,
    /// The tare was weighed on the scale (tare key or `T` command).
    Weighed,
    /// The tare was entered, not weighed (keyboard or preset tare, `PT`).
    Preset,
}

/// One reading as the terminal reports it (field names after OPC 40200 Scales).
///
/// `net` is always the weight the terminal displays as the result: with no tare active it
/// equals the gross weight. Flags a protocol does not report stay `None`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Reading {
    /// Net weight (gross when no tare is active); None on overload/underload.
    pub net: Option<Weight>,
    /// Gross weight when the protocol reports it.
    pub gross: Option<Weight>,
    /// Tare weight when the protocol reports it.
    pub tare: Option<Weight>,
    /// The unit of the weights, also when an overload leaves no weight to carry it.
    pub unit: Option<Unit>,
    /// The terminal's own motion detection says the weight is stable.
    pub stable: bool,
    /// Weight above the weighing range.
    pub overload: bool,
    /// Weight below the weighing range.
    pub underload: bool,
    /// Within ±¼ e of zero, when the protocol reports it.
    pub center_of_zero: Option<bool>,
    /// The terminal displays net (a tare is active), when the protocol reports it.
    pub net_mode: Option<bool>,
    /// How the tare was obtained, when the protocol reports it.
    pub tare_kind: Option<TareKind>,
    /// The frame bytes as received, for audit.
    pub raw: Vec<u8>,
}

/// A weighing the terminal itself reported as stable in answer to a register/print command
/// (MT-SICS `S`, SysTec `<RN>`, DISOMAT `DR`, ...), never from `SI` or a live stream poll.
///
/// `#[non_exhaustive]`: only this crate's device task creates one, after the terminal
/// answered a weighing command, so no other code can pass a hand-made value off as legal.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct LegalWeighing {
    /// The stable weight: net, which equals gross when no tare is active.
    pub weight: Weight,
    /// Gross weight when the terminal reported it.
    pub gross: Option<Weight>,
    /// Tare weight when the terminal reported it.
    pub tare: Option<Weight>,
    /// How the tare was obtained, when the terminal reported it.
    pub tare_kind: Option<TareKind>,
    /// The terminal's alibi/ident/protocol number; None where the protocol has none (MT-SICS
    /// level 0/1, SMA, Toledo continuous).
    pub alibi_id: Option<String>,
    /// The scale's configured id.
    pub terminal_id: String,
    /// The terminal's own date and time of the registration, as it sent it (format is the
    /// terminal's configuration), where the protocol carries one.
    pub terminal_time: Option<String>,
    /// The reply frame as received.
    pub raw: Vec<u8>,
}

/// Parses a weight field as terminals print it: optional sign, spaces anywhere around the
/// digits (`"-  12.5"`, `" +0012340"`), and `.` or `,` as decimal separator (Schenck uses a
/// comma). An all-blank field is None.
pub fn parse_weight_field(field: &str, unit: Unit) -> Result<Option<Weight>, WeightParseError> {
    let compact: String = field
        .chars()
        .filter(|c| *c != ' ')
        .map(|c| if c == ',' { '.' } else { c })
        .collect();
    if compact.is_empty() {
        return Ok(None);
    }
    let (value, decimals) = parse_decimal(&compact)?;
    Ok(Some(Weight::new(value, decimals, unit)))
}

/// `a - b` when both share unit and decimals and nothing overflows.
pub(crate) fn checked_sub(a: &Weight, b: &Weight) -> Option<Weight> {
    if a.unit != b.unit || a.decimals != b.decimals {
        return None;
    }
    Some(Weight::new(
        a.value.checked_sub(b.value)?,
        a.decimals,
        a.unit,
    ))
}

/// `a + b` when both share unit and decimals and nothing overflows.
pub(crate) fn checked_add(a: &Weight, b: &Weight) -> Option<Weight> {
    if a.unit != b.unit || a.decimals != b.decimals {
        return None;
    }
    Some(Weight::new(
        a.value.checked_add(b.value)?,
        a.decimals,
        a.unit,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_and_parse_round_trip() {
        let cases = [
            (Weight::new(12340, 0, Unit::Kg), "12340 kg"),
            (Weight::new(1234, 2, Unit::T), "12.34 t"),
            (Weight::new(-5, 0, Unit::Kg), "-5 kg"),
            (Weight::new(-5, 2, Unit::T), "-0.05 t"),
            (Weight::new(0, 3, Unit::G), "0.000 g"),
            (Weight::new(7, 1, Unit::Lb), "0.7 lb"),
        ];
        for (weight, text) in cases {
            assert_eq!(weight.to_string(), text);
            assert_eq!(text.parse::<Weight>(), Ok(weight), "{text}");
        }
    }

    #[test]
    fn parse_keeps_decimals_and_tolerates_padding() {
        assert_eq!(
            "  -12.34 t".parse::<Weight>(),
            Ok(Weight::new(-1234, 2, Unit::T))
        );
        assert_eq!(
            "12.340 kg".parse::<Weight>(),
            Ok(Weight::new(12340, 3, Unit::Kg))
        );
        assert_eq!("+20 kg".parse::<Weight>(), Ok(Weight::kg(20)));
    }

    #[test]
    fn parse_rejects_bad_input() {
        for text in [
            "",
            "kg",
            "12",
            "12 kg x",
            "1.2.3 kg",
            "12. kg",
            ". kg",
            "- kg",
            "1e3 kg",
            "12 oz",
            "1234567890123456789 kg",
        ] {
            assert!(text.parse::<Weight>().is_err(), "{text:?} parsed");
        }
    }

    #[test]
    fn display_survives_extreme_fields() {
        assert_eq!(
            Weight::new(i64::MIN, 0, Unit::Kg).to_string(),
            "-9223372036854775808 kg"
        );
        let long = Weight::new(1, 30, Unit::Kg).to_string();
        assert!(long.starts_with("0.000"), "{long}");
        assert!(long.ends_with("1 kg"), "{long}");
    }

    #[test]
    fn conversions() {
        assert!((Weight::new(1234, 2, Unit::T).to_f64() - 12.34).abs() < 1e-9);
        assert!((Weight::new(1234, 2, Unit::T).to_kg_f64() - 12_340.0).abs() < 1e-6);
        assert!((Weight::new(1500, 0, Unit::G).to_kg_f64() - 1.5).abs() < 1e-9);
        assert!((Weight::new(1, 0, Unit::Lb).to_kg_f64() - 0.453_592_37).abs() < 1e-12);
    }

    #[test]
    fn abs_diff_requires_same_unit_and_decimals() {
        let a = Weight::kg(12_340);
        let b = Weight::kg(12_360);
        assert_eq!(a.abs_diff(&b), Some(Weight::kg(20)));
        assert_eq!(b.abs_diff(&a), Some(Weight::kg(20)));
        assert_eq!(a.abs_diff(&Weight::new(1234, 1, Unit::Kg)), None);
        assert_eq!(a.abs_diff(&Weight::new(12_340, 0, Unit::T)), None);
        let extreme = Weight::kg(i64::MIN).abs_diff(&Weight::kg(i64::MAX));
        assert_eq!(extreme, Some(Weight::kg(i64::MAX)));
    }

    #[test]
    fn compare_is_exact_within_a_unit() {
        assert_eq!(
            Weight::new(1234, 2, Unit::T).compare(&Weight::new(12_340, 3, Unit::T)),
            Some(Ordering::Equal)
        );
        assert_eq!(
            Weight::kg(400).compare(&Weight::kg(500)),
            Some(Ordering::Less)
        );
        assert_eq!(
            Weight::new(1, 0, Unit::T).compare(&Weight::kg(999)),
            Some(Ordering::Greater)
        );
    }

    #[test]
    fn weight_fields_accept_terminal_spellings() {
        let kg = |v| Ok(Some(Weight::kg(v)));
        assert_eq!(parse_weight_field(" +0012340", Unit::Kg), kg(12_340));
        assert_eq!(parse_weight_field("-  40", Unit::Kg), kg(-40));
        assert_eq!(
            parse_weight_field(" -123,5", Unit::Kg),
            Ok(Some(Weight::new(-1235, 1, Unit::Kg)))
        );
        assert_eq!(parse_weight_field("      ", Unit::Kg), Ok(None));
        assert!(parse_weight_field("12a", Unit::Kg).is_err());
        assert_eq!(
            checked_sub(&Weight::kg(5), &Weight::kg(7)),
            Some(Weight::kg(-2))
        );
        assert_eq!(
            checked_add(&Weight::kg(5), &Weight::new(7, 1, Unit::Kg)),
            None
        );
    }

    #[test]
    fn unit_serde_is_lowercase() {
        let json = serde_json::to_string(&Weight::new(1234, 2, Unit::T)).unwrap();
        assert_eq!(json, r#"{"value":1234,"decimals":2,"unit":"t"}"#);
        let unit: Unit = serde_json::from_str("\"lb\"").unwrap();
        assert_eq!(unit, Unit::Lb);
    }
}
