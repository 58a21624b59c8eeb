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
use valeo_sync::identity::DeviceKey;
use valeo_sync::wire::{Batch, GENESIS_HASH, Record};
use valeo_system_tests::{Central, eventually, get_json};

/// Two consecutive records of `device`, starting the chain.
fn records(device: &str, note: &str) -> Vec<Record> {
    let first = Record::new(
        device,
        "e1",
        1,
        "test.note",
        "2026-11-22T08:00:00.000Z",
        json!({"note": note}),
        GENESIS_HASH,
    );
    let second = Record::new(
        device,
        "e1",
        2,
        "test.note",
        "2026-11-22T08:00:01.000Z",
        json!({"note": note}),
        &first.hash,
    );
    vec![first, second]
}

/// A batch of `records` on `topic_device`'s topic, signed with `key`.
fn signed(
    topic_device: &str,
    claimed: &str,
    records: Vec<Record>,
    key: &DeviceKey,
) -> (String, Vec<u8>) {
    let mut batch = Batch {
        v: 1,
        device_id: claimed.into(),
        epoch: "e1".into(),
        records,
        sig: String::new(),
    };
    key.sign(&mut batch);
    (format!("valeo/v1/{topic_device}/records"), batch.encode())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_batch_is_dead_lettered_with_its_reason_and_nothing_else_is_affected() {
    let dir = tempfile::tempdir().unwrap();
    let box_key = DeviceKey::from_secret([1; 32]);
    let stranger_key = DeviceKey::from_secret([2; 32]);
    let central = Central::start(
        dir.path(),
        None,
        None,
        &[("box-a", &box_key.public_key_hex())],
    )
    .await
    .unwrap();

    let mut options = MqttOptions::new("bad-input-test", "127.0.0.1", central.mqtt_port);
    options.set_max_packet_size(2 << 20, 2 << 20);
    let (client, mut eventloop) = AsyncClient::new(options, 16);
    tokio::spawn(async move { while eventloop.poll().await.is_ok() {} });

    let good = signed("box-a", "box-a", records("box-a", "real"), &box_key);
    let truncated = (good.0.clone(), good.1[..good.1.len() / 2].to_vec());
    let mut reversed = records("box-a", "real");
    reversed.reverse();
    let messages: Vec<(&str, (String, Vec<u8>))> = vec![
        ("accepted", good.clone()),
        ("replayed: recognised, not an error", good.clone()),
        (
            "malformed",
            (
                "valeo/v1/box-a/records".into(),
                b"\x00\xffnot json".to_vec(),
            ),
        ),
        ("malformed", truncated),
        (
            "unsupported_version",
            (
                "valeo/v1/box-a/records".into(),
                br#"{"v":99,"device_id":"box-a","epoch":"e","records":[],"sig":""}"#.to_vec(),
            ),
        ),
        (
            "too_large",
            (
                "valeo/v1/box-a/records".into(),
                vec![b'x'; valeo_sync::wire::MAX_BATCH_BYTES + 100],
            ),
        ),
        ("chain_break", signed("box-a", "box-a", reversed, &box_key)),
        (
            "identity_mismatch",
            signed("box-a", "box-b", records("box-b", "x"), &stranger_key),
        ),
        (
            "bad_signature",
            signed("box-a", "box-a", records("box-a", "forged"), &stranger_key),
        ),
        (
            "unknown_device",
            signed("box-z", "box-z", records("box-z", "x"), &stranger_key),
        ),
        (
            "conflict",
            signed("box-a", "box-a", records("box-a", "rewritten"), &box_key),
        ),
    ];
    let mut expected: Vec<&str> = messages
        .iter()
        .map(|(reason, _)| *reason)
        .filter(|r| !r.contains(':') && *r != "accepted")
        .collect();
    expected.sort_unstable();
    let n_expected = expected.len();
    for (_, (topic, payload)) in messages {
        client
            .publish(topic, QoS::AtLeastOnce, false, payload)
            .await
            .unwrap();
    }

    let http = reqwest::Client::new();
    let url = format!("{}/api/v1/dead-letters?limit=100", central.http_url);
    let letters = eventually(
        "every bad batch dead-lettered",
        Duration::from_secs(15),
        || {
            let (http, url) = (http.clone(), url.clone());
            async move {
                let letters = get_json(&http, &url).await?;
                (letters.as_array()?.len() >= n_expected).then_some(letters)
            }
        },
    )
    .await
    .unwrap();
    let mut reasons: Vec<&str> = letters
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["reason"].as_str().unwrap())
        .collect();
    reasons.sort_unstable();
    assert_eq!(reasons, expected, "{letters:#}");

    // The real records are stored once; nothing else changed.
    let devices = get_json(&http, &format!("{}/api/v1/devices", central.http_url))
        .await
        .unwrap();
    assert_eq!(devices[0]["device_id"], "box-a");
    assert_eq!(devices[0]["head_seq"], 2);
    let health = get_json(&http, &format!("{}/health", central.http_url))
        .await
        .unwrap();
    assert_eq!(health["status"], "ok", "central keeps running: {health}");
    assert_eq!(health["receiver"]["records_inserted"], 2);
    assert_eq!(
        health["receiver"]["records_duplicate"], 2,
        "the replay was recognised"
    );
    let metrics = http
        .get(format!("{}/metrics", central.http_url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("valeo_central_dead_letters{reason=\"bad_signature\"} 1"),
        "{metrics}"
    );
    assert!(
        central.process.log().contains("claims to be from"),
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
