//! Demo traffic on the simulated weighbridge: trucks drive on, are weighed
//! in and out through the same workflow an operator uses, and drive off.
//! Only started when `[simulation] auto_traffic = true`.

use std::time::Duration;

use valeo_drivers::scale::ScaleError;
use valeo_drivers::sim::truck::TruckScale;
use valeo_drivers::site_io::InterlockState;
use valeo_records::Direction;

use crate::workflow::{OpenRequest, SecondRequest, Weighing, Workflow, WorkflowError};

/// How long the demo keeps asking for a stable weight before it gives up on
/// a truck (the terminal answers "not stable" while the bridge swings).
const MAX_SETTLE_WAIT_MS: u64 = 30_000;

const PLATES: [&str; 6] = [
    "OS-VE 101",
    "OS-VE 202",
    "EL-AG 33",
    "CLP-K 7",
    "VEC-GR 45",
    "NOH-T 512",
];

/// Runs forever: one truck after another.
pub async fn run(workflow: Workflow, scale: TruckScale, scale_id: String, truck_interval_ms: u64) {
    let mut n: usize = 0;
    loop {
        let plate = PLATES[n % PLATES.len()];
        // Alternate intake (arrives loaded) and outgoing (arrives empty).
        let direction = if n % 3 == 2 {
            Direction::Outgoing
        } else {
            Direction::Intake
        };
        let tare_kg = 13_000 + (n as i64 % 5) * 740;
        let load_kg = 24_000 + (n as i64 % 7) * 1_260;
        let (first_kg, second_kg) = match direction {
            Direction::Intake => (tare_kg + load_kg, tare_kg),
            Direction::Outgoing => (tare_kg, tare_kg + load_kg),
        };
        n += 1;
        scale.drive_on(first_kg);
        let ticket = weigh_when_settled(|| {
            workflow.open_ticket(demo_request(&workflow, n, plate, direction, &scale_id))
        })
        .await;
        scale.drive_off();
        wait_until_empty(&workflow).await;
        let Some(ticket) = ticket else { continue };
        tokio::time::sleep(Duration::from_millis(truck_interval_ms)).await;
        scale.drive_on(second_kg);
        weigh_when_settled(|| {
            workflow.second_weighing(
                ticket.ticket_no,
                SecondRequest {
                    operator: Some(DEMO_OPERATOR.to_owned()),
                    scale_id: Some(scale_id.clone()),
                    weighing: Weighing::Scale,
                },
            )
        })
        .await;
        scale.drive_off();
        wait_until_empty(&workflow).await;
        tokio::time::sleep(Duration::from_millis(truck_interval_ms)).await;
    }
}

/// Waits until the truck has left: the interlock lets the next one on only
/// then (or, without site I/O, until the scale reads a stable empty bridge).
async fn wait_until_empty(workflow: &Workflow) {
    let deadline = tokio::time::Instant::now() + Duration::from_millis(MAX_SETTLE_WAIT_MS);
    while tokio::time::Instant::now() < deadline {
        let empty = match workflow.site() {
            Some(site) => site.status().borrow().state == InterlockState::Free,
            None => workflow.scales().first().is_none_or(|scale| {
                let status = scale.status().borrow().clone();
                status
                    .last_reading
                    .as_ref()
                    .is_some_and(|r| r.stable && r.net.is_some_and(|w| w.to_kg_f64() < EMPTY_KG))
            }),
        };
        if empty {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Below this the demo counts the bridge as empty.
const EMPTY_KG: f64 = 200.0;

const DEMO_OPERATOR: &str = "Demo";

/// A first weighing with the n-th partner and article of the cached master
/// data, when there is any.
fn demo_request(
    workflow: &Workflow,
    n: usize,
    plate: &str,
    direction: Direction,
    scale_id: &str,
) -> OpenRequest {
    let master = workflow.master_data().current();
    let pick = |len: usize| (len > 0).then(|| n % len);
    let mut request = OpenRequest::scale(plate, direction, Some(scale_id));
    request.operator = Some(DEMO_OPERATOR.to_owned());
    request.partner_id = pick(master.partners.len()).map(|i| master.partners[i].id.clone());
    request.article_id = pick(master.articles.len()).map(|i| master.articles[i].id.clone());
    request
}

/// Retries a weighing step while the scale is still settling.
async fn weigh_when_settled<F, Fut>(step: F) -> Option<valeo_records::Ticket>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<valeo_records::Ticket, WorkflowError>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_millis(MAX_SETTLE_WAIT_MS);
    loop {
        match step().await {
            Ok(ticket) => return Some(ticket),
            Err(WorkflowError::Scale(
                ScaleError::NotStable
                | ScaleError::BelowMinimumLoad { .. }
                | ScaleError::Timeout { .. },
            )) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(error) => {
                tracing::warn!(%error, "demo truck not weighed");
                return None;
            }
        }
    }
}
