//! Users, sessions, API tokens, the audit log and the signing secret: every
//! SQL statement of authentication.
//!
//! Secrets are never stored in clear: passwords as argon2id hashes,
//! session ids, CSRF values and API tokens as SHA-256 hashes. Times are
//! Unix seconds (the audit log: milliseconds) and become RFC 3339 in the
//! views.

use chrono::{DateTime, SecondsFormat};
use rusqlite::{OptionalExtension, TransactionBehavior, params};
use serde::Serialize;

use super::{Store, StoreError};
use crate::auth::policy::{Permission, Role};

/// Tables of authentication.
pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS users (
    username TEXT PRIMARY KEY,
    password_hash TEXT NOT NULL,
    role TEXT NOT NULL,
    disabled INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    password_changed_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS sessions (
    id_hash TEXT PRIMARY KEY,
    username TEXT NOT NULL REFERENCES users (username),
    csrf_hash TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS sessions_by_user ON sessions (username, created_at);
CREATE INDEX IF NOT EXISTS sessions_by_expiry ON sessions (expires_at);
CREATE TABLE IF NOT EXISTS api_tokens (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL,
    scopes TEXT,
    created_at INTEGER NOT NULL,
    created_by TEXT NOT NULL,
    expires_at INTEGER,
    revoked_at INTEGER,
    last_used_at INTEGER
);
CREATE UNIQUE INDEX IF NOT EXISTS api_tokens_active_name
    ON api_tokens (name) WHERE revoked_at IS NULL;
CREATE TABLE IF NOT EXISTS audit_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms INTEGER NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    route TEXT NOT NULL,
    path TEXT NOT NULL,
    status INTEGER NOT NULL,
    request_id TEXT,
    summary TEXT
);
CREATE INDEX IF NOT EXISTS audit_log_by_time ON audit_log (at_ms);
CREATE INDEX IF NOT EXISTS audit_log_by_actor ON audit_log (actor, at_ms);
CREATE TABLE IF NOT EXISTS auth_secrets (
    name TEXT PRIMARY KEY,
    value BLOB NOT NULL
);
";

/// Most users kept.
pub const MAX_USERS: i64 = 10_000;
/// Most sessions one user may hold at once; the oldest go first.
pub const MAX_SESSIONS_PER_USER: i64 = 50;
/// Most API tokens not revoked at once.
pub const MAX_ACTIVE_TOKENS: i64 = 1_000;
/// Most tokens (revoked ones too) listed.
const MAX_TOKENS_LISTED: i64 = 10_000;

/// RFC 3339 of Unix seconds.
fn rfc3339_s(unix_s: i64) -> String {
    DateTime::from_timestamp(unix_s, 0)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// RFC 3339 of Unix milliseconds.
fn rfc3339_ms(unix_ms: i64) -> String {
    DateTime::from_timestamp_millis(unix_ms)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn conversion_error(column: usize, what: String) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(column, rusqlite::types::Type::Text, what.into())
}

fn role_at(r: &rusqlite::Row<'_>, column: usize) -> rusqlite::Result<Role> {
    let text: String = r.get(column)?;
    Role::parse(&text).ok_or_else(|| conversion_error(column, format!("unknown role {text:?}")))
}

fn scopes_at(r: &rusqlite::Row<'_>, column: usize) -> rusqlite::Result<Option<Vec<Permission>>> {
    let text: Option<String> = r.get(column)?;
    text.map(|t| serde_json::from_str(&t).map_err(|e| conversion_error(column, e.to_string())))
        .transpose()
}

/// A user as the database holds it, with the password hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    pub username: String,
    pub password_hash: String,
    pub role: Role,
    pub disabled: bool,
    /// Unix seconds; tokens issued before it are no longer accepted.
    pub password_changed_at: i64,
}

/// A user as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct UserView {
    pub username: String,
    pub role: Role,
    pub disabled: bool,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
}

const USER_COLUMNS: &str =
    "username, password_hash, role, disabled, password_changed_at, created_at, updated_at";

fn user_record(r: &rusqlite::Row<'_>) -> rusqlite::Result<UserRecord> {
    Ok(UserRecord {
        username: r.get(0)?,
        password_hash: r.get(1)?,
        role: role_at(r, 2)?,
        disabled: r.get(3)?,
        password_changed_at: r.get(4)?,
    })
}

fn user_view(r: &rusqlite::Row<'_>) -> rusqlite::Result<UserView> {
    Ok(UserView {
        username: r.get(0)?,
        role: role_at(r, 2)?,
        disabled: r.get(3)?,
        created_at: rfc3339_s(r.get(5)?),
        updated_at: rfc3339_s(r.get(6)?),
    })
}

/// Why a user was not created.
#[derive(Debug, thiserror::Error)]
pub enum CreateUserError {
    #[error("a user {0:?} exists already")]
    Exists(String),
    #[error("there are {MAX_USERS} users already")]
    TooMany,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why a user was not changed.
#[derive(Debug, thiserror::Error)]
pub enum UpdateUserError {
    #[error("no user {0:?}")]
    NotFound(String),
    #[error("{0:?} is the last enabled admin; it cannot be disabled or demoted")]
    LastAdmin(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<rusqlite::Error> for CreateUserError {
    fn from(e: rusqlite::Error) -> Self {
        CreateUserError::Store(e.into())
    }
}

impl From<rusqlite::Error> for UpdateUserError {
    fn from(e: rusqlite::Error) -> Self {
        UpdateUserError::Store(e.into())
    }
}

/// What an update of a user changes; `None` keeps the field.
#[derive(Debug, Clone, Default)]
pub struct UserChange {
    pub role: Option<Role>,
    /// A new argon2id hash.
    pub password_hash: Option<String>,
    pub disabled: Option<bool>,
}

/// A session and its user, as the request authentication needs them.
#[derive(Debug, Clone)]
pub struct SessionRecord {
    pub csrf_hash: String,
    pub expires_at: i64,
    pub user: UserRecord,
}

/// An API token as the database holds it (no secret: only its hash exists).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    pub id: i64,
    pub name: String,
    pub role: Role,
    pub scopes: Option<Vec<Permission>>,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
    pub last_used_at: Option<i64>,
}

/// An API token as the API lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct TokenView {
    pub id: i64,
    pub name: String,
    pub role: Role,
    /// The permissions the token is limited to (within its role's); `null`:
    /// all of the role's.
    pub scopes: Option<Vec<Permission>>,
    pub created_at: String,
    /// Who created it (`user:alice`).
    pub created_by: String,
    pub expires_at: Option<String>,
    pub revoked_at: Option<String>,
    /// Updated at most once a minute.
    pub last_used_at: Option<String>,
}

const TOKEN_COLUMNS: &str =
    "id, name, role, scopes, created_at, created_by, expires_at, revoked_at, last_used_at";

fn token_view(r: &rusqlite::Row<'_>) -> rusqlite::Result<TokenView> {
    Ok(TokenView {
        id: r.get(0)?,
        name: r.get(1)?,
        role: role_at(r, 2)?,
        scopes: scopes_at(r, 3)?,
        created_at: rfc3339_s(r.get(4)?),
        created_by: r.get(5)?,
        expires_at: r.get::<_, Option<i64>>(6)?.map(rfc3339_s),
        revoked_at: r.get::<_, Option<i64>>(7)?.map(rfc3339_s),
        last_used_at: r.get::<_, Option<i64>>(8)?.map(rfc3339_s),
    })
}

/// A new API token.
#[derive(Debug, Clone)]
pub struct NewToken {
    pub name: String,
    /// SHA-256 of the secret, hex.
    pub token_hash: String,
    pub role: Role,
    pub scopes: Option<Vec<Permission>>,
    pub expires_at: Option<i64>,
    pub created_by: String,
}

/// Why a token was not created.
#[derive(Debug, thiserror::Error)]
pub enum CreateTokenError {
    #[error("an active token named {0:?} exists already")]
    NameTaken(String),
    #[error("there are {MAX_ACTIVE_TOKENS} active tokens already; revoke unused ones")]
    TooMany,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<rusqlite::Error> for CreateTokenError {
    fn from(e: rusqlite::Error) -> Self {
        CreateTokenError::Store(e.into())
    }
}

/// One line of the audit log, to write.
#[derive(Debug, Clone)]
pub struct AuditRecord {
    pub at_ms: i64,
    /// `user:alice`, `token:erp`, or `anonymous`.
    pub actor: String,
    /// The HTTP method, or `login` / `login_failed`.
    pub action: String,
    /// The route pattern (`/api/v1/users/{username}`).
    pub route: String,
    /// The concrete path.
    pub path: String,
    pub status: u16,
    pub request_id: Option<String>,
    /// The redacted, bounded body summary.
    pub summary: Option<String>,
}

/// One line of the audit log, as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct AuditEntry {
    pub id: i64,
    /// RFC 3339, milliseconds.
    pub at: String,
    pub actor: String,
    pub action: String,
    pub route: String,
    pub path: String,
    pub status: u16,
    pub request_id: Option<String>,
    pub summary: Option<String>,
}

/// Which audit lines to read, newest first.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub actor: Option<String>,
    /// Inclusive, Unix milliseconds.
    pub from_ms: Option<i64>,
    /// Exclusive, Unix milliseconds.
    pub to_ms: Option<i64>,
    pub limit: u32,
    pub offset: u64,
}

impl Store {
    /// How many users exist.
    pub fn user_count(&self) -> Result<i64, StoreError> {
        Ok(self
            .reader()
            .query_row("SELECT COUNT(*) FROM users", [], |r| r.get(0))?)
    }

    /// Creates the first user, only while there is none; `false` when
    /// users exist already (another start got there first).
    pub fn create_first_user(
        &self,
        username: &str,
        password_hash: &str,
        role: Role,
        now: i64,
    ) -> Result<bool, StoreError> {
        let mut conn = self.writer();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let count: i64 = tx.query_row("SELECT COUNT(*) FROM users", [], |r| r.get(0))?;
        if count > 0 {
            return Ok(false);
        }
        tx.execute(
            "INSERT INTO users (username, password_hash, role, disabled, created_at, updated_at,
                 password_changed_at) VALUES (?1, ?2, ?3, 0, ?4, ?4, ?4)",
            params![username, password_hash, role.as_str(), now],
        )?;
        tx.commit()?;
        Ok(true)
    }

    /// Creates a user.
    pub fn create_user(
        &self,
        username: &str,
        password_hash: &str,
        role: Role,
        now: i64,
    ) -> Result<UserView, CreateUserError> {
        let mut conn = self.writer();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let (count, exists): (i64, bool) = tx.query_row(
            "SELECT COUNT(*), COALESCE(SUM(username = ?1), 0) > 0 FROM users",
            params![username],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        if exists {
            return Err(CreateUserError::Exists(username.to_owned()));
        }
        if count >= MAX_USERS {
            return Err(CreateUserError::TooMany);
        }
        tx.execute(
            "INSERT INTO users (username, password_hash, role, disabled, created_at, updated_at,
                 password_changed_at) VALUES (?1, ?2, ?3, 0, ?4, ?4, ?4)",
            params![username, password_hash, role.as_str(), now],
        )?;
        let view = tx.query_row(
            &format!("SELECT {USER_COLUMNS} FROM users WHERE username = ?1"),
            params![username],
            user_view,
        )?;
        tx.commit()?;
        Ok(view)
    }

    /// A user with the password hash, for logins and request checks.
    pub fn user(&self, username: &str) -> Result<Option<UserRecord>, StoreError> {
        Ok(self
            .reader()
            .query_row(
                &format!("SELECT {USER_COLUMNS} FROM users WHERE username = ?1"),
                params![username],
                user_record,
            )
            .optional()?)
    }

    /// Every user, by name.
    pub fn users(&self) -> Result<Vec<UserView>, StoreError> {
        let conn = self.reader();
        let mut stmt = conn.prepare(&format!(
            "SELECT {USER_COLUMNS} FROM users ORDER BY username LIMIT {MAX_USERS}"
        ))?;
        let rows = stmt.query_map([], user_view)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Changes a user. The last enabled admin can be neither disabled nor
    /// demoted. Disabling a user or setting a password ends the user's
    /// sessions.
    pub fn update_user(
        &self,
        username: &str,
        change: &UserChange,
        now: i64,
    ) -> Result<UserView, UpdateUserError> {
        let mut conn = self.writer();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let current = tx
            .query_row(
                &format!("SELECT {USER_COLUMNS} FROM users WHERE username = ?1"),
                params![username],
                user_record,
            )
            .optional()?
            .ok_or_else(|| UpdateUserError::NotFound(username.to_owned()))?;
        let role = change.role.unwrap_or(current.role);
        let disabled = change.disabled.unwrap_or(current.disabled);
        let was_admin = current.role == Role::Admin && !current.disabled;
        let stays_admin = role == Role::Admin && !disabled;
        if was_admin && !stays_admin {
            let other_admins: i64 = tx.query_row(
                "SELECT COUNT(*) FROM users WHERE role = 'admin' AND disabled = 0
                 AND username != ?1",
                params![username],
                |r| r.get(0),
            )?;
            if other_admins == 0 {
                return Err(UpdateUserError::LastAdmin(username.to_owned()));
            }
        }
        tx.execute(
            "UPDATE users SET role = ?2, disabled = ?3, updated_at = ?4 WHERE username = ?1",
            params![username, role.as_str(), disabled, now],
        )?;
        if let Some(hash) = &change.password_hash {
            tx.execute(
                "UPDATE users SET password_hash = ?2, password_changed_at = ?3
                 WHERE username = ?1",
                params![username, hash, now],
            )?;
        }
        if disabled || change.password_hash.is_some() {
            tx.execute(
                "DELETE FROM sessions WHERE username = ?1",
                params![username],
            )?;
        }
        let view = tx.query_row(
            &format!("SELECT {USER_COLUMNS} FROM users WHERE username = ?1"),
            params![username],
            user_view,
        )?;
        tx.commit()?;
        Ok(view)
    }

    /// A user's own password change: the new hash, and every other session
    /// of the user ended (`keep_session`: the id hash of the one in use).
    pub fn set_own_password(
        &self,
        username: &str,
        password_hash: &str,
        keep_session: Option<&str>,
        now: i64,
    ) -> Result<bool, StoreError> {
        let mut conn = self.writer();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let changed = tx.execute(
            "UPDATE users SET password_hash = ?2, password_changed_at = ?3, updated_at = ?3
             WHERE username = ?1",
            params![username, password_hash, now],
        )?;
        tx.execute(
            "DELETE FROM sessions WHERE username = ?1 AND id_hash IS NOT ?2",
            params![username, keep_session],
        )?;
        tx.commit()?;
        Ok(changed == 1)
    }

    /// Sets `username`'s password, makes it an enabled admin (creating it
    /// if needed) and ends its sessions: the recovery path when every
    /// admin password is lost.
    pub fn reset_admin(
        &self,
        username: &str,
        password_hash: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        let mut conn = self.writer();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute(
            "INSERT INTO users (username, password_hash, role, disabled, created_at, updated_at,
                 password_changed_at) VALUES (?1, ?2, 'admin', 0, ?3, ?3, ?3)
             ON CONFLICT (username) DO UPDATE SET password_hash = excluded.password_hash,
                 role = 'admin', disabled = 0, updated_at = excluded.updated_at,
                 password_changed_at = excluded.password_changed_at",
            params![username, password_hash, now],
        )?;
        tx.execute(
            "DELETE FROM sessions WHERE username = ?1",
            params![username],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Stores a new session; expired sessions are deleted, and the user's
    /// oldest beyond [`MAX_SESSIONS_PER_USER`].
    pub fn create_session(
        &self,
        id_hash: &str,
        username: &str,
        csrf_hash: &str,
        now: i64,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        let mut conn = self.writer();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute("DELETE FROM sessions WHERE expires_at <= ?1", params![now])?;
        tx.execute(
            "INSERT INTO sessions (id_hash, username, csrf_hash, created_at, expires_at)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![id_hash, username, csrf_hash, now, expires_at],
        )?;
        tx.execute(
            "DELETE FROM sessions WHERE username = ?1 AND id_hash NOT IN (
                 SELECT id_hash FROM sessions WHERE username = ?1
                 ORDER BY created_at DESC, rowid DESC LIMIT ?2)",
            params![username, MAX_SESSIONS_PER_USER],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// The session with this id hash and its user, if it has not expired.
    pub fn session(&self, id_hash: &str, now: i64) -> Result<Option<SessionRecord>, StoreError> {
        Ok(self
            .reader()
            .query_row(
                "SELECT u.username, u.password_hash, u.role, u.disabled, u.password_changed_at,
                     s.csrf_hash, s.expires_at
                 FROM sessions s JOIN users u ON u.username = s.username
                 WHERE s.id_hash = ?1 AND s.expires_at > ?2",
                params![id_hash, now],
                |r| {
                    Ok(SessionRecord {
                        user: user_record(r)?,
                        csrf_hash: r.get(5)?,
                        expires_at: r.get(6)?,
                    })
                },
            )
            .optional()?)
    }

    /// Ends a session.
    pub fn delete_session(&self, id_hash: &str) -> Result<(), StoreError> {
        self.writer()
            .execute("DELETE FROM sessions WHERE id_hash = ?1", params![id_hash])?;
        Ok(())
    }

    /// The secret stored under `name`, created by `generate` on first use.
    pub fn auth_secret(
        &self,
        name: &str,
        generate: impl FnOnce() -> Vec<u8>,
    ) -> Result<Vec<u8>, StoreError> {
        let mut conn = self.writer();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let stored: Option<Vec<u8>> = tx
            .query_row(
                "SELECT value FROM auth_secrets WHERE name = ?1",
                params![name],
                |r| r.get(0),
            )
            .optional()?;
        let value = match stored {
            Some(value) => value,
            None => {
                let value = generate();
                tx.execute(
                    "INSERT INTO auth_secrets (name, value) VALUES (?1, ?2)",
                    params![name, value],
                )?;
                value
            }
        };
        tx.commit()?;
        Ok(value)
    }

    /// Stores a new API token.
    pub fn create_token(&self, token: &NewToken, now: i64) -> Result<TokenView, CreateTokenError> {
        let mut conn = self.writer();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let (active, taken): (i64, bool) = tx.query_row(
            "SELECT COUNT(*), COALESCE(SUM(name = ?1), 0) > 0 FROM api_tokens
             WHERE revoked_at IS NULL",
            params![token.name],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        if taken {
            return Err(CreateTokenError::NameTaken(token.name.clone()));
        }
        if active >= MAX_ACTIVE_TOKENS {
            return Err(CreateTokenError::TooMany);
        }
        let scopes = token
            .scopes
            .as_ref()
            .map(|s| serde_json::to_string(s).unwrap_or_else(|_| "[]".into()));
        tx.execute(
            "INSERT INTO api_tokens (name, token_hash, role, scopes, created_at, created_by,
                 expires_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                token.name,
                token.token_hash,
                token.role.as_str(),
                scopes,
                now,
                token.created_by,
                token.expires_at
            ],
        )?;
        let id = tx.last_insert_rowid();
        let view = tx.query_row(
            &format!("SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE id = ?1"),
            params![id],
            token_view,
        )?;
        tx.commit()?;
        Ok(view)
    }

    /// Every token, revoked ones too, newest first.
    pub fn tokens(&self) -> Result<Vec<TokenView>, StoreError> {
        let conn = self.reader();
        let mut stmt = conn.prepare(&format!(
            "SELECT {TOKEN_COLUMNS} FROM api_tokens ORDER BY id DESC LIMIT {MAX_TOKENS_LISTED}"
        ))?;
        let rows = stmt.query_map([], token_view)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Revokes a token (kept for the audit trail); `false` if there is no
    /// such token. Revoking twice keeps the first time.
    pub fn revoke_token(&self, id: i64, now: i64) -> Result<bool, StoreError> {
        let conn = self.writer();
        let exists: bool = conn.query_row(
            "SELECT COUNT(*) > 0 FROM api_tokens WHERE id = ?1",
            params![id],
            |r| r.get(0),
        )?;
        conn.execute(
            "UPDATE api_tokens SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
            params![id, now],
        )?;
        Ok(exists)
    }

    /// The token whose secret hashes to `token_hash`.
    pub fn token_by_hash(&self, token_hash: &str) -> Result<Option<TokenRecord>, StoreError> {
        Ok(self
            .reader()
            .query_row(
                "SELECT id, name, role, scopes, expires_at, revoked_at, last_used_at
                 FROM api_tokens WHERE token_hash = ?1",
                params![token_hash],
                |r| {
                    Ok(TokenRecord {
                        id: r.get(0)?,
                        name: r.get(1)?,
                        role: role_at(r, 2)?,
                        scopes: scopes_at(r, 3)?,
                        expires_at: r.get(4)?,
                        revoked_at: r.get(5)?,
                        last_used_at: r.get(6)?,
                    })
                },
            )
            .optional()?)
    }

    /// Notes that a token was used.
    pub fn touch_token(&self, id: i64, now: i64) -> Result<(), StoreError> {
        self.writer().execute(
            "UPDATE api_tokens SET last_used_at = ?2 WHERE id = ?1",
            params![id, now],
        )?;
        Ok(())
    }

    /// Appends to the audit log and deletes the oldest lines beyond
    /// `max_rows`.
    pub fn append_audit(&self, record: &AuditRecord, max_rows: u64) -> Result<(), StoreError> {
        let mut conn = self.writer();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute(
            "INSERT INTO audit_log (at_ms, actor, action, route, path, status, request_id, summary)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                record.at_ms,
                record.actor,
                record.action,
                record.route,
                record.path,
                record.status,
                record.request_id,
                record.summary
            ],
        )?;
        // Ids only grow, so the newest `max_rows` are the highest ids.
        let keep_above = tx.last_insert_rowid() - i64::try_from(max_rows).unwrap_or(i64::MAX);
        tx.execute("DELETE FROM audit_log WHERE id <= ?1", params![keep_above])?;
        tx.commit()?;
        Ok(())
    }

    /// A page of the audit log, newest first, and how many lines match.
    pub fn audit_log(&self, filter: &AuditFilter) -> Result<(Vec<AuditEntry>, u64), StoreError> {
        let conn = self.reader();
        let condition = "(?1 IS NULL OR actor = ?1) AND (?2 IS NULL OR at_ms >= ?2)
             AND (?3 IS NULL OR at_ms < ?3)";
        let total: i64 = conn.query_row(
            &format!("SELECT COUNT(*) FROM audit_log WHERE {condition}"),
            params![filter.actor, filter.from_ms, filter.to_ms],
            |r| r.get(0),
        )?;
        let mut stmt = conn.prepare(&format!(
            "SELECT id, at_ms, actor, action, route, path, status, request_id, summary
             FROM audit_log WHERE {condition} ORDER BY id DESC LIMIT ?4 OFFSET ?5"
        ))?;
        let rows = stmt.query_map(
            params![
                filter.actor,
                filter.from_ms,
                filter.to_ms,
                filter.limit,
                i64::try_from(filter.offset).unwrap_or(i64::MAX)
            ],
            |r| {
                Ok(AuditEntry {
                    id: r.get(0)?,
                    at: rfc3339_ms(r.get(1)?),
                    actor: r.get(2)?,
                    action: r.get(3)?,
                    route: r.get(4)?,
                    path: r.get(5)?,
                    status: r.get(6)?,
                    request_id: r.get(7)?,
                    summary: r.get(8)?,
                })
            },
        )?;
        Ok((rows.collect::<Result<_, _>>()?, total.max(0) as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open_store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("central.db")).unwrap();
        (dir, store)
    }

    #[test]
    fn the_first_user_is_created_once() {
        let (_dir, store) = open_store();
        assert!(
            store
                .create_first_user("admin", "h1", Role::Admin, 10)
                .unwrap()
        );
        assert!(
            !store
                .create_first_user("admin2", "h2", Role::Admin, 11)
                .unwrap()
        );
        assert_eq!(store.user_count().unwrap(), 1);
        let admin = store.user("admin").unwrap().unwrap();
        assert_eq!(
            (admin.role, admin.password_hash.as_str()),
            (Role::Admin, "h1")
        );
    }

    #[test]
    fn the_last_enabled_admin_stays_an_admin() {
        let (_dir, store) = open_store();
        store
            .create_first_user("admin", "h", Role::Admin, 10)
            .unwrap();
        let demote = UserChange {
            role: Some(Role::Office),
            ..UserChange::default()
        };
        let disable = UserChange {
            disabled: Some(true),
            ..UserChange::default()
        };
        for change in [&demote, &disable] {
            assert!(matches!(
                store.update_user("admin", change, 11),
                Err(UpdateUserError::LastAdmin(_))
            ));
        }
        store.create_user("second", "h", Role::Admin, 12).unwrap();
        store.update_user("second", &disable, 13).unwrap();
        // A disabled admin does not count.
        assert!(matches!(
            store.update_user("admin", &demote, 14),
            Err(UpdateUserError::LastAdmin(_))
        ));
        let enable = UserChange {
            disabled: Some(false),
            ..UserChange::default()
        };
        store.update_user("second", &enable, 15).unwrap();
        let view = store.update_user("admin", &demote, 16).unwrap();
        assert_eq!(view.role, Role::Office);
        assert!(matches!(
            store.update_user("nobody", &enable, 17),
            Err(UpdateUserError::NotFound(_))
        ));
        assert!(matches!(
            store.create_user("second", "h", Role::Viewer, 18),
            Err(CreateUserError::Exists(_))
        ));
    }

    #[test]
    fn sessions_expire_and_end_with_disabling() {
        let (_dir, store) = open_store();
        store
            .create_first_user("admin", "h", Role::Admin, 10)
            .unwrap();
        store.create_user("alice", "h", Role::Office, 10).unwrap();
        store.create_session("s1", "alice", "c1", 100, 200).unwrap();
        store.create_session("s2", "alice", "c2", 100, 200).unwrap();
        assert_eq!(store.session("s1", 199).unwrap().unwrap().csrf_hash, "c1");
        assert!(store.session("s1", 200).unwrap().is_none());
        assert!(store.session("nope", 150).unwrap().is_none());
        store
            .set_own_password("alice", "h2", Some("s1"), 150)
            .unwrap();
        assert!(store.session("s1", 150).unwrap().is_some());
        assert!(store.session("s2", 150).unwrap().is_none());
        let disable = UserChange {
            disabled: Some(true),
            ..UserChange::default()
        };
        store.update_user("alice", &disable, 160).unwrap();
        assert!(store.session("s1", 160).unwrap().is_none());
    }

    #[test]
    fn a_user_holds_a_bounded_number_of_sessions() {
        let (_dir, store) = open_store();
        store
            .create_first_user("admin", "h", Role::Admin, 10)
            .unwrap();
        for i in 0..MAX_SESSIONS_PER_USER + 5 {
            store
                .create_session(&format!("s{i}"), "admin", "c", 100 + i, 10_000)
                .unwrap();
        }
        assert!(store.session("s0", 500).unwrap().is_none());
        let newest = format!("s{}", MAX_SESSIONS_PER_USER + 4);
        assert!(store.session(&newest, 500).unwrap().is_some());
        let count: i64 = store
            .reader()
            .query_row("SELECT COUNT(*) FROM sessions", [], |r| r.get(0))
            .unwrap();
        assert_eq!(count, MAX_SESSIONS_PER_USER);
    }

    #[test]
    fn tokens_are_found_by_hash_and_revoked() {
        let (_dir, store) = open_store();
        let token = NewToken {
            name: "erp".into(),
            token_hash: "abc".into(),
            role: Role::Office,
            scopes: Some(vec![Permission::Read]),
            expires_at: Some(5000),
            created_by: "user:admin".into(),
        };
        let view = store.create_token(&token, 100).unwrap();
        assert_eq!(view.scopes, Some(vec![Permission::Read]));
        assert!(matches!(
            store.create_token(&token, 100),
            Err(CreateTokenError::NameTaken(_))
        ));
        let found = store.token_by_hash("abc").unwrap().unwrap();
        assert_eq!((found.id, found.revoked_at), (view.id, None));
        assert!(store.revoke_token(view.id, 200).unwrap());
        assert!(store.revoke_token(view.id, 300).unwrap());
        assert!(!store.revoke_token(view.id + 1, 300).unwrap());
        assert_eq!(
            store.token_by_hash("abc").unwrap().unwrap().revoked_at,
            Some(200)
        );
        // The name is free again once revoked.
        let again = NewToken {
            token_hash: "def".into(),
            ..token
        };
        store.create_token(&again, 400).unwrap();
        assert_eq!(store.tokens().unwrap().len(), 2);
        assert!(store.token_by_hash("zzz").unwrap().is_none());
    }

    #[test]
    fn the_audit_log_is_bounded_and_filtered() {
        let (_dir, store) = open_store();
        for i in 0..20 {
            let record = AuditRecord {
                at_ms: 1_000 * i,
                actor: if i % 2 == 0 { "user:a" } else { "user:b" }.into(),
                action: "POST".into(),
                route: "/api/v1/users".into(),
                path: "/api/v1/users".into(),
                status: 201,
                request_id: Some(format!("r{i}")),
                summary: None,
            };
            store.append_audit(&record, 10).unwrap();
        }
        let all = AuditFilter {
            limit: 100,
            ..AuditFilter::default()
        };
        let (items, total) = store.audit_log(&all).unwrap();
        assert_eq!((items.len(), total), (10, 10));
        assert_eq!(items[0].request_id.as_deref(), Some("r19"));
        let filter = AuditFilter {
            actor: Some("user:a".into()),
            from_ms: Some(12_000),
            to_ms: Some(18_000),
            limit: 2,
            offset: 0,
        };
        let (items, total) = store.audit_log(&filter).unwrap();
        assert_eq!(total, 3, "12, 14, 16");
        let ids: Vec<_> = items
            .iter()
            .map(|e| e.request_id.clone().unwrap())
            .collect();
        assert_eq!(ids, ["r16", "r14"]);
        assert_eq!(items[0].at, "1970-01-01T00:00:16.000Z");
    }

    #[test]
    fn a_secret_is_generated_once() {
        let (_dir, store) = open_store();
        let first = store.auth_secret("jwt", || vec![1, 2, 3]).unwrap();
        let second = store.auth_secret("jwt", || vec![9]).unwrap();
        assert_eq!((first.clone(), second), (vec![1, 2, 3], vec![1, 2, 3]));
    }
}
