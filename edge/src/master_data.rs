//! The box's cache of central's master data: the latest document received
//! on the retained config topic, kept in the outbox database so it survives
//! restarts and serves weighings while central is unreachable.
//!
//! A document replaces the cache only when its version is newer; a document
//! that does not parse or check out is refused with the reason logged and
//! shown on `/health`, and the previous one stays in use.

use std::sync::{Arc, RwLock};

use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::{OptionalExtension, params};
use serde::Serialize;
use tokio::sync::watch;
use valeo_records::master_data::{MasterData, MasterDataError};
use valeo_sync::OutboxError;
use valeo_sync::outbox::Outbox;

use crate::workflow::Clock;

/// What became of a received document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    Updated {
        version: u64,
    },
    /// Not newer than the cached version (a retained copy seen again).
    Unchanged {
        version: u64,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("master data from central refused: {0}")]
    Refused(#[from] MasterDataError),
    #[error("master data cache: {0}")]
    Storage(#[from] OutboxError),
}

impl From<rusqlite::Error> for CacheError {
    fn from(e: rusqlite::Error) -> Self {
        CacheError::Storage(OutboxError::Sqlite(e))
    }
}

/// The cached document with its arrival time, as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    pub received_at: Option<String>,
    #[serde(flatten)]
    pub data: Arc<MasterData>,
    /// Why the last received document was refused, if it was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// Shared handle; cheap to clone.
#[derive(Debug, Clone)]
pub struct MasterDataCache {
    outbox: Outbox,
    current: Arc<RwLock<Snapshot>>,
}

impl MasterDataCache {
    /// Opens the cache table in the outbox database and loads what is there.
    pub fn open(outbox: Outbox) -> Result<MasterDataCache, CacheError> {
        let stored = outbox.read(|conn| {
            conn.execute_batch(
                "CREATE TABLE IF NOT EXISTS master_data (
                    id INTEGER PRIMARY KEY CHECK (id = 1),
                    version INTEGER NOT NULL,
                    received_at TEXT NOT NULL,
                    document TEXT NOT NULL
                );",
            )?;
            conn.query_row(
                "SELECT document, received_at FROM master_data WHERE id = 1",
                [],
                |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)),
            )
            .optional()
        })?;
        let (data, received_at) = match stored {
            Some((text, at)) => (MasterData::decode(text.as_bytes())?, Some(at)),
            None => (MasterData::default(), None),
        };
        Ok(MasterDataCache {
            outbox,
            current: Arc::new(RwLock::new(Snapshot {
                received_at,
                data: Arc::new(data),
                last_error: None,
            })),
        })
    }

    /// The document weighings use now (version 0 and empty before the first).
    pub fn current(&self) -> Arc<MasterData> {
        Arc::clone(&self.snapshot().data)
    }

    pub fn snapshot(&self) -> Snapshot {
        self.current
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Checks and stores a document from central. Blocking (SQLite).
    pub fn apply(&self, bytes: &[u8], now: DateTime<Utc>) -> Result<Applied, CacheError> {
        let result = self.apply_inner(bytes, now);
        if let Err(error) = &result {
            self.update(|s| s.last_error = Some(error.to_string()));
        }
        result
    }

    fn apply_inner(&self, bytes: &[u8], now: DateTime<Utc>) -> Result<Applied, CacheError> {
        let data = MasterData::decode(bytes)?;
        let cached = self.current().version;
        if data.version <= cached {
            return Ok(Applied::Unchanged { version: cached });
        }
        let received_at = now.to_rfc3339_opts(SecondsFormat::Millis, true);
        let text = String::from_utf8_lossy(bytes);
        self.outbox.read(|conn| {
            conn.execute(
                "INSERT INTO master_data (id, version, received_at, document) VALUES (1, ?1, ?2, ?3)
                 ON CONFLICT (id) DO UPDATE SET version = excluded.version,
                     received_at = excluded.received_at, document = excluded.document",
                params![data.version as i64, received_at, text],
            )
        })?;
        let version = data.version;
        self.update(|s| {
            s.data = Arc::new(data);
            s.received_at = Some(received_at);
            s.last_error = None;
        });
        Ok(Applied::Updated { version })
    }

    fn update(&self, f: impl FnOnce(&mut Snapshot)) {
        f(&mut self
            .current
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()));
    }
}

/// Applies every config payload the uplink receives, until it stops.
pub async fn follow(
    cache: MasterDataCache,
    mut updates: watch::Receiver<Option<Bytes>>,
    clock: Arc<dyn Clock>,
) {
    loop {
        let payload = updates.borrow_and_update().clone();
        if let Some(payload) = payload {
            let cache = cache.clone();
            let now = clock.now();
            let applied = tokio::task::spawn_blocking(move || cache.apply(&payload, now)).await;
            match applied {
                Ok(Ok(Applied::Updated { version })) => {
                    tracing::info!(version, "master data updated")
                }
                Ok(Ok(Applied::Unchanged { version })) => {
                    tracing::debug!(version, "master data unchanged")
                }
                Ok(Err(error)) => tracing::warn!(%error, "keeping the cached master data"),
                Err(error) => tracing::error!(%error, "master data task failed"),
            }
        }
        if updates.changed().await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use valeo_sync::outbox::OutboxLimits;

    fn outbox(dir: &std::path::Path) -> Outbox {
        Outbox::open(&dir.join("outbox.db"), "box-1", OutboxLimits::default()).unwrap()
    }

    const V2: &str = r#"{"version": 2, "articles": [{"id": "A-WHEAT", "name": "Weizen"}]}"#;

    #[test]
    fn newer_documents_replace_the_cache_and_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let cache = MasterDataCache::open(outbox(dir.path())).unwrap();
        assert_eq!(cache.current().version, 0);
        assert_eq!(
            cache.apply(V2.as_bytes(), Utc::now()).unwrap(),
            Applied::Updated { version: 2 }
        );
        let older = r#"{"version": 1, "articles": []}"#;
        assert_eq!(
            cache.apply(older.as_bytes(), Utc::now()).unwrap(),
            Applied::Unchanged { version: 2 }
        );
        drop(cache);
        let reopened = MasterDataCache::open(outbox(dir.path())).unwrap();
        assert_eq!(
            reopened.current().article("A-WHEAT").unwrap().name,
            "Weizen"
        );
        assert!(reopened.snapshot().received_at.is_some());
    }

    #[test]
    fn a_bad_document_is_refused_and_the_old_one_kept() {
        let dir = tempfile::tempdir().unwrap();
        let cache = MasterDataCache::open(outbox(dir.path())).unwrap();
        cache.apply(V2.as_bytes(), Utc::now()).unwrap();
        let bad = r#"{"version": 3, "lots": [{"id": "L", "name": "x", "article_id": "NOPE"}]}"#;
        let err = cache.apply(bad.as_bytes(), Utc::now()).unwrap_err();
        assert!(err.to_string().contains("unknown article"), "{err}");
        assert_eq!(cache.current().version, 2);
        assert!(
            cache
                .snapshot()
                .last_error
                .unwrap()
                .contains("unknown article")
        );
    }
}
