//! Access tokens as JWTs: HS256 with central's own secret, short-lived.
//! The clock is a parameter so expiry is testable; the role claim is
//! informational, the role that counts is read from the database on every
//! request.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use super::policy::Role;

/// Longest token looked at; anything longer is not one of ours.
pub const MAX_JWT_BYTES: usize = 4096;
/// How far in the future `iat` may lie (clock skew between restarts).
const MAX_IAT_SKEW_S: i64 = 60;

/// The claims central signs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The username.
    pub sub: String,
    pub role: String,
    /// Issued at, Unix seconds.
    pub iat: i64,
    /// Expires at, Unix seconds.
    pub exp: i64,
    /// Unique id of this token (hex).
    pub jti: String,
}

/// Why a token is not accepted.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum JwtError {
    #[error("token is malformed or its signature is wrong")]
    Invalid,
    #[error("token has expired")]
    Expired,
    #[error("token cannot be signed: {0}")]
    Sign(String),
}

/// The signing key, both ways.
#[derive(Clone)]
pub struct JwtKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
}

impl std::fmt::Debug for JwtKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret.
        f.write_str("JwtKeys(..)")
    }
}

impl JwtKeys {
    pub fn from_secret(secret: &[u8]) -> JwtKeys {
        JwtKeys {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
        }
    }

    /// A token for `username` valid from `now` (Unix seconds) for `ttl_s`.
    pub fn issue(
        &self,
        username: &str,
        role: Role,
        now: i64,
        ttl_s: u64,
    ) -> Result<(String, Claims), JwtError> {
        let claims = Claims {
            sub: username.to_owned(),
            role: role.as_str().to_owned(),
            iat: now,
            exp: now.saturating_add(i64::try_from(ttl_s).unwrap_or(i64::MAX)),
            jti: hex::encode(rand::random::<[u8; 16]>()),
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|e| JwtError::Sign(e.to_string()))?;
        Ok((token, claims))
    }

    /// The claims of a token signed with this key and valid at `now`.
    /// Only HS256 is accepted: `alg: none` and other algorithms fail.
    pub fn verify(&self, token: &str, now: i64) -> Result<Claims, JwtError> {
        if token.len() > MAX_JWT_BYTES {
            return Err(JwtError::Invalid);
        }
        let mut validation = Validation::new(Algorithm::HS256);
        // Expiry is checked below against the injected clock.
        validation.validate_exp = false;
        validation.validate_aud = false;
        validation.leeway = 0;
        validation.required_spec_claims = ["exp", "iat", "sub", "jti"]
            .into_iter()
            .map(str::to_owned)
            .collect();
        let claims = jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation)
            .map_err(|_| JwtError::Invalid)?
            .claims;
        if claims.iat > now.saturating_add(MAX_IAT_SKEW_S) || claims.exp <= claims.iat {
            return Err(JwtError::Invalid);
        }
        if now >= claims.exp {
            return Err(JwtError::Expired);
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    use super::*;

    const NOW: i64 = 1_780_000_000;

    fn keys() -> JwtKeys {
        JwtKeys::from_secret(b"0123456789abcdef0123456789abcdef")
    }

    #[test]
    fn a_token_verifies_until_it_expires() {
        let (token, claims) = keys().issue("alice", Role::Office, NOW, 900).unwrap();
        assert_eq!(claims.exp, NOW + 900);
        let back = keys().verify(&token, NOW + 899).unwrap();
        assert_eq!(back, claims);
        assert_eq!(keys().verify(&token, NOW + 900), Err(JwtError::Expired));
        assert_eq!(keys().verify(&token, NOW + 100_000), Err(JwtError::Expired));
        let (other, _) = keys().issue("alice", Role::Office, NOW, 900).unwrap();
        assert_ne!(token, other, "every token has its own jti");
    }

    fn part(value: &serde_json::Value) -> String {
        URL_SAFE_NO_PAD.encode(value.to_string())
    }

    #[test]
    fn forged_tokens_are_invalid() {
        let (token, _) = keys().issue("alice", Role::Viewer, NOW, 900).unwrap();
        let mut pieces = token.split('.');
        let (header, payload, signature) = (
            pieces.next().unwrap(),
            pieces.next().unwrap(),
            pieces.next().unwrap(),
        );
        let admin_payload = part(&serde_json::json!({
            "sub": "alice", "role": "admin", "iat": NOW, "exp": NOW + 900, "jti": "00"
        }));
        let none_header = part(&serde_json::json!({"alg": "none", "typ": "JWT"}));
        let hs512 = {
            let claims = serde_json::json!({
                "sub": "alice", "role": "admin", "iat": NOW, "exp": NOW + 900, "jti": "00"
            });
            jsonwebtoken::encode(
                &Header::new(Algorithm::HS512),
                &claims,
                &EncodingKey::from_secret(b"0123456789abcdef0123456789abcdef"),
            )
            .unwrap()
        };
        let cases = [
            (
                "signed with another key",
                JwtKeys::from_secret(b"another key, as long as the first")
                    .issue("alice", Role::Admin, NOW, 900)
                    .unwrap()
                    .0,
            ),
            (
                "payload changed, signature kept",
                format!("{header}.{admin_payload}.{signature}"),
            ),
            (
                "alg none, no signature",
                format!("{none_header}.{admin_payload}."),
            ),
            (
                "alg none, old signature",
                format!("{none_header}.{payload}.{signature}"),
            ),
            ("another algorithm", hs512),
            ("signature removed", format!("{header}.{payload}.")),
            ("not a JWT", "hello".to_owned()),
            ("empty", String::new()),
            ("huge", "a".repeat(MAX_JWT_BYTES + 1)),
        ];
        for (what, forged) in cases {
            assert_eq!(
                keys().verify(&forged, NOW),
                Err(JwtError::Invalid),
                "{what}"
            );
        }
    }

    #[test]
    fn tokens_from_the_future_or_without_lifetime_are_invalid() {
        let (future, _) = keys()
            .issue("alice", Role::Viewer, NOW + 3600, 900)
            .unwrap();
        assert_eq!(keys().verify(&future, NOW), Err(JwtError::Invalid));
        let (zero, _) = keys().issue("alice", Role::Viewer, NOW, 0).unwrap();
        assert_eq!(keys().verify(&zero, NOW), Err(JwtError::Invalid));
    }
}
