//! Our Modbus against implementations we did not write. pymodbus (Python,
//! `tests/peers/pymodbus_server.py`) is the server that our poller reads
//! in every table and writes to; mbpoll (libmodbus) is the client of our
//! simulator binary, over TCP and with RTU over a pseudo-terminal. Both
//! peers come with the README's test command: a missing one fails the
//! test, it is never skipped.

#![allow(
    clippy::unwrap_used,
    reason = "a failed step is the test failure; helpers here are test code"
)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::json;
use tokio::sync::mpsc;
use valeo_drivers::modbus::map::{LineConfig, Value};
use valeo_drivers::modbus::poller::{self, DeviceSnapshot, LineHandle, Quality};
use valeo_system_tests::{Process, binary, eventually, free_port, venv_python, workspace_root};

fn python() -> PathBuf {
    venv_python()
}

fn peer_script(name: &str) -> String {
    workspace_root()
        .join("tests/peers")
        .join(name)
        .to_string_lossy()
        .into_owned()
}

fn mbpoll() -> PathBuf {
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("mbpoll"))
            .find(|p| p.is_file())
    });
    on_path.unwrap_or_else(|| {
        panic!(
            "mbpoll is not installed: run the README's test command (./scripts/test.sh), \
             which installs it (apt-get install mbpoll)"
        )
    })
}

/// Waits until the process has printed a line starting with `prefix` and
/// returns the line.
async fn printed(process: &Process, prefix: &str) -> String {
    eventually(
        &format!("{prefix:?} from the process"),
        Duration::from_secs(20),
        || {
            let line = process
                .log()
                .lines()
                .map(str::trim)
                .find(|l| l.starts_with(prefix))
                .map(str::to_owned);
            async move { line }
        },
    )
    .await
    .unwrap()
}

async fn snapshot_where(
    line: &LineHandle,
    what: &str,
    check: impl Fn(&DeviceSnapshot) -> bool,
) -> DeviceSnapshot {
    let mut rx = line.devices()[0].1.clone();
    let waited = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let snapshot = rx.borrow_and_update().clone();
            if check(&snapshot) {
                return snapshot;
            }
            rx.changed().await.unwrap();
        }
    })
    .await;
    waited.unwrap_or_else(|_| panic!("{what}: {:#?}", rx.borrow().clone()))
}

fn value(s: &DeviceSnapshot, point: &str) -> Option<Value> {
    s.points.get(point).and_then(|p| p.value.clone())
}

/// Unit 1 of the pymodbus server, one point for each value it serves,
/// at protocol addresses (`address_base` 0).
fn pymodbus_line(port: u16, framing: &str) -> LineConfig {
    let point = |name: &str, table: &str, address: u32, ty: &str, rw: bool| {
        json!({
            "name": name,
            "table": table,
            "address": address,
            "type": ty,
            "access": if rw { "rw" } else { "read" },
        })
    };
    serde_json::from_value(json!({
        "id": "pymodbus",
        "transport": {"kind": "tcp", "address": format!("127.0.0.1:{port}")},
        "framing": framing,
        "devices": [{
            "id": "peer",
            "unit": 1,
            "address_base": 0,
            "poll_interval_ms": 100,
            "timeout_ms": 1000,
            "points": [
                {
                    "name": "voltage",
                    "table": "holding_register",
                    "address": 0,
                    "type": "f32",
                    "order": "ABCD",
                },
                point("setpoint", "holding_register", 2, "u16", true),
                point("offset", "input_register", 5, "i16", false),
                point("relay", "coil", 0, "bool", true),
                point("lamp", "coil", 1, "bool", true),
                point("door", "discrete_input", 3, "bool", false),
            ],
        }],
    }))
    .unwrap()
}

/// What `pymodbus_read.py` reads from the server: addresses 0..=7 of
/// every table.
async fn read_with_pymodbus(port: u16, framer: &str) -> serde_json::Value {
    let output = tokio::process::Command::new(python())
        .arg(peer_script("pymodbus_read.py"))
        .arg(port.to_string())
        .arg(framer)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(20), output)
        .await
        .expect("pymodbus_read.py did not finish within 20 s")
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "pymodbus_read.py failed: {}\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_str(stdout.trim()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_poller_reads_and_writes_a_pymodbus_server() {
    reads_and_writes_pymodbus("socket", "tcp").await;
}

/// RTU frames over TCP, as a serial device server in transparent mode
/// passes an RS-485 line through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_poller_speaks_rtu_over_tcp_with_pymodbus() {
    reads_and_writes_pymodbus("rtu", "rtu").await;
}

/// Modbus ASCII, which tokio-modbus lacks and our `AsciiIo` translates.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_poller_speaks_ascii_with_pymodbus() {
    reads_and_writes_pymodbus("ascii", "ascii").await;
}

/// Our poller with `framing` against a pymodbus server with `framer`: every
/// table read, writes confirmed and read back by pymodbus' own client.
async fn reads_and_writes_pymodbus(framer: &str, framing: &str) {
    let python = python();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let server = Process::spawn(
        "pymodbus-server",
        &python,
        &[
            &peer_script("pymodbus_server.py"),
            &port.to_string(),
            framer,
        ],
        dir.path(),
    )
    .unwrap();
    printed(&server, "ready").await;

    let config = pymodbus_line(port, framing);
    config.validate().unwrap();
    let (tx, _changes) = mpsc::channel(1024);
    let line = poller::spawn(config, tx);
    let s = snapshot_where(&line, "every point read with quality good", |s| {
        s.points.len() == 6 && s.points.values().all(|p| p.quality == Quality::Good)
    })
    .await;
    assert_eq!(value(&s, "voltage"), Some(Value::Float(230.5)), "{s:#?}");
    assert_eq!(value(&s, "setpoint"), Some(Value::UInt(1234)), "{s:#?}");
    assert_eq!(value(&s, "offset"), Some(Value::Int(-1)), "{s:#?}");
    assert_eq!(value(&s, "relay"), Some(Value::Bool(true)), "{s:#?}");
    assert_eq!(value(&s, "lamp"), Some(Value::Bool(false)), "{s:#?}");
    assert_eq!(value(&s, "door"), Some(Value::Bool(true)), "{s:#?}");

    // Writes (FC 6 and FC 5), confirmed by the server ...
    line.write("peer", "setpoint", Value::UInt(99))
        .await
        .unwrap();
    line.write("peer", "lamp", Value::Bool(true)).await.unwrap();
    // ... land at the right addresses, as pymodbus' own client reads them,
    // and leave the neighbours alone.
    let tables = read_with_pymodbus(port, framer).await;
    assert_eq!(
        tables["holding"],
        json!([0x4366, 0x8000, 99, 0, 0, 0, 0, 0]),
        "{tables}"
    );
    assert_eq!(
        tables["coils"],
        json!([true, true, false, false, false, false, false, false]),
        "{tables}"
    );
    assert_eq!(tables["input"], json!([0, 0, 0, 0, 0, 0xFFFF, 0, 0]));
    assert_eq!(
        tables["discrete"],
        json!([false, false, false, true, false, false, false, false])
    );
    // Our next polls read the new values back.
    snapshot_where(&line, "written values read back", |s| {
        value(s, "setpoint") == Some(Value::UInt(99))
            && value(s, "lamp") == Some(Value::Bool(true))
            && s.points.values().all(|p| p.quality == Quality::Good)
    })
    .await;
}

/// Runs mbpoll with `args`: whether it succeeded, and what it printed
/// (stdout, then stderr).
async fn mbpoll_output(args: &[&str]) -> (bool, String) {
    let output = tokio::process::Command::new(mbpoll())
        .args(args)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(20), output)
        .await
        .unwrap_or_else(|_| panic!("mbpoll {args:?} did not finish within 20 s"))
        .unwrap();
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), printed)
}

/// Runs mbpoll with `args` and returns what it printed, failing on a
/// non-zero exit.
async fn run_mbpoll(args: &[&str]) -> String {
    let (ok, printed) = mbpoll_output(args).await;
    assert!(ok, "mbpoll {args:?} failed:\n{printed}");
    printed
}

/// mbpoll's values by reference: lines like `[2]: \t32768 (-32768)` give
/// `2 → "32768"`.
fn mbpoll_values(stdout: &str) -> BTreeMap<u32, String> {
    stdout
        .lines()
        .filter_map(|line| {
            let (reference, rest) = line.trim().strip_prefix('[')?.split_once("]:")?;
            let value = rest.split_whitespace().next()?;
            Some((reference.parse().ok()?, value.to_owned()))
        })
        .collect()
}

fn expect_values(stdout: &str, want: &[(u32, &str)]) {
    let got = mbpoll_values(stdout);
    let want: BTreeMap<u32, String> = want.iter().map(|(r, v)| (*r, (*v).to_owned())).collect();
    assert_eq!(got, want, "mbpoll printed:\n{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mbpoll_reads_and_writes_our_simulator_over_tcp() {
    mbpoll();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port().to_string();
    let sim = Process::spawn(
        "valeo-modbus-sim",
        &binary("valeo-modbus-sim").unwrap(),
        &[
            "--tcp",
            &format!("127.0.0.1:{port}"),
            // Only the addresses given exist; 4 is there to be written.
            "--holding",
            "0=111,1=222,4=0",
            "--coils",
            "0=1",
        ],
        dir.path(),
    )
    .unwrap();
    printed(&sim, "listening on").await;
    let tcp = ["-m", "tcp", "-p", &port, "-a", "1"];
    let with_tcp = |args: &[&str]| -> Vec<String> {
        tcp.iter().chain(args).map(|s| (*s).to_owned()).collect()
    };
    let mbpoll_tcp = |args: &[&str]| {
        let all = with_tcp(args);
        async move {
            let all: Vec<&str> = all.iter().map(String::as_str).collect();
            run_mbpoll(&all).await
        }
    };

    // mbpoll's references count from 1: reference 1 is protocol address 0.
    let out = mbpoll_tcp(&["-r", "1", "-c", "2", "-t", "4", "-1", "127.0.0.1"]).await;
    expect_values(&out, &[(1, "111"), (2, "222")]);

    // A write (FC 6) of holding reference 5 (protocol address 4), read back
    // with its neighbours untouched.
    mbpoll_tcp(&["-r", "5", "-t", "4", "127.0.0.1", "4242"]).await;
    let out = mbpoll_tcp(&["-r", "5", "-c", "1", "-t", "4", "-1", "127.0.0.1"]).await;
    expect_values(&out, &[(5, "4242")]);
    let out = mbpoll_tcp(&["-r", "1", "-c", "2", "-t", "4", "-1", "127.0.0.1"]).await;
    expect_values(&out, &[(1, "111"), (2, "222")]);

    // An address the device does not have is refused with an exception
    // that libmodbus understands.
    let all = with_tcp(&["-r", "10", "-t", "4", "127.0.0.1", "1"]);
    let (ok, out) = mbpoll_output(&all.iter().map(String::as_str).collect::<Vec<_>>()).await;
    assert!(!ok && out.contains("Illegal data address"), "{out}");

    // Coil reference 1 (protocol address 0): read, written (FC 5), read back.
    let out = mbpoll_tcp(&["-r", "1", "-c", "1", "-t", "0", "-1", "127.0.0.1"]).await;
    expect_values(&out, &[(1, "1")]);
    mbpoll_tcp(&["-r", "1", "-t", "0", "127.0.0.1", "0"]).await;
    let out = mbpoll_tcp(&["-r", "1", "-c", "1", "-t", "0", "-1", "127.0.0.1"]).await;
    expect_values(&out, &[(1, "0")]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mbpoll_reads_our_simulator_with_rtu_over_a_pty() {
    mbpoll();
    let dir = tempfile::tempdir().unwrap();
    let sim = Process::spawn(
        "valeo-modbus-sim-rtu",
        &binary("valeo-modbus-sim").unwrap(),
        &["--rtu", "--holding", "0=111,1=222"],
        dir.path(),
    )
    .unwrap();
    let path = printed(&sim, "rtu on ").await["rtu on ".len()..].to_owned();
    let out = run_mbpoll(&[
        "-m", "rtu", "-b", "19200", "-P", "none", "-a", "1", "-r", "1", "-c", "2", "-t", "4", "-1",
        &path,
    ])
    .await;
    expect_values(&out, &[(1, "111"), (2, "222")]);
}
