//! The embedded MQTT broker (rumqttd), so one command runs everything.
//!
//! rumqttd keeps sessions and messages in memory only. That is acceptable
//! because nothing depends on it: boxes keep records in their outbox until
//! central's ack, which is sent after central's own commit. Larger sites
//! run central against an external broker instead (`embedded_broker.enabled
//! = false`).

use std::collections::HashMap;

use rumqttd::{Broker, Config, ConnectionSettings, RouterConfig, ServerSettings};

use crate::config::EmbeddedBrokerConfig;

/// Starts the broker on its own threads and waits until it accepts TCP
/// connections (at most `startup_timeout_ms`).
pub fn start(config: &EmbeddedBrokerConfig, startup_timeout_ms: u64) -> anyhow::Result<()> {
    // rumqttd reports a failed bind only in its log, from its own thread;
    // central would then run against whatever else holds the port. Bind
    // once here so a taken port stops central with the address named.
    std::net::TcpListener::bind(config.listen).map_err(|e| {
        anyhow::anyhow!("[embedded_broker] cannot listen on {}: {e}", config.listen)
    })?;
    let connections = ConnectionSettings {
        connection_timeout_ms: 10_000,
        max_payload_size: valeo_sync::wire::MAX_BATCH_BYTES + 4096,
        max_inflight_count: 100,
        auth: (!config.users.is_empty()).then(|| config.users.clone()),
        external_auth: None,
        dynamic_filters: true,
    };
    let server = ServerSettings {
        name: "v4-embedded".to_owned(),
        listen: config.listen,
        tls: None,
        next_connection_delay_ms: 1,
        connections,
    };
    let router = RouterConfig {
        max_connections: config.max_connections,
        max_outgoing_packet_count: 200,
        // The in-memory commit log per filter: 4 segments of 32 MiB, at most
        // 128 MiB. When a slow subscriber falls further behind, rumqttd
        // silently skips ahead; nothing is lost (boxes resend what central
        // has not acked) but it costs an ack timeout, so the log must hold
        // what a fleet has in flight (boxes x max_inflight_batches x batch size).
        max_segment_size: 32 * 1024 * 1024,
        max_segment_count: 4,
        custom_segment: None,
        initialized_filters: None,
        shared_subscriptions_strategy: Default::default(),
    };
    let broker_config = Config {
        id: 0,
        router,
        v4: Some(HashMap::from([("1".to_owned(), server)])),
        ..Config::default()
    };
    // Probe the port first: rumqttd logs a bind failure on its own thread
    // and carries on, which would leave central running without a broker.
    std::net::TcpListener::bind(config.listen)
        .map_err(|e| anyhow::anyhow!("embedded broker cannot listen on {}: {e}", config.listen))?;
    std::thread::Builder::new()
        .name("embedded-broker".to_owned())
        .spawn(move || {
            let mut broker = Broker::new(broker_config);
            if let Err(error) = broker.start() {
                tracing::error!(%error, "embedded broker stopped");
            }
        })?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(startup_timeout_ms);
    let probe = if config.listen.ip().is_unspecified() {
        std::net::SocketAddr::from(([127, 0, 0, 1], config.listen.port()))
    } else {
        config.listen
    };
    while std::time::Instant::now() < deadline {
        if std::net::TcpStream::connect(probe).is_ok() {
            tracing::info!(listen = %config.listen, "embedded broker running");
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    anyhow::bail!(
        "embedded broker did not start listening on {} within {startup_timeout_ms} ms",
        config.listen
    )
}

/// Starts an embedded broker on a free loopback port and returns how to
/// reach it: for tests, benchmarks and trials on one machine.
pub fn start_on_free_port() -> anyhow::Result<valeo_sync::mqtt::BrokerConfig> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let config = EmbeddedBrokerConfig {
        listen: std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        ..EmbeddedBrokerConfig::default()
    };
    start(&config, 10_000)?;
    Ok(valeo_sync::mqtt::BrokerConfig {
        port,
        ..valeo_sync::mqtt::BrokerConfig::default()
    })
}
