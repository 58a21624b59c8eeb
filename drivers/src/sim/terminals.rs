//! Simulated terminals for every protocol besides MT-SICS (which lives in `sim::mtsics`):
//! Toledo continuous output, SMA SCP-0499, SysTec IT, Schenck DISOMAT and the default line
//! dialect. Each encodes with the same frame functions the drivers parse with, so the
//! simulator and the driver cannot drift apart on the byte layout. SysTec and DISOMAT
//! terminals can answer several addresses, which simulates an RS-485 line with several
//! devices; an address without a scale is a dead device that never answers.
//!
//! `factory` builds the terminal that matches a `ScaleConfig`, options included.

use std::sync::Arc;

use crate::scale::config::ScaleConfig;
use crate::scale::disomat::{self, DisomatOptions};
use crate::scale::framing::{Framing, RawFrame};
use crate::scale::line;
use crate::scale::protocol::Protocol;
use crate::scale::sma::{self, SmaWeight};
use crate::scale::systec::{self, SystecOutput};
use crate::scale::toledo::{self, ToledoOptions, ToledoOutput};
use crate::sim::mtsics::{MtSicsTerminal, UNDERLOAD_DIVISIONS};
use crate::sim::terminal::{MAX_COMMAND_BYTES, Terminal, TerminalFactory};
use crate::sim::truck::{RegisterRefusal, TareOutcome, TruckScale, ZeroOutcome, terminal_clock};

/// What every terminal derives from the bridge: gross, tare, motion and range.
#[derive(Debug, Clone, Copy)]
struct View {
    gross_kg: i64,
    tare_kg: i64,
    stable: bool,
    overload: bool,
    underload: bool,
}

impl View {
    fn of(scale: &TruckScale) -> Self {
        let sample = scale.sample();
        let division = scale.params().division_kg.max(1);
        Self {
            gross_kg: sample.weight_kg,
            tare_kg: scale.tare_kg(),
            stable: sample.stable,
            overload: sample.overload,
            underload: sample.weight_kg < -UNDERLOAD_DIVISIONS.saturating_mul(division),
        }
    }

    fn net_kg(&self) -> i64 {
        self.gross_kg.saturating_sub(self.tare_kg)
    }
}

fn flip_last(reply: &mut [u8]) {
    if let Some(last) = reply.last_mut() {
        *last ^= 0x01;
    }
}

/// Toledo continuous output: no commands, a frame every `STREAM_INTERVAL_MS`.
#[derive(Debug, Clone)]
pub struct ToledoTerminal {
    scale: TruckScale,
    options: ToledoOptions,
}

impl ToledoTerminal {
    /// A terminal on `scale` sending the format `options` describe.
    pub fn new(scale: TruckScale, options: ToledoOptions) -> Self {
        Self { scale, options }
    }
}

impl Terminal for ToledoTerminal {
    fn command_framing(&self) -> Option<Framing> {
        None
    }

    fn respond(&mut self, _command: &RawFrame) -> Vec<u8> {
        Vec::new()
    }

    fn streaming(&self) -> bool {
        true
    }

    fn stream_frame(&mut self) -> Vec<u8> {
        let view = View::of(&self.scale);
        let division = self.scale.params().division_kg;
        toledo::encode_frame(
            &ToledoOutput {
                displayed_kg: view.net_kg(),
                tare_kg: view.tare_kg,
                net_mode: view.tare_kg != 0,
                motion: !view.stable,
                out_of_range: view.overload || view.underload,
                count_by: if division % 5 == 0 { 5 } else { 2 },
            },
            &self.options,
        )
    }

    fn corrupt_checksum(&self, reply: &mut Vec<u8>) {
        if self.options.checksum {
            flip_last(reply);
        }
    }
}

/// SMA SCP-0499: `W`, `P`, `Z`, `T`, `C`, `M`, `A`/`B`; unknown commands get `?`.
#[derive(Debug, Clone)]
pub struct SmaTerminal {
    scale: TruckScale,
    about_line: usize,
}

impl SmaTerminal {
    /// A terminal on `scale`.
    pub fn new(scale: TruckScale) -> Self {
        Self {
            scale,
            about_line: 0,
        }
    }

    fn weight(&self, stable_only: bool) -> Vec<u8> {
        let view = View::of(&self.scale);
        let status = if view.overload {
            'O'
        } else if view.underload {
            'U'
        } else if view.gross_kg == 0 {
            'Z'
        } else {
            ' '
        };
        let dashed = stable_only && !view.stable && status == ' ';
        sma::encode_weight(&SmaWeight {
            status,
            mode: if view.tare_kg != 0 { 'N' } else { 'G' },
            motion: !view.stable,
            kg: (!dashed && !view.overload && !view.underload).then_some(view.net_kg()),
        })
    }
}

/// The `A`/`B` "about" dialogue of the simulator.
const SMA_ABOUT: [&str; 5] = ["SMA:2/1.0", "MFG:Valeo", "MOD:SimBridge", "REV:1.0", "END:"];

impl Terminal for SmaTerminal {
    fn command_framing(&self) -> Option<Framing> {
        Some(Framing::delimited(sma::LF, sma::CR, 0, MAX_COMMAND_BYTES))
    }

    fn waits_for(&self, command: &[u8]) -> Option<TruckScale> {
        (command == b"P").then(|| self.scale.clone())
    }

    fn respond(&mut self, command: &RawFrame) -> Vec<u8> {
        // ESC aborts and is not answered; it may precede a command.
        let body: Vec<u8> = command
            .body()
            .iter()
            .copied()
            .filter(|&b| b != 0x1B)
            .collect();
        match body.as_slice() {
            b"W" => self.weight(false),
            b"P" => self.weight(true),
            b"Z" => {
                let outcome = self.scale.zero();
                let mut reply = self.weight(false);
                if outcome != ZeroOutcome::Done && reply.len() > 1 {
                    reply[1] = b'E';
                }
                reply
            }
            b"T" => {
                if let TareOutcome::Done(_) = self.scale.tare() {
                    self.weight(false)
                } else {
                    sma::frame(" 1N  ----------kg ")
                }
            }
            b"C" => {
                self.scale.clear_tare();
                self.weight(false)
            }
            b"M" => sma::frame(&format!(" 1T  {:>10}kg ", self.scale.tare_kg())),
            b"A" => {
                self.about_line = 1;
                sma::frame(SMA_ABOUT[0])
            }
            b"B" => {
                let line = SMA_ABOUT[self.about_line.min(SMA_ABOUT.len() - 1)];
                self.about_line += 1;
                sma::frame(line)
            }
            _ => sma::frame("?"),
        }
    }

    fn on_bad_command(&mut self) -> Vec<u8> {
        sma::frame("?")
    }
}

/// SysTec IT with one scale per scale number; `<RM>`/`<RN>` without a number address the
/// first scale.
#[derive(Debug, Clone)]
pub struct SystecTerminal {
    scales: Vec<(u8, TruckScale)>,
}

impl SystecTerminal {
    /// A terminal serving `scales` by scale number.
    pub fn new(scales: Vec<(u8, TruckScale)>) -> Self {
        Self { scales }
    }

    /// Command name, scale number and the addressed scale; None when no such scale (a dead
    /// device does not answer).
    fn addressed(&self, body: &[u8]) -> Option<(String, u8, TruckScale)> {
        let text = std::str::from_utf8(body).ok()?;
        let name = text.get(..2)?.to_owned();
        let (number, scale) = match text.get(2..).filter(|n| !n.is_empty()) {
            None => self.scales.first()?.clone(),
            Some(n) => {
                let n: u8 = n.parse().ok()?;
                self.scales.iter().find(|(a, _)| *a == n)?.clone()
            }
        };
        Some((name, number, scale))
    }
}

impl Terminal for SystecTerminal {
    fn command_framing(&self) -> Option<Framing> {
        Some(Framing::delimited(
            systec::OPEN,
            systec::CLOSE,
            0,
            MAX_COMMAND_BYTES,
        ))
    }

    fn waits_for(&self, command: &[u8]) -> Option<TruckScale> {
        self.addressed(command)
            .filter(|(name, _, _)| name == "RN")
            .map(|(_, _, scale)| scale)
    }

    fn respond(&mut self, command: &RawFrame) -> Vec<u8> {
        let Some((name, number, scale)) = self.addressed(command.body()) else {
            return Vec::new();
        };
        let view = View::of(&scale);
        let (date, time) = terminal_clock();
        let mut output = SystecOutput {
            error_code: 0,
            motion: !view.stable,
            invalid: view.overload || view.underload,
            date,
            time,
            ident: 0,
            scale: number,
            gross_kg: view.gross_kg,
            tare_kg: view.tare_kg,
        };
        match name.as_str() {
            "RM" => {}
            "RN" => match scale.register() {
                Ok(record) => output.ident = record.id,
                // Terminal error code for "negative weight cannot be registered".
                Err(RegisterRefusal::Negative) => output.error_code = 13,
                Err(RegisterRefusal::NotStable | RegisterRefusal::Overload) => {}
            },
            "SZ" => {
                if scale.zero() != ZeroOutcome::Done {
                    output.error_code = 11;
                }
            }
            "TC" => scale.clear_tare(),
            _ => output.error_code = 99,
        }
        systec::encode_reply(&output)
    }
}

/// DISOMAT DDP 8785 with one scale per address; replies only to valid BCCs.
#[derive(Debug, Clone)]
pub struct DisomatTerminal {
    scales: Vec<(u8, TruckScale)>,
    options: DisomatOptions,
}

impl DisomatTerminal {
    /// A terminal serving `scales` by address.
    pub fn new(scales: Vec<(u8, TruckScale)>, options: DisomatOptions) -> Self {
        Self { scales, options }
    }

    fn command<'a>(&self, frame: &'a RawFrame) -> Option<(u8, Vec<&'a str>)> {
        let body = frame.body();
        let mut covered = body.to_vec();
        covered.push(disomat::ETX);
        if frame.trailer().first() != Some(&disomat::bcc(&covered)) {
            // A corrupted command is not answered; the driver times out and retries.
            return None;
        }
        let payload = if self.options.dle_before_etx {
            body.strip_suffix(&[disomat::DLE])?
        } else {
            body
        };
        let text = std::str::from_utf8(payload).ok()?;
        let fields: Vec<&str> = text.split('#').collect();
        let address = fields.first()?.parse().ok()?;
        Some((address, fields))
    }

    fn scale(&self, address: u8) -> Option<TruckScale> {
        self.scales
            .iter()
            .find(|(a, _)| *a == address)
            .map(|(_, s)| s.clone())
    }
}

impl Terminal for DisomatTerminal {
    fn command_framing(&self) -> Option<Framing> {
        Some(Framing::delimited(
            disomat::STX,
            disomat::ETX,
            1,
            MAX_COMMAND_BYTES,
        ))
    }

    fn waits_for(&self, command: &[u8]) -> Option<TruckScale> {
        let text = std::str::from_utf8(command).ok()?;
        let mut fields = text.split('#');
        let address = fields.next()?.parse().ok()?;
        (fields.next()? == "DR")
            .then(|| self.scale(address))
            .flatten()
    }

    fn respond(&mut self, command: &RawFrame) -> Vec<u8> {
        let Some((address, fields)) = self.command(command) else {
            return Vec::new();
        };
        let Some(scale) = self.scale(address) else {
            return Vec::new();
        };
        let view = View::of(&scale);
        let o = &self.options;
        let mut status = 0u16;
        if !view.stable {
            status |= o.status_motion_mask;
        }
        if view.overload {
            status |= o.status_overload_mask;
        }
        if view.underload {
            status |= o.status_underload_mask;
        }
        let payload = match fields.get(1).copied() {
            Some("TG") => format!(
                "{address:02}#TG#{:>8}#{:>8}#0#{status:x}#",
                view.net_kg(),
                view.tare_kg
            ),
            Some("DR") => {
                let pattern = fields.get(2).copied().unwrap_or("1");
                let (date, time) = terminal_clock();
                let (print_status, number, weight) = match scale.register() {
                    Ok(record) => (0, record.id.to_string(), format!("{:>8} kg", view.net_kg())),
                    Err(RegisterRefusal::Overload) => (0, String::new(), " ".repeat(8)),
                    Err(RegisterRefusal::NotStable) => {
                        (0, String::new(), format!("{:>8} kg", view.net_kg()))
                    }
                    Err(RegisterRefusal::Negative) => (3, String::new(), String::new()),
                };
                format!(
                    "{address:02}#DR#{pattern}#{print_status}#{status:x}#{date}#{time}#{number}#{weight}#"
                )
            }
            Some("AZ") => {
                let done = scale.zero() == ZeroOutcome::Done;
                format!("{address:02}#AZ#{}#", u8::from(!done))
            }
            _ => format!("{address:02}#ER#1#"),
        };
        disomat::encode_frame(&payload, o.dle_before_etx)
    }

    fn corrupt_checksum(&self, reply: &mut Vec<u8>) {
        flip_last(reply);
    }
}

/// The default line dialect (`READ` → `ST,GS,+0012340kg`, `PID` registers with `,ID:nnnnnn`).
#[derive(Debug, Clone)]
pub struct LineTerminal {
    scale: TruckScale,
}

impl LineTerminal {
    /// A terminal on `scale`.
    pub fn new(scale: TruckScale) -> Self {
        Self { scale }
    }

    fn reply(&self, alibi: Option<u32>) -> Vec<u8> {
        let view = View::of(&self.scale);
        let status = if view.overload {
            "OL"
        } else if view.underload {
            "UL"
        } else if view.stable {
            "ST"
        } else {
            "US"
        };
        line::encode_default_reply(status, view.tare_kg != 0, view.net_kg(), alibi)
    }
}

impl Terminal for LineTerminal {
    fn command_framing(&self) -> Option<Framing> {
        Some(Framing::lines(MAX_COMMAND_BYTES))
    }

    fn waits_for(&self, command: &[u8]) -> Option<TruckScale> {
        (command == b"PID").then(|| self.scale.clone())
    }

    fn respond(&mut self, command: &RawFrame) -> Vec<u8> {
        match command.body() {
            b"READ" => self.reply(None),
            b"PID" => match self.scale.register() {
                Ok(record) => self.reply(Some(record.id)),
                Err(_) => self.reply(None),
            },
            _ => Vec::new(),
        }
    }
}

/// The terminal matching `config` (protocol, options, address) on `scale`.
pub fn factory(config: &ScaleConfig, scale: TruckScale) -> TerminalFactory {
    let address = config.address.unwrap_or(match config.protocol {
        Protocol::Systec => 1,
        _ => 0,
    });
    multidrop_factory(config, vec![(address, scale)])
}

/// Like `factory`, serving several `(address, scale)` devices on one line (SysTec and DISOMAT
/// only; other protocols serve the first).
pub fn multidrop_factory(config: &ScaleConfig, devices: Vec<(u8, TruckScale)>) -> TerminalFactory {
    let config = config.clone();
    Arc::new(move || -> Box<dyn Terminal> {
        let first = devices
            .first()
            .map(|(_, s)| s.clone())
            .unwrap_or_else(|| TruckScale::new(crate::sim::truck::TruckScaleParams::default()));
        match config.protocol {
            Protocol::MtSics => Box::new(MtSicsTerminal::new(first)),
            Protocol::ToledoContinuous => Box::new(ToledoTerminal::new(
                first,
                config.toledo.clone().unwrap_or_default(),
            )),
            Protocol::Sma => Box::new(SmaTerminal::new(first)),
            Protocol::Systec => Box::new(SystecTerminal::new(devices.clone())),
            Protocol::Disomat => Box::new(DisomatTerminal::new(
                devices.clone(),
                config.disomat.clone().unwrap_or_default(),
            )),
            Protocol::Line => Box::new(LineTerminal::new(first)),
        }
    })
}
