//! The edge uplink: moves records from the outbox to central and applies
//! central's acks.
//!
//! Delivery is at-least-once on the wire and exactly-once in effect: batches
//! are published at QoS 1, but a record only counts as delivered when
//! central's cumulative ack (sent after its commit) covers it. After a
//! reconnect, an ack timeout or a gap reported by central, the uplink
//! rewinds to the last acknowledged seq and resends from SQLite; central
//! drops the duplicates. Memory stays bounded: at most
//! `max_inflight_batches` batches are ever handed to the MQTT client.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::Utc;
use rumqttc::{AsyncClient, QoS, SubscribeFilter};
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, mpsc, watch};
use tokio::time::Instant;

use crate::identity::DeviceKey;
use crate::mqtt::{self, BrokerConfig, LinkEvent};
use crate::outbox::{Outbox, OutboxStats};
use crate::wire::{
    Ack, Batch, MAX_BATCH_BYTES, MAX_BATCH_RECORDS, PROTOCOL_VERSION, Status, topic,
};

/// Tuning of the uplink; every field has a safe default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UplinkConfig {
    #[serde(default = "default_max_batch_records")]
    pub max_batch_records: usize,
    #[serde(default = "default_max_batch_bytes")]
    pub max_batch_bytes: usize,
    #[serde(default = "default_max_inflight_batches")]
    pub max_inflight_batches: usize,
    /// A batch not acknowledged by central within this time is sent again.
    #[serde(default = "default_ack_timeout_ms")]
    pub ack_timeout_ms: u64,
}

fn default_max_batch_records() -> usize {
    500
}
fn default_max_batch_bytes() -> usize {
    512 * 1024
}
fn default_max_inflight_batches() -> usize {
    4
}
fn default_ack_timeout_ms() -> u64 {
    10_000
}

impl Default for UplinkConfig {
    fn default() -> Self {
        UplinkConfig {
            max_batch_records: default_max_batch_records(),
            max_batch_bytes: default_max_batch_bytes(),
            max_inflight_batches: default_max_inflight_batches(),
            ack_timeout_ms: default_ack_timeout_ms(),
        }
    }
}

impl UplinkConfig {
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=MAX_BATCH_RECORDS).contains(&self.max_batch_records) {
            return Err(format!("max_batch_records must be 1..={MAX_BATCH_RECORDS}"));
        }
        if !(1024..=MAX_BATCH_BYTES).contains(&self.max_batch_bytes) {
            return Err(format!("max_batch_bytes must be 1024..={MAX_BATCH_BYTES}"));
        }
        if !(1..=64).contains(&self.max_inflight_batches) {
            return Err("max_inflight_batches must be 1..=64".into());
        }
        if self.ack_timeout_ms < 100 {
            return Err("ack_timeout_ms must be at least 100".into());
        }
        Ok(())
    }
}

/// What the uplink reports for `/health`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct UplinkStatus {
    pub connected: bool,
    pub batches_sent: u64,
    pub records_acked: u64,
    pub resends: u64,
    pub disconnects: u64,
    pub telemetry_sent: u64,
    pub last_error: Option<String>,
}

/// Handle to the running uplink.
#[derive(Debug, Clone)]
pub struct UplinkHandle {
    new_records: Arc<Notify>,
    status: watch::Receiver<UplinkStatus>,
    config: watch::Receiver<Option<Bytes>>,
    commands: Arc<std::sync::Mutex<Option<mpsc::Receiver<Bytes>>>>,
}

impl UplinkHandle {
    /// Tells the uplink that the outbox has new records, so it does not wait
    /// for its next tick.
    pub fn notify_new_records(&self) {
        self.new_records.notify_one();
    }

    pub fn status(&self) -> UplinkStatus {
        self.status.borrow().clone()
    }

    /// The latest payload central published on the device's config topic
    /// (retained), as received; `None` until one arrives.
    pub fn config(&self) -> watch::Receiver<Option<Bytes>> {
        self.config.clone()
    }

    /// The payloads central published on the device's commands topic, as
    /// received; the first caller gets the receiver, later ones `None`.
    pub fn take_commands(&self) -> Option<mpsc::Receiver<Bytes>> {
        self.commands
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
    }
}

/// Commands received and not yet taken by the agent; beyond, a command is
/// dropped with a warning (central sees no result and reports it overdue).
pub const COMMAND_QUEUE_CAPACITY: usize = 64;

/// How often the uplink checks ack timeouts and looks for records even
/// without a notification.
const TICK_MS: u64 = 250;

/// Live values per telemetry message.
const TELEMETRY_SAMPLES_PER_MESSAGE: usize = 200;

/// Connects to the broker and starts moving records. `software_version` is
/// reported in the retained status message.
pub fn spawn(
    broker: &BrokerConfig,
    config: UplinkConfig,
    outbox: Outbox,
    key: DeviceKey,
    software_version: &str,
) -> UplinkHandle {
    let device_id = outbox.device_id().to_owned();
    let offline = Status {
        v: PROTOCOL_VERSION,
        online: false,
        version: None,
        backlog_records: None,
    };
    let will = mqtt::offline_will(
        topic::status(&device_id),
        serde_json::to_vec(&offline).unwrap_or_default(),
    );
    let (client, events) = mqtt::connect(broker, &format!("edge-{device_id}"), Some(will));
    let new_records = Arc::new(Notify::new());
    let (status_tx, status) = watch::channel(UplinkStatus::default());
    let (config_tx, config_rx) = watch::channel(None);
    let (commands_tx, commands_rx) = mpsc::channel(COMMAND_QUEUE_CAPACITY);
    let uplink = Uplink {
        config_tx,
        commands_tx,
        config,
        outbox,
        key,
        client,
        status: status_tx,
        version: software_version.to_owned(),
        sent_upto: 0,
        inflight: VecDeque::new(),
        connected: false,
    };
    tokio::spawn(uplink.run(events, Arc::clone(&new_records)));
    UplinkHandle {
        new_records,
        status,
        config: config_rx,
        commands: Arc::new(std::sync::Mutex::new(Some(commands_rx))),
    }
}

struct Uplink {
    config_tx: watch::Sender<Option<Bytes>>,
    commands_tx: mpsc::Sender<Bytes>,
    config: UplinkConfig,
    outbox: Outbox,
    key: DeviceKey,
    client: AsyncClient,
    status: watch::Sender<UplinkStatus>,
    version: String,
    /// Highest seq handed to the MQTT client since the last rewind.
    sent_upto: u64,
    /// Last seq and send time of each batch not yet covered by an ack.
    inflight: VecDeque<(u64, Instant)>,
    connected: bool,
}

impl Uplink {
    async fn run(mut self, mut events: mpsc::Receiver<LinkEvent>, new_records: Arc<Notify>) {
        let mut tick = tokio::time::interval(Duration::from_millis(TICK_MS));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                event = events.recv() => match event {
                    Some(event) => self.on_event(event).await,
                    None => return,
                },
                () = new_records.notified() => {}
                _ = tick.tick() => {
                    self.check_ack_timeout().await;
                    self.send_telemetry().await;
                }
            }
            self.fill_window().await;
        }
    }

    async fn on_event(&mut self, event: LinkEvent) {
        let device_id = self.outbox.device_id().to_owned();
        match event {
            LinkEvent::Connected { session_present } => {
                tracing::info!(
                    session_present,
                    "uplink connected; subscribing to acks, config and commands"
                );
                // One SUBSCRIBE for all, so one SUBACK says all are in place.
                let filters = [
                    topic::ack(&device_id),
                    topic::config(&device_id),
                    topic::commands(&device_id),
                ]
                .map(|path| SubscribeFilter::new(path, QoS::AtLeastOnce));
                if let Err(error) = self.client.try_subscribe_many(filters) {
                    tracing::warn!(%error, "could not queue the subscriptions");
                }
            }
            LinkEvent::Subscribed => {
                // Only now can central's acks reach us; a batch sent earlier
                // could be acked into the void and wait for its ack timeout.
                self.connected = true;
                self.status.send_modify(|s| s.connected = true);
                // Whatever was in flight before may be gone with the old
                // connection; start again from what central has confirmed.
                let stats = self.rewind().await;
                self.publish_status(stats.map(|s| s.pending_records));
            }
            LinkEvent::Disconnected { reason } => {
                if self.connected {
                    self.status.send_modify(|s| s.disconnects += 1);
                }
                self.connected = false;
                self.status.send_modify(|s| {
                    s.connected = false;
                    s.last_error = Some(reason);
                });
            }
            LinkEvent::Message {
                topic: name,
                payload,
            } => {
                if name == topic::config(&device_id) {
                    tracing::info!(bytes = payload.len(), "config received from central");
                    self.config_tx.send_replace(Some(payload));
                    return;
                }
                if name == topic::commands(&device_id) {
                    tracing::info!(bytes = payload.len(), "command received from central");
                    if let Err(error) = self.commands_tx.try_send(payload) {
                        tracing::warn!(%error, "command dropped: {COMMAND_QUEUE_CAPACITY} waiting");
                    }
                    return;
                }
                if name != topic::ack(&device_id) {
                    return;
                }
                match Ack::decode(&payload) {
                    Ok(ack) => self.on_ack(ack).await,
                    Err(error) => tracing::warn!(%error, "ignoring a malformed ack"),
                }
            }
        }
    }

    async fn on_ack(&mut self, ack: Ack) {
        if ack.epoch != self.outbox.epoch() {
            tracing::warn!(epoch = %ack.epoch, "ignoring an ack for another epoch");
            return;
        }
        match self
            .outbox
            .ack_async(ack.epoch.clone(), ack.acked_seq, Utc::now())
            .await
        {
            Ok(newly) => self.status.send_modify(|s| s.records_acked += newly),
            Err(error) => {
                tracing::error!(%error, "could not apply an ack; records stay pending");
                return;
            }
        }
        self.inflight
            .retain(|(last_seq, _)| *last_seq > ack.acked_seq);
        if let Some(from) = ack.resend_from {
            tracing::info!(from, "central reported a gap; resending");
            let stats = self.rewind().await;
            if let Some(stats) = stats
                && from >= 1
                && from <= stats.acked_seq
            {
                // Central lost records it had acknowledged (its database was
                // restored from a backup): replay what this box still keeps.
                tracing::warn!(
                    from,
                    acked_seq = stats.acked_seq,
                    "central asks for records it had acknowledged; replaying them"
                );
                self.sent_upto = from - 1;
            }
        }
    }

    async fn check_ack_timeout(&mut self) {
        let timeout = Duration::from_millis(self.config.ack_timeout_ms);
        let timed_out = self
            .inflight
            .front()
            .is_some_and(|(_, sent_at)| sent_at.elapsed() >= timeout);
        if timed_out {
            tracing::warn!(
                ack_timeout_ms = self.config.ack_timeout_ms,
                "no ack from central; resending"
            );
            self.rewind().await;
        }
    }

    /// Forget what is in flight and continue after the acknowledged seq.
    async fn rewind(&mut self) -> Option<OutboxStats> {
        let outbox = self.outbox.clone();
        let stats = match tokio::task::spawn_blocking(move || outbox.stats()).await {
            Ok(Ok(stats)) => stats,
            Ok(Err(error)) => {
                tracing::error!(%error, "cannot read the outbox");
                return None;
            }
            Err(_) => return None,
        };
        if !self.inflight.is_empty() || self.sent_upto > stats.acked_seq {
            self.status.send_modify(|s| s.resends += 1);
        }
        self.inflight.clear();
        self.sent_upto = stats.acked_seq;
        Some(stats)
    }

    /// Sends queued live values at QoS 0 while connected; while offline
    /// they wait in the outbox's bounded telemetry queue.
    async fn send_telemetry(&mut self) {
        if !self.connected {
            return;
        }
        let outbox = self.outbox.clone();
        let samples = match tokio::task::spawn_blocking(move || {
            outbox.take_telemetry(TELEMETRY_SAMPLES_PER_MESSAGE)
        })
        .await
        {
            Ok(Ok(samples)) => samples,
            Ok(Err(error)) => {
                tracing::warn!(%error, "cannot read telemetry");
                return;
            }
            Err(_) => return,
        };
        if samples.is_empty() {
            return;
        }
        let payload = serde_json::to_vec(&samples).unwrap_or_default();
        let topic_name = topic::telemetry(self.outbox.device_id());
        match self
            .client
            .try_publish(topic_name, QoS::AtMostOnce, false, payload)
        {
            Ok(()) => self
                .status
                .send_modify(|s| s.telemetry_sent += samples.len() as u64),
            Err(error) => tracing::debug!(%error, "telemetry dropped: MQTT queue full"),
        }
    }

    /// Publishes batches until the in-flight window is full or the outbox
    /// has nothing more.
    async fn fill_window(&mut self) {
        while self.connected && self.inflight.len() < self.config.max_inflight_batches {
            let outbox = self.outbox.clone();
            let (after, max) = (self.sent_upto, self.config.max_batch_records);
            // Normally `after` is at least the acked seq; below it only while
            // replaying to a central that lost acknowledged records.
            let records =
                match tokio::task::spawn_blocking(move || outbox.stored_after(after, max)).await {
                    Ok(Ok(records)) => records,
                    Ok(Err(error)) => {
                        tracing::error!(%error, "cannot read pending records");
                        self.status
                            .send_modify(|s| s.last_error = Some(error.to_string()));
                        return;
                    }
                    Err(_) => return,
                };
            if records.is_empty() {
                return;
            }
            let batch = self.batch_within_limits(records);
            let last_seq = batch.last_seq();
            let payload = batch.encode();
            let topic_name = topic::records(self.outbox.device_id());
            if let Err(error) =
                self.client
                    .try_publish(topic_name, QoS::AtLeastOnce, false, payload)
            {
                // The client's queue is full: the connection is slow or gone.
                // The records are safe in SQLite; try again on the next tick.
                tracing::debug!(%error, "MQTT request queue full");
                return;
            }
            self.sent_upto = last_seq;
            self.inflight.push_back((last_seq, Instant::now()));
            self.status.send_modify(|s| s.batches_sent += 1);
        }
    }

    /// Cuts records so the encoded batch stays under `max_batch_bytes`
    /// (always at least one record; a single record is bounded by the
    /// outbox's payload limit).
    fn batch_within_limits(&self, mut records: Vec<crate::wire::Record>) -> Batch {
        let mut bytes = 64;
        let mut keep = 0;
        for record in &records {
            let size = serde_json::to_vec(record)
                .map(|v| v.len())
                .unwrap_or(usize::MAX);
            if keep > 0 && bytes + size > self.config.max_batch_bytes {
                break;
            }
            bytes += size + 1;
            keep += 1;
        }
        records.truncate(keep.max(1));
        let mut batch = Batch {
            v: PROTOCOL_VERSION,
            device_id: self.outbox.device_id().to_owned(),
            epoch: self.outbox.epoch().to_owned(),
            records,
            sig: String::new(),
        };
        self.key.sign(&mut batch);
        batch
    }

    /// Publishes the retained online status with the backlog the caller read.
    fn publish_status(&self, backlog: Option<u64>) {
        let status = Status {
            v: PROTOCOL_VERSION,
            online: true,
            version: Some(self.version.clone()),
            backlog_records: backlog,
        };
        let payload = serde_json::to_vec(&status).unwrap_or_default();
        if let Err(error) = self.client.try_publish(
            topic::status(self.outbox.device_id()),
            QoS::AtLeastOnce,
            true,
            payload,
        ) {
            tracing::debug!(%error, "status not published");
        }
    }
}
