//! Sync benchmark: prints the figures in `docs/benchmarks.md`.
//!
//! Run with `cargo bench -p valeo-central --bench sync` (after
//! `cargo build --release --bin valeo-edge` for the RSS figure). Everything
//! runs on loopback: the embedded broker, central's receiver and store, and
//! the edge uplinks, on real SQLite files in a temporary directory.
//!
//! (a) outbox append rate, one record per commit and group commits of 100;
//! (b) time to drain 100,000 records from one box to central, acknowledged;
//! (c) central ingest with 100 boxes publishing at once;
//! (d) peak RSS of the real `valeo-edge` process while it drains 100,000 records.

#![allow(
    clippy::unwrap_used,
    reason = "a benchmark that fails should stop loudly"
)]
#![allow(clippy::print_stdout, reason = "printing the figures is the point")]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::json;
use valeo_central::broker;
use valeo_central::store::Store;
use valeo_sync::identity::DeviceKey;
use valeo_sync::mqtt::BrokerConfig;
use valeo_sync::outbox::{Outbox, OutboxLimits};
use valeo_sync::uplink::{self, UplinkConfig};

/// Repetitions of each append measurement; the median is reported.
const RUNS: usize = 5;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// A payload the size of a weighing record.
fn payload(n: u64) -> serde_json::Value {
    json!({
        "ticket_no": n, "plate": "OS-VE 101", "direction": "intake",
        "first": { "scale_id": "bridge-1", "weight": { "value": 40000, "decimals": 0, "unit": "kg" },
                   "alibi_id": "000123", "weighed_at": "2026-11-22T08:00:00.000Z" }
    })
}

/// The secret key of benchmark box `n`.
fn secret(n: usize) -> [u8; 32] {
    let mut secret = [0u8; 32];
    secret[..8].copy_from_slice(&(n as u64 + 1).to_le_bytes());
    secret
}

fn key(n: usize) -> DeviceKey {
    DeviceKey::from_secret(secret(n))
}

fn fill(outbox: &Outbox, records: u64) {
    let mut n = 0;
    while n < records {
        let group = (n..(n + 500).min(records))
            .map(|i| ("weighing.first".to_owned(), payload(i)))
            .collect();
        n += outbox.append_many(group, Utc::now()).unwrap().len() as u64;
    }
}

fn append_rates(dir: &Path) {
    let mut single = Vec::new();
    let mut grouped = Vec::new();
    for run in 0..RUNS {
        let outbox = Outbox::open(
            &dir.join(format!("append-{run}.db")),
            "bench",
            OutboxLimits::default(),
        )
        .unwrap();
        let n = 500;
        let start = Instant::now();
        for i in 0..n {
            outbox
                .append("weighing.first", payload(i), Utc::now())
                .unwrap();
        }
        single.push(n as f64 / start.elapsed().as_secs_f64());
        let start = Instant::now();
        fill(&outbox, 20_000);
        grouped.push(20_000.0 / start.elapsed().as_secs_f64());
    }
    println!(
        "(a) outbox append, 1 record per commit (synchronous=FULL): median {:.0} records/s",
        median(single)
    );
    println!(
        "(a) outbox append, group commit of 500:                   median {:.0} records/s",
        median(grouped)
    );
}

struct Central {
    broker: BrokerConfig,
    store: Store,
}

fn start_central(dir: &Path, devices: usize) -> Central {
    // BENCH_MQTT_PORT measures against an external broker (e.g. Mosquitto).
    let broker = match std::env::var("BENCH_MQTT_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
    {
        Some(port) => BrokerConfig {
            port,
            ..BrokerConfig::default()
        },
        None => broker::start_on_free_port().unwrap(),
    };
    let store = Store::open(&dir.join("central.db")).unwrap();
    for n in 0..devices {
        store
            .register_device(&format!("bench-{n}"), &key(n).public_key_hex())
            .unwrap();
    }
    valeo_sync::receiver::spawn(&broker, "central-bench", Arc::new(store.clone()));
    Central { broker, store }
}

async fn wait_drained(outboxes: &[Outbox], limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let pending: u64 = outboxes
            .iter()
            .map(|o| o.stats().unwrap().pending_records)
            .sum();
        if pending == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{pending} records still pending after {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn drain(dir: &Path, boxes: usize, records_per_box: u64) -> f64 {
    let central = start_central(dir, boxes);
    let outboxes: Vec<Outbox> = (0..boxes)
        .map(|n| {
            let outbox = Outbox::open(
                &dir.join(format!("box-{n}.db")),
                &format!("bench-{n}"),
                OutboxLimits::default(),
            )
            .unwrap();
            fill(&outbox, records_per_box);
            outbox
        })
        .collect();
    let start = Instant::now();
    let _uplinks: Vec<_> = outboxes
        .iter()
        .enumerate()
        .map(|(n, o)| {
            uplink::spawn(
                &central.broker,
                UplinkConfig::default(),
                o.clone(),
                key(n),
                "bench",
            )
        })
        .collect();
    wait_drained(&outboxes, Duration::from_secs(600)).await;
    let secs = start.elapsed().as_secs_f64();
    let stored: u64 = central
        .store
        .device_heads()
        .unwrap()
        .iter()
        .map(|h| h.head_seq)
        .sum();
    assert_eq!(
        stored,
        boxes as u64 * records_per_box,
        "every record committed at central"
    );
    (boxes as u64 * records_per_box) as f64 / secs
}

fn edge_binary() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    // target/release/deps/sync-… → target/release/valeo-edge
    let path = exe.parent()?.parent()?.join("valeo-edge");
    path.exists().then_some(path)
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

async fn edge_rss(dir: &Path) {
    let Some(binary) = edge_binary() else {
        println!(
            "(d) skipped: build target/release/valeo-edge first (cargo build --release --bin valeo-edge)"
        );
        return;
    };
    let central = start_central(dir, 1);
    let data = dir.join("edge-rss");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("device.key"), hex_secret(0)).unwrap();
    let outbox = Outbox::open(&data.join("outbox.db"), "bench-0", OutboxLimits::default()).unwrap();
    fill(&outbox, 100_000);
    let config = dir.join("edge.toml");
    std::fs::write(
        &config,
        format!(
            "device_id = \"bench-0\"\ndata_dir = \"{}\"\n[http]\nlisten = \"127.0.0.1:{}\"\n[mqtt]\nport = {}\n[simulation]\nenabled = true\n",
            data.display(),
            free_port(),
            central.broker.port
        ),
    )
    .unwrap();
    let mut child = std::process::Command::new(binary)
        .args(["--config", &config.to_string_lossy()])
        .env("RUST_LOG", "warn")
        .spawn()
        .unwrap();
    let start = Instant::now();
    let mut peak = 0;
    while outbox.stats().unwrap().pending_records > 0 {
        peak = peak.max(rss_kib(child.id()).unwrap_or(0));
        assert!(
            start.elapsed() < Duration::from_secs(600),
            "edge did not drain"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let secs = start.elapsed().as_secs_f64();
    child.kill().ok();
    child.wait().ok();
    println!(
        "(d) valeo-edge process draining 100,000 records: peak RSS {:.1} MiB, {:.0} records/s acknowledged",
        peak as f64 / 1024.0,
        100_000.0 / secs
    );
}

fn hex_secret(n: usize) -> String {
    secret(n).iter().map(|b| format!("{b:02x}")).collect()
}

/// Which parts to run: `BENCH_ONLY=abcd` (default all); `BENCH_BOXES=n` for
/// (c); `BENCH_MQTT_PORT=p` uses the broker on 127.0.0.1:p instead of the
/// embedded one; `RUST_LOG` turns on logs.
fn wanted(part: char) -> bool {
    std::env::var("BENCH_ONLY").map_or(true, |only| only.contains(part))
}

fn main() {
    if std::env::var_os("RUST_LOG").is_some() {
        valeo_process::init_logging("warn");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    println!(
        "sync benchmark on {} cores, temporary files in {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        dir.path().display()
    );
    if wanted('a') {
        append_rates(dir.path());
    }
    runtime.block_on(async {
        if wanted('b') {
            let mut rates = Vec::new();
            for run in 0..3 {
                let sub = dir.path().join(format!("drain-{run}"));
                std::fs::create_dir_all(&sub).unwrap();
                rates.push(drain(&sub, 1, 100_000).await);
            }
            let runs: Vec<f64> = rates.iter().map(|r| r.round()).collect();
            println!(
                "(b) drain 100,000 records from 1 box to central, acknowledged: median {:.0} records/s (runs: {runs:?})",
                median(rates)
            );
        }
        if wanted('c') {
            let boxes: usize =
                std::env::var("BENCH_BOXES").ok().and_then(|n| n.parse().ok()).unwrap_or(100);
            let sub = dir.path().join("fleet");
            std::fs::create_dir_all(&sub).unwrap();
            let rate = drain(&sub, boxes, 100_000 / boxes as u64).await;
            println!(
                "(c) central ingest, {boxes} boxes x {} records at once, acknowledged: {rate:.0} records/s",
                100_000 / boxes
            );
        }
        if wanted('d') {
            let sub = dir.path().join("rss");
            std::fs::create_dir_all(&sub).unwrap();
            edge_rss(&sub).await;
        }
    });
}
