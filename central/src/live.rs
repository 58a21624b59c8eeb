//! Live values: the latest sample of every telemetry name per box, as the
//! boxes publish them (QoS 0, best effort). Kept in memory only: they are a
//! view of now, not a record; what must survive travels as records.
//!
//! Bounded: at most [`MAX_LIVE_VALUES`] names in all and
//! [`MAX_NAMES_PER_DEVICE`] per box, a sample value of at most
//! [`MAX_SAMPLE_BYTES`], and a message larger than [`MAX_TELEMETRY_BYTES`]
//! is dropped whole; what does not fit is counted, never stored. Only
//! registered boxes are heard: telemetry is not signed, so an unknown
//! sender could otherwise fill the table.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use chrono::{SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use valeo_sync::receiver::{BatchSink, CommitOutcome, DeadLetter, SinkError};
use valeo_sync::wire::Batch;

use crate::store::Store;

/// Most (device, name) pairs held.
pub const MAX_LIVE_VALUES: usize = 100_000;
/// Largest telemetry message looked at, in bytes.
pub const MAX_TELEMETRY_BYTES: usize = 1024 * 1024;
/// Longest telemetry name kept.
const MAX_NAME_CHARS: usize = 256;
/// Names one box may hold, so one box cannot starve the others.
pub const MAX_NAMES_PER_DEVICE: usize = 10_000;
/// Largest sample value kept, as JSON bytes.
pub const MAX_SAMPLE_BYTES: usize = 4096;

/// One sample as a box sends it.
#[derive(Debug, Deserialize)]
struct Sample {
    name: String,
    value: serde_json::Value,
    at: String,
}

/// The latest value of one name.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[schema(example = json!({
    "device_id": "yard-1",
    "name": "modbus.silo-1.level",
    "value": {"value": 2.9},
    "at": "2026-11-29T08:00:01.000Z",
    "received_at": "2026-11-29T08:00:01.042Z"
}))]
pub struct LiveValue {
    pub device_id: String,
    pub name: String,
    /// As the box sent it: a number, a string, or an object with the value
    /// and its quality.
    pub value: serde_json::Value,
    /// When the box took it (its clock), RFC 3339.
    pub at: String,
    /// When central received it, RFC 3339.
    pub received_at: String,
    /// `at` parsed, to keep the newest sample without parsing it again.
    #[serde(skip)]
    at_parsed: chrono::DateTime<chrono::FixedOffset>,
}

#[derive(Debug, Default)]
struct Values {
    by_device: HashMap<String, BTreeMap<String, LiveValue>>,
    count: usize,
}

/// The live values of every box. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct LiveValues {
    values: Arc<Mutex<Values>>,
    /// The registered boxes; telemetry of others is dropped.
    devices: Arc<std::collections::HashSet<String>>,
    dropped: Arc<AtomicU64>,
    malformed: Arc<AtomicU64>,
}

impl LiveValues {
    /// Live values of the registered `devices`.
    pub fn new(devices: impl IntoIterator<Item = String>) -> Self {
        Self {
            devices: Arc::new(devices.into_iter().collect()),
            ..Self::default()
        }
    }

    /// Takes one telemetry message of `device_id`. A message that is not a
    /// JSON array of `{name, value, at}` is counted and dropped.
    pub fn ingest(&self, device_id: &str, payload: &[u8]) {
        if !self.devices.contains(device_id) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if payload.len() > MAX_TELEMETRY_BYTES {
            self.malformed.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let samples: Vec<Sample> = match serde_json::from_slice(payload) {
            Ok(samples) => samples,
            Err(error) => {
                self.malformed.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(device_id, %error, "telemetry message dropped");
                return;
            }
        };
        let received_at = Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true);
        let mut values = self.values.lock().unwrap_or_else(PoisonError::into_inner);
        let Values { by_device, count } = &mut *values;
        for sample in samples {
            let too_big =
                serde_json::to_vec(&sample.value).map_or(true, |v| v.len() > MAX_SAMPLE_BYTES);
            let at = match chrono::DateTime::parse_from_rfc3339(&sample.at) {
                Ok(at)
                    if !too_big
                        && !sample.name.is_empty()
                        && sample.name.chars().count() <= MAX_NAME_CHARS =>
                {
                    at
                }
                _ => {
                    self.malformed.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
            };
            let names_held = by_device.get(device_id).map_or(0, BTreeMap::len);
            let known = by_device
                .get(device_id)
                .is_some_and(|names| names.contains_key(&sample.name));
            if !known && (*count >= MAX_LIVE_VALUES || names_held >= MAX_NAMES_PER_DEVICE) {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let names = by_device.entry(device_id.to_owned()).or_default();
            // QoS 0 messages can overtake each other; keep the newest sample
            // by its time, not by how the text of the time sorts.
            if names
                .get(&sample.name)
                .is_some_and(|old| old.at_parsed > at)
            {
                continue;
            }
            let value = LiveValue {
                device_id: device_id.to_owned(),
                name: sample.name.clone(),
                value: sample.value,
                at: sample.at,
                received_at: received_at.clone(),
                at_parsed: at,
            };
            if names.insert(sample.name, value).is_none() {
                *count += 1;
            }
        }
    }

    /// The latest values of one box or all, optionally only names starting
    /// with `prefix`, sorted by device and name.
    pub fn list(&self, device_id: Option<&str>, prefix: Option<&str>) -> Vec<LiveValue> {
        let values = self.values.lock().unwrap_or_else(PoisonError::into_inner);
        let mut devices: Vec<_> = values
            .by_device
            .iter()
            .filter(|(id, _)| device_id.is_none_or(|d| d == id.as_str()))
            .collect();
        devices.sort_by(|a, b| a.0.cmp(b.0));
        devices
            .into_iter()
            .flat_map(|(_, names)| names.values())
            .filter(|v| prefix.is_none_or(|p| v.name.starts_with(p)))
            .cloned()
            .collect()
    }

    /// (names held, samples dropped for the cap, malformed messages or names).
    pub fn counts(&self) -> (usize, u64, u64) {
        let count = self
            .values
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .count;
        (
            count,
            self.dropped.load(Ordering::Relaxed),
            self.malformed.load(Ordering::Relaxed),
        )
    }
}

/// What the receiver hands its messages to: records into the store, live
/// values into memory.
#[derive(Debug, Clone)]
pub struct CentralSink {
    pub store: Store,
    pub live: LiveValues,
    /// The boxes' online status.
    pub statuses: crate::device_status::DeviceStatuses,
}

impl BatchSink for CentralSink {
    fn commit(&self, batch: &Batch) -> Result<CommitOutcome, SinkError> {
        self.store.commit(batch)
    }

    fn dead_letter(&self, letter: DeadLetter) {
        self.store.dead_letter(letter);
    }

    fn telemetry(&self, device_id: &str, payload: &[u8]) {
        self.live.ingest(device_id, payload);
    }

    fn status(&self, device_id: &str, payload: &[u8]) {
        self.statuses.ingest(device_id, payload);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_newest_value_per_name_and_drops_garbage() {
        let live = LiveValues::new(["b1".to_owned()]);
        live.ingest(
            "b1",
            br#"[{"name":"modbus.silo-1.level","value":{"value":2.9},"at":"2026-11-29T08:00:01.000Z"},
                 {"name":"scale.bridge-1.gross_kg","value":1200,"at":"2026-11-29T08:00:01.000Z"}]"#,
        );
        // An older sample arriving late does not win.
        live.ingest(
            "b1",
            br#"[{"name":"modbus.silo-1.level","value":{"value":2.5},"at":"2026-11-29T08:00:00.000Z"}]"#,
        );
        live.ingest("b1", b"not json");
        live.ingest("b1", br#"{"name":"x"}"#);
        // A later time written with fewer digits still counts as later.
        live.ingest(
            "b1",
            br#"[{"name":"modbus.silo-1.level","value":{"value":3.0},"at":"2026-11-29T08:00:02Z"}]"#,
        );
        // Nobody registered this sender.
        live.ingest(
            "intruder",
            br#"[{"name":"x","value":1,"at":"2026-11-29T08:00:00Z"}]"#,
        );
        let modbus = live.list(Some("b1"), Some("modbus."));
        assert_eq!(modbus.len(), 1);
        assert_eq!(modbus[0].value, serde_json::json!({"value": 3.0}));
        assert_eq!(live.list(None, None).len(), 2);
        assert!(live.list(Some("intruder"), None).is_empty());
        assert_eq!(live.counts(), (2, 1, 2));
    }

    #[test]
    fn the_caps_hold() {
        let live = LiveValues::new(["b1".to_owned()]);
        let samples: Vec<_> = (0..MAX_NAMES_PER_DEVICE + 10)
            .map(|i| serde_json::json!({"name": format!("n{i}"), "value": i, "at": "2026-11-29T08:00:00Z"}))
            .collect();
        for chunk in samples.chunks(10_000) {
            live.ingest("b1", &serde_json::to_vec(chunk).unwrap());
        }
        assert_eq!(live.counts().0, MAX_NAMES_PER_DEVICE);
        assert_eq!(live.counts().1, 10);
        let huge = serde_json::json!([
            {"name": "big", "value": "x".repeat(MAX_SAMPLE_BYTES), "at": "2026-11-29T08:00:00Z"}
        ]);
        live.ingest("b1", &serde_json::to_vec(&huge).unwrap());
        assert_eq!(live.counts().2, 1, "a value beyond the size cap is refused");
    }
}
