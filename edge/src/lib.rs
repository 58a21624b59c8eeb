//! The edge agent on a weighbridge box: supervises the scales, runs the
//! two-pass weighing, writes every step to the outbox, and runs the uplink.
//!
//! Layout, in reading order:
//! - [`config`]: the TOML configuration and its checks;
//! - [`workflow`]: the weighing state machine on top of the outbox;
//! - [`http`]: the local API for the operator terminal and `/health`;
//! - [`telemetry`]: live values for integrators, best effort;
//! - [`demo`]: simulated traffic for demos;
//! - [`run`]: wiring it together.

pub mod config;
pub mod demo;
pub mod http;
pub mod telemetry;
pub mod workflow;

use std::sync::{Arc, Mutex};

use valeo_drivers::scale::device;
use valeo_drivers::sim::mtsics::Faults;
use valeo_drivers::sim::pty::PtyScale;
use valeo_drivers::sim::truck::{TruckScale, TruckScaleParams};
use valeo_drivers::transport::TransportConfig;
use valeo_sync::identity::DeviceKey;
use valeo_sync::outbox::{Outbox, OutboxLimits};

use crate::config::EdgeConfig;
use crate::workflow::{OnRecord, SystemClock, Workflow};

/// Software version, reported on `/health` and the status topic.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Loads the box's signing key from its data directory, creating both on
/// first use.
pub fn device_key(config: &EdgeConfig) -> anyhow::Result<DeviceKey> {
    std::fs::create_dir_all(&config.data_dir).map_err(|e| {
        anyhow::anyhow!("cannot create data_dir {}: {e}", config.data_dir.display())
    })?;
    Ok(DeviceKey::load_or_create(&config.data_dir)?)
}

/// Runs the agent until `shutdown` completes.
pub async fn run(
    config: EdgeConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let key = device_key(&config)?;
    let limits = OutboxLimits {
        max_pending_records: config.outbox.max_pending_records,
        keep_acked_records: config.outbox.keep_acked_records,
        max_db_bytes: config.outbox.max_db_bytes,
        max_telemetry_samples: config.telemetry.max_queued_samples,
        alarm_db_percent: config.outbox.alarm_db_percent,
        ..OutboxLimits::default()
    };
    let outbox = Outbox::open(
        &config.data_dir.join("outbox.db"),
        &config.device_id,
        limits,
    )?;
    tracing::info!(device_id = %config.device_id, epoch = %outbox.epoch(), public_key = %key.public_key_hex(), "outbox open");

    // The simulated terminal lives as long as this function.
    let mut simulated: Option<(PtyScale, TruckScale)> = None;
    let mut scale_configs = config.scales.clone();
    if config.simulation.enabled {
        let truck_scale = TruckScale::new(TruckScaleParams::default());
        let pty = PtyScale::spawn(truck_scale.clone(), Arc::new(Mutex::new(Faults::default())))
            .map_err(|e| {
                anyhow::anyhow!("cannot create the simulated scale's pseudo-terminal: {e}")
            })?;
        tracing::info!(path = %pty.path().display(), "simulated MT-SICS terminal on a pseudo-terminal");
        scale_configs.push(device::ScaleConfig::new(
            config.simulation.scale_id.clone(),
            TransportConfig::Serial {
                path: pty.path().to_path_buf(),
                baud: 9600,
                data_bits: 8,
                parity: Default::default(),
                stop_bits: 1,
                flow_control: Default::default(),
            },
        ));
        simulated = Some((pty, truck_scale));
    }
    let scales: Vec<_> = scale_configs.into_iter().map(device::spawn).collect();

    let uplink = valeo_sync::uplink::spawn(
        &config.mqtt,
        config.uplink.clone(),
        outbox.clone(),
        key,
        VERSION,
    );
    let notify = uplink.clone();
    if config.telemetry.enabled {
        tokio::spawn(telemetry::run(
            scales.clone(),
            outbox.clone(),
            Arc::new(SystemClock),
            config.telemetry.interval_ms,
        ));
    }
    let workflow = Workflow::new(
        outbox,
        scales,
        config.weighing.min_load,
        Arc::new(SystemClock),
        OnRecord(Arc::new(move || notify.notify_new_records())),
    )?;

    if let (true, Some((_, truck_scale))) = (config.simulation.auto_traffic, &simulated) {
        tokio::spawn(demo::run(
            workflow.clone(),
            truck_scale.clone(),
            config.simulation.scale_id.clone(),
            config.simulation.truck_interval_ms,
        ));
    }

    let state = http::AppState {
        workflow,
        uplink,
        device_id: config.device_id.clone(),
    };
    let listener = tokio::net::TcpListener::bind(config.http.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen for HTTP on {}: {e}", config.http.listen))?;
    tracing::info!(http = %config.http.listen, "edge agent running");
    axum::serve(listener, http::app(state))
        .with_graceful_shutdown(shutdown)
        .await?;
    drop(simulated);
    Ok(())
}
