//! A line protocol described by configuration, for terminals this crate has no driver for:
//! request bytes, frame delimiters, a response regex with named groups, a unit, and a status
//! mapping. An installer adds a terminal by writing a `[scales.line]` table, not code.
//!
//! Named groups of `response_regex`: `weight` (required; the displayed, i.e. net, weight),
//! `status` (required; mapped by `stable_status`/`overload_status`/`underload_status`),
//! and optionally `unit`, `mode` (net when in `net_mode_values`), `gross`, `tare`, `alibi`
//! (makes the reply a registration with that alibi id) and `time` (terminal time).
//!
//! The defaults describe the common `ST,GS,+0012340kg` family (CAS, A&D, Kern, Dini Argeo),
//! polled with `READ` and registered with `PID`, which is also what the simulator speaks.

use std::fmt;

use regex::Regex;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::scale::framing::{CodecError, Framing, RawFrame};
use crate::scale::protocol::{Protocol, Refusal, Reply, Request, ScaleProtocol};
use crate::scale::reading::{Reading, TareKind, Unit, WeightParseError, parse_weight_field};

/// Longest frame accepted unless configured otherwise.
const DEFAULT_MAX_FRAME_BYTES: usize = 128;

/// Default response regex, for the `ST,GS,+0012340kg` family.
pub const DEFAULT_RESPONSE_REGEX: &str = r"^(?P<status>ST|US|OL|UL),(?P<mode>GS|NT),(?P<weight>[-+ ]?[0-9. ]*[0-9])\s*(?P<unit>kg|t|g|lb)(?:,ID:(?P<alibi>[0-9]+))?$";

/// A compiled regex that (de)serialises as its source text.
#[derive(Clone)]
pub struct Pattern(pub Regex);

impl Pattern {
    /// Compiles `source`.
    pub fn new(source: &str) -> Result<Self, regex::Error> {
        Regex::new(source).map(Pattern)
    }
}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.0.as_str(), f)
    }
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_str() == other.0.as_str()
    }
}

impl Serialize for Pattern {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.0.as_str())
    }
}

impl<'de> Deserialize<'de> for Pattern {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let source = String::deserialize(d)?;
        Pattern::new(&source).map_err(|e| serde::de::Error::custom(format!("invalid regex: {e}")))
    }
}

fn default_poll_request() -> String {
    "READ\r\n".to_owned()
}
fn default_register_request() -> Option<String> {
    Some("PID\r\n".to_owned())
}
fn default_frame_end() -> String {
    "\n".to_owned()
}
fn default_response_regex() -> Pattern {
    // A constant, covered by a test: failing here is a build defect, never bad input.
    Pattern(Regex::new(DEFAULT_RESPONSE_REGEX).expect("the default response regex compiles"))
}
fn default_unit() -> Unit {
    Unit::Kg
}
fn strings(values: &[&str]) -> Vec<String> {
    values.iter().map(|v| (*v).to_owned()).collect()
}
fn default_stable() -> Vec<String> {
    strings(&["ST"])
}
fn default_overload() -> Vec<String> {
    strings(&["OL"])
}
fn default_underload() -> Vec<String> {
    strings(&["UL"])
}
fn default_net_mode() -> Vec<String> {
    strings(&["NT"])
}
fn default_max_frame_bytes() -> usize {
    DEFAULT_MAX_FRAME_BYTES
}

/// Options for `protocol = "line"`, table `[scales.line]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LineOptions {
    /// Bytes that ask for the live weight; empty for a terminal that sends continuously.
    #[serde(default = "default_poll_request")]
    pub poll_request: String,
    /// Bytes that ask for a registration; unset = register with a stable poll reply (then the
    /// weighing carries no alibi id).
    #[serde(default = "default_register_request")]
    pub register_request: Option<String>,
    /// Bytes for the optional handshake; unset = the poll request.
    #[serde(default)]
    pub handshake_request: Option<String>,
    /// The byte that opens a reply frame, if any (one character).
    #[serde(default)]
    pub frame_start: Option<String>,
    /// The byte that ends a reply frame (one character; with LF a CR before it is dropped).
    #[serde(default = "default_frame_end")]
    pub frame_end: String,
    /// Longest reply accepted, delimiters excluded.
    #[serde(default = "default_max_frame_bytes")]
    pub max_frame_bytes: usize,
    /// Regex over a reply with the named groups described in the module docs.
    #[serde(default = "default_response_regex")]
    pub response_regex: Pattern,
    /// Unit when the regex has no `unit` group or it did not match.
    #[serde(default = "default_unit")]
    pub unit: Unit,
    /// `status` values that mean stable.
    #[serde(default = "default_stable")]
    pub stable_status: Vec<String>,
    /// `status` values that mean overload.
    #[serde(default = "default_overload")]
    pub overload_status: Vec<String>,
    /// `status` values that mean underload.
    #[serde(default = "default_underload")]
    pub underload_status: Vec<String>,
    /// `mode` values that mean net.
    #[serde(default = "default_net_mode")]
    pub net_mode_values: Vec<String>,
}

impl Default for LineOptions {
    fn default() -> Self {
        Self {
            poll_request: default_poll_request(),
            register_request: default_register_request(),
            handshake_request: None,
            frame_start: None,
            frame_end: default_frame_end(),
            max_frame_bytes: default_max_frame_bytes(),
            response_regex: default_response_regex(),
            unit: default_unit(),
            stable_status: default_stable(),
            overload_status: default_overload(),
            underload_status: default_underload(),
            net_mode_values: default_net_mode(),
        }
    }
}

fn single_byte(name: &str, value: &str) -> Result<u8, String> {
    match value.as_bytes() {
        [b] if b.is_ascii() => Ok(*b),
        _ => Err(format!(
            "{name} must be exactly one ASCII character, got {value:?}"
        )),
    }
}

impl LineOptions {
    /// Checks delimiters, requests and the regex's groups; errors name the field.
    pub fn validate(&self) -> Result<(), String> {
        let end = single_byte("line.frame_end", &self.frame_end)?;
        if let Some(start) = &self.frame_start {
            let start = single_byte("line.frame_start", start)?;
            if start == end {
                return Err("line.frame_start and line.frame_end must differ".to_owned());
            }
        }
        if !(1..=4096).contains(&self.max_frame_bytes) {
            return Err("line.max_frame_bytes must be 1 to 4096".to_owned());
        }
        for (name, value) in [
            ("line.register_request", self.register_request.as_deref()),
            ("line.handshake_request", self.handshake_request.as_deref()),
        ] {
            if value.is_some_and(str::is_empty) {
                return Err(format!("{name} must not be empty (leave it out instead)"));
            }
        }
        let names: Vec<&str> = self.response_regex.0.capture_names().flatten().collect();
        for required in ["weight", "status"] {
            if !names.contains(&required) {
                return Err(format!(
                    "line.response_regex needs a named group (?P<{required}>...)"
                ));
            }
        }
        Ok(())
    }

    fn framing(&self) -> Framing {
        let end = self.frame_end.as_bytes().first().copied().unwrap_or(b'\n');
        match self
            .frame_start
            .as_deref()
            .and_then(|s| s.as_bytes().first())
        {
            Some(&start) => Framing::delimited(start, end, 0, self.max_frame_bytes),
            None => Framing {
                end,
                ..Framing::lines(self.max_frame_bytes)
            },
        }
    }
}

/// Why a reply does not fit the configured line protocol.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    /// Not UTF-8 text.
    #[error("reply is not text")]
    NotText,
    /// The regex did not match.
    #[error("reply does not match response_regex")]
    NoMatch,
    /// A `status` value none of the mappings knows.
    #[error("status {0:?} is in none of stable/overload/underload/motion")]
    Status(String),
    /// A weight group does not parse.
    #[error("bad weight: {0}")]
    Weight(#[from] WeightParseError),
    /// The `unit` group names an unsupported unit.
    #[error("unsupported unit {0:?}")]
    Unit(String),
}

/// The configured line protocol.
#[derive(Debug, Clone)]
pub struct LineProtocol {
    options: LineOptions,
}

impl LineProtocol {
    /// The protocol with `options` (validated by the caller).
    pub fn new(options: LineOptions) -> Self {
        Self { options }
    }

    fn parse_text(&self, text: &str, raw: &[u8]) -> Result<Reply, LineError> {
        let o = &self.options;
        let caps = o
            .response_regex
            .0
            .captures(text)
            .ok_or(LineError::NoMatch)?;
        let group = |name: &str| caps.name(name).map(|m| m.as_str());
        let unit = match group("unit").map(str::trim) {
            None | Some("") => o.unit,
            Some(text) => text.parse().map_err(|_| LineError::Unit(text.to_owned()))?,
        };
        let status = group("status").unwrap_or("").trim();
        let is = |list: &[String]| list.iter().any(|v| v == status);
        let overload = is(&o.overload_status);
        let underload = is(&o.underload_status);
        let stable = is(&o.stable_status);
        let weight = |name: &str| -> Result<_, LineError> {
            Ok(match group(name) {
                Some(text) => parse_weight_field(text, unit)?,
                None => None,
            })
        };
        let valid = !overload && !underload;
        let net = weight("weight")?.filter(|_| valid);
        let tare = weight("tare")?;
        let net_mode = group("mode").map(|m| o.net_mode_values.iter().any(|v| v == m.trim()));
        let gross = match weight("gross")? {
            Some(g) => Some(g),
            None if net_mode == Some(false) => net,
            None => None,
        };
        let reading = Reading {
            net,
            gross: gross.filter(|_| valid),
            tare,
            unit: Some(unit),
            stable: stable && valid,
            overload,
            underload,
            center_of_zero: None,
            net_mode,
            tare_kind: (net_mode == Some(false)).then_some(TareKind::None),
            raw: raw.to_vec(),
        };
        match group("alibi").map(str::trim).filter(|a| !a.is_empty()) {
            Some(alibi) => Ok(Reply::Registered {
                reading,
                alibi_id: Some(alibi.to_owned()),
                terminal_time: group("time").map(|t| t.trim().to_owned()),
            }),
            None => Ok(Reply::Reading(reading)),
        }
    }
}

impl ScaleProtocol for LineProtocol {
    fn protocol(&self) -> Protocol {
        Protocol::Line
    }

    fn framing(&self) -> Framing {
        self.options.framing()
    }

    fn encode(&self, request: Request) -> Option<Vec<u8>> {
        let o = &self.options;
        let streaming = o.poll_request.is_empty();
        match request {
            Request::Poll if !streaming => Some(o.poll_request.clone().into_bytes()),
            Request::Register => o.register_request.clone().map(String::into_bytes),
            Request::Handshake => Some(
                o.handshake_request
                    .clone()
                    .unwrap_or_else(|| o.poll_request.clone())
                    .into_bytes(),
            ),
            Request::Next | Request::StartStream if streaming => Some(Vec::new()),
            Request::Poll | Request::Next | Request::StartStream | Request::StopStream => None,
        }
    }

    fn parse(&self, frame: &RawFrame) -> Result<Reply, CodecError> {
        let text = std::str::from_utf8(frame.body())
            .map_err(|_| CodecError::frame(LineError::NotText, &frame.raw))?;
        self.parse_text(text, &frame.raw)
            .map_err(|e| CodecError::frame(e, &frame.raw))
    }

    fn answers(&self, request: Request, reply: &Reply) -> bool {
        match reply {
            Reply::Reading(_) => request.wants_weight() || request == Request::Handshake,
            Reply::Registered { .. } => matches!(request, Request::Register | Request::Handshake),
            Reply::Refused(Refusal::General(_)) => true,
            Reply::Refused(_) => request.wants_weight(),
            Reply::Info { .. } => false,
        }
    }

    fn streams_by_itself(&self) -> bool {
        self.options.poll_request.is_empty()
    }
}

/// Formats a reply of the default dialect, as the simulator sends it.
pub fn encode_default_reply(status: &str, net_mode: bool, kg: i64, alibi: Option<u32>) -> Vec<u8> {
    let mode = if net_mode { "NT" } else { "GS" };
    let sign = if kg < 0 { '-' } else { '+' };
    let mut text = format!(
        "{status},{mode},{sign}{:07}kg",
        kg.unsigned_abs().min(9_999_999)
    );
    if let Some(id) = alibi {
        text.push_str(&format!(",ID:{id:06}"));
    }
    text.push_str("\r\n");
    text.into_bytes()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::scale::reading::Weight;

    fn protocol() -> Arc<dyn ScaleProtocol> {
        Arc::new(LineProtocol::new(LineOptions::default()))
    }

    fn one(p: Arc<dyn ScaleProtocol>, bytes: &[u8]) -> Result<Reply, String> {
        let out = decode_chunks(p, &[bytes.to_vec()]);
        assert_eq!(out.len(), 1, "{out:?}");
        out.into_iter().next().unwrap_or(Err("none".to_owned()))
    }

    #[test]
    fn default_regex_compiles_and_defaults_validate() {
        assert_eq!(default_response_regex().0.as_str(), DEFAULT_RESPONSE_REGEX);
        LineOptions::default().validate().unwrap();
    }

    #[test]
    fn golden_default_dialect() {
        let Ok(Reply::Reading(r)) = one(protocol(), b"ST,GS,+0012340kg\r\n") else {
            panic!("stable gross did not decode");
        };
        assert_eq!(r.net, Some(Weight::kg(12_340)));
        assert_eq!(r.gross, Some(Weight::kg(12_340)));
        assert!(r.stable);
        let Ok(Reply::Reading(r)) = one(protocol(), b"US,NT,-0000040kg\r\n") else {
            panic!("unstable net did not decode");
        };
        assert_eq!(r.net, Some(Weight::kg(-40)));
        assert_eq!(r.net_mode, Some(true));
        assert!(!r.stable);
        let Ok(Reply::Reading(r)) = one(protocol(), b"OL,GS,+9999999kg\r\n") else {
            panic!("overload did not decode");
        };
        assert!(r.overload && r.net.is_none());
        let Ok(Reply::Registered {
            alibi_id, reading, ..
        }) = one(protocol(), b"ST,GS,+0024000kg,ID:000017\r\n")
        else {
            panic!("registration did not decode");
        };
        assert_eq!(alibi_id.as_deref(), Some("000017"));
        assert_eq!(reading.net, Some(Weight::kg(24_000)));
        assert!(
            one(protocol(), b"XX,GS,+1kg\r\n")
                .unwrap_err()
                .contains("does not match")
        );
        assert!(
            one(protocol(), b"ST,GS,+1\xffkg\r\n")
                .unwrap_err()
                .contains("not text")
        );
    }

    #[test]
    fn custom_dialect_from_toml() {
        let options: LineOptions = toml::from_str(
            r#"
            poll_request = "\u0005"
            frame_start = "\u0002"
            frame_end = "\u0003"
            response_regex = '^(?P<status>[SM]) (?P<gross>[0-9.]+) (?P<tare>[0-9.]+) (?P<weight>[0-9.]+)$'
            unit = "t"
            stable_status = ["S"]
            "#,
        )
        .unwrap();
        options.validate().unwrap();
        let p = Arc::new(LineProtocol::new(options));
        assert_eq!(p.encode(Request::Poll).unwrap(), b"\x05");
        assert_eq!(p.encode(Request::Register).unwrap(), b"PID\r\n");
        let Ok(Reply::Reading(r)) = one(p, b"\x02S 24.50 10.00 14.50\x03") else {
            panic!("custom frame did not decode");
        };
        assert_eq!(r.net, Some(Weight::new(1450, 2, Unit::T)));
        assert_eq!(r.gross, Some(Weight::new(2450, 2, Unit::T)));
        assert!(r.stable);
    }

    #[test]
    fn validation_names_the_field() {
        let bad = LineOptions {
            frame_end: "\r\n".to_owned(),
            ..LineOptions::default()
        };
        assert!(bad.validate().unwrap_err().contains("line.frame_end"));
        let bad = LineOptions {
            response_regex: Pattern::new("^(?P<weight>.*)$").unwrap(),
            ..LineOptions::default()
        };
        assert!(bad.validate().unwrap_err().contains("line.response_regex"));
        assert!(toml::from_str::<LineOptions>("response_regex = '('").is_err());
        assert!(toml::from_str::<LineOptions>("bogus = 1").is_err());
    }

    fn arb_frames() -> impl Strategy<Value = Vec<(Vec<u8>, Reply)>> {
        proptest::collection::vec(
            (
                -9_999_999i64..=9_999_999,
                any::<bool>(),
                proptest::option::of(0u32..999_999),
            )
                .prop_map(|(kg, stable, alibi)| {
                    let raw =
                        encode_default_reply(if stable { "ST" } else { "US" }, false, kg, alibi);
                    let reply = crate::scale::protocol::decode_one(protocol(), &raw);
                    (raw, reply)
                }),
            1..8,
        )
    }

    crate::scale::protocol::decoder_properties!(protocol(), arb_frames());
}
