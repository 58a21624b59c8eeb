//! `MtSicsClient` against the MT-SICS simulator over `tokio::io::duplex` (paused time), a real
//! pty (`PtyScale` + serial transport) and TCP (`spawn_tcp` + TCP transport).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use valeo_drivers::scale::mtsics::MtSicsClient;
use valeo_drivers::scale::{ScaleError, Weight};
use valeo_drivers::sim::mtsics::SERIAL_NUMBER;
use valeo_drivers::sim::{Faults, PtyScale, TruckScale, TruckScaleParams, serve, spawn_tcp};
use valeo_drivers::transport::{self, FlowControl, Parity, TransportConfig};

/// Settles 2000 ms after drive_on: longer than the simulator's 1500 ms wait for stability,
/// so an `S` sent right away is refused, and one sent after that succeeds.
fn params() -> TruckScaleParams {
    TruckScaleParams {
        ramp_ms: 1000,
        settle_ms: 1000,
        ..TruckScaleParams::default()
    }
}

/// Above the simulator's stability wait, short enough to keep real-time tests quick.
const RESPONSE_TIMEOUT_MS: u64 = 2500;

/// The same scenario on every transport.
async fn scenario<T>(io: T, scale: &TruckScale, faults: &Mutex<Faults>)
where
    T: AsyncRead + AsyncWrite + Unpin + Send,
{
    let mut client = MtSicsClient::new(io, RESPONSE_TIMEOUT_MS);
    assert_eq!(client.serial_number().await.unwrap(), SERIAL_NUMBER);
    assert!(client.device_data().await.unwrap().contains("60000 kg"));
    let empty = client.stable_weight().await.unwrap();
    assert_eq!(empty.net, Some(Weight::kg(0)));

    scale.drive_on(12_340);
    let moving = client.immediate_weight().await.unwrap();
    assert!(!moving.stable);
    assert!(matches!(
        client.stable_weight().await,
        Err(ScaleError::NotStable)
    ));
    // By now 1500 ms have passed; the bridge settles within the next stability wait.
    let reading = client.stable_weight().await.unwrap();
    assert!(reading.stable);
    assert_eq!(reading.net, Some(Weight::kg(12_340)));
    assert_eq!(reading.raw, b"S S      12340 kg\r\n");

    faults.lock().unwrap().garbage_before_reply = true;
    let skipped_before = client.skipped_lines_total();
    let reading = client.stable_weight().await.unwrap();
    assert_eq!(reading.net, Some(Weight::kg(12_340)));
    assert_eq!(client.skipped_lines_total(), skipped_before + 1);

    *faults.lock().unwrap() = Faults {
        silent: true,
        ..Faults::default()
    };
    match client.immediate_weight().await {
        Err(ScaleError::Timeout { timeout_ms }) => assert_eq!(timeout_ms, RESPONSE_TIMEOUT_MS),
        other => panic!("expected Timeout, got {other:?}"),
    }
    faults.lock().unwrap().silent = false;
    let reading = client.immediate_weight().await.unwrap();
    assert_eq!(reading.net, Some(Weight::kg(12_340)));
}

fn simulator() -> (TruckScale, Arc<Mutex<Faults>>) {
    (
        TruckScale::new(params()),
        Arc::new(Mutex::new(Faults::default())),
    )
}

#[tokio::test(start_paused = true)]
async fn client_over_duplex() {
    let (scale, faults) = simulator();
    let (client_io, sim_io) = tokio::io::duplex(4096);
    tokio::spawn(serve(sim_io, scale.clone(), Arc::clone(&faults)));
    scenario(client_io, &scale, &faults).await;
}

fn serial_config(path: PathBuf) -> TransportConfig {
    TransportConfig::Serial {
        path,
        baud: 9600,
        data_bits: 8,
        parity: Parity::None,
        stop_bits: 1,
        flow_control: FlowControl::None,
    }
}

#[tokio::test]
async fn client_over_pty() {
    let (scale, faults) = simulator();
    let pty = PtyScale::spawn(scale.clone(), Arc::clone(&faults)).unwrap();
    assert!(pty.path().starts_with("/dev"), "{}", pty.path().display());
    let io = transport::connect(&serial_config(pty.path().to_owned()))
        .await
        .unwrap();
    scenario(io, &scale, &faults).await;
}

#[tokio::test]
async fn pty_survives_client_reconnects_without_stale_replies() {
    let scale = TruckScale::new(TruckScaleParams {
        ramp_ms: 0,
        settle_ms: 0,
        ..TruckScaleParams::default()
    });
    let pty = PtyScale::spawn(scale.clone(), Arc::new(Mutex::new(Faults::default()))).unwrap();
    let config = serial_config(pty.path().to_owned());
    for load_kg in [1000, 2000, 3000] {
        scale.drive_on(load_kg);
        let io = transport::connect(&config).await.unwrap();
        let mut client = MtSicsClient::new(io, RESPONSE_TIMEOUT_MS);
        let reading = client.stable_weight().await.unwrap();
        assert_eq!(reading.net, Some(Weight::kg(load_kg)));
        // Leave a reply nobody reads: it must not be taken as the next connection's answer.
        let mut io = client.into_inner();
        io.write_all(b"S\r\n").await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        drop(io);
    }
}

#[tokio::test]
async fn client_over_tcp() {
    let (scale, faults) = simulator();
    let (addr, server) = spawn_tcp("127.0.0.1:0", scale.clone(), Arc::clone(&faults))
        .await
        .unwrap();
    let config = TransportConfig::Tcp {
        address: addr.to_string(),
        connect_timeout_ms: 1000,
    };
    let io = transport::connect(&config).await.unwrap();
    scenario(io, &scale, &faults).await;
    server.abort();
}

#[tokio::test]
async fn tcp_connect_to_closed_port_fails() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let config = TransportConfig::Tcp {
        address: addr.to_string(),
        connect_timeout_ms: 1000,
    };
    assert!(transport::connect(&config).await.is_err());
}
