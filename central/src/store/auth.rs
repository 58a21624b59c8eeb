//! Users, sessions, API tokens, the audit log and login attempts: every
//! SQL statement of authentication.

/// Tables of authentication.
pub(super) const SCHEMA: &str = "";
