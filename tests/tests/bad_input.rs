//! Bad input from outside reaches central over its real interfaces: garbage
//! and forged MQTT payloads, bad HTTP requests. Central answers or counts
//! each with a reason and keeps serving.

#![allow(
    clippy::unwrap_used,
    reason = "a failed step is the test failure; helpers here are test code"
)]

use std::time::Duration;

use rumqttc::{AsyncClient, MqttOptions, QoS};
use serde_json::json;
use valeo_sync::wire::{Batch, GENESIS_HASH, Record};
use valeo_system_tests::{Central, eventually, get_json};

fn forged_batch(topic_device: &str, claimed_device: &str) -> (String, Vec<u8>) {
    let record = Record::new(
        claimed_device,
        "e1",
        1,
        "weighing.first",
        "2026-11-22T08:00:00.000Z",
        json!({}),
        GENESIS_HASH,
    );
    let batch = Batch {
        v: 1,
        device_id: claimed_device.into(),
        epoch: "e1".into(),
        records: vec![record],
        sig: String::new(),
    };
    (format!("valeo/v1/{topic_device}/records"), batch.encode())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_forged_batches_are_counted_and_never_stored() {
    let dir = tempfile::tempdir().unwrap();
    let central = Central::start(dir.path(), None, None, &[]).await.unwrap();

    let mut options = MqttOptions::new("bad-input-test", "127.0.0.1", central.mqtt_port);
    options.set_max_packet_size(1 << 20, 1 << 20);
    let (client, mut eventloop) = AsyncClient::new(options, 16);
    tokio::spawn(async move { while eventloop.poll().await.is_ok() {} });
    let garbage: Vec<(String, Vec<u8>)> = vec![
        (
            "valeo/v1/box-a/records".into(),
            b"\x00\xffnot json at all".to_vec(),
        ),
        ("valeo/v1/box-a/records".into(), b"{\"v\":1}".to_vec()),
        (
            "valeo/v1/box-a/records".into(),
            br#"{"v":99,"device_id":"box-a","epoch":"e","records":[]}"#.to_vec(),
        ),
        forged_batch("box-a", "box-b"),
        (
            "valeo/v1/box-a/records".into(),
            vec![b'x'; valeo_sync::wire::MAX_BATCH_BYTES + 100],
        ),
    ];
    let n_bad = garbage.len() as u64;
    for (topic, payload) in garbage {
        client
            .publish(topic, QoS::AtLeastOnce, false, payload)
            .await
            .unwrap();
    }

    let http = reqwest::Client::new();
    let health_url = format!("{}/health", central.http_url);
    let health = eventually(
        "central to count the bad messages",
        Duration::from_secs(15),
        || {
            let (http, url) = (http.clone(), health_url.clone());
            async move {
                let h = get_json(&http, &url).await?;
                (h["receiver"]["messages_malformed"].as_u64()? >= n_bad).then_some(h)
            }
        },
    )
    .await
    .unwrap();
    assert_eq!(health["status"], "ok", "central keeps running: {health}");
    assert_eq!(health["receiver"]["records_inserted"], 0);
    let page = get_json(&http, &format!("{}/api/v1/weighings", central.http_url))
        .await
        .unwrap();
    assert_eq!(page["total"], 0);
    let log = central.process.log();
    assert!(
        log.contains("claims to be from"),
        "the log names the forged identity"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_http_requests_get_problem_details() {
    let dir = tempfile::tempdir().unwrap();
    let central = Central::start(dir.path(), None, None, &[]).await.unwrap();
    let http = reqwest::Client::new();
    let cases = [
        ("/api/v1/weighings?limit=0", 400, "limit"),
        ("/api/v1/weighings?limit=abc", 400, "limit"),
        ("/api/v1/weighings?status=lost", 400, "status"),
        ("/api/v1/weighings?color=red", 400, "color"),
        ("/api/v1/weighings/abc", 400, "integer"),
        ("/api/v1/weighings/999999", 404, "999999"),
        ("/api/v1/nothing-here", 404, "no such resource"),
    ];
    for (path, status, needle) in cases {
        let response = http
            .get(format!("{}{path}", central.http_url))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), status, "{path}");
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json",
            "{path}"
        );
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["status"], status);
        assert!(
            body["detail"].as_str().unwrap().contains(needle),
            "{path}: {body}"
        );
    }
}
