//! `valeo-modbus-sim`: a simulated Modbus device for installers, demos and
//! tests with other Modbus tools (mbpoll, pymodbus). It serves Modbus TCP on
//! an address, Modbus RTU on a pseudo-terminal (printing the device path to
//! open), or RTU frames over TCP like a serial device server, until killed.

use std::collections::BTreeMap;

use anyhow::{Context, bail};
use valeo_drivers::modbus::sim::{
    Behaviour, PtyModbus, SimBank, SimDevice, Tables, serve_rtu_tcp, serve_tcp,
};

const USAGE: &str =
    "usage: valeo-modbus-sim (--tcp HOST:PORT | --rtu | --rtu-tcp HOST:PORT) [--unit N] \
[--holding A=V,...] [--input A=V,...] [--coils A=0|1,...] [--discrete A=0|1,...] [--changing]

Addresses are 0-based protocol addresses. Without table options: holding 0..=9 = 100..=109,
input 0..=9 = 200..=209, coils and discrete inputs 0..=9 off. --changing increments every
input register on each read.";

#[derive(Debug, Default)]
struct Args {
    tcp: Option<String>,
    rtu: bool,
    rtu_tcp: Option<String>,
    unit: u8,
    tables: Option<Tables>,
    changing: bool,
}

fn pairs(text: &str) -> anyhow::Result<Vec<(u16, u16)>> {
    text.split(',')
        .map(|pair| {
            let (a, v) = pair
                .split_once('=')
                .with_context(|| format!("{pair:?} is not ADDRESS=VALUE"))?;
            Ok((a.trim().parse()?, v.trim().parse()?))
        })
        .collect()
}

fn parse(mut args: impl Iterator<Item = String>) -> anyhow::Result<Args> {
    let mut parsed = Args {
        unit: 1,
        ..Args::default()
    };
    while let Some(arg) = args.next() {
        let mut value = || args.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--tcp" => parsed.tcp = Some(value()?),
            "--rtu" => parsed.rtu = true,
            "--rtu-tcp" => parsed.rtu_tcp = Some(value()?),
            "--unit" => parsed.unit = value()?.parse().context("--unit")?,
            "--changing" => parsed.changing = true,
            "--holding" | "--input" | "--coils" | "--discrete" => {
                let pairs = pairs(&value()?).with_context(|| arg.clone())?;
                let tables = parsed.tables.get_or_insert_with(Tables::default);
                for (a, v) in pairs {
                    match arg.as_str() {
                        "--holding" => tables.holding_registers.insert(a, v).map(drop),
                        "--input" => tables.input_registers.insert(a, v).map(drop),
                        "--coils" => tables.coils.insert(a, v != 0).map(drop),
                        _ => tables.discrete_inputs.insert(a, v != 0).map(drop),
                    };
                }
            }
            "-h" | "--help" => bail!("{USAGE}"),
            other => bail!("unknown argument {other:?}\n{USAGE}"),
        }
    }
    let modes = [parsed.tcp.is_some(), parsed.rtu, parsed.rtu_tcp.is_some()];
    if modes.iter().filter(|m| **m).count() != 1 {
        bail!("give exactly one of --tcp, --rtu and --rtu-tcp\n{USAGE}");
    }
    Ok(parsed)
}

fn default_tables() -> Tables {
    Tables {
        holding_registers: (0..10).map(|a| (a, 100 + a)).collect(),
        input_registers: (0..10).map(|a| (a, 200 + a)).collect(),
        coils: (0..10).map(|a| (a, false)).collect::<BTreeMap<_, _>>(),
        discrete_inputs: (0..10).map(|a| (a, false)).collect(),
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = parse(std::env::args().skip(1))?;
    let device = SimDevice::new(args.unit, args.tables.unwrap_or_else(default_tables));
    device.set_behaviour(Behaviour {
        changing: args.changing,
        ..Behaviour::default()
    });
    let bank = SimBank::new(vec![device]);
    // The first line tells a waiting script where to connect.
    let _held = match (args.tcp, args.rtu_tcp) {
        (Some(addr), _) => {
            let (local, task) = serve_tcp(&addr, bank).await?;
            println!("listening on {local}");
            (Some(task), None)
        }
        (None, Some(addr)) => {
            let (local, task) = serve_rtu_tcp(&addr, bank).await?;
            println!("rtu over tcp on {local}");
            (Some(task), None)
        }
        (None, None) => {
            let pty = PtyModbus::spawn(bank)?;
            println!("rtu on {}", pty.path().display());
            (None, Some(pty))
        }
    };
    tokio::signal::ctrl_c().await?;
    Ok(())
}
