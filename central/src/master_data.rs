//! Master data going out to the boxes: every stored version is published,
//! retained, on each registered device's config topic, when it changes and
//! when central starts (an embedded broker forgets retained messages when
//! it restarts).

use std::path::Path;

use bytes::Bytes;
use valeo_sync::receiver::DevicePublisher;

use crate::store::{PutMasterDataError, Store};

/// Publishes the stored master data (if any) to every registered device;
/// the database reads run on the blocking pool.
pub async fn publish_to_all(store: &Store, publisher: &DevicePublisher) -> anyhow::Result<usize> {
    let (data, devices) = {
        let store = store.clone();
        tokio::task::spawn_blocking(move || {
            Ok::<_, anyhow::Error>((store.master_data()?, store.devices()?))
        })
        .await??
    };
    let Some(data) = data else { return Ok(0) };
    let payload = Bytes::from(serde_json::to_vec(&data)?);
    for device in &devices {
        publisher
            .publish(&device.device_id, payload.clone())
            .await?;
    }
    tracing::info!(
        version = data.version,
        devices = devices.len(),
        "master data published"
    );
    Ok(devices.len())
}

/// Stores the document in `path` as the first master data, when the
/// database has none yet (a demo or a fresh installation).
pub fn seed_from_file(store: &Store, path: &Path) -> anyhow::Result<()> {
    if store.master_data()?.is_some() {
        return Ok(());
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("master_data_file {}: {e}", path.display()))?;
    let document: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| anyhow::anyhow!("master_data_file {}: {e}", path.display()))?;
    match store.put_master_data(document, None) {
        Ok(data) => {
            tracing::info!(version = data.version, path = %path.display(), "master data seeded");
            Ok(())
        }
        Err(PutMasterDataError::Invalid(reason)) => {
            anyhow::bail!("master_data_file {}: {reason}", path.display())
        }
        Err(e) => Err(e.into()),
    }
}
