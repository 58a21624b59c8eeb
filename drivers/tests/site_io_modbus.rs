//! Site I/O on a Modbus light-and-barrier controller, through the boundaries: the interlock
//! drives coils of our simulator over real Modbus TCP, a remote I/O discrete input serves as a
//! position sensor, and every way the field bus can let the interlock down (a device that
//! resets its coils, a device that stops answering) ends with the site held safe.

#![allow(clippy::unwrap_used, reason = "a failed step is the test failure")]

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use valeo_drivers::modbus::map::LineConfig;
use valeo_drivers::modbus::poller::{self, CHANGE_QUEUE_CAPACITY, LineHandle};
use valeo_drivers::modbus::sim::{Behaviour, SimBank, SimDevice, Tables, serve_tcp};
use valeo_drivers::site_io::{
    Barrier, InterlockState, Light, PinSources, SiteIoConfig, SiteIoError, SiteIoHandle,
    SiteIoStatus, spawn_with,
};

/// Coils 0..=5: entry red/green, exit red/green, entry/exit barrier; discrete input 0: the
/// induction loop under the platform (true = vehicle over the loop's edge).
const CONTROLLER_POINTS: &str = r#"
[[devices]]
id = "lights"
unit = 2
address_base = 0
poll_interval_ms = 100
timeout_ms = 300
retries = 0
degrade_after_failures = 2
degrade_ms = 1000
"#;

const COILS: [&str; 6] = [
    "entry_red",
    "entry_green",
    "exit_red",
    "exit_green",
    "entry_barrier",
    "exit_barrier",
];

fn line_config(address: &str) -> LineConfig {
    let mut text = format!(
        "id = \"site\"\n[transport]\nkind = \"tcp\"\naddress = \"{address}\"\n{CONTROLLER_POINTS}"
    );
    for (address, name) in COILS.iter().enumerate() {
        text.push_str(&format!(
            "[[devices.points]]\nname = \"{name}\"\ntable = \"coil\"\naddress = {address}\ntype = \"bool\"\naccess = \"rw\"\n"
        ));
    }
    text.push_str(
        "[[devices.points]]\nname = \"loop\"\ntable = \"discrete_input\"\naddress = 0\ntype = \"bool\"\n\
         [[devices.points]]\nname = \"mode\"\ntable = \"holding_register\"\naddress = 0\ntype = \"u16\"\naccess = \"rw\"\n",
    );
    let config: LineConfig = toml::from_str(&text).unwrap();
    config.validate().unwrap();
    config
}

fn site_config() -> SiteIoConfig {
    let pin =
        |point: &str| format!("{{ kind = \"modbus\", device = \"lights\", point = \"{point}\" }}");
    let text = format!(
        "input_poll_ms = 20\n\
         entry_light = {{ red = {}, green = {} }}\n\
         exit_light = {{ red = {}, green = {} }}\n\
         entry_barrier = {}\n\
         exit_barrier = {}\n\
         [[position_sensors]]\nname = \"loop\"\npin = {}\nblocked_when = \"high\"\n",
        pin("entry_red"),
        pin("entry_green"),
        pin("exit_red"),
        pin("exit_green"),
        pin("entry_barrier"),
        pin("exit_barrier"),
        pin("loop"),
    );
    toml::from_str(&text).unwrap()
}

struct Site {
    device: SimDevice,
    line: LineHandle,
    _server: tokio::task::JoinHandle<()>,
    _changes: mpsc::Receiver<poller::PointChange>,
}

impl Site {
    /// The site interlock with every light, barrier and the loop on this controller.
    fn interlock(&self) -> SiteIoHandle {
        let sources = PinSources {
            modbus: vec![self.line.clone()],
            ..PinSources::default()
        };
        spawn_with(site_config(), &sources).unwrap()
    }
}

async fn controller(initial_coils: bool) -> Site {
    let device = SimDevice::new(
        2,
        Tables {
            coils: (0..6).map(|a| (a, initial_coils)).collect(),
            discrete_inputs: BTreeMap::from([(0, false)]),
            holding_registers: BTreeMap::from([(0, 0)]),
            ..Tables::default()
        },
    );
    let (addr, server) = serve_tcp("127.0.0.1:0", SimBank::new(vec![device.clone()]))
        .await
        .unwrap();
    let (tx, changes) = mpsc::channel(CHANGE_QUEUE_CAPACITY);
    let line = poller::spawn(line_config(&addr.to_string()), tx);
    Site {
        device,
        line,
        _server: server,
        _changes: changes,
    }
}

async fn wait_status(
    status: &mut watch::Receiver<SiteIoStatus>,
    what: &str,
    ok: impl Fn(&SiteIoStatus) -> bool,
) -> SiteIoStatus {
    let found = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if ok(&status.borrow_and_update()) {
                return status.borrow().clone();
            }
            status.changed().await.unwrap();
        }
    })
    .await;
    found.unwrap_or_else(|_| panic!("timed out waiting for {what}; last: {:?}", status.borrow()))
}

/// The coils as the device holds them, in `COILS` order.
fn coils(device: &SimDevice) -> [bool; 6] {
    std::array::from_fn(|a| device.coil(a as u16).unwrap())
}

async fn wait_coils(device: &SimDevice, want: [bool; 6]) {
    let reached = tokio::time::timeout(Duration::from_secs(10), async {
        while coils(device) != want {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(
        reached.is_ok(),
        "coils {:?}, wanted {want:?} ({COILS:?})",
        coils(device)
    );
}

const SAFE: [bool; 6] = [true, false, true, false, false, false];
const ENTRY_OPEN: [bool; 6] = [false, true, true, false, true, false];
const EXIT_OPEN: [bool; 6] = [true, false, false, true, false, true];

#[tokio::test]
async fn the_interlock_drives_the_coils_and_reads_the_loop() {
    // Every coil starts on: the first writes must make the site safe before anything else.
    let site = controller(true).await;
    let handle = site.interlock();
    let mut status = handle.status();
    handle.platform_weight_kg(0.0).await;
    // Green is shown only once the device confirmed the barrier open and the lamp lit.
    let empty = wait_status(&mut status, "an empty platform, entry open", |s| {
        s.state == InterlockState::Free && !s.pin_fault && s.entry_light == Light::Green
    })
    .await;
    assert_eq!(empty.entry_barrier, Barrier::Open);
    assert_eq!(coils(&site.device), ENTRY_OPEN);

    // A truck drives on, still over the loop: not positioned.
    site.device.set_discrete(0, true);
    handle.platform_weight_kg(24_000.0).await;
    wait_status(&mut status, "the loop interrupted", |s| {
        s.sensors.iter().any(|x| x.name == "loop" && x.blocked)
    })
    .await;
    assert!(handle.begin_weighing().await.is_err());
    site.device.set_discrete(0, false);
    wait_status(&mut status, "positioned", |s| s.positioned).await;
    wait_coils(&site.device, SAFE).await;

    let guard = handle.begin_weighing().await.unwrap();
    guard.recorded();
    wait_status(&mut status, "released", |s| {
        s.state == InterlockState::Released
    })
    .await;
    wait_coils(&site.device, EXIT_OPEN).await;
}

#[tokio::test]
async fn a_device_that_resets_its_coils_is_a_pin_fault_until_rewritten() {
    let site = controller(false).await;
    let handle = site.interlock();
    let mut status = handle.status();
    handle.platform_weight_kg(0.0).await;
    wait_status(&mut status, "entry open", |s| {
        s.entry_light == Light::Green && !s.pin_fault
    })
    .await;
    wait_coils(&site.device, ENTRY_OPEN).await;

    // A power cycle of the controller: the barrier drops, green stays lit.
    site.device.set_coil(4, false);
    let faulted = wait_status(&mut status, "a pin fault", |s| s.pin_fault).await;
    assert_eq!(
        (faulted.entry_light, faulted.entry_barrier),
        (Light::Red, Barrier::Closed)
    );
    let error = faulted.last_pin_error.unwrap();
    assert!(
        error.contains("entry_barrier") && error.contains("reads false but was set to true"),
        "{error}"
    );
    wait_coils(&site.device, SAFE).await;
    // Once the hold time is over, the interlock opens the entry again.
    wait_status(&mut status, "the fault cleared", |s| {
        !s.pin_fault && s.entry_light == Light::Green
    })
    .await;
    wait_coils(&site.device, ENTRY_OPEN).await;
}

#[tokio::test]
async fn a_silent_controller_holds_the_site_safe_and_refuses_weighing() {
    let site = controller(false).await;
    let handle = site.interlock();
    let mut status = handle.status();
    handle.platform_weight_kg(24_000.0).await;
    wait_status(&mut status, "positioned", |s| s.positioned && !s.pin_fault).await;

    site.device.set_behaviour(Behaviour {
        silent: true,
        ..Behaviour::default()
    });
    let faulted = wait_status(&mut status, "a pin fault", |s| s.pin_fault).await;
    assert!(
        faulted
            .last_pin_error
            .as_deref()
            .unwrap()
            .contains("modbus"),
        "{faulted:?}"
    );
    assert!(handle.begin_weighing().await.is_err());
    assert_eq!(
        (faulted.entry_barrier, faulted.exit_barrier),
        (Barrier::Closed, Barrier::Closed)
    );

    // Back on the bus: the fault clears and weighing is possible again.
    site.device.set_behaviour(Behaviour::default());
    wait_status(&mut status, "the fault cleared", |s| !s.pin_fault).await;
    let guard = handle.begin_weighing().await.unwrap();
    guard.recorded();
}

#[tokio::test]
async fn pins_that_cannot_serve_are_refused_naming_the_field() {
    let site = controller(false).await;
    let sources = PinSources {
        modbus: vec![site.line.clone()],
        ..PinSources::default()
    };
    let cases = [
        (
            "exit_barrier = { kind = \"modbus\", device = \"gate\", point = \"x\" }",
            "site_io.exit_barrier: no [[modbus]] line has a device \"gate\"",
        ),
        (
            "exit_barrier = { kind = \"modbus\", device = \"lights\", point = \"nope\" }",
            "site_io.exit_barrier: modbus device \"lights\" has no point \"nope\"",
        ),
        (
            "exit_barrier = { kind = \"modbus\", device = \"lights\", point = \"mode\" }",
            "site_io.exit_barrier: modbus point lights.mode must be of type bool",
        ),
        (
            "exit_barrier = { kind = \"modbus\", device = \"lights\", point = \"loop\" }",
            "site_io.exit_barrier: modbus point lights.loop drives an output, so it needs access = \"rw\"",
        ),
        (
            "entry_barrier = { kind = \"modbus\", device = \"lights\", point = \"entry_red\" }",
            "modbus point lights.entry_red is already used by site_io.entry_light.red",
        ),
        (
            "exit_barrier = { kind = \"modbus\", device = \"lights\", point = \"x\", max_age_ms = 5 }",
            "site_io.exit_barrier.max_age_ms: must be between 100 and 600000 ms, got 5",
        ),
    ];
    for (pin, expected) in cases {
        let config: SiteIoConfig = toml::from_str(&format!(
            "entry_light = {{ red = {{ kind = \"modbus\", device = \"lights\", point = \"entry_red\" }}, green = {{ kind = \"simulated\" }} }}\n{pin}"
        ))
        .unwrap();
        let error: SiteIoError = spawn_with(config, &sources).unwrap_err();
        assert!(
            error.to_string().contains(expected),
            "{pin}: got {error}, wanted {expected}"
        );
    }
}

/// Lights on one controller, barriers on another that refuses every
/// request: the entry light must never turn green in front of a barrier
/// that did not open. Sampled every 5 ms for two seconds.
#[tokio::test]
async fn green_never_comes_before_the_barrier_opened() {
    let lights = SimDevice::new(
        2,
        Tables {
            coils: (0..4).map(|a| (a, false)).collect(),
            ..Tables::default()
        },
    );
    let gates = SimDevice::new(
        3,
        Tables {
            coils: (0..2).map(|a| (a, false)).collect(),
            ..Tables::default()
        },
    );
    // Server device failure on everything the barrier controller is asked.
    gates.set_behaviour(Behaviour {
        exception: Some(4),
        ..Behaviour::default()
    });
    let (addr, _server) = serve_tcp(
        "127.0.0.1:0",
        SimBank::new(vec![lights.clone(), gates.clone()]),
    )
    .await
    .unwrap();
    let device = |id: &str, unit: u8, coils: &[&str]| {
        let mut text = format!(
            "[[devices]]\nid = \"{id}\"\nunit = {unit}\naddress_base = 0\npoll_interval_ms = 100\ntimeout_ms = 300\nretries = 0\n"
        );
        for (address, name) in coils.iter().enumerate() {
            text.push_str(&format!(
                "[[devices.points]]\nname = \"{name}\"\ntable = \"coil\"\naddress = {address}\ntype = \"bool\"\naccess = \"rw\"\n"
            ));
        }
        text
    };
    let text = format!(
        "id = \"site\"\n[transport]\nkind = \"tcp\"\naddress = \"{addr}\"\n{}{}",
        device(
            "lights",
            2,
            &["entry_red", "entry_green", "exit_red", "exit_green"]
        ),
        device("gates", 3, &["entry_barrier", "exit_barrier"]),
    );
    let config: LineConfig = toml::from_str(&text).unwrap();
    config.validate().unwrap();
    let (tx, _changes) = mpsc::channel(CHANGE_QUEUE_CAPACITY);
    let line = poller::spawn(config, tx);
    let pin = |device: &str, point: &str| {
        format!("{{ kind = \"modbus\", device = \"{device}\", point = \"{point}\" }}")
    };
    let site: SiteIoConfig = toml::from_str(&format!(
        "input_poll_ms = 20\nentry_light = {{ red = {}, green = {} }}\nexit_light = {{ red = {}, green = {} }}\nentry_barrier = {}\nexit_barrier = {}\n",
        pin("lights", "entry_red"),
        pin("lights", "entry_green"),
        pin("lights", "exit_red"),
        pin("lights", "exit_green"),
        pin("gates", "entry_barrier"),
        pin("gates", "exit_barrier"),
    ))
    .unwrap();
    let handle = spawn_with(
        site,
        &PinSources {
            modbus: vec![line],
            ..PinSources::default()
        },
    )
    .unwrap();
    // An empty platform: the interlock wants the entry open and green.
    handle.platform_weight_kg(0.0).await;
    let mut status = handle.status();
    for _ in 0..400 {
        assert_ne!(
            lights.coil(1),
            Some(true),
            "entry green with the barrier refused"
        );
        assert_ne!(status.borrow_and_update().entry_light, Light::Green);
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert!(status.borrow().pin_fault, "{:?}", status.borrow());
    assert_eq!(lights.coil(0), Some(true), "entry red stays lit");
}
