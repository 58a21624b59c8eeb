//! Central as operations see it, over real HTTP: `/health` reports the
//! process's memory and CPU time, every answer carries a request id (the
//! caller's when it sent a sane one), and `/metrics` has a latency
//! histogram per route.

#![allow(
    clippy::unwrap_used,
    reason = "a failed step is the test failure; helpers here are test code"
)]

use valeo_system_tests::{Central, free_port, get_text};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_request_ids_and_latency_histograms() {
    let dir = tempfile::tempdir().unwrap();
    let central = Central::start(dir.path(), None, Some((free_port(), free_port())), &[])
        .await
        .unwrap();
    let http = central.http();

    let health: serde_json::Value = http
        .get(format!("{}/health", central.http_url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        health["process"]["rss_bytes"].as_u64().unwrap() > 1024 * 1024,
        "{health}"
    );
    assert!(health["process"]["cpu_seconds"].is_number(), "{health}");
    assert_eq!(health["database"], "ok");

    let answer = http
        .get(format!("{}/api/v1/weighings", central.http_url))
        .header("x-request-id", "office-7f3a")
        .send()
        .await
        .unwrap();
    assert_eq!(answer.headers()["x-request-id"], "office-7f3a");
    // An id that could smuggle something into the logs is replaced.
    let answer = http
        .get(format!("{}/api/v1/weighings", central.http_url))
        .header("x-request-id", "a b\"c")
        .send()
        .await
        .unwrap();
    let id = answer.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(id.len(), 16, "{id}");
    let problem = http
        .get(format!("{}/api/v1/nothing-here", central.http_url))
        .send()
        .await
        .unwrap();
    assert!(problem.headers().contains_key("x-request-id"));

    let metrics = get_text(&http, &format!("{}/metrics", central.http_url))
        .await
        .unwrap();
    for needle in [
        "# TYPE valeo_central_http_request_duration_seconds histogram",
        "valeo_central_http_request_duration_seconds_count{method=\"GET\",route=\"/api/v1/weighings\"} 2",
        "valeo_central_http_request_duration_seconds_bucket{method=\"GET\",route=\"/api/v1/weighings\",le=\"+Inf\"} 2",
        "valeo_central_resident_memory_bytes ",
        "valeo_central_devices 0",
    ] {
        assert!(metrics.contains(needle), "{needle} missing in\n{metrics}");
    }
}
