//! The cash desk in the operator terminal end to end: the real edge agent
//! with a `[cash]` section signing with the software TSE, driven in headless
//! Chromium by `tests/browser/cash.mjs` (Playwright): a counter sale, its
//! printed receipt with TSE data and QR code, a storno (refused a second
//! time), a refused bad input, a simulated TSE outage and the daily
//! closing. Afterwards the receipts the browser made are at central,
//! verified: signed ones `valid`, the one from the outage `unsigned`.

#![allow(
    clippy::unwrap_used,
    reason = "a failed step is the test failure; helpers here are test code"
)]

use std::time::Duration;

use valeo_system_tests::{CASH_DESK, eventually, get_json, run_browser_script, start_pair};

/// The receipt numbers the browser test reports on its `RECEIPTS {…}` line.
fn receipts_made(stdout: &str) -> (Vec<u64>, Vec<u64>) {
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("RECEIPTS "))
        .expect("the browser test prints a RECEIPTS line");
    let made: serde_json::Value = serde_json::from_str(line).unwrap();
    let numbers = |key: &str| -> Vec<u64> {
        made[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n.as_u64().unwrap())
            .collect()
    };
    (numbers("signed"), numbers("unsigned"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cashier_sells_and_cancels_in_the_browser() {
    let dir = tempfile::tempdir().unwrap();
    let (central, edge) = start_pair(dir.path(), "cash-box", CASH_DESK).await.unwrap();
    let stdout = run_browser_script("cash.mjs", &edge).await.unwrap();
    let (signed, unsigned) = receipts_made(&stdout);
    assert!(
        signed.len() >= 2,
        "the sale and its storno are signed: {stdout}"
    );

    // Every receipt the browser made reached central and passed its check.
    let http = central.http();
    let url = format!(
        "{}/api/v1/cash-sales?device_id=cash-box&limit=100",
        central.http_url
    );
    let expected = signed.len() + unsigned.len();
    let sales = eventually(
        "the browser's receipts at central",
        Duration::from_secs(20),
        || {
            let (http, url) = (http.clone(), url.clone());
            async move {
                get_json(&http, &url)
                    .await
                    .filter(|s| s.as_array().is_some_and(|a| a.len() >= expected))
            }
        },
    )
    .await
    .unwrap();
    let sales = sales.as_array().unwrap();
    let verification = |n: u64| -> String {
        let sale = sales
            .iter()
            .find(|s| s["sale"]["receipt_no"].as_u64() == Some(n))
            .unwrap_or_else(|| panic!("receipt {n} is not at central: {sales:?}"));
        sale["verification"].as_str().unwrap().to_owned()
    };
    for &n in &signed {
        assert_eq!(verification(n), "valid", "receipt {n} at central");
    }
    for &n in &unsigned {
        let v = verification(n);
        assert!(v.starts_with("unsigned"), "receipt {n} at central is {v}");
    }
    let storno = sales
        .iter()
        .find(|s| s["sale"]["cancels_receipt_no"].as_u64() == Some(signed[0]))
        .unwrap_or_else(|| panic!("the storno of receipt {} is at central", signed[0]));
    assert_eq!(storno["sale"]["receipt_no"].as_u64(), Some(signed[1]));
    assert_eq!(storno["sale"]["lines"][0]["gross_cents"], -800);
    assert_eq!(
        sales.len(),
        expected,
        "the refused input recorded nothing: {sales:?}"
    );
}
