//! Integration events with real processes: a truck weighed by a real edge
//! box on a simulated terminal becomes `weighing.completed` on MQTT and at
//! a webhook (a small HTTP server in this test) that fails twice before it
//! answers 200; every request's signature is checked with Python's `hmac`.
//! The webhook is then down while central is killed and restarted, and
//! still gets every event afterwards, in order and once. A box that dies
//! becomes `device.offline`. Bad webhook requests are refused naming the
//! field.

#![allow(
    clippy::unwrap_used,
    reason = "a failed step is the test failure; helpers here are test code"
)]

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;
use valeo_drivers::sim::mtsics::Faults;
use valeo_drivers::sim::pty::PtyScale;
use valeo_drivers::sim::truck::{TruckScale, TruckScaleParams};
use valeo_system_tests::{
    Central, Edge, Mosquitto, eventually, free_port, get_json, post_json_with,
};

/// Fast retries, and enough of them to outlast a restart.
const EVENTS_CONFIG: &str =
    "[events]\ninitial_backoff_ms = 200\nmax_backoff_ms = 1000\nmax_attempts = 100\n";

/// One request the webhook receiver got, and what it answered.
#[derive(Debug, Clone)]
struct Hit {
    answered: u16,
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

impl Hit {
    fn event(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

/// A webhook receiver on a fixed port that answers from a script (then
/// 200) and can go down and come back.
#[derive(Debug, Clone)]
struct Receiver {
    port: u16,
    script: Arc<Mutex<VecDeque<u16>>>,
    hits: Arc<Mutex<Vec<Hit>>>,
    task: Arc<Mutex<Option<JoinHandle<()>>>>,
}

impl Receiver {
    fn new(script: &[u16]) -> Receiver {
        Receiver {
            port: free_port(),
            script: Arc::new(Mutex::new(script.iter().copied().collect())),
            hits: Arc::default(),
            task: Arc::default(),
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hooks/valeo", self.port)
    }

    async fn up(&self) {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", self.port))
            .await
            .unwrap();
        let (script, hits) = (Arc::clone(&self.script), Arc::clone(&self.hits));
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (script, hits) = (Arc::clone(&script), Arc::clone(&hits));
                tokio::spawn(serve_one(stream, script, hits));
            }
        });
        *self.task.lock().unwrap() = Some(task);
    }

    /// Stops listening: connections are refused.
    fn down(&self) {
        if let Some(task) = self.task.lock().unwrap().take() {
            task.abort();
        }
    }

    fn hits(&self) -> Vec<Hit> {
        self.hits.lock().unwrap().clone()
    }

    /// Ids of the events answered with 2xx, in arrival order.
    fn delivered_ids(&self) -> Vec<i64> {
        self.hits()
            .iter()
            .filter(|h| (200..300).contains(&h.answered))
            .map(|h| h.event()["id"].as_i64().unwrap())
            .collect()
    }
}

/// Reads one HTTP/1.1 request, records it and answers from the script.
async fn serve_one(
    mut stream: tokio::net::TcpStream,
    script: Arc<Mutex<VecDeque<u16>>>,
    hits: Arc<Mutex<Vec<Hit>>>,
) {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
        }
        assert!(buffer.len() < 64 * 1024, "request head too large");
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
    let headers: HashMap<String, String> = head
        .lines()
        .skip(1)
        .filter_map(|line| line.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let length: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    while buffer.len() < head_end + length {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
        }
    }
    let answered = script.lock().unwrap().pop_front().unwrap_or(200);
    hits.lock().unwrap().push(Hit {
        answered,
        headers,
        body: buffer[head_end..head_end + length].to_vec(),
    });
    let response =
        format!("HTTP/1.1 {answered} Scripted\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
    stream.write_all(response.as_bytes()).await.ok();
    stream.shutdown().await.ok();
}

/// Everything published under `valeo/v1/events/#`, subscribing again after
/// every reconnect (central's embedded broker restarts with it).
#[derive(Debug, Clone, Default)]
struct MqttTap {
    seen: Arc<Mutex<Vec<(String, Value)>>>,
    subscribed: Arc<std::sync::atomic::AtomicBool>,
}

impl MqttTap {
    fn start(port: u16) -> MqttTap {
        let tap = MqttTap::default();
        let seen = Arc::clone(&tap.seen);
        let subscribed = Arc::clone(&tap.subscribed);
        let mut options = MqttOptions::new(
            format!("events-test-{:08x}", rand::random::<u32>()),
            "127.0.0.1",
            port,
        );
        options.set_keep_alive(Duration::from_secs(5));
        let (client, mut eventloop) = AsyncClient::new(options, 16);
        tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        client
                            .subscribe("valeo/v1/events/#", QoS::AtLeastOnce)
                            .await
                            .unwrap();
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        subscribed.store(true, std::sync::atomic::Ordering::Relaxed);
                    }
                    Ok(Event::Incoming(Packet::Publish(publish))) => {
                        let event: Value = serde_json::from_slice(&publish.payload).unwrap();
                        seen.lock().unwrap().push((publish.topic, event));
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                }
            }
        });
        tap
    }

    /// The events seen, once each (consumers dedupe by id), in arrival order.
    fn events(&self) -> Vec<Value> {
        let mut ids = std::collections::HashSet::new();
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, e)| ids.insert(e["id"].as_i64().unwrap()))
            .map(|(_, e)| e.clone())
            .collect()
    }
}

/// Checks a `Valeo-Signature` header with Python's standard library, an
/// implementation independent of central's.
async fn python_verifies(secret: &str, header: &str, body: &[u8]) -> bool {
    const SCRIPT: &str = "import hashlib, hmac, sys\n\
        secret, header = sys.argv[1], sys.argv[2]\n\
        parts = dict(p.split('=', 1) for p in header.split(','))\n\
        body = sys.stdin.buffer.read()\n\
        mac = hmac.new(secret.encode(), parts['t'].encode() + b'.' + body, hashlib.sha256)\n\
        sys.exit(0 if hmac.compare_digest(mac.hexdigest(), parts['v1']) else 1)\n";
    let (secret, header, body) = (secret.to_owned(), header.to_owned(), body.to_vec());
    tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let mut child = std::process::Command::new("python3")
            .args(["-c", SCRIPT, &secret, &header])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .expect("python3 runs");
        child.stdin.take().unwrap().write_all(&body).unwrap();
        child.wait().unwrap().success()
    })
    .await
    .unwrap()
}

/// The event feed, all of it.
async fn feed(central: &Central) -> Vec<Value> {
    let page = central
        .http()
        .get(format!("{}/api/v1/events?limit=500", central.http_url))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let page: Value = page.json().await.unwrap();
    page["items"].as_array().unwrap().clone()
}

fn ids(events: &[Value]) -> Vec<i64> {
    events.iter().map(|e| e["id"].as_i64().unwrap()).collect()
}

/// Weighs a truck in (40 000 kg) and out (14 980 kg); returns the ticket number.
async fn weigh_one_truck(edge: &Edge, scale: &TruckScale, plate: &str) -> u64 {
    scale.drive_on(40_000);
    let first = edge
        .weigh(
            "/api/v1/tickets",
            json!({"plate": plate, "direction": "intake"}),
        )
        .await
        .unwrap();
    let ticket_no = first["ticket_no"].as_u64().unwrap();
    scale.drive_off();
    tokio::time::sleep(Duration::from_millis(500)).await;
    scale.drive_on(14_980);
    let second = edge
        .weigh(
            &format!("/api/v1/tickets/{ticket_no}/second-weighing"),
            json!({}),
        )
        .await
        .unwrap();
    assert_eq!(second["state"], "complete");
    scale.drive_off();
    ticket_no
}

async fn put_master_data(central: &Central, partner: &str) {
    central
        .put_master_data(&json!({"partners": [{"id": "P-1", "name": partner}]}))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_reach_mqtt_and_a_signed_webhook_in_order_across_failures_and_a_restart() {
    let device = "events-box";
    let dir = tempfile::tempdir().unwrap();
    let ports = (free_port(), free_port());
    let key = Edge::provision(dir.path(), device).unwrap();
    let devices = [(device, key.as_str())];
    let mut central = Central::start_with(dir.path(), None, Some(ports), &devices, EVENTS_CONFIG)
        .await
        .unwrap();
    let tap = MqttTap::start(central.mqtt_port);

    // The receiver fails twice, then takes everything.
    let receiver = Receiver::new(&[500, 500]);
    receiver.up().await;
    let (status, created) = post_json_with(
        &central.http(),
        &format!("{}/api/v1/webhooks", central.http_url),
        &json!({"url": receiver.url(), "events": ["*"], "description": "system test"}),
    )
    .await
    .unwrap();
    assert_eq!(status, 201, "{created}");
    let secret = created["secret"].as_str().unwrap().to_owned();
    let webhook_id = created["id"].as_i64().unwrap();
    let shown = central
        .http()
        .get(format!("{}/api/v1/webhooks/{webhook_id}", central.http_url))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert!(shown.get("secret").is_none(), "shown once only: {shown}");

    // A real box weighs a truck.
    let scale = TruckScale::new(TruckScaleParams {
        ramp_ms: 400,
        settle_ms: 400,
        ..TruckScaleParams::default()
    });
    let pty = PtyScale::spawn(scale.clone(), Arc::new(Mutex::new(Faults::default()))).unwrap();
    let mut edge = Edge::start(dir.path(), device, central.mqtt_port, pty.path())
        .await
        .unwrap();
    let ticket_no = weigh_one_truck(&edge, &scale, "OS-EV 1").await;

    // weighing.completed on MQTT, for the ticket the box produced.
    let completed = eventually(
        "weighing.completed on MQTT",
        Duration::from_secs(30),
        || async {
            tap.events()
                .into_iter()
                .find(|e| e["kind"] == "weighing.completed")
        },
    )
    .await
    .unwrap();
    assert_eq!(completed["data"]["ticket_no"], ticket_no, "{completed}");
    assert_eq!(completed["data"]["device_id"], device);
    assert_eq!(
        completed["subject"],
        completed["data"]["weighing_id"].to_string()
    );
    let weighing = central
        .http()
        .get(format!(
            "{}/api/v1/weighings/{}",
            central.http_url,
            completed["subject"].as_str().unwrap()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(weighing.status(), 200, "the subject is the weighing id");
    assert!(
        tap.seen
            .lock()
            .unwrap()
            .iter()
            .any(|(topic, e)| topic == "valeo/v1/events/weighing.completed"
                && e["id"] == completed["id"])
    );

    // The same event at the webhook, after the retries of whatever came first.
    eventually(
        "weighing.completed at the webhook",
        Duration::from_secs(30),
        || async {
            receiver
                .delivered_ids()
                .contains(&completed["id"].as_i64().unwrap())
                .then_some(())
        },
    )
    .await
    .unwrap();
    let hits = receiver.hits();
    assert_eq!(
        hits.iter().map(|h| h.answered).take(3).collect::<Vec<_>>(),
        [500, 500, 200]
    );
    let first_id = hits[0].event()["id"].clone();
    assert!(
        hits[..3].iter().all(|h| h.event()["id"] == first_id),
        "the failing event is retried before anything else"
    );
    for hit in &hits {
        let header = &hit.headers["valeo-signature"];
        assert!(
            python_verifies(&secret, header, &hit.body).await,
            "signature {header} of {}",
            String::from_utf8_lossy(&hit.body)
        );
        assert!(!python_verifies("0".repeat(64).as_str(), header, &hit.body).await);
        assert_eq!(hit.headers["content-type"], "application/json");
        let event = hit.event();
        assert_eq!(hit.headers["valeo-event-id"], event["id"].to_string());
        assert_eq!(
            hit.headers["valeo-event-kind"],
            event["kind"].as_str().unwrap()
        );
    }
    // In order, once each, exactly the feed.
    let delivered = receiver.delivered_ids();
    let mut sorted = delivered.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(delivered, sorted, "in id order, once each");
    let before = feed(&central).await;
    assert_eq!(delivered, ids(&before), "every event of the feed");
    let mqtt_ids = ids(&tap.events());
    assert!(
        mqtt_ids.windows(2).all(|w| w[0] < w[1]),
        "MQTT in id order: {mqtt_ids:?}"
    );
    assert_eq!(mqtt_ids, ids(&before), "every event on MQTT");

    // The receiver goes down; an event waits for it while central restarts.
    receiver.down();
    put_master_data(&central, "Hof Meyer GbR").await;
    let waiting = eventually(
        "a failed attempt at the down receiver",
        Duration::from_secs(20),
        || async {
            let page: Value = central
                .http()
                .get(format!(
                    "{}/api/v1/webhooks/{webhook_id}/deliveries?limit=1",
                    central.http_url
                ))
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            let head = page["items"][0].clone();
            (head["status"] == "pending" && head["attempts"].as_u64()? >= 1).then_some(head)
        },
    )
    .await
    .unwrap();
    assert!(waiting["last_error"].is_string(), "{waiting}");
    assert!(waiting["next_attempt_at"].is_string(), "{waiting}");
    central.process.kill();
    central = Central::start_with(dir.path(), None, Some(ports), &devices, EVENTS_CONFIG)
        .await
        .unwrap();
    put_master_data(&central, "Hof Meyer KG").await;
    receiver.up().await;
    let all = eventually(
        "every event at the receiver after the restart",
        Duration::from_secs(30),
        || async {
            let all = feed(&central).await;
            let changes = all
                .iter()
                .filter(|e| e["kind"] == "master_data.changed")
                .count();
            (changes == 2 && receiver.delivered_ids() == ids(&all)).then_some(all)
        },
    )
    .await
    .unwrap();
    assert_eq!(
        &ids(&all)[..before.len()],
        ids(&before),
        "the feed only grows"
    );

    // The box dies: its last will makes it offline, and that is an event.
    // It must have reconnected to the restarted broker first, or no broker
    // holds its will.
    let health = format!("{}/health", edge.http_url);
    eventually(
        "the box back at the restarted broker",
        Duration::from_secs(20),
        || async {
            let health = get_json(&reqwest::Client::new(), &health).await?;
            let uplink = &health["uplink"];
            (uplink["connected"] == true && uplink["disconnects"].as_u64()? >= 1).then_some(())
        },
    )
    .await
    .unwrap();
    edge.process.kill();
    let offline = eventually("device.offline", Duration::from_secs(30), || async {
        feed(&central)
            .await
            .into_iter()
            .find(|e| e["kind"] == "device.offline" && e["subject"] == device)
    })
    .await
    .unwrap();
    assert_eq!(offline["data"]["online"], false, "{offline}");
    assert_eq!(offline["data"]["device_id"], device);
    eventually(
        "device.offline at the webhook and on MQTT",
        Duration::from_secs(20),
        || async {
            let id = offline["id"].as_i64().unwrap();
            (receiver.delivered_ids().contains(&id) && ids(&tap.events()).contains(&id))
                .then_some(())
        },
    )
    .await
    .unwrap();
    // Central's view of the box says so too.
    let listed = eventually(
        "the box offline in the devices list",
        Duration::from_secs(10),
        || async {
            let devices = get_json(
                &central.http(),
                &format!("{}/api/v1/devices", central.http_url),
            )
            .await?;
            devices
                .as_array()?
                .iter()
                .find(|d| d["device_id"] == device && d["online"] == false)
                .cloned()
        },
    )
    .await
    .unwrap();
    assert!(listed["last_seen_at"].is_string(), "{listed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_webhook_requests_are_refused_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let central = Central::start_with(dir.path(), None, None, &[], "[events]\nmax_webhooks = 1\n")
        .await
        .unwrap();
    let url = format!("{}/api/v1/webhooks", central.http_url);
    let ok = "http://127.0.0.1:9/hook";
    let cases: Vec<(&str, Value, u16, &str)> = vec![
        (
            "ftp URL",
            json!({"url": "ftp://x.example/", "events": ["*"]}),
            422,
            "url",
        ),
        ("no URL", json!({"events": ["*"]}), 422, "url"),
        (
            "long URL",
            json!({"url": format!("https://x.example/{}", "a".repeat(2048)), "events": ["*"]}),
            422,
            "url",
        ),
        (
            "unknown kind",
            json!({"url": ok, "events": ["weighing.done"]}),
            422,
            "events[0]",
        ),
        ("no kinds", json!({"url": ok, "events": []}), 422, "events"),
        (
            "unknown field",
            json!({"url": ok, "events": ["*"], "secret": "mine"}),
            422,
            "secret",
        ),
        (
            "huge body",
            json!({"url": ok, "events": ["*"], "description": "x".repeat(20_000)}),
            413,
            "body",
        ),
        ("not an object", json!(["*"]), 400, "object"),
    ];
    for (what, body, status, field) in cases {
        let response = central.http().post(&url).json(&body).send().await.unwrap();
        assert_eq!(response.status().as_u16(), status, "{what}");
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json",
            "{what}"
        );
        let problem: Value = response.json().await.unwrap();
        assert!(
            problem["detail"].as_str().unwrap().contains(field),
            "{what}: {problem}"
        );
    }
    let not_json = central
        .http()
        .post(&url)
        .header("content-type", "application/json")
        .body("{\"url\":")
        .send()
        .await
        .unwrap();
    assert_eq!(not_json.status(), 400);

    // One webhook is the limit here; the second is refused.
    let (status, _) = post_json_with(&central.http(), &url, &json!({"url": ok, "events": ["*"]}))
        .await
        .unwrap();
    assert_eq!(status, 201);
    let (status, problem) =
        post_json_with(&central.http(), &url, &json!({"url": ok, "events": ["*"]}))
            .await
            .unwrap();
    assert_eq!(status, 409);
    assert!(
        problem["detail"].as_str().unwrap().contains("max_webhooks"),
        "{problem}"
    );

    let get = |path: String| {
        let http = central.http();
        async move { http.get(path).send().await.unwrap() }
    };
    for (path, status, needle) in [
        ("/api/v1/events?kind=weighing.done", 400, "kind"),
        ("/api/v1/events?after=x", 400, "after"),
        ("/api/v1/events?limit=0", 400, "limit"),
        ("/api/v1/webhooks/abc", 400, "id"),
        ("/api/v1/webhooks/999", 404, "999"),
        ("/api/v1/webhooks/999/deliveries", 404, "999"),
    ] {
        let response = get(format!("{}{path}", central.http_url)).await;
        assert_eq!(response.status().as_u16(), status, "{path}");
        let problem: Value = response.json().await.unwrap();
        assert!(
            problem["detail"].as_str().unwrap().contains(needle),
            "{path}: {problem}"
        );
    }
    let retry = central
        .http()
        .post(format!(
            "{}/api/v1/webhooks/1/deliveries/5/retry",
            central.http_url
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(retry.status(), 404);
    // Without credentials, nothing.
    let anonymous = reqwest::Client::new().get(&url).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_mosquitto_events_count_as_published_once_they_come_back() {
    let dir = tempfile::tempdir().unwrap();
    let mosquitto = Mosquitto::start(dir.path()).await.unwrap();
    let central = Central::start(dir.path(), Some(mosquitto.port), None, &[])
        .await
        .unwrap();
    let tap = MqttTap::start(mosquitto.port);
    eventually("the tap subscribed", Duration::from_secs(10), || async {
        tap.subscribed
            .load(std::sync::atomic::Ordering::Relaxed)
            .then_some(())
    })
    .await
    .unwrap();
    put_master_data(&central, "Hof Meyer GbR").await;
    put_master_data(&central, "Hof Meyer KG").await;
    let published = eventually("both events on MQTT", Duration::from_secs(20), || async {
        let events = tap.events();
        (events.len() == 2).then_some(events)
    })
    .await
    .unwrap();
    assert_eq!(ids(&published), ids(&feed(&central).await));
    assert!(
        published.iter().all(|e| e["kind"] == "master_data.changed"),
        "{published:?}"
    );
    // Central saw them come back through Mosquitto: its cursor moved.
    let db = dir.path().join("central-data/central.db");
    let newest = ids(&published)[1];
    eventually(
        "the MQTT cursor at the newest event",
        Duration::from_secs(20),
        || {
            let db = db.clone();
            async move {
                let conn = rusqlite::Connection::open_with_flags(
                    &db,
                    rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
                )
                .ok()?;
                let cursor: i64 = conn
                    .query_row(
                        "SELECT last_id FROM event_cursors WHERE name = 'mqtt'",
                        [],
                        |r| r.get(0),
                    )
                    .ok()?;
                (cursor == newest).then_some(())
            }
        },
    )
    .await
    .unwrap();
    assert!(
        !central.process.log().contains("did not come back"),
        "no republishing needed"
    );
}
