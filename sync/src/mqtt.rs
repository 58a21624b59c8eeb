//! The MQTT connection: options, and the one task that owns a rumqttc event
//! loop. Both the edge uplink and the central receiver use it.
//!
//! rumqttc reconnects the moment `poll` is called after an error, keeps
//! unacknowledged publishes only in memory, and drops them when the broker
//! has lost the session. So this task only moves packets: it adds its own
//! backoff with jitter and reports connection changes and incoming messages
//! over a bounded channel. What must survive lives in SQLite, not here.

use std::time::Duration;

use rand::Rng;
use rumqttc::{AsyncClient, Event, EventLoop, LastWill, MqttOptions, Packet, QoS};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

/// Where and how to reach the broker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrokerConfig {
    #[serde(default = "default_host")]
    pub host: String,
    #[serde(default = "default_port")]
    pub port: u16,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    /// MQTT keep-alive; a half-open connection is noticed after about twice this.
    #[serde(default = "default_keep_alive_s")]
    pub keep_alive_s: u64,
    #[serde(default = "default_backoff_min_ms")]
    pub reconnect_backoff_min_ms: u64,
    #[serde(default = "default_backoff_max_ms")]
    pub reconnect_backoff_max_ms: u64,
}

fn default_host() -> String {
    "127.0.0.1".to_owned()
}
fn default_port() -> u16 {
    1883
}
fn default_keep_alive_s() -> u64 {
    20
}
fn default_backoff_min_ms() -> u64 {
    250
}
fn default_backoff_max_ms() -> u64 {
    30_000
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            host: default_host(),
            port: default_port(),
            username: None,
            password: None,
            keep_alive_s: default_keep_alive_s(),
            reconnect_backoff_min_ms: default_backoff_min_ms(),
            reconnect_backoff_max_ms: default_backoff_max_ms(),
        }
    }
}

impl BrokerConfig {
    /// Checks the values a broker connection cannot work with.
    pub fn validate(&self) -> Result<(), String> {
        if self.host.trim().is_empty() {
            return Err("host must not be empty".into());
        }
        if !(5..=300).contains(&self.keep_alive_s) {
            return Err(format!(
                "keep_alive_s must be 5..=300, got {}",
                self.keep_alive_s
            ));
        }
        if self.reconnect_backoff_min_ms == 0
            || self.reconnect_backoff_min_ms > self.reconnect_backoff_max_ms
        {
            return Err(
                "reconnect_backoff_min_ms must be > 0 and <= reconnect_backoff_max_ms".into(),
            );
        }
        if self.username.is_some() != self.password.is_some() {
            return Err("username and password must be given together".into());
        }
        Ok(())
    }

    /// rumqttc options for a persistent session: the broker keeps our
    /// subscriptions (and acks addressed to us) while we are away.
    pub(crate) fn options(&self, client_id: &str, will: Option<LastWill>) -> MqttOptions {
        let mut options = MqttOptions::new(client_id, &self.host, self.port);
        options
            .set_keep_alive(Duration::from_secs(self.keep_alive_s))
            .set_clean_session(false)
            .set_max_packet_size(
                crate::wire::MAX_BATCH_BYTES + 4096,
                crate::wire::MAX_BATCH_BYTES + 4096,
            )
            .set_inflight(32);
        if let (Some(user), Some(pass)) = (&self.username, &self.password) {
            options.set_credentials(user, pass);
        }
        if let Some(will) = will {
            options.set_last_will(will);
        }
        options
    }
}

/// What the event-loop task reports.
#[derive(Debug)]
pub(crate) enum LinkEvent {
    /// CONNACK received; `session_present` tells whether the broker kept our session.
    Connected {
        session_present: bool,
    },
    /// SUBACK received: the broker now routes our subscription to us.
    Subscribed,
    Disconnected {
        reason: String,
    },
    Message {
        topic: String,
        payload: bytes::Bytes,
    },
}

/// Capacity of the request channel into rumqttc. Small on purpose: records
/// wait in SQLite, not in memory.
pub(crate) const REQUEST_CHANNEL_CAPACITY: usize = 16;

/// Capacity of the event channel out of the event-loop task.
pub(crate) const EVENT_CHANNEL_CAPACITY: usize = 64;

/// Creates the client and spawns the task that owns its event loop.
pub(crate) fn connect(
    config: &BrokerConfig,
    client_id: &str,
    will: Option<LastWill>,
) -> (AsyncClient, mpsc::Receiver<LinkEvent>) {
    let (client, eventloop) =
        AsyncClient::new(config.options(client_id, will), REQUEST_CHANNEL_CAPACITY);
    let (tx, rx) = mpsc::channel(EVENT_CHANNEL_CAPACITY);
    let backoff = Backoff::new(
        config.reconnect_backoff_min_ms,
        config.reconnect_backoff_max_ms,
    );
    tokio::spawn(own_event_loop(eventloop, tx, backoff));
    (client, rx)
}

async fn own_event_loop(
    mut eventloop: EventLoop,
    tx: mpsc::Sender<LinkEvent>,
    mut backoff: Backoff,
) {
    loop {
        let event = match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(connack))) => {
                backoff.reset();
                LinkEvent::Connected {
                    session_present: connack.session_present,
                }
            }
            Ok(Event::Incoming(Packet::SubAck(_))) => LinkEvent::Subscribed,
            Ok(Event::Incoming(Packet::Publish(publish))) => LinkEvent::Message {
                topic: publish.topic,
                payload: publish.payload,
            },
            Ok(_) => continue,
            Err(error) => {
                let delay = backoff.next_delay();
                tracing::warn!(%error, delay_ms = delay.as_millis() as u64, "MQTT connection lost, reconnecting");
                if tx
                    .send(LinkEvent::Disconnected {
                        reason: error.to_string(),
                    })
                    .await
                    .is_err()
                {
                    return;
                }
                tokio::time::sleep(delay).await;
                continue;
            }
        };
        if tx.send(event).await.is_err() {
            // The consumer is gone: nobody needs this connection any more.
            return;
        }
    }
}

/// A last will that marks `topic` offline (retained) when the connection dies.
pub(crate) fn offline_will(topic: String, payload: Vec<u8>) -> LastWill {
    LastWill::new(topic, payload, QoS::AtLeastOnce, true)
}

/// Exponential backoff with full jitter, capped.
#[derive(Debug, Clone)]
pub struct Backoff {
    min_ms: u64,
    max_ms: u64,
    attempt: u32,
}

impl Backoff {
    pub fn new(min_ms: u64, max_ms: u64) -> Backoff {
        Backoff {
            min_ms: min_ms.max(1),
            max_ms: max_ms.max(min_ms.max(1)),
            attempt: 0,
        }
    }

    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// The next delay: uniformly random in `[min, min * 2^attempt]`, never above `max`.
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self
            .min_ms
            .saturating_mul(1u64 << self.attempt.min(20))
            .min(self.max_ms);
        self.attempt = self.attempt.saturating_add(1);
        Duration::from_millis(rand::rng().random_range(self.min_ms..=ceiling))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_but_stays_within_bounds() {
        let mut backoff = Backoff::new(100, 1_000);
        for _ in 0..50 {
            let delay = backoff.next_delay().as_millis() as u64;
            assert!((100..=1_000).contains(&delay), "{delay}");
        }
        backoff.reset();
        assert_eq!(
            backoff.next_delay().as_millis(),
            100,
            "first delay after reset is the minimum"
        );
    }

    #[test]
    fn broker_config_validation_names_the_problem() {
        let bad = BrokerConfig {
            keep_alive_s: 1,
            ..BrokerConfig::default()
        };
        assert!(bad.validate().unwrap_err().contains("keep_alive_s"));
        let bad = BrokerConfig {
            username: Some("u".into()),
            ..BrokerConfig::default()
        };
        assert!(bad.validate().unwrap_err().contains("together"));
        BrokerConfig::default().validate().unwrap();
    }
}
