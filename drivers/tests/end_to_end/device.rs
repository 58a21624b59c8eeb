//! The device task (`scale::device::spawn`) against the TCP simulator: live status,
//! legal weighings, minimum load, bad bytes and reconnecting after the line drops.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::{WAIT_MS, wait_for};
use valeo_drivers::scale::device::{self, ScaleConfig};
use valeo_drivers::scale::{ScaleError, Weight};
use valeo_drivers::sim::{Faults, TruckScale, TruckScaleParams, spawn_tcp};
use valeo_drivers::transport::TransportConfig;

/// A bridge that settles at once, so weighings need no waiting.
fn instant_scale() -> TruckScale {
    TruckScale::new(TruckScaleParams {
        ramp_ms: 0,
        settle_ms: 0,
        ..TruckScaleParams::default()
    })
}

fn config(addr: SocketAddr) -> ScaleConfig {
    ScaleConfig {
        poll_interval_ms: 30,
        response_timeout_ms: 1800,
        reconnect_backoff_min_ms: 30,
        reconnect_backoff_max_ms: 200,
        ..ScaleConfig::new(
            "bridge-1",
            TransportConfig::Tcp {
                address: addr.to_string(),
                connect_timeout_ms: 1000,
            },
        )
    }
}

async fn start(
    scale: &TruckScale,
) -> (SocketAddr, tokio::task::JoinHandle<()>, Arc<Mutex<Faults>>) {
    let faults = Arc::new(Mutex::new(Faults::default()));
    let (addr, server) = spawn_tcp("127.0.0.1:0", scale.clone(), Arc::clone(&faults))
        .await
        .unwrap();
    (addr, server, faults)
}

#[tokio::test]
async fn live_status_follows_the_bridge() {
    let scale = instant_scale();
    let (addr, server, _) = start(&scale).await;
    let handle = device::spawn(config(addr));
    assert_eq!(handle.id(), "bridge-1");
    let mut status = handle.status();
    let first = wait_for(&mut status, "first reading", |s| {
        s.connected && s.readings_total >= 2
    })
    .await;
    assert_eq!(first.last_reading.unwrap().net, Some(Weight::kg(0)));
    assert!(first.last_reading_at.is_some());

    scale.drive_on(24_000);
    let loaded = wait_for(&mut status, "loaded reading", |s| {
        s.last_reading.as_ref().and_then(|r| r.net) == Some(Weight::kg(24_000))
    })
    .await;
    assert!(loaded.last_reading.unwrap().stable);
    assert_eq!(loaded.errors_total, 0);
    assert_eq!(loaded.reconnects_total, 0);
    server.abort();
}

#[tokio::test]
async fn register_weighing_returns_the_stable_weight() {
    let scale = instant_scale();
    let (addr, server, _) = start(&scale).await;
    let handle = device::spawn(config(addr));
    scale.drive_on(24_000);
    wait_for(&mut handle.status(), "connection", |s| s.connected).await;
    let weighing = handle.register_weighing(Weight::kg(400)).await.unwrap();
    assert_eq!(weighing.weight, Weight::kg(24_000));
    assert_eq!(weighing.terminal_id, "bridge-1");
    assert_eq!(weighing.alibi_id, None);
    assert_eq!(weighing.raw, b"S S      24000 kg\r\n");
    server.abort();
}

#[tokio::test]
async fn register_weighing_refuses_an_empty_bridge() {
    let scale = instant_scale();
    let (addr, server, _) = start(&scale).await;
    let handle = device::spawn(config(addr));
    wait_for(&mut handle.status(), "connection", |s| s.connected).await;
    match handle.register_weighing(Weight::kg(400)).await {
        Err(ScaleError::BelowMinimumLoad { weight, min }) => {
            assert_eq!(weight, Weight::kg(0));
            assert_eq!(min, Weight::kg(400));
        }
        other => panic!("expected BelowMinimumLoad, got {other:?}"),
    }
    server.abort();
}

#[tokio::test]
async fn register_weighing_while_disconnected_fails_fast() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let handle = device::spawn(config(addr));
    let result = tokio::time::timeout(
        Duration::from_millis(WAIT_MS),
        handle.register_weighing(Weight::kg(400)),
    )
    .await
    .unwrap();
    assert!(
        matches!(result, Err(ScaleError::Disconnected)),
        "{result:?}"
    );
    let status = wait_for(&mut handle.status(), "connect errors", |s| {
        s.errors_total >= 2
    })
    .await;
    assert!(!status.connected);
    assert!(status.last_error.is_some());
}

#[tokio::test]
async fn garbage_on_the_line_does_not_stop_the_task() {
    let scale = instant_scale();
    let (addr, server, faults) = start(&scale).await;
    faults.lock().unwrap().garbage_before_reply = true;
    let handle = device::spawn(config(addr));
    let status = wait_for(&mut handle.status(), "readings through garbage", |s| {
        s.readings_total >= 5
    })
    .await;
    assert!(status.connected);
    assert_eq!(status.errors_total, 0);
    scale.drive_on(30_000);
    let weighing = handle.register_weighing(Weight::kg(400)).await.unwrap();
    assert_eq!(weighing.weight, Weight::kg(30_000));
    server.abort();
}

#[tokio::test]
async fn reconnects_after_the_connection_drops() {
    let scale = instant_scale();
    let (addr, server, _) = start(&scale).await;
    let handle = device::spawn(config(addr));
    let mut status = handle.status();
    wait_for(&mut status, "connection", |s| s.connected).await;

    // Cut the line: the listener and every open connection go away.
    server.abort();
    assert!(server.await.unwrap_err().is_cancelled());
    let down = wait_for(&mut status, "disconnect", |s| !s.connected).await;
    assert!(down.errors_total >= 1, "{down:?}");
    assert!(matches!(
        handle.register_weighing(Weight::kg(400)).await,
        Err(ScaleError::Disconnected)
    ));

    // The terminal comes back on the same address.
    let faults = Arc::new(Mutex::new(Faults::default()));
    let (_, server) = spawn_tcp(&addr.to_string(), scale.clone(), faults)
        .await
        .unwrap();
    let up = wait_for(&mut status, "reconnect", |s| {
        s.connected && s.reconnects_total >= 1
    })
    .await;
    assert_eq!(up.reconnects_total, 1);
    scale.drive_on(18_000);
    let weighing = handle.register_weighing(Weight::kg(400)).await.unwrap();
    assert_eq!(weighing.weight, Weight::kg(18_000));
    server.abort();
}

#[tokio::test]
async fn task_ends_when_every_handle_is_dropped() {
    let scale = instant_scale();
    let (addr, server, _) = start(&scale).await;
    let handle = device::spawn(config(addr));
    let second = handle.clone();
    let mut status = handle.status();
    wait_for(&mut status, "connection", |s| s.connected).await;
    drop(handle);
    // One handle left: the task keeps polling.
    let before = status.borrow().readings_total;
    wait_for(&mut status, "more readings", |s| s.readings_total > before).await;
    drop(second);
    let ended = tokio::time::timeout(Duration::from_millis(WAIT_MS), async {
        while status.changed().await.is_ok() {}
    })
    .await;
    assert!(ended.is_ok(), "device task still running");
    server.abort();
}
