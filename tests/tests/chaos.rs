//! The fault test: two edge boxes produce thousands of records while the
//! test `kill -9`s the edge agents, central and the broker at random
//! moments and cuts, delays and resets the network between the boxes and
//! the broker through a fault-injecting proxy. Afterwards central must hold
//! exactly the produced records, each once, with intact chains, and every
//! outbox must be fully acknowledged. Bounded in time; seeded, so a failure
//! can be replayed with the seed it prints.

#![allow(clippy::unwrap_used, reason = "a failed step is the test failure")]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::json;
use valeo_drivers::sim::mtsics::Faults;
use valeo_drivers::sim::pty::PtyScale;
use valeo_drivers::sim::truck::{TruckScale, TruckScaleParams};
use valeo_sync::outbox::{Outbox, OutboxLimits};
use valeo_sync::wire::{GENESIS_HASH, Record};
use valeo_system_tests::proxy::{FaultProxy, Mode};
use valeo_system_tests::{BrokerKind, Central, Edge, Mosquitto, eventually, free_port};

/// Records each box produces.
const RECORDS_PER_BOX: u64 = 2_000;
/// Records per group commit of the producer.
const GROUP_RECORDS: u64 = 8;
/// How long faults are injected.
const CHAOS_MS: u64 = 20_000;
/// How long the system may take to converge once faults stop.
const CONVERGE_S: u64 = 90;

const BOXES: [&str; 2] = ["chaos-box-a", "chaos-box-b"];

/// One box: its scale, its proxy to the broker, its process, its producer.
struct BoxUnderTest {
    id: &'static str,
    proxy: FaultProxy,
    scale_path: PathBuf,
    _pty: PtyScale,
    edge: Option<Edge>,
}

/// Faults that fired, by name.
#[derive(Default, Debug)]
struct Fired(BTreeMap<&'static str, u32>);

impl Fired {
    fn note(&mut self, name: &'static str) {
        *self.0.entry(name).or_default() += 1;
    }
}

/// The producer: appends `RECORDS_PER_BOX` records in small group commits,
/// whatever happens to the edge process (the box keeps recording).
fn produce(outbox: Outbox, period: Duration) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut n = 0;
        while n < RECORDS_PER_BOX {
            let items = (n..(n + GROUP_RECORDS).min(RECORDS_PER_BOX))
                .map(|i| {
                    (
                        "chaos.reading".to_owned(),
                        json!({ "n": i, "pad": "x".repeat(64) }),
                    )
                })
                .collect::<Vec<_>>();
            n += items.len() as u64;
            outbox.append_many(items, chrono::Utc::now()).unwrap();
            std::thread::sleep(period);
        }
    })
}

async fn restart_edge(dir: &Path, b: &mut BoxUnderTest) {
    b.edge = Some(
        Edge::start(dir, b.id, b.proxy.port, &b.scale_path)
            .await
            .unwrap(),
    );
}

async fn chaos(kind: BrokerKind, seed: u64) {
    eprintln!("chaos seed {seed} ({kind:?}); replay with CHAOS_SEED={seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let (http_port, broker_port) = (free_port(), free_port());
    let mut mosquitto = match kind {
        BrokerKind::Embedded => None,
        BrokerKind::Mosquitto => Some(Mosquitto::start_on(dir, broker_port).await.unwrap()),
    };
    let external = mosquitto.as_ref().map(|m| m.port);
    let keys: Vec<(String, String)> = BOXES
        .iter()
        .map(|id| (id.to_string(), Edge::provision(dir, id).unwrap()))
        .collect();
    let devices: Vec<(&str, &str)> = keys.iter().map(|(i, k)| (i.as_str(), k.as_str())).collect();
    let mut central = Some(
        Central::start(dir, external, Some((http_port, broker_port)), &devices)
            .await
            .unwrap(),
    );

    let mut boxes = Vec::new();
    let mut producers = Vec::new();
    let mut epochs = BTreeMap::new();
    for id in BOXES {
        let scale = TruckScale::new(TruckScaleParams::default());
        let pty = PtyScale::spawn(scale, Arc::new(Mutex::new(Faults::default()))).unwrap();
        let proxy = FaultProxy::start(broker_port).await.unwrap();
        let outbox = Outbox::open(
            &Edge::data_dir(dir, id).join("outbox.db"),
            id,
            OutboxLimits::default(),
        )
        .unwrap();
        epochs.insert(id, outbox.epoch().to_owned());
        producers.push(produce(outbox, Duration::from_millis(60)));
        let mut b = BoxUnderTest {
            id,
            proxy,
            scale_path: pty.path().to_path_buf(),
            _pty: pty,
            edge: None,
        };
        restart_edge(dir, &mut b).await;
        boxes.push(b);
    }

    // Faults, one every 0.4–1.5 s, until the time is up: first every kind
    // once in random order, then random ones.
    let mut fired = Fired::default();
    let mut plan: Vec<u32> = (0..6).collect();
    plan.shuffle(&mut rng);
    let deadline = Instant::now() + Duration::from_millis(CHAOS_MS);
    while Instant::now() < deadline || !plan.is_empty() {
        tokio::time::sleep(Duration::from_millis(rng.random_range(400..1500))).await;
        let which = rng.random_range(0..boxes.len());
        let fault = plan.pop().unwrap_or_else(|| rng.random_range(0..7));
        match fault {
            0 => {
                // Power cut of a box: its agent dies mid-work, comes back later.
                let b = &mut boxes[which];
                if let Some(mut edge) = b.edge.take() {
                    edge.process.kill();
                    fired.note("kill -9 edge");
                    tokio::time::sleep(Duration::from_millis(rng.random_range(100..1500))).await;
                }
                restart_edge(dir, b).await;
            }
            1 => {
                // Central (and with it the embedded broker) dies and restarts.
                if let Some(mut c) = central.take() {
                    c.process.kill();
                    fired.note("kill -9 central");
                }
                tokio::time::sleep(Duration::from_millis(rng.random_range(100..1500))).await;
                central = Some(
                    Central::start(dir, external, Some((http_port, broker_port)), &devices)
                        .await
                        .unwrap(),
                );
            }
            2 if mosquitto.is_some() => {
                if let Some(mut m) = mosquitto.take() {
                    m.process.kill();
                    fired.note("kill -9 broker");
                }
                tokio::time::sleep(Duration::from_millis(rng.random_range(100..1500))).await;
                mosquitto = Some(Mosquitto::start_on(dir, broker_port).await.unwrap());
            }
            3 => {
                boxes[which].proxy.set_mode(Mode::Blackhole);
                fired.note("network blackhole");
                tokio::time::sleep(Duration::from_millis(rng.random_range(500..3000))).await;
                boxes[which].proxy.set_mode(Mode::Pass);
            }
            4 => {
                boxes[which]
                    .proxy
                    .set_mode(Mode::Delay(Duration::from_millis(
                        rng.random_range(50..400),
                    )));
                fired.note("network delay");
                tokio::time::sleep(Duration::from_millis(rng.random_range(500..2500))).await;
                boxes[which].proxy.set_mode(Mode::Pass);
            }
            _ => {
                boxes[which].proxy.reset_all();
                fired.note("connection reset");
            }
        }
    }
    for b in &boxes {
        b.proxy.set_mode(Mode::Pass);
    }
    for producer in producers {
        producer.join().unwrap();
    }
    eprintln!("faults fired: {fired:?}");
    for name in [
        "kill -9 edge",
        "kill -9 central",
        "network blackhole",
        "connection reset",
    ] {
        assert!(
            fired.0.contains_key(name),
            "fault {name:?} never fired: {fired:?}"
        );
    }
    if kind == BrokerKind::Mosquitto {
        assert!(fired.0.contains_key("kill -9 broker"), "{fired:?}");
    }
    let dropped: u64 = boxes
        .iter()
        .map(|b| b.proxy.counts.chunks_dropped.load(Ordering::Relaxed))
        .sum();
    let resets: u64 = boxes
        .iter()
        .map(|b| b.proxy.counts.connections_reset.load(Ordering::Relaxed))
        .sum();
    assert!(
        dropped > 0 && resets > 0,
        "the proxy's faults took effect: dropped {dropped}, reset {resets}"
    );

    // Converge: every outbox fully acknowledged.
    for b in &boxes {
        let edge = b.edge.as_ref().unwrap();
        eventually(
            &format!("{} to drain", b.id),
            Duration::from_secs(CONVERGE_S),
            || async { (edge.unacknowledged_records().ok()? == 0).then_some(()) },
        )
        .await
        .unwrap();
    }

    // Central holds exactly the produced records, each once, chains intact.
    let db = rusqlite::Connection::open_with_flags(
        dir.join("central-data").join("central.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    for id in BOXES {
        let epoch = &epochs[id];
        let mut stmt = db
            .prepare(
                "SELECT device_id, epoch, seq, kind, created_at, payload, prev_hash, hash
                 FROM records WHERE device_id = ?1 ORDER BY epoch, seq",
            )
            .unwrap();
        let records: Vec<Record> = stmt
            .query_map([id], |r| {
                Ok(Record {
                    device_id: r.get(0)?,
                    epoch: r.get(1)?,
                    seq: r.get::<_, i64>(2)? as u64,
                    kind: r.get(3)?,
                    created_at: r.get(4)?,
                    payload: serde_json::from_str(&r.get::<_, String>(5)?).unwrap(),
                    prev_hash: r.get(6)?,
                    hash: r.get(7)?,
                })
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            records.len() as u64,
            RECORDS_PER_BOX,
            "{id}: every record exactly once"
        );
        let mut prev = GENESIS_HASH.to_owned();
        for (i, record) in records.iter().enumerate() {
            assert_eq!(&record.epoch, epoch, "{id}: one epoch");
            assert_eq!(record.seq, i as u64 + 1, "{id}: gap-free");
            assert_eq!(
                record.payload["n"], i as u64,
                "{id}: the produced payload, in order"
            );
            record.verify_hash().unwrap();
            assert_eq!(
                record.prev_hash, prev,
                "{id}: chain intact at seq {}",
                record.seq
            );
            prev = record.hash.clone();
        }
    }
    let dead: i64 = db
        .query_row("SELECT COUNT(*) FROM dead_letters", [], |r| r.get(0))
        .unwrap();
    assert_eq!(dead, 0, "no valid batch was dead-lettered");
    drop(central);
}

fn seed() -> u64 {
    std::env::var("CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::rng().random())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_lost_or_duplicated_under_faults_with_the_embedded_broker() {
    chaos(BrokerKind::Embedded, seed()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_lost_or_duplicated_under_faults_with_mosquitto() {
    chaos(BrokerKind::Mosquitto, seed()).await;
}
