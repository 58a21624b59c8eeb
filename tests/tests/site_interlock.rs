//! Lights, barriers and position sensors through the real agent: simulated
//! pins configured like GPIO lines, driven through the simulation API. A
//! truck that is not fully on the platform is not weighed; the exit opens
//! only after the weighing is recorded; the entry turns green when the
//! platform is empty again.

#![allow(
    clippy::unwrap_used,
    reason = "a failed step is the test failure; helpers here are test code"
)]

use std::time::Duration;

use serde_json::{Value, json};
use valeo_system_tests::{Edge, SIMULATED_SITE, eventually, free_port, get_json};

async fn send(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    body: Value,
) -> (u16, Value) {
    let response = http.request(method, url).json(&body).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Waits until `/api/v1/site` matches `want` (a subset of its fields).
async fn site_is(http: &reqwest::Client, edge: &Edge, want: Value) -> Value {
    let url = format!("{}/api/v1/site", edge.http_url);
    eventually(&format!("site {want}"), Duration::from_secs(15), || {
        let (http, url, want) = (http.clone(), url.clone(), want.clone());
        async move {
            get_json(&http, &url)
                .await
                .filter(|site| want.as_object().unwrap().iter().all(|(k, v)| &site[k] == v))
        }
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truck_is_weighed_only_when_positioned_and_leaves_after_the_record() {
    let dir = tempfile::tempdir().unwrap();
    let edge = Edge::start_with(dir.path(), "site-box", free_port(), SIMULATED_SITE)
        .await
        .unwrap();
    let http = reqwest::Client::new();
    let api = |path: &str| format!("{}{path}", edge.http_url);
    site_is(
        &http,
        &edge,
        json!({"state": "free", "entry_light": "green", "exit_barrier": "closed"}),
    )
    .await;

    let (status, _) = send(
        &http,
        reqwest::Method::POST,
        api("/api/v1/simulation/truck"),
        json!({"weight_kg": 40000}),
    )
    .await;
    assert_eq!(status, 204);
    site_is(
        &http,
        &edge,
        json!({"state": "occupied", "entry_light": "red", "entry_barrier": "closed"}),
    )
    .await;

    // The trailer still stands in the front light barrier.
    let (status, _) = send(
        &http,
        reqwest::Method::PUT,
        api("/api/v1/simulation/sensors/front"),
        json!({"blocked": true}),
    )
    .await;
    assert_eq!(status, 204);
    site_is(&http, &edge, json!({"positioned": false})).await;
    let (status, problem) = send(
        &http,
        reqwest::Method::POST,
        api("/api/v1/tickets"),
        json!({"plate": "OS-Z 1", "direction": "intake"}),
    )
    .await;
    assert_eq!(status, 409, "{problem}");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("position sensor front is interrupted"),
        "{problem}"
    );
    let open = get_json(&http, &api("/api/v1/tickets")).await.unwrap();
    assert_eq!(open, json!([]), "nothing recorded");

    send(
        &http,
        reqwest::Method::PUT,
        api("/api/v1/simulation/sensors/front"),
        json!({"blocked": false}),
    )
    .await;
    let ticket = edge
        .weigh(
            "/api/v1/tickets",
            json!({"plate": "OS-Z 1", "direction": "intake"}),
        )
        .await
        .unwrap();
    assert_eq!(ticket["state"], "open");
    site_is(
        &http,
        &edge,
        json!({"state": "released", "exit_light": "green", "exit_barrier": "open", "entry_light": "red"}),
    )
    .await;

    // The next truck may not be weighed before this one has left.
    let (status, problem) = send(
        &http,
        reqwest::Method::POST,
        api("/api/v1/tickets"),
        json!({"plate": "OS-Z 2", "direction": "intake"}),
    )
    .await;
    assert_eq!(status, 409, "{problem}");
    assert!(
        problem["detail"].as_str().unwrap().contains("not left"),
        "{problem}"
    );

    let (status, _) = send(
        &http,
        reqwest::Method::DELETE,
        api("/api/v1/simulation/truck"),
        json!({}),
    )
    .await;
    assert_eq!(status, 204);
    site_is(
        &http,
        &edge,
        json!({"state": "free", "entry_light": "green", "exit_light": "red", "exit_barrier": "closed"}),
    )
    .await;
    let (status, problem) = send(
        &http,
        reqwest::Method::PUT,
        api("/api/v1/simulation/sensors/middle"),
        json!({"blocked": true}),
    )
    .await;
    assert_eq!(status, 404, "an unknown sensor is named: {problem}");
}
