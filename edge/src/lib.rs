//! The edge agent on a weighbridge box: supervises the scales, runs the
//! two-pass weighing, writes every step to the outbox, and runs the uplink.
//!
//! Layout, in reading order:
//! - [`config`]: the TOML configuration and its checks;
//! - [`master_data`]: central's master data, cached for offline weighing;
//! - [`workflow`]: the weighbridge steps on top of the outbox;
//! - [`cash`]: cash sales signed by the TSE, receipts, outages, closings;
//! - [`http`]: the local API, the operator terminal and `/health`;
//! - [`telemetry`]: live values for integrators, best effort;
//! - [`modbus`]: Modbus values into telemetry and records;
//! - [`field_commands`]: writes to field devices, from the terminal and from central;
//! - [`demo`]: simulated traffic for demos; [`sim_field`]: simulated Modbus devices;
//! - [`run`]: wiring it together.

pub mod cash;
pub mod config;
pub mod demo;
pub mod field_commands;
pub mod http;
pub mod master_data;
pub mod modbus;
pub mod sim_field;
pub mod telemetry;
pub mod workflow;

use std::sync::{Arc, Mutex};

use valeo_drivers::analyzer::{self, AnalyzerConfig};
use valeo_drivers::scale::device::{self, ScaleStatus};
use valeo_drivers::sim::analyzer::SimulatedAnalyzer;
use valeo_drivers::sim::mtsics::Faults;
use valeo_drivers::sim::pty::PtyScale;
use valeo_drivers::sim::terminals;
use valeo_drivers::sim::truck::{TruckScale, TruckScaleParams};
use valeo_drivers::site_io::{self, SiteIoHandle};
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

    let serial = |path: std::path::PathBuf| TransportConfig::Serial {
        path,
        baud: 9600,
        data_bits: 8,
        parity: Default::default(),
        stop_bits: 1,
        flow_control: Default::default(),
    };
    // The simulated terminal lives as long as this function.
    let mut simulated: Option<(PtyScale, TruckScale)> = None;
    let mut scale_configs = config.scales.clone();
    if config.simulation.enabled {
        let truck_scale = TruckScale::new(TruckScaleParams::default());
        // The terminal is built from the same config the agent's driver
        // uses, so both sides agree on protocol and address.
        let template = device::ScaleConfig::new(
            config.simulation.scale_id.clone(),
            serial(std::path::PathBuf::new()),
        )
        .with_protocol(config.simulation.protocol);
        let pty = PtyScale::spawn_terminal(
            terminals::factory(&template, truck_scale.clone()),
            Arc::new(Mutex::new(Faults::default())),
        )
        .map_err(|e| anyhow::anyhow!("cannot create the simulated scale's pseudo-terminal: {e}"))?;
        tracing::info!(path = %pty.path().display(), protocol = ?config.simulation.protocol, "simulated terminal on a pseudo-terminal");
        let mut scale_config = template;
        scale_config.transport = serial(pty.path().to_path_buf());
        scale_configs.push(scale_config);
        simulated = Some((pty, truck_scale));
    }
    let scales: Vec<_> = scale_configs.into_iter().map(device::spawn).collect();
    let mut analyzer_configs = config.analyzers.clone();
    let mut simulated_analyzer = None;
    if config.simulation.enabled {
        // A grain analyzer on its own pseudo-terminal, beside the scale.
        let analyzer = SimulatedAnalyzer::new([14.2, 76.5, 12.1]);
        let pty =
            PtyScale::spawn_terminal(analyzer.factory(), Arc::new(Mutex::new(Faults::default())))
                .map_err(|e| {
                anyhow::anyhow!("cannot create the simulated analyzer's pseudo-terminal: {e}")
            })?;
        analyzer_configs.push(AnalyzerConfig::new(
            config.simulation.analyzer_id.clone(),
            serial(pty.path().to_path_buf()),
        ));
        simulated_analyzer = Some((pty, analyzer));
    }
    let analyzers: Vec<_> = analyzer_configs.into_iter().map(analyzer::spawn).collect();

    let uplink = valeo_sync::uplink::spawn(
        &config.mqtt,
        config.uplink.clone(),
        outbox.clone(),
        key,
        VERSION,
    );
    let notify = uplink.clone();
    let workflow_notify = OnRecord(Arc::new(move || notify.notify_new_records()));
    if config.telemetry.enabled {
        tokio::spawn(telemetry::run(
            scales.clone(),
            outbox.clone(),
            Arc::new(SystemClock),
            config.telemetry.interval_ms,
        ));
    }
    let master = master_data::MasterDataCache::open(outbox.clone())?;
    tracing::info!(version = master.current().version, "master data cache open");
    tokio::spawn(master_data::follow(
        master.clone(),
        uplink.config(),
        Arc::new(SystemClock),
    ));
    let mut workflow = Workflow::new(
        outbox,
        scales,
        config.weighing.clone(),
        master,
        Arc::new(SystemClock),
        workflow_notify.clone(),
    )?;
    workflow = workflow.with_analyzers(analyzers);
    let mut modbus_configs = config.modbus.clone();
    let simulated_field = if config.simulation.modbus {
        let field = sim_field::spawn().await?;
        tracing::info!(lines = field.lines.len(), "simulated Modbus field devices");
        modbus_configs.extend(field.lines.iter().cloned());
        Some(field)
    } else {
        None
    };
    let modbus_lines = if modbus_configs.is_empty() {
        Vec::new()
    } else {
        let (changes_tx, changes) =
            tokio::sync::mpsc::channel(valeo_drivers::modbus::poller::CHANGE_QUEUE_CAPACITY);
        let lines: Vec<_> = modbus_configs
            .iter()
            .map(|line| valeo_drivers::modbus::poller::spawn(line.clone(), changes_tx.clone()))
            .collect();
        let notify = workflow_notify.clone();
        tokio::spawn(modbus::run(
            changes,
            workflow.outbox().clone(),
            Arc::new(SystemClock),
            notify,
        ));
        tracing::info!(lines = lines.len(), "modbus polling");
        lines
    };
    let modbus_lines = Arc::new(modbus_lines);
    let field_writes = field_commands::FieldWrites::new(modbus_lines.clone(), &config.site_io);
    if let Some(commands) = uplink.take_commands() {
        tokio::spawn(field_commands::run(
            commands,
            field_writes.clone(),
            workflow.outbox().clone(),
            Arc::new(SystemClock),
            workflow_notify.clone(),
        ));
    }
    // Pins of kind "simulated" land here; the simulation API drives them.
    let simulated_pins = site_io::SimulatedPins::new();
    if !config.site_io.is_empty() {
        let sources = site_io::PinSources {
            simulated: simulated_pins.clone(),
            modbus: modbus_lines.to_vec(),
        };
        let site = site_io::spawn_with(config.site_io.clone(), &sources)?;
        if let Some(scale) = workflow.scales().first() {
            tokio::spawn(feed_platform_weight(scale.status(), site.clone()));
        }
        tracing::info!("site I/O running (lights, barriers, position sensors)");
        workflow = workflow.with_site(site);
    }

    if let (true, Some((_, truck_scale))) = (config.simulation.auto_traffic, &simulated) {
        tokio::spawn(demo::run(
            workflow.clone(),
            truck_scale.clone(),
            config.simulation.scale_id.clone(),
            config.simulation.truck_interval_ms,
        ));
    }

    let mut tse_faults = None;
    let cash = match &config.cash {
        Some(settings) => {
            let backend: Box<dyn valeo_drivers::tse::TseBackend> = match &settings.tse {
                cash::TseConfig::Software { dir } => {
                    let dir = dir.clone().unwrap_or_else(|| config.data_dir.join("tse"));
                    let tse =
                        valeo_drivers::tse::software::SoftwareTse::open(&dir).map_err(|e| {
                            anyhow::anyhow!(
                                "cannot open the software TSE in {}: {e}",
                                dir.display()
                            )
                        })?;
                    tse_faults = Some(tse.faults());
                    Box::new(tse)
                }
                cash::TseConfig::Fiskaly(fiskaly) => Box::new(
                    // Exports wait at most a minute: the TSE task signs nothing meanwhile.
                    valeo_drivers::tse::fiskaly::FiskalyTse::new(fiskaly.clone())
                        .map_err(|e| anyhow::anyhow!("[cash.tse] {e}"))?
                        .with_export_polling(std::time::Duration::from_secs(2), 30),
                ),
            };
            let tse = valeo_drivers::tse::TseHandle::spawn(backend, settings.call_timeout_ms);
            let desk = cash::CashDesk::open(
                workflow.outbox().clone(),
                tse,
                settings.clone(),
                Arc::new(SystemClock),
                workflow_notify.clone(),
            )?;
            tokio::spawn(cash::run(desk.clone()));
            tracing::info!(cash_point = %settings.cash_point, "cash desk open");
            Some(desk)
        }
        None => None,
    };
    let state = http::AppState {
        cash,
        workflow,
        uplink,
        device_id: config.device_id.clone(),
        field: field_writes,
        simulation: simulated.as_ref().map(|(_, truck)| http::Simulation {
            truck: truck.clone(),
            pins: simulated_pins.clone(),
            tse_faults: tse_faults.clone(),
        }),
    };
    let listener = tokio::net::TcpListener::bind(config.http.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen for HTTP on {}: {e}", config.http.listen))?;
    tracing::info!(http = %config.http.listen, "edge agent running");
    axum::serve(listener, http::app(state))
        .with_graceful_shutdown(shutdown)
        .await?;
    drop(simulated);
    drop(simulated_analyzer);
    drop(simulated_field);
    Ok(())
}

/// Tells the interlock the platform's weight whenever the scale reads a new
/// one: it decides from it whether the platform is empty.
async fn feed_platform_weight(
    mut status: tokio::sync::watch::Receiver<ScaleStatus>,
    site: SiteIoHandle,
) {
    let mut last = None;
    loop {
        let kg = status
            .borrow_and_update()
            .last_reading
            .as_ref()
            .and_then(|r| r.gross.or(r.net))
            .map(|w| w.to_kg_f64());
        if let Some(kg) = kg
            && last != Some(kg)
        {
            site.platform_weight_kg(kg).await;
            last = Some(kg);
        }
        if status.changed().await.is_err() {
            return;
        }
    }
}
