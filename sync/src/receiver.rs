//! The central receiver: takes batches off the broker, checks them against
//! the wire contract, hands them to a [`BatchSink`] that commits them, and
//! only then publishes the cumulative ack.
//!
//! A malformed or forged message is logged with its reason, counted, and
//! never acknowledged; the receiver keeps running. What a record means is
//! the sink's business: this module knows envelopes, not weighings.
//!
//! The same connection carries what central sends: configs and commands to
//! the boxes, and integration events, which the receiver also reads back
//! from the broker to know they arrived (see [`DevicePublisher::publish_event`]).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use rumqttc::{AsyncClient, QoS};
use serde::Serialize;
use tokio::sync::{mpsc, watch};

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
    /// A message on a device's status topic (retained, also the box's last
    /// will), as received: the sink checks it. Called on the receiver's
    /// task, so it must not block.
    fn status(&self, device_id: &str, payload: &[u8]) {
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

/// An integration event waiting to be published.
#[derive(Debug)]
struct OutgoingEvent {
    seq: u64,
    topic: String,
    payload: Bytes,
}

/// Integration events held until the broker has sent them back; beyond,
/// [`DevicePublisher::publish_event`] waits.
pub const MAX_PENDING_EVENTS: usize = 1024;

/// Events waiting to be taken by the receiver task.
const EVENT_QUEUE_CAPACITY: usize = 64;

/// How long a published event may take to come back before it is published
/// again; doubles while none comes back, up to [`MAX_EVENT_ECHO_TIMEOUT_MS`].
const EVENT_ECHO_TIMEOUT_MS: u64 = 10_000;
const MAX_EVENT_ECHO_TIMEOUT_MS: u64 = 300_000;

/// Sends devices their configuration (retained, on their config topic) and
/// commands through the receiver's connection, and integration events to
/// whoever subscribes. Cheap to clone.
#[derive(Debug, Clone)]
pub struct DevicePublisher {
    tx: mpsc::Sender<Outgoing>,
    events: mpsc::Sender<OutgoingEvent>,
    events_confirmed: watch::Receiver<u64>,
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

    /// Queues an integration event for `topic` (QoS 1, not retained), in
    /// the order of the calls. `seq` identifies it in
    /// [`DevicePublisher::events_confirmed`] and must grow with every call.
    ///
    /// rumqttc does not report PUBACKs, so the receiver subscribes to the
    /// events topics itself: an event counts as delivered when the broker
    /// has routed it back to central. Until then it is kept, published
    /// again after a reconnect to a broker that lost the session, and after
    /// a timeout. Consumers may therefore see an event twice. Waits while
    /// [`MAX_PENDING_EVENTS`] are unconfirmed.
    pub async fn publish_event(
        &self,
        seq: u64,
        topic: String,
        payload: Bytes,
    ) -> Result<(), ReceiverGone> {
        self.events
            .send(OutgoingEvent {
                seq,
                topic,
                payload,
            })
            .await
            .map_err(|_| ReceiverGone)
    }

    /// The highest `seq` such that it and every event queued before it came
    /// back from the broker; 0 until one does.
    pub fn events_confirmed(&self) -> watch::Receiver<u64> {
        self.events_confirmed.clone()
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
    let (events_tx, outgoing_events) = mpsc::channel(EVENT_QUEUE_CAPACITY);
    let (confirmed_tx, events_confirmed) = watch::channel(0);
    let channels = Channels {
        outgoing,
        events: outgoing_events,
        confirmed: confirmed_tx,
    };
    tokio::spawn(run(client, events, sink, Arc::clone(&counters), channels));
    (
        counters,
        DevicePublisher {
            tx,
            events: events_tx,
            events_confirmed,
        },
    )
}

/// The receiver task's ends of the [`DevicePublisher`] channels.
struct Channels {
    outgoing: mpsc::Receiver<Outgoing>,
    events: mpsc::Receiver<OutgoingEvent>,
    confirmed: watch::Sender<u64>,
}

/// One integration event between [`DevicePublisher::publish_event`] and
/// its return from the broker.
#[derive(Debug)]
struct PendingEvent {
    seq: u64,
    topic: String,
    payload: Bytes,
    /// Given to the MQTT client on the current session.
    handed: bool,
    /// Seen back from the broker.
    echoed: bool,
}

/// Integration events not yet seen back, in the order they were queued.
#[derive(Debug)]
struct PendingEvents {
    pending: VecDeque<PendingEvent>,
    confirmed: watch::Sender<u64>,
    /// When events handed but not seen back are published again.
    deadline: Option<tokio::time::Instant>,
    timeout: Duration,
}

impl PendingEvents {
    fn new(confirmed: watch::Sender<u64>) -> PendingEvents {
        PendingEvents {
            pending: VecDeque::new(),
            confirmed,
            deadline: None,
            timeout: Duration::from_millis(EVENT_ECHO_TIMEOUT_MS),
        }
    }

    fn has_room(&self) -> bool {
        self.pending.len() < MAX_PENDING_EVENTS
    }

    fn queue(&mut self, event: OutgoingEvent) {
        self.pending.push_back(PendingEvent {
            seq: event.seq,
            topic: event.topic,
            payload: event.payload,
            handed: false,
            echoed: false,
        });
    }

    /// Hands unsent events to the client in order without waiting; what
    /// does not fit stays.
    fn flush(&mut self, client: &AsyncClient, connected: bool) {
        if !connected {
            return;
        }
        for event in self.pending.iter_mut().filter(|e| !e.handed && !e.echoed) {
            match client.try_publish(
                event.topic.clone(),
                QoS::AtLeastOnce,
                false,
                event.payload.clone(),
            ) {
                Ok(()) => event.handed = true,
                Err(_) => break,
            }
        }
        if self.deadline.is_none() && self.pending.iter().any(|e| e.handed && !e.echoed) {
            self.deadline = Some(tokio::time::Instant::now() + self.timeout);
        }
    }

    /// A message on an events topic: if it is one of ours, it arrived.
    /// Returns whether it was.
    fn echo(&mut self, topic_name: &str, payload: &[u8]) -> bool {
        let Some(event) = self
            .pending
            .iter_mut()
            .find(|e| !e.echoed && e.topic == topic_name && e.payload == payload)
        else {
            return false;
        };
        event.echoed = true;
        let mut confirmed = None;
        while self.pending.front().is_some_and(|e| e.echoed) {
            confirmed = self.pending.pop_front().map(|e| e.seq);
        }
        if let Some(seq) = confirmed {
            self.confirmed.send_replace(seq);
            self.timeout = Duration::from_millis(EVENT_ECHO_TIMEOUT_MS);
            self.deadline = self
                .pending
                .iter()
                .any(|e| e.handed && !e.echoed)
                .then(|| tokio::time::Instant::now() + self.timeout);
        }
        true
    }

    /// A new connection. rumqttc sends its unacknowledged publishes again
    /// only when the broker kept the session; otherwise they are gone.
    fn reconnected(&mut self, session_present: bool) {
        if !session_present {
            for event in &mut self.pending {
                event.handed = false;
            }
            self.deadline = None;
        }
    }

    /// Publishes again what did not come back in time, e.g. because the
    /// broker does not let central read the events topics.
    fn check_timeout(&mut self) {
        let Some(deadline) = self.deadline else {
            return;
        };
        if tokio::time::Instant::now() < deadline {
            return;
        }
        let unconfirmed = self.pending.iter().filter(|e| !e.echoed).count();
        tracing::warn!(
            unconfirmed,
            timeout_ms = self.timeout.as_millis() as u64,
            "integration events did not come back from the broker; publishing them again"
        );
        for event in &mut self.pending {
            event.handed = false;
        }
        self.deadline = None;
        self.timeout = (self.timeout * 2).min(Duration::from_millis(MAX_EVENT_ECHO_TIMEOUT_MS));
    }
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
    channels: Channels,
) {
    let Channels {
        mut outgoing,
        events: mut outgoing_events,
        confirmed,
    } = channels;
    let mut integration = PendingEvents::new(confirmed);
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
                integration.check_timeout();
                integration.flush(&client, connected);
                continue;
            }
            Some(message) = outgoing.recv() => {
                configs.queue(message);
                configs.flush(&client, connected);
                continue;
            }
            Some(event) = outgoing_events.recv(), if integration.has_room() => {
                integration.queue(event);
                integration.flush(&client, connected);
                continue;
            }
        };
        match event {
            LinkEvent::Connected { session_present } => {
                counters.connected.store(true, Ordering::Relaxed);
                connected = true;
                configs.unsent = configs.latest.keys().cloned().collect();
                integration.reconnected(session_present);
                let filters = [
                    rumqttc::SubscribeFilter::new(topic::ALL_RECORDS.into(), QoS::AtLeastOnce),
                    rumqttc::SubscribeFilter::new(topic::ALL_TELEMETRY.into(), QoS::AtMostOnce),
                    rumqttc::SubscribeFilter::new(topic::ALL_STATUS.into(), QoS::AtLeastOnce),
                    rumqttc::SubscribeFilter::new(topic::ALL_EVENTS.into(), QoS::AtLeastOnce),
                ];
                if let Err(error) = client.try_subscribe_many(filters) {
                    tracing::error!(%error, "cannot subscribe to records, telemetry, status and events");
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
                let is_event = topic::event_kind(&name).is_some();
                if is_event && integration.echo(&name, &payload) {
                    // One of ours came back: it reached the broker.
                } else if let Some(device_id) = topic::device_of(&name, "telemetry") {
                    sink.telemetry(device_id, &payload);
                } else if let Some(device_id) = topic::device_of(&name, "status") {
                    sink.status(device_id, &payload);
                } else if is_event && topic::device_of(&name, "records").is_none() {
                    // Someone else's event, or ours seen again: not a batch.
                } else if let Some((device_id, ack)) =
                    handle_message(&name, &payload, &sink, &counters).await
                {
                    pending_acks.insert(device_id, ack);
                }
            }
        }
        flush_acks(&client, &mut pending_acks);
        configs.flush(&client, connected);
        integration.flush(&client, connected);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> (AsyncClient, rumqttc::EventLoop) {
        AsyncClient::new(rumqttc::MqttOptions::new("t", "127.0.0.1", 1), 64)
    }

    fn event(seq: u64) -> OutgoingEvent {
        OutgoingEvent {
            seq,
            topic: topic::event("weighing.completed"),
            payload: Bytes::from(format!("{{\"id\":{seq}}}")),
        }
    }

    fn handed(events: &PendingEvents) -> Vec<(u64, bool)> {
        events.pending.iter().map(|e| (e.seq, e.handed)).collect()
    }

    #[tokio::test]
    async fn events_count_as_delivered_in_order_once_they_come_back() {
        let (client, _loop) = client();
        let (tx, confirmed) = watch::channel(0);
        let mut events = PendingEvents::new(tx);
        for seq in [3, 5, 8] {
            events.queue(event(seq));
        }
        events.flush(&client, false);
        assert_eq!(handed(&events), [(3, false), (5, false), (8, false)]);
        events.flush(&client, true);
        assert_eq!(handed(&events), [(3, true), (5, true), (8, true)]);

        let topic_name = topic::event("weighing.completed");
        // Back out of order: nothing is confirmed past a missing one.
        assert!(events.echo(&topic_name, b"{\"id\":5}"));
        assert_eq!(*confirmed.borrow(), 0);
        assert!(!events.echo(&topic_name, b"{\"id\":99}"), "not one of ours");
        assert!(
            !events.echo(&topic::event("stock.corrected"), b"{\"id\":3}"),
            "same bytes on another topic"
        );
        assert!(events.echo(&topic_name, b"{\"id\":3}"));
        assert_eq!(*confirmed.borrow(), 5);
        assert!(!events.echo(&topic_name, b"{\"id\":5}"), "seen twice");
        assert!(events.echo(&topic_name, b"{\"id\":8}"));
        assert_eq!(*confirmed.borrow(), 8);
        assert!(events.pending.is_empty());
        assert!(events.deadline.is_none());
    }

    #[tokio::test]
    async fn a_lost_session_or_a_timeout_publishes_unconfirmed_events_again() {
        tokio::time::pause();
        let (client, _loop) = client();
        let (tx, confirmed) = watch::channel(0);
        let mut events = PendingEvents::new(tx);
        events.queue(event(1));
        events.queue(event(2));
        events.flush(&client, true);

        // The broker kept the session: rumqttc sends its copies again.
        events.reconnected(true);
        assert_eq!(handed(&events), [(1, true), (2, true)]);
        // The broker lost it: they are ours to send again.
        events.reconnected(false);
        assert_eq!(handed(&events), [(1, false), (2, false)]);
        events.flush(&client, true);
        assert!(events.echo(&topic::event("weighing.completed"), b"{\"id\":1}"));
        assert_eq!(*confirmed.borrow(), 1);

        // Event 2 never comes back: after the timeout it goes out again,
        // and the next wait is longer.
        events.check_timeout();
        assert_eq!(handed(&events), [(2, true)]);
        tokio::time::advance(Duration::from_millis(EVENT_ECHO_TIMEOUT_MS + 1)).await;
        events.check_timeout();
        assert_eq!(handed(&events), [(2, false)]);
        assert_eq!(
            events.timeout,
            Duration::from_millis(2 * EVENT_ECHO_TIMEOUT_MS)
        );
        events.flush(&client, true);
        assert_eq!(handed(&events), [(2, true)]);
        // It never comes back: the waits grow up to their cap.
        for _ in 0..10 {
            tokio::time::advance(events.timeout + Duration::from_millis(1)).await;
            events.check_timeout();
            events.flush(&client, true);
        }
        assert_eq!(
            events.timeout,
            Duration::from_millis(MAX_EVENT_ECHO_TIMEOUT_MS)
        );
    }

    #[tokio::test]
    async fn the_queue_has_a_limit() {
        let (tx, _confirmed) = watch::channel(0);
        let mut events = PendingEvents::new(tx);
        for seq in 0..MAX_PENDING_EVENTS as u64 {
            assert!(events.has_room());
            events.queue(event(seq));
        }
        assert!(!events.has_room());
    }
}
