//! Modbus values at the box: every change a line reports (beyond its
//! deadband) becomes a live value on the telemetry topic (QoS 0, best
//! effort); changes of points marked `record = true` also become outbox
//! records (`modbus.value`), which reach central exactly once.
//!
//! Changes are batched: one SQLite transaction per batch, never one per value.

use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, Utc};
use tokio::sync::mpsc;
use valeo_drivers::modbus::poller::{PointChange, Quality};
use valeo_records::{FieldValue, KIND_MODBUS_VALUE};
use valeo_sync::outbox::{Outbox, TelemetrySample};

use crate::workflow::{Clock, OnRecord};

/// Most changes taken off the queue per batch.
const MAX_CHANGES_PER_BATCH: usize = 500;

/// The telemetry name of a point.
pub fn sample_name(device_id: &str, point: &str) -> String {
    format!("modbus.{device_id}.{point}")
}

fn rfc3339(at_ms: u64, fallback: DateTime<Utc>) -> String {
    DateTime::<Utc>::from_timestamp_millis(at_ms as i64)
        .unwrap_or(fallback)
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Moves changes from the lines into telemetry and records, until every
/// line has stopped.
pub async fn run(
    mut changes: mpsc::Receiver<PointChange>,
    outbox: Outbox,
    clock: Arc<dyn Clock>,
    on_record: OnRecord,
) {
    let mut batch = Vec::with_capacity(MAX_CHANGES_PER_BATCH);
    loop {
        if changes.recv_many(&mut batch, MAX_CHANGES_PER_BATCH).await == 0 {
            return;
        }
        let now = clock.now();
        let samples: Vec<TelemetrySample> = batch
            .iter()
            .map(|c| TelemetrySample {
                name: sample_name(&c.device_id, &c.point),
                value: serde_json::json!({
                    "value": c.reading.value,
                    "quality": c.reading.quality,
                    "unit": c.unit,
                    "error": c.reading.error,
                }),
                at: rfc3339(c.reading.at_ms, now),
            })
            .collect();
        let records: Vec<(String, serde_json::Value)> = batch
            .iter()
            .filter(|c| c.record && c.reading.quality == Quality::Good)
            .map(|c| {
                let value = FieldValue {
                    device_id: c.device_id.clone(),
                    point: c.point.clone(),
                    value: serde_json::to_value(&c.reading.value).unwrap_or_default(),
                    unit: c.unit.clone(),
                    at: rfc3339(c.reading.at_ms, now),
                };
                (
                    KIND_MODBUS_VALUE.to_owned(),
                    serde_json::to_value(value).unwrap_or_default(),
                )
            })
            .collect();
        batch.clear();
        let outbox_ = outbox.clone();
        let has_records = !records.is_empty();
        let stored = tokio::task::spawn_blocking(move || {
            outbox_.push_telemetry(&samples)?;
            if has_records {
                outbox_.append_many(records, now)?;
            }
            Ok::<_, valeo_sync::OutboxError>(())
        })
        .await;
        match stored {
            Ok(Ok(())) if has_records => (on_record.0)(),
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::warn!(%error, "modbus values not stored"),
            Err(_) => return,
        }
    }
}
