//! `valeo-edge`: the edge agent binary.
//!
//! Usage: `valeo-edge --config FILE` (see `config/edge.example.toml`).

use anyhow::Context;
use valeo_edge::config::EdgeConfig;
use valeo_process::Invocation;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = match valeo_process::parse_args("valeo-edge", std::env::args().skip(1))? {
        Invocation::Version => {
            println!("valeo-edge {}", valeo_edge::VERSION);
            return Ok(());
        }
        Invocation::Run { config } => {
            let path = config.context("a config file is required: valeo-edge --config FILE")?;
            valeo_process::load_config(&path, EdgeConfig::parse)?
        }
    };
    valeo_process::init_logging("info");
    valeo_edge::run(config, valeo_process::shutdown_signal()).await
}
