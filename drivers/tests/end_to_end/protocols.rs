//! Every protocol's device task against its simulator over a real pty and over TCP: live
//! readings, a legal weighing with the protocol's alibi/ident number, refusals, injected
//! faults, and several devices sharing one RS-485 line with one of them dead.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::wait_for;
use valeo_drivers::scale::device::{self, ScaleConfig};
use valeo_drivers::scale::stability::StabilityConfig;
use valeo_drivers::scale::toledo::ToledoOptions;
use valeo_drivers::scale::{Protocol, ScaleError, Weight};
use valeo_drivers::sim::{
    Faults, PtyScale, TruckScale, TruckScaleParams, factory, multidrop_factory, spawn_tcp_terminal,
};
use valeo_drivers::transport::{FlowControl, Parity, TransportConfig};

fn instant_scale() -> TruckScale {
    TruckScale::new(TruckScaleParams {
        ramp_ms: 0,
        settle_ms: 0,
        ..TruckScaleParams::default()
    })
}

fn serial(path: &std::path::Path) -> TransportConfig {
    TransportConfig::Serial {
        path: path.to_owned(),
        baud: 9600,
        data_bits: 8,
        parity: Parity::None,
        stop_bits: 1,
        flow_control: FlowControl::None,
    }
}

/// A quick config for `protocol`; the transport is filled in by the caller.
fn config(protocol: Protocol, transport: TransportConfig) -> ScaleConfig {
    let mut config = ScaleConfig {
        poll_interval_ms: 30,
        response_timeout_ms: 1800,
        reconnect_backoff_min_ms: 30,
        reconnect_backoff_max_ms: 200,
        handshake: protocol != Protocol::ToledoContinuous,
        division: Some(Weight::kg(20)),
        stability: StabilityConfig {
            min_readings: 3,
            band_divisions: 1,
            window_ms: 200,
        },
        ..ScaleConfig::new(format!("bridge-{protocol}"), transport)
    }
    .with_protocol(protocol);
    if protocol == Protocol::ToledoContinuous {
        config.toledo = Some(ToledoOptions {
            checksum: true,
            ..ToledoOptions::default()
        });
    }
    config.validate().unwrap();
    config
}

/// Where the simulator runs; kept alive for the test's duration.
enum Sim {
    Pty(#[allow(dead_code, reason = "held so the pty lives as long as the test")] PtyScale),
    Tcp(tokio::task::JoinHandle<()>),
}

impl Drop for Sim {
    fn drop(&mut self) {
        if let Sim::Tcp(task) = self {
            task.abort();
        }
    }
}

async fn start(
    protocol: Protocol,
    over_pty: bool,
    scale: &TruckScale,
    faults: Arc<Mutex<Faults>>,
) -> (ScaleConfig, Sim) {
    // The simulator is built from the same config the driver uses, options included.
    let template = config(protocol, serial(std::path::Path::new("/dev/null")));
    let factory = factory(&template, scale.clone());
    if over_pty {
        let pty = PtyScale::spawn_terminal(factory, faults).unwrap();
        let config = ScaleConfig {
            transport: serial(pty.path()),
            ..template
        };
        (config, Sim::Pty(pty))
    } else {
        let (addr, task) = spawn_tcp_terminal("127.0.0.1:0", factory, faults)
            .await
            .unwrap();
        let config = ScaleConfig {
            transport: TransportConfig::Tcp {
                address: addr.to_string(),
                connect_timeout_ms: 1000,
            },
            ..template
        };
        (config, Sim::Tcp(task))
    }
}

/// Reads, registers twice (consecutive alibi numbers where the protocol has them), and is
/// refused on an empty bridge.
async fn reads_and_registers(protocol: Protocol, over_pty: bool) {
    let scale = instant_scale();
    let faults = Arc::new(Mutex::new(Faults::default()));
    let (config, _sim) = start(protocol, over_pty, &scale, faults).await;
    let handle = device::spawn(config);
    let mut status = handle.status();
    wait_for(&mut status, "connection", |s| {
        s.connected && s.readings_total >= 1
    })
    .await;
    match handle.register_weighing(Weight::kg(100)).await {
        // Minimum load is 20 e = 400 kg, above the asked 100 kg.
        Err(ScaleError::BelowMinimumLoad { weight, min }) => {
            assert_eq!(weight, Weight::kg(0));
            assert_eq!(min, Weight::kg(400));
        }
        other => panic!("{protocol}: expected BelowMinimumLoad, got {other:?}"),
    }
    scale.drive_on(24_000);
    let loaded = wait_for(&mut status, "loaded reading", |s| {
        s.last_reading.as_ref().and_then(|r| r.net) == Some(Weight::kg(24_000))
    })
    .await;
    assert_eq!(loaded.errors_total, 0, "{protocol}: {loaded:?}");
    let first = handle.register_weighing(Weight::kg(400)).await.unwrap();
    let second = handle.register_weighing(Weight::kg(400)).await.unwrap();
    assert_eq!(first.weight, Weight::kg(24_000));
    assert_eq!(first.terminal_id, format!("bridge-{protocol}"));
    assert!(!first.raw.is_empty());
    let alibi = |w: &valeo_drivers::scale::LegalWeighing| {
        w.alibi_id
            .as_deref()
            .and_then(|id| id.rsplit('/').next())
            .and_then(|n| n.parse::<u32>().ok())
    };
    match protocol {
        Protocol::Systec | Protocol::Disomat | Protocol::Line => {
            // The terminal stores every registration, so the empty bridge was refused before
            // one was asked for: it took no alibi number, the weighings got 1 and 2.
            let (a, b) = (alibi(&first), alibi(&second));
            assert_eq!(
                (a, b),
                (Some(1), Some(2)),
                "{protocol}: {first:?} {second:?}"
            );
            assert_eq!(scale.alibi_records().len(), 2);
        }
        Protocol::MtSics | Protocol::ToledoContinuous | Protocol::Sma => {
            assert_eq!(first.alibi_id, None);
        }
    }
    if matches!(protocol, Protocol::Systec | Protocol::Disomat) {
        assert!(first.terminal_time.is_some());
    }
    scale.drive_on(70_000);
    let refused = handle.register_weighing(Weight::kg(400)).await;
    assert!(
        matches!(refused, Err(ScaleError::Overload | ScaleError::NotStable)),
        "{protocol}: {refused:?}"
    );
}

macro_rules! protocol_tests {
    ($($name:ident: $protocol:expr,)*) => {
        mod over_pty {
            use super::*;
            $(
                #[tokio::test]
                async fn $name() {
                    reads_and_registers($protocol, true).await;
                }
            )*
        }
        mod over_tcp {
            use super::*;
            $(
                #[tokio::test]
                async fn $name() {
                    reads_and_registers($protocol, false).await;
                }
            )*
        }
    };
}

protocol_tests! {
    mt_sics: Protocol::MtSics,
    toledo_continuous: Protocol::ToledoContinuous,
    sma: Protocol::Sma,
    systec: Protocol::Systec,
    disomat: Protocol::Disomat,
    line: Protocol::Line,
}

#[tokio::test]
async fn wrong_checksums_are_skipped_not_believed() {
    let scale = instant_scale();
    let faults = Arc::new(Mutex::new(Faults {
        wrong_checksum: true,
        ..Faults::default()
    }));
    let (config, _sim) = start(
        Protocol::ToledoContinuous,
        true,
        &scale,
        Arc::clone(&faults),
    )
    .await;
    let handle = device::spawn(config);
    let mut status = handle.status();
    let bad = wait_for(&mut status, "skipped frames", |s| {
        s.skipped_frames_total >= 3
    })
    .await;
    assert_eq!(bad.readings_total, 0);
    faults.lock().unwrap().wrong_checksum = false;
    scale.drive_on(12_000);
    wait_for(&mut status, "readings after the fault", |s| {
        s.last_reading.as_ref().and_then(|r| r.net) == Some(Weight::kg(12_000))
    })
    .await;
}

#[tokio::test]
async fn dropped_bytes_and_silence_degrade_then_recover() {
    let scale = instant_scale();
    let faults = Arc::new(Mutex::new(Faults {
        drop_byte: true,
        ..Faults::default()
    }));
    let (mut config, _sim) = start(Protocol::Disomat, false, &scale, Arc::clone(&faults)).await;
    config.response_timeout_ms = 150;
    config.degrade_after_failures = 2;
    let handle = device::spawn(config);
    let mut status = handle.status();
    let degraded = wait_for(&mut status, "degraded", |s| s.degraded).await;
    assert!(degraded.timeouts_total >= 2);
    *faults.lock().unwrap() = Faults::default();
    let healthy = wait_for(&mut status, "recovery", |s| s.connected && !s.degraded).await;
    assert_eq!(healthy.consecutive_failures, 0);
}

#[tokio::test]
async fn disconnect_fault_reconnects_over_tcp() {
    let scale = instant_scale();
    let faults = Arc::new(Mutex::new(Faults::default()));
    let (config, _sim) = start(Protocol::Sma, false, &scale, Arc::clone(&faults)).await;
    let handle = device::spawn(config);
    let mut status = handle.status();
    wait_for(&mut status, "connection", |s| s.connected).await;
    faults.lock().unwrap().disconnect = true;
    let back = wait_for(&mut status, "reconnect", |s| {
        s.connected && s.reconnects_total >= 1
    })
    .await;
    assert!(back.errors_total >= 1);
}

/// Three DISOMAT devices on one RS-485 line (one pty): addresses 1 and 2 answer, 3 is dead.
/// The dead one degrades; the live ones keep reading and register with their own numbers.
#[tokio::test]
async fn shared_rs485_line_with_a_dead_device() {
    let (one, two) = (instant_scale(), instant_scale());
    let template = config(Protocol::Disomat, serial(std::path::Path::new("/dev/null")));
    let factory = multidrop_factory(&template, vec![(1, one.clone()), (2, two.clone())]);
    let pty = PtyScale::spawn_terminal(factory, Arc::new(Mutex::new(Faults::default()))).unwrap();
    let device_config = |address: u8| ScaleConfig {
        id: format!("bridge-{address}"),
        address: Some(address),
        transport: serial(pty.path()),
        response_timeout_ms: 200,
        degrade_after_failures: 2,
        degraded_poll_interval_max_ms: 1000,
        ..template.clone()
    };
    let handles: Vec<_> = [1, 2, 3]
        .into_iter()
        .map(|a| device::spawn(device_config(a)))
        .collect();
    let mut dead = handles[2].status();
    wait_for(&mut dead, "dead device degraded", |s| s.degraded).await;
    one.drive_on(11_000);
    two.drive_on(22_000);
    for (handle, kg) in handles.iter().zip([11_000, 22_000]) {
        let mut status = handle.status();
        wait_for(&mut status, "live device reading", |s| {
            s.last_reading.as_ref().and_then(|r| r.net) == Some(Weight::kg(kg))
        })
        .await;
        let before = status.borrow().readings_total;
        // Polls keep flowing at roughly the poll interval despite the dead neighbour.
        tokio::time::sleep(Duration::from_millis(600)).await;
        let after = status.borrow().readings_total;
        assert!(after >= before + 3, "{}: {before} -> {after}", handle.id());
        let weighing = handle.register_weighing(Weight::kg(400)).await.unwrap();
        assert_eq!(weighing.weight, Weight::kg(kg));
        assert!(weighing.alibi_id.is_some());
    }
    assert!(matches!(
        handles[2].register_weighing(Weight::kg(400)).await,
        Err(ScaleError::Disconnected | ScaleError::Timeout { .. })
    ));
}
