//! Process plumbing shared by both binaries: the command line, reading the
//! config file, logging, and the shutdown signal. Nothing here knows what
//! the program does.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// What the command line asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invocation {
    /// Run, with the config file if one was given.
    Run { config: Option<PathBuf> },
    /// Print the version and exit.
    Version,
}

/// Parses `[--config FILE] [--version]`; `program` names the binary in
/// the usage message.
pub fn parse_args(
    program: &str,
    args: impl IntoIterator<Item = String>,
) -> anyhow::Result<Invocation> {
    let mut args = args.into_iter();
    let mut config = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--config" | "-c" => {
                config = Some(PathBuf::from(args.next().context("--config needs a file")?));
            }
            "--version" | "-V" => return Ok(Invocation::Version),
            other => {
                bail!("unknown argument {other:?}; usage: {program} [--config FILE] [--version]")
            }
        }
    }
    Ok(Invocation::Run { config })
}

/// Reads a config file and parses it with `parse`; every error names the file.
pub fn load_config<T>(
    path: &Path,
    parse: impl FnOnce(&str) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("cannot read config file {}: {e}", path.display()))?;
    parse(&text).map_err(|e| anyhow::anyhow!("config file {}: {e}", path.display()))
}

/// Logs to stderr; `RUST_LOG` overrides `default_filter`.
pub fn init_logging(default_filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

/// Completes on Ctrl-C or SIGTERM (what systemd and container runtimes send).
pub async fn shutdown_signal() {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_command_line_is_parsed_or_refused_with_usage() {
        assert_eq!(
            parse_args("p", args(&[])).unwrap(),
            Invocation::Run { config: None }
        );
        assert_eq!(
            parse_args("p", args(&["--config", "a.toml"])).unwrap(),
            Invocation::Run {
                config: Some("a.toml".into())
            }
        );
        assert_eq!(
            parse_args("p", args(&["--version"])).unwrap(),
            Invocation::Version
        );
        assert!(
            parse_args("p", args(&["--config"]))
                .unwrap_err()
                .to_string()
                .contains("needs a file")
        );
        assert!(
            parse_args("p", args(&["--verbose"]))
                .unwrap_err()
                .to_string()
                .contains("usage: p")
        );
    }

    #[test]
    fn config_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.toml");
        let err = load_config(&missing, |_| Ok(())).unwrap_err().to_string();
        assert!(err.contains("missing.toml"), "{err}");
        let bad = dir.path().join("bad.toml");
        std::fs::write(&bad, "x").unwrap();
        let err = load_config(&bad, |_| -> anyhow::Result<()> {
            bail!("field x is wrong")
        })
        .unwrap_err()
        .to_string();
        assert!(err.contains("bad.toml") && err.contains("field x"), "{err}");
    }
}
