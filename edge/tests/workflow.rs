//! The two-pass weighing against a simulated MT-SICS terminal over TCP and
//! a real outbox file: tickets, records, refusals, and restarts.

#![allow(clippy::unwrap_used, reason = "a failed step is the test failure")]

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use valeo_drivers::scale::ScaleError;
use valeo_drivers::scale::device::{self, ScaleConfig};
use valeo_drivers::scale::reading::{Unit, Weight};
use valeo_drivers::sim::mtsics::Faults;
use valeo_drivers::sim::tcp::spawn_tcp;
use valeo_drivers::sim::truck::{TruckScale, TruckScaleParams};
use valeo_drivers::transport::TransportConfig;
use valeo_edge::workflow::{Clock, OnRecord, TicketState, Workflow, WorkflowError};
use valeo_records::Direction;
use valeo_sync::outbox::{Outbox, OutboxLimits};

#[derive(Debug)]
struct FixedClock(DateTime<Utc>);

impl Clock for FixedClock {
    fn now(&self) -> DateTime<Utc> {
        self.0
    }
}

struct Site {
    scale: TruckScale,
    workflow: Workflow,
    _server: tokio::task::JoinHandle<()>,
}

async fn site(dir: &Path) -> Site {
    let scale = TruckScale::new(TruckScaleParams {
        ramp_ms: 200,
        settle_ms: 200,
        ..TruckScaleParams::default()
    });
    let (addr, server) = spawn_tcp(
        "127.0.0.1:0",
        scale.clone(),
        Arc::new(Mutex::new(Faults::default())),
    )
    .await
    .unwrap();
    let handle = device::spawn(ScaleConfig::new(
        "bridge-1",
        TransportConfig::Tcp {
            address: addr.to_string(),
            connect_timeout_ms: 1000,
        },
    ));
    let outbox = Outbox::open(&dir.join("outbox.db"), "box-1", OutboxLimits::default()).unwrap();
    let clock = FixedClock(Utc.with_ymd_and_hms(2026, 11, 22, 8, 0, 0).unwrap());
    let workflow = Workflow::new(
        outbox,
        vec![handle],
        Weight::new(400, 0, Unit::Kg),
        Arc::new(clock),
        OnRecord(Arc::new(|| {})),
    )
    .unwrap();
    Site {
        scale,
        workflow,
        _server: server,
    }
}

/// Drives a truck on and waits until the simulated bridge has settled.
async fn settle(scale: &TruckScale, kg: i64) {
    scale.drive_on(kg);
    for _ in 0..100 {
        if scale.sample().stable && scale.sample().weight_kg == kg {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("simulated scale did not settle at {kg} kg");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_two_pass_weighing_records_both_steps_and_computes_net() {
    let dir = tempfile::tempdir().unwrap();
    let site = site(dir.path()).await;
    settle(&site.scale, 14_000).await;
    let open = site
        .workflow
        .first_weighing(" os-ab 1 ", Direction::Outgoing, None)
        .await
        .unwrap();
    assert_eq!(
        (open.ticket_no, open.plate.as_str(), open.state),
        (1, "OS-AB 1", TicketState::Open)
    );
    assert_eq!(open.first.weighed_at, "2026-11-22T08:00:00.000Z");

    settle(&site.scale, 39_020).await;
    let done = site
        .workflow
        .second_weighing(1, Some("bridge-1"))
        .await
        .unwrap();
    let kg = |v| Some(Weight::new(v, 0, Unit::Kg));
    assert_eq!(
        (done.gross, done.tare, done.net),
        (kg(39_020), kg(14_000), kg(25_020))
    );
    assert_eq!(done.state, TicketState::Complete);

    let records = site.workflow.outbox().pending_after(0, 10).unwrap();
    let kinds: Vec<_> = records.iter().map(|r| r.kind.as_str()).collect();
    assert_eq!(kinds, ["weighing.first", "weighing.second"]);
    assert_eq!(records[1].payload["net"]["value"], 25_020);
    assert_eq!(records[1].payload["direction"], "outgoing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_steps_record_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let site = site(dir.path()).await;
    // Wait for the device task to be connected, then weigh an empty bridge.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let empty = site
        .workflow
        .first_weighing("OS-AB 1", Direction::Intake, None)
        .await
        .unwrap_err();
    assert!(
        matches!(
            empty,
            WorkflowError::Scale(ScaleError::BelowMinimumLoad { .. })
        ),
        "{empty}"
    );
    let unknown = site.workflow.second_weighing(42, None).await.unwrap_err();
    assert!(
        matches!(unknown, WorkflowError::NoOpenTicket(42)),
        "{unknown}"
    );
    let bad_plate = site
        .workflow
        .first_weighing("   ", Direction::Intake, None)
        .await
        .unwrap_err();
    assert!(
        matches!(bad_plate, WorkflowError::BadPlate(_)),
        "{bad_plate}"
    );
    let no_scale = site
        .workflow
        .first_weighing("X", Direction::Intake, Some("nope"))
        .await
        .unwrap_err();
    assert!(
        matches!(no_scale, WorkflowError::UnknownScale(_)),
        "{no_scale}"
    );

    settle(&site.scale, 30_000).await;
    site.workflow
        .first_weighing("OS-AB 1", Direction::Intake, None)
        .await
        .unwrap();
    let twice = site
        .workflow
        .first_weighing("os-ab 1", Direction::Intake, None)
        .await
        .unwrap_err();
    assert!(
        matches!(twice, WorkflowError::AlreadyOnSite(_, 1)),
        "{twice}"
    );

    assert_eq!(
        site.workflow.outbox().stats().unwrap().head_seq,
        1,
        "only the one weighing is recorded"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ticket_numbers_continue_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let site = site(dir.path()).await;
        settle(&site.scale, 30_000).await;
        site.workflow
            .first_weighing("A 1", Direction::Intake, None)
            .await
            .unwrap();
        site.workflow
            .first_weighing("A 2", Direction::Intake, None)
            .await
            .unwrap();
    }
    let site = site(dir.path()).await;
    settle(&site.scale, 12_000).await;
    let third = site
        .workflow
        .first_weighing("A 3", Direction::Outgoing, None)
        .await
        .unwrap();
    assert_eq!(third.ticket_no, 3);
    let open = site.workflow.tickets(true, 10).await.unwrap();
    assert_eq!(
        open.iter().map(|t| t.ticket_no).collect::<Vec<_>>(),
        [3, 2, 1]
    );
    let done = site.workflow.second_weighing(1, None).await.unwrap();
    assert_eq!(done.net, Some(Weight::new(18_000, 0, Unit::Kg)));
    assert_eq!(site.workflow.tickets(true, 10).await.unwrap().len(), 2);
}
