//! `valeo-central`: the central service binary.
//!
//! Usage: `valeo-central [--config FILE] [--backup] [--reset-admin-password]`.
//! Without a file it runs on embedded defaults (embedded broker on
//! 127.0.0.1:1883, HTTP on 127.0.0.1:8080, data in `data/central`). `--backup` writes an online
//! backup of the database (also while central runs), prints its path and
//! exits. `--reset-admin-password` sets the password of user `admin` to
//! `VALEO_ADMIN_PASSWORD`, or to a generated one it prints, makes it an
//! enabled admin again, ends its sessions and exits.

use valeo_central::config::CentralConfig;
use valeo_process::Invocation;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let invocation = valeo_process::parse_args(
        "valeo-central",
        &["backup", "reset-admin-password"],
        std::env::args().skip(1),
    )?;
    let (config, action) = match invocation {
        Invocation::Version => {
            println!("valeo-central {}", valeo_central::VERSION);
            return Ok(());
        }
        Invocation::Run { config } => (config, None),
        Invocation::Action { name, config } => (config, Some(name)),
    };
    let config = match config {
        Some(path) => valeo_process::load_config(&path, CentralConfig::parse)?,
        None => CentralConfig::parse("")?,
    };
    if action == Some("backup") {
        let store = valeo_central::store::Store::open(&config.data_dir.join("central.db"))?;
        let dir = valeo_central::backup::backup_dir(&config.data_dir);
        let file = valeo_central::backup::create(&store, &dir)?;
        println!("{}", dir.join(file.file).display());
        return Ok(());
    }
    if action == Some("reset-admin-password") {
        let store = valeo_central::store::Store::open(&config.data_dir.join("central.db"))?;
        let given = std::env::var(valeo_central::auth::ADMIN_PASSWORD_ENV).ok();
        let now = chrono::Utc::now().timestamp();
        match valeo_central::auth::reset_admin_password(&store, given.as_deref(), now)? {
            Some(generated) => println!("new password for user \"admin\": {generated}"),
            None => println!("password of user \"admin\" set from VALEO_ADMIN_PASSWORD"),
        }
        return Ok(());
    }
    valeo_process::init_logging("info,rumqttd=warn");
    valeo_central::run(config, valeo_process::shutdown_signal()).await
}
