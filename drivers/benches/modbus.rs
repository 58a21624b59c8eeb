//! Modbus RTU poll-cycle overhead: how long our line task needs per request
//! when the wire costs nothing (a pseudo-terminal), against how long the
//! bytes of that request and its reply take on a real RS-485 line at 9600
//! and 19200 baud.
//!
//! 240 devices share one line, each polled every 10 ms for ten registers
//! (24 000 requests/s asked for), so the line task is busy all the time:
//! requests per second measure its whole cycle (schedule, encode, write,
//! read, decode, publish) plus the simulator's answer. If the line keeps up
//! with the demand, the figure is an upper bound. Run: `cargo bench -p valeo-drivers --bench modbus`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use valeo_drivers::modbus::map::LineConfig;
use valeo_drivers::modbus::poller;
use valeo_drivers::modbus::sim::{PtyModbus, SimBank, SimDevice, Tables};

const DEVICES: u8 = 240;
const REGISTERS: u16 = 10;
const RUNS: usize = 5;
const RUN_SECS: f64 = 2.0;

fn line_config(path: &str) -> LineConfig {
    let mut text = format!(
        "id = \"bench\"\n[transport]\nkind = \"serial\"\npath = \"{path}\"\nbaud = 19200\n"
    );
    for unit in 1..=DEVICES {
        text.push_str(&format!(
            "[[devices]]\nid = \"d{unit}\"\nunit = {unit}\naddress_base = 0\npoll_interval_ms = 10\ntimeout_ms = 500\n"
        ));
        for a in 0..REGISTERS {
            text.push_str(&format!(
                "[[devices.points]]\nname = \"r{a}\"\ntable = \"holding_register\"\naddress = {a}\ntype = \"u16\"\n"
            ));
        }
    }
    toml::from_str(&text).expect("bench config")
}

/// Time the request and reply frames need on the wire, with the 3.5
/// character silence before each (fixed 1.75 ms above 19200 baud).
fn wire_ms(baud: f64, bits_per_char: f64) -> f64 {
    let request = 8.0; // unit, fc, address (2), count (2), crc (2)
    let reply = 5.0 + 2.0 * f64::from(REGISTERS); // unit, fc, byte count, data, crc (2)
    let char_ms = bits_per_char / baud * 1000.0;
    let silence_ms = if baud > 19_200.0 { 1.75 } else { 3.5 * char_ms };
    (request + reply) * char_ms + 2.0 * silence_ms
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let per_request_ms = runtime.block_on(async {
        let devices: Vec<SimDevice> = (1..=DEVICES)
            .map(|unit| {
                let tables = Tables {
                    holding_registers: (0..REGISTERS).map(|a| (a, a)).collect::<BTreeMap<_, _>>(),
                    ..Tables::default()
                };
                SimDevice::new(unit, tables)
            })
            .collect();
        let pty = PtyModbus::spawn(SimBank::new(devices.clone())).expect("pty");
        let (tx, mut rx) = mpsc::channel(4096);
        tokio::spawn(async move { while rx.recv().await.is_some() {} });
        let _line = poller::spawn(line_config(&pty.path().to_string_lossy()), tx);
        tokio::time::sleep(Duration::from_millis(500)).await;
        let total = || devices.iter().map(SimDevice::requests_total).sum::<u64>();
        let mut samples = Vec::new();
        for _ in 0..RUNS {
            let (n0, t0) = (total(), Instant::now());
            tokio::time::sleep(Duration::from_secs_f64(RUN_SECS)).await;
            let (n, elapsed) = (total() - n0, t0.elapsed().as_secs_f64());
            samples.push(elapsed * 1000.0 / n as f64);
        }
        median(samples)
    });
    println!("modbus rtu over a pty: {DEVICES} devices x {REGISTERS} registers, each every 10 ms");
    println!(
        "  per request (median of {RUNS} x {RUN_SECS} s): {per_request_ms:.4} ms  (our line task + simulator, no wire time)"
    );
    let demanded_ms = 10.0 / f64::from(DEVICES);
    if per_request_ms <= demanded_ms * 1.01 {
        println!(
            "  (the line kept up with all of the demand, one request per {demanded_ms:.4} ms: an upper bound)"
        );
    }
    for (baud, bits, name) in [
        (9600.0, 10.0, "9600 8N1"),
        (9600.0, 11.0, "9600 8E1"),
        (19200.0, 10.0, "19200 8N1"),
        (19200.0, 11.0, "19200 8E1"),
    ] {
        let wire = wire_ms(baud, bits);
        println!(
            "  {name:>10}: wire {wire:6.2} ms per request+reply; overhead {:5.2} % of the wire time",
            per_request_ms / wire * 100.0
        );
    }
}
