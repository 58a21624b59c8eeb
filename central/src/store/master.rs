//! Master data rows: one table for all seven kinds, each entity a checked
//! JSON body with its own version. Every change rebuilds the document for
//! the boxes in the same transaction, so a change that would leave a
//! dangling reference is refused before anything is stored.

use chrono::{SecondsFormat, Utc};
use rusqlite::{OptionalExtension, Transaction, TransactionBehavior, params};
use valeo_records::master_data::MasterData;

use super::{PutMasterDataError, Store, StoreError};
use crate::master_data::{
    Article, Contract, Entities, Entity, Kind, Location, Lot, Partner, Site, Vehicle, Versioned,
};

pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS master_entities (
    kind TEXT NOT NULL,
    id TEXT NOT NULL,
    version INTEGER NOT NULL,
    body TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    updated_by TEXT NOT NULL,
    PRIMARY KEY (kind, id)
);
";

/// Why a master-data change was not made.
#[derive(Debug, thiserror::Error)]
pub enum MasterError {
    #[error("no {kind} {id:?}")]
    NotFound { kind: &'static str, id: String },
    #[error("{kind} {id:?} exists already")]
    Exists { kind: &'static str, id: String },
    #[error("{kind} {id:?} is at version {current}, not {expected}: it was changed meanwhile")]
    VersionMismatch {
        kind: &'static str,
        id: String,
        current: u64,
        expected: u64,
    },
    /// The entity or the master data it would make is not valid.
    #[error("{0}")]
    Invalid(String),
    /// Other entities still refer to it.
    #[error("{0}")]
    InUse(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<rusqlite::Error> for MasterError {
    fn from(e: rusqlite::Error) -> Self {
        MasterError::Store(e.into())
    }
}

fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// `LIKE` pattern matching `q` anywhere, with the wildcards in `q` taken
/// literally.
pub(super) fn contains_pattern(q: &str) -> String {
    let escaped = q
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    format!("%{escaped}%")
}

fn versioned<E: Entity>(row: &rusqlite::Row<'_>) -> rusqlite::Result<Versioned<E>> {
    let body: String = row.get(1)?;
    let data: E = serde_json::from_str(&body).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(1, rusqlite::types::Type::Text, Box::new(e))
    })?;
    Ok(Versioned {
        data,
        version: row.get::<_, i64>(2)? as u64,
        updated_at: row.get(3)?,
        updated_by: row.get(4)?,
        delivered_kg: None,
    })
}

fn delivered_kg(conn: &rusqlite::Connection, contract_id: &str) -> rusqlite::Result<f64> {
    conn.query_row(
        "SELECT COALESCE(SUM(net_kg), 0) FROM weighings
         WHERE contract_id = ?1 AND status = 'complete'",
        [contract_id],
        |r| r.get(0),
    )
}

impl Store {
    /// One page of one kind, ordered by id; `q` matches id or name.
    pub fn list_entities<E: Entity>(
        &self,
        q: Option<&str>,
        limit: u32,
        offset: u64,
    ) -> Result<(Vec<Versioned<E>>, u64), StoreError> {
        let conn = self.reader();
        let pattern = q.filter(|q| !q.is_empty()).map(contains_pattern);
        let filter = "kind = ?1 AND (?2 IS NULL OR id LIKE ?2 ESCAPE '\\'
             OR json_extract(body, '$.name') LIKE ?2 ESCAPE '\\')";
        let total: i64 = conn.query_row(
            &format!("SELECT COUNT(*) FROM master_entities WHERE {filter}"),
            params![E::KIND.as_str(), pattern],
            |r| r.get(0),
        )?;
        let mut stmt = conn.prepare(&format!(
            "SELECT id, body, version, updated_at, updated_by FROM master_entities
             WHERE {filter} ORDER BY id LIMIT ?3 OFFSET ?4"
        ))?;
        let mut items = stmt
            .query_map(
                params![
                    E::KIND.as_str(),
                    pattern,
                    i64::from(limit),
                    offset.min(i64::MAX as u64) as i64
                ],
                versioned::<E>,
            )?
            .collect::<Result<Vec<_>, _>>()?;
        if E::KIND == Kind::Contracts {
            for item in &mut items {
                item.delivered_kg = Some(delivered_kg(&conn, item.data.id())?);
            }
        }
        Ok((items, total as u64))
    }

    pub fn get_entity<E: Entity>(&self, id: &str) -> Result<Option<Versioned<E>>, StoreError> {
        let conn = self.reader();
        let mut item = conn
            .query_row(
                "SELECT id, body, version, updated_at, updated_by FROM master_entities
                 WHERE kind = ?1 AND id = ?2",
                params![E::KIND.as_str(), id],
                versioned::<E>,
            )
            .optional()?;
        if E::KIND == Kind::Contracts
            && let Some(item) = &mut item
        {
            item.delivered_kg = Some(delivered_kg(&conn, id)?);
        }
        Ok(item)
    }

    /// Stores a new entity (checked by the caller) and returns it with the
    /// master data it made.
    pub fn create_entity<E: Entity>(
        &self,
        entity: E,
        actor: &str,
    ) -> Result<(Versioned<E>, MasterData), MasterError> {
        let mut conn = self.writer();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let at = now();
        let version = next_version(&tx)?;
        let inserted = tx.execute(
            "INSERT INTO master_entities (kind, id, version, body, created_at, updated_at, updated_by)
             VALUES (?1, ?2, ?6, ?3, ?4, ?4, ?5) ON CONFLICT DO NOTHING",
            params![
                E::KIND.as_str(),
                entity.id(),
                serde_json::to_string(&entity).unwrap_or_default(),
                at,
                actor,
                version as i64
            ],
        )?;
        if inserted == 0 {
            return Err(MasterError::Exists {
                kind: E::KIND.singular(),
                id: entity.id().to_owned(),
            });
        }
        let data = rebuild(&tx, actor, false, version)?;
        tx.commit()?;
        Ok((Versioned::new(entity, version, at, actor), data))
    }

    /// Replaces an entity when it is still at `if_version`.
    pub fn replace_entity<E: Entity>(
        &self,
        id: &str,
        entity: E,
        if_version: u64,
        actor: &str,
    ) -> Result<(Versioned<E>, MasterData), MasterError> {
        if entity.id() != id {
            return Err(MasterError::Invalid(format!(
                "id: the body says {:?} but the path says {id:?}; ids cannot change",
                entity.id()
            )));
        }
        let mut conn = self.writer();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        current_version::<E>(&tx, id, if_version)?;
        let version = next_version(&tx)?;
        let at = now();
        tx.execute(
            "UPDATE master_entities SET version = ?3, body = ?4, updated_at = ?5, updated_by = ?6
             WHERE kind = ?1 AND id = ?2",
            params![
                E::KIND.as_str(),
                id,
                version as i64,
                serde_json::to_string(&entity).unwrap_or_default(),
                at,
                actor
            ],
        )?;
        let data = rebuild(&tx, actor, false, version)?;
        tx.commit()?;
        Ok((Versioned::new(entity, version, at, actor), data))
    }

    /// Deletes an entity at `if_version` that nothing refers to any more.
    pub fn delete_entity<E: Entity>(
        &self,
        id: &str,
        if_version: u64,
        actor: &str,
    ) -> Result<MasterData, MasterError> {
        let mut conn = self.writer();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        current_version::<E>(&tx, id, if_version)?;
        if E::KIND == Kind::Sites {
            let device: Option<String> = tx
                .query_row(
                    "SELECT device_id FROM devices WHERE site_id = ?1 LIMIT 1",
                    [id],
                    |r| r.get(0),
                )
                .optional()?;
            if let Some(device) = device {
                return Err(MasterError::InUse(format!(
                    "site {id:?} still has device {device:?}"
                )));
            }
        }
        tx.execute(
            "DELETE FROM master_entities WHERE kind = ?1 AND id = ?2",
            params![E::KIND.as_str(), id],
        )?;
        let version = next_version(&tx)?;
        let data = rebuild(&tx, actor, true, version)?;
        tx.commit()?;
        Ok(data)
    }

    /// Every entity, typed.
    pub fn entities(&self) -> Result<Entities, StoreError> {
        let conn = self.reader();
        load_entities(&conn)
    }

    /// Replaces partners, articles, vehicles, locations, lots and contracts
    /// with those of `document` (its `version` is ignored) and returns the
    /// new master data, one version above the stored one. With
    /// `if_version`, only when that is still the stored version. Sites and
    /// what only central knows of entities that stay are kept; entities
    /// whose content does not change keep their version.
    pub fn put_master_data(
        &self,
        mut document: serde_json::Value,
        if_version: Option<u64>,
        actor: &str,
    ) -> Result<MasterData, PutMasterDataError> {
        let Some(object) = document.as_object_mut() else {
            return Err(PutMasterDataError::Invalid(
                "master data must be a JSON object".into(),
            ));
        };
        object.insert("version".into(), 0.into());
        let incoming = MasterData::decode(document.to_string().as_bytes())
            .map_err(|e| PutMasterDataError::Invalid(e.to_string()))?;
        let mut conn = self.writer();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(StoreError::from)?;
        let current = document_version(&tx).map_err(StoreError::from)?;
        if let Some(expected) = if_version
            && expected != current
        {
            return Err(PutMasterDataError::VersionMismatch { current });
        }
        let existing = load_entities(&tx)?;
        let next =
            Entities::from_document(&incoming, &existing).map_err(PutMasterDataError::Invalid)?;
        let version = next_version(&tx).map_err(StoreError::from)?;
        write_all(&tx, &next, actor, version).map_err(StoreError::from)?;
        let data = rebuild(&tx, actor, false, version).map_err(|e| match e {
            MasterError::Store(e) => PutMasterDataError::Store(e),
            other => PutMasterDataError::Invalid(other.to_string()),
        })?;
        tx.commit().map_err(StoreError::from)?;
        Ok(data)
    }

    /// Databases that kept master data only as one document get its
    /// entities as rows, without a new version.
    pub(super) fn migrate_master_entities(&self) -> Result<(), StoreError> {
        let mut conn = self.writer();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let rows: i64 = tx.query_row("SELECT COUNT(*) FROM master_entities", [], |r| r.get(0))?;
        let document: Option<String> = tx
            .query_row("SELECT document FROM master_data WHERE id = 1", [], |r| {
                r.get(0)
            })
            .optional()?;
        let (0, Some(document)) = (rows, document) else {
            return Ok(());
        };
        let Ok(data) = serde_json::from_str::<MasterData>(&document) else {
            return Ok(());
        };
        // Taken over as they are: what an earlier release accepted stays,
        // so no box loses master data to an upgrade.
        let entities = Entities::from_document_as_stored(&data);
        write_all(&tx, &entities, "system:migration", data.version)?;
        tx.commit()?;
        tracing::info!("master data entities taken from the stored document");
        Ok(())
    }
}

/// The entity's version when it is `expected`.
fn current_version<E: Entity>(
    tx: &Transaction<'_>,
    id: &str,
    expected: u64,
) -> Result<u64, MasterError> {
    let current: Option<i64> = tx
        .query_row(
            "SELECT version FROM master_entities WHERE kind = ?1 AND id = ?2",
            params![E::KIND.as_str(), id],
            |r| r.get(0),
        )
        .optional()?;
    let Some(current) = current.map(|v| v as u64) else {
        return Err(MasterError::NotFound {
            kind: E::KIND.singular(),
            id: id.to_owned(),
        });
    };
    if current != expected {
        return Err(MasterError::VersionMismatch {
            kind: E::KIND.singular(),
            id: id.to_owned(),
            current,
            expected,
        });
    }
    Ok(current)
}

/// The version of the next change: above the stored one, and at least the
/// current Unix time in milliseconds. A database restored from a backup
/// would otherwise count again through versions the boxes already have
/// (and ignore as not newer); an entity's version (its ETag) is the one
/// of the document its last change made, so it never repeats either.
fn next_version(conn: &rusqlite::Connection) -> rusqlite::Result<u64> {
    let now_ms = u64::try_from(Utc::now().timestamp_millis()).unwrap_or(0);
    Ok((document_version(conn)? + 1).max(now_ms))
}

fn document_version(conn: &rusqlite::Connection) -> rusqlite::Result<u64> {
    conn.query_row(
        "SELECT COALESCE(MAX(version), 0) FROM master_data",
        [],
        |r| r.get::<_, i64>(0),
    )
    .map(|v| v as u64)
}

fn load_kind<E: Entity>(conn: &rusqlite::Connection) -> Result<Vec<E>, StoreError> {
    let mut stmt = conn.prepare("SELECT body FROM master_entities WHERE kind = ?1 ORDER BY id")?;
    let rows = stmt.query_map([E::KIND.as_str()], |r| r.get::<_, String>(0))?;
    let mut items = Vec::new();
    for body in rows {
        let body = body?;
        match serde_json::from_str(&body) {
            Ok(item) => items.push(item),
            Err(e) => {
                return Err(StoreError::Corrupt(format!(
                    "stored {} does not parse: {e}",
                    E::KIND.singular()
                )));
            }
        }
    }
    Ok(items)
}

fn load_entities(conn: &rusqlite::Connection) -> Result<Entities, StoreError> {
    Ok(Entities {
        sites: load_kind::<Site>(conn)?,
        partners: load_kind::<Partner>(conn)?,
        articles: load_kind::<Article>(conn)?,
        vehicles: load_kind::<Vehicle>(conn)?,
        locations: load_kind::<Location>(conn)?,
        lots: load_kind::<Lot>(conn)?,
        contracts: load_kind::<Contract>(conn)?,
    })
}

/// Makes the stored rows of every kind but sites equal to `next`: unchanged
/// bodies keep their version, changed ones get the next.
fn write_all(
    tx: &Transaction<'_>,
    next: &Entities,
    actor: &str,
    version: u64,
) -> rusqlite::Result<()> {
    fn kind<E: Entity>(
        tx: &Transaction<'_>,
        items: &[E],
        actor: &str,
        at: &str,
        version: u64,
    ) -> rusqlite::Result<()> {
        let ids: Vec<&str> = items.iter().map(|i| i.id()).collect();
        let mut stored = tx.prepare("SELECT id FROM master_entities WHERE kind = ?1")?;
        let gone: Vec<String> = stored
            .query_map([E::KIND.as_str()], |r| r.get::<_, String>(0))?
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .filter(|id| !ids.contains(&id.as_str()))
            .collect();
        for id in gone {
            tx.execute(
                "DELETE FROM master_entities WHERE kind = ?1 AND id = ?2",
                params![E::KIND.as_str(), id],
            )?;
        }
        for item in items {
            tx.execute(
                "INSERT INTO master_entities (kind, id, version, body, created_at, updated_at, updated_by)
                 VALUES (?1, ?2, ?6, ?3, ?4, ?4, ?5)
                 ON CONFLICT (kind, id) DO UPDATE SET version = excluded.version, body = excluded.body,
                     updated_at = excluded.updated_at, updated_by = excluded.updated_by
                 WHERE body <> excluded.body",
                params![
                    E::KIND.as_str(),
                    item.id(),
                    serde_json::to_string(item).unwrap_or_default(),
                    at,
                    actor,
                    version as i64
                ],
            )?;
        }
        Ok(())
    }
    let at = now();
    kind(tx, &next.partners, actor, &at, version)?;
    kind(tx, &next.articles, actor, &at, version)?;
    kind(tx, &next.vehicles, actor, &at, version)?;
    kind(tx, &next.locations, actor, &at, version)?;
    kind(tx, &next.lots, actor, &at, version)?;
    kind(tx, &next.contracts, actor, &at, version)
}

/// Builds and stores the next document from the rows in `tx`, and queues
/// the `master_data.changed` event.
fn rebuild(
    tx: &Transaction<'_>,
    actor: &str,
    deleting: bool,
    version: u64,
) -> Result<MasterData, MasterError> {
    let entities = load_entities(tx)?;
    let data = entities.document(version).map_err(|reason| {
        if deleting {
            MasterError::InUse(format!("still in use: {reason}"))
        } else {
            MasterError::Invalid(reason)
        }
    })?;
    tx.execute(
        "INSERT INTO master_data (id, version, updated_at, document) VALUES (1, ?1, ?2, ?3)
         ON CONFLICT (id) DO UPDATE SET version = excluded.version,
             updated_at = excluded.updated_at, document = excluded.document",
        params![
            version as i64,
            now(),
            serde_json::to_string(&data).unwrap_or_default()
        ],
    )?;
    super::events::enqueue(
        tx,
        "master_data.changed",
        &version.to_string(),
        &serde_json::json!({ "version": version, "changed_by": actor }),
    )?;
    Ok(data)
}
