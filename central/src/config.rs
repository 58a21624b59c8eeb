//! Central's configuration file (TOML). Every field has a safe default, so
//! an empty file runs central on one machine with its embedded broker; a
//! bad file stops central with the file, the field and the problem named.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;
use valeo_sync::mqtt::BrokerConfig;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CentralConfig {
    /// Where the database lives.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    #[serde(default)]
    pub http: HttpConfig,
    /// The broker central's receiver connects to. With the embedded broker
    /// enabled, host and port are taken from its listen address.
    #[serde(default)]
    pub mqtt: BrokerConfig,
    #[serde(default)]
    pub embedded_broker: EmbeddedBrokerConfig,
    /// The edge boxes central accepts records from, with their public keys
    /// (`valeo-edge --config FILE --print-public-key` prints a box's key).
    /// A batch from a device not listed here goes to the dead letters.
    #[serde(default)]
    pub devices: Vec<DeviceEntry>,
    /// A JSON master-data document stored on first start when the database
    /// has none (demos, fresh installations). Afterwards master data is
    /// changed through `PUT /api/v1/master-data`.
    #[serde(default)]
    pub master_data_file: Option<PathBuf>,
    /// The trader and the cash register model, for DSFinV-K exports.
    #[serde(default)]
    pub fiscal: Option<FiscalConfig>,
    /// Logins, sessions, tokens, login throttling and the audit log.
    #[serde(default)]
    pub auth: crate::auth::AuthConfig,
    /// Integration events: MQTT publication, retention, webhook delivery.
    #[serde(default)]
    pub events: crate::events::EventsConfig,
}

/// Master data of the DSFinV-K export that no box knows.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FiscalConfig {
    pub company_name: String,
    pub street: String,
    pub zip: String,
    pub city: String,
    /// ISO 3166 alpha-3, e.g. `DEU`.
    #[serde(default = "default_country")]
    pub country: String,
    #[serde(default)]
    pub tax_number: Option<String>,
    #[serde(default)]
    pub vat_id: Option<String>,
    #[serde(default = "default_register_brand")]
    pub register_brand: String,
    #[serde(default = "default_register_model")]
    pub register_model: String,
}

fn default_country() -> String {
    "DEU".into()
}
fn default_register_brand() -> String {
    "Valeo Edge".into()
}
fn default_register_model() -> String {
    "Weighbridge edge box".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceEntry {
    pub id: String,
    /// ed25519 public key, 64 hex digits.
    pub public_key: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    #[serde(default = "default_http_listen")]
    pub listen: SocketAddr,
    /// Requests taking longer are answered 503; nothing hangs forever.
    #[serde(default = "default_request_timeout_ms")]
    pub request_timeout_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmbeddedBrokerConfig {
    #[serde(default = "default_true")]
    pub enabled: bool,
    #[serde(default = "default_broker_listen")]
    pub listen: SocketAddr,
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Credentials clients must present, `user = "password"`. Required when
    /// `listen` is not a loopback address: there are no default passwords.
    #[serde(default)]
    pub users: std::collections::HashMap<String, String>,
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("data/central")
}
fn default_http_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}
fn default_request_timeout_ms() -> u64 {
    10_000
}
fn default_true() -> bool {
    true
}
fn default_broker_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 1883))
}
fn default_max_connections() -> usize {
    1_000
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: default_http_listen(),
            request_timeout_ms: default_request_timeout_ms(),
        }
    }
}

impl Default for EmbeddedBrokerConfig {
    fn default() -> Self {
        EmbeddedBrokerConfig {
            enabled: true,
            listen: default_broker_listen(),
            max_connections: default_max_connections(),
            users: Default::default(),
        }
    }
}

impl CentralConfig {
    pub fn parse(text: &str) -> anyhow::Result<CentralConfig> {
        let mut config: CentralConfig = toml::from_str(text).map_err(|e| anyhow::anyhow!("{e}"))?;
        config
            .mqtt
            .validate()
            .map_err(|e| anyhow::anyhow!("[mqtt] {e}"))?;
        config
            .auth
            .validate()
            .map_err(|e| anyhow::anyhow!("[auth] {e}"))?;
        config
            .events
            .validate()
            .map_err(|e| anyhow::anyhow!("[events] {e}"))?;
        if config.http.request_timeout_ms == 0 {
            anyhow::bail!("[http] request_timeout_ms must be greater than 0");
        }
        let mut seen = std::collections::HashSet::new();
        for device in &config.devices {
            valeo_sync::wire::validate_device_id(&device.id)
                .map_err(|e| anyhow::anyhow!("[[devices]] id: {e}"))?;
            valeo_sync::identity::validate_public_key(&device.public_key)
                .map_err(|e| anyhow::anyhow!("[[devices]] {:?}: {e}", device.id))?;
            if !seen.insert(device.id.as_str()) {
                anyhow::bail!("[[devices]] id {:?} is listed twice", device.id);
            }
        }
        let broker = &config.embedded_broker;
        if broker.enabled {
            if !broker.listen.ip().is_loopback() && broker.users.is_empty() {
                anyhow::bail!(
                    "[embedded_broker] listen = {} is reachable from the network but no users are \
                     configured; add [embedded_broker.users] or listen on 127.0.0.1",
                    broker.listen
                );
            }
            if broker.max_connections == 0 {
                anyhow::bail!("[embedded_broker] max_connections must be greater than 0");
            }
            // The receiver talks to the embedded broker over loopback.
            config.mqtt.host = if broker.listen.ip().is_unspecified() {
                "127.0.0.1".to_owned()
            } else {
                broker.listen.ip().to_string()
            };
            config.mqtt.port = broker.listen.port();
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_file_is_a_working_single_machine_setup() {
        let config = CentralConfig::parse("").unwrap();
        assert!(config.embedded_broker.enabled);
        assert_eq!(config.mqtt.port, 1883);
        assert_eq!(config.http.listen.port(), 8080);
    }

    #[test]
    fn the_example_config_parses() {
        let text = include_str!("../../config/central.example.toml");
        CentralConfig::parse(text).unwrap();
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            ("[http]\nlisten = \"nowhere\"", "listen"),
            ("[mqtt]\nkeep_alive_s = 1", "keep_alive_s"),
            ("[embedded_broker]\nlisten = \"0.0.0.0:1883\"", "no users"),
            ("typo_field = 1", "typo_field"),
            (
                "[[devices]]\nid = \"b1\"\npublic_key = \"abc\"",
                "64 hex digits",
            ),
            (
                "[[devices]]\nid = \"b/1\"\npublic_key = \"abc\"",
                "invalid device id",
            ),
        ];
        for (text, needle) in cases {
            let err = CentralConfig::parse(text).unwrap_err().to_string();
            assert!(err.contains(needle), "{text:?}: {err}");
        }
    }
}
