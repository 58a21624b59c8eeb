//! CPU and memory of the real `valeo-edge` agent polling 50 Modbus TCP
//! devices with 100 points each every second (5 000 values/s), against
//! simulators in this process. Two cases: values that stay put (polling
//! cost alone) and values that all change on every poll (every value also
//! becomes a telemetry sample in SQLite). Reads the agent's CPU time and
//! RSS from /proc. Run: `cargo bench -p valeo-edge --bench modbus_fleet`
//! (`BENCH_SECONDS` sets the measuring time, default 20).

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use valeo_drivers::modbus::sim::{Behaviour, SimBank, SimDevice, Tables, serve_tcp};

const DEVICES: usize = 50;
const POINTS: u16 = 100;

fn proc_field(pid: u32, file: &str, key: &str) -> Option<f64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/{file}")).ok()?;
    text.lines()
        .find(|l| l.starts_with(key))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// utime + stime of `pid` in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may contain spaces).
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields.get(11).and_then(|f| f.parse().ok()).unwrap_or(0.0)
        + fields.get(12).and_then(|f| f.parse().ok()).unwrap_or(0.0);
    // CLK_TCK is 100 on Linux x86_64 and aarch64.
    ticks / 100.0
}

fn agent_config(dir: &std::path::Path, ports: &[u16], http_port: u16) -> String {
    let mut text = format!(
        "device_id = \"bench-box\"\ndata_dir = \"{}\"\n[http]\nlisten = \"127.0.0.1:{http_port}\"\n\
         [mqtt]\nport = 1\n[telemetry]\nenabled = false\n[simulation]\nenabled = true\n",
        dir.display()
    );
    for (i, port) in ports.iter().enumerate() {
        text.push_str(&format!(
            "[[modbus]]\nid = \"tcp-{i}\"\n[modbus.transport]\nkind = \"tcp\"\naddress = \"127.0.0.1:{port}\"\n\
             [[modbus.devices]]\nid = \"dev-{i}\"\nunit = 1\naddress_base = 0\npoll_interval_ms = 1000\n"
        ));
        for a in 0..POINTS {
            text.push_str(&format!(
                "[[modbus.devices.points]]\nname = \"p{a}\"\ntable = \"input_register\"\naddress = {a}\ntype = \"u16\"\n"
            ));
        }
    }
    text
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

struct Agent(Child);
impl Drop for Agent {
    fn drop(&mut self) {
        drop(self.0.kill());
        drop(self.0.wait());
    }
}

fn main() {
    let seconds: f64 = std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20.0);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let devices: Vec<SimDevice> = (0..DEVICES)
        .map(|_| {
            let tables = Tables {
                input_registers: (0..POINTS).map(|a| (a, a)).collect::<BTreeMap<_, _>>(),
                ..Tables::default()
            };
            SimDevice::new(1, tables)
        })
        .collect();
    let ports: Vec<u16> = runtime.block_on(async {
        let mut ports = Vec::new();
        for device in &devices {
            let (addr, task) = serve_tcp("127.0.0.1:0", SimBank::new(vec![device.clone()]))
                .await
                .expect("simulator");
            std::mem::forget(task);
            ports.push(addr.port());
        }
        ports
    });
    let _runtime_guard = runtime.enter();
    println!(
        "valeo-edge polling {DEVICES} Modbus TCP devices x {POINTS} points every 1 s, {seconds} s per case"
    );
    for changing in [false, true] {
        for d in &devices {
            d.set_behaviour(Behaviour {
                changing,
                ..Behaviour::default()
            });
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("edge.toml");
        std::fs::write(
            &config,
            agent_config(&dir.path().join("data"), &ports, free_port()),
        )
        .expect("config");
        let agent = Agent(
            Command::new(env!("CARGO_BIN_EXE_valeo-edge"))
                .args(["--config", &config.to_string_lossy()])
                .env("RUST_LOG", "warn")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("valeo-edge"),
        );
        let pid = agent.0.id();
        // Warm-up: connections, the first poll of every device.
        std::thread::sleep(Duration::from_secs(3));
        let requests = || devices.iter().map(SimDevice::requests_total).sum::<u64>();
        let (cpu0, req0, t0) = (cpu_seconds(pid), requests(), Instant::now());
        std::thread::sleep(Duration::from_secs_f64(seconds));
        let (cpu, req, elapsed) = (
            cpu_seconds(pid) - cpu0,
            requests() - req0,
            t0.elapsed().as_secs_f64(),
        );
        let rss_mib = proc_field(pid, "status", "VmRSS:").unwrap_or(0.0) / 1024.0;
        let hwm_mib = proc_field(pid, "status", "VmHWM:").unwrap_or(0.0) / 1024.0;
        println!(
            "  values {}: {:.1} % of one core, RSS {:.1} MiB (peak {:.1} MiB), {:.0} requests/s ({:.0} values/s)",
            if changing {
                "changing on every poll"
            } else {
                "steady"
            },
            cpu / elapsed * 100.0,
            rss_mib,
            hwm_mib,
            req as f64 / elapsed,
            req as f64 / elapsed * f64::from(POINTS),
        );
    }
}
