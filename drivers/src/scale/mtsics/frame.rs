//! MT-SICS frames as pure data: the `Command`s we send, the `Response`s terminals send back,
//! and pure functions to parse and format single lines (without the CR LF terminator).
//!
//! Reply syntax: `ID<SP>Status[<SP>Parameters]`, e.g. `S S      12340 kg`, `Z I`, `I4 A "123"`.
//! General errors (`ES`, `ET`, `EL`) carry no command ID. Weight fields are right-aligned with
//! leading spaces, so weights are split on whitespace rather than read at fixed columns.

use std::fmt;

use crate::scale::reading::{Reading, Weight, WeightParseError};

/// Width of the right-aligned value field when we format weights, as MT terminals print it.
const WEIGHT_FIELD_WIDTH: usize = 10;

/// A level 0/1 MT-SICS command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Command {
    /// `S`: send the stable net weight (the terminal waits for stability, then gives up).
    StableWeight,
    /// `SI`: send the net weight immediately, stable or dynamic.
    ImmediateWeight,
    /// `SIR`: send the weight immediately and repeat until the next command.
    ImmediateWeightRepeat,
    /// `Z`: zero when stable.
    Zero,
    /// `T`: tare when stable.
    Tare,
    /// `TA`: query the tare value.
    TareQuery,
    /// `TAC`: clear the tare.
    TareClear,
    /// `@`: reset (cancel pending commands, clear tare); answers with the serial number.
    Reset,
    /// `I2`: device data (type, capacity).
    DeviceData,
    /// `I4`: serial number.
    SerialNumber,
}

impl Command {
    /// Every command, for tables and tests.
    pub const ALL: [Command; 10] = [
        Command::StableWeight,
        Command::ImmediateWeight,
        Command::ImmediateWeightRepeat,
        Command::Zero,
        Command::Tare,
        Command::TareQuery,
        Command::TareClear,
        Command::Reset,
        Command::DeviceData,
        Command::SerialNumber,
    ];

    /// The command as written on the wire, without terminator.
    pub fn as_str(&self) -> &'static str {
        match self {
            Command::StableWeight => "S",
            Command::ImmediateWeight => "SI",
            Command::ImmediateWeightRepeat => "SIR",
            Command::Zero => "Z",
            Command::Tare => "T",
            Command::TareQuery => "TA",
            Command::TareClear => "TAC",
            Command::Reset => "@",
            Command::DeviceData => "I2",
            Command::SerialNumber => "I4",
        }
    }

    /// The command line including CR LF, e.g. `b"S\r\n"`.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.as_str().len() + 2);
        out.extend_from_slice(self.as_str().as_bytes());
        out.extend_from_slice(b"\r\n");
        out
    }

    /// Parses a command line (terminator excluded), as a terminal would. Surrounding spaces
    /// are tolerated; parameters (e.g. a preset tare) are not supported and yield None.
    pub fn parse(line: &[u8]) -> Option<Command> {
        let text = std::str::from_utf8(line)
            .ok()?
            .trim_matches([' ', '\r', '\n']);
        Command::ALL.into_iter().find(|c| c.as_str() == text)
    }

    /// Whether `response` answers this command. General errors (`ES`/`ET`/`EL`) answer any
    /// command because they carry no command ID.
    pub fn expects(&self, response: &Response) -> bool {
        matches!(
            (self, response),
            (_, Response::Error(_))
                | (
                    Command::StableWeight
                        | Command::ImmediateWeight
                        | Command::ImmediateWeightRepeat,
                    Response::Weight(_),
                )
                | (Command::Zero, Response::Zero(_))
                | (Command::Tare, Response::Tare(_))
                | (Command::TareQuery, Response::TareValue(_))
                | (Command::TareClear, Response::TareCleared(_))
                | (
                    Command::Reset | Command::SerialNumber,
                    Response::SerialNumber(_)
                )
                | (Command::DeviceData, Response::DeviceData(_))
        )
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Status character of a non-weight reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// `A`: command executed.
    Executed,
    /// `I`: understood but not executable now (busy, or stability timeout).
    NotExecutable,
    /// `L`: logical error, e.g. a wrong parameter.
    LogicalError,
    /// `+`: upper limit exceeded (weighing range, or zero/tare range).
    AboveRange,
    /// `-`: lower limit exceeded.
    BelowRange,
}

impl Status {
    /// The status character on the wire.
    pub fn as_str(&self) -> &'static str {
        match self {
            Status::Executed => "A",
            Status::NotExecutable => "I",
            Status::LogicalError => "L",
            Status::AboveRange => "+",
            Status::BelowRange => "-",
        }
    }

    fn parse(token: &str) -> Option<Status> {
        match token {
            "A" => Some(Status::Executed),
            "I" => Some(Status::NotExecutable),
            "L" => Some(Status::LogicalError),
            "+" => Some(Status::AboveRange),
            "-" => Some(Status::BelowRange),
            _ => None,
        }
    }
}

/// Reply to a weight command (`S`, `SI`, `SIR`); the ID is `S` in every case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WeightReply {
    /// `S S <value> <unit>`
    Stable(Weight),
    /// `S D <value> <unit>`
    Dynamic(Weight),
    /// `S I`: not executable now (busy, or no stability within the terminal's timeout).
    NotExecutable,
    /// `S +`: overload.
    Overload,
    /// `S -`: underload.
    Underload,
}

/// Reply of a command that yields a value on success or a status otherwise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply<T> {
    /// The command succeeded with this value.
    Value(T),
    /// The terminal answered with a status instead of a value.
    Refused(Status),
}

/// General error replies, which carry no command ID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorReply {
    /// `ES`: syntax error, the command is unknown.
    Syntax,
    /// `ET`: transmission error (parity, break).
    Transmission,
    /// `EL`: logical error, the command cannot be executed.
    Logical,
}

/// A reply line from an MT-SICS terminal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// `S S|D <value> <unit>`, `S I`, `S +`, `S -`
    Weight(WeightReply),
    /// `Z A|I|+|-`
    Zero(Status),
    /// `T S <tare> <unit>` or `T I|+|-|L`
    Tare(Reply<Weight>),
    /// `TA A <tare> <unit>` or `TA I|L`
    TareValue(Reply<Weight>),
    /// `TAC A|I|L`
    TareCleared(Status),
    /// `I2 A "<type> <capacity> <unit>"` or `I2 I`
    DeviceData(Reply<String>),
    /// `I4 A "<serial>"` or `I4 I` (also the answer to `@`)
    SerialNumber(Reply<String>),
    /// `ES`, `ET`, `EL`
    Error(ErrorReply),
    /// A well-formed reply to a command this crate does not model (e.g. `I1 A …`).
    Other {
        /// The command ID.
        id: String,
        /// The status token, if any.
        status: Option<String>,
        /// Everything after the status, trimmed.
        params: String,
    },
}

/// Why a line is not a valid MT-SICS reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Nothing but whitespace.
    #[error("empty line")]
    Empty,
    /// Bytes outside printable ASCII.
    #[error("line contains non-printable or non-ASCII bytes")]
    NotAscii,
    /// The first token is not a command ID.
    #[error("invalid reply ID {0:?}")]
    BadId(String),
    /// The status does not fit the reply ID.
    #[error("unexpected status {status:?} for reply {id:?}")]
    BadStatus {
        /// Reply ID.
        id: String,
        /// Status token found.
        status: String,
    },
    /// Parameters are present where none are allowed, or missing where required.
    #[error("unexpected parameters {params:?} for reply {id:?}")]
    BadParams {
        /// Reply ID.
        id: String,
        /// Parameter text found.
        params: String,
    },
    /// The weight field does not parse.
    #[error("bad weight field: {0}")]
    Weight(#[from] WeightParseError),
    /// A text parameter is not enclosed in double quotes.
    #[error("text parameter {0:?} is not quoted")]
    Unquoted(String),
}

/// Splits `id status params`; params keep their inner spacing (quoted text).
fn split_reply(text: &str) -> (&str, Option<&str>, &str) {
    let (id, rest) = match text.split_once(' ') {
        Some((id, rest)) => (id, rest.trim_start_matches(' ')),
        None => (text, ""),
    };
    if rest.is_empty() {
        return (id, None, "");
    }
    match rest.split_once(' ') {
        Some((status, params)) => (id, Some(status), params.trim_matches(' ')),
        None => (id, Some(rest), ""),
    }
}

fn is_reply_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 8
        && id
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'@')
}

/// Parses one reply line; `line` excludes CR LF (a stray trailing CR is tolerated).
pub fn parse_line(line: &[u8]) -> Result<Response, FrameError> {
    if !line
        .iter()
        .all(|&b| (0x20..0x7f).contains(&b) || b == b'\r')
    {
        return Err(FrameError::NotAscii);
    }
    let text = std::str::from_utf8(line).map_err(|_| FrameError::NotAscii)?;
    let text = text.trim_end_matches('\r');
    if text.contains('\r') {
        return Err(FrameError::NotAscii);
    }
    let text = text.trim_matches(' ');
    if text.is_empty() {
        return Err(FrameError::Empty);
    }
    let (id, status, params) = split_reply(text);
    if !is_reply_id(id) {
        return Err(FrameError::BadId(id.to_owned()));
    }
    let bad_status = || FrameError::BadStatus {
        id: id.to_owned(),
        status: status.unwrap_or("").to_owned(),
    };
    let no_params = |response: Response| {
        if params.is_empty() {
            Ok(response)
        } else {
            Err(FrameError::BadParams {
                id: id.to_owned(),
                params: params.to_owned(),
            })
        }
    };
    let status_only = |make: fn(Status) -> Response| {
        let parsed = status.and_then(Status::parse).ok_or_else(bad_status)?;
        no_params(make(parsed))
    };
    // A value reply: `ok` is the success status; anything else must be a bare status.
    let value_or_status = |ok: &str| -> Result<Reply<Weight>, FrameError> {
        match status {
            Some(s) if s == ok => Ok(Reply::Value(params.parse::<Weight>()?)),
            Some(s) => {
                let parsed = Status::parse(s).ok_or_else(bad_status)?;
                if parsed == Status::Executed || !params.is_empty() {
                    return Err(bad_status());
                }
                Ok(Reply::Refused(parsed))
            }
            None => Err(bad_status()),
        }
    };
    let text_or_status = || -> Result<Reply<String>, FrameError> {
        match status {
            Some("A") => {
                let inner = params
                    .strip_prefix('"')
                    .and_then(|p| p.strip_suffix('"'))
                    .ok_or_else(|| FrameError::Unquoted(params.to_owned()))?;
                Ok(Reply::Value(inner.to_owned()))
            }
            Some(s) => {
                let parsed = Status::parse(s).ok_or_else(bad_status)?;
                if !params.is_empty() {
                    return Err(bad_status());
                }
                Ok(Reply::Refused(parsed))
            }
            None => Err(bad_status()),
        }
    };

    match id {
        "ES" | "ET" | "EL" => {
            if status.is_some() {
                return Err(bad_status());
            }
            Ok(Response::Error(match id {
                "ES" => ErrorReply::Syntax,
                "ET" => ErrorReply::Transmission,
                _ => ErrorReply::Logical,
            }))
        }
        "S" => match status {
            Some("S") => Ok(Response::Weight(WeightReply::Stable(params.parse()?))),
            Some("D") => Ok(Response::Weight(WeightReply::Dynamic(params.parse()?))),
            Some("I") => no_params(Response::Weight(WeightReply::NotExecutable)),
            Some("+") => no_params(Response::Weight(WeightReply::Overload)),
            Some("-") => no_params(Response::Weight(WeightReply::Underload)),
            _ => Err(bad_status()),
        },
        "Z" => status_only(Response::Zero),
        "T" => value_or_status("S").map(Response::Tare),
        "TA" => value_or_status("A").map(Response::TareValue),
        "TAC" => status_only(Response::TareCleared),
        "I2" => text_or_status().map(Response::DeviceData),
        "I4" => text_or_status().map(Response::SerialNumber),
        _ => Ok(Response::Other {
            id: id.to_owned(),
            status: status.map(str::to_owned),
            params: params.to_owned(),
        }),
    }
}

fn weight_field(weight: &Weight) -> String {
    let text = weight.to_string();
    // Display gives "<number> <unit>"; right-align the number as a terminal does.
    match text.split_once(' ') {
        Some((number, unit)) => format!("{number:>WEIGHT_FIELD_WIDTH$} {unit}"),
        None => text,
    }
}

/// Text parameters cannot carry line breaks or quotes on the wire; replace them.
fn sanitize_text(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .collect()
}

impl Response {
    /// Formats the reply line as a terminal would, without CR LF.
    pub fn format(&self) -> String {
        let status_line = |id: &str, status: &Status| format!("{id} {}", status.as_str());
        let weight_line = |id: &str, reply: &Reply<Weight>, ok: &str| match reply {
            Reply::Value(w) => format!("{id} {ok} {}", weight_field(w)),
            Reply::Refused(s) => status_line(id, s),
        };
        let text_line = |id: &str, reply: &Reply<String>| match reply {
            Reply::Value(t) => format!("{id} A \"{}\"", sanitize_text(t)),
            Reply::Refused(s) => status_line(id, s),
        };
        match self {
            Response::Weight(WeightReply::Stable(w)) => format!("S S {}", weight_field(w)),
            Response::Weight(WeightReply::Dynamic(w)) => format!("S D {}", weight_field(w)),
            Response::Weight(WeightReply::NotExecutable) => "S I".to_owned(),
            Response::Weight(WeightReply::Overload) => "S +".to_owned(),
            Response::Weight(WeightReply::Underload) => "S -".to_owned(),
            Response::Zero(s) => status_line("Z", s),
            Response::Tare(r) => weight_line("T", r, "S"),
            Response::TareValue(r) => weight_line("TA", r, "A"),
            Response::TareCleared(s) => status_line("TAC", s),
            Response::DeviceData(r) => text_line("I2", r),
            Response::SerialNumber(r) => text_line("I4", r),
            Response::Error(ErrorReply::Syntax) => "ES".to_owned(),
            Response::Error(ErrorReply::Transmission) => "ET".to_owned(),
            Response::Error(ErrorReply::Logical) => "EL".to_owned(),
            Response::Other { id, status, params } => {
                let mut line = sanitize_text(id);
                for part in [status.as_deref().unwrap_or(""), params.as_str()] {
                    if !part.is_empty() {
                        line.push(' ');
                        line.push_str(&sanitize_text(part));
                    }
                }
                line
            }
        }
    }

    /// The reply line including CR LF.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = self.format().into_bytes();
        out.extend_from_slice(b"\r\n");
        out
    }

    /// The reading a weight reply describes, None for other replies and for `S I`.
    /// MT-SICS level 0/1 reports the net weight only, so gross and tare stay None.
    pub fn to_reading(&self, raw: &[u8]) -> Option<Reading> {
        let Response::Weight(reply) = self else {
            return None;
        };
        let (net, stable, overload, underload) = match reply {
            WeightReply::Stable(w) => (Some(*w), true, false, false),
            WeightReply::Dynamic(w) => (Some(*w), false, false, false),
            WeightReply::Overload => (None, false, true, false),
            WeightReply::Underload => (None, false, false, true),
            WeightReply::NotExecutable => return None,
        };
        Some(Reading {
            net,
            unit: net.map(|w| w.unit),
            stable,
            overload,
            underload,
            raw: raw.to_vec(),
            ..Reading::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scale::reading::Unit;

    fn kg(value: i64) -> Weight {
        Weight::kg(value)
    }

    /// Golden table: reply lines as terminals send them → parsed response.
    #[test]
    fn golden_reply_lines() {
        let table: Vec<(&[u8], Response)> = vec![
            (
                b"S S      12340 kg",
                Response::Weight(WeightReply::Stable(kg(12_340))),
            ),
            (
                b"S D      12360 kg",
                Response::Weight(WeightReply::Dynamic(kg(12_360))),
            ),
            (
                b"S S      12.34 t",
                Response::Weight(WeightReply::Stable(Weight::new(1234, 2, Unit::T))),
            ),
            (
                b"S S        -40 kg",
                Response::Weight(WeightReply::Stable(kg(-40))),
            ),
            (
                b"S D     -12.34 t",
                Response::Weight(WeightReply::Dynamic(Weight::new(-1234, 2, Unit::T))),
            ),
            (
                b"S S    100.000 g",
                Response::Weight(WeightReply::Stable(Weight::new(100_000, 3, Unit::G))),
            ),
            (b"S S 0 kg", Response::Weight(WeightReply::Stable(kg(0)))),
            (b"S I", Response::Weight(WeightReply::NotExecutable)),
            (b"S +", Response::Weight(WeightReply::Overload)),
            (b"S -", Response::Weight(WeightReply::Underload)),
            (b"Z A", Response::Zero(Status::Executed)),
            (b"Z I", Response::Zero(Status::NotExecutable)),
            (b"Z +", Response::Zero(Status::AboveRange)),
            (b"Z -", Response::Zero(Status::BelowRange)),
            (b"T S       2000 kg", Response::Tare(Reply::Value(kg(2000)))),
            (
                b"T I",
                Response::Tare(Reply::Refused(Status::NotExecutable)),
            ),
            (b"T +", Response::Tare(Reply::Refused(Status::AboveRange))),
            (
                b"TA A       2000 kg",
                Response::TareValue(Reply::Value(kg(2000))),
            ),
            (
                b"TA L",
                Response::TareValue(Reply::Refused(Status::LogicalError)),
            ),
            (b"TAC A", Response::TareCleared(Status::Executed)),
            (
                br#"I2 A "T72XW Standard 50.00 kg""#,
                Response::DeviceData(Reply::Value("T72XW Standard 50.00 kg".to_owned())),
            ),
            (
                b"I2 I",
                Response::DeviceData(Reply::Refused(Status::NotExecutable)),
            ),
            (
                br#"I4 A "0123456789""#,
                Response::SerialNumber(Reply::Value("0123456789".to_owned())),
            ),
            (b"ES", Response::Error(ErrorReply::Syntax)),
            (b"ET", Response::Error(ErrorReply::Transmission)),
            (b"EL", Response::Error(ErrorReply::Logical)),
            (
                br#"I1 A "01" "2.20" "2.20" "1.00" "1.00""#,
                Response::Other {
                    id: "I1".to_owned(),
                    status: Some("A".to_owned()),
                    params: r#""01" "2.20" "2.20" "1.00" "1.00""#.to_owned(),
                },
            ),
            // A stray CR before the LF is tolerated.
            (b"Z A\r", Response::Zero(Status::Executed)),
        ];
        for (line, expected) in table {
            assert_eq!(
                parse_line(line),
                Ok(expected),
                "{}",
                String::from_utf8_lossy(line)
            );
        }
    }

    #[test]
    fn golden_garbage_lines() {
        let table: Vec<(&[u8], FrameError)> = vec![
            (b"", FrameError::Empty),
            (b"   ", FrameError::Empty),
            (b"\x00\xffS S 1 kg", FrameError::NotAscii),
            (b"S S 1\rkg", FrameError::NotAscii),
            (b"s s 1 kg", FrameError::BadId("s".to_owned())),
            (b"#~garbage", FrameError::BadId("#~garbage".to_owned())),
            (
                b"S X 10 kg",
                FrameError::BadStatus {
                    id: "S".to_owned(),
                    status: "X".to_owned(),
                },
            ),
            (
                b"S S 10 oz",
                FrameError::Weight(WeightParseError::UnknownUnit("oz".to_owned())),
            ),
            (
                b"S S",
                FrameError::Weight(WeightParseError::Malformed(String::new())),
            ),
            (
                b"Z A 10 kg",
                FrameError::BadParams {
                    id: "Z".to_owned(),
                    params: "10 kg".to_owned(),
                },
            ),
            (b"I4 A 0123", FrameError::Unquoted("0123".to_owned())),
            (
                b"ES X",
                FrameError::BadStatus {
                    id: "ES".to_owned(),
                    status: "X".to_owned(),
                },
            ),
        ];
        for (line, expected) in table {
            assert_eq!(
                parse_line(line),
                Err(expected),
                "{}",
                String::from_utf8_lossy(line)
            );
        }
    }

    #[test]
    fn format_matches_terminal_layout() {
        assert_eq!(
            Response::Weight(WeightReply::Stable(kg(12_340))).format(),
            "S S      12340 kg"
        );
        assert_eq!(
            Response::Weight(WeightReply::Dynamic(Weight::new(1234, 2, Unit::T))).encode(),
            b"S D      12.34 t\r\n"
        );
        assert_eq!(
            Response::SerialNumber(Reply::Value("a\r\nb".to_owned())).format(),
            "I4 A \"a??b\""
        );
    }

    #[test]
    fn commands_encode_and_parse() {
        assert_eq!(Command::StableWeight.encode(), b"S\r\n");
        assert_eq!(Command::Reset.encode(), b"@\r\n");
        for command in Command::ALL {
            let encoded = command.encode();
            let line = &encoded[..encoded.len() - 2];
            assert_eq!(Command::parse(line), Some(command));
        }
        assert_eq!(Command::parse(b"XYZ"), None);
        assert_eq!(Command::parse(b"\xff"), None);
    }

    #[test]
    fn replies_belong_to_their_commands() {
        let stable = Response::Weight(WeightReply::Stable(kg(1)));
        assert!(Command::StableWeight.expects(&stable));
        assert!(Command::ImmediateWeight.expects(&stable));
        assert!(!Command::Zero.expects(&stable));
        assert!(Command::Zero.expects(&Response::Error(ErrorReply::Syntax)));
        assert!(Command::Reset.expects(&Response::SerialNumber(Reply::Value("1".to_owned()))));
        assert!(
            !Command::DeviceData.expects(&Response::SerialNumber(Reply::Value("1".to_owned())))
        );
    }

    #[test]
    fn weight_replies_become_readings() {
        let raw = b"S +\r\n";
        let reading = Response::Weight(WeightReply::Overload)
            .to_reading(raw)
            .unwrap();
        assert!(reading.overload);
        assert_eq!(reading.net, None);
        assert_eq!(reading.raw, raw);
        assert_eq!(Response::Zero(Status::Executed).to_reading(raw), None);
    }
}
