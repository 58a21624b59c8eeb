//! The operator terminal end to end: the real edge agent with a simulated
//! SysTec terminal and simulated lights, master data from the real central,
//! driven in headless Chromium by `tests/browser/terminal.mjs` (Playwright):
//! language switch, refusals, two-pass, storno, stored tare, manual entry,
//! quality, print views. Afterwards the tickets the browser made are at
//! central.

#![allow(
    clippy::unwrap_used,
    reason = "a failed step is the test failure; helpers here are test code"
)]

use std::path::Path;
use std::time::Duration;

use serde_json::json;
use valeo_system_tests::{
    Central, Edge, SIMULATED_SITE, eventually, free_port, get_json, run_browser_script,
};

/// The demo's master data with the stored tare weighed today, so the test
/// does not age out of the stored-tare rule.
fn master_data() -> serde_json::Value {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let text = std::fs::read_to_string(root.join("config/master-data.demo.json")).unwrap();
    let mut data: serde_json::Value = serde_json::from_str(&text).unwrap();
    for vehicle in data["vehicles"].as_array_mut().unwrap() {
        if let Some(tare) = vehicle
            .get_mut("stored_tare")
            .and_then(|t| t.as_object_mut())
        {
            tare.insert("weighed_at".into(), json!(chrono::Utc::now().to_rfc3339()));
        }
    }
    data
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_works_the_terminal_in_a_browser() {
    let dir = tempfile::tempdir().unwrap();
    let mqtt_port = free_port();
    let key = Edge::provision(dir.path(), "ui-box").unwrap();
    let central = Central::start(
        dir.path(),
        None,
        Some((free_port(), mqtt_port)),
        &[("ui-box", key.as_str())],
    )
    .await
    .unwrap();
    central.put_master_data(&master_data()).await.unwrap();
    let edge = Edge::start_with(dir.path(), "ui-box", mqtt_port, SIMULATED_SITE)
        .await
        .unwrap();
    edge.wait_master_data(1).await.unwrap();

    run_browser_script("terminal.mjs", &edge).await.unwrap();

    // What the operator did in the browser reached central.
    let http = central.http();
    let url = format!("{}/api/v1/weighings?device_id=ui-box", central.http_url);
    let page = eventually(
        "the browser's tickets at central",
        Duration::from_secs(20),
        || {
            let (http, url) = (http.clone(), url.clone());
            async move {
                get_json(&http, &url)
                    .await
                    .filter(|p| p["total"].as_u64() >= Some(4))
            }
        },
    )
    .await
    .unwrap();
    let items = page["items"].as_array().unwrap();
    assert!(
        items.iter().any(|t| t["status"] == "cancelled"),
        "the storno made in the browser is at central: {page}"
    );
    assert!(
        items
            .iter()
            .any(|t| t["tare_source"] == "stored" && t["legal_for_trade"] == true),
        "the stored-tare ticket, with alibi numbers, is at central: {page}"
    );
}
