//! Ticket-list benchmark: the filtered weighing list office staff run all
//! day, against one million tickets, at a fixed arrival rate.
//!
//! Run with:
//! ```text
//! cargo build --release --bin valeo-central
//! cargo bench -p valeo-central --bench ticket_list
//! ```
//! The first run fills `<target>/bench-data/ticket-list/central.db` with
//! 1,000,000 complete tickets (40 boxes, 5 sites, 400 partners, 30
//! articles, 5,000 plates, two years) and keeps it for later runs. The real
//! `valeo-central` binary then serves it on loopback (embedded broker,
//! authentication on: every request carries a JWT), and an open-loop load
//! generator sends 200 requests per second: a request's latency counts from
//! when it was due, so a slow answer cannot hide the ones queued behind it.
//! The queries rotate over four filters, each one page of 50 with its total:
//! partner + 30 days, plate prefix + status, article + site + 7 days, one
//! day. Three rounds of 20 s; the figures per round and their median are
//! printed.

#![allow(
    clippy::unwrap_used,
    reason = "a benchmark that fails should stop loudly"
)]
#![allow(clippy::print_stdout, reason = "printing the figures is the point")]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use valeo_central::store::{Store, SyntheticTickets};

const TICKETS: u64 = 1_000_000;
const RATE_PER_S: u64 = 200;
const ROUND_S: u64 = 20;
const ROUNDS: usize = 3;
const PASSWORD: &str = "bench-admin-password-0001";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Cargo's target directory, where the release binary and the data are.
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .parent()
                .unwrap()
                .join("target")
        },
        PathBuf::from,
    )
}

/// The database with the tickets, filled once.
fn database() -> PathBuf {
    let dir = target_dir().join("bench-data/ticket-list");
    let done = dir.join("filled-1m");
    if !done.exists() {
        std::fs::remove_dir_all(&dir).ok();
        std::fs::create_dir_all(&dir).unwrap();
        let started = Instant::now();
        let store = Store::open(&dir.join("central.db")).unwrap();
        store
            .fill_synthetic_tickets(SyntheticTickets {
                count: TICKETS,
                devices: 40,
                partners: 400,
                articles: 30,
                plates: 5_000,
                sites: 5,
                days: 730,
            })
            .unwrap();
        std::fs::write(&done, b"").unwrap();
        println!(
            "filled {TICKETS} tickets in {:.0} s",
            started.elapsed().as_secs_f64()
        );
    }
    dir
}

struct Central {
    child: Child,
    url: String,
}

impl Drop for Central {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

fn start_central(data_dir: &Path) -> Central {
    let binary = target_dir().join("release/valeo-central");
    assert!(
        binary.exists(),
        "run `cargo build --release --bin valeo-central` first"
    );
    let (http, mqtt) = (free_port(), free_port());
    let config = data_dir.join("bench.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = \"{}\"\n[http]\nlisten = \"127.0.0.1:{http}\"\n\
             [embedded_broker]\nlisten = \"127.0.0.1:{mqtt}\"\n\
             [mqtt]\nhost = \"127.0.0.1\"\nport = {mqtt}\n",
            data_dir.display()
        ),
    )
    .unwrap();
    let child = Command::new(binary)
        .args(["--config", &config.to_string_lossy()])
        .env("VALEO_ADMIN_PASSWORD", PASSWORD)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Central {
        child,
        url: format!("http://127.0.0.1:{http}"),
    }
}

/// The i-th query of the rotation.
fn query(i: u64) -> String {
    let day = |n: u64| {
        (chrono::NaiveDate::from_ymd_opt(2025, 1, 1).unwrap() + chrono::Duration::days(n as i64))
            .format("%Y-%m-%d")
            .to_string()
    };
    match i % 4 {
        0 => format!(
            "partner_id=P-{:04}&from={}&to={}",
            (i * 37) % 400,
            day(i % 600),
            day(i % 600 + 30)
        ),
        1 => format!(
            "plate=OS-{}%20{}&status=complete",
            (b'A' + (i % 26) as u8) as char,
            (i * 11) % 50
        ),
        2 => format!(
            "article_id=A-{:03}&site_id=SITE-{}&from={}&to={}",
            (i * 7) % 30,
            i % 5,
            day(i % 600),
            day(i % 600 + 7)
        ),
        _ => format!("from={}&to={}", day(i % 600), day(i % 600)),
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

struct Round {
    p50: Duration,
    p90: Duration,
    p99: Duration,
    max: Duration,
    errors: usize,
    sent: usize,
}

async fn round(client: &reqwest::Client, url: &str, token: &str, first: u64) -> Round {
    let total = RATE_PER_S * ROUND_S;
    let interval = Duration::from_nanos(1_000_000_000 / RATE_PER_S);
    let start = tokio::time::Instant::now() + Duration::from_millis(50);
    let results = Arc::new(std::sync::Mutex::new(Vec::with_capacity(total as usize)));
    let mut tasks = Vec::with_capacity(total as usize);
    for n in 0..total {
        let due = start + interval * n as u32;
        tokio::time::sleep_until(due).await;
        let (client, results) = (client.clone(), Arc::clone(&results));
        let request = client
            .get(format!(
                "{url}/api/v1/weighings?limit=50&{}",
                query(first + n)
            ))
            .bearer_auth(token);
        tasks.push(tokio::spawn(async move {
            let ok = match request.send().await {
                Ok(response) => {
                    let ok = response.status().is_success();
                    response.bytes().await.is_ok() && ok
                }
                Err(_) => false,
            };
            results.lock().unwrap().push((due.elapsed(), ok));
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let results = results.lock().unwrap();
    let mut latencies: Vec<Duration> = results.iter().map(|(d, _)| *d).collect();
    latencies.sort();
    Round {
        p50: percentile(&latencies, 50.0),
        p90: percentile(&latencies, 90.0),
        p99: percentile(&latencies, 99.0),
        max: latencies.last().copied().unwrap_or_default(),
        errors: results.iter().filter(|(_, ok)| !ok).count(),
        sent: results.len(),
    }
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

#[tokio::main]
async fn main() {
    let dir = database();
    let central = start_central(&dir);
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let token = loop {
        let login = client
            .post(format!("{}/api/v1/auth/login", central.url))
            .json(&serde_json::json!({"username": "admin", "password": PASSWORD}))
            .send()
            .await;
        if let Ok(response) = login
            && response.status().is_success()
        {
            let body: serde_json::Value = response.json().await.unwrap();
            break body["token"].as_str().unwrap().to_owned();
        }
        assert!(Instant::now() < deadline, "central did not come up");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // One request per filter first, so the pages of the indexes are read
    // from disk once before measuring, as on a server that has run a while.
    for i in 0..4 {
        client
            .get(format!(
                "{}/api/v1/weighings?limit=50&{}",
                central.url,
                query(i)
            ))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
    }
    println!(
        "ticket list: {TICKETS} tickets, {RATE_PER_S} requests/s open loop, {ROUNDS} rounds of {ROUND_S} s"
    );
    let mut p99s = Vec::new();
    for r in 0..ROUNDS {
        let result = round(
            &client,
            &central.url,
            &token,
            (r as u64) * RATE_PER_S * ROUND_S,
        )
        .await;
        println!(
            "round {}: sent {} errors {}  p50 {}  p90 {}  p99 {}  max {}",
            r + 1,
            result.sent,
            result.errors,
            ms(result.p50),
            ms(result.p90),
            ms(result.p99),
            ms(result.max)
        );
        p99s.push(result.p99);
    }
    p99s.sort();
    println!(
        "median p99 over {ROUNDS} rounds: {} (target: under 50 ms)",
        ms(p99s[ROUNDS / 2])
    );
}
