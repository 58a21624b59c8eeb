//! A day at the weighbridge with the line to central cut: master data
//! arrives from central over the retained config topic, then central is
//! gone while the operator weighs two trucks in, one out, one against its
//! stored tare, cancels one ticket, reprints one and enters a quality
//! sample. When central is back, every ticket is there exactly once, as
//! the box has it: cancellation applied, master data names kept.

#![allow(
    clippy::unwrap_used,
    reason = "a failed step is the test failure; helpers here are test code"
)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use valeo_drivers::sim::mtsics::Faults;
use valeo_drivers::sim::pty::PtyScale;
use valeo_drivers::sim::truck::{TruckScale, TruckScaleParams};
use valeo_system_tests::{Central, Edge, eventually, free_port, get_json};

fn master_data() -> Value {
    json!({
        "partners": [{"id": "P-100", "name": "Hof Meyer GbR"}, {"id": "P-200", "name": "Agrarhandel Nord"}],
        "articles": [{"id": "A-WHEAT", "name": "Weizen"}, {"id": "A-RAPE", "name": "Raps"}],
        "vehicles": [{"plate": "OS-ST 9", "stored_tare": {
            "weight": {"value": 14000, "decimals": 0, "unit": "kg"},
            "weighed_at": chrono::Utc::now().to_rfc3339(), "alibi_id": "000817"}}],
        "locations": [{"id": "SILO-3", "name": "Silo 3"}],
        "lots": [{"id": "L-44", "name": "Charge 44", "article_id": "A-WHEAT"}]
    })
}

/// Puts `kg` on the bridge and runs `step` until the terminal gives a
/// stable weight for it.
async fn weigh(edge: &Edge, scale: &TruckScale, kg: i64, path: &str, body: Value) -> Value {
    scale.drive_on(kg);
    let ticket = edge.weigh(path, body).await.unwrap();
    scale.drive_off();
    tokio::time::sleep(Duration::from_millis(300)).await;
    ticket
}

async fn post(edge: &Edge, path: &str, body: Value) -> Value {
    let response = reqwest::Client::new()
        .post(format!("{}{path}", edge.http_url))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(
        response.status().is_success(),
        "{path}: {}",
        response.status()
    );
    response.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_day_offline_reaches_central_complete_once_the_line_is_back() {
    let dir = tempfile::tempdir().unwrap();
    let (http_port, mqtt_port) = (free_port(), free_port());
    let scale = TruckScale::new(TruckScaleParams {
        ramp_ms: 300,
        settle_ms: 300,
        ..TruckScaleParams::default()
    });
    let pty = PtyScale::spawn(scale.clone(), Arc::new(Mutex::new(Faults::default()))).unwrap();
    let key = Edge::provision(dir.path(), "day-box").unwrap();
    let devices = [("day-box", key.as_str())];

    let mut central = Central::start(dir.path(), None, Some((http_port, mqtt_port)), &devices)
        .await
        .unwrap();
    let stored = central.put_master_data(&master_data()).await.unwrap();
    let version = stored["version"].as_u64().unwrap();
    let edge = Edge::start(dir.path(), "day-box", mqtt_port, pty.path())
        .await
        .unwrap();
    edge.wait_master_data(version).await.unwrap();

    // The line is cut: central and its broker are gone for the day.
    central.process.kill();

    let intake = |plate: &str| {
        json!({"plate": plate, "direction": "intake", "partner_id": "P-100",
               "lot_id": "L-44", "location_id": "SILO-3", "operator": "Anna"})
    };
    let t1 = weigh(&edge, &scale, 40_000, "/api/v1/tickets", intake("OS-A 1")).await;
    let t2 = weigh(&edge, &scale, 38_000, "/api/v1/tickets", intake("OS-A 2")).await;
    let t3 = weigh(
        &edge,
        &scale,
        15_000,
        "/api/v1/tickets",
        json!({"plate": "OS-B 3", "direction": "outgoing", "partner_id": "P-200",
               "article_id": "A-RAPE", "operator": "Anna"}),
    )
    .await;
    assert_eq!(t3["article"]["name"], "Raps");
    let second = |no: &Value| format!("/api/v1/tickets/{no}/second-weighing");
    let operator = json!({"operator": "Ben"});
    let t1 = weigh(
        &edge,
        &scale,
        14_980,
        &second(&t1["ticket_no"]),
        operator.clone(),
    )
    .await;
    let t2 = weigh(
        &edge,
        &scale,
        13_000,
        &second(&t2["ticket_no"]),
        operator.clone(),
    )
    .await;
    let t3 = weigh(
        &edge,
        &scale,
        41_000,
        &second(&t3["ticket_no"]),
        operator.clone(),
    )
    .await;
    assert_eq!(
        [
            &t1["net"]["value"],
            &t2["net"]["value"],
            &t3["net"]["value"]
        ],
        [25_020, 25_000, 26_000]
    );
    let t4 = weigh(
        &edge,
        &scale,
        38_000,
        "/api/v1/tickets",
        json!({"plate": "os-st 9", "direction": "intake", "article_id": "A-WHEAT",
               "weighing": "stored-tare", "operator": "Anna"}),
    )
    .await;
    assert_eq!(
        (&t4["state"], &t4["net"]["value"]),
        (&json!("complete"), &json!(24_000))
    );
    let no = |t: &Value| t["ticket_no"].as_u64().unwrap();
    post(
        &edge,
        &format!("/api/v1/tickets/{}/cancel", no(&t2)),
        json!({"operator": "Anna", "reason": "wrong partner"}),
    )
    .await;
    post(
        &edge,
        &format!("/api/v1/tickets/{}/reprint", no(&t1)),
        json!({"operator": "Anna"}),
    )
    .await;
    post(
        &edge,
        &format!("/api/v1/tickets/{}/quality", no(&t1)),
        json!({"operator": "Anna", "source": "manual", "moisture_percent": 14.5}),
    )
    .await;
    assert!(
        edge.unacknowledged_records().unwrap() >= 10,
        "the day waits in the outbox"
    );

    // The line is back.
    let central = Central::start(dir.path(), None, Some((http_port, mqtt_port)), &devices)
        .await
        .unwrap();
    let http = central.http();
    let url = format!(
        "{}/api/v1/weighings?device_id=day-box&limit=50",
        central.http_url
    );
    let page = eventually(
        "the day's tickets at central",
        Duration::from_secs(30),
        || {
            let (http, url) = (http.clone(), url.clone());
            async move {
                get_json(&http, &url).await.filter(|p| {
                    p["total"] == 4
                        && p["items"].as_array().is_some_and(|items| {
                            items
                                .iter()
                                .any(|t| !t["quality"].as_array().unwrap().is_empty())
                        })
                })
            }
        },
    )
    .await
    .unwrap();
    let by_no = |n: u64| {
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["ticket_no"] == n)
            .unwrap()
            .clone()
    };
    let (c1, c2, c3, c4) = (
        by_no(no(&t1)),
        by_no(no(&t2)),
        by_no(no(&t3)),
        by_no(no(&t4)),
    );
    assert_eq!(
        (&c1["status"], &c1["net"]),
        (&json!("complete"), &json!(25_020.0))
    );
    assert_eq!(c1["partner"]["name"], "Hof Meyer GbR");
    assert_eq!(
        c1["article"]["name"], "Weizen",
        "the article follows from the lot"
    );
    assert_eq!(c1["lot"]["id"], "L-44");
    assert_eq!(c1["prints"], 1);
    assert_eq!(c1["quality"][0]["moisture_percent"], 14.5);
    assert_eq!(c2["status"], "cancelled");
    assert_eq!(c2["cancellation"]["reason"], "wrong partner");
    assert_eq!(c2["net"], 25_000.0, "a storno keeps the weighings");
    assert_eq!(
        (&c3["direction"], &c3["gross"]),
        (&json!("outgoing"), &json!(41_000.0))
    );
    assert_eq!(
        (&c4["tare_source"], &c4["net"]),
        (&json!("stored"), &json!(24_000.0))
    );
    assert_eq!(
        c4["second"]["alibi_id"], "000817",
        "the stored tare's own alibi number"
    );

    // Central's records are all understood: no materialisation errors.
    let cancelled = get_json(
        &http,
        &format!(
            "{}/api/v1/weighings?device_id=day-box&status=cancelled",
            central.http_url
        ),
    )
    .await
    .unwrap();
    assert_eq!(cancelled["total"], 1, "{cancelled}");
    let dead = get_json(&http, &format!("{}/api/v1/dead-letters", central.http_url))
        .await
        .unwrap();
    assert_eq!(dead.as_array().map(Vec::len), Some(0), "{dead}");
}
