//! The office web UI and the API docs viewer: static pages, scripts and
//! styles from `central/ui/`, compiled into the binary so the office needs
//! nothing but central (no CDN, no build step).
//!
//! `GET /` is the office app, `GET /ui/{file}` its assets, `GET /api/v1/docs`
//! the page that renders `/api/v1/openapi.json`. The pages only read and
//! write through the JSON API with the session cookie; these handlers hold
//! no state and serve the same bytes to everyone.
//!
//! Every answer carries a strict Content-Security-Policy: no inline script,
//! no inline style, nothing from another origin. Plates and names come from
//! the field, so the scripts build the DOM with text nodes only; the policy
//! is the second line of defence if one of them ever slips through.

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderName, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use valeo_process::problem::Problem;

use crate::api::AppState;

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const SVG: &str = "image/svg+xml";

/// The files under `/ui/`: (name, content type, body).
const ASSETS: [(&str, &str, &str); 7] = [
    ("index.html", HTML, include_str!("../ui/index.html")),
    ("app.js", JS, include_str!("../ui/app.js")),
    ("i18n.js", JS, include_str!("../ui/i18n.js")),
    ("style.css", CSS, include_str!("../ui/style.css")),
    ("docs.html", HTML, include_str!("../ui/docs.html")),
    ("docs.js", JS, include_str!("../ui/docs.js")),
    ("favicon.svg", SVG, include_str!("../ui/favicon.svg")),
];

/// Only our own origin, and no framing: the pages hold a session that can
/// issue delivery notes.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; object-src 'none'; \
     base-uri 'none'; frame-ancestors 'none'; form-action 'self'";

/// Headers on every answer of this module, besides the content type.
pub const SECURITY_HEADERS: [(&str, &str); 5] = [
    ("content-security-policy", CONTENT_SECURITY_POLICY),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "same-origin"),
    ("x-frame-options", "DENY"),
    // Pages change with the binary; a stale script after an update would
    // talk to an API that has moved on.
    ("cache-control", "no-cache"),
];

/// The routes of the office UI and the docs viewer, to be merged into the
/// API router.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { asset("index.html") }))
        .route("/api/v1/docs", get(|| async { asset("docs.html") }))
        .route("/ui/{*path}", get(ui_file))
}

async fn ui_file(Path(path): Path<String>) -> Response {
    asset(&path)
}

/// One compiled-in file with the security headers, or 404: the table is the
/// whole file system, so no path can reach anything else.
fn asset(name: &str) -> Response {
    let Some(&(_, content_type, body)) = ASSETS.iter().find(|(n, _, _)| *n == name) else {
        let mut response = Problem::not_found(format!("no UI file {name:?}")).into_response();
        add_security_headers(&mut response);
        return response;
    };
    let mut response = ([(header::CONTENT_TYPE, content_type)], body).into_response();
    add_security_headers(&mut response);
    response
}

fn add_security_headers(response: &mut Response) {
    let headers = response.headers_mut();
    for (name, value) in SECURITY_HEADERS {
        headers.insert(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(name: &str) -> &'static str {
        ASSETS
            .iter()
            .find(|(n, _, _)| *n == name)
            .map(|(_, _, b)| *b)
            .unwrap()
    }

    /// Every `/ui/...` a page or script refers to is one we serve.
    #[test]
    fn every_referenced_asset_is_served() {
        for (name, _, text) in ASSETS {
            for (i, _) in text.match_indices("/ui/") {
                let rest = &text[i + 4..];
                let end = rest
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '.' || c == '-'))
                    .unwrap_or(rest.len());
                let file = &rest[..end];
                if file.is_empty() {
                    continue;
                }
                assert!(
                    ASSETS.iter().any(|(n, _, _)| *n == file),
                    "{name} refers to /ui/{file}, which is not served"
                );
            }
        }
    }

    /// The policy forbids inline script and style; a page that used them
    /// would silently not work, so they are refused here already.
    #[test]
    fn pages_have_no_inline_script_or_style() {
        for page in ["index.html", "docs.html"] {
            let html = body(page).to_ascii_lowercase();
            for (i, _) in html.match_indices("<script") {
                let tag_end = html[i..].find('>').unwrap() + i;
                assert!(
                    html[i..tag_end].contains(" src="),
                    "{page}: inline <script> at byte {i}"
                );
                assert!(
                    html[tag_end..].starts_with("></script>"),
                    "{page}: <script> with a body at byte {i}"
                );
            }
            for forbidden in [
                "<style",
                " style=",
                " onclick=",
                " onload=",
                " onsubmit=",
                "javascript:",
            ] {
                assert!(!html.contains(forbidden), "{page} contains {forbidden:?}");
            }
        }
    }

    /// Data from the field is rendered as text: the scripts never parse
    /// strings as HTML.
    #[test]
    fn scripts_never_parse_html() {
        for (name, content_type, text) in ASSETS {
            if content_type != JS {
                continue;
            }
            for forbidden in [
                "innerHTML",
                "outerHTML",
                "insertAdjacentHTML",
                "document.write",
                "eval(",
            ] {
                assert!(!text.contains(forbidden), "{name} uses {forbidden}");
            }
        }
    }

    #[test]
    fn unknown_files_and_escapes_are_404_with_the_headers() {
        for name in [
            "",
            "nope.js",
            "../Cargo.toml",
            "..%2FCargo.toml",
            "app.js/x",
            "APP.JS",
        ] {
            let response = asset(name);
            assert_eq!(response.status(), 404, "{name:?}");
            assert_eq!(
                response.headers()["x-content-type-options"],
                "nosniff",
                "{name:?}"
            );
        }
        let response = asset("app.js");
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()[header::CONTENT_TYPE], JS);
        assert_eq!(
            response.headers()["content-security-policy"],
            CONTENT_SECURITY_POLICY
        );
    }
}
