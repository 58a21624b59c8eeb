//! Authentication and authorisation of central's HTTP API.
//!
//! - [`policy`]: roles, permissions and what every route needs (data);
//! - [`password`]: password rules, argon2id hashing, random secrets;
//! - [`jwt`]: short-lived HS256 access tokens;
//! - [`rate_limit`]: login throttling per username and client address;
//! - [`audit`]: the redacted body summary of the audit log;
//! - [`middleware`]: the layer that authenticates every request, checks
//!   its permission and CSRF token, and writes the audit log.
//!
//! The HTTP handlers (login, users, tokens, audit log) are in
//! `crate::api::auth`; every SQL statement in `crate::store::auth`.

pub mod audit;
pub mod jwt;
pub mod middleware;
pub mod password;
pub mod policy;
pub mod rate_limit;

use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use middleware::{Caller, ClientAddr, Via};
pub use policy::{Access, Permission, Role};

use crate::store::{Store, StoreError};

/// The user created on first start.
pub const INITIAL_ADMIN: &str = "admin";
/// The environment variable with the first admin's password.
pub const ADMIN_PASSWORD_ENV: &str = "VALEO_ADMIN_PASSWORD";
/// Most password hashes computed at once: argon2id takes ~19 MiB each.
pub const MAX_CONCURRENT_HASHES: usize = 4;
/// Length of the JWT signing secret, bytes.
const JWT_SECRET_BYTES: usize = 64;
/// Name of the JWT secret in the database.
const JWT_SECRET_NAME: &str = "jwt_hs256";

/// `[auth]` in central's configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Lifetime of a JWT issued at login, seconds.
    pub jwt_ttl_s: u64,
    /// Lifetime of a browser session, seconds.
    pub session_ttl_s: u64,
    /// Failed logins per username or client address within
    /// `login_window_s` that lock it for the rest of the window.
    pub max_login_failures: u32,
    pub login_window_s: u64,
    /// Most usernames, and most client addresses, whose failures are
    /// counted at once.
    pub max_tracked_clients: usize,
    /// Most audit-log lines kept; the oldest are deleted.
    pub max_audit_rows: u64,
    /// Reverse proxies whose `X-Forwarded-For` names the client.
    pub trusted_proxies: Vec<IpAddr>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            jwt_ttl_s: 900,
            session_ttl_s: 8 * 3600,
            max_login_failures: 5,
            login_window_s: 900,
            max_tracked_clients: 10_000,
            max_audit_rows: 1_000_000,
            trusted_proxies: Vec::new(),
        }
    }
}

impl AuthConfig {
    /// Checks every range; the error names the field.
    pub fn validate(&self) -> Result<(), String> {
        fn within<T: Copy + PartialOrd + std::fmt::Display>(
            field: &str,
            value: T,
            min: T,
            max: T,
        ) -> Result<(), String> {
            if value < min || value > max {
                return Err(format!("{field} must be {min}..={max}, got {value}"));
            }
            Ok(())
        }
        within("jwt_ttl_s", self.jwt_ttl_s, 1, 86_400)?;
        within("session_ttl_s", self.session_ttl_s, 60, 30 * 86_400)?;
        within("max_login_failures", self.max_login_failures, 1, 1_000)?;
        within("login_window_s", self.login_window_s, 1, 86_400)?;
        within(
            "max_tracked_clients",
            self.max_tracked_clients,
            10,
            10_000_000,
        )?;
        within("max_audit_rows", self.max_audit_rows, 100, 1_000_000_000)?;
        within(
            "trusted_proxies (count)",
            self.trusted_proxies.len(),
            0,
            100,
        )?;
        Ok(())
    }
}

/// Why authentication could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error(
        "{ADMIN_PASSWORD_ENV} is not a usable password: it {0}; set a longer one or unset it \
         to have one generated"
    )]
    WeakAdminPassword(password::PasswordError),
    #[error("password hashing failed: {0}")]
    Hash(password::PasswordError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// How the first admin came to be, if this start created it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bootstrap {
    /// Users existed already; nothing was done.
    UsersExist,
    /// Created with the password from the environment.
    FromEnvironment,
    /// Created with this generated password, to be shown once.
    Generated(String),
}

/// Creates the first admin when there are no users: with `env_password`
/// if given (it must meet the rules), else with a generated password.
pub fn bootstrap_admin(
    store: &Store,
    env_password: Option<&str>,
    now: i64,
) -> Result<Bootstrap, AuthError> {
    if let Some(given) = env_password {
        // Checked even when users exist: a bad value is a configuration
        // error the operator should hear about at once.
        password::check_rules(given).map_err(AuthError::WeakAdminPassword)?;
    }
    if store.user_count()? > 0 {
        return Ok(Bootstrap::UsersExist);
    }
    let (secret, outcome) = match env_password {
        Some(given) => (given.to_owned(), Bootstrap::FromEnvironment),
        None => {
            let generated = password::generate();
            (generated.clone(), Bootstrap::Generated(generated))
        }
    };
    let hash = password::hash(&secret).map_err(AuthError::Hash)?;
    if store.create_first_user(INITIAL_ADMIN, &hash, Role::Admin, now)? {
        Ok(outcome)
    } else {
        Ok(Bootstrap::UsersExist)
    }
}

/// The recovery path (`valeo-central --reset-admin-password`): user
/// `admin` gets `env_password` (checked against the rules) or a generated
/// password, which is returned to be shown; it becomes an enabled admin
/// again and its sessions and JWTs end.
pub fn reset_admin_password(
    store: &Store,
    env_password: Option<&str>,
    now: i64,
) -> Result<Option<String>, AuthError> {
    let (secret, generated) = match env_password {
        Some(given) => {
            password::check_rules(given).map_err(AuthError::WeakAdminPassword)?;
            (given.to_owned(), None)
        }
        None => {
            let secret = password::generate();
            (secret.clone(), Some(secret))
        }
    };
    let hash = password::hash(&secret).map_err(AuthError::Hash)?;
    store.reset_admin(INITIAL_ADMIN, &hash, now)?;
    Ok(generated)
}

/// Sets up authentication at start: the first admin (see
/// [`bootstrap_admin`], password from `VALEO_ADMIN_PASSWORD`, a generated
/// one printed once to stderr) and the signing key.
pub fn start(store: &Store, config: &AuthConfig) -> Result<AuthState, AuthError> {
    let env_password = std::env::var(ADMIN_PASSWORD_ENV).ok();
    let now = chrono::Utc::now().timestamp();
    match bootstrap_admin(store, env_password.as_deref(), now)? {
        Bootstrap::UsersExist => {}
        Bootstrap::FromEnvironment => {
            tracing::info!(
                user = INITIAL_ADMIN,
                "first admin created with the password from {ADMIN_PASSWORD_ENV}"
            );
        }
        Bootstrap::Generated(secret) => {
            // Shown once, never stored in clear, never logged again.
            eprintln!(
                "\n==================================================================\n\
                 initial admin password for user \"{INITIAL_ADMIN}\": {secret}\n\
                 (shown only now; change it after logging in)\n\
                 ==================================================================\n"
            );
        }
    }
    AuthState::new(store, config)
}

/// Everything the authentication layer and handlers share; cheap to clone.
#[derive(Debug, Clone)]
pub struct AuthState {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: AuthConfig,
    keys: jwt::JwtKeys,
    limiter: Mutex<rate_limit::LoginLimiter>,
    hashing: tokio::sync::Semaphore,
    /// Verified when the user does not exist, so that takes as long as a
    /// wrong password.
    dummy_hash: String,
}

impl AuthState {
    /// Loads (on first start: creates) the signing secret.
    pub fn new(store: &Store, config: &AuthConfig) -> Result<AuthState, AuthError> {
        let secret = store.auth_secret(JWT_SECRET_NAME, || {
            (0..JWT_SECRET_BYTES)
                .map(|_| rand::random::<u8>())
                .collect()
        })?;
        let dummy_hash = password::hash(&password::generate()).map_err(AuthError::Hash)?;
        Ok(AuthState {
            inner: Arc::new(Inner {
                config: config.clone(),
                keys: jwt::JwtKeys::from_secret(&secret),
                limiter: Mutex::new(rate_limit::LoginLimiter::new(
                    config.max_login_failures,
                    Duration::from_secs(config.login_window_s),
                    config.max_tracked_clients,
                )),
                hashing: tokio::sync::Semaphore::new(MAX_CONCURRENT_HASHES),
                dummy_hash,
            }),
        })
    }

    pub fn config(&self) -> &AuthConfig {
        &self.inner.config
    }

    pub fn keys(&self) -> &jwt::JwtKeys {
        &self.inner.keys
    }

    pub fn dummy_hash(&self) -> &str {
        &self.inner.dummy_hash
    }

    /// Runs `f` with the login limiter locked.
    pub fn with_limiter<T>(&self, f: impl FnOnce(&mut rate_limit::LoginLimiter) -> T) -> T {
        let mut limiter = self
            .inner
            .limiter
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        f(&mut limiter)
    }

    /// A permit to hash a password; waits while [`MAX_CONCURRENT_HASHES`]
    /// are being computed.
    pub async fn hashing_permit(&self) -> Option<tokio::sync::SemaphorePermit<'_>> {
        self.inner.hashing.acquire().await.ok()
    }
}

/// What `GET /api/v1/auth/me` and the login answer say about a user.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct UserSummary {
    pub username: String,
    pub role: Role,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_errors_name_the_field() {
        let cases = [
            ("jwt_ttl_s = 0", "jwt_ttl_s"),
            ("session_ttl_s = 10", "session_ttl_s"),
            ("max_login_failures = 0", "max_login_failures"),
            ("login_window_s = 0", "login_window_s"),
            ("max_tracked_clients = 1", "max_tracked_clients"),
            ("max_audit_rows = 5", "max_audit_rows"),
        ];
        for (text, field) in cases {
            let config: AuthConfig = toml::from_str(text).unwrap();
            let error = config.validate().unwrap_err();
            assert!(error.starts_with(field), "{text}: {error}");
        }
        let unknown = toml::from_str::<AuthConfig>("jwt_ttl = 5").unwrap_err();
        assert!(unknown.to_string().contains("jwt_ttl"), "{unknown}");
        let parsed: AuthConfig =
            toml::from_str("jwt_ttl_s = 60\ntrusted_proxies = [\"10.0.0.1\"]").unwrap();
        parsed.validate().unwrap();
        assert_eq!(parsed.session_ttl_s, 8 * 3600);
        AuthConfig::default().validate().unwrap();
    }

    fn open_store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("central.db")).unwrap();
        (dir, store)
    }

    #[test]
    fn the_first_admin_gets_the_given_or_a_generated_password() {
        let (_dir, store) = open_store();
        assert!(matches!(
            bootstrap_admin(&store, Some("short"), 1),
            Err(AuthError::WeakAdminPassword(_))
        ));
        assert_eq!(store.user_count().unwrap(), 0);
        let Bootstrap::Generated(secret) = bootstrap_admin(&store, None, 1).unwrap() else {
            panic!("expected a generated password");
        };
        assert!(secret.len() >= 20);
        let admin = store.user(INITIAL_ADMIN).unwrap().unwrap();
        assert_eq!(admin.role, Role::Admin);
        assert!(password::verify(&secret, &admin.password_hash));
        assert!(!admin.password_hash.contains(&secret));
        // A second start changes nothing and shows nothing.
        assert_eq!(
            bootstrap_admin(&store, None, 2).unwrap(),
            Bootstrap::UsersExist
        );

        let (_dir, store) = open_store();
        let given = "a long enough password";
        assert_eq!(
            bootstrap_admin(&store, Some(given), 1).unwrap(),
            Bootstrap::FromEnvironment
        );
        let admin = store.user(INITIAL_ADMIN).unwrap().unwrap();
        assert!(password::verify(given, &admin.password_hash));
    }

    #[test]
    fn a_lost_admin_password_is_reset() {
        let (_dir, store) = open_store();
        bootstrap_admin(&store, Some("the first password"), 1).unwrap();
        store
            .update_user(
                INITIAL_ADMIN,
                &crate::store::auth::UserChange {
                    role: Some(Role::Viewer),
                    ..Default::default()
                },
                2,
            )
            .unwrap_err();
        let generated = reset_admin_password(&store, None, 3).unwrap().unwrap();
        let admin = store.user(INITIAL_ADMIN).unwrap().unwrap();
        assert!(password::verify(&generated, &admin.password_hash));
        assert_eq!(
            (admin.role, admin.disabled, admin.password_changed_at),
            (Role::Admin, false, 3)
        );
        assert_eq!(
            reset_admin_password(&store, Some("another good password"), 4).unwrap(),
            None
        );
        assert!(matches!(
            reset_admin_password(&store, Some("weak"), 5),
            Err(AuthError::WeakAdminPassword(_))
        ));
    }

    #[test]
    fn the_signing_secret_survives_a_restart() {
        let (dir, store) = open_store();
        let first = AuthState::new(&store, &AuthConfig::default()).unwrap();
        let (token, _) = first
            .keys()
            .issue("admin", Role::Admin, 1_000, 900)
            .unwrap();
        drop(store);
        let store = Store::open(&dir.path().join("central.db")).unwrap();
        let second = AuthState::new(&store, &AuthConfig::default()).unwrap();
        assert!(second.keys().verify(&token, 1_001).is_ok());
    }
}
