//! Passwords: the rules a new one must meet, argon2id hashing with a random
//! salt, verification, and random secrets (generated passwords, session
//! ids, API tokens).

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Shortest password accepted, in characters.
pub const MIN_PASSWORD_CHARS: usize = 12;
/// Longest password accepted, in bytes: hashing cost stays bounded.
pub const MAX_PASSWORD_BYTES: usize = 1024;
/// Length of a generated password, in characters.
pub const GENERATED_PASSWORD_CHARS: usize = 24;

/// Why a password is not accepted or not hashed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PasswordError {
    #[error("must be at least {MIN_PASSWORD_CHARS} characters long")]
    TooShort,
    #[error("must be at most {MAX_PASSWORD_BYTES} bytes long")]
    TooLong,
    #[error("must not consist of whitespace only")]
    Blank,
    #[error("cannot be hashed: {0}")]
    Hash(String),
}

/// Checks the rules for a new password.
pub fn check_rules(password: &str) -> Result<(), PasswordError> {
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(PasswordError::TooLong);
    }
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(PasswordError::TooShort);
    }
    if password.trim().is_empty() {
        return Err(PasswordError::Blank);
    }
    Ok(())
}

/// The argon2id hash (PHC string) of `password` with a fresh random salt.
pub fn hash(password: &str) -> Result<String, PasswordError> {
    let salt = SaltString::encode_b64(&rand::random::<[u8; 16]>())
        .map_err(|e| PasswordError::Hash(e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| PasswordError::Hash(e.to_string()))
}

/// Whether `password` matches the stored `phc` hash. A malformed stored
/// hash matches nothing. Over-long input is refused before hashing.
pub fn verify(password: &str, phc: &str) -> bool {
    if password.len() > MAX_PASSWORD_BYTES {
        return false;
    }
    let Ok(parsed) = PasswordHash::new(phc) else {
        return false;
    };
    Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok()
}

/// A random password of [`GENERATED_PASSWORD_CHARS`] characters from an
/// alphabet without look-alikes (no 0/O, 1/l/I).
pub fn generate() -> String {
    const ALPHABET: &[u8] = b"abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    // Rejection sampling keeps every character equally likely.
    let limit = 256 - 256 % ALPHABET.len();
    let mut out = String::with_capacity(GENERATED_PASSWORD_CHARS);
    while out.len() < GENERATED_PASSWORD_CHARS {
        let byte = usize::from(rand::random::<u8>());
        if byte < limit {
            out.push(char::from(ALPHABET[byte % ALPHABET.len()]));
        }
    }
    out
}

/// A random secret of 32 bytes, base64url without padding (43 characters).
pub fn random_secret() -> String {
    URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
}

/// SHA-256 of a secret, hex: how session ids and API tokens are stored.
pub fn sha256_hex(secret: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(secret.as_bytes()))
}

/// Compares two strings in time independent of where they differ.
pub fn constant_time_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hashed_password_verifies_and_others_do_not() {
        let stored = hash("correct horse battery").unwrap();
        assert!(stored.starts_with("$argon2id$"), "{stored}");
        assert!(verify("correct horse battery", &stored));
        assert!(!verify("correct horse batterx", &stored));
        assert!(!verify("", &stored));
        assert!(!verify("correct horse battery", "not a hash"));
        // Same password, new salt, other hash.
        assert_ne!(hash("correct horse battery").unwrap(), stored);
    }

    #[test]
    fn the_rules_name_what_is_wrong() {
        let cases = [
            ("short", Err(PasswordError::TooShort)),
            ("elevenchars", Err(PasswordError::TooShort)),
            ("twelve chars", Ok(())),
            ("            ", Err(PasswordError::Blank)),
            ("ümläutpässwört", Ok(())),
        ];
        for (password, expected) in cases {
            assert_eq!(check_rules(password), expected, "{password:?}");
        }
        let long = "x".repeat(MAX_PASSWORD_BYTES + 1);
        assert_eq!(check_rules(&long), Err(PasswordError::TooLong));
        assert!(!verify(&long, &hash("twelve chars").unwrap()));
    }

    #[test]
    fn generated_secrets_are_long_and_differ() {
        let a = generate();
        assert_eq!(a.chars().count(), GENERATED_PASSWORD_CHARS);
        assert!(check_rules(&a).is_ok());
        assert_ne!(a, generate());
        assert_eq!(random_secret().len(), 43);
        assert_ne!(random_secret(), random_secret());
        assert_eq!(sha256_hex("abc").len(), 64);
        assert!(constant_time_eq("abc", "abc"));
        assert!(!constant_time_eq("abc", "abd"));
        assert!(!constant_time_eq("abc", "abcd"));
    }
}
