//! Integration events for the rest of the ERP: the `[events]` settings, the
//! event kinds, the webhook signature, and the tasks that publish the
//! outbox on MQTT ([`mqtt`]), deliver it to webhooks ([`webhooks`]) and keep
//! it bounded ([`retention`]). The SQL is in `store::events`; the contract
//! for consumers is `docs/events.md`.

pub mod mqtt;
pub mod webhooks;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;
use tokio::sync::Notify;
use valeo_sync::receiver::DevicePublisher;

use crate::store::Store;

/// Every kind central emits; a webhook may ask for these or `*`.
pub const KINDS: [&str; 8] = [
    "weighing.completed",
    "weighing.cancelled",
    "delivery_note.created",
    "delivery_note.cancelled",
    "master_data.changed",
    "stock.corrected",
    "device.online",
    "device.offline",
];

/// Whether `kind` is one central emits.
pub fn is_kind(kind: &str) -> bool {
    KINDS.contains(&kind)
}

/// The `[events]` table. Every field has a default.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsConfig {
    /// Publish every event on `valeo/v1/events/{kind}`.
    #[serde(default = "default_true")]
    pub publish_mqtt: bool,
    /// Events older than this are deleted (unless a webhook still needs them).
    #[serde(default = "default_retention_days")]
    pub retention_days: u32,
    /// At most this many events are kept (unless a webhook still needs them).
    #[serde(default = "default_max_events")]
    pub max_events: u64,
    /// A webhook answering later than this has failed the attempt.
    #[serde(default = "default_request_timeout_ms")]
    pub request_timeout_ms: u64,
    /// Wait after the first failed attempt; doubles with every further one.
    #[serde(default = "default_initial_backoff_ms")]
    pub initial_backoff_ms: u64,
    #[serde(default = "default_max_backoff_ms")]
    pub max_backoff_ms: u64,
    /// Attempts per delivery before it is `failed`.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// Webhook requests in flight at once, over all webhooks.
    #[serde(default = "default_max_concurrent_deliveries")]
    pub max_concurrent_deliveries: usize,
    #[serde(default = "default_max_webhooks")]
    pub max_webhooks: u32,
}

fn default_true() -> bool {
    true
}
fn default_retention_days() -> u32 {
    30
}
fn default_max_events() -> u64 {
    100_000
}
fn default_request_timeout_ms() -> u64 {
    5_000
}
fn default_initial_backoff_ms() -> u64 {
    1_000
}
fn default_max_backoff_ms() -> u64 {
    600_000
}
fn default_max_attempts() -> u32 {
    12
}
fn default_max_concurrent_deliveries() -> usize {
    8
}
fn default_max_webhooks() -> u32 {
    50
}

impl Default for EventsConfig {
    fn default() -> Self {
        EventsConfig {
            publish_mqtt: true,
            retention_days: default_retention_days(),
            max_events: default_max_events(),
            request_timeout_ms: default_request_timeout_ms(),
            initial_backoff_ms: default_initial_backoff_ms(),
            max_backoff_ms: default_max_backoff_ms(),
            max_attempts: default_max_attempts(),
            max_concurrent_deliveries: default_max_concurrent_deliveries(),
            max_webhooks: default_max_webhooks(),
        }
    }
}

impl EventsConfig {
    /// Checks the ranges; the message names the field.
    pub fn validate(&self) -> Result<(), String> {
        fn within<T: PartialOrd + std::fmt::Display + Copy>(
            name: &str,
            value: T,
            min: T,
            max: T,
        ) -> Result<(), String> {
            if value < min || value > max {
                return Err(format!("{name} must be {min}..={max}, got {value}"));
            }
            Ok(())
        }
        within("retention_days", self.retention_days, 1, 3_650)?;
        within("max_events", self.max_events, 100, 100_000_000)?;
        within("request_timeout_ms", self.request_timeout_ms, 100, 60_000)?;
        within("max_backoff_ms", self.max_backoff_ms, 1, 86_400_000)?;
        within(
            "initial_backoff_ms",
            self.initial_backoff_ms,
            1,
            self.max_backoff_ms,
        )?;
        within("max_attempts", self.max_attempts, 1, 100)?;
        within(
            "max_concurrent_deliveries",
            self.max_concurrent_deliveries,
            1,
            256,
        )?;
        within("max_webhooks", self.max_webhooks, 1, 1_000)?;
        Ok(())
    }
}

/// Where the dispatchers get the time from; tests use a manual one.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> DateTime<Utc>;
}

/// The system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// The `Valeo-Signature` header of a webhook request sent at unix time
/// `timestamp_s` with `body`: `t=<timestamp_s>,v1=<hex HMAC-SHA256>`, keyed
/// with the secret's text (its 64 hex characters as ASCII) over
/// `"<timestamp_s>.<body>"`.
pub fn signature_header(secret: &str, timestamp_s: i64, body: &[u8]) -> String {
    let mac = signed_mac(secret, timestamp_s, body)
        .finalize()
        .into_bytes();
    format!("t={timestamp_s},v1={}", hex::encode(mac))
}

fn signed_mac(secret: &str, timestamp_s: i64, body: &[u8]) -> Hmac<Sha256> {
    // HMAC takes keys of any length, so this cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
    mac.update(timestamp_s.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// Why a webhook signature was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the signature header is not of the form t=<seconds>,v1=<hex>")]
    Malformed,
    #[error("the signature is {age_s} s away from now, more than the tolerance")]
    Stale { age_s: i64 },
    #[error("the signature does not match the body")]
    Mismatch,
}

/// Checks a `Valeo-Signature` header as a receiver should: the MAC over the
/// exact body bytes, compared in constant time, and a timestamp within
/// `tolerance_s` of `now_s` against replays.
pub fn verify_signature(
    secret: &str,
    header: &str,
    body: &[u8],
    now_s: i64,
    tolerance_s: i64,
) -> Result<(), SignatureError> {
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", value)) => timestamp = value.parse::<i64>().ok(),
            Some(("v1", value)) => signatures.push(value),
            _ => {}
        }
    }
    let Some(timestamp) = timestamp else {
        return Err(SignatureError::Malformed);
    };
    let age_s = now_s.saturating_sub(timestamp);
    if age_s.saturating_abs() > tolerance_s {
        return Err(SignatureError::Stale { age_s });
    }
    let matches = signatures.iter().any(|signature| {
        hex::decode(signature).is_ok_and(|bytes| {
            signed_mac(secret, timestamp, body)
                .verify_slice(&bytes)
                .is_ok()
        })
    });
    if matches {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

/// The wait after `attempts` failed attempts (1 or more): the initial
/// backoff doubled per further attempt, capped, then shortened by up to a
/// half by `jitter` (0 ≤ jitter < 1), so receivers coming back are not hit
/// by every sender at once.
pub fn backoff_delay_ms(config: &EventsConfig, attempts: u32, jitter: f64) -> u64 {
    let doublings = attempts.saturating_sub(1).min(40);
    let base = config
        .initial_backoff_ms
        .saturating_mul(1u64 << doublings)
        .min(config.max_backoff_ms);
    let cut = (base as f64 * jitter.clamp(0.0, 1.0) / 2.0) as u64;
    base.saturating_sub(cut).max(1)
}

/// A fresh webhook secret: 32 random bytes as 64 hex characters.
pub fn new_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::Rng::fill(&mut rand::rng(), &mut bytes);
    hex::encode(bytes)
}

/// What the API needs of the running event tasks. Cheap to clone.
#[derive(Debug, Clone)]
pub struct EventsHandle {
    /// Wakes the webhook dispatcher after a change through the API.
    pub wake: Arc<Notify>,
    pub config: Arc<EventsConfig>,
}

impl EventsHandle {
    /// A handle whose dispatcher is not running (tests of the API).
    pub fn detached(config: EventsConfig) -> EventsHandle {
        EventsHandle {
            wake: Arc::new(Notify::new()),
            config: Arc::new(config),
        }
    }
}

/// Starts publishing on MQTT (if configured), delivering to webhooks and
/// pruning the outbox.
pub fn spawn(
    store: &Store,
    publisher: &DevicePublisher,
    config: &EventsConfig,
) -> anyhow::Result<EventsHandle> {
    let handle = EventsHandle::detached(config.clone());
    if config.publish_mqtt {
        tokio::spawn(mqtt::run(store.clone(), publisher.clone()));
    }
    let transport = webhooks::ReqwestTransport::new()
        .map_err(|e| anyhow::anyhow!("cannot create the webhook HTTP client: {e}"))?;
    let dispatcher = webhooks::Dispatcher::new(
        store.clone(),
        Arc::new(transport),
        Arc::new(SystemClock),
        config.clone(),
        Arc::clone(&handle.wake),
    );
    tokio::spawn(dispatcher.run());
    tokio::spawn(retention::run(
        store.clone(),
        Arc::new(SystemClock),
        config.clone(),
    ));
    Ok(handle)
}

/// Keeps the outbox within `retention_days` and `max_events`.
pub mod retention {
    use std::sync::Arc;
    use std::time::Duration;

    use super::{Clock, EventsConfig};
    use crate::store::Store;

    /// How often old events are deleted.
    pub const PRUNE_INTERVAL_S: u64 = 600;

    /// Prunes now and every [`PRUNE_INTERVAL_S`].
    pub async fn run(store: Store, clock: Arc<dyn Clock>, config: EventsConfig) {
        let mut tick = tokio::time::interval(Duration::from_secs(PRUNE_INTERVAL_S));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let (store, now) = (store.clone(), clock.now());
            let (days, max) = (config.retention_days, config.max_events);
            match tokio::task::spawn_blocking(move || store.prune_events(now, days, max)).await {
                Ok(Ok(pruned)) if pruned.events > 0 => {
                    tracing::info!(
                        events = pruned.events,
                        deliveries = pruned.deliveries,
                        "old integration events deleted"
                    );
                }
                Ok(Ok(_)) => {}
                Ok(Err(error)) => tracing::error!(%error, "integration events not pruned"),
                Err(error) => tracing::error!(%error, "integration events not pruned"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_matches_a_fixed_vector() {
        // Computed independently with Python's hmac module.
        let secret = "5e6f0c1a2b3d4e5f60718293a4b5c6d7e8f90112233445566778899aabbccdde";
        let body = br#"{"id":42,"kind":"weighing.completed","subject":"17","occurred_at":"2026-03-02T08:15:00.000Z","data":{"net":25020}}"#;
        let header = signature_header(secret, 1_772_439_300, body);
        assert_eq!(
            header,
            "t=1772439300,v1=5ffa12755877ed6e7fc368585a06e5d5192858e5e8dab3f2c5d62027e15b3643"
        );
        verify_signature(secret, &header, body, 1_772_439_300 + 60, 300).unwrap();
    }

    #[test]
    fn a_wrong_body_secret_time_or_header_is_refused() {
        let secret = "00".repeat(32);
        let header = signature_header(&secret, 1_000, b"{}");
        let cases: [(&str, &str, &[u8], i64, SignatureError); 5] = [
            (&secret, &header, b"{ }", 1_000, SignatureError::Mismatch),
            ("11", &header, b"{}", 1_000, SignatureError::Mismatch),
            (
                &secret,
                &header,
                b"{}",
                1_301,
                SignatureError::Stale { age_s: 301 },
            ),
            (&secret, "v1=abc", b"{}", 1_000, SignatureError::Malformed),
            (
                &secret,
                "t=1000,v1=zz",
                b"{}",
                1_000,
                SignatureError::Mismatch,
            ),
        ];
        for (secret, header, body, now, expected) in cases {
            assert_eq!(
                verify_signature(secret, header, body, now, 300),
                Err(expected.clone()),
                "{header} at {now}"
            );
        }
    }

    #[test]
    fn backoff_doubles_up_to_its_cap_and_jitter_only_shortens_it() {
        let config = EventsConfig::default();
        let schedule: Vec<u64> = (1..=12)
            .map(|n| backoff_delay_ms(&config, n, 0.0))
            .collect();
        assert_eq!(
            schedule,
            [
                1_000, 2_000, 4_000, 8_000, 16_000, 32_000, 64_000, 128_000, 256_000, 512_000,
                600_000, 600_000
            ]
        );
        assert_eq!(backoff_delay_ms(&config, 1_000, 0.0), 600_000);
        for attempts in 1..=12 {
            let base = backoff_delay_ms(&config, attempts, 0.0);
            for jitter in [0.0, 0.25, 0.5, 0.999] {
                let delay = backoff_delay_ms(&config, attempts, jitter);
                assert!(delay <= base && delay >= base / 2, "{attempts} {jitter}");
            }
        }
    }

    #[test]
    fn config_errors_name_the_field() {
        let cases = [
            ("retention_days = 0", "retention_days"),
            ("max_events = 1", "max_events"),
            ("request_timeout_ms = 0", "request_timeout_ms"),
            (
                "initial_backoff_ms = 5000\nmax_backoff_ms = 1000",
                "initial_backoff_ms",
            ),
            ("max_attempts = 0", "max_attempts"),
            ("max_concurrent_deliveries = 0", "max_concurrent_deliveries"),
            ("max_webhooks = 0", "max_webhooks"),
        ];
        for (text, field) in cases {
            let config: EventsConfig = toml::from_str(text).unwrap();
            let error = config.validate().unwrap_err();
            assert!(error.starts_with(field), "{text}: {error}");
        }
        let unknown = toml::from_str::<EventsConfig>("max_retries = 3").unwrap_err();
        assert!(unknown.to_string().contains("max_retries"), "{unknown}");
        let defaults: EventsConfig = toml::from_str("").unwrap();
        assert_eq!(defaults, EventsConfig::default());
        defaults.validate().unwrap();
    }

    #[test]
    fn secrets_are_random_hex() {
        let (a, b) = (new_secret(), new_secret());
        assert_eq!(a.len(), 64);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}
