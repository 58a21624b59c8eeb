//! The office UI end to end: central serves its pages with the security
//! headers; a real box weighs a truck with master data entered at central,
//! and office staff, driven in headless Chromium by
//! `tests/browser/office.mjs` (Playwright), find the ticket, check its
//! proof, issue and cancel its delivery note, export CSV, switch the language, edit
//! master data with a conflict, and log out; a viewer sees no edit
//! buttons. Afterwards central holds what the browser did.

#![allow(
    clippy::unwrap_used,
    reason = "a failed step is the test failure; helpers here are test code"
)]

use std::time::Duration;

use serde_json::{Value, json};
use valeo_system_tests::{
    Central, Edge, eventually, get_json, run_node_script, start_pair, workspace_root,
};

/// A simulated bridge without site I/O: weighings need no positioned truck.
const OFFICE_BOX: &str = r#"
[simulation]
enabled = true
scale_id = "sim-bridge-1"
"#;

const DEVICE_ID: &str = "office-box";
const PLATE: &str = "OS-OF 42";
const VIEWER: (&str, &str) = ("viewer1", "viewer-password-2026");

/// Central's API as its admin (the harness's API token).
struct Api {
    http: reqwest::Client,
    base: String,
}

impl Api {
    fn admin(central: &Central) -> Api {
        Api {
            http: central.http(),
            base: central.http_url.clone(),
        }
    }

    async fn send(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str) -> Value {
        let (status, body) = self.send(reqwest::Method::GET, path, None).await;
        assert_eq!(status, 200, "GET {path}: {body}");
        body
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        let (status, answer) = self.send(reqwest::Method::POST, path, Some(body)).await;
        assert_eq!(status, 201, "POST {path}: {answer}");
        answer
    }
}

/// Puts `kg` on the simulated bridge.
async fn drive_on(edge: &Edge, kg: i64) {
    let response = reqwest::Client::new()
        .post(format!("{}/api/v1/simulation/truck", edge.http_url))
        .json(&json!({"weight_kg": kg}))
        .send()
        .await
        .unwrap();
    assert!(
        response.status().is_success(),
        "drive on: {}",
        response.status()
    );
}

/// `(path, content type)` of every page and asset a browser loads.
const SERVED: [(&str, &str); 7] = [
    ("/", "text/html"),
    ("/ui/app.js", "text/javascript"),
    ("/ui/i18n.js", "text/javascript"),
    ("/ui/style.css", "text/css"),
    ("/ui/docs.js", "text/javascript"),
    ("/ui/favicon.svg", "image/svg+xml"),
    ("/api/v1/docs", "text/html"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pages_are_served_without_login_and_with_the_security_headers() {
    let dir = tempfile::tempdir().unwrap();
    let central = Central::start(dir.path(), None, None, &[]).await.unwrap();
    let http = reqwest::Client::new();
    let header = |response: &reqwest::Response, name: &str| -> String {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    for (path, content_type) in SERVED {
        let response = http
            .get(format!("{}{path}", central.http_url))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{path}");
        assert!(
            header(&response, "content-type").starts_with(content_type),
            "{path}: {}",
            header(&response, "content-type")
        );
        let csp = header(&response, "content-security-policy");
        assert!(csp.contains("default-src 'self'"), "{path}: CSP {csp:?}");
        assert!(!csp.contains("unsafe-inline"), "{path}: CSP {csp:?}");
        assert!(
            csp.contains("frame-ancestors 'none'"),
            "{path}: CSP {csp:?}"
        );
        for (name, value) in [
            ("x-content-type-options", "nosniff"),
            ("referrer-policy", "same-origin"),
            ("x-frame-options", "DENY"),
            ("cache-control", "no-cache"),
        ] {
            assert_eq!(header(&response, name), value, "{path}: {name}");
        }
    }

    // The binary serves the files of this tree, not a stale build.
    for file in ["app.js", "i18n.js", "style.css", "docs.js"] {
        let served = http
            .get(format!("{}/ui/{file}", central.http_url))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let on_disk =
            std::fs::read_to_string(workspace_root().join("central/ui").join(file)).unwrap();
        assert!(
            served == on_disk,
            "/ui/{file} differs from central/ui/{file}: rebuild with `cargo build --bins`"
        );
    }

    // Only the compiled-in files exist under /ui/, whatever the path.
    for path in [
        "/ui/nope.js",
        "/ui/..%2f..%2fCargo.toml",
        "/ui/app.js/x",
        "/ui/index.html%00.js",
    ] {
        let response = http
            .get(format!("{}{path}", central.http_url))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 404, "{path}");
        assert_eq!(
            header(&response, "x-content-type-options"),
            "nosniff",
            "{path}"
        );
        let problem: Value = response.json().await.unwrap();
        assert_eq!(problem["status"], 404, "{path}: {problem}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn office_staff_work_through_the_ui_in_a_browser() {
    let dir = tempfile::tempdir().unwrap();
    let (central, edge) = start_pair(dir.path(), DEVICE_ID, OFFICE_BOX).await.unwrap();
    let admin = Api::admin(&central);

    // Master data entered at central reaches the box.
    admin
        .post(
            "/api/v1/partners",
            json!({"id": "P-OFFICE", "name": "Hof Büro & Söhne", "roles": ["supplier"]}),
        )
        .await;
    admin
        .post(
            "/api/v1/articles",
            json!({"id": "A-OFFICE", "name": "Braugerste"}),
        )
        .await;
    let version = admin.get("/api/v1/master-data").await["version"]
        .as_u64()
        .unwrap();
    edge.wait_master_data(version).await.unwrap();

    // One truck, weighed in and out at the box.
    drive_on(&edge, 40_000).await;
    let first = edge
        .weigh(
            "/api/v1/tickets",
            json!({"plate": PLATE, "direction": "intake", "partner_id": "P-OFFICE",
                   "article_id": "A-OFFICE", "operator": "Anna"}),
        )
        .await
        .unwrap();
    drive_on(&edge, 14_980).await;
    let second = format!("/api/v1/tickets/{}/second-weighing", first["ticket_no"]);
    edge.weigh(&second, json!({"operator": "Ben"}))
        .await
        .unwrap();

    let list = format!(
        "{}/api/v1/weighings?device_id={DEVICE_ID}&status=complete",
        central.http_url
    );
    let page = eventually("the ticket at central", Duration::from_secs(20), || {
        let (http, url) = (admin.http.clone(), list.clone());
        async move { get_json(&http, &url).await.filter(|p| p["total"] == 1) }
    })
    .await
    .unwrap();
    let ticket = &page["items"][0];
    assert_eq!(ticket["net"], 25_020.0, "{ticket}");
    let plate = ticket["plate"].as_str().unwrap().to_owned();

    // A read-only colleague.
    admin
        .post(
            "/api/v1/users",
            json!({"username": VIEWER.0, "password": VIEWER.1, "role": "viewer"}),
        )
        .await;

    let stdout = run_node_script(
        "office.mjs",
        &[
            ("CENTRAL_URL", central.http_url.as_str()),
            ("ADMIN_USER", "admin"),
            ("ADMIN_PASSWORD", central.admin_password.as_str()),
            ("PLATE", plate.as_str()),
            ("VIEWER_USER", VIEWER.0),
            ("VIEWER_PASSWORD", VIEWER.1),
            ("DEVICE_ID", DEVICE_ID),
        ],
        &central.process,
    )
    .await
    .unwrap();

    // What the browser did is at central.
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("OFFICE "))
        .expect("the browser test prints an OFFICE line");
    let made: Value = serde_json::from_str(line).unwrap();
    assert_eq!(made["weighing_id"], ticket["id"]);
    let notes = admin
        .get(&format!(
            "/api/v1/delivery-notes?weighing_id={}",
            ticket["id"]
        ))
        .await;
    let note = &notes["items"][0];
    assert_eq!(notes["total"], 1, "{notes}");
    assert_eq!(note["number"], made["delivery_note"], "{note}");
    assert_eq!(note["status"], "cancelled", "{note}");
    assert_eq!(note["cancel_reason"], "Falscher Kunde (Test)", "{note}");
    assert_eq!(note["remarks"], "Office test", "{note}");
    assert_eq!(note["created_by"], "user:admin", "who issued it: {note}");
    let detail = admin
        .get(&format!("/api/v1/weighings/{}", ticket["id"]))
        .await;
    assert!(
        detail["delivery_note"].is_null(),
        "the cancelled note frees the ticket for a new one: {detail}"
    );
    let article = made["article"].as_str().unwrap();
    let (status, _) = admin
        .send(
            reqwest::Method::GET,
            &format!("/api/v1/articles/{article}"),
            None,
        )
        .await;
    assert_eq!(status, 404, "the article deleted in the browser is gone");
}
