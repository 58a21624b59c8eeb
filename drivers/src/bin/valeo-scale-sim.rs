//! `valeo-scale-sim`: a simulated weighbridge terminal for installers and demos, without
//! hardware. It serves one protocol on a pseudo-terminal (printing the device path to open)
//! or a TCP port, and takes commands on stdin, typed or piped from a script:
//!
//! ```text
//! on 40000        a truck of 40 000 kg drives on (ramp, oscillation, settling)
//! off             it drives off
//! wait 5000       pause a script for 5 s
//! noise 40        ± 40 kg of noise on every sample (0 = off)
//! fault garbage   garbage | drop | checksum | silence | disconnect | none
//! status          print the displayed weight
//! alibi           print the alibi memory
//! quit
//! ```

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, BufReader};
use valeo_drivers::scale::Protocol;
use valeo_drivers::scale::config::ScaleConfig;
use valeo_drivers::scale::toledo::ToledoOptions;
use valeo_drivers::sim::{
    Faults, PtyScale, TruckScale, TruckScaleParams, multidrop_factory, spawn_tcp_terminal,
};
use valeo_drivers::transport::TransportConfig;

const USAGE: &str =
    "usage: valeo-scale-sim [--protocol mt-sics|toledo-continuous|sma|systec|disomat|line] \
[--tcp HOST:PORT] [--address N]... [--toledo-checksum] [--division-kg N]

Serves on a pseudo-terminal unless --tcp is given. --address adds a device on the same line
(systec, disomat); each gets its own bridge, `on` drives onto the first.";

#[derive(Debug)]
struct Args {
    protocol: Protocol,
    tcp: Option<String>,
    addresses: Vec<u8>,
    toledo_checksum: bool,
    division_kg: i64,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args {
        protocol: Protocol::MtSics,
        tcp: None,
        addresses: Vec::new(),
        toledo_checksum: false,
        division_kg: 20,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().with_context(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--protocol" => {
                let name = value("--protocol")?;
                args.protocol = Protocol::from_name(&name)
                    .with_context(|| format!("unknown protocol {name:?}\n{USAGE}"))?;
            }
            "--tcp" => args.tcp = Some(value("--tcp")?),
            "--address" => args.addresses.push(value("--address")?.parse()?),
            "--toledo-checksum" => args.toledo_checksum = true,
            "--division-kg" => args.division_kg = value("--division-kg")?.parse()?,
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?}\n{USAGE}"),
        }
    }
    Ok(args)
}

fn set_fault(faults: &Mutex<Faults>, name: &str) -> anyhow::Result<()> {
    let mut f = faults.lock().unwrap_or_else(PoisonError::into_inner);
    match name {
        "garbage" => f.garbage_before_reply = true,
        "drop" => f.drop_byte = true,
        "checksum" => f.wrong_checksum = true,
        "silence" => f.silent = true,
        "disconnect" => f.disconnect = true,
        "none" => *f = Faults::default(),
        other => {
            bail!("unknown fault {other:?} (garbage, drop, checksum, silence, disconnect, none)")
        }
    }
    Ok(())
}

async fn run_command(
    line: &str,
    scale: &TruckScale,
    faults: &Mutex<Faults>,
) -> anyhow::Result<bool> {
    let mut words = line.split_whitespace();
    let number = |word: Option<&str>| -> anyhow::Result<i64> {
        word.context("a number is missing")?
            .parse()
            .context("not a number")
    };
    match words.next() {
        None => {}
        Some("on") => scale.drive_on(number(words.next())?),
        Some("off") => scale.drive_off(),
        Some("wait") => {
            let ms = u64::try_from(number(words.next())?).unwrap_or(0);
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        Some("noise") => scale.set_noise_kg(number(words.next())?),
        Some("fault") => set_fault(faults, words.next().unwrap_or(""))?,
        Some("status") => {
            let sample = scale.sample();
            println!(
                "{} kg, {}, tare {} kg",
                sample.weight_kg,
                if sample.stable { "stable" } else { "in motion" },
                scale.tare_kg()
            );
        }
        Some("alibi") => {
            for record in scale.alibi_records() {
                println!(
                    "{:>6}  {} {}  gross {} kg  tare {} kg",
                    record.id, record.date, record.time, record.gross_kg, record.tare_kg
                );
            }
        }
        Some("quit" | "exit") => return Ok(false),
        Some(other) => println!("unknown command {other:?}"),
    }
    Ok(true)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let params = TruckScaleParams {
        division_kg: args.division_kg,
        ..TruckScaleParams::default()
    };
    let addresses = if args.addresses.is_empty() {
        vec![u8::from(args.protocol == Protocol::Systec)]
    } else {
        args.addresses.clone()
    };
    let devices: Vec<(u8, TruckScale)> = addresses
        .iter()
        .map(|&a| (a, TruckScale::new(params.clone())))
        .collect();
    let scale = devices
        .first()
        .map(|(_, s)| s.clone())
        .context("no device")?;
    let mut config = ScaleConfig::new(
        "sim",
        TransportConfig::Tcp {
            address: String::new(),
            connect_timeout_ms: 1,
        },
    )
    .with_protocol(args.protocol);
    if args.toledo_checksum {
        config.toledo = Some(ToledoOptions {
            checksum: true,
            ..ToledoOptions::default()
        });
    }
    let factory = multidrop_factory(&config, devices);
    let faults = Arc::new(Mutex::new(Faults::default()));
    // Either handle keeps its simulator alive until main returns.
    let _pty;
    let _tcp;
    match &args.tcp {
        Some(addr) => {
            let (local, task) = spawn_tcp_terminal(addr, factory, Arc::clone(&faults)).await?;
            println!("{} terminal listening on tcp {local}", args.protocol);
            _tcp = Some(task);
        }
        None => {
            let pty = PtyScale::spawn_terminal(factory, Arc::clone(&faults))?;
            println!("{} terminal on {}", args.protocol, pty.path().display());
            _pty = Some(pty);
        }
    }
    println!(
        "commands: on <kg> | off | wait <ms> | noise <kg> | fault <kind> | status | alibi | quit"
    );
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Some(line) = lines.next_line().await? {
        match run_command(line.trim(), &scale, &faults).await {
            Ok(true) => {}
            Ok(false) => return Ok(()),
            Err(error) => println!("error: {error:#}"),
        }
    }
    // Stdin closed (a finished script): keep serving until interrupted.
    tokio::signal::ctrl_c().await?;
    Ok(())
}
