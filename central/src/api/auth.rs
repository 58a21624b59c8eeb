//! HTTP handlers of authentication: login, logout, the caller's own
//! identity and password (`/api/v1/auth/...`), users, API tokens and the
//! audit log (admin). Who may call what is decided before these run, by
//! `crate::auth::middleware` from the matrix in `crate::auth::policy`.

use std::time::Instant;

use axum::extract::{FromRequest, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{AppendHeaders, IntoResponse, Response};
use axum::routing::{delete, get, patch, post};
use axum::{Extension, Json, Router};
use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use valeo_process::problem::Problem;

use super::{ApiQuery, AppState, page_limit, query};
use crate::auth::middleware::{
    CSRF_COOKIE, Caller, ClientAddr, SESSION_COOKIE, SessionId, TOKEN_PREFIX, Via, write_audit,
};
use crate::auth::password::{self, PasswordError};
use crate::auth::{Permission, Role, UserSummary};
use crate::store::auth::{
    AuditEntry, AuditFilter, AuditRecord, CreateTokenError, CreateUserError, NewToken, TokenView,
    UpdateUserError, UserChange, UserView,
};

/// Longest username or token name, characters.
pub const MAX_NAME_CHARS: usize = 64;
/// What a failed login says, whichever part was wrong.
const WRONG_CREDENTIALS: &str = "wrong username or password";
const INTERNAL_DETAIL: &str = "the request could not be completed";

/// The routes of this module, merged into the API router.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/auth/login", post(login))
        .route("/api/v1/auth/logout", post(logout))
        .route("/api/v1/auth/me", get(me))
        .route("/api/v1/auth/password", post(change_password))
        .route("/api/v1/users", get(list_users).post(create_user))
        .route("/api/v1/users/{username}", patch(update_user))
        .route("/api/v1/tokens", get(list_tokens).post(create_token))
        .route("/api/v1/tokens/{id}", delete(revoke_token))
        .route("/api/v1/audit-log", get(audit_log))
}

/// An RFC 9457 problem document, as every error of the API is answered.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ProblemSchema {
    /// Always `about:blank`: the status says what kind of problem it is.
    #[schema(example = "about:blank")]
    pub r#type: String,
    /// The status's reason phrase.
    #[schema(example = "Bad Request")]
    pub title: String,
    #[schema(example = 400)]
    pub status: u16,
    /// What was wrong, naming the field; for server errors only that
    /// something failed.
    #[schema(example = "username must be 1 to 64 characters of a-z, 0-9, '.', '_' and '-'")]
    pub detail: String,
}

/// The OpenAPI document of this module, merged into the API's.
#[derive(Debug, utoipa::OpenApi)]
#[openapi(
    paths(
        login,
        logout,
        me,
        change_password,
        list_users,
        create_user,
        update_user,
        list_tokens,
        create_token,
        revoke_token,
        audit_log
    ),
    components(schemas(
        ProblemSchema,
        LoginRequest,
        LoginResponse,
        UserSummary,
        MeResponse,
        PasswordChange,
        NewUserRequest,
        UserPatch,
        UserView,
        NewTokenRequest,
        CreatedToken,
        TokenView,
        AuditEntry,
        AuditPage,
        Role,
        Permission,
        Via
    )),
    modifiers(&SecuritySchemes),
    tags(
        (name = "auth", description = "Logging in and out; the caller's identity and password"),
        (name = "users", description = "User accounts (admin)"),
        (name = "tokens", description = "API tokens for integrations (admin)"),
        (name = "audit", description = "Who changed what (admin)")
    )
)]
pub struct AuthApi;

/// The two ways to authenticate, as OpenAPI security schemes.
struct SecuritySchemes;

impl utoipa::Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{
            ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme,
        };
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A JWT from POST /api/v1/auth/login, or an API token (vt_...)",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                SESSION_COOKIE,
                "The browser session; unsafe methods also need the X-CSRF-Token header \
                 with the valeo_csrf cookie's value",
            ))),
        );
    }
}

/// A JSON body whose rejection is a problem document naming the field.
struct ApiJson<T>(T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        Json::<T>::from_request(request, state)
            .await
            .map(|Json(value)| ApiJson(value))
            .map_err(|rejection| Problem::new(rejection.status(), rejection.body_text()))
    }
}

fn now_s() -> i64 {
    Utc::now().timestamp()
}

/// Usernames: `[a-z0-9._-]{1,64}`.
fn valid_username(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_CHARS
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
}

/// Token names: `[A-Za-z0-9._-]{1,64}`.
fn valid_token_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_CHARS
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

fn password_problem(field: &str, error: &PasswordError) -> Problem {
    match error {
        PasswordError::Hash(_) => Problem::internal(error, INTERNAL_DETAIL),
        _ => Problem::bad_request(format!("{field} {error}")),
    }
}

/// Hashes a password on the blocking pool, at most
/// `auth::MAX_CONCURRENT_HASHES` at once.
async fn hash_password(state: &AppState, secret: String) -> Result<String, Problem> {
    let _permit = state.auth.hashing_permit().await;
    match tokio::task::spawn_blocking(move || password::hash(&secret)).await {
        Ok(Ok(hash)) => Ok(hash),
        Ok(Err(error)) => Err(password_problem("password", &error)),
        Err(error) => Err(Problem::internal(&error, INTERNAL_DETAIL)),
    }
}

fn request_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

fn cookie_header(
    name: &str,
    value: &str,
    max_age_s: u64,
    http_only: bool,
    secure: bool,
) -> HeaderValue {
    let mut text = format!("{name}={value}; Path=/; Max-Age={max_age_s}; SameSite=Strict");
    if http_only {
        text.push_str("; HttpOnly");
    }
    if secure {
        text.push_str("; Secure");
    }
    // Values are base64url or empty: always a valid header.
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Whether the browser reached us over HTTPS (through a proxy saying so).
fn came_over_https(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("https"))
}

fn caller_or_401(caller: Option<Extension<Caller>>) -> Result<Caller, Problem> {
    caller
        .map(|Extension(c)| c)
        .ok_or_else(|| Problem::new(StatusCode::UNAUTHORIZED, "authentication required"))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"username": "alice", "password": "correct horse battery"}))]
pub struct LoginRequest {
    #[schema(example = "admin")]
    pub username: String,
    pub password: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LoginResponse {
    /// A JWT for `Authorization: Bearer`.
    pub token: String,
    /// When the JWT expires, RFC 3339.
    pub expires_at: String,
    pub user: UserSummary,
}

/// Whether a login may proceed, and the outcome of checking the password.
enum LoginCheck {
    Ok(Role),
    Wrong(&'static str),
}

/// `POST /api/v1/auth/login`.
#[utoipa::path(
    post,
    path = "/api/v1/auth/login",
    tag = "auth",
    request_body = LoginRequest,
    responses(
        (status = 200, description = "Logged in; sets the `valeo_session` (HttpOnly) and \
            `valeo_csrf` cookies", body = LoginResponse),
        (status = 400, description = "Malformed body", body = ProblemSchema, content_type = "application/problem+json"),
        (status = 413, description = "The body is larger than 2 MiB", body = ProblemSchema, content_type = "application/problem+json"),
        (status = 415, description = "The body is not `application/json`", body = ProblemSchema, content_type = "application/problem+json"),
        (status = 422, description = "A field is missing, unknown or of the wrong type (named)", body = ProblemSchema, content_type = "application/problem+json"),
        (status = 401, description = "Wrong username or password (the same for both)", body = ProblemSchema, content_type = "application/problem+json"),
        (status = 429, description = "Too many failed logins for this username or address; see `Retry-After`", body = ProblemSchema, content_type = "application/problem+json")
    )
)]
async fn login(
    State(state): State<AppState>,
    client: Option<Extension<ClientAddr>>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<LoginRequest>,
) -> Response {
    let client = client.and_then(|Extension(ClientAddr(a))| a);
    let username = body.username.trim().to_lowercase();
    let shown_name: String = username.chars().take(MAX_NAME_CHARS).collect();
    let locked = state
        .auth
        .with_limiter(|l| l.retry_after(&username, client, Instant::now()));
    if let Some(wait) = locked {
        tracing::warn!(username = ?shown_name, client = ?client, "login refused: too many failures");
        let retry_after_s = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        let mut response = Problem::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!("too many failed logins; try again in {retry_after_s} s"),
        )
        .into_response();
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_s.max(1)));
        return response;
    }
    let check = {
        let _permit = state.auth.hashing_permit().await;
        let (store, dummy) = (state.store.clone(), state.auth.dummy_hash().to_owned());
        let lookup = username.clone();
        let secret = body.password;
        tokio::task::spawn_blocking(move || -> Result<LoginCheck, crate::store::StoreError> {
            let user = if valid_username(&lookup) {
                store.user(&lookup)?
            } else {
                None
            };
            Ok(match user {
                None => {
                    // As long as a wrong password takes.
                    password::verify(&secret, &dummy);
                    LoginCheck::Wrong("unknown user")
                }
                Some(user) => {
                    let matches = password::verify(&secret, &user.password_hash);
                    match (matches, user.disabled) {
                        (true, false) => LoginCheck::Ok(user.role),
                        (true, true) => LoginCheck::Wrong("user is disabled"),
                        (false, _) => LoginCheck::Wrong("wrong password"),
                    }
                }
            })
        })
        .await
    };
    let check = match check {
        Ok(Ok(check)) => check,
        Ok(Err(error)) => return Problem::internal(&error, INTERNAL_DETAIL).into_response(),
        Err(error) => return Problem::internal(&error, INTERNAL_DETAIL).into_response(),
    };
    let now = Utc::now();
    let mut record = AuditRecord {
        at_ms: now.timestamp_millis(),
        actor: "anonymous".into(),
        action: "login_failed".into(),
        route: "/api/v1/auth/login".into(),
        path: "/api/v1/auth/login".into(),
        status: StatusCode::UNAUTHORIZED.as_u16(),
        request_id: request_id(&headers),
        summary: Some(serde_json::json!({ "username": shown_name }).to_string()),
    };
    let role = match check {
        LoginCheck::Ok(role) => role,
        LoginCheck::Wrong(reason) => {
            state
                .auth
                .with_limiter(|l| l.record_failure(&username, client, Instant::now()));
            tracing::warn!(username = ?shown_name, client = ?client, reason, "login failed");
            write_audit(&state, record).await;
            return Problem::new(StatusCode::UNAUTHORIZED, WRONG_CREDENTIALS).into_response();
        }
    };
    state.auth.with_limiter(|l| l.record_success(&username));
    let config = state.auth.config();
    let (token, claims) =
        match state
            .auth
            .keys()
            .issue(&username, role, now.timestamp(), config.jwt_ttl_s)
        {
            Ok(issued) => issued,
            Err(error) => return Problem::internal(&error, INTERNAL_DETAIL).into_response(),
        };
    let (session, csrf) = (password::random_secret(), password::random_secret());
    let session_ttl_s = config.session_ttl_s;
    let (id_hash, csrf_hash) = (password::sha256_hex(&session), password::sha256_hex(&csrf));
    let owner = username.clone();
    let created = query(&state, move |s| {
        let now = now.timestamp();
        let expires = now.saturating_add(i64::try_from(session_ttl_s).unwrap_or(i64::MAX));
        s.create_session(&id_hash, &owner, &csrf_hash, now, expires)
    })
    .await;
    if let Err(problem) = created {
        return problem.into_response();
    }
    record.actor = format!("user:{username}");
    record.action = "login".into();
    record.status = StatusCode::OK.as_u16();
    record.summary = None;
    write_audit(&state, record).await;
    tracing::info!(username, client = ?client, "logged in");
    let secure = came_over_https(&headers);
    let body = LoginResponse {
        token,
        expires_at: DateTime::from_timestamp(claims.exp, 0)
            .unwrap_or_default()
            .to_rfc3339_opts(SecondsFormat::Secs, true),
        user: UserSummary { username, role },
    };
    (
        AppendHeaders([
            (
                header::SET_COOKIE,
                cookie_header(SESSION_COOKIE, &session, session_ttl_s, true, secure),
            ),
            (
                header::SET_COOKIE,
                cookie_header(CSRF_COOKIE, &csrf, session_ttl_s, false, secure),
            ),
        ]),
        Json(body),
    )
        .into_response()
}

/// `POST /api/v1/auth/logout`: ends the session of the cookie (a JWT just
/// expires) and clears the cookies.
#[utoipa::path(
    post,
    path = "/api/v1/auth/logout",
    tag = "auth",
    security(("session" = []), ("bearer" = [])),
    responses(
        (status = 204, description = "Logged out; the cookies are cleared"),
        (status = 401, description = "Not logged in", body = ProblemSchema, content_type = "application/problem+json"),
        (status = 403, description = "Missing or wrong CSRF token", body = ProblemSchema, content_type = "application/problem+json")
    )
)]
async fn logout(
    State(state): State<AppState>,
    session: Option<Extension<SessionId>>,
    headers: HeaderMap,
) -> Response {
    if let Some(Extension(SessionId(id_hash))) = session
        && let Err(problem) = query(&state, move |s| s.delete_session(&id_hash)).await
    {
        return problem.into_response();
    }
    let secure = came_over_https(&headers);
    (
        StatusCode::NO_CONTENT,
        AppendHeaders([
            (
                header::SET_COOKIE,
                cookie_header(SESSION_COOKIE, "", 0, true, secure),
            ),
            (
                header::SET_COOKIE,
                cookie_header(CSRF_COOKIE, "", 0, false, secure),
            ),
        ]),
    )
        .into_response()
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MeResponse {
    /// The username, or the API token's name.
    pub username: String,
    pub role: Role,
    /// What the caller may do (a scoped token: fewer than its role).
    pub permissions: Vec<Permission>,
    pub via: Via,
}

/// `GET /api/v1/auth/me`: who the caller is and what they may do.
#[utoipa::path(
    get,
    path = "/api/v1/auth/me",
    tag = "auth",
    security(("session" = []), ("bearer" = [])),
    responses(
        (status = 200, description = "The caller", body = MeResponse),
        (status = 401, description = "Not logged in", body = ProblemSchema, content_type = "application/problem+json")
    )
)]
async fn me(caller: Option<Extension<Caller>>) -> Response {
    match caller_or_401(caller) {
        Ok(caller) => Json(MeResponse {
            username: caller.name,
            role: caller.role,
            permissions: caller.permissions,
            via: caller.via,
        })
        .into_response(),
        Err(problem) => problem.into_response(),
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "current_password": "correct horse battery",
    "new_password": "a longer, newer passphrase"
}))]
pub struct PasswordChange {
    pub current_password: String,
    /// At least 12 characters.
    pub new_password: String,
}

/// `POST /api/v1/auth/password`: the caller's own password. Other sessions
/// of the user end; the one in use stays.
#[utoipa::path(
    post,
    path = "/api/v1/auth/password",
    tag = "auth",
    security(("session" = []), ("bearer" = [])),
    request_body = PasswordChange,
    responses(
        (status = 204, description = "Changed"),
        (status = 400, description = "current_password is wrong or new_password breaks the rules", body = ProblemSchema, content_type = "application/problem+json"),
        (status = 413, description = "The body is larger than 2 MiB", body = ProblemSchema, content_type = "application/problem+json"),
        (status = 415, description = "The body is not `application/json`", body = ProblemSchema, content_type = "application/problem+json"),
        (status = 422, description = "A field is missing, unknown or of the wrong type (named)", body = ProblemSchema, content_type = "application/problem+json"),
        (status = 401, description = "Not logged in", body = ProblemSchema, content_type = "application/problem+json"),
        (status = 403, description = "An API token has no password, or the CSRF token is wrong", body = ProblemSchema, content_type = "application/problem+json"),
        (status = 429, description = "Too many wrong current passwords", body = ProblemSchema, content_type = "application/problem+json")
    )
)]
async fn change_password(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
    session: Option<Extension<SessionId>>,
    client: Option<Extension<ClientAddr>>,
    ApiJson(body): ApiJson<PasswordChange>,
) -> Response {
    let caller = match caller_or_401(caller) {
        Ok(caller) => caller,
        Err(problem) => return problem.into_response(),
    };
    let Some(username) = caller.username().map(str::to_owned) else {
        return Problem::new(
            StatusCode::FORBIDDEN,
            "an API token has no password to change",
        )
        .into_response();
    };
    let client = client.and_then(|Extension(ClientAddr(a))| a);
    if let Err(error) = password::check_rules(&body.new_password) {
        return password_problem("new_password", &error).into_response();
    }
    if body.new_password == body.current_password {
        return Problem::bad_request("new_password must differ from current_password")
            .into_response();
    }
    // Guessing the current password from a stolen session is throttled
    // like logins.
    let locked = state
        .auth
        .with_limiter(|l| l.retry_after(&username, client, Instant::now()));
    if let Some(wait) = locked {
        let mut response = Problem::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too many wrong passwords; try again later",
        )
        .into_response();
        response.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from(wait.as_secs().max(1)),
        );
        return response;
    }
    let lookup = username.clone();
    let user = match query(&state, move |s| s.user(&lookup)).await {
        Ok(Some(user)) => user,
        Ok(None) => {
            return Problem::new(StatusCode::UNAUTHORIZED, "authentication required")
                .into_response();
        }
        Err(problem) => return problem.into_response(),
    };
    let verified = {
        let _permit = state.auth.hashing_permit().await;
        let (secret, hash) = (body.current_password, user.password_hash);
        tokio::task::spawn_blocking(move || password::verify(&secret, &hash))
            .await
            .unwrap_or(false)
    };
    if !verified {
        state
            .auth
            .with_limiter(|l| l.record_failure(&username, client, Instant::now()));
        return Problem::bad_request("current_password is wrong").into_response();
    }
    let hash = match hash_password(&state, body.new_password).await {
        Ok(hash) => hash,
        Err(problem) => return problem.into_response(),
    };
    let keep = session.map(|Extension(SessionId(id_hash))| id_hash);
    match query(&state, move |s| {
        s.set_own_password(&username, &hash, keep.as_deref(), now_s())
    })
    .await
    {
        Ok(_) => StatusCode::NO_CONTENT.into_response(),
        Err(problem) => problem.into_response(),
    }
}

/// `GET /api/v1/users`.
#[utoipa::path(
    get,
    path = "/api/v1/users",
    tag = "users",
    security(("session" = []), ("bearer" = [])),
    responses(
        (status = 200, description = "Every user, by name", body = [UserView]),
        (status = 401, description = "Not logged in", body = ProblemSchema, content_type = "application/problem+json"),
        (status = 403, description = "Needs the admin permission", body = ProblemSchema, content_type = "application/problem+json")
    )
)]
async fn list_users(State(state): State<AppState>) -> Response {
    super::json_or_problem(query(&state, |s| s.users()).await)
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "username": "alice",
    "password": "correct horse battery",
    "role": "office"
}))]
pub struct NewUserRequest {
    /// `[a-z0-9._-]{1,64}`.
    #[schema(example = "alice")]
    pub username: String,
    /// At least 12 characters.
    pub password: String,
    pub role: Role,
}

/// `POST /api/v1/users`.
#[utoipa::path(
    post,
    path = "/api/v1/users",
    tag = "users",
    security(("session" = []), ("bearer" = [])),
    request_body = NewUserRequest,
    responses(
        (status = 201, description = "Created", body = UserView),
        (status = 400, description = "A field is invalid (named)", body = ProblemSchema, content_type = "application/problem+json"),
        (status = 413, description = "The body is larger than 2 MiB", body = ProblemSchema, content_type = "application/problem+json"),
        (status = 415, description = "The body is not `application/json`", body = ProblemSchema, content_type = "application/problem+json"),
        (status = 422, description = "A field is missing, unknown or of the wrong type (named)", body = ProblemSchema, content_type = "application/problem+json"),
        (status = 401, description = "Not logged in", body = ProblemSchema, content_type = "application/problem+json"),
        (status = 403, description = "Needs the admin permission", body = ProblemSchema, content_type = "application/problem+json"),
        (status = 409, description = "The username is taken, or there are too many users", body = ProblemSchema, content_type = "application/problem+json")
    )
)]
async fn create_user(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<NewUserRequest>,
) -> Response {
    if !valid_username(&body.username) {
        return Problem::bad_request(format!(
            "username must be 1 to {MAX_NAME_CHARS} characters of a-z, 0-9, '.', '_' and '-'"
        ))
        .into_response();
    }
    if let Err(error) = password::check_rules(&body.password) {
        return password_problem("password", &error).into_response();
    }
    let hash = match hash_password(&state, body.password).await {
        Ok(hash) => hash,
        Err(problem) => return problem.into_response(),
    };
    let (store, username, role) = (state.store.clone(), body.username, body.role);
    let created =
        tokio::task::spawn_blocking(move || store.create_user(&username, &hash, role, now_s()))
            .await;
    match created {
        Ok(Ok(view)) => (StatusCode::CREATED, Json(view)).into_response(),
        Ok(Err(error @ (CreateUserError::Exists(_) | CreateUserError::TooMany))) => {
            Problem::new(StatusCode::CONFLICT, error.to_string()).into_response()
        }
        Ok(Err(CreateUserError::Store(error))) => {
            Problem::internal(&error, INTERNAL_DETAIL).into_response()
        }
        Err(error) => Problem::internal(&error, INTERNAL_DETAIL).into_response(),
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"role": "viewer", "disabled": false}))]
pub struct UserPatch {
    pub role: Option<Role>,
    /// A new password (at least 12 characters); ends the user's sessions.
    pub password: Option<String>,
    /// `true` ends the user's sessions and refuses their tokens and logins.
    pub disabled: Option<bool>,
}

/// `PATCH /api/v1/users/{username}`.
#[utoipa::path(
    patch,
    path = "/api/v1/users/{username}",
    tag = "users",
    security(("session" = []), ("bearer" = [])),
    params(("username" = String, Path, description = "The user")),
    request_body = UserPatch,
    responses(
        (status = 200, description = "Changed", body = UserView),
        (status = 400, description = "A field is invalid (named), or nothing to change", body = ProblemSchema, content_type = "application/problem+json"),
        (status = 413, description = "The body is larger than 2 MiB", body = ProblemSchema, content_type = "application/problem+json"),
        (status = 415, description = "The body is not `application/json`", body = ProblemSchema, content_type = "application/problem+json"),
        (status = 422, description = "A field is missing, unknown or of the wrong type (named)", body = ProblemSchema, content_type = "application/problem+json"),
        (status = 401, description = "Not logged in", body = ProblemSchema, content_type = "application/problem+json"),
        (status = 403, description = "Needs the admin permission", body = ProblemSchema, content_type = "application/problem+json"),
        (status = 404, description = "No such user", body = ProblemSchema, content_type = "application/problem+json"),
        (status = 409, description = "That would leave no enabled admin", body = ProblemSchema, content_type = "application/problem+json")
    )
)]
async fn update_user(
    State(state): State<AppState>,
    Path(username): Path<String>,
    ApiJson(body): ApiJson<UserPatch>,
) -> Response {
    if body.role.is_none() && body.password.is_none() && body.disabled.is_none() {
        return Problem::bad_request("nothing to change: give role, password or disabled")
            .into_response();
    }
    let password_hash = match body.password {
        Some(secret) => {
            if let Err(error) = password::check_rules(&secret) {
                return password_problem("password", &error).into_response();
            }
            match hash_password(&state, secret).await {
                Ok(hash) => Some(hash),
                Err(problem) => return problem.into_response(),
            }
        }
        None => None,
    };
    let change = UserChange {
        role: body.role,
        password_hash,
        disabled: body.disabled,
    };
    let store = state.store.clone();
    let updated =
        tokio::task::spawn_blocking(move || store.update_user(&username, &change, now_s())).await;
    match updated {
        Ok(Ok(view)) => Json(view).into_response(),
        Ok(Err(error @ UpdateUserError::NotFound(_))) => {
            Problem::not_found(error.to_string()).into_response()
        }
        Ok(Err(error @ UpdateUserError::LastAdmin(_))) => {
            Problem::new(StatusCode::CONFLICT, error.to_string()).into_response()
        }
        Ok(Err(UpdateUserError::Store(error))) => {
            Problem::internal(&error, INTERNAL_DETAIL).into_response()
        }
        Err(error) => Problem::internal(&error, INTERNAL_DETAIL).into_response(),
    }
}

/// `GET /api/v1/tokens`.
#[utoipa::path(
    get,
    path = "/api/v1/tokens",
    tag = "tokens",
    security(("session" = []), ("bearer" = [])),
    responses(
        (status = 200, description = "Every token, revoked ones too, newest first; no secrets", body = [TokenView]),
        (status = 401, description = "Not logged in", body = ProblemSchema, content_type = "application/problem+json"),
        (status = 403, description = "Needs the admin permission", body = ProblemSchema, content_type = "application/problem+json")
    )
)]
async fn list_tokens(State(state): State<AppState>) -> Response {
    super::json_or_problem(query(&state, |s| s.tokens()).await)
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "name": "erp-sync",
    "role": "office",
    "scopes": ["read", "delivery_notes"],
    "expires_at": "2027-01-01T00:00:00Z"
}))]
pub struct NewTokenRequest {
    /// `[A-Za-z0-9._-]{1,64}`, unique among tokens not revoked.
    #[schema(example = "erp-sync")]
    pub name: String,
    pub role: Role,
    /// Limits the token to these of its role's permissions.
    pub scopes: Option<Vec<Permission>>,
    /// RFC 3339, in the future; without it the token lives until revoked.
    pub expires_at: Option<String>,
}

/// A new token with its secret, shown only in this answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CreatedToken {
    pub id: i64,
    pub name: String,
    pub role: Role,
    pub scopes: Option<Vec<Permission>>,
    pub expires_at: Option<String>,
    pub created_at: String,
    /// The secret for `Authorization: Bearer`; central keeps only its hash.
    #[schema(example = "vt_3q2-7wQ...")]
    pub token: String,
}

/// `POST /api/v1/tokens`.
#[utoipa::path(
    post,
    path = "/api/v1/tokens",
    tag = "tokens",
    security(("session" = []), ("bearer" = [])),
    request_body = NewTokenRequest,
    responses(
        (status = 201, description = "Created; the secret is shown only now", body = CreatedToken),
        (status = 400, description = "A field is invalid (named)", body = ProblemSchema, content_type = "application/problem+json"),
        (status = 413, description = "The body is larger than 2 MiB", body = ProblemSchema, content_type = "application/problem+json"),
        (status = 415, description = "The body is not `application/json`", body = ProblemSchema, content_type = "application/problem+json"),
        (status = 422, description = "A field is missing, unknown or of the wrong type (named)", body = ProblemSchema, content_type = "application/problem+json"),
        (status = 401, description = "Not logged in", body = ProblemSchema, content_type = "application/problem+json"),
        (status = 403, description = "Needs the admin permission", body = ProblemSchema, content_type = "application/problem+json"),
        (status = 409, description = "The name is taken, or too many active tokens", body = ProblemSchema, content_type = "application/problem+json")
    )
)]
async fn create_token(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
    ApiJson(body): ApiJson<NewTokenRequest>,
) -> Response {
    let caller = match caller_or_401(caller) {
        Ok(caller) => caller,
        Err(problem) => return problem.into_response(),
    };
    if !valid_token_name(&body.name) {
        return Problem::bad_request(format!(
            "name must be 1 to {MAX_NAME_CHARS} characters of A-Z, a-z, 0-9, '.', '_' and '-'"
        ))
        .into_response();
    }
    let scopes = match body.scopes {
        None => None,
        Some(scopes) if scopes.is_empty() => {
            return Problem::bad_request(
                "scopes must name at least one permission, or be left out",
            )
            .into_response();
        }
        Some(mut scopes) => {
            if let Some(outside) = scopes.iter().find(|p| !body.role.permissions().contains(p)) {
                return Problem::bad_request(format!(
                    "scopes: role {} does not have the permission {outside}",
                    body.role
                ))
                .into_response();
            }
            scopes.sort();
            scopes.dedup();
            Some(scopes)
        }
    };
    let now = now_s();
    let expires_at = match body.expires_at.as_deref().map(DateTime::parse_from_rfc3339) {
        None => None,
        Some(Ok(at)) if at.timestamp() > now => Some(at.timestamp()),
        Some(Ok(_)) => {
            return Problem::bad_request("expires_at must be in the future").into_response();
        }
        Some(Err(error)) => {
            return Problem::bad_request(format!("expires_at must be RFC 3339: {error}"))
                .into_response();
        }
    };
    let secret = format!("{TOKEN_PREFIX}{}", password::random_secret());
    let token = NewToken {
        name: body.name,
        token_hash: password::sha256_hex(&secret),
        role: body.role,
        scopes,
        expires_at,
        created_by: caller.actor,
    };
    let store = state.store.clone();
    let created = tokio::task::spawn_blocking(move || store.create_token(&token, now)).await;
    match created {
        Ok(Ok(view)) => (
            StatusCode::CREATED,
            Json(CreatedToken {
                id: view.id,
                name: view.name,
                role: view.role,
                scopes: view.scopes,
                expires_at: view.expires_at,
                created_at: view.created_at,
                token: secret,
            }),
        )
            .into_response(),
        Ok(Err(error @ (CreateTokenError::NameTaken(_) | CreateTokenError::TooMany))) => {
            Problem::new(StatusCode::CONFLICT, error.to_string()).into_response()
        }
        Ok(Err(CreateTokenError::Store(error))) => {
            Problem::internal(&error, INTERNAL_DETAIL).into_response()
        }
        Err(error) => Problem::internal(&error, INTERNAL_DETAIL).into_response(),
    }
}

/// `DELETE /api/v1/tokens/{id}`: revokes; the token stays listed.
#[utoipa::path(
    delete,
    path = "/api/v1/tokens/{id}",
    tag = "tokens",
    security(("session" = []), ("bearer" = [])),
    params(("id" = i64, Path, description = "The token's id")),
    responses(
        (status = 204, description = "Revoked (also when it was already)"),
        (status = 400, description = "The id is not an integer", body = ProblemSchema, content_type = "application/problem+json"),
        (status = 401, description = "Not logged in", body = ProblemSchema, content_type = "application/problem+json"),
        (status = 403, description = "Needs the admin permission", body = ProblemSchema, content_type = "application/problem+json"),
        (status = 404, description = "No such token", body = ProblemSchema, content_type = "application/problem+json")
    )
)]
async fn revoke_token(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    let Ok(id) = id.parse::<i64>() else {
        return Problem::bad_request(format!("token id must be an integer, got {id:?}"))
            .into_response();
    };
    match query(&state, move |s| s.revoke_token(id, now_s())).await {
        Ok(true) => StatusCode::NO_CONTENT.into_response(),
        Ok(false) => Problem::not_found(format!("no token with id {id}")).into_response(),
        Err(problem) => problem.into_response(),
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct AuditParams {
    /// `user:alice`, `token:erp`, `anonymous`.
    actor: Option<String>,
    /// From (inclusive): RFC 3339, or `YYYY-MM-DD` (midnight UTC).
    from: Option<String>,
    /// To (exclusive): RFC 3339, or `YYYY-MM-DD` (that whole day included).
    to: Option<String>,
    /// Page size, default 50.
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
    offset: Option<u64>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AuditPage {
    pub items: Vec<AuditEntry>,
    pub total: u64,
    pub limit: u32,
    pub offset: u64,
}

/// A time bound of a query: RFC 3339, or a date (its midnight UTC, or for
/// an end, the next midnight).
fn time_bound(field: &str, text: &str, end: bool) -> Result<i64, Problem> {
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Ok(at.timestamp_millis());
    }
    if let Ok(date) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        let day = if end {
            date.succ_opt().unwrap_or(date)
        } else {
            date
        };
        return Ok(day
            .and_time(chrono::NaiveTime::MIN)
            .and_utc()
            .timestamp_millis());
    }
    Err(Problem::bad_request(format!(
        "{field} must be RFC 3339 or YYYY-MM-DD, got {text:?}"
    )))
}

/// `GET /api/v1/audit-log`: newest first.
#[utoipa::path(
    get,
    path = "/api/v1/audit-log",
    tag = "audit",
    security(("session" = []), ("bearer" = [])),
    params(AuditParams),
    responses(
        (status = 200, description = "A page of the audit log", body = AuditPage),
        (status = 400, description = "A parameter is invalid (named)", body = ProblemSchema, content_type = "application/problem+json"),
        (status = 401, description = "Not logged in", body = ProblemSchema, content_type = "application/problem+json"),
        (status = 403, description = "Needs the admin permission", body = ProblemSchema, content_type = "application/problem+json")
    )
)]
async fn audit_log(
    State(state): State<AppState>,
    ApiQuery(params): ApiQuery<AuditParams>,
) -> Response {
    let limit = match page_limit(params.limit) {
        Ok(limit) => limit,
        Err(problem) => return problem.into_response(),
    };
    let offset = params.offset.unwrap_or(0);
    let bound = |field: &str, text: Option<&str>, end: bool| {
        text.map(|t| time_bound(field, t, end)).transpose()
    };
    let (from_ms, to_ms) = match (
        bound("from", params.from.as_deref(), false),
        bound("to", params.to.as_deref(), true),
    ) {
        (Ok(from), Ok(to)) => (from, to),
        (Err(problem), _) | (_, Err(problem)) => return problem.into_response(),
    };
    let filter = AuditFilter {
        actor: params.actor,
        from_ms,
        to_ms,
        limit,
        offset,
    };
    match query(&state, move |s| s.audit_log(&filter)).await {
        Ok((items, total)) => Json(AuditPage {
            items,
            total,
            limit,
            offset,
        })
        .into_response(),
        Err(problem) => problem.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_their_alphabets() {
        let cases = [
            ("alice", true, true),
            ("a.b_c-9", true, true),
            ("Alice", false, true),
            ("", false, false),
            ("admin' OR '1'='1", false, false),
            ("x y", false, false),
            ("ä", false, false),
        ];
        for (name, user, token) in cases {
            assert_eq!(valid_username(name), user, "{name:?}");
            assert_eq!(valid_token_name(name), token, "{name:?}");
        }
        let long = "a".repeat(MAX_NAME_CHARS + 1);
        assert!(!valid_username(&long) && !valid_token_name(&long));
    }

    #[test]
    fn time_bounds_take_dates_and_instants() {
        assert_eq!(time_bound("from", "1970-01-02", false).unwrap(), 86_400_000);
        assert_eq!(
            time_bound("to", "1970-01-02", true).unwrap(),
            2 * 86_400_000
        );
        assert_eq!(
            time_bound("from", "1970-01-01T00:00:01Z", false).unwrap(),
            1_000
        );
        let problem = time_bound("to", "yesterday", true).unwrap_err();
        let body = serde_json::to_value(&problem).unwrap();
        assert!(body["detail"].as_str().unwrap().starts_with("to must be"));
    }

    #[test]
    fn the_openapi_document_lists_every_path() {
        use utoipa::OpenApi;
        let doc = AuthApi::openapi();
        let paths: Vec<&String> = doc.paths.paths.keys().collect();
        for path in [
            "/api/v1/auth/login",
            "/api/v1/auth/logout",
            "/api/v1/auth/me",
            "/api/v1/auth/password",
            "/api/v1/users",
            "/api/v1/users/{username}",
            "/api/v1/tokens",
            "/api/v1/tokens/{id}",
            "/api/v1/audit-log",
        ] {
            assert!(paths.iter().any(|p| *p == path), "{path} in {paths:?}");
        }
        let components = doc.components.unwrap();
        assert!(components.schemas.contains_key("ProblemSchema"));
        assert!(components.security_schemes.contains_key("bearer"));
    }

    #[test]
    fn cookies_carry_the_agreed_attributes() {
        let session = cookie_header(SESSION_COOKIE, "abc", 60, true, true);
        assert_eq!(
            session.to_str().unwrap(),
            "valeo_session=abc; Path=/; Max-Age=60; SameSite=Strict; HttpOnly; Secure"
        );
        let csrf = cookie_header(CSRF_COOKIE, "def", 60, false, false);
        assert_eq!(
            csrf.to_str().unwrap(),
            "valeo_csrf=def; Path=/; Max-Age=60; SameSite=Strict"
        );
    }
}
