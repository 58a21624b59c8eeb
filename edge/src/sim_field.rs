//! Simulated field devices for demos and trials (`[simulation] modbus =
//! true`): a grain moisture analyzer and a traffic-light controller on one
//! RS-485 line (Modbus RTU on a pseudo-terminal) and ten silo level sensors
//! over Modbus TCP, with the `[[modbus]]` lines that poll them.
//!
//! The light controller (device `lights`) has coils for both lights, both
//! barriers (which the demo's `[site_io]` drives through the interlock) and
//! a yard lamp that the terminal and central may switch.

use std::collections::BTreeMap;

use tokio::task::JoinHandle;
use valeo_drivers::modbus::map::LineConfig;
use valeo_drivers::modbus::sim::{Behaviour, PtyModbus, SimBank, SimDevice, Tables, serve_tcp};

/// Silo level sensors over TCP.
const SILOS: usize = 10;

/// The simulators; they serve as long as this lives.
#[derive(Debug)]
pub struct SimulatedField {
    _line: PtyModbus,
    servers: Vec<JoinHandle<()>>,
    /// The lines that poll the simulators, to add to the agent's config.
    pub lines: Vec<LineConfig>,
}

impl Drop for SimulatedField {
    fn drop(&mut self) {
        for server in &self.servers {
            server.abort();
        }
    }
}

const RS485_DEVICES: &str = r#"
[[devices]]
id = "moisture"
unit = 7
address_base = 1
poll_interval_ms = 2000
[[devices.points]]
name = "moisture"
table = "input_register"
address = 1
type = "u16"
scale = 0.1
unit = "%"
deadband = 0.5
record = true
[[devices.points]]
name = "hectolitre"
table = "input_register"
address = 2
type = "u16"
scale = 0.1
unit = "kg/hl"

[[devices]]
id = "lights"
unit = 2
address_base = 0
poll_interval_ms = 250
[[devices.points]]
name = "entry_red"
table = "coil"
address = 0
type = "bool"
access = "rw"
[[devices.points]]
name = "entry_green"
table = "coil"
address = 1
type = "bool"
access = "rw"
[[devices.points]]
name = "exit_red"
table = "coil"
address = 2
type = "bool"
access = "rw"
[[devices.points]]
name = "exit_green"
table = "coil"
address = 3
type = "bool"
access = "rw"
[[devices.points]]
name = "entry_barrier"
table = "coil"
address = 4
type = "bool"
access = "rw"
[[devices.points]]
name = "exit_barrier"
table = "coil"
address = 5
type = "bool"
access = "rw"
[[devices.points]]
name = "yard_lamp"
table = "coil"
address = 6
type = "bool"
access = "rw"
[[devices.points]]
name = "barrier_fault"
table = "discrete_input"
address = 0
type = "bool"
"#;

fn silo_line(i: usize, port: u16) -> String {
    format!(
        "id = \"silo-{i}\"\n[transport]\nkind = \"tcp\"\naddress = \"127.0.0.1:{port}\"\n\
         [[devices]]\nid = \"silo-{i}\"\nunit = 1\naddress_base = 0\npoll_interval_ms = 1000\n\
         [[devices.points]]\nname = \"level\"\ntable = \"holding_register\"\naddress = 0\ntype = \"u16\"\nscale = 0.01\nunit = \"m\"\ndeadband = 0.05\n\
         [[devices.points]]\nname = \"temperature\"\ntable = \"input_register\"\naddress = 0\ntype = \"i16\"\nscale = 0.1\nunit = \"°C\"\ndeadband = 0.5\n"
    )
}

/// Starts the simulators and returns the lines that poll them.
pub async fn spawn() -> anyhow::Result<SimulatedField> {
    let moisture = SimDevice::new(
        7,
        Tables {
            input_registers: BTreeMap::from([(0, 142), (1, 765)]),
            ..Tables::default()
        },
    );
    // The sample drifts so the demo shows records of changed results.
    moisture.set_behaviour(Behaviour {
        changing: true,
        ..Behaviour::default()
    });
    let lights = SimDevice::new(
        2,
        Tables {
            // Lamps and barriers as a controller comes out of reset: all off.
            coils: (0..7).map(|address| (address, false)).collect(),
            discrete_inputs: BTreeMap::from([(0, false)]),
            ..Tables::default()
        },
    );
    let line = PtyModbus::spawn(SimBank::new(vec![moisture, lights]))
        .map_err(|e| anyhow::anyhow!("cannot create the simulated RS-485 line: {e}"))?;
    let mut lines: Vec<LineConfig> = vec![toml::from_str(&format!(
        "id = \"sim-rs485\"\n[transport]\nkind = \"serial\"\npath = \"{}\"\nbaud = 19200\n{RS485_DEVICES}",
        line.path().display()
    ))?];
    let mut servers = Vec::new();
    for i in 1..=SILOS {
        let silo = SimDevice::new(
            1,
            Tables {
                holding_registers: BTreeMap::from([(0, 250 + 40 * i as u16)]),
                input_registers: BTreeMap::from([(0, 120 + i as u16)]),
                ..Tables::default()
            },
        );
        let (addr, server) = serve_tcp("127.0.0.1:0", SimBank::new(vec![silo])).await?;
        servers.push(server);
        lines.push(toml::from_str(&silo_line(i, addr.port()))?);
    }
    for l in &lines {
        l.validate()?;
    }
    Ok(SimulatedField {
        _line: line,
        servers,
        lines,
    })
}
