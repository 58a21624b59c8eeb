//! The operator terminal: static pages and scripts compiled into the
//! binary, so the touch screen in the scale house loads nothing from
//! outside and works with the internet line down.

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

use super::AppState;

/// (URL path, content type, body).
const ASSETS: [(&str, &str, &str); 7] = [
    ("/", HTML, include_str!("../terminal/index.html")),
    (
        "/tickets/{ticket_no}",
        HTML,
        include_str!("../terminal/ticket.html"),
    ),
    ("/terminal/app.js", JS, include_str!("../terminal/app.js")),
    (
        "/terminal/ticket.js",
        JS,
        include_str!("../terminal/ticket.js"),
    ),
    ("/terminal/i18n.js", JS, include_str!("../terminal/i18n.js")),
    (
        "/terminal/style.css",
        CSS,
        include_str!("../terminal/style.css"),
    ),
    ("/favicon.ico", "image/svg+xml", FAVICON),
];

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const FAVICON: &str = "<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 16 16'><rect width='16' height='16' fill='#1b5e20'/></svg>";

pub(super) fn routes() -> Router<AppState> {
    ASSETS
        .iter()
        .fold(Router::new(), |router, &(path, content_type, body)| {
            router.route(
                path,
                get(move || async move {
                    (
                        [
                            (header::CONTENT_TYPE, content_type),
                            // Pages change with the binary; a stale script
                            // after an update would talk an old API.
                            (header::CACHE_CONTROL, "no-cache"),
                        ],
                        body,
                    )
                        .into_response()
                }),
            )
        })
}
