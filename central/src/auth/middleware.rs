//! The layer every request passes: who is calling (a bearer JWT, a bearer
//! API token, or the session cookie with its CSRF token for unsafe
//! methods), whether the route lets them (the matrix in `policy`), and,
//! for every successful change under `/api/v1`, one line in the audit log.
//!
//! Handlers find the [`Caller`] in the request extensions
//! (`Option<Extension<Caller>>`; `None` on public routes).

use std::net::{IpAddr, SocketAddr};

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use valeo_process::problem::Problem;

use super::policy::{Access, Permission, Role};
use super::{audit, password};
use crate::api::AppState;
use crate::store::Store;
use crate::store::auth::AuditRecord;

/// The session cookie (HttpOnly): a random id, stored only as its hash.
pub const SESSION_COOKIE: &str = "valeo_session";
/// The CSRF cookie, readable by the page's script, which echoes it in
/// [`CSRF_HEADER`] on every unsafe request.
pub const CSRF_COOKIE: &str = "valeo_csrf";
pub const CSRF_HEADER: &str = "x-csrf-token";
/// How API tokens begin, so they are told apart from JWTs.
pub const TOKEN_PREFIX: &str = "vt_";
/// Largest body of a POST/PUT/PATCH/DELETE under `/api/v1`, bytes (axum's
/// default limit for JSON bodies, so nothing that passed before is refused
/// now).
pub const MAX_BODY_BYTES: usize = 2 * 1024 * 1024;
/// How much of a refused body is still read and dropped, bytes, so the
/// client, still sending, gets the 413 instead of a reset connection.
const MAX_DRAIN_BYTES: usize = 16 * 1024 * 1024;
/// How long a refused body is drained at most.
const DRAIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// A token's `last_used_at` is written at most this often, seconds.
pub const TOKEN_TOUCH_INTERVAL_S: i64 = 60;
/// Longest credential looked at, bytes.
const MAX_CREDENTIAL_BYTES: usize = 4096;
/// Longest concrete path kept in the audit log, bytes.
const MAX_AUDIT_PATH_BYTES: usize = 512;
/// Longest request id taken over from a client (as `observe` does).
const MAX_REQUEST_ID_CHARS: usize = 64;
const INTERNAL_DETAIL: &str = "the request could not be completed";

/// How the caller proved who they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Via {
    /// The `valeo_session` cookie (browsers).
    Session,
    /// A JWT from `POST /api/v1/auth/login`.
    Jwt,
    /// An API token (`vt_...`).
    Token,
}

/// Who is calling; in the request extensions of every route that is not
/// public.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// `user:alice` or `token:erp`: what the audit log and records of who
    /// did something name.
    pub actor: String,
    /// The username, or the token's name.
    pub name: String,
    /// From the database, never from the JWT.
    pub role: Role,
    /// The role's permissions, for a scoped token only those in its scopes.
    pub permissions: Vec<Permission>,
    pub via: Via,
}

impl Caller {
    pub fn has(&self, permission: Permission) -> bool {
        self.permissions.contains(&permission)
    }

    /// The username, when the caller is a user (not an API token).
    pub fn username(&self) -> Option<&str> {
        (self.via != Via::Token).then_some(self.name.as_str())
    }
}

/// The client's address: the peer, or for a trusted proxy the address it
/// names in `X-Forwarded-For`. `None` when unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub Option<IpAddr>);

/// The hash of the session cookie of a session-authenticated request.
#[derive(Debug, Clone)]
pub(crate) struct SessionId(pub(crate) String);

/// The request id `observe::track` will use: the client's when valid (by
/// the same rule), else a new one set on the request, so the audit log and
/// the logs agree.
fn ensure_request_id(request: &mut Request) -> String {
    let given = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= MAX_REQUEST_ID_CHARS
                && v.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
        .map(str::to_owned);
    given.unwrap_or_else(|| {
        let id = format!("{:016x}", rand::random::<u64>());
        if let Ok(value) = HeaderValue::from_str(&id) {
            request.headers_mut().insert("x-request-id", value);
        }
        id
    })
}

/// The client address of a request (see [`ClientAddr`]).
pub fn client_addr(
    peer: Option<IpAddr>,
    headers: &HeaderMap,
    trusted: &[IpAddr],
) -> Option<IpAddr> {
    let peer = peer?;
    if !trusted.contains(&peer) {
        return Some(peer);
    }
    // Walk from the nearest hop back; the first address that is not one of
    // our proxies is the client. Earlier entries could be forged.
    let forwarded: Vec<IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|a| a.trim().parse().ok())
        .collect();
    Some(
        forwarded
            .into_iter()
            .rev()
            .find(|a| !trusted.contains(a))
            .unwrap_or(peer),
    )
}

/// The value of cookie `name`, if sent.
pub fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.trim())
        .filter(|v| !v.is_empty() && v.len() <= MAX_CREDENTIAL_BYTES)
}

/// What `observe::track` adds to every answer, for the answers this layer
/// gives before the request gets there.
fn with_common_headers(response: &mut Response, request_id: &str) {
    if let Ok(value) = HeaderValue::from_str(request_id) {
        response.headers_mut().insert("x-request-id", value);
    }
    response
        .headers_mut()
        .entry(header::X_CONTENT_TYPE_OPTIONS)
        .or_insert(HeaderValue::from_static("nosniff"));
}

/// A refusal of the layer.
#[derive(Debug)]
enum Denied {
    /// 401: no or bad credentials; `token_given` adds `error="invalid_token"`.
    Unauthenticated { detail: String, token_given: bool },
    /// 403.
    Forbidden(String),
    /// 500, cause logged.
    Failed(String),
}

impl Denied {
    fn unauthenticated(detail: &str, token_given: bool) -> Denied {
        Denied::Unauthenticated {
            detail: detail.to_owned(),
            token_given,
        }
    }

    fn into_response(self, request_id: &str) -> Response {
        let mut response = match self {
            Denied::Unauthenticated {
                detail,
                token_given,
            } => {
                let challenge = if token_given {
                    "Bearer realm=\"valeo-central\", error=\"invalid_token\""
                } else {
                    "Bearer realm=\"valeo-central\""
                };
                let mut response = Problem::new(StatusCode::UNAUTHORIZED, detail).into_response();
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(challenge),
                );
                response
            }
            Denied::Forbidden(detail) => {
                Problem::new(StatusCode::FORBIDDEN, detail).into_response()
            }
            Denied::Failed(cause) => Problem::internal(&cause, INTERNAL_DETAIL).into_response(),
        };
        with_common_headers(&mut response, request_id);
        response
    }
}

/// Why a body was not read.
#[derive(Debug, PartialEq, Eq)]
enum BodyError {
    TooLarge,
    /// The client broke off or sent garbage framing.
    Broken,
}

/// The next data chunk of a body (trailers skipped).
async fn next_chunk(body: &mut Body) -> Option<Result<Bytes, axum::Error>> {
    use axum::body::HttpBody;
    loop {
        let frame =
            std::future::poll_fn(|cx| std::pin::Pin::new(&mut *body).poll_frame(cx)).await?;
        match frame {
            Ok(frame) => {
                if let Ok(data) = frame.into_data() {
                    return Some(Ok(data));
                }
            }
            Err(error) => return Some(Err(error)),
        }
    }
}

/// A body of at most `max_bytes`. A longer one is drained (see
/// [`MAX_DRAIN_BYTES`]) and refused.
async fn read_bounded(mut body: Body, max_bytes: usize) -> Result<Bytes, BodyError> {
    let mut buffer = Vec::new();
    while let Some(chunk) = next_chunk(&mut body).await {
        let chunk = chunk.map_err(|_| BodyError::Broken)?;
        if buffer.len() + chunk.len() > max_bytes {
            let drain = async {
                let mut drained = 0usize;
                while let Some(Ok(chunk)) = next_chunk(&mut body).await {
                    drained += chunk.len();
                    if drained > MAX_DRAIN_BYTES {
                        break;
                    }
                }
            };
            // Whatever the drain ends with, the answer is the same.
            tokio::time::timeout(DRAIN_TIMEOUT, drain).await.ok();
            return Err(BodyError::TooLarge);
        }
        buffer.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(buffer))
}

/// The request's body, buffered (bounded), and the request rebuilt with it.
async fn buffer_body(request: Request, request_id: &str) -> Result<(Request, Bytes), Response> {
    let (parts, body) = request.into_parts();
    match read_bounded(body, MAX_BODY_BYTES).await {
        Ok(bytes) => Ok((Request::from_parts(parts, Body::from(bytes.clone())), bytes)),
        Err(error) => {
            let problem = match error {
                BodyError::TooLarge => Problem::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("the request body must be at most {MAX_BODY_BYTES} bytes"),
                ),
                BodyError::Broken => Problem::bad_request("the request body could not be read"),
            };
            let mut response = problem.into_response();
            with_common_headers(&mut response, request_id);
            Err(response)
        }
    }
}

/// Runs a store call on the blocking pool.
async fn blocking<T, F>(store: &Store, f: F) -> Result<T, Denied>
where
    F: FnOnce(&Store) -> Result<T, crate::store::StoreError> + Send + 'static,
    T: Send + 'static,
{
    let store = store.clone();
    match tokio::task::spawn_blocking(move || f(&store)).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(Denied::Failed(error.to_string())),
        Err(error) => Err(Denied::Failed(error.to_string())),
    }
}

fn user_caller(username: &str, role: Role, via: Via) -> Caller {
    Caller {
        actor: format!("user:{username}"),
        name: username.to_owned(),
        role,
        permissions: role.permissions().to_vec(),
        via,
    }
}

/// Checks a bearer credential: an API token or a JWT.
async fn bearer(state: &AppState, credential: &str, now: i64) -> Result<Caller, Denied> {
    if credential.len() > MAX_CREDENTIAL_BYTES {
        return Err(Denied::unauthenticated(
            "the bearer token is not valid",
            true,
        ));
    }
    if credential.starts_with(TOKEN_PREFIX) {
        let hash = password::sha256_hex(credential);
        let token = blocking(&state.store, move |s| s.token_by_hash(&hash)).await?;
        let valid = token
            .filter(|t| t.revoked_at.is_none() && t.expires_at.is_none_or(|expires| now < expires));
        let Some(token) = valid else {
            return Err(Denied::unauthenticated(
                "the API token is unknown, revoked or expired",
                true,
            ));
        };
        if token
            .last_used_at
            .is_none_or(|last| now - last >= TOKEN_TOUCH_INTERVAL_S)
        {
            // Not awaited: noting the use must not slow the request down.
            let (store, id) = (state.store.clone(), token.id);
            tokio::task::spawn_blocking(move || {
                if let Err(error) = store.touch_token(id, now) {
                    tracing::warn!(%error, token_id = id, "cannot note the use of an API token");
                }
            });
        }
        let permissions = token
            .role
            .permissions()
            .iter()
            .copied()
            .filter(|p| {
                token
                    .scopes
                    .as_ref()
                    .is_none_or(|scopes| scopes.contains(p))
            })
            .collect();
        return Ok(Caller {
            actor: format!("token:{}", token.name),
            name: token.name,
            role: token.role,
            permissions,
            via: Via::Token,
        });
    }
    let claims = match state.auth.keys().verify(credential, now) {
        Ok(claims) => claims,
        Err(super::jwt::JwtError::Expired) => {
            return Err(Denied::unauthenticated(
                "the access token has expired",
                true,
            ));
        }
        Err(_) => {
            return Err(Denied::unauthenticated(
                "the bearer token is not valid",
                true,
            ));
        }
    };
    let username = claims.sub.clone();
    let user = blocking(&state.store, move |s| s.user(&username)).await?;
    match user {
        Some(user) if !user.disabled && claims.iat >= user.password_changed_at => {
            Ok(user_caller(&user.username, user.role, Via::Jwt))
        }
        _ => Err(Denied::unauthenticated(
            "the access token is no longer valid; log in again",
            true,
        )),
    }
}

/// Who is calling, and the session id hash when by cookie.
async fn identify(
    state: &AppState,
    headers: &HeaderMap,
    method: &Method,
    now: i64,
) -> Result<(Caller, Option<String>), Denied> {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let text = value.to_str().unwrap_or_default();
        let credential = text
            .split_once(' ')
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, credential)| credential.trim())
            .filter(|c| !c.is_empty());
        let Some(credential) = credential else {
            return Err(Denied::unauthenticated(
                "the Authorization header must be `Bearer <token>`",
                true,
            ));
        };
        return Ok((bearer(state, credential, now).await?, None));
    }
    let Some(session) = cookie(headers, SESSION_COOKIE) else {
        return Err(Denied::unauthenticated(
            "authentication required: log in, or send `Authorization: Bearer <token>`",
            false,
        ));
    };
    let id_hash = password::sha256_hex(session);
    let lookup = id_hash.clone();
    let record = blocking(&state.store, move |s| s.session(&lookup, now)).await?;
    let Some(record) = record.filter(|r| !r.user.disabled) else {
        return Err(Denied::unauthenticated(
            "the session has ended or expired; log in again",
            false,
        ));
    };
    if is_unsafe(method) {
        let sent = headers
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .filter(|v| v.len() <= MAX_CREDENTIAL_BYTES);
        let matches = sent.is_some_and(|sent| {
            password::constant_time_eq(&password::sha256_hex(sent), &record.csrf_hash)
        });
        if !matches {
            return Err(Denied::Forbidden("missing or wrong CSRF token".into()));
        }
    }
    Ok((
        user_caller(&record.user.username, record.user.role, Via::Session),
        Some(id_hash),
    ))
}

fn is_unsafe(method: &Method) -> bool {
    [Method::POST, Method::PUT, Method::PATCH, Method::DELETE].contains(method)
}

/// The layer: authenticate, authorise, audit. Public routes pass untouched
/// (with [`ClientAddr`] set).
pub async fn authenticate(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let request_id = ensure_request_id(&mut request);
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let client = client_addr(
        peer,
        request.headers(),
        &state.auth.config().trusted_proxies,
    );
    request.extensions_mut().insert(ClientAddr(client));
    let method = request.method().clone();
    let pattern = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned());
    let access = super::policy::access(&method, pattern.as_deref());
    let path = request.uri().path().to_owned();
    let has_body = is_unsafe(&method) && path.starts_with("/api/v1/");
    if access == Access::Public {
        if has_body {
            // Bounded here too (logins), so an over-long body is answered 413.
            request = match buffer_body(request, &request_id).await {
                Ok((request, _)) => request,
                Err(response) => return response,
            };
        }
        return next.run(request).await;
    }
    let now = chrono::Utc::now();
    let (caller, session) = match identify(&state, request.headers(), &method, now.timestamp())
        .await
    {
        Ok(found) => found,
        Err(denied) => {
            tracing::debug!(request_id, %method, route = pattern.as_deref().unwrap_or(""), ?denied, "request refused");
            return denied.into_response(&request_id);
        }
    };
    if let Access::Needs(permission) = access
        && !caller.has(permission)
    {
        return Denied::Forbidden(format!(
            "{} lacks the permission `{permission}` this needs",
            caller.actor
        ))
        .into_response(&request_id);
    }
    request.extensions_mut().insert(caller.clone());
    if let Some(id_hash) = session {
        request.extensions_mut().insert(SessionId(id_hash));
    }
    if !has_body {
        return next.run(request).await;
    }
    let (request, bytes) = match buffer_body(request, &request_id).await {
        Ok(buffered) => buffered,
        Err(response) => return response,
    };
    let summary = audit::summarize(&bytes);
    let response = next.run(request).await;
    if response.status().is_success() {
        let record = AuditRecord {
            at_ms: now.timestamp_millis(),
            actor: caller.actor,
            action: method.to_string(),
            route: pattern.unwrap_or_default(),
            path: truncate(path, MAX_AUDIT_PATH_BYTES),
            status: response.status().as_u16(),
            request_id: response
                .headers()
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .map_or(Some(request_id), |v| Some(v.to_owned())),
            summary,
        };
        write_audit(&state, record).await;
    }
    response
}

/// Writes an audit line; a failure is logged (the change itself is done).
pub(crate) async fn write_audit(state: &AppState, record: AuditRecord) {
    let max_rows = state.auth.config().max_audit_rows;
    let written = blocking(&state.store, move |s| s.append_audit(&record, max_rows)).await;
    if let Err(error) = written {
        tracing::error!(?error, "audit log line not written");
    }
}

fn truncate(mut text: String, max_bytes: usize) -> String {
    if text.len() > max_bytes {
        let mut end = max_bytes;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn the_client_is_the_peer_unless_a_trusted_proxy_forwards() {
        let proxy: IpAddr = "10.0.0.1".parse().unwrap();
        let peer: IpAddr = "192.0.2.9".parse().unwrap();
        let forwarded = headers(&[("x-forwarded-for", "203.0.113.5, 198.51.100.7")]);
        let cases = [
            (Some(peer), &forwarded, &[proxy][..], Some(peer)),
            (
                Some(proxy),
                &forwarded,
                &[proxy][..],
                Some("198.51.100.7".parse().unwrap()),
            ),
            (Some(proxy), &headers(&[]), &[proxy][..], Some(proxy)),
            (
                Some(proxy),
                &headers(&[("x-forwarded-for", "203.0.113.5, 10.0.0.1")]),
                &[proxy][..],
                Some("203.0.113.5".parse().unwrap()),
            ),
            (
                Some(proxy),
                &headers(&[("x-forwarded-for", "garbage")]),
                &[proxy][..],
                Some(proxy),
            ),
            (Some(peer), &forwarded, &[][..], Some(peer)),
            (None, &forwarded, &[proxy][..], None),
        ];
        for (peer, headers, trusted, expected) in cases {
            assert_eq!(
                client_addr(peer, headers, trusted),
                expected,
                "{peer:?} {headers:?}"
            );
        }
    }

    #[test]
    fn cookies_are_found_by_exact_name() {
        let map = headers(&[
            ("cookie", "theme=dark; valeo_session_old=x"),
            ("cookie", "valeo_session=abc; valeo_csrf=def"),
        ]);
        assert_eq!(cookie(&map, SESSION_COOKIE), Some("abc"));
        assert_eq!(cookie(&map, CSRF_COOKIE), Some("def"));
        assert_eq!(cookie(&map, "missing"), None);
        assert_eq!(
            cookie(&headers(&[("cookie", "valeo_session=")]), SESSION_COOKIE),
            None
        );
    }

    #[tokio::test]
    async fn bodies_are_read_up_to_the_limit() {
        let cases: [(usize, usize, Result<usize, BodyError>); 4] = [
            (0, 10, Ok(0)),
            (10, 10, Ok(10)),
            (11, 10, Err(BodyError::TooLarge)),
            (MAX_DRAIN_BYTES * 2, 10, Err(BodyError::TooLarge)),
        ];
        for (length, max, expected) in cases {
            let body = Body::from(vec![b'x'; length]);
            let read = read_bounded(body, max).await.map(|b| b.len());
            assert_eq!(read, expected, "{length} bytes, at most {max}");
        }
    }

    #[test]
    fn a_scoped_caller_has_only_its_permissions() {
        let caller = user_caller("alice", Role::Office, Via::Session);
        assert!(caller.has(Permission::DeliveryNotes));
        assert!(!caller.has(Permission::Admin));
        assert_eq!(caller.actor, "user:alice");
        assert_eq!(caller.username(), Some("alice"));
    }
}
