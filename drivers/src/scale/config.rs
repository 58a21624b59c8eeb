//! `ScaleConfig`: one `[[scales]]` entry. It binds a scale to its protocol (never guessed from
//! bytes), its transport, its per-device timing (timeout, retries, degrade/backoff), its
//! legal parameters (verification interval e, minimum load in e) and the protocol's own
//! options table. Every field has a serde default; `validate` names the offending field.

use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::scale::disomat::{DisomatOptions, DisomatProtocol};
use crate::scale::line::{LineOptions, LineProtocol};
use crate::scale::mtsics::MtSicsProtocol;
pub use crate::scale::protocol::Protocol;
use crate::scale::protocol::ScaleProtocol;
use crate::scale::reading::Weight;
use crate::scale::sma::{SmaOptions, SmaProtocol};
use crate::scale::stability::StabilityConfig;
use crate::scale::systec::{SystecOptions, SystecProtocol};
use crate::scale::toledo::{ToledoOptions, ToledoProtocol};
use crate::transport::TransportConfig;

/// How live readings are obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Ask for every reading (`SI`, `W`, `<RM>`, `TG`, a configured request).
    Poll,
    /// The terminal sends continuously (Toledo always; MT-SICS after `SIR`).
    Stream,
}

fn default_poll_interval_ms() -> u64 {
    250
}
fn default_response_timeout_ms() -> u64 {
    2000
}
fn default_reconnect_backoff_min_ms() -> u64 {
    500
}
fn default_reconnect_backoff_max_ms() -> u64 {
    30_000
}
fn default_retries() -> u32 {
    1
}
fn default_degrade_after_failures() -> u32 {
    3
}
fn default_degraded_poll_interval_max_ms() -> u64 {
    30_000
}
fn default_min_load_divisions() -> u32 {
    20
}
fn default_register_wait_ms() -> u64 {
    5000
}

/// (De)serialises an optional weight as text, `"20 kg"`, the way configs write weights.
mod weight_text {
    use super::*;

    pub(super) fn serialize<S: Serializer>(w: &Option<Weight>, s: S) -> Result<S::Ok, S::Error> {
        match w {
            Some(w) => s.serialize_str(&w.to_string()),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Weight>, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map(Some).map_err(|e| {
            serde::de::Error::custom(format!("{text:?} is not a weight like \"20 kg\": {e}"))
        })
    }
}

/// Configuration of one scale.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScaleConfig {
    /// The scale's id, also the `terminal_id` of its legal weighings.
    pub id: String,
    /// Wire protocol.
    #[serde(default)]
    pub protocol: Protocol,
    /// Where the terminal is attached. Several scales may name the same serial port (an
    /// RS-485 line); one task then owns the port and serialises every request on it.
    pub transport: TransportConfig,
    /// Device address on a shared line (SysTec scale number 0–9, DISOMAT address 0–99).
    #[serde(default)]
    pub address: Option<u8>,
    /// Poll or stream; unset = the protocol's natural mode.
    #[serde(default)]
    pub mode: Option<Mode>,
    /// Confirm the protocol with an identity/status command before the first reading.
    #[serde(default)]
    pub handshake: bool,
    /// How often the live weight is polled.
    #[serde(default = "default_poll_interval_ms")]
    pub poll_interval_ms: u64,
    /// How long to wait for any reply.
    #[serde(default = "default_response_timeout_ms")]
    pub response_timeout_ms: u64,
    /// Immediate retries of a failed poll (never of a registration, see `docs/drivers.md`).
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Consecutive failures after which the device is degraded and polled with backoff.
    #[serde(default = "default_degrade_after_failures")]
    pub degrade_after_failures: u32,
    /// Cap on the poll interval of a degraded device.
    #[serde(default = "default_degraded_poll_interval_max_ms")]
    pub degraded_poll_interval_max_ms: u64,
    /// First reconnect delay.
    #[serde(default = "default_reconnect_backoff_min_ms")]
    pub reconnect_backoff_min_ms: u64,
    /// Cap on the reconnect delay.
    #[serde(default = "default_reconnect_backoff_max_ms")]
    pub reconnect_backoff_max_ms: u64,
    /// Verification scale interval e, e.g. `"20 kg"`; enables the minimum load in e and the
    /// stability band.
    #[serde(default, with = "weight_text", skip_serializing_if = "Option::is_none")]
    pub division: Option<Weight>,
    /// Minimum load in e (OIML R 76 class III: 20 e); applies when `division` is set.
    #[serde(default = "default_min_load_divisions")]
    pub min_load_divisions: u32,
    /// Band-and-time filter for streaming protocols.
    #[serde(default)]
    pub stability: StabilityConfig,
    /// How long a registration on a stream-only terminal waits for the stream to settle.
    #[serde(default = "default_register_wait_ms")]
    pub register_wait_ms: u64,
    /// Options of `toledo-continuous`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub toledo: Option<ToledoOptions>,
    /// Options of `sma`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sma: Option<SmaOptions>,
    /// Options of `systec`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub systec: Option<SystecOptions>,
    /// Options of `disomat`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disomat: Option<DisomatOptions>,
    /// Options of `line`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<LineOptions>,
}

impl ScaleConfig {
    /// A config with the documented defaults.
    pub fn new(id: impl Into<String>, transport: TransportConfig) -> Self {
        Self {
            id: id.into(),
            protocol: Protocol::default(),
            transport,
            address: None,
            mode: None,
            handshake: false,
            poll_interval_ms: default_poll_interval_ms(),
            response_timeout_ms: default_response_timeout_ms(),
            retries: default_retries(),
            degrade_after_failures: default_degrade_after_failures(),
            degraded_poll_interval_max_ms: default_degraded_poll_interval_max_ms(),
            reconnect_backoff_min_ms: default_reconnect_backoff_min_ms(),
            reconnect_backoff_max_ms: default_reconnect_backoff_max_ms(),
            division: None,
            min_load_divisions: default_min_load_divisions(),
            stability: StabilityConfig::default(),
            register_wait_ms: default_register_wait_ms(),
            toledo: None,
            sma: None,
            systec: None,
            disomat: None,
            line: None,
        }
    }

    /// A config for `protocol` with that protocol's default options.
    pub fn with_protocol(mut self, protocol: Protocol) -> Self {
        self.protocol = protocol;
        self
    }

    /// The protocol object for this device, with its options and address.
    pub fn build_protocol(&self) -> Arc<dyn ScaleProtocol> {
        match self.protocol {
            Protocol::MtSics => Arc::new(MtSicsProtocol),
            Protocol::ToledoContinuous => {
                Arc::new(ToledoProtocol::new(self.toledo.clone().unwrap_or_default()))
            }
            Protocol::Sma => Arc::new(SmaProtocol::new(self.sma.clone().unwrap_or_default())),
            Protocol::Systec => Arc::new(SystecProtocol::new(
                self.systec.clone().unwrap_or_default(),
                self.address,
            )),
            Protocol::Disomat => Arc::new(DisomatProtocol::new(
                self.disomat.clone().unwrap_or_default(),
                self.address,
            )),
            Protocol::Line => Arc::new(LineProtocol::new(self.line.clone().unwrap_or_default())),
        }
    }

    /// The effective mode: configured, else stream for terminals that stream by themselves.
    pub fn effective_mode(&self) -> Mode {
        self.mode.unwrap_or_else(|| {
            if self.build_protocol().streams_by_itself() {
                Mode::Stream
            } else {
                Mode::Poll
            }
        })
    }

    /// Checks the id, the transport, intervals, and that protocol, address, mode and options
    /// fit together. Errors name the scale and the field.
    pub fn validate(&self) -> Result<(), String> {
        if self.id.trim().is_empty() {
            return Err("scale id is empty".to_owned());
        }
        self.check().map_err(|e| format!("scale {}: {e}", self.id))
    }

    fn check(&self) -> Result<(), String> {
        self.transport.validate()?;
        for (name, value) in [
            ("poll_interval_ms", self.poll_interval_ms),
            ("response_timeout_ms", self.response_timeout_ms),
            ("reconnect_backoff_min_ms", self.reconnect_backoff_min_ms),
            ("reconnect_backoff_max_ms", self.reconnect_backoff_max_ms),
            (
                "degraded_poll_interval_max_ms",
                self.degraded_poll_interval_max_ms,
            ),
            ("register_wait_ms", self.register_wait_ms),
        ] {
            if value == 0 {
                return Err(format!("{name} must be greater than 0"));
            }
        }
        if self.reconnect_backoff_min_ms > self.reconnect_backoff_max_ms {
            return Err(format!(
                "reconnect_backoff_min_ms ({}) exceeds reconnect_backoff_max_ms ({})",
                self.reconnect_backoff_min_ms, self.reconnect_backoff_max_ms
            ));
        }
        if self.degrade_after_failures == 0 {
            return Err("degrade_after_failures must be greater than 0".to_owned());
        }
        if self.division.is_some_and(|d| d.value <= 0) {
            return Err("division must be a positive weight".to_owned());
        }
        self.stability.validate()?;
        let given = [
            ("toledo", self.toledo.is_some(), Protocol::ToledoContinuous),
            ("sma", self.sma.is_some(), Protocol::Sma),
            ("systec", self.systec.is_some(), Protocol::Systec),
            ("disomat", self.disomat.is_some(), Protocol::Disomat),
            ("line", self.line.is_some(), Protocol::Line),
        ];
        for (table, present, owner) in given {
            if present && owner != self.protocol {
                return Err(format!(
                    "[scales.{table}] options are given but protocol is {}",
                    self.protocol
                ));
            }
        }
        if let Some(sma) = &self.sma {
            sma.validate()?;
        }
        if let Some(line) = &self.line {
            line.validate()?;
        }
        match (self.protocol, self.address) {
            (Protocol::Systec, Some(a)) if a > 9 => {
                return Err(format!("address must be 0-9 for systec, got {a}"));
            }
            (Protocol::Disomat, Some(a)) if a > 99 => {
                return Err(format!("address must be 0-99 for disomat, got {a}"));
            }
            (
                Protocol::MtSics | Protocol::ToledoContinuous | Protocol::Sma | Protocol::Line,
                Some(_),
            ) => {
                return Err(format!(
                    "address is not supported by protocol {} (it has no device address)",
                    self.protocol
                ));
            }
            _ => {}
        }
        let protocol = self.build_protocol();
        let mode = self.effective_mode();
        let streams = protocol.streams_by_itself();
        match mode {
            Mode::Stream
                if protocol
                    .encode(crate::scale::protocol::Request::StartStream)
                    .is_none() =>
            {
                return Err(format!(
                    "mode = \"stream\" is not supported by protocol {}",
                    self.protocol
                ));
            }
            Mode::Poll if streams => {
                return Err(format!(
                    "mode = \"poll\" is not possible: protocol {} only streams",
                    self.protocol
                ));
            }
            Mode::Stream if self.address.is_some() => {
                return Err(
                    "mode = \"stream\" cannot be used with an address on a shared line".to_owned(),
                );
            }
            _ => {}
        }
        if self.handshake
            && protocol
                .encode(crate::scale::protocol::Request::Handshake)
                .is_none()
        {
            return Err(format!(
                "handshake is not supported by protocol {}",
                self.protocol
            ));
        }
        Ok(())
    }

    /// The minimum load for a legal weighing: the larger of `asked` and
    /// `min_load_divisions` × e (when `division` is set and comparable).
    pub fn effective_min_load(&self, asked: Weight) -> Weight {
        let Some(e) = self.division else {
            return asked;
        };
        let by_divisions = Weight::new(
            e.value.saturating_mul(i64::from(self.min_load_divisions)),
            e.decimals,
            e.unit,
        );
        match by_divisions.compare(&asked) {
            Some(std::cmp::Ordering::Greater) => by_divisions,
            _ => asked,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scale::reading::Unit;

    fn tcp() -> TransportConfig {
        TransportConfig::Tcp {
            address: "127.0.0.1:4305".to_owned(),
            connect_timeout_ms: 3000,
        }
    }

    #[test]
    fn defaults_and_round_trip() {
        let cfg: ScaleConfig = toml::from_str(
            "id = \"bridge-1\"\n[transport]\nkind = \"tcp\"\naddress = \"127.0.0.1:4305\"\n",
        )
        .unwrap();
        assert_eq!(cfg, ScaleConfig::new("bridge-1", tcp()));
        cfg.validate().unwrap();
        assert_eq!(cfg.effective_mode(), Mode::Poll);
        let json = serde_json::to_value(&cfg).unwrap();
        assert_eq!(json["protocol"], "mt-sics");
        let back: ScaleConfig = serde_json::from_value(json).unwrap();
        assert_eq!(back, cfg);
    }

    #[test]
    fn every_protocol_is_selectable_with_its_options() {
        let cfg: ScaleConfig = toml::from_str(
            r#"
            id = "bridge-2"
            protocol = "disomat"
            address = 7
            division = "20 kg"
            [transport]
            kind = "serial"
            path = "/dev/ttyUSB0"
            [disomat]
            dle_before_etx = true
            "#,
        )
        .unwrap();
        cfg.validate().unwrap();
        assert_eq!(cfg.division, Some(Weight::kg(20)));
        assert_eq!(cfg.effective_min_load(Weight::kg(100)), Weight::kg(400));
        assert_eq!(cfg.effective_min_load(Weight::kg(1000)), Weight::kg(1000));
        for protocol in Protocol::ALL {
            let cfg = ScaleConfig::new("b", tcp()).with_protocol(protocol);
            cfg.validate().unwrap();
            assert_eq!(cfg.build_protocol().protocol(), protocol);
        }
        let toledo = ScaleConfig::new("b", tcp()).with_protocol(Protocol::ToledoContinuous);
        assert_eq!(toledo.effective_mode(), Mode::Stream);
        assert_eq!(Protocol::from_name("sma"), Some(Protocol::Sma));
        assert_eq!(Weight::new(2, 1, Unit::T).to_string(), "0.2 t");
    }

    #[test]
    fn validation_names_the_field() {
        let check = |toml_text: &str, needle: &str| {
            let cfg: ScaleConfig = toml::from_str(&format!(
                "id = \"b\"\n{toml_text}\n[transport]\nkind = \"tcp\"\naddress = \"a:1\"\n"
            ))
            .unwrap();
            let error = cfg.validate().unwrap_err();
            assert!(error.contains(needle), "{error}");
        };
        check("protocol = \"sma\"\ntoledo = {}", "[scales.toledo]");
        check("address = 3", "address is not supported");
        check("protocol = \"systec\"\naddress = 12", "address must be 0-9");
        check("protocol = \"sma\"\nmode = \"stream\"", "mode = \"stream\"");
        check(
            "protocol = \"toledo-continuous\"\nmode = \"poll\"",
            "only streams",
        );
        check(
            "protocol = \"toledo-continuous\"\nhandshake = true\nmode = \"poll\"",
            "only streams",
        );
        check("poll_interval_ms = 0", "poll_interval_ms");
        check(
            "reconnect_backoff_min_ms = 60000",
            "reconnect_backoff_min_ms",
        );
        check("division = \"0 kg\"", "division");
        check("stability = { min_readings = 0 }", "stability.min_readings");
        check(
            "protocol = \"line\"\nline = { frame_end = \"ab\" }",
            "line.frame_end",
        );
        check(
            "protocol = \"sma\"\nsma = { register_command = \"\" }",
            "sma.register_command",
        );
        assert!(
            toml::from_str::<ScaleConfig>(
                "id = \"b\"\nspeed = 1\n[transport]\nkind = \"tcp\"\naddress = \"a:1\"\n"
            )
            .is_err()
        );
        assert!(
            toml::from_str::<ScaleConfig>(
                "id = \"b\"\nprotocol = \"nci\"\n[transport]\nkind = \"tcp\"\naddress = \"a:1\"\n"
            )
            .is_err()
        );
        assert!(
            toml::from_str::<ScaleConfig>(
                "id = \"b\"\ndivision = \"20\"\n[transport]\nkind = \"tcp\"\naddress = \"a:1\"\n"
            )
            .is_err()
        );
    }
}
