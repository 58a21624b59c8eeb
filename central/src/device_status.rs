//! The boxes' status as central last heard it on `valeo/v1/{device}/status`
//! (retained; the broker publishes the box's last will `online: false` when
//! its connection dies): online, software version, backlog, and when it
//! was heard. Kept in memory for registered devices only; the broker hands
//! the retained statuses over again after a restart.
//!
//! A change of `online` becomes a `device.online` / `device.offline` event.
//! The receiver's task must not block, so changes go over a bounded channel
//! to [`record_changes`], which writes them.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use chrono::{SecondsFormat, Utc};
use serde::Serialize;
use tokio::sync::mpsc;
use valeo_sync::wire::{PROTOCOL_VERSION, Status};

use crate::store::Store;

/// Largest status document accepted, in bytes.
pub const MAX_STATUS_BYTES: usize = 4 * 1024;

/// Online/offline changes waiting to become events.
pub const MAX_QUEUED_CHANGES: usize = 256;

/// What central knows of a box's status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct DeviceStatus {
    pub online: bool,
    /// The box's software version, while it is online.
    pub version: Option<String>,
    /// Records the box had not yet had acknowledged when it connected.
    pub backlog_records: Option<u64>,
    /// When central last heard the status (RFC 3339, UTC).
    pub status_at: String,
}

/// Counts for `/health` and `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct StatusCounts {
    pub registered: u64,
    pub online: u64,
    pub offline: u64,
    /// Registered devices never heard from since central started.
    pub unknown: u64,
    /// Status documents dropped because they did not parse.
    pub malformed: u64,
    /// Statuses of devices that are not registered, dropped.
    pub unregistered: u64,
    /// Online/offline events lost because the queue was full.
    pub changes_dropped: u64,
}

/// A box went online or offline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresenceChange {
    pub device_id: String,
    pub status: DeviceStatus,
}

/// The statuses of the registered boxes. Cheap to clone.
#[derive(Debug, Clone)]
pub struct DeviceStatuses {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    registered: HashSet<String>,
    statuses: Mutex<HashMap<String, DeviceStatus>>,
    changes: mpsc::Sender<PresenceChange>,
    malformed: AtomicU64,
    unregistered: AtomicU64,
    changes_dropped: AtomicU64,
}

impl DeviceStatuses {
    /// Statuses for `devices`; the receiver gets the changes to record.
    pub fn new(
        devices: impl IntoIterator<Item = String>,
    ) -> (DeviceStatuses, mpsc::Receiver<PresenceChange>) {
        let (tx, rx) = mpsc::channel(MAX_QUEUED_CHANGES);
        let statuses = DeviceStatuses {
            inner: Arc::new(Inner {
                registered: devices.into_iter().collect(),
                statuses: Mutex::new(HashMap::new()),
                changes: tx,
                malformed: AtomicU64::new(0),
                unregistered: AtomicU64::new(0),
                changes_dropped: AtomicU64::new(0),
            }),
        };
        (statuses, rx)
    }

    /// Takes a message from a device's status topic. Never blocks.
    pub fn ingest(&self, device_id: &str, payload: &[u8]) {
        let inner = &self.inner;
        if !inner.registered.contains(device_id) {
            inner.unregistered.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if payload.is_empty() {
            // A cleared retained message: nothing was said.
            return;
        }
        let status = match parse(payload) {
            Ok(status) => status,
            Err(reason) => {
                inner.malformed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(device_id, reason, "dropping a malformed status");
                return;
            }
        };
        let status = DeviceStatus {
            online: status.online,
            version: status.version,
            backlog_records: status.backlog_records,
            status_at: Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
        };
        let previous = inner
            .statuses
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(device_id.to_owned(), status.clone());
        // Unknown before (central just started) counts as a change: the
        // store compares with the last event and drops repeats.
        if previous.is_some_and(|p| p.online == status.online) {
            return;
        }
        let change = PresenceChange {
            device_id: device_id.to_owned(),
            status,
        };
        if inner.changes.try_send(change).is_err() {
            inner.changes_dropped.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(device_id, "online/offline event dropped: queue full");
        }
    }

    /// The status of one box, if central has heard it since it started.
    pub fn get(&self, device_id: &str) -> Option<DeviceStatus> {
        self.inner
            .statuses
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(device_id)
            .cloned()
    }

    /// Every status heard, by device id.
    pub fn all(&self) -> Vec<(String, DeviceStatus)> {
        let mut all: Vec<(String, DeviceStatus)> = self
            .inner
            .statuses
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .map(|(id, status)| (id.clone(), status.clone()))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    pub fn counts(&self) -> StatusCounts {
        let inner = &self.inner;
        let statuses = inner
            .statuses
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let online = statuses.values().filter(|s| s.online).count() as u64;
        let heard = statuses.len() as u64;
        let registered = inner.registered.len() as u64;
        StatusCounts {
            registered,
            online,
            offline: heard - online,
            unknown: registered.saturating_sub(heard),
            malformed: inner.malformed.load(Ordering::Relaxed),
            unregistered: inner.unregistered.load(Ordering::Relaxed),
            changes_dropped: inner.changes_dropped.load(Ordering::Relaxed),
        }
    }
}

fn parse(payload: &[u8]) -> Result<Status, String> {
    if payload.len() > MAX_STATUS_BYTES {
        return Err(format!(
            "{} bytes, more than {MAX_STATUS_BYTES}",
            payload.len()
        ));
    }
    let status: Status = serde_json::from_slice(payload).map_err(|e| e.to_string())?;
    if status.v != PROTOCOL_VERSION {
        return Err(format!("unsupported version {}", status.v));
    }
    Ok(status)
}

/// The data of a `device.online` / `device.offline` event.
pub fn event_data(device_id: &str, status: &DeviceStatus) -> serde_json::Value {
    serde_json::json!({
        "device_id": device_id,
        "online": status.online,
        "version": status.version,
        "backlog_records": status.backlog_records,
        "status_at": status.status_at,
    })
}

/// Writes each change as an event, unless the last event of the device
/// already says the same. Runs until the statuses are dropped.
pub async fn record_changes(store: Store, mut changes: mpsc::Receiver<PresenceChange>) {
    while let Some(change) = changes.recv().await {
        let store = store.clone();
        let device_id = change.device_id.clone();
        let written = tokio::task::spawn_blocking(move || {
            let data = event_data(&change.device_id, &change.status);
            store.record_device_presence(&change.device_id, change.status.online, &data)
        })
        .await;
        match written {
            Ok(Ok(_)) => {}
            Ok(Err(error)) => tracing::error!(%error, device_id, "online/offline event not stored"),
            Err(error) => tracing::error!(%error, device_id, "online/offline event not stored"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_latest_status_of_registered_devices_only() {
        let (statuses, mut changes) = DeviceStatuses::new(["b1".to_owned(), "b2".to_owned()]);
        assert_eq!(statuses.get("b1"), None);
        statuses.ingest(
            "b1",
            br#"{"v":1,"online":true,"version":"0.4.0","backlog_records":7}"#,
        );
        let b1 = statuses.get("b1").unwrap();
        assert!(b1.online);
        assert_eq!(b1.version.as_deref(), Some("0.4.0"));
        assert_eq!(b1.backlog_records, Some(7));
        assert_eq!(changes.try_recv().unwrap().device_id, "b1");

        // Same online state again: newer data, no change.
        statuses.ingest("b1", br#"{"v":1,"online":true,"backlog_records":0}"#);
        assert_eq!(statuses.get("b1").unwrap().backlog_records, Some(0));
        assert!(changes.try_recv().is_err());

        // The last will.
        statuses.ingest("b1", br#"{"v":1,"online":false}"#);
        let change = changes.try_recv().unwrap();
        assert!(!change.status.online);
        assert_eq!(change.status.version, None);

        let bad: [&[u8]; 5] = [
            b"not json",
            br#"{"v":2,"online":true}"#,
            br#"{"v":1}"#,
            br#"{"v":1,"online":"yes"}"#,
            &[b' '; MAX_STATUS_BYTES + 1],
        ];
        for payload in bad {
            statuses.ingest("b2", payload);
        }
        statuses.ingest("stranger", br#"{"v":1,"online":true}"#);
        statuses.ingest("b2", b"");
        assert_eq!(statuses.get("b2"), None);
        assert_eq!(statuses.get("stranger"), None);
        assert_eq!(
            statuses.counts(),
            StatusCounts {
                registered: 2,
                online: 0,
                offline: 1,
                unknown: 1,
                malformed: 5,
                unregistered: 1,
                changes_dropped: 0,
            }
        );
    }

    #[tokio::test]
    async fn changes_become_events_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("central.db")).unwrap();
        let (statuses, changes) = DeviceStatuses::new(["b1".to_owned()]);
        let online = br#"{"v":1,"online":true,"version":"0.4.0","backlog_records":0}"#;
        statuses.ingest("b1", online);
        statuses.ingest("b1", br#"{"v":1,"online":false}"#);
        // Central restarts and hears the retained offline status again.
        let (again, more) = DeviceStatuses::new(["b1".to_owned()]);
        again.ingest("b1", br#"{"v":1,"online":false}"#);
        drop((statuses, again));
        record_changes(store.clone(), changes).await;
        record_changes(store.clone(), more).await;
        let events = store.events_after(0, None, 10).unwrap();
        let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
        assert_eq!(kinds, ["device.online", "device.offline"]);
        assert_eq!(events[0].subject, "b1");
        assert_eq!(events[0].data["version"], "0.4.0");
        assert_eq!(events[1].data["online"], false);
    }
}
