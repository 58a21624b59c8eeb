//! Harness for tests that cross process boundaries: starts the real
//! `valeo-central` and `valeo-edge` binaries and a real Mosquitto, on free
//! loopback ports, each in its own temporary directory, and stops them
//! when the handle is dropped.
//!
//! Central starts with a known admin password (`VALEO_ADMIN_PASSWORD`,
//! kept with an admin API token in the test directory for restarts);
//! [`Central::http`] is a client that authenticates with that token.
//!
//! The binaries must be built first (`cargo build --bins`); the test
//! command in the README does that.

pub mod proxy;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// Agent tables for a simulated box with a cash desk `KASSE-01` that signs
/// with the software TSE.
pub const CASH_DESK: &str = r#"
[simulation]
enabled = true
[cash]
cash_point = "KASSE-01"
trader_name = "Agrarhandel Musterfeld GmbH"
trader_address = "Feldweg 1, 49999 Musterfeld"
[cash.tse]
kind = "software"
"#;

/// Agent tables for a simulated weighbridge: a SysTec terminal, a grain
/// analyzer, and simulated lights, barriers and two light barriers (front
/// interrupted = high, rear interrupted = low, as wired on real sites).
pub const SIMULATED_SITE: &str = r#"
[simulation]
enabled = true
scale_id = "sim-bridge-1"

[site_io]
input_poll_ms = 20
[site_io.entry_light]
red = { kind = "simulated" }
green = { kind = "simulated" }
[site_io.exit_light]
red = { kind = "simulated" }
green = { kind = "simulated" }
[site_io.entry_barrier]
kind = "simulated"
[site_io.exit_barrier]
kind = "simulated"
[[site_io.position_sensors]]
name = "front"
pin = { kind = "simulated" }
blocked_when = "high"
[[site_io.position_sensors]]
name = "rear"
pin = { kind = "simulated" }
blocked_when = "low"
"#;

/// A free TCP port on 127.0.0.1 (bound and released). Never the same port
/// twice in one test process: tests run in parallel, and two of them
/// handed the same port would share a broker, where boxes with the same
/// client id keep taking each other's session over.
pub fn free_port() -> u16 {
    static HANDED_OUT: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut handed_out = HANDED_OUT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    // Bounded: the kernel would have to return used ports 100 times in a row.
    for _ in 0..100 {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or(0);
        if port != 0 && !handed_out.contains(&port) {
            handed_out.push(port);
            return port;
        }
    }
    0
}

/// `target/<profile>/<name>`, next to the test executable's `deps/`.
pub fn binary(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .context("test executable is not in target/<profile>/deps")?;
    let path = profile_dir.join(name);
    if !path.exists() {
        bail!(
            "{} not found: run `cargo build --bins` before the tests",
            path.display()
        );
    }
    Ok(path)
}

/// A child process that is killed when dropped; its output goes to a log
/// file that is printed if the test fails.
#[derive(Debug)]
pub struct Process {
    name: String,
    child: Child,
    log: PathBuf,
}

impl Process {
    pub fn spawn(name: &str, program: &Path, args: &[&str], dir: &Path) -> anyhow::Result<Process> {
        Self::spawn_with_env(name, program, args, dir, &[])
    }

    /// Like [`Process::spawn`], with these environment variables set.
    pub fn spawn_with_env(
        name: &str,
        program: &Path,
        args: &[&str],
        dir: &Path,
        env: &[(&str, &str)],
    ) -> anyhow::Result<Process> {
        let log = dir.join(format!("{name}.log"));
        // Appended, so a restarted process keeps the story of the earlier runs.
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)?;
        let err = out.try_clone()?;
        let child = Command::new(program)
            .args(args)
            .current_dir(dir)
            .env("RUST_LOG", "info,rumqttd=warn")
            .env("NO_COLOR", "1")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("cannot start {}", program.display()))?;
        Ok(Process {
            name: name.to_owned(),
            child,
            log,
        })
    }

    /// Stops the process the hard way, as a power cut or crash would.
    pub fn kill(&mut self) {
        // An already-exited child makes both fail; either way it is gone.
        self.child.kill().ok();
        self.child.wait().ok();
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("----- {} log -----\n{}", self.name, self.log());
        }
    }
}

/// Polls `check` every 100 ms until it returns `Some` or `timeout` passes.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return Ok(value);
        }
        if Instant::now() > deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// GETs `url` and parses JSON, `None` on any failure (for polling).
pub async fn get_json(http: &reqwest::Client, url: &str) -> Option<serde_json::Value> {
    let response = http.get(url).send().await.ok()?;
    response.json().await.ok()
}

/// Which broker central and the edge use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrokerKind {
    /// rumqttd inside central.
    Embedded,
    /// A Mosquitto process started by the test.
    Mosquitto,
}

/// A running Mosquitto on a free loopback port.
#[derive(Debug)]
pub struct Mosquitto {
    pub port: u16,
    pub process: Process,
}

impl Mosquitto {
    pub async fn start(dir: &Path) -> anyhow::Result<Mosquitto> {
        Self::start_on(dir, free_port()).await
    }

    /// Starts on a given port, e.g. to restart after a kill.
    pub async fn start_on(dir: &Path, port: u16) -> anyhow::Result<Mosquitto> {
        let program = which("mosquitto").context(
            "mosquitto is not installed: the README's test command installs it (apt-get install mosquitto)",
        )?;
        let conf = dir.join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n\
                 max_packet_size 1200000\nlog_dest stdout\n"
            ),
        )?;
        let process = Process::spawn("mosquitto", &program, &["-c", &conf.to_string_lossy()], dir)?;
        eventually(
            "mosquitto to listen",
            Duration::from_secs(10),
            || async move { std::net::TcpStream::connect(("127.0.0.1", port)).ok() },
        )
        .await?;
        Ok(Mosquitto { port, process })
    }
}

fn which(name: &str) -> Option<PathBuf> {
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// A running `valeo-central`, with an admin's password and API token.
#[derive(Debug)]
pub struct Central {
    pub http_url: String,
    pub mqtt_port: u16,
    pub process: Process,
    /// The password of user `admin` (set through `VALEO_ADMIN_PASSWORD` on
    /// the first start in a directory, kept for restarts).
    pub admin_password: String,
    /// An API token with the admin role.
    pub token: String,
    client: reqwest::Client,
}

/// Where the admin's password and token of the central in a test
/// directory are kept: a restart on the same data keeps its users.
pub const CENTRAL_CREDENTIALS_FILE: &str = "central-admin.json";

/// The admin credentials of the central in `dir`.
#[derive(Debug, Clone)]
struct Credentials {
    password: String,
    token: Option<String>,
}

impl Credentials {
    fn load_or_new(dir: &Path) -> Credentials {
        let stored = std::fs::read(dir.join(CENTRAL_CREDENTIALS_FILE))
            .ok()
            .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok());
        match stored {
            Some(stored) if stored["password"].is_string() => Credentials {
                password: stored["password"].as_str().unwrap_or_default().to_owned(),
                token: stored["token"].as_str().map(str::to_owned),
            },
            _ => Credentials {
                password: format!("test-{:032x}", rand::random::<u128>()),
                token: None,
            },
        }
    }

    fn save(&self, dir: &Path) -> anyhow::Result<()> {
        let json = serde_json::json!({"password": self.password, "token": self.token});
        std::fs::write(dir.join(CENTRAL_CREDENTIALS_FILE), json.to_string())?;
        Ok(())
    }
}

/// A client whose requests carry `Authorization: Bearer <token>`.
pub fn bearer_client(token: &str) -> anyhow::Result<reqwest::Client> {
    let mut headers = reqwest::header::HeaderMap::new();
    let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))?;
    value.set_sensitive(true);
    headers.insert(reqwest::header::AUTHORIZATION, value);
    Ok(reqwest::Client::builder()
        .default_headers(headers)
        .build()?)
}

/// Logs in at central and returns the JWT.
pub async fn login(http_url: &str, username: &str, password: &str) -> anyhow::Result<String> {
    let (status, body) = post_json(
        &format!("{http_url}/api/v1/auth/login"),
        &serde_json::json!({"username": username, "password": password}),
    )
    .await?;
    if status != 200 {
        bail!("login as {username}: {status}: {body}");
    }
    body["token"]
        .as_str()
        .map(str::to_owned)
        .context("login answer without a token")
}

impl Central {
    /// Starts central in `dir`. With `external_broker_port`, it uses that
    /// broker instead of its embedded one; `mqtt_port` chooses the embedded
    /// broker's port (so a restarted central can reuse it).
    pub async fn start(
        dir: &Path,
        external_broker_port: Option<u16>,
        ports: Option<(u16, u16)>,
        devices: &[(&str, &str)],
    ) -> anyhow::Result<Central> {
        Self::start_with(dir, external_broker_port, ports, devices, "").await
    }

    /// Like [`Central::start`], with `extra` TOML tables appended to the
    /// config (e.g. `[auth]`).
    pub async fn start_with(
        dir: &Path,
        external_broker_port: Option<u16>,
        ports: Option<(u16, u16)>,
        devices: &[(&str, &str)],
        extra: &str,
    ) -> anyhow::Result<Central> {
        let (http_port, mqtt_port) = ports.unwrap_or_else(|| (free_port(), free_port()));
        let mqtt_port = external_broker_port.unwrap_or(mqtt_port);
        let config = format!(
            "data_dir = \"{data}\"\n\
             [http]\nlisten = \"127.0.0.1:{http_port}\"\n\
             [embedded_broker]\nenabled = {embedded}\nlisten = \"127.0.0.1:{mqtt_port}\"\n\
             [mqtt]\nhost = \"127.0.0.1\"\nport = {mqtt_port}\nreconnect_backoff_max_ms = 1000\n\
             [fiscal]\ncompany_name = \"Agrarhandel Musterfeld GmbH\"\nstreet = \"Feldweg 1\"\n\
             zip = \"49999\"\ncity = \"Musterfeld\"\ntax_number = \"12/345/67890\"\n",
            data = dir.join("central-data").display(),
            embedded = external_broker_port.is_none(),
        );
        let devices: String = devices
            .iter()
            .map(|(id, key)| format!("[[devices]]\nid = \"{id}\"\npublic_key = \"{key}\"\n"))
            .collect();
        let path = dir.join("central.toml");
        std::fs::write(&path, config + &devices + extra)?;
        let mut credentials = Credentials::load_or_new(dir);
        let process = Process::spawn_with_env(
            "valeo-central",
            &binary("valeo-central")?,
            &["--config", &path.to_string_lossy()],
            dir,
            &[("VALEO_ADMIN_PASSWORD", credentials.password.as_str())],
        )?;
        let http_url = format!("http://127.0.0.1:{http_port}");
        let mut central = Central {
            http_url,
            mqtt_port,
            process,
            admin_password: credentials.password.clone(),
            token: String::new(),
            client: reqwest::Client::new(),
        };
        central.wait_healthy().await?;
        let token = central.admin_token(credentials.token.as_deref()).await?;
        credentials.token = Some(token.clone());
        credentials.save(dir)?;
        central.client = bearer_client(&token)?;
        central.token = token;
        Ok(central)
    }

    /// `known` if central still accepts it, else a new admin API token.
    async fn admin_token(&self, known: Option<&str>) -> anyhow::Result<String> {
        if let Some(token) = known {
            let me = bearer_client(token)?
                .get(format!("{}/api/v1/auth/me", self.http_url))
                .send()
                .await?;
            if me.status().is_success() {
                return Ok(token.to_owned());
            }
        }
        let jwt = login(&self.http_url, "admin", &self.admin_password).await?;
        let (status, body) = post_json_with(
            &bearer_client(&jwt)?,
            &format!("{}/api/v1/tokens", self.http_url),
            &serde_json::json!({
                "name": format!("system-tests-{:08x}", rand::random::<u32>()),
                "role": "admin",
            }),
        )
        .await?;
        if status != 201 {
            bail!("creating the admin API token: {status}: {body}");
        }
        body["token"]
            .as_str()
            .map(str::to_owned)
            .context("token answer without a token")
    }

    /// A client authenticated as admin (its API token); use it for every
    /// `/api/v1` call to central.
    pub fn http(&self) -> reqwest::Client {
        self.client.clone()
    }

    /// Replaces central's master data (published to every box) and returns
    /// the stored document.
    pub async fn put_master_data(
        &self,
        document: &serde_json::Value,
    ) -> anyhow::Result<serde_json::Value> {
        let response = self
            .http()
            .put(format!("{}/api/v1/master-data", self.http_url))
            .json(document)
            .send()
            .await?;
        let status = response.status();
        let body: serde_json::Value = response.json().await?;
        if !status.is_success() {
            bail!("PUT master data: {status}: {body}");
        }
        Ok(body)
    }

    /// Waits until `/health` says ok (database up, receiver connected).
    pub async fn wait_healthy(&self) -> anyhow::Result<()> {
        let http = reqwest::Client::new();
        let url = format!("{}/health", self.http_url);
        eventually("central to be healthy", Duration::from_secs(20), || {
            let (http, url) = (http.clone(), url.clone());
            async move { get_json(&http, &url).await.filter(|h| h["status"] == "ok") }
        })
        .await
        .map(|_| ())
    }
}

/// A running `valeo-edge` bound to one serial scale.
#[derive(Debug)]
pub struct Edge {
    pub http_url: String,
    pub data_dir: PathBuf,
    pub process: Process,
}

impl Edge {
    /// The data directory of the box `device_id` under `dir`.
    pub fn data_dir(dir: &Path, device_id: &str) -> PathBuf {
        dir.join(format!("edge-{device_id}"))
    }

    /// Provisions the box's key before its first start, as an installer
    /// would, and returns the public key to register at central.
    pub fn provision(dir: &Path, device_id: &str) -> anyhow::Result<String> {
        let data_dir = Self::data_dir(dir, device_id);
        std::fs::create_dir_all(&data_dir)?;
        Ok(valeo_sync::identity::DeviceKey::load_or_create(&data_dir)?.public_key_hex())
    }

    pub async fn start(
        dir: &Path,
        device_id: &str,
        mqtt_port: u16,
        scale_path: &Path,
    ) -> anyhow::Result<Edge> {
        let scale = format!(
            "[[scales]]\nid = \"bridge-1\"\nresponse_timeout_ms = 1500\n\
             [scales.transport]\nkind = \"serial\"\npath = \"{}\"\n",
            scale_path.display()
        );
        Self::start_with(dir, device_id, mqtt_port, &scale).await
    }

    /// Starts an agent whose scales (or simulation, site I/O) are the
    /// given TOML tables.
    pub async fn start_with(
        dir: &Path,
        device_id: &str,
        mqtt_port: u16,
        tables: &str,
    ) -> anyhow::Result<Edge> {
        let http_port = free_port();
        let data_dir = Self::data_dir(dir, device_id);
        let config = format!(
            "device_id = \"{device_id}\"\n\
             data_dir = \"{data}\"\n\
             [http]\nlisten = \"127.0.0.1:{http_port}\"\n\
             [mqtt]\nport = {mqtt_port}\nkeep_alive_s = 5\nreconnect_backoff_max_ms = 1000\n\
             [uplink]\nack_timeout_ms = 3000\n\
             [weighing]\nmin_load = \"400 kg\"\n\
             {tables}",
            data = data_dir.display(),
        );
        let path = dir.join(format!("edge-{device_id}.toml"));
        std::fs::write(&path, config)?;
        let process = Process::spawn(
            &format!("valeo-edge-{device_id}"),
            &binary("valeo-edge")?,
            &["--config", &path.to_string_lossy()],
            dir,
        )?;
        let edge = Edge {
            http_url: format!("http://127.0.0.1:{http_port}"),
            data_dir,
            process,
        };
        let http = reqwest::Client::new();
        let url = format!("{}/health", edge.http_url);
        eventually(
            "the edge agent to serve /health",
            Duration::from_secs(20),
            || {
                let (http, url) = (http.clone(), url.clone());
                async move { get_json(&http, &url).await }
            },
        )
        .await?;
        Ok(edge)
    }

    /// Waits until the box has cached master data of at least `version`.
    pub async fn wait_master_data(&self, version: u64) -> anyhow::Result<()> {
        let http = reqwest::Client::new();
        let url = format!("{}/api/v1/master-data", self.http_url);
        eventually("master data at the box", Duration::from_secs(20), || {
            let (http, url) = (http.clone(), url.clone());
            async move {
                get_json(&http, &url)
                    .await
                    .filter(|m| m["version"].as_u64() >= Some(version))
            }
        })
        .await
        .map(|_| ())
    }

    /// Rows in the edge outbox that central has not acknowledged, read
    /// straight from the SQLite file.
    pub fn unacknowledged_records(&self) -> anyhow::Result<i64> {
        let conn = rusqlite::Connection::open_with_flags(
            self.data_dir.join("outbox.db"),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )?;
        Ok(conn.query_row(
            "SELECT COUNT(*) FROM records WHERE acked_at IS NULL",
            [],
            |r| r.get(0),
        )?)
    }

    /// Asks for a weighing step, retrying while the scale settles (409).
    pub async fn weigh(
        &self,
        path: &str,
        body: serde_json::Value,
    ) -> anyhow::Result<serde_json::Value> {
        let http = reqwest::Client::new();
        let url = format!("{}{path}", self.http_url);
        let mut last = String::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let response = http.post(&url).json(&body).send().await?;
            let status = response.status();
            let json: serde_json::Value = response.json().await?;
            if status.is_success() {
                return Ok(json);
            }
            last = format!("{status}: {json}");
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        bail!("weighing {path} did not succeed: {last}")
    }
}

/// The workspace root (where `Cargo.toml`, `.venv` and `tests/` are).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(".."))
}

/// The workspace's Python with `tests/peers/requirements.txt` installed
/// (pymodbus, dsfinvk); panics with the fix when it is missing.
pub fn venv_python() -> PathBuf {
    let python = workspace_root().join(".venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run the README's test command (./scripts/test.sh), which creates \
         the venv and installs tests/peers/requirements.txt",
        python.display()
    );
    python
}

/// Central with its embedded broker and one provisioned box `device_id`
/// with `config`, both in `dir`.
pub async fn start_pair(
    dir: &Path,
    device_id: &str,
    config: &str,
) -> anyhow::Result<(Central, Edge)> {
    let mqtt_port = free_port();
    let key = Edge::provision(dir, device_id)?;
    let central = Central::start(
        dir,
        None,
        Some((free_port(), mqtt_port)),
        &[(device_id, key.as_str())],
    )
    .await?;
    let edge = Edge::start_with(dir, device_id, mqtt_port, config).await?;
    Ok((central, edge))
}

/// POSTs `body` as JSON: the status and the JSON answer (`null` if none).
pub async fn post_json(
    url: &str,
    body: &serde_json::Value,
) -> anyhow::Result<(u16, serde_json::Value)> {
    post_json_with(&reqwest::Client::new(), url, body).await
}

/// [`post_json`] with a given client (e.g. [`Central::http`]).
pub async fn post_json_with(
    http: &reqwest::Client,
    url: &str,
    body: &serde_json::Value,
) -> anyhow::Result<(u16, serde_json::Value)> {
    let response = http.post(url).json(body).send().await?;
    let status = response.status().as_u16();
    Ok((
        status,
        response.json().await.unwrap_or(serde_json::Value::Null),
    ))
}

/// Runs `tests/browser/<script>` in Node (Playwright, headless Chromium)
/// against the box at `edge_url` and returns what it printed; fails with
/// the script's output and the box's log when it does not succeed.
pub async fn run_browser_script(script: &str, edge: &Edge) -> anyhow::Result<String> {
    run_node_script(
        script,
        &[("EDGE_URL", edge.http_url.as_str())],
        &edge.process,
    )
    .await
}

/// Runs `tests/browser/<script>` in Node with `env` set and returns what it
/// printed; fails with the script's output and `process`'s log when it
/// does not succeed.
pub async fn run_node_script(
    script: &str,
    env: &[(&str, &str)],
    process: &Process,
) -> anyhow::Result<String> {
    let browser_dir = workspace_root().join("tests/browser");
    if !browser_dir.join("node_modules/playwright-core").exists() {
        bail!(
            "playwright-core is not installed: the README's test command runs `npm ci` in tests/browser"
        );
    }
    let path = browser_dir.join(script);
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let output =
        tokio::task::spawn_blocking(move || Command::new("node").arg(path).envs(env).output())
            .await?
            .context("node runs (the README's test command installs Node.js and Chromium)")?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        bail!(
            "browser test {script} failed ({}):\n{stdout}\n{}\n{} log:\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr),
            process.name,
            process.log()
        );
    }
    eprintln!("{stdout}");
    Ok(stdout)
}

/// GETs `url` and returns the body as text (a page, `/metrics`).
pub async fn get_text(http: &reqwest::Client, url: &str) -> anyhow::Result<String> {
    Ok(http.get(url).send().await?.text().await?)
}
