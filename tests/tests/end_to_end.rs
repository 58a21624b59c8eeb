//! A truck weighed on a simulated MT-SICS terminal (over a real
//! pseudo-terminal) by the real edge agent, synced over a real broker to the
//! real central, and seen in central's API: against the embedded broker and
//! against Mosquitto, online and with central down while the edge weighs.

#![allow(
    clippy::unwrap_used,
    reason = "a failed step is the test failure; helpers here are test code"
)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use valeo_drivers::sim::mtsics::Faults;
use valeo_drivers::sim::pty::PtyScale;
use valeo_drivers::sim::truck::{TruckScale, TruckScaleParams};
use valeo_system_tests::{BrokerKind, Central, Edge, Mosquitto, eventually, get_json};

fn quick_scale() -> TruckScale {
    TruckScale::new(TruckScaleParams {
        ramp_ms: 400,
        settle_ms: 400,
        ..TruckScaleParams::default()
    })
}

/// Weighs one truck in (40 000 kg loaded) and out (14 980 kg empty).
async fn weigh_one_truck(edge: &Edge, scale: &TruckScale, plate: &str) -> u64 {
    scale.drive_on(40_000);
    let first = edge
        .weigh(
            "/api/v1/tickets",
            json!({"plate": plate, "direction": "intake"}),
        )
        .await
        .unwrap();
    assert_eq!(first["state"], "open");
    assert_eq!(first["first"]["weight"]["value"], 40_000);
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
    assert_eq!(second["net"]["value"], 25_020);
    scale.drive_off();
    ticket_no
}

/// Waits for the ticket in central's API and checks it.
async fn assert_ticket_at_central(central: &Central, device_id: &str, ticket_no: u64, plate: &str) {
    let http = central.http();
    let url = format!(
        "{}/api/v1/weighings?device_id={device_id}&status=complete",
        central.http_url
    );
    let item = eventually(
        "the complete ticket at central",
        Duration::from_secs(30),
        || {
            let (http, url) = (http.clone(), url.clone());
            async move {
                let page = get_json(&http, &url).await?;
                page["items"]
                    .as_array()?
                    .iter()
                    .find(|i| i["ticket_no"] == ticket_no)
                    .cloned()
            }
        },
    )
    .await
    .unwrap();
    assert_eq!(item["plate"], plate);
    assert_eq!(item["direction"], "intake");
    assert_eq!(item["unit"], "kg");
    assert_eq!(item["gross"], 40_000.0);
    assert_eq!(item["tare"], 14_980.0);
    assert_eq!(item["net"], 25_020.0);
    assert_eq!(item["first"]["scale_id"], "bridge-1");
    // The single-ticket endpoint returns the same ticket, with its proof:
    // both records, their hashes recomputed and linked.
    let id = item["id"].as_i64().unwrap();
    let mut one = get_json(
        &http,
        &format!("{}/api/v1/weighings/{id}", central.http_url),
    )
    .await
    .unwrap();
    let proof = one.as_object_mut().unwrap().remove("proof").unwrap();
    assert_eq!(one, item);
    assert_eq!(proof["chain_verified"], true, "{proof}");
    assert_eq!(proof["records"].as_array().unwrap().len(), 2, "{proof}");
}

/// Waits until the edge outbox holds nothing central has not acknowledged.
async fn assert_outbox_drained(edge: &Edge) {
    eventually(
        "the edge outbox to be fully acknowledged",
        Duration::from_secs(30),
        || async { (edge.unacknowledged_records().ok()? == 0).then_some(()) },
    )
    .await
    .unwrap();
    let health = get_json(
        &reqwest::Client::new(),
        &format!("{}/health", edge.http_url),
    )
    .await
    .unwrap();
    assert_eq!(health["outbox"]["pending_records"], 0);
    assert_eq!(health["outbox"]["acked_seq"], health["outbox"]["head_seq"]);
}

async fn two_weighings_reach_central(broker: BrokerKind) {
    // One id per broker kind: the tests run side by side.
    let device = match broker {
        BrokerKind::Embedded => "e2e-box-embedded",
        BrokerKind::Mosquitto => "e2e-box-mosquitto",
    };
    let dir = tempfile::tempdir().unwrap();
    let mosquitto = match broker {
        BrokerKind::Embedded => None,
        BrokerKind::Mosquitto => Some(Mosquitto::start(dir.path()).await.unwrap()),
    };
    let key = Edge::provision(dir.path(), device).unwrap();
    let central = Central::start(
        dir.path(),
        mosquitto.as_ref().map(|m| m.port),
        None,
        &[(device, &key)],
    )
    .await
    .unwrap();
    let scale = quick_scale();
    let pty = PtyScale::spawn(scale.clone(), Arc::new(Mutex::new(Faults::default()))).unwrap();
    let edge = Edge::start(dir.path(), device, central.mqtt_port, pty.path())
        .await
        .unwrap();

    let ticket_no = weigh_one_truck(&edge, &scale, "OS-AB 123").await;

    assert_ticket_at_central(&central, device, ticket_no, "OS-AB 123").await;
    assert_outbox_drained(&edge).await;
    assert_live_values_arrive(central.mqtt_port, device).await;
}

/// An integrator subscribes to the telemetry topic and sees the live weight.
async fn assert_live_values_arrive(mqtt_port: u16, device_id: &str) {
    let options = rumqttc::MqttOptions::new("integrator", "127.0.0.1", mqtt_port);
    let (client, mut eventloop) = rumqttc::AsyncClient::new(options, 16);
    client
        .subscribe(
            format!("valeo/v1/{device_id}/telemetry"),
            rumqttc::QoS::AtMostOnce,
        )
        .await
        .unwrap();
    let sample = tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            if let Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(p))) =
                eventloop.poll().await
            {
                let samples: serde_json::Value = serde_json::from_slice(&p.payload).unwrap();
                return samples[0].clone();
            }
        }
    })
    .await
    .expect("a telemetry message within 15 s");
    assert_eq!(sample["name"], "scale.bridge-1.weight");
    assert_eq!(sample["value"]["connected"], true);
    assert!(sample["at"].as_str().unwrap().ends_with('Z'));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_two_pass_weighing_reaches_central_over_the_embedded_broker() {
    two_weighings_reach_central(BrokerKind::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_two_pass_weighing_reaches_central_over_mosquitto() {
    two_weighings_reach_central(BrokerKind::Mosquitto).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_edge_weighs_while_central_is_down_and_delivers_later() {
    let dir = tempfile::tempdir().unwrap();
    let (http_port, mqtt_port) = (
        valeo_system_tests::free_port(),
        valeo_system_tests::free_port(),
    );
    let scale = quick_scale();
    // The terminal also sends line noise before its replies.
    let faults = Arc::new(Mutex::new(Faults {
        garbage_before_reply: true,
        ..Faults::default()
    }));
    let pty = PtyScale::spawn(scale.clone(), Arc::clone(&faults)).unwrap();

    let key = Edge::provision(dir.path(), "offline-box").unwrap();
    let devices = [("offline-box", key.as_str())];

    // No broker and no central yet: the edge starts and weighs anyway.
    let edge = Edge::start(dir.path(), "offline-box", mqtt_port, pty.path())
        .await
        .unwrap();
    let first_ticket = weigh_one_truck(&edge, &scale, "EL-X 1").await;
    assert!(
        edge.unacknowledged_records().unwrap() >= 2,
        "records wait in the outbox"
    );

    // Central comes up, then dies hard, then comes back: nothing is lost.
    let mut central = Central::start(dir.path(), None, Some((http_port, mqtt_port)), &devices)
        .await
        .unwrap();
    assert_ticket_at_central(&central, "offline-box", first_ticket, "EL-X 1").await;
    central.process.kill();
    let second_ticket = weigh_one_truck(&edge, &scale, "EL-X 2").await;
    let central = Central::start(dir.path(), None, Some((http_port, mqtt_port)), &devices)
        .await
        .unwrap();
    assert_ticket_at_central(&central, "offline-box", second_ticket, "EL-X 2").await;
    assert_outbox_drained(&edge).await;

    // Exactly two tickets, each once.
    let page = get_json(
        &central.http(),
        &format!(
            "{}/api/v1/weighings?device_id=offline-box",
            central.http_url
        ),
    )
    .await
    .unwrap();
    assert_eq!(page["total"], 2, "{page}");
}
