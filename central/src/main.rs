//! `valeo-central`: the central service binary.
//!
//! Usage: `valeo-central [--config FILE]`. Without a file it runs on
//! embedded defaults (embedded broker on 127.0.0.1:1883, HTTP on
//! 127.0.0.1:8080, data in `data/central`).

use std::path::PathBuf;

use anyhow::Context;
use valeo_central::config::CentralConfig;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,rumqttd=warn".into()),
        )
        .init();
    let config = match parse_args(std::env::args().skip(1))? {
        Some(path) => CentralConfig::load(&path)?,
        None => CentralConfig::parse("").context("built-in defaults")?,
    };
    valeo_central::run(config, shutdown_signal()).await
}

fn parse_args(mut args: impl Iterator<Item = String>) -> anyhow::Result<Option<PathBuf>> {
    let mut config = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--config" | "-c" => {
                config = Some(PathBuf::from(args.next().context("--config needs a file")?));
            }
            "--version" => {
                println!("valeo-central {}", valeo_central::VERSION);
                std::process::exit(0);
            }
            other => {
                anyhow::bail!("unknown argument {other:?}; usage: valeo-central [--config FILE]")
            }
        }
    }
    Ok(config)
}

async fn shutdown_signal() {
    let ctrl_c = async {
        // If the handler cannot be installed, SIGTERM still stops us.
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(_) => return ctrl_c.await,
    };
    tokio::select! {
        () = ctrl_c => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down");
}
