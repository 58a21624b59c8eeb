//! Backup and restore of central's database with real processes: a backup
//! taken through the API and one through the command line while central
//! runs and records arrive; central stopped, its database replaced by the
//! backup, started again: what the backup held is there, and what came
//! after it is sent again by the box, which keeps acknowledged records.

#![allow(
    clippy::unwrap_used,
    reason = "a failed step is the test failure; helpers here are test code"
)]

use std::time::Duration;

use serde_json::{Value, json};
use valeo_system_tests::{
    CASH_DESK, CENTRAL_CREDENTIALS_FILE, Central, Edge, binary, eventually, free_port, get_json,
    post_json, post_json_with, start_pair,
};

async fn sell(edge: &Edge, cents: i64) {
    let (status, sale) = post_json(
        &format!("{}/api/v1/sales", edge.http_url),
        &json!({"operator": "Anna",
            "lines": [{"text": "Futterweizen", "quantity_milli": 1000, "unit": "kg",
                       "unit_price_cents": cents, "gross_cents": cents, "vat_key": 2}],
            "payments": [{"type": "Bar", "amount_cents": cents}]}),
    )
    .await
    .unwrap();
    assert_eq!(status, 201, "{sale}");
}

async fn sales_at(central: &Central, count: usize) -> Value {
    let http = central.http();
    let url = format!("{}/api/v1/cash-sales", central.http_url);
    eventually("the sales at central", Duration::from_secs(20), || {
        let (http, url) = (http.clone(), url.clone());
        async move {
            get_json(&http, &url)
                .await
                .filter(|s| s.as_array().is_some_and(|a| a.len() == count))
        }
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_while_running_restores_into_a_working_central() {
    let dir = tempfile::tempdir().unwrap();
    let (central, edge) = start_pair(dir.path(), "backup-box", CASH_DESK)
        .await
        .unwrap();
    sell(&edge, 320).await;
    sales_at(&central, 1).await;

    let (status, backup) = post_json_with(
        &central.http(),
        &format!("{}/api/v1/backups", central.http_url),
        &json!({}),
    )
    .await
    .unwrap();
    assert_eq!(status, 201, "{backup}");
    let file = backup["file"].as_str().unwrap().to_owned();
    assert!(backup["bytes"].as_u64().unwrap() > 0);
    let listed = get_json(
        &central.http(),
        &format!("{}/api/v1/backups", central.http_url),
    )
    .await
    .unwrap();
    assert_eq!(listed[0]["file"], file.as_str(), "{listed}");

    // The command line does the same next to the running service.
    let cli = std::process::Command::new(binary("valeo-central").unwrap())
        .arg("--config")
        .arg(dir.path().join("central.toml"))
        .arg("--backup")
        .output()
        .unwrap();
    assert!(cli.status.success(), "{cli:?}");
    let cli_path = String::from_utf8_lossy(&cli.stdout).trim().to_owned();
    assert!(std::path::Path::new(&cli_path).exists(), "{cli_path}");

    // More arrives after the backup; then central is lost.
    sell(&edge, 640).await;
    sales_at(&central, 2).await;
    let mqtt_port = central.mqtt_port;
    drop(central);

    // Restore into a fresh data directory and start again on the same broker port.
    let restored = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(restored.path().join("central-data")).unwrap();
    std::fs::copy(
        dir.path().join("central-data/backups").join(&file),
        restored.path().join("central-data/central.db"),
    )
    .unwrap();
    // The backup holds the users and tokens: the admin's credentials go along.
    std::fs::copy(
        dir.path().join(CENTRAL_CREDENTIALS_FILE),
        restored.path().join(CENTRAL_CREDENTIALS_FILE),
    )
    .unwrap();
    // The box's key, as it was provisioned (loading does not change it).
    let key = Edge::provision(dir.path(), "backup-box").unwrap();
    let central = Central::start(
        restored.path(),
        None,
        Some((free_port(), mqtt_port)),
        &[("backup-box", key.as_str())],
    )
    .await
    .unwrap();
    // The box reconnects; central asks for what the backup lacks and the
    // box, which still keeps acknowledged records, sends it again.
    sell(&edge, 960).await;
    let sales = sales_at(&central, 3).await;
    let mut numbers: Vec<u64> = sales
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["sale"]["receipt_no"].as_u64().unwrap())
        .collect();
    numbers.sort_unstable();
    assert_eq!(numbers, [1, 2, 3], "{sales}");
    assert!(
        sales
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["verification"] == "valid"),
        "{sales}"
    );
}
