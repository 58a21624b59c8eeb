//! Online backups of central's database: a consistent copy of the running
//! SQLite database (`VACUUM INTO`, which reads one snapshot while ingest
//! goes on) into `<data_dir>/backups/central-<UTC time>.db`, keeping the
//! newest [`MAX_BACKUPS`]. From the API (`POST /api/v1/backups`) or the
//! command line (`valeo-central --config FILE --backup`).
//!
//! Restore: stop central, replace `<data_dir>/central.db` by the backup
//! (and delete `central.db-wal` and `central.db-shm`), start central. What
//! came after the backup is sent again by the boxes: central finds the gap
//! in each chain and asks for it, and a box replays acknowledged records as
//! long as it keeps them (`keep_acked_records`, 100 000 by default).

use std::path::{Path, PathBuf};

use chrono::Utc;
use serde::Serialize;

use crate::store::{Store, StoreError};

/// Backups kept; older ones are deleted after a new one is written.
pub const MAX_BACKUPS: usize = 10;

/// A backup file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct BackupFile {
    pub file: String,
    pub bytes: u64,
}

/// Why a backup failed.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("backup directory {path}: {source}")]
    Dir {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Where backups go.
pub fn backup_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("backups")
}

/// The backups in `dir`, newest first.
pub fn list(dir: &Path) -> Result<Vec<BackupFile>, BackupError> {
    let dir_error = |source| BackupError::Dir {
        path: dir.display().to_string(),
        source,
    };
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(dir_error(e)),
    };
    let mut files: Vec<BackupFile> = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let is_backup = name.starts_with("central-") && name.ends_with(".db");
            let bytes = e.metadata().ok()?.len();
            is_backup.then_some(BackupFile { file: name, bytes })
        })
        .collect();
    // The names carry the UTC time, so they sort by age.
    files.sort_by(|a, b| b.file.cmp(&a.file));
    Ok(files)
}

/// Writes a backup of `store` into `dir` and deletes the oldest beyond
/// [`MAX_BACKUPS`]. Blocking.
pub fn create(store: &Store, dir: &Path) -> Result<BackupFile, BackupError> {
    let dir_error = |source| BackupError::Dir {
        path: dir.display().to_string(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(dir_error)?;
    let name = format!("central-{}.db", Utc::now().format("%Y%m%dT%H%M%S%.3fZ"));
    let path = dir.join(&name);
    store.backup_into(&path)?;
    let bytes = std::fs::metadata(&path).map_err(dir_error)?.len();
    for old in list(dir)?.into_iter().skip(MAX_BACKUPS) {
        if let Err(error) = std::fs::remove_file(dir.join(&old.file)) {
            tracing::warn!(file = %old.file, %error, "old backup not deleted");
        }
    }
    tracing::info!(file = %name, bytes, "database backed up");
    Ok(BackupFile { file: name, bytes })
}
