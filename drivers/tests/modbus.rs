//! The Modbus poller against the simulator over real sockets and a real
//! pseudo-terminal: values in every table and order, writes, exceptions
//! told apart from dead devices, and a shared RS-485 line where one dead
//! device does not slow the live ones down.

#![allow(clippy::unwrap_used, reason = "a failed step is the test failure")]

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::sync::mpsc;
use valeo_drivers::modbus::ascii::crc16;
use valeo_drivers::modbus::map::{LineConfig, Value};
use valeo_drivers::modbus::poller::{self, DeviceSnapshot, LineHandle, PointChange, Quality};
use valeo_drivers::modbus::sim::{
    Behaviour, PtyModbus, SimBank, SimDevice, Tables, serve_rtu_tcp, serve_tcp,
};

fn meter() -> SimDevice {
    let tables = Tables {
        // 230.5 V as f32 in CDAB (word-swapped): 0x43668000 → [0x8000, 0x4366].
        holding_registers: BTreeMap::from([(0, 0x8000), (1, 0x4366), (2, 17), (3, 0)]),
        input_registers: BTreeMap::from([(10, 0x4F53), (11, 0x2D31), (12, 650)]),
        coils: BTreeMap::from([(0, false), (1, true)]),
        discrete_inputs: BTreeMap::from([(0, true)]),
    };
    SimDevice::new(1, tables)
}

const METER_POINTS: &str = r#"
[[devices.points]]
name = "voltage"
table = "holding_register"
address = 1
type = "f32"
order = "CDAB"
unit = "V"
[[devices.points]]
name = "setpoint"
table = "holding_register"
address = 3
type = "u16"
access = "rw"
deadband = 5
[[devices.points]]
name = "flags_bit1"
table = "holding_register"
address = 4
type = "bool"
bit = 1
access = "rw"
[[devices.points]]
name = "tag"
table = "input_register"
address = 11
type = "string"
registers = 2
[[devices.points]]
name = "temperature"
table = "input_register"
address = 13
type = "u16"
scale = 0.1
offset = -40
unit = "°C"
record = true
[[devices.points]]
name = "light_red"
table = "coil"
address = 1
type = "bool"
access = "rw"
[[devices.points]]
name = "light_green"
table = "coil"
address = 2
type = "bool"
access = "rw"
[[devices.points]]
name = "door"
table = "discrete_input"
address = 1
type = "bool"
"#;

fn tcp_line(address: &str) -> LineConfig {
    toml::from_str(&format!(
        "id = \"tcp-1\"\n[transport]\nkind = \"tcp\"\naddress = \"{address}\"\n\
         [[devices]]\nid = \"meter\"\nunit = 1\naddress_base = 1\npoll_interval_ms = 50\ntimeout_ms = 300\n{METER_POINTS}"
    ))
    .unwrap()
}

async fn snapshot_where(
    line: &LineHandle,
    device: usize,
    what: &str,
    check: impl Fn(&DeviceSnapshot) -> bool,
) -> DeviceSnapshot {
    let mut rx = line.devices()[device].1.clone();
    let waited = tokio::time::timeout(Duration::from_secs(5), async {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_table_and_order_reads_and_writes_come_back() {
    let device = meter();
    // Manual addresses count from 1: "setpoint" (3) is protocol address 2.
    device.set_holding(2, 100);
    let (addr, _server) = serve_tcp("127.0.0.1:0", SimBank::new(vec![device.clone()]))
        .await
        .unwrap();
    let line_config = tcp_line(&addr.to_string());
    line_config.validate().unwrap();
    let (tx, mut changes) = mpsc::channel(1024);
    let line = poller::spawn(line_config, tx);
    let s = snapshot_where(&line, 0, "all points read", |s| {
        s.points.len() == 8 && s.points.values().all(|p| p.quality == Quality::Good)
    })
    .await;
    assert_eq!(value(&s, "voltage"), Some(Value::Float(230.5)));
    assert_eq!(value(&s, "setpoint"), Some(Value::UInt(100)));
    assert_eq!(value(&s, "flags_bit1"), Some(Value::Bool(false)));
    assert_eq!(value(&s, "tag"), Some(Value::Text("OS-1".into())));
    let Some(Value::Float(t)) = value(&s, "temperature") else {
        panic!()
    };
    assert!((t - 25.0).abs() < 1e-9, "{t}");
    assert_eq!(value(&s, "light_red"), Some(Value::Bool(false)));
    assert_eq!(value(&s, "light_green"), Some(Value::Bool(true)));
    assert_eq!(value(&s, "door"), Some(Value::Bool(true)));
    assert!(
        s.health.requests_total >= 3 && s.health.success_rate == 1.0,
        "{:?}",
        s.health
    );

    // Writes are confirmed by the device and read back.
    line.write("meter", "setpoint", Value::UInt(250))
        .await
        .unwrap();
    line.write("meter", "light_red", Value::Bool(true))
        .await
        .unwrap();
    line.write("meter", "flags_bit1", Value::Bool(true))
        .await
        .unwrap();
    assert_eq!(device.holding(2), Some(250));
    assert_eq!(device.holding(3).map(|v| v & 0b10), Some(0b10));
    // A device without function 22: the bit is set by read-modify-write,
    // the register's other bits stay.
    device.set_holding(3, 0b1001);
    device.set_behaviour(Behaviour {
        no_mask_write: true,
        ..Behaviour::default()
    });
    line.write("meter", "flags_bit1", Value::Bool(true))
        .await
        .unwrap();
    assert_eq!(device.holding(3), Some(0b1011));
    line.write("meter", "flags_bit1", Value::Bool(false))
        .await
        .unwrap();
    assert_eq!(device.holding(3), Some(0b1001));
    device.set_behaviour(Behaviour::default());
    assert_eq!(device.coil(0), Some(true));
    snapshot_where(&line, 0, "written values read back", |s| {
        value(s, "setpoint") == Some(Value::UInt(250))
            && value(s, "light_red") == Some(Value::Bool(true))
    })
    .await;
    let refused = line
        .write("meter", "voltage", Value::Float(1.0))
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("read-only"), "{refused}");
    let refused = line
        .write("meter", "setpoint", Value::Int(-3))
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("outside"), "{refused}");
    let refused = line
        .write("meter", "nope", Value::Int(1))
        .await
        .unwrap_err();
    assert!(
        refused.to_string().contains("no point \"nope\""),
        "{refused}"
    );

    // Changes: every point once at first; a setpoint move inside its
    // deadband (5) is not reported, one beyond it is.
    let mut seen: Vec<PointChange> = Vec::new();
    while let Ok(change) = changes.try_recv() {
        seen.push(change);
    }
    assert!(
        seen.iter().any(|c| c.point == "temperature" && c.record),
        "{seen:?}"
    );
    device.set_holding(2, 252);
    tokio::time::sleep(Duration::from_millis(300)).await;
    device.set_holding(2, 270);
    let reported = tokio::time::timeout(Duration::from_secs(3), async {
        loop {
            let c = changes.recv().await.unwrap();
            if c.point == "setpoint" {
                return c;
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(
        reported.reading.value,
        Some(Value::UInt(270)),
        "252 was inside the deadband"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exception_is_an_answer_not_a_dead_device() {
    let device = meter();
    let (addr, _server) = serve_tcp("127.0.0.1:0", SimBank::new(vec![device.clone()]))
        .await
        .unwrap();
    device.set_behaviour(Behaviour {
        exception: Some(2),
        ..Behaviour::default()
    });
    let (tx, _changes) = mpsc::channel(1024);
    let line = poller::spawn(tcp_line(&addr.to_string()), tx);
    let s = snapshot_where(&line, 0, "exceptions counted", |s| {
        s.health.exceptions_total >= 6
    })
    .await;
    assert!(!s.health.degraded, "{:?}", s.health);
    assert_eq!(s.health.requests_failed, 0);
    let voltage = &s.points["voltage"];
    assert_eq!(voltage.quality, Quality::Bad);
    assert!(
        voltage.error.as_deref().unwrap().contains("exception"),
        "{voltage:?}"
    );
    let write = line
        .write("meter", "setpoint", Value::UInt(1))
        .await
        .unwrap_err();
    assert!(write.to_string().contains("exception"), "{write}");
    device.set_behaviour(Behaviour::default());
    snapshot_where(&line, 0, "good again", |s| {
        s.points["voltage"].quality == Quality::Good
    })
    .await;
}

fn rtu_device(id: &str, unit: u8, interval_ms: u64) -> String {
    format!(
        "[[devices]]\nid = \"{id}\"\nunit = {unit}\naddress_base = 0\npoll_interval_ms = {interval_ms}\n\
         timeout_ms = 150\nretries = 0\ndegrade_after_failures = 2\ndegrade_ms = 60000\n\
         [[devices.points]]\nname = \"level\"\ntable = \"holding_register\"\naddress = 0\ntype = \"u16\"\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_device_on_a_shared_line_does_not_slow_the_live_ones() {
    let live = |unit| {
        let tables = Tables {
            holding_registers: BTreeMap::from([(0, u16::from(unit) * 100)]),
            ..Tables::default()
        };
        SimDevice::new(unit, tables)
    };
    let (moisture, lights) = (live(1), live(2));
    // Unit 3 is configured but nothing answers to it on the line.
    let pty = PtyModbus::spawn(SimBank::new(vec![moisture.clone(), lights.clone()])).unwrap();
    let text = format!(
        "id = \"rs485\"\n[transport]\nkind = \"serial\"\npath = \"{}\"\nbaud = 19200\n{}{}{}",
        pty.path().display(),
        rtu_device("moisture", 1, 100),
        rtu_device("lights", 2, 100),
        rtu_device("dead", 3, 100),
    );
    let config: LineConfig = toml::from_str(&text).unwrap();
    config.validate().unwrap();
    let (tx, _changes) = mpsc::channel(1024);
    let line = poller::spawn(config, tx);
    let dead = snapshot_where(&line, 2, "the dead device degraded", |s| s.health.degraded).await;
    assert!(dead.health.timeouts_total >= 2, "{:?}", dead.health);
    // Measure the live devices over two seconds once the dead one rests.
    let before = (moisture.requests_total(), lights.requests_total());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let polls = (
        moisture.requests_total() - before.0,
        lights.requests_total() - before.1,
    );
    // 100 ms interval → 20 polls in 2 s; allow scheduling noise.
    assert!(
        polls.0 >= 17 && polls.1 >= 17,
        "live devices kept their interval: {polls:?}"
    );
    let s = snapshot_where(&line, 0, "moisture read", |s| {
        s.points.contains_key("level")
    })
    .await;
    assert_eq!(value(&s, "level"), Some(Value::UInt(100)));
    let dead_now = line.devices()[2].1.borrow().clone();
    assert_eq!(
        dead_now.health.timeouts_total, dead.health.timeouts_total,
        "a degraded device is not asked"
    );
    assert_eq!(dead_now.points["level"].quality, Quality::Bad);
}

/// RTU frames over TCP (a serial device server in transparent mode): bus
/// rules apply, so a unit nobody answers to is silence, not the gateway
/// exception of Modbus TCP, and it degrades while the live one is read and
/// written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rtu_over_tcp_reads_writes_and_keeps_bus_rules() {
    let meter = meter();
    let (addr, _server) = serve_rtu_tcp("127.0.0.1:0", SimBank::new(vec![meter.clone()]))
        .await
        .unwrap();
    let text = format!(
        "id = \"nport\"\nframing = \"rtu\"\n[transport]\nkind = \"tcp\"\naddress = \"{addr}\"\n\
         [[devices]]\nid = \"meter\"\nunit = 1\naddress_base = 1\npoll_interval_ms = 50\ntimeout_ms = 300\n{METER_POINTS}{}",
        rtu_device("dead", 3, 100),
    );
    let config: LineConfig = toml::from_str(&text).unwrap();
    config.validate().unwrap();
    let (tx, _changes) = mpsc::channel(1024);
    let line = poller::spawn(config, tx);
    let s = snapshot_where(&line, 0, "the meter read", |s| {
        s.points
            .get("voltage")
            .is_some_and(|p| p.quality == Quality::Good)
    })
    .await;
    assert_eq!(value(&s, "voltage"), Some(Value::Float(230.5)));
    line.write("meter", "setpoint", Value::UInt(42))
        .await
        .unwrap();
    assert_eq!(meter.holding(2), Some(42));
    let dead = snapshot_where(&line, 1, "the absent unit degraded", |s| s.health.degraded).await;
    assert!(dead.health.timeouts_total >= 2, "{:?}", dead.health);
    assert_eq!(dead.health.exceptions_total, 0, "silence, not an exception");
}

/// A device whose replies arrive damaged: a flipped CRC byte, then a reply
/// of the wrong length. Each is a failed request (never a value), the line
/// recovers, and the next good reply is read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_replies_are_failures_not_values() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_serial::{SerialPort, SerialStream};

    let (mut device, port) = SerialStream::pair().unwrap();
    let path = port.name().unwrap();
    // The wire side: reply to each 8-byte read request of unit 1 (FC 3,
    // one register) with 0x002A, damaged on the first two requests.
    tokio::spawn(async move {
        let _keep_open = port;
        let mut request = [0u8; 8];
        for n in 0u32.. {
            if device.read_exact(&mut request).await.is_err() {
                return;
            }
            let mut reply = vec![0x01, 0x03, 0x02, 0x00, 0x2A];
            let crc = crc16(&reply);
            reply.extend_from_slice(&crc.to_le_bytes());
            match n {
                0 => reply[6] ^= 0xFF,  // bad CRC
                1 => reply.truncate(4), // too short: the frame never completes
                _ => {}
            }
            if device.write_all(&reply).await.is_err() {
                return;
            }
        }
    });
    let config: LineConfig = toml::from_str(&format!(
        "id = \"noisy\"\n[transport]\nkind = \"serial\"\npath = \"{path}\"\nbaud = 19200\n{}",
        "[[devices]]\nid = \"d\"\nunit = 1\naddress_base = 0\npoll_interval_ms = 50\ntimeout_ms = 200\nretries = 0\ndegrade_after_failures = 5\n\
         [[devices.points]]\nname = \"v\"\ntable = \"holding_register\"\naddress = 0\ntype = \"u16\"\n"
    ))
    .unwrap();
    let (tx, _changes) = mpsc::channel(64);
    let line = poller::spawn(config, tx);
    let s = snapshot_where(&line, 0, "a good value after the damaged ones", |s| {
        s.points
            .get("v")
            .is_some_and(|p| p.quality == Quality::Good)
    })
    .await;
    assert_eq!(value(&s, "v"), Some(Value::UInt(42)));
    assert!(
        s.health.requests_failed >= 2,
        "both damaged replies failed: {:?}",
        s.health
    );
    assert!(!s.health.degraded);
}
