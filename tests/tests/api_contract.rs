//! Central's API keeps the contract its OpenAPI document states: a real
//! central with a real box (one truck weighed in and out, one cash sale
//! and the day's closing, a command, field values, a webhook to a closed
//! loopback port) is exercised by schemathesis, reading the document from
//! `GET /api/v1/openapi.json`. Every operation must answer without a
//! server error, with a status, content type and body the document
//! describes.

#![allow(
    clippy::unwrap_used,
    reason = "a failed step is the test failure; helpers here are test code"
)]

use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use valeo_system_tests::{Central, Edge, eventually, get_json, post_json, start_pair, venv_python};

/// A simulated bridge without site I/O (weighings need no positioned
/// truck), simulated Modbus field devices, and a cash desk signing with
/// the software TSE.
const CONTRACT_BOX: &str = r#"
[simulation]
enabled = true
scale_id = "sim-bridge-1"
modbus = true
[cash]
cash_point = "KASSE-01"
trader_name = "Agrarhandel Musterfeld GmbH"
trader_address = "Feldweg 1, 49999 Musterfeld"
tax_number = "12/345/67890"
[cash.tse]
kind = "software"
"#;

const DEVICE_ID: &str = "contract-box";

/// Fixed, so a failure can be replayed with the same inputs.
const SEED: &str = "20261129";
/// Test cases per operation and phase: enough to reach the handlers'
/// branches, few enough for the whole run to stay within a few minutes.
const MAX_EXAMPLES: &str = "25";
/// The whole schemathesis run, at most.
const RUN_TIMEOUT: Duration = Duration::from_secs(240);

/// The checks every answer must pass.
const CHECKS: &str = "not_a_server_error,status_code_conformance,\
                      content_type_conformance,response_schema_conformance";

/// Operations left out, each because it would break the run itself or
/// leave the machine.
const EXCLUDED: [(&str, &str); 4] = [
    // Revoking tokens: the run's own admin token is listed by
    // `GET /api/v1/tokens`, and stateful testing follows that link.
    ("DELETE /api/v1/tokens/{id}", "revokes the run's token"),
    // Changing users can disable `admin` or take its role away.
    ("PATCH /api/v1/users/{username}", "disables the run's user"),
    // Central delivers events to whatever host a generated URL names.
    ("POST /api/v1/webhooks", "sends requests beyond loopback"),
    // Deleting webhooks removes the one the delivery operations need.
    ("DELETE /api/v1/webhooks/{id}", "deletes the seeded webhook"),
];

/// Puts `kg` on the simulated bridge.
async fn drive_on(edge: &Edge, kg: i64) {
    let (status, body) = post_json(
        &format!("{}/api/v1/simulation/truck", edge.http_url),
        &json!({"weight_kg": kg}),
    )
    .await
    .unwrap();
    assert!((200..300).contains(&status), "drive on: {status} {body}");
}

/// POSTs to central as admin; the answer must be `expected`.
async fn post_central(central: &Central, path: &str, body: Value, expected: u16) -> Value {
    let response = central
        .http()
        .post(format!("{}{path}", central.http_url))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let answer: Value = response.json().await.unwrap_or(Value::Null);
    assert_eq!(status, expected, "POST {path}: {answer}");
    answer
}

/// Waits until `GET path` at central gives JSON that `ready` accepts.
async fn wait_for(central: &Central, what: &str, path: &str, ready: fn(&Value) -> bool) {
    let (http, url) = (central.http(), format!("{}{path}", central.http_url));
    eventually(what, Duration::from_secs(30), || {
        let (http, url) = (http.clone(), url.clone());
        async move { get_json(&http, &url).await.filter(ready) }
    })
    .await
    .unwrap();
}

/// What the seeded data is called, for schemathesis to use besides the
/// values it generates.
struct Seeded {
    business_day: String,
    tse_serial: String,
}

/// Gives central something behind every kind of resource: master data,
/// a complete weighing, a signed cash sale and its day's closing, a
/// command with the box's result, field values and a webhook with a
/// failed delivery.
async fn seed(central: &Central, edge: &Edge) -> Seeded {
    post_central(
        central,
        "/api/v1/partners",
        json!({"id": "P-CONTRACT", "name": "Hof Meyer GbR", "roles": ["supplier"]}),
        201,
    )
    .await;
    post_central(
        central,
        "/api/v1/articles",
        json!({"id": "A-CONTRACT", "name": "Weizen"}),
        201,
    )
    .await;
    post_central(
        central,
        "/api/v1/webhooks",
        // Port 9 (discard) is closed here: deliveries fail and are kept.
        json!({"url": "http://127.0.0.1:9/hook", "events": ["*"]}),
        201,
    )
    .await;
    let master = get_json(
        &central.http(),
        &format!("{}/api/v1/master-data", central.http_url),
    )
    .await
    .unwrap();
    edge.wait_master_data(master["version"].as_u64().unwrap())
        .await
        .unwrap();

    drive_on(edge, 40_000).await;
    let first = edge
        .weigh(
            "/api/v1/tickets",
            json!({"plate": "OS-CT 1", "direction": "intake", "partner_id": "P-CONTRACT",
                   "article_id": "A-CONTRACT", "operator": "Anna"}),
        )
        .await
        .unwrap();
    drive_on(edge, 14_980).await;
    edge.weigh(
        &format!("/api/v1/tickets/{}/second-weighing", first["ticket_no"]),
        json!({"operator": "Ben"}),
    )
    .await
    .unwrap();

    let (status, sale) = post_json(
        &format!("{}/api/v1/sales", edge.http_url),
        &json!({"operator": "Anna",
                "lines": [{"text": "Futterweizen", "quantity_milli": 2500, "unit": "kg",
                           "unit_price_cents": 32, "gross_cents": 80, "vat_key": 2}],
                "payments": [{"type": "Bar", "amount_cents": 80}]}),
    )
    .await
    .unwrap();
    assert_eq!(status, 201, "{sale}");
    let tse_serial = sale["tse"]["serial_hex"].as_str().unwrap().to_owned();
    let (status, closing) = post_json(
        &format!("{}/api/v1/cash/closing", edge.http_url),
        &json!({}),
    )
    .await
    .unwrap();
    assert_eq!(status, 201, "{closing}");

    let command = post_central(
        central,
        &format!("/api/v1/devices/{DEVICE_ID}/commands"),
        json!({"action": {"kind": "modbus_write", "device": "no-such-device",
                          "point": "valve", "value": true},
               "requested_by": "contract-test"}),
        202,
    )
    .await;
    let command_path = format!(
        "/api/v1/commands/{}",
        command["command_id"].as_str().unwrap()
    );

    wait_for(
        central,
        "the weighing at central",
        &format!("/api/v1/weighings?device_id={DEVICE_ID}&status=complete"),
        |page| page["total"] == 1,
    )
    .await;
    wait_for(
        central,
        "the cash sale at central",
        "/api/v1/cash-sales",
        |sales| sales.as_array().is_some_and(|s| !s.is_empty()),
    )
    .await;
    wait_for(central, "the command's result", &command_path, |c| {
        c["status"] != "pending"
    })
    .await;
    wait_for(central, "live values", "/api/v1/live-values", |values| {
        values.as_array().is_some_and(|v| !v.is_empty())
    })
    .await;
    Seeded {
        business_day: closing["business_day"].as_str().unwrap().to_owned(),
        tse_serial,
    }
}

/// Schemathesis' configuration: half of the values of these parameters
/// are the seeded ones, so the exports and the per-device operations find
/// something; the other half stay generated.
fn config(seeded: &Seeded) -> String {
    format!(
        r#"
[dictionaries.devices]
values = ["{DEVICE_ID}"]
[dictionaries.cash_points]
values = ["KASSE-01"]
[dictionaries.days]
values = ["{day}"]
[dictionaries.tse_serials]
values = ["{serial}"]

[parameters]
"path.device_id" = {{ dictionary = "devices", probability = 0.5 }}
"query.device_id" = {{ dictionary = "devices", probability = 0.5 }}
"query.cash_point" = {{ dictionary = "cash_points", probability = 0.5 }}
"path.serial" = {{ dictionary = "tse_serials", probability = 0.5 }}
"query.from" = {{ dictionary = "days", probability = 0.5 }}
"query.to" = {{ dictionary = "days", probability = 0.5 }}
"#,
        day = seeded.business_day,
        serial = seeded.tse_serial,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_answers_as_the_openapi_document_says() {
    let dir = tempfile::tempdir().unwrap();
    let (central, edge) = start_pair(dir.path(), DEVICE_ID, CONTRACT_BOX)
        .await
        .unwrap();
    let seeded = seed(&central, &edge).await;
    let config_file = dir.path().join("schemathesis.toml");
    std::fs::write(&config_file, config(&seeded)).unwrap();

    let schemathesis = venv_python().with_file_name("schemathesis");
    assert!(
        schemathesis.exists(),
        "{} is missing: install tests/peers/requirements.txt into the venv",
        schemathesis.display()
    );
    let mut args: Vec<String> = [
        "--config-file",
        &config_file.to_string_lossy(),
        "run",
        &format!("{}/api/v1/openapi.json", central.http_url),
        "--header",
        &format!("Authorization: Bearer {}", central.token),
        "--checks",
        CHECKS,
        "--max-examples",
        MAX_EXAMPLES,
        "--seed",
        SEED,
        "--generation-database",
        "none",
        // The bearer header authenticates; generated cookies would only
        // be refused before any handler runs.
        "--generation-with-security-parameters",
        "false",
        "--workers",
        "1",
        "--request-timeout",
        "20",
        "--no-color",
        "--output-truncate",
        "false",
    ]
    .map(str::to_owned)
    .to_vec();
    for (operation, _) in EXCLUDED {
        args.extend(["--exclude-name".to_owned(), operation.to_owned()]);
    }
    let run = tokio::process::Command::new(&schemathesis)
        .args(&args)
        .current_dir(dir.path())
        // Loopback only, whatever proxy the environment names.
        .env("NO_PROXY", "*")
        .env("no_proxy", "*")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(RUN_TIMEOUT, run)
        .await
        .unwrap_or_else(|_| panic!("schemathesis took longer than {RUN_TIMEOUT:?}"))
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let excluded: Vec<String> = EXCLUDED
        .iter()
        .map(|(operation, why)| format!("{operation} ({why})"))
        .collect();
    assert!(
        output.status.success(),
        "schemathesis found answers that break the document ({}); not tested: {excluded:?}\n\
         {stdout}\n{stderr}",
        output.status
    );
    // A run that tested nothing would pass as well.
    assert!(
        stdout.contains("passed") && !stdout.contains("Tested: 0"),
        "{stdout}"
    );
}
