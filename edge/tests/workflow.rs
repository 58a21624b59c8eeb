//! The weighbridge workflow against a simulated MT-SICS terminal over TCP,
//! a real outbox file and cached master data: two-pass and stored-tare
//! tickets, manual entries, storno, reprint, quality; refusals that leave
//! nothing behind; and restarts (a power cut) in every ticket state.

#![allow(clippy::unwrap_used, reason = "a failed step is the test failure")]

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use valeo_drivers::analyzer::{self, AnalyzerConfig};
use valeo_drivers::scale::ScaleError;
use valeo_drivers::scale::config::Protocol;
use valeo_drivers::scale::device::{self, ScaleConfig};
use valeo_drivers::scale::reading::{Unit, Weight};
use valeo_drivers::sim::analyzer::SimulatedAnalyzer;
use valeo_drivers::sim::mtsics::Faults;
use valeo_drivers::sim::tcp::spawn_tcp_terminal;
use valeo_drivers::sim::terminals;
use valeo_drivers::sim::truck::{TruckScale, TruckScaleParams};
use valeo_drivers::transport::TransportConfig;
use valeo_edge::config::WeighingConfig;
use valeo_edge::master_data::MasterDataCache;
use valeo_edge::workflow::{
    Clock, OnRecord, OpenRequest, QualityRequest, SecondRequest, Weighing, Workflow, WorkflowError,
};
use valeo_records::{
    Direction, QualitySource, StepSource, TicketState, TransitionError, ticket::TareSource,
};
use valeo_sync::outbox::{Outbox, OutboxLimits};

#[derive(Debug)]
struct FixedClock(DateTime<Utc>);

impl Clock for FixedClock {
    fn now(&self) -> DateTime<Utc> {
        self.0
    }
}

const MASTER_DATA: &str = r#"{"version": 4,
    "partners": [{"id": "P-100", "name": "Hof Meyer GbR"}, {"id": "P-200", "name": "Agrarhandel Nord"}],
    "articles": [{"id": "A-WHEAT", "name": "Weizen"}, {"id": "A-BARLEY", "name": "Gerste"}],
    "vehicles": [
        {"plate": "OS-ST 9", "stored_tare": {"weight": {"value": 14000, "decimals": 0, "unit": "kg"},
            "weighed_at": "2026-11-02T07:30:00Z", "alibi_id": "000817"}},
        {"plate": "OS-OLD 1", "stored_tare": {"weight": {"value": 13000, "decimals": 0, "unit": "kg"},
            "weighed_at": "2025-01-01T07:30:00Z", "alibi_id": "000001"}},
        {"plate": "OS-NT 2"}
    ],
    "locations": [{"id": "SILO-3", "name": "Silo 3"}],
    "lots": [{"id": "L-44", "name": "Charge 44", "article_id": "A-WHEAT"}],
    "contracts": [{"id": "K-1", "partner_id": "P-100", "article_id": "A-WHEAT"}]}"#;

struct Site {
    scale: TruckScale,
    workflow: Workflow,
    _server: tokio::task::JoinHandle<()>,
}

async fn site(dir: &Path) -> Site {
    site_with(dir, WeighingConfig::default()).await
}

async fn site_with(dir: &Path, rules: WeighingConfig) -> Site {
    let scale = TruckScale::new(TruckScaleParams {
        ramp_ms: 200,
        settle_ms: 200,
        ..TruckScaleParams::default()
    });
    // A SysTec terminal: its registered weighings carry alibi numbers.
    let tcp = |address: String| TransportConfig::Tcp {
        address,
        connect_timeout_ms: 1000,
    };
    let template = ScaleConfig::new("bridge-1", tcp(String::new())).with_protocol(Protocol::Systec);
    let (addr, server) = spawn_tcp_terminal(
        "127.0.0.1:0",
        terminals::factory(&template, scale.clone()),
        Arc::new(Mutex::new(Faults::default())),
    )
    .await
    .unwrap();
    let mut config = template;
    config.transport = tcp(addr.to_string());
    let handle = device::spawn(config);
    let outbox = Outbox::open(&dir.join("outbox.db"), "box-1", OutboxLimits::default()).unwrap();
    let clock = FixedClock(Utc.with_ymd_and_hms(2026, 11, 22, 8, 0, 0).unwrap());
    let master = MasterDataCache::open(outbox.clone()).unwrap();
    master.apply(MASTER_DATA.as_bytes(), clock.now()).unwrap();
    let workflow = Workflow::new(
        outbox,
        vec![handle],
        rules,
        master,
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

fn arrive(plate: &str, direction: Direction) -> OpenRequest {
    let mut request = OpenRequest::scale(plate, direction, None);
    request.operator = Some("Anna".into());
    request
}

fn second() -> SecondRequest {
    SecondRequest {
        operator: Some("Ben".into()),
        scale_id: None,
        weighing: Weighing::Scale,
    }
}

fn kg(value: i64) -> Option<Weight> {
    Some(Weight::new(value, 0, Unit::Kg))
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
async fn a_two_pass_weighing_records_both_steps_with_its_master_data() {
    let dir = tempfile::tempdir().unwrap();
    let site = site(dir.path()).await;
    settle(&site.scale, 14_000).await;
    let mut request = arrive(" os-ab   1 ", Direction::Outgoing);
    request.partner_id = Some("P-200".into());
    request.lot_id = Some("L-44".into());
    request.location_id = Some("SILO-3".into());
    let open = site.workflow.open_ticket(request).await.unwrap();
    assert_eq!(
        (open.ticket_no, open.plate.as_str(), open.state),
        (1, "OS-AB 1", TicketState::Open)
    );
    assert_eq!(open.first.weighed_at, "2026-11-22T08:00:00.000Z");
    assert!(
        open.first.alibi_id.is_some(),
        "a legal weighing has an alibi number"
    );
    // The article follows from the lot; names are kept as they are now.
    assert_eq!(open.article.as_ref().unwrap().name, "Weizen");
    assert_eq!(open.partner.as_ref().unwrap().name, "Agrarhandel Nord");
    assert_eq!(open.operator.as_deref(), Some("Anna"));

    settle(&site.scale, 39_020).await;
    let done = site.workflow.second_weighing(1, second()).await.unwrap();
    assert_eq!(
        (done.gross, done.tare, done.net),
        (kg(39_020), kg(14_000), kg(25_020))
    );
    assert_eq!(done.state, TicketState::Complete);
    assert_eq!(done.tare_source, Some(TareSource::Weighed));
    assert!(done.legal_for_trade, "both weighings have alibi numbers");
    assert_ne!(done.first.alibi_id, done.second.as_ref().unwrap().alibi_id);

    let records = site.workflow.outbox().pending_after(0, 10).unwrap();
    let kinds: Vec<_> = records.iter().map(|r| r.kind.as_str()).collect();
    assert_eq!(kinds, ["weighing.first", "weighing.second"]);
    assert_eq!(records[0].payload["context"]["lot"]["id"], "L-44");
    assert_eq!(records[1].payload["net"]["value"], 25_020);
    assert_eq!(records[1].payload["direction"], "outgoing");
    assert_eq!(records[1].payload["operator"], "Ben");
    assert_eq!(done.first.operator.as_deref(), Some("Anna"));
    assert_eq!(
        done.second.as_ref().unwrap().operator.as_deref(),
        Some("Ben"),
        "each weighing names who took it"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_tare_manual_entry_storno_reprint_and_quality() {
    let dir = tempfile::tempdir().unwrap();
    let site = site(dir.path()).await;
    settle(&site.scale, 38_000).await;
    let mut request = arrive("OS-ST 9", Direction::Intake);
    request.weighing = Weighing::StoredTare;
    let one_pass = site.workflow.open_ticket(request).await.unwrap();
    assert_eq!(one_pass.state, TicketState::Complete);
    assert_eq!(one_pass.tare_source, Some(TareSource::Stored));
    assert_eq!((one_pass.gross, one_pass.net), (kg(38_000), kg(24_000)));
    let tare = one_pass.second.as_ref().unwrap();
    assert_eq!(
        (
            tare.source,
            tare.weighed_at.as_str(),
            tare.alibi_id.as_deref()
        ),
        (
            StepSource::StoredTare,
            "2026-11-02T07:30:00Z",
            Some("000817")
        )
    );

    let mut request = arrive("OS-M 5", Direction::Intake);
    request.weighing = Weighing::Manual {
        weight_kg: 30_000.0,
        reason: "scale defect".into(),
    };
    let manual = site.workflow.open_ticket(request).await.unwrap();
    assert!(
        !manual.legal_for_trade,
        "a hand-entered weight is never legal for trade"
    );
    assert_eq!(manual.first.source, StepSource::Manual);
    assert_eq!(manual.first.alibi_id, None);

    let sampled = site
        .workflow
        .add_quality(
            manual.ticket_no,
            QualityRequest {
                operator: "Anna".into(),
                source: QualitySource::Manual,
                device_id: None,
                moisture_percent: Some(14.5),
                hectolitre_kg: Some(76.0),
                protein_percent: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(sampled.quality[0].moisture_percent, Some(14.5));

    let copy = site
        .workflow
        .reprint(one_pass.ticket_no, "Anna")
        .await
        .unwrap();
    assert_eq!(copy.prints, 1);
    let cancelled = site
        .workflow
        .cancel(one_pass.ticket_no, "Anna", "wrong partner")
        .await
        .unwrap();
    assert_eq!(cancelled.state, TicketState::Cancelled);
    assert_eq!(cancelled.cancellation.unwrap().reason, "wrong partner");
    // The storno is a new record that references the ticket; the weighing
    // record stays.
    let records = site.workflow.outbox().pending_after(0, 10).unwrap();
    let kinds: Vec<_> = records.iter().map(|r| r.kind.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "weighing.stored_tare",
            "weighing.first",
            "ticket.quality",
            "ticket.reprinted",
            "ticket.cancelled"
        ]
    );
    assert_eq!(records[4].payload["ticket_no"], one_pass.ticket_no);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_steps_record_nothing_and_say_why() {
    let dir = tempfile::tempdir().unwrap();
    let site = site(dir.path()).await;
    let wf = &site.workflow;
    // Wait for the device task to be connected, then weigh an empty bridge.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let empty = wf
        .open_ticket(arrive("OS-AB 1", Direction::Intake))
        .await
        .unwrap_err();
    assert!(
        matches!(
            empty,
            WorkflowError::Scale(ScaleError::BelowMinimumLoad { .. })
        ),
        "{empty}"
    );
    assert!(empty.to_string().contains("minimum load"), "{empty}");
    settle(&site.scale, 30_000).await;

    let unknown = wf.second_weighing(42, second()).await.unwrap_err();
    assert!(
        matches!(
            unknown,
            WorkflowError::Transition(TransitionError::NoSuchTicket { ticket_no: 42 })
        ),
        "{unknown}"
    );
    let mut refusals: Vec<(OpenRequest, &str)> = Vec::new();
    refusals.push((arrive("   ", Direction::Intake), "plate"));
    let mut r = arrive("X 1", Direction::Intake);
    r.scale_id = Some("nope".into());
    refusals.push((r, "unknown scale \"nope\""));
    let mut r = arrive("X 1", Direction::Intake);
    r.article_id = Some("A-CORN".into());
    refusals.push((r, "unknown article \"A-CORN\" (master data version 4)"));
    let mut r = arrive("X 1", Direction::Intake);
    r.article_id = Some("A-BARLEY".into());
    r.lot_id = Some("L-44".into());
    refusals.push((r, "lot \"L-44\" holds article \"A-WHEAT\""));
    let mut r = arrive("X 1", Direction::Intake);
    r.contract_id = Some("K-1".into());
    r.partner_id = Some("P-200".into());
    refusals.push((r, "contract \"K-1\" is with partner \"P-100\""));
    let mut r = arrive("OS-NT 2", Direction::Intake);
    r.weighing = Weighing::StoredTare;
    refusals.push((r, "\"OS-NT 2\" has no stored tare"));
    let mut r = arrive("OS-OLD 1", Direction::Intake);
    r.weighing = Weighing::StoredTare;
    refusals.push((r, "more than 180 days ago"));
    let mut r = arrive("X 1", Direction::Intake);
    r.weighing = Weighing::Manual {
        weight_kg: 20_000.0,
        reason: " ".into(),
    };
    refusals.push((r, "manual_reason: must not be empty"));
    let mut r = arrive("X 1", Direction::Intake);
    r.weighing = Weighing::Manual {
        weight_kg: -5.0,
        reason: "defect".into(),
    };
    refusals.push((r, "manual_weight_kg"));
    let mut r = arrive("X 1", Direction::Intake);
    r.weighing = Weighing::Manual {
        weight_kg: 100.0,
        reason: "defect".into(),
    };
    refusals.push((r, "minimum load"));
    for (request, needle) in refusals {
        let plate = request.plate.clone();
        let err = wf.open_ticket(request).await.unwrap_err().to_string();
        assert!(err.contains(needle), "{plate}: {err}");
    }

    wf.open_ticket(arrive("OS-AB 1", Direction::Intake))
        .await
        .unwrap();
    let twice = wf
        .open_ticket(arrive("os-ab 1", Direction::Intake))
        .await
        .unwrap_err();
    assert!(
        matches!(twice, WorkflowError::AlreadyOnSite(_, 1)),
        "{twice}"
    );
    let not_complete = wf.reprint(1, "Anna").await.unwrap_err().to_string();
    assert!(not_complete.contains("ticket 1 is open"), "{not_complete}");
    let no_reason = wf.cancel(1, "Anna", "").await.unwrap_err().to_string();
    assert!(no_reason.contains("reason"), "{no_reason}");
    let bad_quality = wf
        .add_quality(
            1,
            QualityRequest {
                operator: "Anna".into(),
                source: QualitySource::Manual,
                device_id: None,
                moisture_percent: Some(140.0),
                hectolitre_kg: None,
                protein_percent: None,
            },
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(bad_quality.contains("moisture_percent"), "{bad_quality}");

    settle(&site.scale, 12_000).await;
    wf.second_weighing(1, second()).await.unwrap();
    let closed = wf
        .second_weighing(1, second())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        closed.contains("ticket 1 is complete: a second weighing is not possible"),
        "{closed}"
    );

    assert_eq!(
        wf.outbox().stats().unwrap().head_seq,
        2,
        "only the two weighings of ticket 1 are recorded"
    );
    assert_eq!(wf.tickets(None, 10).await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn required_master_data_is_enforced() {
    let dir = tempfile::tempdir().unwrap();
    let rules = WeighingConfig {
        require_article: true,
        require_partner: true,
        require_known_vehicle: true,
        ..WeighingConfig::default()
    };
    let site = site_with(dir.path(), rules).await;
    settle(&site.scale, 30_000).await;
    let unknown = site
        .workflow
        .open_ticket(arrive("XX-Y 1", Direction::Intake))
        .await
        .unwrap_err();
    assert!(
        unknown.to_string().contains("unknown vehicle \"XX-Y 1\""),
        "{unknown}"
    );
    let missing = site
        .workflow
        .open_ticket(arrive("OS-NT 2", Direction::Intake))
        .await
        .unwrap_err();
    assert!(
        missing.to_string().contains("partner is required"),
        "{missing}"
    );
    let mut request = arrive("OS-NT 2", Direction::Intake);
    request.contract_id = Some("K-1".into());
    let ok = site.workflow.open_ticket(request).await.unwrap();
    assert_eq!(
        (ok.partner.unwrap().id, ok.article.unwrap().id),
        ("P-100".to_owned(), "A-WHEAT".to_owned()),
        "partner and article follow from the contract"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_ticket_state_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let before = {
        let site = site(dir.path()).await;
        let wf = &site.workflow;
        settle(&site.scale, 30_000).await;
        // 1 stays open; 2 completes; 3 is cancelled; 4 is a stored-tare
        // ticket, reprinted; 5 is open with a quality sample.
        for plate in ["A 1", "A 2", "A 3"] {
            wf.open_ticket(arrive(plate, Direction::Intake))
                .await
                .unwrap();
        }
        settle(&site.scale, 12_000).await;
        wf.second_weighing(2, second()).await.unwrap();
        wf.cancel(3, "Anna", "driver left").await.unwrap();
        settle(&site.scale, 38_000).await;
        let mut request = arrive("OS-ST 9", Direction::Intake);
        request.weighing = Weighing::StoredTare;
        wf.open_ticket(request).await.unwrap();
        wf.reprint(4, "Anna").await.unwrap();
        wf.open_ticket(arrive("A 5", Direction::Outgoing))
            .await
            .unwrap();
        wf.add_quality(
            5,
            QualityRequest {
                operator: "Anna".into(),
                source: QualitySource::Manual,
                device_id: None,
                moisture_percent: None,
                hectolitre_kg: None,
                protein_percent: Some(12.5),
            },
        )
        .await
        .unwrap();
        wf.tickets(None, 10).await.unwrap()
        // The site is dropped here without any shutdown: a power cut.
    };
    // Newest first: 5 open, 4 stored-tare complete, 3 cancelled, 2 complete, 1 open.
    let states: Vec<_> = before.iter().map(|t| t.state).collect();
    use TicketState::*;
    assert_eq!(states, [Open, Complete, Cancelled, Complete, Open]);
    assert_eq!(before[1].prints, 1);
    assert_eq!(before[0].quality.len(), 1);

    let site = site(dir.path()).await;
    let wf = &site.workflow;
    assert_eq!(
        wf.tickets(None, 10).await.unwrap(),
        before,
        "every ticket as it was"
    );
    assert_eq!(wf.master_data().current().version, 4, "master data cached");
    // The machine goes on from where each ticket was.
    settle(&site.scale, 11_000).await;
    assert_eq!(
        wf.second_weighing(1, second()).await.unwrap().net,
        kg(19_000)
    );
    assert!(
        wf.second_weighing(3, second()).await.is_err(),
        "cancelled stays cancelled"
    );
    assert_eq!(wf.reprint(4, "Anna").await.unwrap().prints, 2);
    assert_eq!(
        wf.second_weighing(5, second()).await.unwrap().quality.len(),
        1
    );
    let next = wf
        .open_ticket(arrive("A 6", Direction::Intake))
        .await
        .unwrap();
    assert_eq!(next.ticket_no, 6, "numbers continue, never reused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quality_is_read_from_the_configured_analyzer() {
    let dir = tempfile::tempdir().unwrap();
    let site = site(dir.path()).await;
    let analyzer = SimulatedAnalyzer::new([13.4, 77.2, 11.9]);
    let (addr, _server) = spawn_tcp_terminal(
        "127.0.0.1:0",
        analyzer.factory(),
        Arc::new(Mutex::new(Faults::default())),
    )
    .await
    .unwrap();
    let mut config = AnalyzerConfig::new(
        "nir-1",
        TransportConfig::Tcp {
            address: addr.to_string(),
            connect_timeout_ms: 1000,
        },
    );
    config.response_timeout_ms = 2000;
    let wf = site
        .workflow
        .clone()
        .with_analyzers(vec![analyzer::spawn(config)]);
    settle(&site.scale, 30_000).await;
    wf.open_ticket(arrive("OS-Q 1", Direction::Intake))
        .await
        .unwrap();
    let from_device = |device_id: &str| QualityRequest {
        operator: "Anna".into(),
        source: QualitySource::Device,
        device_id: Some(device_id.into()),
        moisture_percent: None,
        hectolitre_kg: None,
        protein_percent: None,
    };
    let ticket = wf.add_quality(1, from_device("nir-1")).await.unwrap();
    let sample = &ticket.quality[0];
    assert_eq!(
        (
            sample.source,
            sample.device_id.as_deref(),
            sample.moisture_percent,
            sample.protein_percent
        ),
        (QualitySource::Device, Some("nir-1"), Some(13.4), Some(11.9))
    );
    assert_eq!(sample.raw.as_deref(), Some("H2O=13.4;HLW=77.2;PROT=11.9"));

    // No sample in the analyzer, an unknown analyzer, values sent along with
    // a device source: refused by name, nothing recorded.
    analyzer.set_sample(None);
    let empty = wf
        .add_quality(1, from_device("nir-1"))
        .await
        .unwrap_err()
        .to_string();
    assert!(empty.contains("ERR NO SAMPLE"), "{empty}");
    let unknown = wf
        .add_quality(1, from_device("nir-9"))
        .await
        .unwrap_err()
        .to_string();
    assert!(unknown.contains("unknown analyzer \"nir-9\""), "{unknown}");
    let mut mixed = from_device("nir-1");
    mixed.moisture_percent = Some(12.0);
    let mixed = wf.add_quality(1, mixed).await.unwrap_err().to_string();
    assert!(mixed.contains("read from it"), "{mixed}");
    assert_eq!(wf.ticket(1).await.unwrap().unwrap().quality.len(), 1);
    assert_eq!(wf.outbox().stats().unwrap().head_seq, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scale_that_disappears_mid_ticket_leaves_the_ticket_open_and_records_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let site = site(dir.path()).await;
    settle(&site.scale, 30_000).await;
    site.workflow
        .open_ticket(arrive("OS-G 1", Direction::Intake))
        .await
        .unwrap();
    // The terminal's cable is pulled while the truck is on site.
    site._server.abort();
    settle(&site.scale, 12_000).await;
    let gone = site
        .workflow
        .second_weighing(1, second())
        .await
        .unwrap_err();
    assert!(
        matches!(gone, WorkflowError::Scale(_)),
        "a scale error, not a stored step: {gone}"
    );
    let ticket = site.workflow.ticket(1).await.unwrap().unwrap();
    assert_eq!(
        ticket.state,
        TicketState::Open,
        "the vehicle is still on site"
    );
    assert_eq!(site.workflow.outbox().stats().unwrap().head_seq, 1);
    // The operator can finish the ticket by hand, marked as such.
    let manual = site
        .workflow
        .second_weighing(
            1,
            SecondRequest {
                operator: Some("Ben".into()),
                scale_id: None,
                weighing: Weighing::Manual {
                    weight_kg: 12_000.0,
                    reason: "terminal offline".into(),
                },
            },
        )
        .await
        .unwrap();
    assert_eq!(manual.net, kg(18_000));
    assert!(!manual.legal_for_trade);
}
