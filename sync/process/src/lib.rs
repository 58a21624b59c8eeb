//! Process plumbing shared by both binaries: the command line, reading the
//! config file, logging, and the shutdown signal. Nothing here knows what
//! the program does.

pub mod markup;
pub mod metrics;
pub mod problem;

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// What the command line asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invocation {
    /// Run, with the config file if one was given.
    Run { config: Option<PathBuf> },
    /// Print the version and exit.
    Version,
    /// Do one of the program's extra actions (a `--flag` from `actions`)
    /// with the config file, then exit.
    Action {
        name: &'static str,
        config: Option<PathBuf>,
    },
}

/// Parses `[--config FILE] [--version] [--ACTION]`; `program` names the
/// binary in the usage message, `actions` are its extra flags.
pub fn parse_args(
    program: &str,
    actions: &[&'static str],
    args: impl IntoIterator<Item = String>,
) -> anyhow::Result<Invocation> {
    let mut args = args.into_iter();
    let mut config = None;
    let mut action = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--config" | "-c" => {
                config = Some(PathBuf::from(args.next().context("--config needs a file")?));
            }
            "--version" | "-V" => return Ok(Invocation::Version),
            other => match actions
                .iter()
                .find(|a| other.strip_prefix("--") == Some(**a))
            {
                Some(name) => action = Some(*name),
                None => {
                    let extra: String = actions.iter().map(|a| format!(" [--{a}]")).collect();
                    bail!(
                        "unknown argument {other:?}; usage: {program} [--config FILE] [--version]{extra}"
                    )
                }
            },
        }
    }
    Ok(match action {
        Some(name) => Invocation::Action { name, config },
        None => Invocation::Run { config },
    })
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

/// Logs to stderr; `RUST_LOG` overrides `default_filter`. With
/// `VALEO_LOG_FORMAT=json` every line is one JSON object with the fields of
/// the event and of the span it happened in (a request's `request_id`), for
/// log collectors; otherwise readable text, spans as prefixes.
pub fn init_logging(default_filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if std::env::var("VALEO_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json")) {
        builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .init();
    } else {
        builder.init();
    }
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
        let parse = |list: &[&str]| parse_args("p", &["print-key"], args(list));
        assert_eq!(parse(&[]).unwrap(), Invocation::Run { config: None });
        assert_eq!(
            parse(&["--config", "a.toml"]).unwrap(),
            Invocation::Run {
                config: Some("a.toml".into())
            }
        );
        assert_eq!(parse(&["--version"]).unwrap(), Invocation::Version);
        assert_eq!(
            parse(&["--print-key", "-c", "b.toml"]).unwrap(),
            Invocation::Action {
                name: "print-key",
                config: Some("b.toml".into())
            }
        );
        assert!(
            parse(&["--config"])
                .unwrap_err()
                .to_string()
                .contains("needs a file")
        );
        let usage = parse(&["--verbose"]).unwrap_err().to_string();
        assert!(
            usage.contains("usage: p") && usage.contains("--print-key"),
            "{usage}"
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
