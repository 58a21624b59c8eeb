//! Device identity: each box has an ed25519 key pair, created on first start
//! and kept in its data directory. Every batch is signed with it; central
//! verifies the signature against the public key it has registered for the
//! device, so a batch cannot claim another device's identity whatever the
//! broker allowed.

use std::io::Write;
use std::path::Path;

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use rand::RngCore;

use crate::error::WireError;
use crate::wire::Batch;

/// Name of the key file in the data directory.
pub const KEY_FILE: &str = "device.key";

/// A failure to load or create the key.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("device key {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "device key {path} is not 64 hex digits; restore it from backup or remove it to create a new identity (central must then register the new public key)"
    )]
    Invalid { path: String },
}

/// The box's signing key.
#[derive(Clone)]
pub struct DeviceKey {
    signing: SigningKey,
}

impl std::fmt::Debug for DeviceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret.
        f.debug_struct("DeviceKey")
            .field("public_key", &self.public_key_hex())
            .finish()
    }
}

impl DeviceKey {
    /// Loads the key from `dir/device.key`, creating it (mode 0600) on first start.
    pub fn load_or_create(dir: &Path) -> Result<DeviceKey, IdentityError> {
        let path = dir.join(KEY_FILE);
        let io = |source| IdentityError::Io {
            path: path.display().to_string(),
            source,
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let invalid = || IdentityError::Invalid {
                    path: path.display().to_string(),
                };
                let bytes: [u8; 32] = hex::decode(text.trim())
                    .map_err(|_| invalid())?
                    .try_into()
                    .map_err(|_| invalid())?;
                Ok(DeviceKey {
                    signing: SigningKey::from_bytes(&bytes),
                })
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                let mut secret = [0u8; 32];
                rand::rng().fill_bytes(&mut secret);
                let key = DeviceKey {
                    signing: SigningKey::from_bytes(&secret),
                };
                write_private(&path, &hex::encode(secret)).map_err(io)?;
                Ok(key)
            }
            Err(error) => Err(io(error)),
        }
    }

    /// A key from fixed bytes, for tests and benchmarks.
    pub fn from_secret(secret: [u8; 32]) -> DeviceKey {
        DeviceKey {
            signing: SigningKey::from_bytes(&secret),
        }
    }

    /// The public key as 64 hex digits: what central registers.
    pub fn public_key_hex(&self) -> String {
        hex::encode(self.signing.verifying_key().to_bytes())
    }

    /// Sets `batch.sig`.
    pub fn sign(&self, batch: &mut Batch) {
        batch.sig = hex::encode(self.signing.sign(&batch.signing_bytes()).to_bytes());
    }
}

/// Checks `batch.sig` against a registered public key (64 hex digits).
pub fn verify(batch: &Batch, public_key_hex: &str) -> Result<(), WireError> {
    let bad = |reason: &str| WireError::BadSignature(reason.to_owned());
    let key: [u8; 32] = hex::decode(public_key_hex)
        .map_err(|_| bad("registered public key is not hex"))?
        .try_into()
        .map_err(|_| bad("registered public key is not 32 bytes"))?;
    let key =
        VerifyingKey::from_bytes(&key).map_err(|_| bad("registered public key is invalid"))?;
    let sig: [u8; 64] = hex::decode(&batch.sig)
        .map_err(|_| bad("sig is not hex"))?
        .try_into()
        .map_err(|_| bad("sig is not 64 bytes"))?;
    key.verify(&batch.signing_bytes(), &Signature::from_bytes(&sig))
        .map_err(|_| bad("signature does not verify with the device's registered key"))
}

/// Checks that text is a usable public key (for configuration).
pub fn validate_public_key(public_key_hex: &str) -> Result<(), String> {
    let bytes: [u8; 32] = hex::decode(public_key_hex)
        .map_err(|_| "public_key must be 64 hex digits".to_owned())?
        .try_into()
        .map_err(|_| "public_key must be 64 hex digits (32 bytes)".to_owned())?;
    VerifyingKey::from_bytes(&bytes)
        .map(|_| ())
        .map_err(|_| "public_key is not a valid ed25519 key".into())
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{GENESIS_HASH, PROTOCOL_VERSION, Record};

    fn batch() -> Batch {
        let record = Record::new(
            "box-1",
            "e",
            1,
            "k",
            "t",
            serde_json::json!({}),
            GENESIS_HASH,
        );
        Batch {
            v: PROTOCOL_VERSION,
            device_id: "box-1".into(),
            epoch: "e".into(),
            records: vec![record],
            sig: String::new(),
        }
    }

    #[test]
    fn the_key_is_created_once_and_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let first = DeviceKey::load_or_create(dir.path()).unwrap();
        let again = DeviceKey::load_or_create(dir.path()).unwrap();
        assert_eq!(first.public_key_hex(), again.public_key_hex());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(
            !format!("{first:?}")
                .contains(&std::fs::read_to_string(dir.path().join(KEY_FILE)).unwrap())
        );
    }

    #[test]
    fn a_damaged_key_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(KEY_FILE), "zz").unwrap();
        assert!(matches!(
            DeviceKey::load_or_create(dir.path()),
            Err(IdentityError::Invalid { .. })
        ));
    }

    #[test]
    fn signatures_bind_every_record_and_the_identity() {
        let key = DeviceKey::from_secret([7; 32]);
        let other = DeviceKey::from_secret([8; 32]);
        let mut signed = batch();
        key.sign(&mut signed);
        verify(&signed, &key.public_key_hex()).unwrap();
        assert!(
            verify(&signed, &other.public_key_hex()).is_err(),
            "another device's key"
        );

        let mut tampered = signed.clone();
        tampered.records[0].hash = "00".repeat(32);
        assert!(
            verify(&tampered, &key.public_key_hex()).is_err(),
            "content changed"
        );
        let mut renamed = signed.clone();
        renamed.epoch = "other".into();
        assert!(
            verify(&renamed, &key.public_key_hex()).is_err(),
            "epoch changed"
        );
        let mut garbage = signed;
        garbage.sig = "xyz".into();
        assert!(
            verify(&garbage, &key.public_key_hex())
                .unwrap_err()
                .to_string()
                .contains("hex")
        );
    }

    #[test]
    fn public_keys_in_config_are_checked() {
        validate_public_key(&DeviceKey::from_secret([1; 32]).public_key_hex()).unwrap();
        assert!(validate_public_key("abc").is_err());
        assert!(validate_public_key(&"g".repeat(64)).is_err());
    }
}
