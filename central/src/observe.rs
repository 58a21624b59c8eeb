//! What operations see of central beyond `/health`: every request gets an
//! id (taken from `x-request-id` when a proxy set one, else made here),
//! which is in every log line of that request (JSON logs with
//! `VALEO_LOG_FORMAT=json`) and in the answer's `x-request-id`; request
//! durations go into a latency histogram per route for `/metrics`; and the
//! process's CPU time and memory are read for `/health`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use serde::Serialize;
use tracing::Instrument;

/// Upper bounds of the latency buckets, seconds.
pub const LATENCY_BUCKETS_S: [f64; 10] =
    [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0];

/// Longest request id taken over from a client.
const MAX_REQUEST_ID_CHARS: usize = 64;

#[derive(Debug, Default, Clone)]
struct Histogram {
    buckets: [u64; LATENCY_BUCKETS_S.len()],
    count: u64,
    sum_s: f64,
}

/// Request latencies per (method, route). Routes are the router's
/// patterns (`/api/v1/weighings/{id}`), so the map stays small.
#[derive(Debug, Clone, Default)]
pub struct RequestStats {
    by_route: Arc<Mutex<BTreeMap<(String, String), Histogram>>>,
}

impl RequestStats {
    fn observe(&self, method: &str, route: &str, seconds: f64) {
        let mut map = self.by_route.lock().unwrap_or_else(PoisonError::into_inner);
        let h = map
            .entry((method.to_owned(), route.to_owned()))
            .or_default();
        for (bucket, bound) in h.buckets.iter_mut().zip(LATENCY_BUCKETS_S) {
            if seconds <= bound {
                *bucket += 1;
            }
        }
        h.count += 1;
        h.sum_s += seconds;
    }

    /// Appends the histogram family to an exposition.
    pub fn expose(&self, m: &mut valeo_process::metrics::Exposition) {
        let name = "valeo_central_http_request_duration_seconds";
        m.family(
            name,
            "HTTP request latency by method and route.",
            "histogram",
        );
        let map = self.by_route.lock().unwrap_or_else(PoisonError::into_inner);
        for ((method, route), h) in map.iter() {
            let labels = [("method", method.as_str()), ("route", route.as_str())];
            for (bound, count) in LATENCY_BUCKETS_S.iter().zip(h.buckets) {
                let le = bound.to_string();
                m.sample(
                    &format!("{name}_bucket"),
                    &[labels[0], labels[1], ("le", &le)],
                    count as f64,
                );
            }
            m.sample(
                &format!("{name}_bucket"),
                &[labels[0], labels[1], ("le", "+Inf")],
                h.count as f64,
            );
            m.sample(&format!("{name}_sum"), &labels, h.sum_s);
            m.sample(&format!("{name}_count"), &labels, h.count as f64);
        }
    }
}

fn request_id(request: &Request) -> String {
    let given = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= MAX_REQUEST_ID_CHARS
                && v.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        });
    given.map_or_else(|| format!("{:016x}", rand::random::<u64>()), str::to_owned)
}

/// The middleware: a span with the request id, the latency histogram, the
/// id in the answer.
pub async fn track(State(stats): State<RequestStats>, request: Request, next: Next) -> Response {
    let id = request_id(&request);
    let method = request.method().to_string();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let span = tracing::info_span!("request", request_id = %id, %method, %route);
    let started = Instant::now();
    let mut response = next.run(request).instrument(span.clone()).await;
    let seconds = started.elapsed().as_secs_f64();
    stats.observe(&method, &route, seconds);
    span.in_scope(|| {
        tracing::debug!(status = response.status().as_u16(), seconds, "request done");
    });
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert("x-request-id", value);
    }
    // No answer of central is to be sniffed into something else (a JSON
    // error rendered as HTML, say); pages set more headers of their own.
    response
        .headers_mut()
        .entry(axum::http::header::X_CONTENT_TYPE_OPTIONS)
        .or_insert(HeaderValue::from_static("nosniff"));
    response
}

/// The process's resources, from `/proc/self`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ProcessStats {
    /// Resident memory.
    pub rss_bytes: Option<u64>,
    /// CPU time used since the start, user plus system.
    pub cpu_seconds: Option<f64>,
    pub threads: Option<u64>,
}

/// Reads `/proc/self/status` and `/proc/self/stat` (Linux); `None` fields
/// where they cannot be read.
pub fn process_stats() -> ProcessStats {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
    };
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let cpu_seconds = stat.rsplit_once(')').and_then(|(_, rest)| {
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // utime and stime are fields 14 and 15 of the whole line: 11 and 12 here.
        let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
        // USER_HZ is 100 on every Linux this runs on.
        Some(ticks as f64 / 100.0)
    });
    ProcessStats {
        rss_bytes: field("VmRSS:").map(|kb| kb * 1024),
        cpu_seconds,
        threads: field("Threads:"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_histogram_counts_cumulatively() {
        let stats = RequestStats::default();
        stats.observe("GET", "/api/v1/weighings", 0.002);
        stats.observe("GET", "/api/v1/weighings", 0.2);
        let mut m = valeo_process::metrics::Exposition::new();
        stats.expose(&mut m);
        let text = m.finish();
        for line in [
            "valeo_central_http_request_duration_seconds_bucket{method=\"GET\",route=\"/api/v1/weighings\",le=\"0.001\"} 0",
            "valeo_central_http_request_duration_seconds_bucket{method=\"GET\",route=\"/api/v1/weighings\",le=\"0.0025\"} 1",
            "valeo_central_http_request_duration_seconds_bucket{method=\"GET\",route=\"/api/v1/weighings\",le=\"0.25\"} 2",
            "valeo_central_http_request_duration_seconds_bucket{method=\"GET\",route=\"/api/v1/weighings\",le=\"+Inf\"} 2",
            "valeo_central_http_request_duration_seconds_count{method=\"GET\",route=\"/api/v1/weighings\"} 2",
        ] {
            assert!(text.contains(line), "{line} missing in\n{text}");
        }
    }

    #[test]
    fn this_process_is_measured() {
        let stats = process_stats();
        assert!(stats.rss_bytes.unwrap() > 1024 * 1024, "{stats:?}");
        assert!(stats.cpu_seconds.is_some(), "{stats:?}");
        assert!(stats.threads.unwrap() >= 1);
    }
}
