//! The central ERP service: runs (or connects to) the MQTT broker, commits
//! records from the edge boxes, acks them, and serves the business API.
//!
//! Layout, in reading order:
//! - [`config`]: the TOML configuration and its checks;
//! - [`broker`]: the embedded rumqttd broker;
//! - [`store`]: every SQL statement, the raw records and the materialised tickets;
//! - [`backup`]: online backups of the database;
//! - [`master_data`]: publishing master data to the boxes;
//! - [`live`]: the boxes' live values (telemetry), in memory;
//! - [`device_status`]: the boxes' online status, in memory;
//! - [`events`]: integration events on MQTT and to webhooks;
//! - [`observe`]: request ids, latency histograms, process resources;
//! - [`auth`]: users, sessions, JWTs, API tokens, the permission matrix, the audit log;
//! - [`api`]: the axum router and problem+json errors;
//! - [`ui`]: the office web UI and the API docs page, compiled in;
//! - [`run`]: wiring it together.

pub mod api;
pub mod auth;
pub mod backup;
pub mod broker;
pub mod config;
pub mod device_status;
pub mod dsfinvk;
pub mod events;
pub mod live;
pub mod master_data;
pub mod observe;
pub mod store;
pub mod ui;

use std::sync::Arc;

use crate::config::CentralConfig;

/// Software version reported by `/health`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Runs central until `shutdown` completes.
pub async fn run(
    config: CentralConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.data_dir).map_err(|e| {
        anyhow::anyhow!("cannot create data_dir {}: {e}", config.data_dir.display())
    })?;
    let store = store::Store::open(&config.data_dir.join("central.db"))?;
    // Before anything listens: a bad admin password stops the start here.
    let auth = auth::start(&store, &config.auth)?;
    for device in &config.devices {
        if store.register_device(&device.id, &device.public_key)? {
            tracing::info!(device_id = %device.id, "device key registered");
        }
    }
    if config.embedded_broker.enabled {
        let broker_config = config.embedded_broker.clone();
        tokio::task::spawn_blocking(move || broker::start(&broker_config, 10_000)).await??;
    }
    if let Some(path) = &config.master_data_file {
        master_data::seed_from_file(&store, path)?;
    }
    let live = live::LiveValues::new(config.devices.iter().map(|d| d.id.clone()));
    let (device_statuses, presence_changes) =
        device_status::DeviceStatuses::new(config.devices.iter().map(|d| d.id.clone()));
    tokio::spawn(device_status::record_changes(
        store.clone(),
        presence_changes,
    ));
    let sink = live::CentralSink {
        store: store.clone(),
        live: live.clone(),
        statuses: device_statuses.clone(),
    };
    let (receiver, publisher) =
        valeo_sync::receiver::spawn_with_config(&config.mqtt, "valeo-central", Arc::new(sink));
    let master_data = master_data::MasterDataPublisher::spawn(store.clone(), publisher.clone());
    let events = events::spawn(&store, &publisher, &config.events)?;
    let state = api::AppState {
        store,
        receiver,
        publisher,
        master_data,
        live,
        fiscal: config.fiscal.clone().map(Arc::new),
        backup_dir: Arc::new(backup::backup_dir(&config.data_dir)),
        requests: observe::RequestStats::default(),
        auth,
        events,
        device_statuses,
        version: VERSION,
    };
    let listener = tokio::net::TcpListener::bind(config.http.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen for HTTP on {}: {e}", config.http.listen))?;
    tracing::info!(http = %config.http.listen, mqtt = %format!("{}:{}", config.mqtt.host, config.mqtt.port), "central running");
    axum::serve(
        listener,
        api::app(state, config.http.request_timeout_ms)
            .into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await?;
    Ok(())
}
