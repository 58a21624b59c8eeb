//! Live values for integrators: every `interval_ms` the current reading of
//! each scale goes into the outbox's bounded telemetry queue, from where the
//! uplink sends it best effort on `valeo/v1/{device}/telemetry`. Never part
//! of the legal record chain.

use std::time::Duration;

use chrono::SecondsFormat;
use valeo_drivers::scale::device::ScaleHandle;
use valeo_sync::outbox::{Outbox, TelemetrySample};

use crate::workflow::Clock;

/// One sample per scale: connection, stability and the net weight as the
/// terminal shows it.
pub fn sample(scale: &ScaleHandle, at: &str) -> TelemetrySample {
    let status = scale.status().borrow().clone();
    let reading = status.last_reading.as_ref();
    TelemetrySample {
        name: format!("scale.{}.weight", scale.id()),
        value: serde_json::json!({
            "connected": status.connected,
            "net": reading.and_then(|r| r.net),
            "stable": reading.map(|r| r.stable),
            "overload": reading.map(|r| r.overload),
            "underload": reading.map(|r| r.underload),
        }),
        at: at.to_owned(),
    }
}

/// Samples every scale forever.
pub async fn run(
    scales: Vec<ScaleHandle>,
    outbox: Outbox,
    clock: std::sync::Arc<dyn Clock>,
    interval_ms: u64,
) {
    let mut tick = tokio::time::interval(Duration::from_millis(interval_ms));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        let at = clock.now().to_rfc3339_opts(SecondsFormat::Millis, true);
        let samples: Vec<_> = scales.iter().map(|s| sample(s, &at)).collect();
        let outbox = outbox.clone();
        match tokio::task::spawn_blocking(move || outbox.push_telemetry(&samples)).await {
            Ok(Ok(0)) => {}
            Ok(Ok(dropped)) => {
                tracing::debug!(dropped, "telemetry queue full; oldest samples dropped")
            }
            Ok(Err(error)) => tracing::warn!(%error, "telemetry not queued"),
            Err(_) => return,
        }
    }
}
