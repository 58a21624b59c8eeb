//! Authentication and authorisation of central through the real process:
//! the permission matrix route group by route group for anonymous callers,
//! a viewer, an office user, an admin and a scoped API token; forged,
//! expired and revoked credentials and disabled or demoted users; browser
//! sessions and their CSRF token; login throttling; hostile input; the
//! audit log; and the first admin's generated password, printed once.

#![allow(
    clippy::unwrap_used,
    reason = "a failed step is the test failure; helpers here are test code"
)]

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use valeo_system_tests::{
    Central, Process, bearer_client, binary, eventually, free_port, get_json, post_json_with,
};

/// Logins in these tests come through a "proxy" (the test itself), so
/// each scenario can have a client address of its own.
const TRUSTED_PROXY: &str = "[auth]\ntrusted_proxies = [\"127.0.0.1\"]\n";

/// What a caller should get.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// 401.
    Unauthenticated,
    /// 403.
    Forbidden,
    /// Anything but 401 and 403 (a route not built yet answers 404, a bad
    /// body 422: the caller got past authorisation either way).
    Allowed,
    /// Exactly this status.
    Status(u16),
}

use Expect::{Allowed as Y, Forbidden as F, Unauthenticated as U};

impl Expect {
    fn holds(self, status: u16) -> bool {
        match self {
            Expect::Unauthenticated => status == 401,
            Expect::Forbidden => status == 403,
            Expect::Allowed => status != 401 && status != 403,
            Expect::Status(expected) => status == expected,
        }
    }
}

/// The callers, in the matrix's column order.
const CALLERS: [&str; 5] = ["anonymous", "viewer", "office", "admin", "scoped token"];

/// Every route group: (method, path, body) and what anonymous, viewer,
/// office, admin and an office token scoped to read + delivery_notes get.
/// Bodies are deliberately incomplete, so nothing is really changed.
const MATRIX: &[(&str, &str, Option<&str>, [Expect; 5])] = &[
    // Public.
    ("GET", "/health", None, [Y, Y, Y, Y, Y]),
    ("GET", "/metrics", None, [Y, Y, Y, Y, Y]),
    ("GET", "/", None, [Y, Y, Y, Y, Y]),
    ("GET", "/ui/app.js", None, [Y, Y, Y, Y, Y]),
    ("GET", "/api/v1/openapi.json", None, [Y, Y, Y, Y, Y]),
    ("GET", "/api/v1/docs", None, [Y, Y, Y, Y, Y]),
    (
        "POST",
        "/api/v1/auth/login",
        Some(r#"{"username": "x"}"#),
        [Y, Y, Y, Y, Y],
    ),
    (
        "GET",
        "/api/v1/no-such-thing",
        None,
        [Expect::Status(404); 5],
    ),
    (
        "POST",
        "/api/v1/no-such-thing",
        Some("{}"),
        [Expect::Status(404); 5],
    ),
    // Any signed-in caller.
    ("GET", "/api/v1/auth/me", None, [U, Y, Y, Y, Y]),
    ("POST", "/api/v1/auth/password", Some("{}"), [U, Y, Y, Y, Y]),
    ("POST", "/api/v1/auth/logout", Some("{}"), [U, Y, Y, Y, Y]),
    // read.
    ("GET", "/api/v1/weighings", None, [U, Y, Y, Y, Y]),
    ("GET", "/api/v1/weighings.csv", None, [U, Y, Y, Y, Y]),
    ("GET", "/api/v1/weighings/1", None, [U, Y, Y, Y, Y]),
    ("GET", "/api/v1/delivery-notes", None, [U, Y, Y, Y, Y]),
    ("GET", "/api/v1/delivery-notes/1", None, [U, Y, Y, Y, Y]),
    (
        "GET",
        "/api/v1/delivery-notes/1/document",
        None,
        [U, Y, Y, Y, Y],
    ),
    ("GET", "/api/v1/stock", None, [U, Y, Y, Y, Y]),
    ("GET", "/api/v1/stock-movements", None, [U, Y, Y, Y, Y]),
    (
        "GET",
        "/api/v1/reports/weighings?group_by=article",
        None,
        [U, Y, Y, Y, Y],
    ),
    ("GET", "/api/v1/sites", None, [U, Y, Y, Y, Y]),
    ("GET", "/api/v1/partners", None, [U, Y, Y, Y, Y]),
    ("GET", "/api/v1/partners/P-1", None, [U, Y, Y, Y, Y]),
    ("GET", "/api/v1/articles", None, [U, Y, Y, Y, Y]),
    ("GET", "/api/v1/vehicles", None, [U, Y, Y, Y, Y]),
    ("GET", "/api/v1/locations", None, [U, Y, Y, Y, Y]),
    ("GET", "/api/v1/lots", None, [U, Y, Y, Y, Y]),
    ("GET", "/api/v1/contracts", None, [U, Y, Y, Y, Y]),
    ("GET", "/api/v1/contracts/C-1", None, [U, Y, Y, Y, Y]),
    ("GET", "/api/v1/master-data", None, [U, Y, Y, Y, Y]),
    ("GET", "/api/v1/devices", None, [U, Y, Y, Y, Y]),
    ("GET", "/api/v1/field-values", None, [U, Y, Y, Y, Y]),
    ("GET", "/api/v1/live-values", None, [U, Y, Y, Y, Y]),
    ("GET", "/api/v1/commands", None, [U, Y, Y, Y, Y]),
    ("GET", "/api/v1/commands/nope", None, [U, Y, Y, Y, Y]),
    ("GET", "/api/v1/cash-sales", None, [U, Y, Y, Y, Y]),
    ("GET", "/api/v1/tse-outages", None, [U, Y, Y, Y, Y]),
    ("GET", "/api/v1/tses", None, [U, Y, Y, Y, Y]),
    ("GET", "/api/v1/events", None, [U, Y, Y, Y, Y]),
    // export.
    ("GET", "/api/v1/dsfinvk", None, [U, F, Y, Y, F]),
    ("GET", "/api/v1/tses/00ff/export", None, [U, F, Y, Y, F]),
    // master_data.
    ("POST", "/api/v1/sites", Some("{}"), [U, F, Y, Y, F]),
    ("POST", "/api/v1/partners", Some("{}"), [U, F, Y, Y, F]),
    ("PUT", "/api/v1/partners/P-1", Some("{}"), [U, F, Y, Y, F]),
    ("DELETE", "/api/v1/partners/P-1", None, [U, F, Y, Y, F]),
    ("POST", "/api/v1/articles", Some("{}"), [U, F, Y, Y, F]),
    ("POST", "/api/v1/vehicles", Some("{}"), [U, F, Y, Y, F]),
    ("POST", "/api/v1/locations", Some("{}"), [U, F, Y, Y, F]),
    ("POST", "/api/v1/lots", Some("{}"), [U, F, Y, Y, F]),
    ("POST", "/api/v1/contracts", Some("{}"), [U, F, Y, Y, F]),
    ("PUT", "/api/v1/contracts/C-1", Some("{}"), [U, F, Y, Y, F]),
    ("DELETE", "/api/v1/vehicles/V-1", None, [U, F, Y, Y, F]),
    (
        "POST",
        "/api/v1/stock-movements",
        Some("{}"),
        [U, F, Y, Y, F],
    ),
    // delivery_notes.
    (
        "POST",
        "/api/v1/delivery-notes",
        Some("{}"),
        [U, F, Y, Y, Y],
    ),
    (
        "POST",
        "/api/v1/delivery-notes/999999/cancel",
        Some("{}"),
        [U, F, Y, Y, Y],
    ),
    // commands.
    (
        "POST",
        "/api/v1/devices/nobody/commands",
        Some("{}"),
        [U, F, Y, Y, F],
    ),
    // admin.
    ("PUT", "/api/v1/master-data", Some("[1]"), [U, F, F, Y, F]),
    ("GET", "/api/v1/backups", None, [U, F, F, Y, F]),
    ("POST", "/api/v1/backups", Some("{}"), [U, F, F, Y, F]),
    ("GET", "/api/v1/dead-letters", None, [U, F, F, Y, F]),
    (
        "PATCH",
        "/api/v1/devices/nobody",
        Some("{}"),
        [U, F, F, Y, F],
    ),
    ("GET", "/api/v1/users", None, [U, F, F, Y, F]),
    ("POST", "/api/v1/users", Some("{}"), [U, F, F, Y, F]),
    (
        "PATCH",
        "/api/v1/users/nobody",
        Some(r#"{"disabled": true}"#),
        [U, F, F, Y, F],
    ),
    ("GET", "/api/v1/tokens", None, [U, F, F, Y, F]),
    ("POST", "/api/v1/tokens", Some("{}"), [U, F, F, Y, F]),
    ("DELETE", "/api/v1/tokens/999999", None, [U, F, F, Y, F]),
    ("GET", "/api/v1/audit-log", None, [U, F, F, Y, F]),
    ("GET", "/api/v1/webhooks", None, [U, F, F, Y, F]),
    ("POST", "/api/v1/webhooks", Some("{}"), [U, F, F, Y, F]),
    ("GET", "/api/v1/webhooks/999999", None, [U, F, F, Y, F]),
    ("DELETE", "/api/v1/webhooks/999999", None, [U, F, F, Y, F]),
    (
        "GET",
        "/api/v1/webhooks/999999/deliveries",
        None,
        [U, F, F, Y, F],
    ),
    // A method no route has: deny by default (admin), then 405.
    ("DELETE", "/api/v1/weighings/1", None, [U, F, F, Y, F]),
];

/// Sends one request; the status.
async fn send(
    http: &reqwest::Client,
    base: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> u16 {
    let mut request = http.request(method.parse().unwrap(), format!("{base}{path}"));
    if let Some(body) = body {
        request = request
            .header("content-type", "application/json")
            .body(body.to_owned());
    }
    request.send().await.unwrap().status().as_u16()
}

/// Logs in through the "proxy" as client `address`; the status and answer.
async fn login_from(
    central: &Central,
    address: &str,
    username: &str,
    password: &str,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let response = reqwest::Client::new()
        .post(format!("{}/api/v1/auth/login", central.http_url))
        .header("x-forwarded-for", address)
        .json(&json!({"username": username, "password": password}))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (
        status,
        headers,
        response.json().await.unwrap_or(Value::Null),
    )
}

/// A JWT for the user.
async fn jwt(central: &Central, address: &str, username: &str, password: &str) -> String {
    let (status, _, body) = login_from(central, address, username, password).await;
    assert_eq!(status, 200, "login as {username}: {body}");
    body["token"].as_str().unwrap().to_owned()
}

/// Creates a user as admin; its password.
async fn create_user(central: &Central, username: &str, role: &str) -> String {
    let password = format!("{username}-password-{:08x}", rand::random::<u32>());
    let (status, body) = post_json_with(
        &central.http(),
        &format!("{}/api/v1/users", central.http_url),
        &json!({"username": username, "password": password, "role": role}),
    )
    .await
    .unwrap();
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["role"], role);
    assert!(body.get("password").is_none() && body.get("password_hash").is_none());
    password
}

/// Creates an API token as admin; (id, secret).
async fn create_token(central: &Central, body: Value) -> (i64, String) {
    let (status, created) = post_json_with(
        &central.http(),
        &format!("{}/api/v1/tokens", central.http_url),
        &body,
    )
    .await
    .unwrap();
    assert_eq!(status, 201, "{created}");
    let secret = created["token"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("vt_"), "{created}");
    (created["id"].as_i64().unwrap(), secret)
}

async fn patch_user(central: &Central, username: &str, body: Value) -> (u16, Value) {
    let response = central
        .http()
        .patch(format!("{}/api/v1/users/{username}", central.http_url))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn me(http: &reqwest::Client, central: &Central) -> (u16, Value) {
    let response = http
        .get(format!("{}/api/v1/auth/me", central.http_url))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_permission_matrix_holds_for_every_route_group() {
    let dir = tempfile::tempdir().unwrap();
    let central = Central::start_with(dir.path(), None, None, &[], TRUSTED_PROXY)
        .await
        .unwrap();
    let viewer_password = create_user(&central, "vera", "viewer").await;
    let office_password = create_user(&central, "otto", "office").await;
    let (_, scoped) = create_token(
        &central,
        json!({"name": "erp-scoped", "role": "office", "scopes": ["read", "delivery_notes"]}),
    )
    .await;
    let callers = [
        reqwest::Client::new(),
        bearer_client(&jwt(&central, "198.51.100.1", "vera", &viewer_password).await).unwrap(),
        bearer_client(&jwt(&central, "198.51.100.1", "otto", &office_password).await).unwrap(),
        central.http(),
        bearer_client(&scoped).unwrap(),
    ];

    // Who each caller is.
    let expected_me = [
        ("vera", "viewer", "jwt", vec!["read"]),
        (
            "otto",
            "office",
            "jwt",
            vec![
                "read",
                "export",
                "master_data",
                "delivery_notes",
                "commands",
            ],
        ),
        (
            "erp-scoped",
            "office",
            "token",
            vec!["read", "delivery_notes"],
        ),
    ];
    for (http, (name, role, via, permissions)) in [&callers[1], &callers[2], &callers[4]]
        .into_iter()
        .zip(expected_me)
    {
        let (status, me) = me(http, &central).await;
        assert_eq!(status, 200, "{me}");
        assert_eq!(
            (&me["username"], &me["role"], &me["via"], &me["permissions"]),
            (&json!(name), &json!(role), &json!(via), &json!(permissions)),
        );
    }

    let mut wrong = Vec::new();
    for &(method, path, body, expected) in MATRIX {
        for ((caller, http), expect) in CALLERS.iter().zip(&callers).zip(expected) {
            let status = send(http, &central.http_url, method, path, body).await;
            if !expect.holds(status) {
                wrong.push(format!(
                    "{method} {path} as {caller}: got {status}, expected {expect:?}"
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{} mismatches:\n{}",
        wrong.len(),
        wrong.join("\n")
    );

    // The refusals are problem documents that say why.
    let anonymous = reqwest::Client::new()
        .get(format!("{}/api/v1/weighings", central.http_url))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    assert!(
        anonymous.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer"),
    );
    assert_eq!(
        anonymous.headers()["content-type"],
        "application/problem+json"
    );
    assert!(anonymous.headers().contains_key("x-request-id"));
    assert_eq!(anonymous.headers()["x-content-type-options"], "nosniff");
    let forbidden = callers[1]
        .post(format!("{}/api/v1/delivery-notes", central.http_url))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(forbidden.status(), 403);
    let problem: Value = forbidden.json().await.unwrap();
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("delivery_notes"),
        "the problem names the missing permission: {problem}"
    );
}

/// A JWT with its payload replaced, keeping header and signature.
fn with_payload(token: &str, payload: &Value) -> String {
    let mut parts = token.split('.');
    let (header, _, signature) = (
        parts.next().unwrap(),
        parts.next().unwrap(),
        parts.next().unwrap(),
    );
    let payload = URL_SAFE_NO_PAD.encode(payload.to_string());
    format!("{header}.{payload}.{signature}")
}

fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_expired_revoked_and_disabled_credentials_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    // Short-lived JWTs, so one can expire during the test.
    let config = format!("{TRUSTED_PROXY}jwt_ttl_s = 5\n");
    let central = Central::start_with(dir.path(), None, None, &[], &config)
        .await
        .unwrap();
    let password = create_user(&central, "ida", "office").await;
    let address = "198.51.100.2";

    // Expired: fine at first, refused once its 5 s are over.
    let token = jwt(&central, address, "ida", &password).await;
    let (status, _) = me(&bearer_client(&token).unwrap(), &central).await;
    assert_eq!(status, 200);
    tokio::time::sleep(Duration::from_millis(6_200)).await;
    let (status, problem) = me(&bearer_client(&token).unwrap(), &central).await;
    assert_eq!(status, 401, "{problem}");
    assert!(
        problem["detail"].as_str().unwrap().contains("expired"),
        "{problem}"
    );

    // Forged: each variant of a fresh token is refused.
    let token = jwt(&central, address, "ida", &password).await;
    let mut claims = claims(&token);
    claims["role"] = json!("admin");
    let as_admin = with_payload(&token, &claims);
    claims["sub"] = json!("admin");
    let as_other_user = with_payload(&token, &claims);
    let alg_none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#),
        token.split('.').nth(1).unwrap()
    );
    let forged = [
        ("role claim raised", as_admin),
        ("subject changed", as_other_user),
        ("alg none", alg_none),
        (
            "signature cut",
            token.rsplit_once('.').unwrap().0.to_owned() + ".",
        ),
        ("garbage", "not.a.jwt".to_owned()),
        (
            "unknown API token",
            "vt_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".to_owned(),
        ),
    ];
    for (what, forged) in forged {
        let response = bearer_client(&forged)
            .unwrap()
            .get(format!("{}/api/v1/users", central.http_url))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401, "{what}");
        assert!(
            response.headers()["www-authenticate"]
                .to_str()
                .unwrap()
                .starts_with("Bearer"),
            "{what}"
        );
    }
    let malformed = reqwest::Client::new()
        .get(format!("{}/api/v1/weighings", central.http_url))
        .header("authorization", "Basic YWRtaW46YWRtaW4=")
        .send()
        .await
        .unwrap();
    assert_eq!(malformed.status(), 401, "only bearer credentials");

    // Demoted: the role comes from the database on every request.
    let token = jwt(&central, address, "ida", &password).await;
    let office = bearer_client(&token).unwrap();
    let url = format!("{}/api/v1/delivery-notes", central.http_url);
    let status = send(&office, "", "POST", &url, Some("{}")).await;
    assert!(Y.holds(status), "{status}");
    let (status, body) = patch_user(&central, "ida", json!({"role": "viewer"})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(send(&office, "", "POST", &url, Some("{}")).await, 403);
    let (_, me_now) = me(&office, &central).await;
    assert_eq!(me_now["role"], "viewer");

    // Disabled: the token in hand and new logins are refused.
    let (status, body) = patch_user(&central, "ida", json!({"disabled": true})).await;
    assert_eq!((status, &body["disabled"]), (200, &json!(true)), "{body}");
    assert_eq!(me(&office, &central).await.0, 401);
    let (status, _, problem) = login_from(&central, address, "ida", &password).await;
    assert_eq!(status, 401, "{problem}");
    assert_eq!(problem["detail"], "wrong username or password");
    let (status, _) = patch_user(&central, "ida", json!({"disabled": false})).await;
    assert_eq!(status, 200);
    jwt(&central, address, "ida", &password).await;

    // A new password ends the tokens issued before it.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let before = bearer_client(&jwt(&central, address, "ida", &password).await).unwrap();
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let (status, _) =
        patch_user(&central, "ida", json!({"password": "a brand new password"})).await;
    assert_eq!(status, 200);
    assert_eq!(me(&before, &central).await.0, 401);
    jwt(&central, address, "ida", "a brand new password").await;

    // Revoked: works, then refused, and stays listed without its secret.
    let (id, secret) =
        create_token(&central, json!({"name": "short-lived", "role": "viewer"})).await;
    let client = bearer_client(&secret).unwrap();
    assert_eq!(me(&client, &central).await.0, 200);
    let revoked = central
        .http()
        .delete(format!("{}/api/v1/tokens/{id}", central.http_url))
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 204);
    assert_eq!(me(&client, &central).await.0, 401);
    let listed = get_json(
        &central.http(),
        &format!("{}/api/v1/tokens", central.http_url),
    )
    .await
    .unwrap();
    let entry = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == id)
        .unwrap();
    assert!(entry["revoked_at"].is_string(), "{entry}");
    assert!(
        !listed.to_string().contains("vt_"),
        "no secrets listed: {listed}"
    );
    // Use is noted (at most once a minute).
    eventually("last_used_at noted", Duration::from_secs(10), || {
        let (http, url) = (
            central.http(),
            format!("{}/api/v1/tokens", central.http_url),
        );
        async move {
            get_json(&http, &url).await.filter(|tokens| {
                tokens.as_array().is_some_and(|a| {
                    a.iter()
                        .any(|t| t["id"] == id && t["last_used_at"].is_string())
                })
            })
        }
    })
    .await
    .unwrap();

    // An expired API token is refused like a revoked one.
    let soon = (chrono::Utc::now() + chrono::Duration::seconds(2)).to_rfc3339();
    let (_, secret) = create_token(
        &central,
        json!({"name": "expiring", "role": "viewer", "expires_at": soon}),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(3_100)).await;
    assert_eq!(me(&bearer_client(&secret).unwrap(), &central).await.0, 401);

    // The last enabled admin stays one.
    for change in [json!({"disabled": true}), json!({"role": "office"})] {
        let (status, problem) = patch_user(&central, "admin", change).await;
        assert_eq!(status, 409, "{problem}");
    }
}

/// The `name=value` of a `Set-Cookie` header and its attributes.
fn set_cookie<'h>(headers: &'h reqwest::header::HeaderMap, name: &str) -> &'h str {
    headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap())
        .find(|v| v.starts_with(&format!("{name}=")))
        .unwrap_or_else(|| panic!("no {name} cookie in {headers:?}"))
}

fn cookie_value(set_cookie: &str) -> &str {
    set_cookie
        .split(';')
        .next()
        .unwrap()
        .split_once('=')
        .unwrap()
        .1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_sessions_need_their_csrf_token_and_logins_are_throttled() {
    let dir = tempfile::tempdir().unwrap();
    let central = Central::start_with(dir.path(), None, None, &[], TRUSTED_PROXY)
        .await
        .unwrap();
    let password = create_user(&central, "olga", "office").await;

    // Log in as a browser behind an HTTPS proxy would.
    let login = reqwest::Client::new()
        .post(format!("{}/api/v1/auth/login", central.http_url))
        .header("x-forwarded-for", "198.51.100.3")
        .header("x-forwarded-proto", "https")
        .json(&json!({"username": "olga", "password": password}))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 200);
    let headers = login.headers().clone();
    let body: Value = login.json().await.unwrap();
    assert_eq!(body["user"], json!({"username": "olga", "role": "office"}));
    assert!(
        body["expires_at"].as_str().unwrap().ends_with('Z'),
        "{body}"
    );
    let session = set_cookie(&headers, "valeo_session");
    let csrf = set_cookie(&headers, "valeo_csrf");
    for attribute in ["Path=/", "SameSite=Strict", "HttpOnly", "Secure"] {
        assert!(session.contains(attribute), "{attribute} in {session}");
    }
    assert!(!csrf.contains("HttpOnly"), "the page reads it: {csrf}");
    assert!(
        csrf.contains("SameSite=Strict") && csrf.contains("Secure"),
        "{csrf}"
    );
    let cookies = format!(
        "valeo_session={}; valeo_csrf={}",
        cookie_value(session),
        cookie_value(csrf)
    );
    let csrf = cookie_value(csrf).to_owned();
    let browser = reqwest::Client::new();
    let (status, me_now) = {
        let response = browser
            .get(format!("{}/api/v1/auth/me", central.http_url))
            .header("cookie", &cookies)
            .send()
            .await
            .unwrap();
        (
            response.status().as_u16(),
            response.json::<Value>().await.unwrap(),
        )
    };
    assert_eq!(
        (status, &me_now["via"]),
        (200, &json!("session")),
        "{me_now}"
    );

    // Unsafe requests need the CSRF token: missing, wrong, right.
    let url = format!("{}/api/v1/delivery-notes", central.http_url);
    for (token, refused) in [
        (None, true),
        (Some("wrong"), true),
        (Some(csrf.as_str()), false),
    ] {
        let mut request = browser
            .post(&url)
            .header("cookie", &cookies)
            .json(&json!({}));
        if let Some(token) = token {
            request = request.header("x-csrf-token", token);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        if refused {
            let problem: Value = response.json().await.unwrap();
            assert_eq!(status, 403, "{token:?}: {problem}");
            assert_eq!(problem["detail"], "missing or wrong CSRF token");
        } else {
            assert!(status != 403 && status != 401, "{token:?}: {status}");
        }
    }

    // Logging out ends the session and clears the cookies.
    let logout = browser
        .post(format!("{}/api/v1/auth/logout", central.http_url))
        .header("cookie", &cookies)
        .header("x-csrf-token", &csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(logout.status(), 204);
    assert!(set_cookie(logout.headers(), "valeo_session").contains("Max-Age=0"));
    let after = browser
        .get(format!("{}/api/v1/auth/me", central.http_url))
        .header("cookie", &cookies)
        .send()
        .await
        .unwrap();
    assert_eq!(after.status(), 401);

    // Five failures lock the username and the address; the sixth attempt
    // is refused even with the right password.
    let attacker = "203.0.113.7";
    for attempt in 1..=5 {
        let (status, _, problem) = login_from(&central, attacker, "olga", "wrong password!").await;
        assert_eq!(status, 401, "attempt {attempt}: {problem}");
        assert_eq!(problem["detail"], "wrong username or password");
    }
    let (status, headers, problem) = login_from(&central, attacker, "olga", &password).await;
    assert_eq!(status, 429, "{problem}");
    let retry_after: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=900).contains(&retry_after), "{retry_after}");
    let (status, _, _) = login_from(&central, "203.0.113.8", "olga", &password).await;
    assert_eq!(status, 429, "the username is locked from anywhere");
    let (status, _, _) = login_from(&central, attacker, "admin", &central.admin_password).await;
    assert_eq!(status, 429, "the address is locked for anyone");
    let (status, _, _) =
        login_from(&central, "203.0.113.9", "admin", &central.admin_password).await;
    assert_eq!(status, 200, "others log in as before");
    // Unknown users fail the same way, with the same message.
    let (status, _, problem) =
        login_from(&central, "203.0.113.10", "nobody", "whatever it is").await;
    assert_eq!(
        (status, &problem["detail"]),
        (401, &json!("wrong username or password"))
    );
    let log = central.process.log();
    assert!(log.contains("login failed"), "failed logins are logged");
    assert!(!log.contains("wrong password!"), "never the password");

    // The audit log: the failed and successful logins, and who created
    // whom, with the password redacted.
    let me_token = me(&central.http(), &central).await.1;
    let actor = format!("token:{}", me_token["username"].as_str().unwrap());
    let audit = get_json(
        &central.http(),
        &format!(
            "{}/api/v1/audit-log?actor={actor}&limit=500",
            central.http_url
        ),
    )
    .await
    .unwrap();
    let created = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "POST" && e["route"] == "/api/v1/users")
        .unwrap_or_else(|| panic!("no user creation by {actor}: {audit}"));
    let summary = created["summary"].as_str().unwrap();
    assert!(summary.contains("\"username\":\"olga\""), "{summary}");
    assert!(
        summary.contains("[redacted]") && !summary.contains(&password),
        "{summary}"
    );
    assert_eq!(created["status"], 201);
    assert!(created["request_id"].is_string(), "{created}");
    let all = get_json(
        &central.http(),
        &format!("{}/api/v1/audit-log?limit=500", central.http_url),
    )
    .await
    .unwrap();
    let actions: Vec<(&str, &str)> = all["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["action"].as_str().unwrap(), e["actor"].as_str().unwrap()))
        .collect();
    assert!(actions.contains(&("login", "user:olga")), "{actions:?}");
    assert!(
        actions.contains(&("login_failed", "anonymous")),
        "{actions:?}"
    );
    assert!(
        actions.contains(&("POST", "user:olga")),
        "the logout by session: {actions:?}"
    );
    assert!(!all.to_string().contains("wrong password!"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_input_gets_client_errors_never_server_errors() {
    let dir = tempfile::tempdir().unwrap();
    let central = Central::start_with(dir.path(), None, None, &[], TRUSTED_PROXY)
        .await
        .unwrap();
    let base = &central.http_url;
    let admin = central.http();
    let anonymous = reqwest::Client::new();
    let huge = format!(
        r#"{{"username": "x", "password": "{}"}}"#,
        "p".repeat(3 << 20)
    );
    let long_password = format!(
        r#"{{"username": "admin", "password": "{}"}}"#,
        "p".repeat(100_000)
    );
    let sql = "admin' OR '1'='1' --";
    let cases: Vec<(&reqwest::Client, &str, String, String, u16)> = vec![
        (
            &anonymous,
            "POST",
            "/api/v1/auth/login".into(),
            json!({"username": sql, "password": "' OR 1=1; --"}).to_string(),
            401,
        ),
        (
            &anonymous,
            "POST",
            "/api/v1/auth/login".into(),
            json!({"username": "admin\"; DROP TABLE users; --", "password": "x"}).to_string(),
            401,
        ),
        (
            &anonymous,
            "POST",
            "/api/v1/auth/login".into(),
            huge.clone(),
            413,
        ),
        (
            &anonymous,
            "POST",
            "/api/v1/auth/login".into(),
            long_password,
            401,
        ),
        (
            &anonymous,
            "POST",
            "/api/v1/auth/login".into(),
            "{".into(),
            400,
        ),
        (
            &anonymous,
            "POST",
            "/api/v1/auth/login".into(),
            json!({"username": "a", "password": "b", "extra": 1}).to_string(),
            422,
        ),
        (
            &admin,
            "POST",
            "/api/v1/users".into(),
            json!({"username": sql, "password": "long enough password", "role": "admin"})
                .to_string(),
            400,
        ),
        (
            &admin,
            "POST",
            "/api/v1/users".into(),
            json!({"username": "eve", "password": "short", "role": "admin"}).to_string(),
            400,
        ),
        (
            &admin,
            "POST",
            "/api/v1/users".into(),
            json!({"username": "eve", "password": "long enough password", "role": "root"})
                .to_string(),
            422,
        ),
        (&admin, "POST", "/api/v1/users".into(), huge.clone(), 413),
        (
            &admin,
            "PATCH",
            format!("/api/v1/users/{}", urlencode(sql)),
            json!({"disabled": true}).to_string(),
            404,
        ),
        (
            &admin,
            "GET",
            format!("/api/v1/audit-log?actor={}", urlencode(sql)),
            String::new(),
            200,
        ),
        (
            &admin,
            "GET",
            "/api/v1/audit-log?from=yesterday".into(),
            String::new(),
            400,
        ),
        (
            &admin,
            "GET",
            "/api/v1/audit-log?limit=100000".into(),
            String::new(),
            400,
        ),
        (
            &admin,
            "POST",
            "/api/v1/tokens".into(),
            json!({"name": "x", "role": "viewer", "scopes": ["admin"]}).to_string(),
            400,
        ),
        (
            &admin,
            "POST",
            "/api/v1/tokens".into(),
            json!({"name": "x", "role": "viewer", "scopes": ["everything"]}).to_string(),
            422,
        ),
        (
            &admin,
            "POST",
            "/api/v1/tokens".into(),
            json!({"name": "x", "role": "viewer", "expires_at": "2001-01-01T00:00:00Z"})
                .to_string(),
            400,
        ),
        (
            &admin,
            "DELETE",
            "/api/v1/tokens/1%20OR%201=1".into(),
            String::new(),
            400,
        ),
    ];
    for (http, method, path, body, expected) in cases {
        let mut request = http.request(method.parse().unwrap(), format!("{base}{path}"));
        if !body.is_empty() {
            request = request
                .header("content-type", "application/json")
                .body(body.clone());
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        let shown: String = body.chars().take(80).collect();
        assert_eq!(status, expected, "{method} {path} {shown}: {text}");
    }
    // The users table is intact and the SQL-looking user does not exist.
    let users = get_json(&admin, &format!("{base}/api/v1/users"))
        .await
        .unwrap();
    assert_eq!(users.as_array().unwrap().len(), 1, "{users}");
    assert_eq!(users[0]["username"], "admin");
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_admin_password_is_generated_and_printed_once() {
    let dir = tempfile::tempdir().unwrap();
    let (http_port, mqtt_port) = (free_port(), free_port());
    let config = dir.path().join("central.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = \"{}\"\n[http]\nlisten = \"127.0.0.1:{http_port}\"\n\
             [embedded_broker]\nlisten = \"127.0.0.1:{mqtt_port}\"\n\
             [mqtt]\nport = {mqtt_port}\n",
            dir.path().join("central-data").display()
        ),
    )
    .unwrap();
    let args = ["--config", config.to_str().unwrap()];
    let base = format!("http://127.0.0.1:{http_port}");
    let marker = "initial admin password for user \"admin\": ";
    let up = || async {
        eventually("central to answer", Duration::from_secs(20), || {
            let url = format!("{base}/health");
            async move { get_json(&reqwest::Client::new(), &url).await }
        })
        .await
        .unwrap();
    };

    // A weak password from the environment stops the start, saying why.
    let mut weak = Process::spawn_with_env(
        "valeo-central-weak",
        &binary("valeo-central").unwrap(),
        &args,
        dir.path(),
        &[("VALEO_ADMIN_PASSWORD", "short")],
    )
    .unwrap();
    eventually("the refusal", Duration::from_secs(20), || {
        let log = weak.log();
        async move { log.contains("VALEO_ADMIN_PASSWORD").then_some(()) }
    })
    .await
    .unwrap();
    weak.kill();

    let mut first = Process::spawn(
        "valeo-central",
        &binary("valeo-central").unwrap(),
        &args,
        dir.path(),
    )
    .unwrap();
    up().await;
    let log = first.log();
    assert_eq!(log.matches(marker).count(), 1, "{log}");
    let start = log.find(marker).unwrap() + marker.len();
    let password = log[start..].split_whitespace().next().unwrap().to_owned();
    assert!(password.len() >= 20, "{password}");
    let jwt = valeo_system_tests::login(&base, "admin", &password)
        .await
        .unwrap();
    let (status, me) = me_at(&base, &jwt).await;
    assert_eq!((status, &me["role"]), (200, &json!("admin")), "{me}");
    first.kill();

    // Not stored in clear, and not shown again.
    let db = std::fs::read(dir.path().join("central-data/central.db")).unwrap();
    assert!(
        !db.windows(password.len()).any(|w| w == password.as_bytes()),
        "the password is not in the database"
    );
    let second = Process::spawn(
        "valeo-central",
        &binary("valeo-central").unwrap(),
        &args,
        dir.path(),
    )
    .unwrap();
    up().await;
    let log = second.log();
    assert_eq!(
        log.matches(marker).count(),
        1,
        "printed on the first start only: {log}"
    );
    assert!(
        valeo_system_tests::login(&base, "admin", &password)
            .await
            .is_ok()
    );
}

async fn me_at(base: &str, jwt: &str) -> (u16, Value) {
    let response = bearer_client(jwt)
        .unwrap()
        .get(format!("{base}/api/v1/auth/me"))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}
