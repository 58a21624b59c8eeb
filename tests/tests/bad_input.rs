//! Bad input from outside reaches central and the edge agent over their
//! real interfaces: garbage and forged MQTT payloads, a garbage config
//! document, bad HTTP requests. Each is answered or counted with a reason
//! naming what was wrong; nothing is recorded and both keep serving.

#![allow(
    clippy::unwrap_used,
    reason = "a failed step is the test failure; helpers here are test code"
)]

use std::time::Duration;

use rumqttc::{AsyncClient, MqttOptions, QoS};
use serde_json::json;
use valeo_sync::identity::DeviceKey;
use valeo_sync::wire::{Batch, GENESIS_HASH, Record};
use valeo_system_tests::{Central, Edge, eventually, get_json, get_text};

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

    let http = central.http();
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
    let metrics = get_text(&http, &format!("{}/metrics", central.http_url))
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
    let http = central.http();
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

const SIMULATED_BOX: &str = "[simulation]\nenabled = true\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_weighing_requests_and_bad_master_data_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let key = Edge::provision(dir.path(), "bad-box").unwrap();
    let central = Central::start(dir.path(), None, None, &[("bad-box", key.as_str())])
        .await
        .unwrap();
    let good = json!({"articles": [{"id": "A-WHEAT", "name": "Weizen"}]});
    let good_version = central.put_master_data(&good).await.unwrap()["version"]
        .as_u64()
        .unwrap();
    let edge = Edge::start_with(dir.path(), "bad-box", central.mqtt_port, SIMULATED_BOX)
        .await
        .unwrap();
    edge.wait_master_data(good_version).await.unwrap();
    let http = central.http();

    // The edge's local API.
    let cases: &[(&str, &str, &str, u16, &str)] = &[
        ("POST", "/api/v1/tickets", "not json", 400, "expected"),
        (
            "POST",
            "/api/v1/tickets",
            r#"{"plate": "X 1"}"#,
            400,
            "direction is required",
        ),
        (
            "POST",
            "/api/v1/tickets",
            r#"{"plate": "X 1", "direction": "sideways"}"#,
            400,
            "sideways",
        ),
        (
            "POST",
            "/api/v1/tickets",
            r#"{"plate": "X 1", "direction": "intake", "colour": "red"}"#,
            400,
            "colour",
        ),
        (
            "POST",
            "/api/v1/tickets",
            r#"{"plate": 7, "direction": "intake"}"#,
            400,
            "plate",
        ),
        (
            "POST",
            "/api/v1/tickets",
            r#"{"plate": "X 1", "direction": "intake", "weighing": "manual"}"#,
            400,
            "manual_weight_kg is required",
        ),
        (
            "POST",
            "/api/v1/tickets",
            r#"{"plate": "X 1", "direction": "intake", "manual_weight_kg": 5}"#,
            400,
            "only allowed",
        ),
        (
            "POST",
            "/api/v1/tickets",
            r#"{"plate": "X 1", "direction": "intake", "article_id": "NOPE"}"#,
            422,
            "unknown article \"NOPE\"",
        ),
        (
            "POST",
            "/api/v1/tickets",
            r#"{"plate": "X 1", "direction": "intake", "weighing": "stored-tare"}"#,
            422,
            "has no stored tare",
        ),
        (
            "POST",
            "/api/v1/tickets",
            r#"{"plate": "' OR 1=1; --", "direction": "intake", "operator": "x\u0000y"}"#,
            422,
            "operator",
        ),
        (
            "POST",
            "/api/v1/tickets/abc/second-weighing",
            "{}",
            400,
            "must be an integer",
        ),
        (
            "POST",
            "/api/v1/tickets/99/second-weighing",
            "{}",
            404,
            "no ticket number 99",
        ),
        (
            "POST",
            "/api/v1/tickets/99/cancel",
            r#"{"operator": "Anna"}"#,
            400,
            "missing field `reason`",
        ),
        (
            "POST",
            "/api/v1/tickets/99/cancel",
            r#"{"operator": "Anna", "reason": "typo"}"#,
            404,
            "no ticket number 99",
        ),
        (
            "POST",
            "/api/v1/tickets/99/reprint",
            r#"{"operator": "Anna"}"#,
            404,
            "no ticket number 99",
        ),
        (
            "POST",
            "/api/v1/tickets/99/quality",
            r#"{"operator": "Anna", "source": "manual"}"#,
            422,
            "at least one",
        ),
        (
            "POST",
            "/api/v1/tickets/99/quality",
            r#"{"operator": "Anna", "source": "manual", "moisture_percent": -3}"#,
            422,
            "moisture_percent",
        ),
        (
            "POST",
            "/api/v1/weighings",
            r#"{"plate": "NEW 1"}"#,
            422,
            "direction",
        ),
        ("GET", "/api/v1/tickets?limit=0", "", 400, "limit"),
        ("GET", "/api/v1/tickets?state=lost", "", 400, "lost"),
        (
            "PUT",
            "/api/v1/simulation/sensors/front",
            r#"{"blocked": true}"#,
            404,
            "no simulated position sensor \"front\"; configured: none",
        ),
        ("GET", "/api/v1/site", "", 404, "site_io"),
    ];
    for &(method, path, body, status, needle) in cases {
        let response = http
            .request(method.parse().unwrap(), format!("{}{path}", edge.http_url))
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
            .await
            .unwrap();
        let code = response.status().as_u16();
        let content_type = response.headers()["content-type"]
            .to_str()
            .unwrap()
            .to_owned();
        let problem: serde_json::Value = response.json().await.unwrap();
        let text = problem["detail"].as_str().unwrap_or_default().to_owned();
        assert_eq!(
            (code, content_type.as_str()),
            (status, "application/problem+json"),
            "{method} {path} {body}: {text}"
        );
        assert!(text.contains(needle), "{method} {path} {body}: {text}");
    }
    let tickets = get_json(&http, &format!("{}/api/v1/tickets", edge.http_url))
        .await
        .unwrap();
    assert_eq!(tickets, json!([]), "nothing recorded");
    assert_eq!(edge.unacknowledged_records().unwrap(), 0);

    // Central's master data API.
    let put = |body: &str, if_match: Option<&str>| {
        let mut request = http
            .put(format!("{}/api/v1/master-data", central.http_url))
            .header("content-type", "application/json")
            .body(body.to_owned());
        if let Some(tag) = if_match {
            request = request.header("if-match", tag);
        }
        request.send()
    };
    let cases: &[(&str, Option<&str>, u16, &str)] = &[
        (
            r#"{"lots": [{"id": "L", "name": "x", "article_id": "NOPE"}]}"#,
            None,
            422,
            "unknown article",
        ),
        (
            r#"{"articles": [{"id": "A", "name": "x"}], "colour": 1}"#,
            None,
            422,
            "colour",
        ),
        ("[1, 2]", None, 422, "JSON object"),
        ("{", None, 400, "EOF"),
        ("{}", Some("\"7\""), 412, "version 1"),
        ("{}", Some("yesterday"), 400, "If-Match"),
    ];
    for &(body, if_match, status, needle) in cases {
        let response = put(body, if_match).await.unwrap();
        let code = response.status().as_u16();
        let text = response.text().await.unwrap();
        assert_eq!(code, status, "{body} {if_match:?}: {text}");
        assert!(text.contains(needle), "{body} {if_match:?}: {text}");
    }
    let stored = get_json(&http, &format!("{}/api/v1/master-data", central.http_url))
        .await
        .unwrap();
    assert_eq!(
        stored["version"], good_version,
        "no bad document was stored"
    );

    // Garbage published straight on the box's config topic is refused by
    // the box with the reason; it keeps weighing with what it has.
    let mut options = MqttOptions::new("bad-config-test", "127.0.0.1", central.mqtt_port);
    options.set_keep_alive(Duration::from_secs(5));
    let (client, mut eventloop) = AsyncClient::new(options, 16);
    tokio::spawn(async move { while eventloop.poll().await.is_ok() {} });
    client
        .publish(
            "valeo/v1/bad-box/config",
            QoS::AtLeastOnce,
            false,
            b"{\"version\": 99, \"lots\": 5}".to_vec(),
        )
        .await
        .unwrap();
    let url = format!("{}/api/v1/master-data", edge.http_url);
    let cached = eventually(
        "the box to refuse the garbage",
        Duration::from_secs(15),
        || {
            let (http, url) = (http.clone(), url.clone());
            async move {
                get_json(&http, &url)
                    .await
                    .filter(|m| m.get("last_error").is_some())
            }
        },
    )
    .await
    .unwrap();
    assert_eq!(cached["version"], good_version, "{cached}");
    assert!(
        cached["last_error"].as_str().unwrap().contains("lots"),
        "{cached}"
    );
    let health = get_json(&http, &format!("{}/health", edge.http_url))
        .await
        .unwrap();
    assert_eq!(health["master_data"]["version"], good_version, "{health}");
    assert!(
        health["alarms"].to_string().contains("refused"),
        "the refusal is an alarm on /health: {health}"
    );
}
