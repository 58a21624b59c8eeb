//! The wire contract between an edge box and central: topics, the record
//! envelope, batches, acknowledgements, canonical encoding and the hash chain.
//!
//! `docs/sync-protocol.md` is the normative description; this module is its
//! only implementation, shared by the edge uplink and the central receiver so
//! the two can never disagree about bytes.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::WireError;

/// Version of the contract carried in every batch and ack (`v`).
pub const PROTOCOL_VERSION: u32 = 1;

/// `prev_hash` of the first record of an epoch: 64 zeros.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Longest device id we accept: it ends up in topic names and file paths.
pub const MAX_DEVICE_ID_CHARS: usize = 64;

/// Largest batch payload central accepts, in bytes. Edge batches stay below it.
pub const MAX_BATCH_BYTES: usize = 1024 * 1024;

/// Most records in one batch.
pub const MAX_BATCH_RECORDS: usize = 500;

/// Topic names of the contract. Everything lives under `valeo/v1/{device_id}/`.
pub mod topic {
    /// Edge → central: batches of records (QoS 1).
    pub fn records(device_id: &str) -> String {
        format!("valeo/v1/{device_id}/records")
    }

    /// Central → edge: cumulative acknowledgements (QoS 1).
    pub fn ack(device_id: &str) -> String {
        format!("valeo/v1/{device_id}/ack")
    }

    /// Edge → anyone: retained online/offline status, also the last will.
    pub fn status(device_id: &str) -> String {
        format!("valeo/v1/{device_id}/status")
    }

    /// Edge → anyone: live values, best effort (QoS 0), a JSON array of
    /// `{name, value, at}`.
    pub fn telemetry(device_id: &str) -> String {
        format!("valeo/v1/{device_id}/telemetry")
    }

    /// Central → edge: the device's configuration (master data), retained
    /// (QoS 1) so a box that connects gets the latest at once. The sync
    /// layer carries it as opaque bytes; `valeo-records` says what it means.
    pub fn config(device_id: &str) -> String {
        format!("valeo/v1/{device_id}/config")
    }

    /// Central → edge: commands for the box (QoS 1, not retained). The sync
    /// layer carries them as opaque bytes; `valeo-records` says what they mean.
    pub fn commands(device_id: &str) -> String {
        format!("valeo/v1/{device_id}/commands")
    }

    /// The filter for the live values of every device.
    pub const ALL_TELEMETRY: &str = "valeo/v1/+/telemetry";

    /// The filter central subscribes to for records of every device.
    pub const ALL_RECORDS: &str = "valeo/v1/+/records";

    /// The filter for the status of every device.
    pub const ALL_STATUS: &str = "valeo/v1/+/status";

    /// Prefix of central's integration events; `events` is therefore not
    /// usable as a device id.
    pub const EVENTS_PREFIX: &str = "valeo/v1/events/";

    /// Central → integrators: one integration event of `kind` (QoS 1, not
    /// retained). The sync layer carries it as opaque bytes.
    pub fn event(kind: &str) -> String {
        format!("{EVENTS_PREFIX}{kind}")
    }

    /// The filter for every integration event.
    pub const ALL_EVENTS: &str = "valeo/v1/events/+";

    /// Extracts `{kind}` from `valeo/v1/events/{kind}`.
    pub fn event_kind(topic: &str) -> Option<&str> {
        topic
            .strip_prefix(EVENTS_PREFIX)
            .filter(|kind| !kind.is_empty() && !kind.contains('/'))
    }

    /// Extracts `{device_id}` from `valeo/v1/{device_id}/{leaf}`.
    pub fn device_of<'a>(topic: &'a str, leaf: &str) -> Option<&'a str> {
        let rest = topic.strip_prefix("valeo/v1/")?;
        let (device, tail) = rest.split_once('/')?;
        (tail == leaf && !device.is_empty()).then_some(device)
    }
}

/// Checks a device id: 1–64 characters of `[A-Za-z0-9_-]`, so it is safe in
/// topic names (no `+`, `#`, `/`) and in file names.
pub fn validate_device_id(id: &str) -> Result<(), WireError> {
    let ok = !id.is_empty()
        && id.chars().count() <= MAX_DEVICE_ID_CHARS
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(WireError::InvalidDeviceId(id.to_owned()))
    }
}

/// One append-only record as it leaves the box.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    pub device_id: String,
    /// Random id of this outbox database; new when the database is recreated.
    pub epoch: String,
    /// Gap-free sequence number within `(device_id, epoch)`, starting at 1.
    pub seq: u64,
    /// What the payload is, e.g. `weighing.first`. Sync does not interpret it.
    pub kind: String,
    /// RFC 3339 UTC timestamp with milliseconds, taken on the box.
    pub created_at: String,
    pub payload: serde_json::Value,
    /// `hash` of the record with `seq - 1`, or [`GENESIS_HASH`] for seq 1.
    pub prev_hash: String,
    /// Lower-case hex SHA-256 of [`Record::canonical_bytes`].
    pub hash: String,
}

/// The hashed part of a record, in a fixed field order.
#[derive(Serialize)]
struct Canonical<'a> {
    device_id: &'a str,
    epoch: &'a str,
    seq: u64,
    kind: &'a str,
    created_at: &'a str,
    payload: &'a serde_json::Value,
    prev_hash: &'a str,
}

impl Record {
    /// Builds a record and computes its hash.
    pub fn new(
        device_id: &str,
        epoch: &str,
        seq: u64,
        kind: &str,
        created_at: &str,
        payload: serde_json::Value,
        prev_hash: &str,
    ) -> Record {
        let mut record = Record {
            device_id: device_id.to_owned(),
            epoch: epoch.to_owned(),
            seq,
            kind: kind.to_owned(),
            created_at: created_at.to_owned(),
            payload,
            prev_hash: prev_hash.to_owned(),
            hash: String::new(),
        };
        record.hash = record.compute_hash();
        record
    }

    /// The canonical encoding: compact JSON of the fields above in this
    /// order, with object keys of the payload sorted (serde_json's map is a
    /// BTreeMap), so edge and central produce identical bytes.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let canonical = Canonical {
            device_id: &self.device_id,
            epoch: &self.epoch,
            seq: self.seq,
            kind: &self.kind,
            created_at: &self.created_at,
            payload: &self.payload,
            prev_hash: &self.prev_hash,
        };
        // Serialising plain strings, integers and a Value cannot fail.
        serde_json::to_vec(&canonical).unwrap_or_default()
    }

    /// SHA-256 of the canonical bytes, lower-case hex.
    pub fn compute_hash(&self) -> String {
        hex::encode(Sha256::digest(self.canonical_bytes()))
    }

    /// Checks the record's own hash.
    pub fn verify_hash(&self) -> Result<(), WireError> {
        if self.compute_hash() == self.hash {
            Ok(())
        } else {
            Err(WireError::HashMismatch { seq: self.seq })
        }
    }
}

/// Several consecutive records of one device and epoch, published as one
/// MQTT message on [`topic::records`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Batch {
    pub v: u32,
    pub device_id: String,
    pub epoch: String,
    pub records: Vec<Record>,
    /// Hex ed25519 signature of [`Batch::signing_bytes`] by the device key.
    pub sig: String,
}

impl Batch {
    /// Parses and checks a batch received on `topic`: version, size limits,
    /// identity (topic, batch and records name the same device and epoch),
    /// every record's hash, consecutive sequence numbers and the chain
    /// links inside the batch.
    pub fn decode(topic_name: &str, payload: &[u8]) -> Result<Batch, WireError> {
        if payload.len() > MAX_BATCH_BYTES {
            return Err(WireError::TooLarge {
                bytes: payload.len(),
                max_bytes: MAX_BATCH_BYTES,
            });
        }
        let topic_device = topic::device_of(topic_name, "records")
            .ok_or_else(|| WireError::BadTopic(topic_name.to_owned()))?;
        let batch: Batch =
            serde_json::from_slice(payload).map_err(|e| WireError::Malformed(e.to_string()))?;
        if batch.v != PROTOCOL_VERSION {
            return Err(WireError::UnsupportedVersion(batch.v));
        }
        validate_device_id(&batch.device_id)?;
        if batch.device_id != topic_device {
            return Err(WireError::IdentityMismatch {
                topic: topic_device.to_owned(),
                claimed: batch.device_id.clone(),
            });
        }
        if batch.records.is_empty() {
            return Err(WireError::Malformed("batch has no records".into()));
        }
        if batch.records.len() > MAX_BATCH_RECORDS {
            return Err(WireError::Malformed(format!(
                "batch has {} records, at most {MAX_BATCH_RECORDS} allowed",
                batch.records.len()
            )));
        }
        let mut previous: Option<&Record> = None;
        for record in &batch.records {
            if record.device_id != batch.device_id || record.epoch != batch.epoch {
                return Err(WireError::IdentityMismatch {
                    topic: topic_device.to_owned(),
                    claimed: format!("{}/{}", record.device_id, record.epoch),
                });
            }
            if record.seq == 0 {
                return Err(WireError::Malformed(
                    "record seq 0; sequences start at 1".into(),
                ));
            }
            record.verify_hash()?;
            if let Some(prev) = previous {
                if record.seq != prev.seq + 1 {
                    return Err(WireError::Gap {
                        expected: prev.seq + 1,
                        got: record.seq,
                    });
                }
                if record.prev_hash != prev.hash {
                    return Err(WireError::ChainBroken { seq: record.seq });
                }
            }
            previous = Some(record);
        }
        Ok(batch)
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// What the device signs: a domain tag, the identity, and every record's
    /// seq and hash (each hash covers its record's canonical bytes).
    pub fn signing_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.records.len() * 80);
        out.extend_from_slice(b"valeo/v1/batch\0");
        out.extend_from_slice(self.device_id.as_bytes());
        out.push(0);
        out.extend_from_slice(self.epoch.as_bytes());
        out.push(0);
        for record in &self.records {
            out.extend_from_slice(format!("{}:{}\n", record.seq, record.hash).as_bytes());
        }
        out
    }

    pub fn first_seq(&self) -> u64 {
        self.records.first().map_or(0, |r| r.seq)
    }

    pub fn last_seq(&self) -> u64 {
        self.records.last().map_or(0, |r| r.seq)
    }
}

/// Central's cumulative acknowledgement, sent only after its database
/// committed every record of `epoch` up to and including `acked_seq`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ack {
    pub v: u32,
    pub epoch: String,
    pub acked_seq: u64,
    /// Set when central saw a gap: the box should resend from this seq now
    /// instead of waiting for its ack timeout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resend_from: Option<u64>,
}

impl Ack {
    pub fn decode(payload: &[u8]) -> Result<Ack, WireError> {
        let ack: Ack =
            serde_json::from_slice(payload).map_err(|e| WireError::Malformed(e.to_string()))?;
        if ack.v != PROTOCOL_VERSION {
            return Err(WireError::UnsupportedVersion(ack.v));
        }
        Ok(ack)
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// Retained status of a box, also used as its last will.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub v: u32,
    pub online: bool,
    #[serde(default)]
    pub version: Option<String>,
    #[serde(default)]
    pub backlog_records: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn chain(n: u64) -> Vec<Record> {
        let mut out: Vec<Record> = Vec::new();
        for seq in 1..=n {
            let prev = out
                .last()
                .map_or(GENESIS_HASH.to_owned(), |r| r.hash.clone());
            out.push(Record::new(
                "box-1",
                "e1",
                seq,
                "test",
                "2026-01-01T00:00:00.000Z",
                json!({"n": seq, "b": [1, 2], "a": "x"}),
                &prev,
            ));
        }
        out
    }

    fn batch(records: Vec<Record>) -> Vec<u8> {
        Batch {
            v: 1,
            device_id: "box-1".into(),
            epoch: "e1".into(),
            records,
            sig: String::new(),
        }
        .encode()
    }

    #[test]
    fn canonical_bytes_are_stable_and_sorted() {
        let r = Record::new("d", "e", 1, "k", "t", json!({"z": 1, "a": 2}), GENESIS_HASH);
        let text = String::from_utf8(r.canonical_bytes()).unwrap();
        assert_eq!(
            text,
            format!(
                r#"{{"device_id":"d","epoch":"e","seq":1,"kind":"k","created_at":"t","payload":{{"a":2,"z":1}},"prev_hash":"{GENESIS_HASH}"}}"#
            )
        );
        // A round trip through JSON keeps the hash valid.
        let back: Record = serde_json::from_slice(&serde_json::to_vec(&r).unwrap()).unwrap();
        back.verify_hash().unwrap();
    }

    #[test]
    fn event_topics_name_their_kind() {
        let name = topic::event("weighing.completed");
        assert_eq!(name, "valeo/v1/events/weighing.completed");
        assert_eq!(topic::event_kind(&name), Some("weighing.completed"));
        for other in [
            "valeo/v1/events/",
            "valeo/v1/events/a/b",
            "valeo/v1/box-1/status",
        ] {
            assert_eq!(topic::event_kind(other), None, "{other}");
        }
        assert_eq!(
            topic::device_of("valeo/v1/box-1/status", "status"),
            Some("box-1")
        );
    }

    #[test]
    fn a_valid_batch_decodes() {
        let b = Batch::decode("valeo/v1/box-1/records", &batch(chain(3))).unwrap();
        assert_eq!((b.first_seq(), b.last_seq()), (1, 3));
    }

    #[test]
    fn bad_batches_are_refused_with_a_reason() {
        let topic = "valeo/v1/box-1/records";
        let cases: Vec<(&str, Vec<u8>, &str, &str)> = vec![
            ("garbage", b"not json".to_vec(), topic, "malformed"),
            ("empty", batch(vec![]), topic, "no records"),
            (
                "other device",
                batch(chain(1)),
                "valeo/v1/box-2/records",
                "claims",
            ),
            ("bad topic", batch(chain(1)), "other/topic", "topic"),
            (
                "tampered",
                {
                    let mut c = chain(2);
                    c[1].payload = json!({"n": 99});
                    batch(c)
                },
                topic,
                "hash",
            ),
            (
                "gap",
                {
                    let mut c = chain(3);
                    c.remove(1);
                    batch(c)
                },
                topic,
                "expected seq 2",
            ),
        ];
        for (name, payload, topic_name, needle) in cases {
            let err = Batch::decode(topic_name, &payload).unwrap_err().to_string();
            assert!(
                err.contains(needle),
                "{name}: {err:?} should mention {needle:?}"
            );
        }
    }

    #[test]
    fn device_ids_are_restricted() {
        assert!(validate_device_id("weighbridge-01_a").is_ok());
        for bad in ["", "a/b", "a+b", "#", &"x".repeat(65), "ä"] {
            assert!(validate_device_id(bad).is_err(), "{bad:?}");
        }
    }

    proptest::proptest! {
        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            // Any outcome is fine as long as it is a value, not a panic;
            // an accepted batch must have passed every check.
            if let Ok(batch) = Batch::decode("valeo/v1/box-1/records", &bytes) {
                proptest::prop_assert!(!batch.records.is_empty());
            }
            if let Ok(ack) = Ack::decode(&bytes) {
                proptest::prop_assert_eq!(ack.v, PROTOCOL_VERSION);
            }
        }
    }
}
