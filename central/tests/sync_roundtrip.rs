//! The sync path in one process but over real parts: the edge outbox on a
//! SQLite file, the uplink, the embedded rumqttd on a loopback port, the
//! receiver and central's store on another SQLite file.

#![allow(clippy::unwrap_used, reason = "a failed step is the test failure")]

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use serde_json::json;
use valeo_central::broker;
use valeo_central::store::Store;
use valeo_sync::identity::DeviceKey;
use valeo_sync::mqtt::BrokerConfig;
use valeo_sync::outbox::{Outbox, OutboxLimits};
use valeo_sync::uplink::{self, UplinkConfig, UplinkHandle};

fn start_broker() -> BrokerConfig {
    BrokerConfig {
        reconnect_backoff_max_ms: 500,
        ..broker::start_on_free_port().unwrap()
    }
}

async fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..200 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

fn pending(outbox: &Outbox) -> u64 {
    outbox.stats().unwrap().pending_records
}

fn key() -> DeviceKey {
    DeviceKey::from_secret([3; 32])
}

fn open_store(path: &std::path::Path) -> Store {
    let store = Store::open(path).unwrap();
    store
        .register_device("box-1", &key().public_key_hex())
        .unwrap();
    store
}

fn start_uplink(broker: &BrokerConfig, outbox: &Outbox, max_batch_records: usize) -> UplinkHandle {
    let config = UplinkConfig {
        ack_timeout_ms: 400,
        max_batch_records,
        ..UplinkConfig::default()
    };
    uplink::spawn(broker, config, outbox.clone(), key(), "test")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_leave_the_outbox_only_after_central_committed_them() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker();
    let outbox = Outbox::open(
        &dir.path().join("outbox.db"),
        "box-1",
        OutboxLimits::default(),
    )
    .unwrap();
    for n in 0..25 {
        outbox
            .append("test.note", json!({ "n": n }), Utc::now())
            .unwrap();
    }
    // The uplink runs, the broker PUBACKs, but no central listens yet.
    let uplink = start_uplink(&broker, &outbox, 10);
    wait_for("batches to be sent", || uplink.status().batches_sent >= 3).await;
    wait_for("an ack timeout to trigger a resend", || {
        uplink.status().resends >= 1
    })
    .await;
    assert_eq!(pending(&outbox), 25, "a broker PUBACK releases nothing");

    // Central comes up: everything is committed once and released.
    let store = open_store(&dir.path().join("central.db"));
    let counters = valeo_sync::receiver::spawn(&broker, "central-test", Arc::new(store.clone()));
    outbox
        .append("test.note", json!({ "n": 25 }), Utc::now())
        .unwrap();
    uplink.notify_new_records();
    wait_for("the outbox to drain", || pending(&outbox) == 0).await;
    let stats = counters.snapshot();
    assert_eq!(stats.records_inserted, 26, "{stats:?}");
    assert_eq!(stats.messages_malformed, 0);
    let heads = store.device_heads().unwrap();
    assert_eq!(heads.len(), 1);
    assert_eq!(
        (heads[0].epoch.as_str(), heads[0].head_seq),
        (outbox.epoch(), 26)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_epoch_is_a_new_chain_not_a_duplicate() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker();
    let store = open_store(&dir.path().join("central.db"));
    let counters = valeo_sync::receiver::spawn(&broker, "central-test", Arc::new(store.clone()));

    let first = Outbox::open(&dir.path().join("a.db"), "box-1", OutboxLimits::default()).unwrap();
    first
        .append("test.note", json!({ "n": 1 }), Utc::now())
        .unwrap();
    let _uplink_a = start_uplink(&broker, &first, 100);
    wait_for("the first database to drain", || pending(&first) == 0).await;

    // The box's disk was replaced: same device, fresh database, seq 1 again.
    let second = Outbox::open(&dir.path().join("b.db"), "box-1", OutboxLimits::default()).unwrap();
    assert_ne!(first.epoch(), second.epoch());
    second
        .append("test.note", json!({ "n": 1 }), Utc::now())
        .unwrap();
    let _uplink_b = start_uplink(&broker, &second, 100);
    wait_for("the second database to drain", || pending(&second) == 0).await;
    assert_eq!(counters.snapshot().records_inserted, 2);
    assert_eq!(store.device_heads().unwrap().len(), 2);
}

/// Regression: with many boxes publishing at once, the receiver's acks must
/// not wait on the MQTT client while the client's event loop waits on the
/// receiver (that deadlock stalled every box until its ack timeout).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_boxes_at_once_are_all_acknowledged_promptly() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker();
    let store = Store::open(&dir.path().join("central.db")).unwrap();
    let keys: Vec<DeviceKey> = (0..100u8)
        .map(|n| DeviceKey::from_secret([n + 10; 32]))
        .collect();
    let mut outboxes = Vec::new();
    for (n, key) in keys.iter().enumerate() {
        let id = format!("box-{n}");
        store.register_device(&id, &key.public_key_hex()).unwrap();
        let outbox = Outbox::open(
            &dir.path().join(format!("{id}.db")),
            &id,
            OutboxLimits::default(),
        )
        .unwrap();
        let items = (0..20)
            .map(|i| ("test.note".to_owned(), json!({ "n": i })))
            .collect();
        outbox.append_many(items, Utc::now()).unwrap();
        outboxes.push(outbox);
    }
    valeo_sync::receiver::spawn(&broker, "central-test", Arc::new(store.clone()));
    // Four batches per box, 400 messages at once: far more than the
    // receiver's event channel holds. With the old deadlock the receiver
    // stopped for good, so no resend could help. A short ack timeout heals
    // what the in-memory broker may drop when a hundred clients connect at
    // once (seen about once in eight runs).
    let config = UplinkConfig {
        ack_timeout_ms: 2_000,
        max_batch_records: 5,
        ..UplinkConfig::default()
    };
    let uplinks: Vec<_> = outboxes
        .iter()
        .zip(&keys)
        .map(|(o, k)| uplink::spawn(&broker, config.clone(), o.clone(), k.clone(), "test"))
        .collect();
    for _ in 0..1200 {
        if outboxes.iter().all(|o| pending(o) == 0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stuck: Vec<_> = outboxes
        .iter()
        .zip(&uplinks)
        .filter(|(o, _)| pending(o) > 0)
        .map(|(o, u)| (o.device_id().to_owned(), u.status()))
        .collect();
    assert!(stuck.is_empty(), "boxes not drained after 60 s: {stuck:#?}");
    let stored: u64 = store
        .device_heads()
        .unwrap()
        .iter()
        .map(|h| h.head_seq)
        .sum();
    assert_eq!(stored, 2_000);
}
