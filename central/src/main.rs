//! `valeo-central`: the central service binary.
//!
//! Usage: `valeo-central [--config FILE]`. Without a file it runs on
//! embedded defaults (embedded broker on 127.0.0.1:1883, HTTP on
//! 127.0.0.1:8080, data in `data/central`).

use valeo_central::config::CentralConfig;
use valeo_process::Invocation;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = match valeo_process::parse_args("valeo-central", &[], std::env::args().skip(1))? {
        Invocation::Version => {
            println!("valeo-central {}", valeo_central::VERSION);
            return Ok(());
        }
        Invocation::Run { config: Some(path) } => {
            valeo_process::load_config(&path, CentralConfig::parse)?
        }
        Invocation::Run { config: None } | Invocation::Action { config: None, .. } => {
            CentralConfig::parse("")?
        }
        Invocation::Action {
            config: Some(path), ..
        } => valeo_process::load_config(&path, CentralConfig::parse)?,
    };
    valeo_process::init_logging("info,rumqttd=warn");
    valeo_central::run(config, valeo_process::shutdown_signal()).await
}
