//! `valeo-edge`: the edge agent binary.
//!
//! Usage: `valeo-edge --config FILE` (see `config/edge.example.toml`).
//! `valeo-edge --config FILE --print-public-key` prints the box's public
//! key (creating the key on first use) for registration at central.

use anyhow::Context;
use valeo_edge::config::EdgeConfig;
use valeo_process::Invocation;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let invocation = valeo_process::parse_args(
        "valeo-edge",
        &["print-public-key"],
        std::env::args().skip(1),
    )?;
    let (config, action) = match invocation {
        Invocation::Version => {
            println!("valeo-edge {}", valeo_edge::VERSION);
            return Ok(());
        }
        Invocation::Run { config } => (config, None),
        Invocation::Action { name, config } => (config, Some(name)),
    };
    let path = config.context("a config file is required: valeo-edge --config FILE")?;
    let config = valeo_process::load_config(&path, EdgeConfig::parse)?;
    if action == Some("print-public-key") {
        println!("{}", valeo_edge::device_key(&config)?.public_key_hex());
        return Ok(());
    }
    valeo_process::init_logging("info");
    valeo_edge::run(config, valeo_process::shutdown_signal()).await
}
