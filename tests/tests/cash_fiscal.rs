//! A cash day through the real agent and central: sales signed by the
//! software TSE, a storno, a TSE outage in the middle (selling goes on,
//! receipts unsigned and marked, the outage recorded with start, end and
//! cause), the daily closing. Central verifies every signature on its own,
//! lists the outage, and hands an auditor a DSFinV-K export that passes the
//! `dsfinvk` package's validation and our field-table check, and a TAR
//! export whose every log message verifies.

#![allow(
    clippy::unwrap_used,
    reason = "a failed step is the test failure; helpers here are test code"
)]

use std::time::Duration;

use base64::Engine;
use serde_json::{Value, json};
use valeo_drivers::tse::{export, logmsg};
use valeo_system_tests::{
    Edge, eventually, get_json, get_text, post_json, start_pair, venv_python, workspace_root,
};

const CASH_BOX: &str = r#"
[simulation]
enabled = true
[cash]
cash_point = "KASSE-01"
trader_name = "Agrarhandel Musterfeld GmbH"
trader_address = "Feldweg 1, 49999 Musterfeld"
tax_number = "12/345/67890"
call_timeout_ms = 1000
update_interval_ms = 500
outage_probe_ms = 300
[cash.tse]
kind = "software"
"#;

async fn post(url: &str, body: Value) -> (u16, Value) {
    post_json(url, &body).await.unwrap()
}

fn line(text: &str, quantity_milli: i64, unit_price_cents: i64, vat_key: u16) -> Value {
    let product = i128::from(quantity_milli) * i128::from(unit_price_cents);
    let gross = (product + product.signum() * 500) / 1000;
    json!({
        "text": text, "quantity_milli": quantity_milli, "unit": "kg",
        "unit_price_cents": unit_price_cents, "gross_cents": gross as i64, "vat_key": vat_key,
    })
}

async fn sell(edge: &Edge, lines: Vec<Value>, payments: Value) -> Value {
    let (status, sale) = post(
        &format!("{}/api/v1/sales", edge.http_url),
        json!({"operator": "Anna", "lines": lines, "payments": payments}),
    )
    .await;
    assert_eq!(status, 201, "{sale}");
    sale
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cash_day_with_an_outage_is_verified_and_exported_at_central() {
    let dir = tempfile::tempdir().unwrap();
    let (central, edge) = start_pair(dir.path(), "cash-box", CASH_BOX).await.unwrap();
    let http = central.http();
    let tse_url = format!("{}/api/v1/tse", edge.http_url);
    let tse = eventually("the TSE ready", Duration::from_secs(15), || {
        let (http, url) = (http.clone(), tse_url.clone());
        async move {
            get_json(&http, &url)
                .await
                .filter(|t| t["available"] == true && t["info"].is_object())
        }
    })
    .await
    .unwrap();
    assert_eq!(tse["info"]["certified"], false, "{tse}");
    let serial = tse["info"]["serial_hex"].as_str().unwrap().to_owned();

    // Feed wheat (7 %) and a tarpaulin (19 %), paid cash; seed paid by card.
    let first = sell(
        &edge,
        vec![
            line("Futterweizen", 2500, 32, 2),
            line("Abdeckplane", 1000, 4990, 1),
        ],
        json!([{"type": "Bar", "amount_cents": 5070}]),
    )
    .await;
    assert_eq!(first["receipt_no"], 1);
    assert!(
        first["tse"]["qr_code"]
            .as_str()
            .unwrap()
            .starts_with("V0;KASSE-01;Kassenbeleg-V1;Beleg^49.90_0.80_0.00_0.00_0.00^50.70:Bar;"),
        "{first}"
    );
    logmsg::verify_qr(first["tse"]["qr_code"].as_str().unwrap()).unwrap();
    sell(
        &edge,
        vec![line("Saatgut Raps", 10_000, 1250, 2)],
        json!([{"type": "ECKarte", "amount_cents": 12500}]),
    )
    .await;
    let (status, storno) = post(
        &format!("{}/api/v1/receipts/1/storno", edge.http_url),
        json!({"operator": "Anna"}),
    )
    .await;
    assert_eq!(status, 201, "{storno}");
    assert_eq!(storno["cancels_receipt_no"], 1);
    let (status, twice) = post(
        &format!("{}/api/v1/receipts/1/storno", edge.http_url),
        json!({"operator": "Anna"}),
    )
    .await;
    assert_eq!(status, 409, "{twice}");

    // The TSE fails: the sale goes on, unsigned and marked.
    let response = http
        .put(format!("{}/api/v1/simulation/tse", edge.http_url))
        .json(&json!({"failing": "USB-TSE abgezogen"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 204);
    let unsigned = sell(
        &edge,
        vec![line("Mineralfutter", 25_000, 98, 2)],
        json!([{"type": "Bar", "amount_cents": 2450}]),
    )
    .await;
    assert!(unsigned["tse"].is_null(), "{unsigned}");
    assert!(
        unsigned["tse_error"]
            .as_str()
            .unwrap()
            .contains("USB-TSE abgezogen"),
        "{unsigned}"
    );
    let health = get_json(&http, &format!("{}/health", edge.http_url))
        .await
        .unwrap();
    assert!(
        health["alarms"].to_string().contains("TSE outage"),
        "{health}"
    );
    let metrics = get_text(&http, &format!("{}/metrics", edge.http_url))
        .await
        .unwrap();
    assert!(metrics.contains("valeo_edge_tse_outage 1"), "{metrics}");
    let page = get_text(&http, &format!("{}/api/v1/receipts/4/print", edge.http_url))
        .await
        .unwrap();
    assert!(page.contains("id=\"tse-outage\""), "{page}");

    // The TSE is back: the probe ends the outage, sales are signed again.
    http.put(format!("{}/api/v1/simulation/tse", edge.http_url))
        .json(&json!({"failing": null}))
        .send()
        .await
        .unwrap();
    eventually("the outage over", Duration::from_secs(10), || {
        let (http, url) = (http.clone(), tse_url.clone());
        async move {
            get_json(&http, &url)
                .await
                .filter(|t| t["available"] == true && t["outage"].is_null())
        }
    })
    .await
    .unwrap();
    let last = sell(
        &edge,
        vec![line("Futterweizen", 1000, 32, 2)],
        json!([{"type": "Bar", "amount_cents": 32}]),
    )
    .await;
    assert!(last["tse"].is_object(), "{last}");
    let page = get_text(&http, &format!("{}/api/v1/receipts/5/print", edge.http_url))
        .await
        .unwrap();
    for needle in [&serial, "data-qr=\"V0;KASSE-01;", "<svg", "not-certified"] {
        assert!(page.contains(needle), "{needle} missing in {page}");
    }
    let (status, closing) =
        post(&format!("{}/api/v1/cash/closing", edge.http_url), json!({})).await;
    assert_eq!(status, 201, "{closing}");
    assert_eq!(closing["z_nr"], 1);
    assert_eq!(closing["last_receipt_no"], 5);

    // Central: every sale, each verified on its own.
    let sales_url = format!(
        "{}/api/v1/cash-sales?device_id=cash-box&limit=50",
        central.http_url
    );
    let sales = eventually("five sales at central", Duration::from_secs(20), || {
        let (http, url) = (http.clone(), sales_url.clone());
        async move {
            get_json(&http, &url)
                .await
                .filter(|s| s.as_array().is_some_and(|a| a.len() == 5))
        }
    })
    .await
    .unwrap();
    for sale in sales.as_array().unwrap() {
        let no = sale["sale"]["receipt_no"].as_u64().unwrap();
        let verification = sale["verification"].as_str().unwrap();
        if no == 4 {
            assert!(
                verification.starts_with("unsigned: ") && verification.contains("USB-TSE"),
                "{sale}"
            );
        } else {
            assert_eq!(verification, "valid", "{sale}");
        }
    }
    let outages = eventually("the outage at central", Duration::from_secs(20), || {
        let (http, url) = (
            http.clone(),
            format!("{}/api/v1/tse-outages?device_id=cash-box", central.http_url),
        );
        async move {
            get_json(&http, &url).await.filter(|o| {
                o.as_array()
                    .is_some_and(|a| a.len() == 1 && a[0]["ended_at"].is_string())
            })
        }
    })
    .await
    .unwrap();
    assert!(
        outages[0]["cause"]
            .as_str()
            .unwrap()
            .contains("USB-TSE abgezogen"),
        "{outages}"
    );

    // The auditor's DSFinV-K export of the day, checked by the dsfinvk package.
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    let closing_url = format!(
        "{}/api/v1/dsfinvk?cash_point=KASSE-01&from={today}&to={today}",
        central.http_url
    );
    let zip = eventually("the closing at central", Duration::from_secs(20), || {
        let (http, url) = (http.clone(), closing_url.clone());
        async move {
            let response = http.get(&url).send().await.ok()?;
            if !response.status().is_success() {
                return None;
            }
            response.bytes().await.ok()
        }
    })
    .await
    .unwrap();
    let export_dir = dir.path().join("dsfinvk");
    std::fs::create_dir_all(&export_dir).unwrap();
    let zip_path = dir.path().join("dsfinvk.zip");
    std::fs::write(&zip_path, &zip).unwrap();
    let unzip = std::process::Command::new(venv_python())
        .args(["-m", "zipfile", "-e"])
        .arg(&zip_path)
        .arg(&export_dir)
        .output()
        .unwrap();
    assert!(unzip.status.success(), "{unzip:?}");
    let check = std::process::Command::new(venv_python())
        .arg(workspace_root().join("tests/peers/dsfinvk_check.py"))
        .arg(&export_dir)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "dsfinvk_check.py:\n{}\n{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    let tse_rows = std::fs::read_to_string(export_dir.join("transactions_tse.csv")).unwrap();
    assert!(tse_rows.contains("USB-TSE abgezogen"), "{tse_rows}");

    // And the TSE's TAR export of the day: every log message verifies.
    let tar = http
        .get(format!(
            "{}/api/v1/tses/{serial}/export?from={today}&to={today}",
            central.http_url
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(tar.status().as_u16(), 200);
    let tar = tar.bytes().await.unwrap();
    let exported = export::read_export(&tar).unwrap();
    let public_key = base64::engine::general_purpose::STANDARD
        .decode(tse["info"]["public_key_base64"].as_str().unwrap())
        .unwrap();
    // Four signed receipts, each a start and a finish log.
    assert_eq!(
        exported.logs.len(),
        8,
        "{:?}",
        exported.logs.iter().map(|l| &l.0).collect::<Vec<_>>()
    );
    for (name, log) in &exported.logs {
        logmsg::verify(log, &public_key).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(name, &logmsg::file_name(log));
    }
    assert!(!exported.certificates.is_empty());
    assert!(exported.info_csv.is_some());
}
