//! The edge agent's configuration file (TOML). Every field with a safe
//! default has one; a bad file stops the agent with the file, the field and
//! the problem named.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;
use valeo_drivers::analyzer::AnalyzerConfig;
use valeo_drivers::modbus::map::LineConfig;
use valeo_drivers::scale::config::Protocol;
use valeo_drivers::scale::device::ScaleConfig;
use valeo_drivers::scale::reading::Weight;
use valeo_drivers::site_io::SiteIoConfig;
use valeo_sync::mqtt::BrokerConfig;
use valeo_sync::uplink::UplinkConfig;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EdgeConfig {
    /// This box's identity on the wire; 1–64 of `A-Z a-z 0-9 - _`. No default:
    /// two boxes with the same id would mix their records.
    pub device_id: String,
    /// Where the outbox database lives. Must be local storage (SQLite WAL).
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    #[serde(default)]
    pub http: HttpConfig,
    #[serde(default)]
    pub mqtt: BrokerConfig,
    #[serde(default)]
    pub uplink: UplinkConfig,
    #[serde(default)]
    pub outbox: OutboxConfig,
    #[serde(default)]
    pub weighing: WeighingConfig,
    #[serde(default)]
    pub telemetry: TelemetryConfig,
    #[serde(default)]
    pub scales: Vec<ScaleConfig>,
    /// A simulated terminal on a pseudo-terminal, for demos and trials.
    #[serde(default)]
    pub simulation: SimulationConfig,
    /// Traffic lights, barriers and position sensors at the platform.
    #[serde(default)]
    pub site_io: SiteIoConfig,
    /// Grain analyzers whose results can be attached to tickets.
    #[serde(default)]
    pub analyzers: Vec<AnalyzerConfig>,
    /// Modbus lines (serial RTU or TCP endpoints) with their devices.
    #[serde(default)]
    pub modbus: Vec<LineConfig>,
    /// The cash desk with its TSE; absent: no cash sales at this box.
    #[serde(default)]
    pub cash: Option<crate::cash::CashSettings>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    #[serde(default = "default_http_listen")]
    pub listen: SocketAddr,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboxConfig {
    #[serde(default = "default_max_pending_records")]
    pub max_pending_records: u64,
    #[serde(default = "default_keep_acked_records")]
    pub keep_acked_records: u64,
    /// Weighings are refused (never dropped) once the database uses this much.
    #[serde(default = "default_max_db_bytes")]
    pub max_db_bytes: u64,
    /// `/health` reports an alarm from this share of `max_db_bytes` on.
    #[serde(default = "default_alarm_db_percent")]
    pub alarm_db_percent: u8,
}

/// Live values on `valeo/v1/{device}/telemetry` (QoS 0, best effort).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    #[serde(default = "default_true")]
    pub enabled: bool,
    #[serde(default = "default_telemetry_interval_ms")]
    pub interval_ms: u64,
    /// Samples kept while offline; the oldest are dropped (and counted) beyond.
    #[serde(default = "default_max_queued_samples")]
    pub max_queued_samples: u64,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        TelemetryConfig {
            enabled: true,
            interval_ms: default_telemetry_interval_ms(),
            max_queued_samples: default_max_queued_samples(),
        }
    }
}

fn default_true() -> bool {
    true
}
fn default_telemetry_interval_ms() -> u64 {
    1_000
}
fn default_max_queued_samples() -> u64 {
    10_000
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeighingConfig {
    /// Weighings below this load are refused (legal minimum, 20 e on a
    /// typical truck scale with e = 20 kg).
    #[serde(default = "default_min_load", deserialize_with = "deserialize_weight")]
    pub min_load: Weight,
    /// Refuse a ticket without a partner (customer or supplier).
    #[serde(default)]
    pub require_partner: bool,
    /// Refuse a ticket without an article.
    #[serde(default)]
    pub require_article: bool,
    /// Refuse plates that are not in the vehicle master data.
    #[serde(default)]
    pub require_known_vehicle: bool,
    /// A stored vehicle tare older than this is refused (MessEV § 26 (2):
    /// the operator must keep stored tares current).
    #[serde(default = "default_stored_tare_max_age_days")]
    pub stored_tare_max_age_days: u32,
}

fn default_stored_tare_max_age_days() -> u32 {
    180
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimulationConfig {
    /// Start a simulated MT-SICS terminal on a pseudo-terminal and bind a
    /// scale with this id to it.
    #[serde(default)]
    pub enabled: bool,
    #[serde(default = "default_sim_scale_id")]
    pub scale_id: String,
    /// The protocol the simulated terminal speaks. SysTec by default: a
    /// common German truck-scale terminal whose registered weighings carry
    /// an alibi number, as legal-for-trade tickets need.
    #[serde(default = "default_sim_protocol")]
    pub protocol: Protocol,
    /// Simulated Modbus field devices: a moisture analyzer and a light
    /// controller on an RS-485 line, ten silo sensors over TCP.
    #[serde(default)]
    pub modbus: bool,
    /// A simulated grain analyzer on a pseudo-terminal, with this id.
    #[serde(default = "default_sim_analyzer_id")]
    pub analyzer_id: String,
    /// Drive trucks over the simulated scale and weigh them, as a demo.
    #[serde(default)]
    pub auto_traffic: bool,
    /// Pause between two trucks of the demo traffic.
    #[serde(default = "default_truck_interval_ms")]
    pub truck_interval_ms: u64,
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("data/edge")
}
fn default_http_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8081))
}
fn default_max_pending_records() -> u64 {
    1_000_000
}
fn default_keep_acked_records() -> u64 {
    100_000
}
fn default_max_db_bytes() -> u64 {
    valeo_sync::outbox::OutboxLimits::default().max_db_bytes
}
fn default_alarm_db_percent() -> u8 {
    valeo_sync::outbox::OutboxLimits::default().alarm_db_percent
}
fn default_min_load() -> Weight {
    Weight::new(400, 0, valeo_drivers::scale::reading::Unit::Kg)
}
fn default_sim_analyzer_id() -> String {
    "sim-analyzer-1".to_owned()
}
fn default_sim_protocol() -> Protocol {
    Protocol::Systec
}
fn default_sim_scale_id() -> String {
    "sim-bridge-1".to_owned()
}
fn default_truck_interval_ms() -> u64 {
    5_000
}

fn deserialize_weight<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Weight, D::Error> {
    let text = String::deserialize(d)?;
    text.parse().map_err(|e| {
        serde::de::Error::custom(format!("{text:?} is not a weight like \"400 kg\": {e}"))
    })
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: default_http_listen(),
        }
    }
}
impl Default for OutboxConfig {
    fn default() -> Self {
        OutboxConfig {
            max_pending_records: default_max_pending_records(),
            keep_acked_records: default_keep_acked_records(),
            max_db_bytes: default_max_db_bytes(),
            alarm_db_percent: default_alarm_db_percent(),
        }
    }
}
impl Default for WeighingConfig {
    fn default() -> Self {
        WeighingConfig {
            min_load: default_min_load(),
            require_partner: false,
            require_article: false,
            require_known_vehicle: false,
            stored_tare_max_age_days: default_stored_tare_max_age_days(),
        }
    }
}
impl Default for SimulationConfig {
    fn default() -> Self {
        SimulationConfig {
            enabled: false,
            scale_id: default_sim_scale_id(),
            protocol: default_sim_protocol(),
            analyzer_id: default_sim_analyzer_id(),
            modbus: false,
            auto_traffic: false,
            truck_interval_ms: default_truck_interval_ms(),
        }
    }
}

impl EdgeConfig {
    pub fn parse(text: &str) -> anyhow::Result<EdgeConfig> {
        let config: EdgeConfig = toml::from_str(text).map_err(|e| anyhow::anyhow!("{e}"))?;
        valeo_sync::wire::validate_device_id(&config.device_id)
            .map_err(|e| anyhow::anyhow!("device_id: {e}"))?;
        config
            .mqtt
            .validate()
            .map_err(|e| anyhow::anyhow!("[mqtt] {e}"))?;
        config
            .uplink
            .validate()
            .map_err(|e| anyhow::anyhow!("[uplink] {e}"))?;
        if config.outbox.max_pending_records == 0 {
            anyhow::bail!("[outbox] max_pending_records must be greater than 0");
        }
        if config.outbox.max_db_bytes < 1024 * 1024 {
            anyhow::bail!("[outbox] max_db_bytes must be at least 1048576 (1 MiB)");
        }
        if !(1..=100).contains(&config.outbox.alarm_db_percent) {
            anyhow::bail!("[outbox] alarm_db_percent must be 1..=100");
        }
        if !(1..=3650).contains(&config.weighing.stored_tare_max_age_days) {
            anyhow::bail!("[weighing] stored_tare_max_age_days must be 1..=3650");
        }
        if config.telemetry.interval_ms < 100 {
            anyhow::bail!("[telemetry] interval_ms must be at least 100");
        }
        if config.telemetry.max_queued_samples == 0 {
            anyhow::bail!("[telemetry] max_queued_samples must be greater than 0");
        }
        config
            .site_io
            .validate()
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut ids = HashSet::new();
        for scale in &config.scales {
            if !ids.insert(scale.id.as_str()) {
                anyhow::bail!("[[scales]] id {:?} is used twice", scale.id);
            }
            scale
                .validate()
                .map_err(|e| anyhow::anyhow!("[[scales]] {e}"))?;
        }
        let (mut line_ids, mut modbus_ids) = (HashSet::new(), HashSet::new());
        for line in &config.modbus {
            line.validate()
                .map_err(|e| anyhow::anyhow!("[[modbus]] {e}"))?;
            if !line_ids.insert(line.id.as_str()) {
                anyhow::bail!("[[modbus]] line id {:?} is used twice", line.id);
            }
            for device in &line.devices {
                if !modbus_ids.insert(device.id.as_str()) {
                    anyhow::bail!("[[modbus]] device id {:?} is used on two lines", device.id);
                }
            }
        }
        let mut analyzer_ids = HashSet::new();
        for analyzer in &config.analyzers {
            analyzer
                .validate()
                .map_err(|e| anyhow::anyhow!("[[analyzers]] {e}"))?;
            if !analyzer_ids.insert(analyzer.id.as_str()) {
                anyhow::bail!("[[analyzers]] id {:?} is used twice", analyzer.id);
            }
        }
        if config.simulation.enabled
            && analyzer_ids.contains(config.simulation.analyzer_id.as_str())
        {
            anyhow::bail!(
                "[simulation] analyzer_id {:?} is also a configured [[analyzers]] id",
                config.simulation.analyzer_id
            );
        }
        if config.simulation.enabled && ids.contains(config.simulation.scale_id.as_str()) {
            anyhow::bail!(
                "[simulation] scale_id {:?} is also a configured [[scales]] id",
                config.simulation.scale_id
            );
        }
        if config.simulation.modbus && !config.simulation.enabled {
            anyhow::bail!("[simulation] modbus needs enabled = true");
        }
        if let Some(cash) = &config.cash {
            cash.validate().map_err(|e| anyhow::anyhow!("[cash] {e}"))?;
        }
        // Simulated field devices join at start-up; their pins are checked then.
        if !config.simulation.modbus {
            valeo_drivers::site_io::check_modbus_pins(&config.site_io, &config.modbus)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        if config.simulation.auto_traffic && !config.simulation.enabled {
            anyhow::bail!("[simulation] auto_traffic needs enabled = true");
        }
        if config.scales.is_empty() && !config.simulation.enabled {
            anyhow::bail!("no scale configured: add a [[scales]] entry or enable [simulation]");
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_configs_parse() {
        EdgeConfig::parse(include_str!("../../config/edge.example.toml")).unwrap();
        EdgeConfig::parse(include_str!("../../config/edge.demo.toml")).unwrap();
    }

    #[test]
    fn errors_name_the_field_and_the_problem() {
        let cases = [
            ("", "device_id"),
            (
                "device_id = \"a/b\"\n[simulation]\nenabled = true",
                "device_id",
            ),
            ("device_id = \"b1\"", "no scale configured"),
            (
                "device_id = \"b1\"\n[simulation]\nenabled = true\n[weighing]\nmin_load = \"heavy\"",
                "min_load",
            ),
            (
                "device_id = \"b1\"\n[simulation]\nenabled = true\n[uplink]\nmax_batch_records = 0",
                "max_batch_records",
            ),
            (
                "device_id = \"b1\"\n[[scales]]\nid = \"s\"\n[scales.transport]\nkind = \"serial\"\npath = \"/dev/ttyS0\"\ndata_bits = 9",
                "data_bits",
            ),
            (
                "device_id = \"b1\"\n[[scales]]\nid = \"s\"\n[scales.transport]\nkind = \"carrier-pigeon\"",
                "carrier-pigeon",
            ),
            (
                "device_id = \"b1\"\n[simulation]\nenabled = true\n[[modbus]]\nid = \"l\"\n[modbus.transport]\nkind = \"tcp\"\naddress = \"127.0.0.1:502\"\n[[modbus.devices]]\nid = \"m\"\nunit = 1\npoints = []",
                "address_base",
            ),
            (
                "device_id = \"b1\"\n[simulation]\nenabled = true\n[[modbus]]\nid = \"l\"\n[modbus.transport]\nkind = \"tcp\"\naddress = \"127.0.0.1:502\"\n[[modbus.devices]]\nid = \"m\"\nunit = 1\naddress_base = 0\n[[modbus.devices.points]]\nname = \"p\"\ntable = \"coil\"\naddress = 0\ntype = \"f32\"",
                "device \"m\" point \"p\"",
            ),
            (
                "device_id = \"b1\"\n[simulation]\nenabled = true\n[[modbus]]\nid = \"l\"\n[modbus.transport]\nkind = \"tcp\"\naddress = \"127.0.0.1:502\"\n[[modbus.devices]]\nid = \"m\"\nunit = 1\naddress_base = 0\n[[modbus.devices.points]]\nname = \"lamp\"\ntable = \"discrete_input\"\naddress = 0\ntype = \"bool\"\n[site_io.exit_barrier]\nkind = \"modbus\"\ndevice = \"m\"\npoint = \"lamp\"",
                "site_io.exit_barrier: modbus point m.lamp drives an output, so it needs access = \"rw\"",
            ),
            (
                "device_id = \"b1\"\n[simulation]\nenabled = true\n[site_io.exit_barrier]\nkind = \"modbus\"\ndevice = \"gate\"\npoint = \"open\"",
                "site_io.exit_barrier: no [[modbus]] line has a device \"gate\"",
            ),
        ];
        for (text, needle) in cases {
            let err = EdgeConfig::parse(text).unwrap_err().to_string();
            assert!(err.contains(needle), "{text:?}: {err}");
        }
    }
}
