//! The office's day through central's business API, with a real edge box:
//! master data created at central reaches the box, a truck weighed there
//! becomes a ticket with its proof, stock and contract progress, gets a
//! delivery note (once), shows in the filtered list, the CSV export and the
//! reports; safe updates need the version read (ETag), and bad input is a
//! 4xx naming the problem without changing anything.

#![allow(
    clippy::unwrap_used,
    reason = "a failed step is the test failure; helpers here are test code"
)]

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use valeo_system_tests::{Central, Edge, eventually, start_pair};

const BOX: &str = r#"
[simulation]
enabled = true
scale_id = "sim-bridge-1"
"#;

struct Api {
    http: reqwest::Client,
    base: String,
}

impl Api {
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        if_match: Option<&str>,
    ) -> (u16, Option<String>, Value) {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request.json(&body);
        }
        if let Some(etag) = if_match {
            request = request.header("if-match", etag);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let etag = response
            .headers()
            .get("etag")
            .map(|v| v.to_str().unwrap().to_owned());
        (status, etag, response.json().await.unwrap_or(Value::Null))
    }

    async fn ok(&self, method: Method, path: &str, body: Option<Value>, expect: u16) -> Value {
        let (status, _, answer) = self.call(method.clone(), path, body, None).await;
        assert_eq!(status, expect, "{method} {path}: {answer}");
        answer
    }
}

async fn drive_on(edge: &Edge, kg: i64) {
    let response = reqwest::Client::new()
        .post(format!("{}/api/v1/simulation/truck", edge.http_url))
        .json(&json!({"weight_kg": kg}))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
}

async fn master_data_version(central: &Central) -> u64 {
    let (_, _, data) = Api {
        http: central.http(),
        base: central.http_url.clone(),
    }
    .call(Method::GET, "/api/v1/master-data", None, None)
    .await;
    data["version"].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_office_day_from_master_data_to_delivery_note_export_and_report() {
    let dir = tempfile::tempdir().unwrap();
    let (central, edge) = start_pair(dir.path(), "hafen-1", BOX).await.unwrap();
    let api = Api {
        http: central.http(),
        base: central.http_url.clone(),
    };

    // Master data, entity by entity; each change reaches the box.
    api.ok(
        Method::POST,
        "/api/v1/sites",
        Some(json!({"id": "HAFEN", "name": "Werk Hafen"})),
        201,
    )
    .await;
    api.ok(
        Method::PATCH,
        "/api/v1/devices/hafen-1",
        Some(json!({"site_id": "HAFEN"})),
        204,
    )
    .await;
    api.ok(
        Method::POST,
        "/api/v1/partners",
        Some(json!({"id": "P-100", "name": "Hof Meyer", "roles": ["supplier"]})),
        201,
    )
    .await;
    api.ok(
        Method::POST,
        "/api/v1/articles",
        Some(json!({"id": "A-WHEAT", "name": "Weizen"})),
        201,
    )
    .await;
    api.ok(
        Method::POST,
        "/api/v1/locations",
        Some(json!({"id": "SILO-3", "name": "Silo 3", "site_id": "HAFEN"})),
        201,
    )
    .await;
    let contract = api
        .ok(
            Method::POST,
            "/api/v1/contracts",
            Some(
                json!({"id": "K-1", "partner_id": "P-100", "article_id": "A-WHEAT",
                "quantity_kg": 100000.0, "valid_from": "2026-01-01", "valid_to": "2026-12-31"}),
            ),
            201,
        )
        .await;
    assert!(contract["version"].as_u64().unwrap() > 0, "{contract}");
    let vehicle = api
        .ok(
            Method::POST,
            "/api/v1/vehicles",
            Some(json!({"plate": " os-ab  123 "})),
            201,
        )
        .await;
    assert_eq!(vehicle["id"], "OS-AB 123", "the id is the normalised plate");
    let (status, _, by_url) = api
        .call(Method::GET, "/api/v1/vehicles/os-ab%20%20123", None, None)
        .await;
    assert_eq!((status, by_url["id"].as_str()), (200, Some("OS-AB 123")));
    let (status, _, problem) = api
        .call(
            Method::PATCH,
            "/api/v1/devices/hafen-1",
            Some(json!({})),
            None,
        )
        .await;
    assert_eq!(
        status, 422,
        "an empty patch does not clear the site: {problem}"
    );
    let version = master_data_version(&central).await;
    edge.wait_master_data(version).await.unwrap();

    // Safe updates: the version read is required and checked.
    let (status, etag, partner) = api
        .call(Method::GET, "/api/v1/partners/P-100", None, None)
        .await;
    assert_eq!(status, 200);
    let read = etag.unwrap();
    assert_eq!(read, format!("\"{}\"", partner["version"]));
    let mut renamed = partner.clone();
    renamed["name"] = json!("Hof Meyer GbR");
    let (status, _, problem) = api
        .call(
            Method::PUT,
            "/api/v1/partners/P-100",
            Some(renamed.clone()),
            None,
        )
        .await;
    assert_eq!(status, 428, "{problem}");
    let (status, etag, _) = api
        .call(
            Method::PUT,
            "/api/v1/partners/P-100",
            Some(renamed.clone()),
            Some(&read),
        )
        .await;
    assert_eq!(status, 200);
    assert_ne!(etag.unwrap(), read, "a change makes a new version");
    let (status, _, problem) = api
        .call(
            Method::PUT,
            "/api/v1/partners/P-100",
            Some(renamed),
            Some(&read),
        )
        .await;
    assert_eq!(status, 412, "a stale version is refused: {problem}");
    let (_, article_etag, _) = api
        .call(Method::GET, "/api/v1/articles/A-WHEAT", None, None)
        .await;
    let (status, _, problem) = api
        .call(
            Method::DELETE,
            "/api/v1/articles/A-WHEAT",
            None,
            article_etag.as_deref(),
        )
        .await;
    assert_eq!(status, 409, "the contract still refers to it: {problem}");

    // Bad input: a 4xx naming the problem, nothing changed.
    for (method, path, body, expect, names) in [
        (
            Method::POST,
            "/api/v1/partners",
            json!({"id": "P-9", "name": "X", "colour": "red"}),
            422,
            "colour",
        ),
        (
            Method::POST,
            "/api/v1/partners",
            json!({"id": "P-9", "name": 5}),
            422,
            "name",
        ),
        (
            Method::POST,
            "/api/v1/partners",
            json!({"id": "", "name": "X"}),
            422,
            "id",
        ),
        (
            Method::POST,
            "/api/v1/partners",
            json!({"id": "P-100", "name": "Dup"}),
            409,
            "exists",
        ),
        (
            Method::POST,
            "/api/v1/lots",
            json!({"id": "L-1", "name": "Lot", "article_id": "NOPE"}),
            422,
            "unknown article",
        ),
        (
            Method::POST,
            "/api/v1/articles",
            json!({"id": "x'; DROP TABLE weighings; --", "name": "Robert"}),
            201,
            "",
        ),
        (
            Method::POST,
            "/api/v1/delivery-notes",
            json!({"weighing_id": 999_999}),
            422,
            "weighing_id",
        ),
        (
            Method::POST,
            "/api/v1/stock-movements",
            json!({"article_id": "A-WHEAT", "quantity_kg": 0, "note": "x"}),
            422,
            "quantity_kg",
        ),
    ] {
        let (status, _, answer) = api.call(method.clone(), path, Some(body), None).await;
        assert_eq!(status, expect, "{method} {path}: {answer}");
        if !names.is_empty() {
            let detail = answer["detail"].as_str().unwrap_or_default();
            assert!(
                detail.contains(names),
                "{path}: {detail:?} should name {names}"
            );
        }
    }
    for (path, names) in [
        ("/api/v1/weighings?from=yesterday", "from"),
        ("/api/v1/weighings?limit=501", "limit"),
        ("/api/v1/weighings?sort=price", "sort"),
        ("/api/v1/weighings?status=lost", "status"),
        ("/api/v1/weighings?colour=red", "colour"),
        ("/api/v1/reports/weighings?group_by=planet", "group_by"),
        ("/api/v1/weighings/abc", "integer"),
    ] {
        let (status, _, answer) = api.call(Method::GET, path, None, None).await;
        assert_eq!(status, 400, "{path}: {answer}");
        assert!(
            answer["detail"].as_str().unwrap().contains(names),
            "{path}: {answer}"
        );
    }
    let (status, _, _) = api.call(Method::GET, "/api/v1/weighings", None, None).await;
    assert_eq!(status, 200, "the SQL-looking id did no harm");

    // A truck at the box, with partner, article and contract.
    drive_on(&edge, 40_000).await;
    let first = edge
        .weigh(
            "/api/v1/tickets",
            json!({"plate": "OS-AB 123", "direction": "intake", "partner_id": "P-100",
                   "article_id": "A-WHEAT", "contract_id": "K-1", "location_id": "SILO-3"}),
        )
        .await
        .unwrap();
    drive_on(&edge, 14_980).await;
    edge.weigh(
        &format!("/api/v1/tickets/{}/second-weighing", first["ticket_no"]),
        json!({}),
    )
    .await
    .unwrap();
    let page = eventually("the ticket at central", Duration::from_secs(30), || async {
        let (_, _, page) = api
            .call(
                Method::GET,
                "/api/v1/weighings?plate=os-ab&status=complete&partner_id=P-100&site_id=HAFEN&from=2020-01-01",
                None,
                None,
            )
            .await;
        (page["total"] == 1).then_some(page)
    })
    .await
    .unwrap();
    let ticket = &page["items"][0];
    assert_eq!(ticket["net"], 25_020.0);
    assert_eq!(ticket["site_id"], "HAFEN");
    let id = ticket["id"].as_i64().unwrap();

    let detail = api
        .ok(Method::GET, &format!("/api/v1/weighings/{id}"), None, 200)
        .await;
    assert_eq!(detail["proof"]["chain_verified"], true, "{detail}");
    assert_eq!(detail["proof"]["records"].as_array().unwrap().len(), 2);

    let stock = api
        .ok(Method::GET, "/api/v1/stock?article_id=A-WHEAT", None, 200)
        .await;
    assert_eq!(stock["items"][0]["quantity_kg"], 25_020.0, "{stock}");
    assert_eq!(stock["items"][0]["location"]["id"], "SILO-3");
    let contract = api
        .ok(Method::GET, "/api/v1/contracts/K-1", None, 200)
        .await;
    assert_eq!(contract["delivered_kg"], 25_020.0);

    // The delivery note: once, printable, listed with the ticket.
    let note = api
        .ok(
            Method::POST,
            "/api/v1/delivery-notes",
            Some(json!({"weighing_id": id, "remarks": "Abladestelle Silo 3"})),
            201,
        )
        .await;
    let number = note["number"].as_str().unwrap().to_owned();
    assert!(number.starts_with("LS-"), "{number}");
    assert!(
        note["created_by"]
            .as_str()
            .unwrap()
            .starts_with("token:system-tests-"),
        "the note names who issued it: {note}"
    );
    let (status, _, problem) = api
        .call(
            Method::POST,
            "/api/v1/delivery-notes",
            Some(json!({"weighing_id": id})),
            None,
        )
        .await;
    assert_eq!(status, 409, "{problem}");
    let page = api
        .ok(
            Method::GET,
            &format!("/api/v1/delivery-notes?weighing_id={id}"),
            None,
            200,
        )
        .await;
    assert_eq!(page["total"], 1);
    let document = api
        .http
        .get(format!(
            "{}/api/v1/delivery-notes/{}/document?lang=de",
            api.base, note["id"]
        ))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        document.contains(&number) && document.contains("25020"),
        "{document}"
    );
    let ticket = api
        .ok(Method::GET, &format!("/api/v1/weighings/{id}"), None, 200)
        .await;
    assert_eq!(ticket["delivery_note"]["number"], number.as_str());

    // CSV export for accounting, German style.
    let response = api
        .http
        .get(format!(
            "{}/api/v1/weighings.csv?plate=OS-AB&lang=de",
            api.base
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment"),
    );
    let csv = response.text().await.unwrap();
    let csv = csv
        .strip_prefix('\u{feff}')
        .expect("a byte-order mark for spreadsheets");
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 2, "{csv}");
    assert!(lines[0].starts_with("id;device_id;site_id;ticket_no"));
    assert!(
        lines[1].contains(";OS-AB 123;") && lines[1].contains(&number),
        "{csv}"
    );

    // Reports.
    for group_by in ["article", "partner", "site", "day"] {
        let report = api
            .ok(
                Method::GET,
                &format!("/api/v1/reports/weighings?group_by={group_by}"),
                None,
                200,
            )
            .await;
        assert_eq!(report["total"]["weighings"], 1, "{group_by}: {report}");
        assert_eq!(report["total"]["net_kg"], 25_020.0, "{group_by}: {report}");
    }
    let report = api
        .ok(
            Method::GET,
            "/api/v1/reports/weighings?group_by=site",
            None,
            200,
        )
        .await;
    assert_eq!(report["rows"][0]["name"], "Werk Hafen");

    // The fleet view knows the box.
    let devices = api.ok(Method::GET, "/api/v1/devices", None, 200).await;
    let device = &devices.as_array().unwrap()[0];
    assert_eq!(
        (device["device_id"].as_str(), device["site_id"].as_str()),
        (Some("hafen-1"), Some("HAFEN"))
    );
    assert!(device["last_seen_at"].is_string(), "{device}");
}
