//! The central receiver: takes batches off the broker, checks them against
//! the wire contract, hands them to a [`BatchSink`] that commits them, and
//! only then publishes the cumulative ack.
//!
//! A malformed or forged message is logged with its reason, counted, and
//! never acknowledged; the receiver keeps running. What a record means is
//! the sink's business: this module knows envelopes, not weighings.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

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

/// A sink refused a batch or failed to store it.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The batch contradicts what is stored (e.g. a seq already stored with
    /// another hash). It is not acknowledged; an operator must look.
    #[error("batch rejected: {0}")]
    Rejected(String),
    /// Storage failed; nothing was committed, the box will resend.
    #[error("storage failed: {0}")]
    Storage(String),
}

/// Where committed batches go. `commit` MUST be durable and idempotent when
/// it returns: the ack is published right after it.
pub trait BatchSink: Send + Sync + 'static {
    fn commit(&self, batch: &Batch) -> Result<CommitOutcome, SinkError>;
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
    let (client, events) = mqtt::connect(broker, client_id, None);
    let counters = Arc::new(ReceiverCounters::default());
    tokio::spawn(run(client, events, sink, Arc::clone(&counters)));
    counters
}

async fn run(
    client: AsyncClient,
    mut events: mpsc::Receiver<LinkEvent>,
    sink: Arc<dyn BatchSink>,
    counters: Arc<ReceiverCounters>,
) {
    while let Some(event) = events.recv().await {
        match event {
            LinkEvent::Connected { .. } => {
                counters.connected.store(true, Ordering::Relaxed);
                if let Err(error) = client.subscribe(topic::ALL_RECORDS, QoS::AtLeastOnce).await {
                    tracing::error!(%error, "cannot subscribe to records");
                }
            }
            LinkEvent::Disconnected { .. } => counters.connected.store(false, Ordering::Relaxed),
            LinkEvent::Message {
                topic: name,
                payload,
            } => {
                handle_message(&client, &name, &payload, &sink, &counters).await;
            }
        }
    }
}

async fn handle_message(
    client: &AsyncClient,
    topic_name: &str,
    payload: &[u8],
    sink: &Arc<dyn BatchSink>,
    counters: &ReceiverCounters,
) {
    let batch = match Batch::decode(topic_name, payload) {
        Ok(batch) => batch,
        Err(error) => {
            counters.messages_malformed.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(topic = topic_name, %error, bytes = payload.len(), "dropping a malformed batch");
            return;
        }
    };
    let sink = Arc::clone(sink);
    let device_id = batch.device_id.clone();
    let epoch = batch.epoch.clone();
    let outcome = tokio::task::spawn_blocking(move || sink.commit(&batch)).await;
    let outcome = match outcome {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(SinkError::Rejected(reason))) => {
            counters.batches_rejected.fetch_add(1, Ordering::Relaxed);
            tracing::error!(device_id, %reason, "batch rejected");
            return;
        }
        Ok(Err(SinkError::Storage(reason))) => {
            counters.storage_errors.fetch_add(1, Ordering::Relaxed);
            tracing::error!(device_id, %reason, "batch not stored; the box will resend");
            return;
        }
        Err(_) => {
            counters.storage_errors.fetch_add(1, Ordering::Relaxed);
            return;
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
    if let Err(error) = client
        .publish(
            topic::ack(&device_id),
            QoS::AtLeastOnce,
            false,
            ack.encode(),
        )
        .await
    {
        tracing::warn!(%error, device_id, "ack not sent; the box will resend and be acked then");
    }
}
