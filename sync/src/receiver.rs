//! The central receiver: takes batches off the broker, checks them against
//! the wire contract, hands them to a [`BatchSink`] that commits them, and
//! only then publishes the cumulative ack.
//!
//! A malformed or forged message is logged with its reason, counted, and
//! never acknowledged; the receiver keeps running. What a record means is
//! the sink's business: this module knows envelopes, not weighings.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use bytes::Bytes;
use rumqttc::{AsyncClient, QoS};
use serde::Serialize;
use tokio::sync::mpsc;

use crate::mqtt::{self, BrokerConfig, LinkEvent};
use crate::wire::{Ack, Batch, PROTOCOL_VERSION, topic};

/// The result of committing one batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CommitOutcome {
    /// Every record of the batch's epoch up to here is committed.
    pub acked_seq: u64,
    /// Set when the batch did not continue the stored chain: the box should
    /// resend from here.
    pub resend_from: Option<u64>,
    pub inserted: u64,
    pub duplicates: u64,
}

/// Why a message was not accepted; the dead-letter category.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectReason {
    Malformed,
    TooLarge,
    UnsupportedVersion,
    UnknownDevice,
    BadSignature,
    IdentityMismatch,
    /// A record's hash or link is wrong, inside the batch or against the
    /// stored chain.
    ChainBreak,
    /// A seq already stored with another hash.
    Conflict,
}

impl RejectReason {
    pub const ALL: [RejectReason; 8] = [
        RejectReason::Malformed,
        RejectReason::TooLarge,
        RejectReason::UnsupportedVersion,
        RejectReason::UnknownDevice,
        RejectReason::BadSignature,
        RejectReason::IdentityMismatch,
        RejectReason::ChainBreak,
        RejectReason::Conflict,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::Malformed => "malformed",
            RejectReason::TooLarge => "too_large",
            RejectReason::UnsupportedVersion => "unsupported_version",
            RejectReason::UnknownDevice => "unknown_device",
            RejectReason::BadSignature => "bad_signature",
            RejectReason::IdentityMismatch => "identity_mismatch",
            RejectReason::ChainBreak => "chain_break",
            RejectReason::Conflict => "conflict",
        }
    }
}

/// A message that was not accepted, kept for an operator to look at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub topic: String,
    /// The device the topic names, if it names one.
    pub device_id: Option<String>,
    pub reason: RejectReason,
    pub detail: String,
    pub payload_bytes: usize,
    /// The first bytes of the payload, lossily as text.
    pub payload_excerpt: String,
}

/// How much of a rejected payload a dead letter keeps.
pub const DEAD_LETTER_EXCERPT_BYTES: usize = 1024;

/// A sink refused a batch or failed to store it.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The batch is not acceptable (unknown device, bad signature, chain
    /// break, conflict). It is not acknowledged and goes to the dead letters.
    #[error("batch rejected ({}): {detail}", reason.as_str())]
    Rejected {
        reason: RejectReason,
        detail: String,
    },
    /// Storage failed; nothing was committed, the box will resend.
    #[error("storage failed: {0}")]
    Storage(String),
}

/// Where batches go. `commit` MUST verify the batch's signature against the
/// device's registered key, and MUST be durable and idempotent when it
/// returns: the ack is published right after it.
pub trait BatchSink: Send + Sync + 'static {
    fn commit(&self, batch: &Batch) -> Result<CommitOutcome, SinkError>;
    /// Keeps a rejected message; failures are the sink's to log.
    fn dead_letter(&self, letter: DeadLetter);
    /// A message on a device's telemetry topic (QoS 0, best effort), as
    /// received: the sink decides what to keep. Called on the receiver's
    /// task, so it must not block.
    fn telemetry(&self, device_id: &str, payload: &[u8]) {
        let _ = (device_id, payload);
    }
}

/// Counters for `/health` and metrics.
#[derive(Debug, Default)]
pub struct ReceiverCounters {
    connected: AtomicBool,
    batches_committed: AtomicU64,
    records_inserted: AtomicU64,
    records_duplicate: AtomicU64,
    messages_malformed: AtomicU64,
    batches_rejected: AtomicU64,
    storage_errors: AtomicU64,
}

/// A snapshot of [`ReceiverCounters`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ReceiverStats {
    pub connected: bool,
    pub batches_committed: u64,
    pub records_inserted: u64,
    pub records_duplicate: u64,
    pub messages_malformed: u64,
    pub batches_rejected: u64,
    pub storage_errors: u64,
}

impl ReceiverCounters {
    pub fn snapshot(&self) -> ReceiverStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        ReceiverStats {
            connected: self.connected.load(Ordering::Relaxed),
            batches_committed: get(&self.batches_committed),
            records_inserted: get(&self.records_inserted),
            records_duplicate: get(&self.records_duplicate),
            messages_malformed: get(&self.messages_malformed),
            batches_rejected: get(&self.batches_rejected),
            storage_errors: get(&self.storage_errors),
        }
    }
}

/// Connects to the broker as `client_id`, subscribes to every device's
/// records, and serves until the process ends.
pub fn spawn(
    broker: &BrokerConfig,
    client_id: &str,
    sink: Arc<dyn BatchSink>,
) -> Arc<ReceiverCounters> {
    spawn_with_config(broker, client_id, sink).0
}

/// Config documents and commands waiting to be handed to the receiver task.
const OUTGOING_QUEUE_CAPACITY: usize = 1024;

/// Commands the receiver holds while the broker is unreachable or the MQTT
/// client's queue is full; beyond, the oldest is dropped (it would expire).
pub const MAX_QUEUED_COMMANDS: usize = 1024;

/// What central sends to one device.
#[derive(Debug)]
enum Outgoing {
    Config(String, Bytes),
    Command(String, Bytes),
}

/// Sends devices their configuration (retained, on their config topic) and
/// commands through the receiver's connection. Cheap to clone.
#[derive(Debug, Clone)]
pub struct DevicePublisher {
    tx: mpsc::Sender<Outgoing>,
}

impl DevicePublisher {
    /// Queues `payload` as `device_id`'s config. The newest document per
    /// device wins; it is published again after every reconnect, so a
    /// broker that lost its retained messages gets it back.
    pub async fn publish(&self, device_id: &str, payload: Bytes) -> Result<(), ReceiverGone> {
        self.tx
            .send(Outgoing::Config(device_id.to_owned(), payload))
            .await
            .map_err(|_| ReceiverGone)
    }

    /// Queues a command for `device_id` (QoS 1, not retained). It is held
    /// while the broker is unreachable; commands carry their own expiry.
    pub async fn command(&self, device_id: &str, payload: Bytes) -> Result<(), ReceiverGone> {
        self.tx
            .send(Outgoing::Command(device_id.to_owned(), payload))
            .await
            .map_err(|_| ReceiverGone)
    }
}

/// The receiver task has stopped.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the MQTT receiver has stopped")]
pub struct ReceiverGone;

/// [`spawn`], plus a handle to publish device configs and commands on the
/// same connection (one task owns the MQTT event loop).
pub fn spawn_with_config(
    broker: &BrokerConfig,
    client_id: &str,
    sink: Arc<dyn BatchSink>,
) -> (Arc<ReceiverCounters>, DevicePublisher) {
    let (client, events) = mqtt::connect(broker, client_id, None);
    let counters = Arc::new(ReceiverCounters::default());
    let (tx, outgoing) = mpsc::channel(OUTGOING_QUEUE_CAPACITY);
    tokio::spawn(run(client, events, sink, Arc::clone(&counters), outgoing));
    (counters, DevicePublisher { tx })
}

/// The newest config per device and which of them the broker has not got,
/// and the commands not yet handed to the MQTT client.
#[derive(Debug, Default)]
struct Configs {
    latest: HashMap<String, Bytes>,
    unsent: HashSet<String>,
    commands: std::collections::VecDeque<(String, Bytes)>,
}

impl Configs {
    fn queue(&mut self, outgoing: Outgoing) {
        match outgoing {
            Outgoing::Config(device_id, payload) => {
                self.unsent.insert(device_id.clone());
                self.latest.insert(device_id, payload);
            }
            Outgoing::Command(device_id, payload) => {
                if self.commands.len() >= MAX_QUEUED_COMMANDS {
                    tracing::warn!(
                        "{MAX_QUEUED_COMMANDS} commands waiting for the broker; dropping the oldest"
                    );
                    self.commands.pop_front();
                }
                self.commands.push_back((device_id, payload));
            }
        }
    }

    /// Queues unsent configs and commands without waiting; what does not fit stays.
    fn flush(&mut self, client: &AsyncClient, connected: bool) {
        if !connected {
            return;
        }
        while let Some((device_id, payload)) = self.commands.front() {
            match client.try_publish(
                topic::commands(device_id),
                QoS::AtLeastOnce,
                false,
                payload.clone(),
            ) {
                Ok(()) => {
                    self.commands.pop_front();
                }
                Err(_) => return,
            }
        }
        let devices: Vec<String> = self.unsent.iter().cloned().collect();
        for device_id in devices {
            let Some(payload) = self.latest.get(&device_id) else {
                self.unsent.remove(&device_id);
                continue;
            };
            match client.try_publish(
                topic::config(&device_id),
                QoS::AtLeastOnce,
                true,
                payload.clone(),
            ) {
                Ok(()) => {
                    self.unsent.remove(&device_id);
                }
                Err(_) => return,
            }
        }
    }
}

/// How often acks that could not be queued are tried again.
const ACK_RETRY_MS: u64 = 100;

async fn run(
    client: AsyncClient,
    mut events: mpsc::Receiver<LinkEvent>,
    sink: Arc<dyn BatchSink>,
    counters: Arc<ReceiverCounters>,
    mut outgoing: mpsc::Receiver<Outgoing>,
) {
    let mut configs = Configs::default();
    let mut connected = false;
    // Acks waiting for room in the MQTT client's queue, newest per device:
    // acks are cumulative, so a newer one replaces an older one, and this
    // map never holds more than one entry per device. Never awaiting the
    // client here matters: the event-loop task may itself be waiting for us
    // to take its next event, and awaiting it back would deadlock.
    let mut pending_acks: HashMap<String, Ack> = HashMap::new();
    let mut retry = tokio::time::interval(std::time::Duration::from_millis(ACK_RETRY_MS));
    retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let event = tokio::select! {
            event = events.recv() => match event {
                Some(event) => event,
                None => return,
            },
            _ = retry.tick() => {
                flush_acks(&client, &mut pending_acks);
                configs.flush(&client, connected);
                continue;
            }
            Some(message) = outgoing.recv() => {
                configs.queue(message);
                configs.flush(&client, connected);
                continue;
            }
        };
        match event {
            LinkEvent::Connected { .. } => {
                counters.connected.store(true, Ordering::Relaxed);
                connected = true;
                configs.unsent = configs.latest.keys().cloned().collect();
                let filters = [
                    rumqttc::SubscribeFilter::new(topic::ALL_RECORDS.into(), QoS::AtLeastOnce),
                    rumqttc::SubscribeFilter::new(topic::ALL_TELEMETRY.into(), QoS::AtMostOnce),
                ];
                if let Err(error) = client.try_subscribe_many(filters) {
                    tracing::error!(%error, "cannot subscribe to records and telemetry");
                }
            }
            LinkEvent::Disconnected { .. } => {
                counters.connected.store(false, Ordering::Relaxed);
                connected = false;
            }
            LinkEvent::Subscribed => {}
            LinkEvent::Message {
                topic: name,
                payload,
            } => {
                if let Some(device_id) = topic::device_of(&name, "telemetry") {
                    sink.telemetry(device_id, &payload);
                } else if let Some((device_id, ack)) =
                    handle_message(&name, &payload, &sink, &counters).await
                {
                    pending_acks.insert(device_id, ack);
                }
            }
        }
        flush_acks(&client, &mut pending_acks);
        configs.flush(&client, connected);
    }
}

/// Queues pending acks without waiting; what does not fit stays for later.
fn flush_acks(client: &AsyncClient, pending: &mut HashMap<String, Ack>) {
    let devices: Vec<String> = pending.keys().cloned().collect();
    for device_id in devices {
        let Some(ack) = pending.get(&device_id) else {
            continue;
        };
        match client.try_publish(
            topic::ack(&device_id),
            QoS::AtLeastOnce,
            false,
            ack.encode(),
        ) {
            Ok(()) => {
                pending.remove(&device_id);
            }
            // Full queue: try again on the next event or tick.
            Err(_) => return,
        }
    }
}

async fn dead_letter(
    sink: &Arc<dyn BatchSink>,
    topic_name: &str,
    payload: &[u8],
    reason: RejectReason,
    detail: String,
) {
    let excerpt = &payload[..payload.len().min(DEAD_LETTER_EXCERPT_BYTES)];
    let letter = DeadLetter {
        topic: topic_name.to_owned(),
        device_id: topic::device_of(topic_name, "records").map(str::to_owned),
        reason,
        detail,
        payload_bytes: payload.len(),
        payload_excerpt: String::from_utf8_lossy(excerpt).into_owned(),
    };
    let sink = Arc::clone(sink);
    if tokio::task::spawn_blocking(move || sink.dead_letter(letter))
        .await
        .is_err()
    {
        tracing::error!("dead letter not stored");
    }
}

/// Checks and commits one message; returns the ack to send, if any.
async fn handle_message(
    topic_name: &str,
    payload: &[u8],
    sink: &Arc<dyn BatchSink>,
    counters: &ReceiverCounters,
) -> Option<(String, Ack)> {
    let batch = match Batch::decode(topic_name, payload) {
        Ok(batch) => batch,
        Err(error) => {
            counters.messages_malformed.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(topic = topic_name, %error, bytes = payload.len(), "dead-lettering a malformed batch");
            dead_letter(sink, topic_name, payload, error.reason(), error.to_string()).await;
            return None;
        }
    };
    let committer = Arc::clone(sink);
    let device_id = batch.device_id.clone();
    let epoch = batch.epoch.clone();
    let outcome = tokio::task::spawn_blocking(move || committer.commit(&batch)).await;
    let outcome = match outcome {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(SinkError::Rejected { reason, detail })) => {
            counters.batches_rejected.fetch_add(1, Ordering::Relaxed);
            tracing::error!(device_id, reason = reason.as_str(), %detail, "batch rejected");
            dead_letter(sink, topic_name, payload, reason, detail).await;
            return None;
        }
        Ok(Err(SinkError::Storage(reason))) => {
            counters.storage_errors.fetch_add(1, Ordering::Relaxed);
            tracing::error!(device_id, %reason, "batch not stored; the box will resend");
            return None;
        }
        Err(_) => {
            counters.storage_errors.fetch_add(1, Ordering::Relaxed);
            return None;
        }
    };
    counters.batches_committed.fetch_add(1, Ordering::Relaxed);
    counters
        .records_inserted
        .fetch_add(outcome.inserted, Ordering::Relaxed);
    counters
        .records_duplicate
        .fetch_add(outcome.duplicates, Ordering::Relaxed);
    // The commit has returned: only now may the box learn that it is safe.
    let ack = Ack {
        v: PROTOCOL_VERSION,
        epoch,
        acked_seq: outcome.acked_seq,
        resend_from: outcome.resend_from,
    };
    Some((device_id, ack))
}
