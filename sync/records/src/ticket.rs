//! The weigh ticket as an explicit state machine, shared by the box (which
//! decides each step) and central (which replays the records to materialise
//! the same ticket).
//!
//! ```text
//!            first weighing              second weighing
//!   (none) ─────────────────▶ open ──────────────────────▶ complete
//!      │                        │                            │
//!      │ stored-tare weighing   │ cancel                     │ cancel
//!      └────────────────────────┼──────────▶ complete        ▼
//!                               └──────────────────────▶ cancelled
//! ```
//!
//! Quality samples attach to open and complete tickets; reprints are for
//! complete and cancelled ones. Every transition is a record; nothing here
//! touches storage, so both sides get exactly the same rules.

use serde::{Deserialize, Serialize};
use valeo_drivers::scale::reading::Weight;

use crate::{
    Cancellation, Direction, FirstWeighing, QualitySample, Reprint, SecondWeighing, StepSource,
    StoredTareWeighing, TicketContext, WeighingStep,
};

/// Where a ticket is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TicketState {
    /// First weighing taken; the vehicle is on site.
    Open,
    /// Net weight known.
    Complete,
    /// Cancelled (storno); kept with its weighings.
    Cancelled,
}

impl TicketState {
    pub const ALL: [TicketState; 3] = [
        TicketState::Open,
        TicketState::Complete,
        TicketState::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TicketState::Open => "open",
            TicketState::Complete => "complete",
            TicketState::Cancelled => "cancelled",
        }
    }
}

impl std::fmt::Display for TicketState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether the tare was weighed on this ticket or taken from master data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TareSource {
    Weighed,
    Stored,
}

/// Who cancelled a ticket, when and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CancellationInfo {
    pub at: String,
    pub operator: String,
    pub reason: String,
}

/// Quality values on a ticket (a [`QualitySample`] without the ticket number).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QualityEntry {
    pub taken_at: String,
    pub source: crate::QualitySource,
    pub device_id: Option<String>,
    pub operator: String,
    pub moisture_percent: Option<f64>,
    pub hectolitre_kg: Option<f64>,
    pub protein_percent: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw: Option<String>,
}

/// A weigh ticket: everything the printed ticket shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ticket {
    pub ticket_no: u64,
    /// The box (site) that numbered the ticket.
    pub device_id: String,
    pub plate: String,
    pub direction: Direction,
    pub state: TicketState,
    pub partner: Option<crate::Ref>,
    pub article: Option<crate::Ref>,
    pub contract_id: Option<String>,
    pub lot: Option<crate::Ref>,
    pub location: Option<crate::Ref>,
    /// Who opened the ticket.
    pub operator: Option<String>,
    pub first: WeighingStep,
    pub second: Option<WeighingStep>,
    pub gross: Option<Weight>,
    pub tare: Option<Weight>,
    pub net: Option<Weight>,
    pub tare_source: Option<TareSource>,
    /// False as soon as one step was entered by hand or has no alibi number.
    pub legal_for_trade: bool,
    pub cancellation: Option<CancellationInfo>,
    pub quality: Vec<QualityEntry>,
    /// Copies printed after the original.
    pub prints: u32,
}

/// One step in a ticket's life: the payload of one record.
#[allow(
    clippy::large_enum_variant,
    reason = "one event exists at a time, briefly; boxing would only add noise"
)]
#[derive(Debug, Clone, PartialEq)]
pub enum TicketEvent {
    First(FirstWeighing),
    Second(SecondWeighing),
    StoredTare(StoredTareWeighing),
    Cancel(Cancellation),
    Reprint(Reprint),
    Quality(QualitySample),
}

impl TicketEvent {
    /// The record `kind` this event is written as.
    pub fn kind(&self) -> &'static str {
        match self {
            TicketEvent::First(_) => crate::KIND_FIRST_WEIGHING,
            TicketEvent::Second(_) => crate::KIND_SECOND_WEIGHING,
            TicketEvent::StoredTare(_) => crate::KIND_STORED_TARE_WEIGHING,
            TicketEvent::Cancel(_) => crate::KIND_CANCELLATION,
            TicketEvent::Reprint(_) => crate::KIND_REPRINT,
            TicketEvent::Quality(_) => crate::KIND_QUALITY_SAMPLE,
        }
    }

    pub fn ticket_no(&self) -> u64 {
        match self {
            TicketEvent::First(e) => e.ticket_no,
            TicketEvent::Second(e) => e.ticket_no,
            TicketEvent::StoredTare(e) => e.ticket_no,
            TicketEvent::Cancel(e) => e.ticket_no,
            TicketEvent::Reprint(e) => e.ticket_no,
            TicketEvent::Quality(e) => e.ticket_no,
        }
    }

    /// The record payload.
    pub fn to_json(&self) -> serde_json::Value {
        let value = match self {
            TicketEvent::First(e) => serde_json::to_value(e),
            TicketEvent::Second(e) => serde_json::to_value(e),
            TicketEvent::StoredTare(e) => serde_json::to_value(e),
            TicketEvent::Cancel(e) => serde_json::to_value(e),
            TicketEvent::Reprint(e) => serde_json::to_value(e),
            TicketEvent::Quality(e) => serde_json::to_value(e),
        };
        // These types are plain data with string keys; serialising them
        // cannot fail.
        value.unwrap_or_default()
    }

    /// Reads a record back; `Ok(None)` for kinds that are not about tickets.
    pub fn from_record(
        kind: &str,
        payload: &serde_json::Value,
    ) -> Result<Option<TicketEvent>, serde_json::Error> {
        let p = || payload.clone();
        Ok(Some(match kind {
            crate::KIND_FIRST_WEIGHING => TicketEvent::First(serde_json::from_value(p())?),
            crate::KIND_SECOND_WEIGHING => TicketEvent::Second(serde_json::from_value(p())?),
            crate::KIND_STORED_TARE_WEIGHING => {
                TicketEvent::StoredTare(serde_json::from_value(p())?)
            }
            crate::KIND_CANCELLATION => TicketEvent::Cancel(serde_json::from_value(p())?),
            crate::KIND_REPRINT => TicketEvent::Reprint(serde_json::from_value(p())?),
            crate::KIND_QUALITY_SAMPLE => TicketEvent::Quality(serde_json::from_value(p())?),
            _ => return Ok(None),
        }))
    }

    fn name(&self) -> &'static str {
        match self {
            TicketEvent::First(_) => "first weighing",
            TicketEvent::Second(_) => "second weighing",
            TicketEvent::StoredTare(_) => "stored-tare weighing",
            TicketEvent::Cancel(_) => "cancellation",
            TicketEvent::Reprint(_) => "reprint",
            TicketEvent::Quality(_) => "quality sample",
        }
    }
}

/// Why an event cannot apply to a ticket.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransitionError {
    #[error("no ticket number {ticket_no}")]
    NoSuchTicket { ticket_no: u64 },
    #[error("ticket {ticket_no} already exists")]
    AlreadyExists { ticket_no: u64 },
    #[error("ticket {ticket_no} is {state}: a {event} is not possible")]
    NotAllowed {
        ticket_no: u64,
        state: TicketState,
        event: &'static str,
    },
    #[error("ticket {ticket_no}: {reason}")]
    Inconsistent { ticket_no: u64, reason: String },
}

impl Ticket {
    /// The ticket after `event`; `current` is the ticket before it (`None`
    /// when the event opens one). Pure: same input, same ticket, on the box
    /// and at central.
    pub fn apply(
        current: Option<&Ticket>,
        device_id: &str,
        event: &TicketEvent,
    ) -> Result<Ticket, TransitionError> {
        let ticket_no = event.ticket_no();
        let not_allowed = |state| TransitionError::NotAllowed {
            ticket_no,
            state,
            event: event.name(),
        };
        let inconsistent = |reason: String| TransitionError::Inconsistent { ticket_no, reason };
        if let Some(t) = current
            && t.ticket_no != ticket_no
        {
            return Err(inconsistent(format!(
                "the record is for ticket {ticket_no}, not ticket {}",
                t.ticket_no
            )));
        }
        match (current, event) {
            (None, TicketEvent::First(e)) => Ok(Ticket::new(
                device_id,
                ticket_no,
                &e.plate,
                e.direction,
                &e.context,
                &e.first,
            )),
            (None, TicketEvent::StoredTare(e)) => {
                check_net(
                    ticket_no,
                    &e.weighing.weight,
                    &e.stored_tare.weight,
                    (e.gross, e.tare, e.net),
                )?;
                if e.stored_tare.source != StepSource::StoredTare {
                    return Err(inconsistent("the tare step is not a stored tare".into()));
                }
                let mut t = Ticket::new(
                    device_id,
                    ticket_no,
                    &e.plate,
                    e.direction,
                    &e.context,
                    &e.weighing,
                );
                t.legal_for_trade =
                    e.weighing.is_legal_for_trade() && e.stored_tare.is_legal_for_trade();
                t.second = Some(e.stored_tare.clone());
                t.state = TicketState::Complete;
                (t.gross, t.tare, t.net) = (Some(e.gross), Some(e.tare), Some(e.net));
                t.tare_source = Some(TareSource::Stored);
                Ok(t)
            }
            (Some(_), TicketEvent::First(_) | TicketEvent::StoredTare(_)) => {
                Err(TransitionError::AlreadyExists { ticket_no })
            }
            (None, _) => Err(TransitionError::NoSuchTicket { ticket_no }),
            (Some(t), TicketEvent::Second(e)) => {
                if t.state != TicketState::Open {
                    return Err(not_allowed(t.state));
                }
                if e.first != t.first || e.plate != t.plate || e.direction != t.direction {
                    return Err(inconsistent(
                        "the second weighing names another first weighing, plate or direction"
                            .into(),
                    ));
                }
                check_net(
                    ticket_no,
                    &t.first.weight,
                    &e.second.weight,
                    (e.gross, e.tare, e.net),
                )?;
                let mut t = t.clone();
                t.legal_for_trade = t.legal_for_trade && e.second.is_legal_for_trade();
                t.second = Some(e.second.clone());
                t.state = TicketState::Complete;
                (t.gross, t.tare, t.net) = (Some(e.gross), Some(e.tare), Some(e.net));
                t.tare_source = Some(TareSource::Weighed);
                Ok(t)
            }
            (Some(t), TicketEvent::Cancel(e)) => {
                if t.state == TicketState::Cancelled {
                    return Err(not_allowed(t.state));
                }
                if e.reason.trim().is_empty() {
                    return Err(inconsistent("a cancellation needs a reason".into()));
                }
                let mut t = t.clone();
                t.state = TicketState::Cancelled;
                t.cancellation = Some(CancellationInfo {
                    at: e.at.clone(),
                    operator: e.operator.clone(),
                    reason: e.reason.clone(),
                });
                Ok(t)
            }
            (Some(t), TicketEvent::Reprint(e)) => {
                if t.state == TicketState::Open {
                    return Err(not_allowed(t.state));
                }
                if e.copy_no != t.prints + 1 {
                    return Err(inconsistent(format!(
                        "copy {} follows copy {}",
                        e.copy_no, t.prints
                    )));
                }
                let mut t = t.clone();
                t.prints = e.copy_no;
                Ok(t)
            }
            (Some(t), TicketEvent::Quality(e)) => {
                if t.state == TicketState::Cancelled {
                    return Err(not_allowed(t.state));
                }
                let mut t = t.clone();
                t.quality.push(QualityEntry {
                    taken_at: e.taken_at.clone(),
                    source: e.source,
                    device_id: e.device_id.clone(),
                    operator: e.operator.clone(),
                    moisture_percent: e.moisture_percent,
                    hectolitre_kg: e.hectolitre_kg,
                    protein_percent: e.protein_percent,
                    raw: e.raw.clone(),
                });
                Ok(t)
            }
        }
    }

    fn new(
        device_id: &str,
        ticket_no: u64,
        plate: &str,
        direction: Direction,
        context: &TicketContext,
        first: &WeighingStep,
    ) -> Ticket {
        Ticket {
            ticket_no,
            device_id: device_id.to_owned(),
            plate: plate.to_owned(),
            direction,
            state: TicketState::Open,
            partner: context.partner.clone(),
            article: context.article.clone(),
            contract_id: context.contract_id.clone(),
            lot: context.lot.clone(),
            location: context.location.clone(),
            operator: context.operator.clone(),
            first: first.clone(),
            second: None,
            gross: None,
            tare: None,
            net: None,
            tare_source: None,
            legal_for_trade: first.is_legal_for_trade(),
            cancellation: None,
            quality: Vec::new(),
            prints: 0,
        }
    }
}

/// Gross, tare and net a completing record claims must follow from its two
/// weights: a record cannot smuggle in a different net.
fn check_net(
    ticket_no: u64,
    a: &Weight,
    b: &Weight,
    claimed: (Weight, Weight, Weight),
) -> Result<(), TransitionError> {
    let computed = crate::gross_tare_net(a, b).map_err(|e| TransitionError::Inconsistent {
        ticket_no,
        reason: e.to_string(),
    })?;
    let (gross, tare, net) = claimed;
    if computed != (gross, tare, net) {
        return Err(TransitionError::Inconsistent {
            ticket_no,
            reason: format!("gross/tare/net {gross}/{tare}/{net} do not follow from the weighings"),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{QualitySource, Ref};
    use valeo_drivers::scale::reading::Unit;

    fn kg(value: i64) -> Weight {
        Weight::new(value, 0, Unit::Kg)
    }

    fn step(value: i64, source: StepSource) -> WeighingStep {
        WeighingStep {
            scale_id: "bridge-1".into(),
            weight: kg(value),
            alibi_id: (source != StepSource::Manual).then(|| format!("A{value}")),
            weighed_at: "2026-11-29T08:00:00.000Z".into(),
            terminal_time: None,
            source,
            manual_reason: (source == StepSource::Manual).then(|| "scale defect".into()),
            operator: None,
        }
    }

    fn first() -> FirstWeighing {
        FirstWeighing {
            ticket_no: 1,
            plate: "OS-T 1".into(),
            direction: Direction::Intake,
            first: step(40_000, StepSource::Scale),
            context: TicketContext {
                article: Some(Ref {
                    id: "A-WHEAT".into(),
                    name: "Weizen".into(),
                }),
                operator: Some("Anna".into()),
                ..TicketContext::default()
            },
        }
    }

    fn second(value: i64, source: StepSource) -> SecondWeighing {
        let f = first();
        let s = step(value, source);
        let (gross, tare, net) = crate::gross_tare_net(&f.first.weight, &s.weight).unwrap();
        SecondWeighing {
            ticket_no: 1,
            plate: f.plate,
            direction: f.direction,
            first: f.first,
            second: s,
            gross,
            tare,
            net,
            operator: Some("Ben".into()),
        }
    }

    fn stored_tare() -> StoredTareWeighing {
        let w = step(38_000, StepSource::Scale);
        let t = step(14_000, StepSource::StoredTare);
        let (gross, tare, net) = crate::gross_tare_net(&w.weight, &t.weight).unwrap();
        StoredTareWeighing {
            ticket_no: 1,
            plate: "OS-ST 9".into(),
            direction: Direction::Intake,
            weighing: w,
            stored_tare: t,
            gross,
            tare,
            net,
            context: TicketContext::default(),
        }
    }

    fn cancel() -> TicketEvent {
        TicketEvent::Cancel(Cancellation {
            ticket_no: 1,
            at: "2026-11-29T09:00:00.000Z".into(),
            operator: "Anna".into(),
            reason: "wrong partner".into(),
        })
    }

    fn reprint(copy_no: u32) -> TicketEvent {
        TicketEvent::Reprint(Reprint {
            ticket_no: 1,
            at: "2026-11-29T09:00:00.000Z".into(),
            operator: "Anna".into(),
            copy_no,
        })
    }

    fn quality() -> TicketEvent {
        TicketEvent::Quality(QualitySample {
            ticket_no: 1,
            taken_at: "2026-11-29T08:01:00.000Z".into(),
            source: QualitySource::Manual,
            device_id: None,
            operator: "Anna".into(),
            moisture_percent: Some(14.5),
            hectolitre_kg: None,
            protein_percent: Some(12.0),
            raw: None,
        })
    }

    /// One valid event of every kind, by name.
    fn events() -> Vec<(&'static str, TicketEvent)> {
        vec![
            ("first", TicketEvent::First(first())),
            (
                "second",
                TicketEvent::Second(second(15_000, StepSource::Scale)),
            ),
            ("stored", TicketEvent::StoredTare(stored_tare())),
            ("cancel", cancel()),
            ("reprint", reprint(1)),
            ("quality", quality()),
        ]
    }

    /// A ticket in each state, built through the machine itself.
    fn ticket_in(state: Option<TicketState>) -> Option<Ticket> {
        let open = Ticket::apply(None, "box-1", &TicketEvent::First(first())).unwrap();
        let complete = |t: &Ticket| {
            Ticket::apply(
                Some(t),
                "box-1",
                &TicketEvent::Second(second(15_000, StepSource::Scale)),
            )
            .unwrap()
        };
        match state? {
            TicketState::Open => Some(open),
            TicketState::Complete => Some(complete(&open)),
            TicketState::Cancelled => {
                Some(Ticket::apply(Some(&complete(&open)), "box-1", &cancel()).unwrap())
            }
        }
    }

    #[test]
    fn every_event_in_every_state_follows_the_table() {
        use TicketState::*;
        // (state before, event) -> state after, or the error's first words.
        let table: &[(Option<TicketState>, &str, Result<TicketState, &str>)] = &[
            (None, "first", Ok(Open)),
            (None, "second", Err("no ticket")),
            (None, "stored", Ok(Complete)),
            (None, "cancel", Err("no ticket")),
            (None, "reprint", Err("no ticket")),
            (None, "quality", Err("no ticket")),
            (Some(Open), "first", Err("ticket 1 already exists")),
            (Some(Open), "second", Ok(Complete)),
            (Some(Open), "stored", Err("ticket 1 already exists")),
            (Some(Open), "cancel", Ok(Cancelled)),
            (Some(Open), "reprint", Err("ticket 1 is open")),
            (Some(Open), "quality", Ok(Open)),
            (Some(Complete), "first", Err("ticket 1 already exists")),
            (Some(Complete), "second", Err("ticket 1 is complete")),
            (Some(Complete), "stored", Err("ticket 1 already exists")),
            (Some(Complete), "cancel", Ok(Cancelled)),
            (Some(Complete), "reprint", Ok(Complete)),
            (Some(Complete), "quality", Ok(Complete)),
            (Some(Cancelled), "first", Err("ticket 1 already exists")),
            (Some(Cancelled), "second", Err("ticket 1 is cancelled")),
            (Some(Cancelled), "stored", Err("ticket 1 already exists")),
            (Some(Cancelled), "cancel", Err("ticket 1 is cancelled")),
            (Some(Cancelled), "reprint", Ok(Cancelled)),
            (Some(Cancelled), "quality", Err("ticket 1 is cancelled")),
        ];
        let states = [None, Some(Open), Some(Complete), Some(Cancelled)];
        assert_eq!(
            table.len(),
            states.len() * events().len(),
            "table is complete"
        );
        for (state, name, expected) in table {
            let before = ticket_in(*state);
            let (_, event) = events().into_iter().find(|(n, _)| n == name).unwrap();
            let result = Ticket::apply(before.as_ref(), "box-1", &event);
            match (expected, result) {
                (Ok(want), Ok(after)) => {
                    assert_eq!(after.state, *want, "{state:?} + {name}");
                    if let Some(before) = &before {
                        assert_eq!(after.first, before.first, "{name} keeps the first weighing");
                    }
                }
                (Err(needle), Err(e)) => {
                    assert!(e.to_string().starts_with(needle), "{state:?} + {name}: {e}")
                }
                (want, got) => panic!("{state:?} + {name}: expected {want:?}, got {got:?}"),
            }
        }
    }

    #[test]
    fn a_complete_ticket_has_gross_tare_net_and_keeps_its_context() {
        let t = ticket_in(Some(TicketState::Complete)).unwrap();
        assert_eq!(
            (t.gross, t.tare, t.net),
            (Some(kg(40_000)), Some(kg(15_000)), Some(kg(25_000)))
        );
        assert_eq!(t.tare_source, Some(TareSource::Weighed));
        assert_eq!(t.article.unwrap().name, "Weizen");
        assert!(t.legal_for_trade);
    }

    #[test]
    fn a_manual_step_makes_the_ticket_not_legal_for_trade() {
        let open = ticket_in(Some(TicketState::Open)).unwrap();
        let t = Ticket::apply(
            Some(&open),
            "box-1",
            &TicketEvent::Second(second(15_000, StepSource::Manual)),
        )
        .unwrap();
        assert!(!t.legal_for_trade);
        assert_eq!(
            t.second.unwrap().manual_reason.as_deref(),
            Some("scale defect")
        );
    }

    #[test]
    fn the_stored_tare_ticket_says_so() {
        let t = Ticket::apply(None, "box-1", &TicketEvent::StoredTare(stored_tare())).unwrap();
        assert_eq!(t.tare_source, Some(TareSource::Stored));
        assert_eq!(t.net, Some(kg(24_000)));
        assert_eq!(t.second.unwrap().source, StepSource::StoredTare);
    }

    #[test]
    fn a_claimed_net_that_does_not_follow_is_refused() {
        let open = ticket_in(Some(TicketState::Open)).unwrap();
        let mut forged = second(15_000, StepSource::Scale);
        forged.net = kg(30_000);
        let err = Ticket::apply(Some(&open), "box-1", &TicketEvent::Second(forged)).unwrap_err();
        assert!(err.to_string().contains("do not follow"), "{err}");

        let mut other = second(15_000, StepSource::Scale);
        other.plate = "XX-X 1".into();
        let err = Ticket::apply(Some(&open), "box-1", &TicketEvent::Second(other)).unwrap_err();
        assert!(err.to_string().contains("plate"), "{err}");

        let mut not_stored = stored_tare();
        not_stored.stored_tare.source = StepSource::Scale;
        let err = Ticket::apply(None, "box-1", &TicketEvent::StoredTare(not_stored)).unwrap_err();
        assert!(err.to_string().contains("not a stored tare"), "{err}");
    }

    #[test]
    fn reprints_count_up_without_gaps_and_a_storno_needs_a_reason() {
        let t = ticket_in(Some(TicketState::Complete)).unwrap();
        let t = Ticket::apply(Some(&t), "box-1", &reprint(1)).unwrap();
        assert_eq!(t.prints, 1);
        assert!(Ticket::apply(Some(&t), "box-1", &reprint(3)).is_err());
        let TicketEvent::Cancel(mut c) = cancel() else {
            unreachable!()
        };
        c.reason = "  ".into();
        let err = Ticket::apply(Some(&t), "box-1", &TicketEvent::Cancel(c)).unwrap_err();
        assert!(err.to_string().contains("reason"), "{err}");
    }

    #[test]
    fn records_round_trip_through_their_kind() {
        for (name, event) in events() {
            let back = TicketEvent::from_record(event.kind(), &event.to_json()).unwrap();
            assert_eq!(back, Some(event), "{name}");
        }
        assert_eq!(
            TicketEvent::from_record("telemetry.x", &serde_json::json!({})).unwrap(),
            None
        );
    }

    #[test]
    fn records_of_older_boxes_still_read() {
        // A first weighing as boxes wrote it before master data and sources.
        let old = serde_json::json!({
            "ticket_no": 3, "plate": "AB-C 1", "direction": "intake",
            "first": {"scale_id": "b", "weight": {"value": 100, "decimals": 0, "unit": "kg"},
                      "alibi_id": "7", "weighed_at": "2026-11-22T08:00:00.000Z"}
        });
        let Some(TicketEvent::First(f)) =
            TicketEvent::from_record(crate::KIND_FIRST_WEIGHING, &old).unwrap()
        else {
            panic!("not a first weighing")
        };
        assert_eq!(f.first.source, StepSource::Scale);
        assert_eq!(f.context, TicketContext::default());
    }

    proptest::proptest! {
        /// Central reads these payloads from outside: whatever arrives, as
        /// whatever kind, reading it and applying it never panics.
        #[test]
        fn arbitrary_payloads_never_panic(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400),
            ticket_no in 0u64..3,
            value in proptest::prelude::any::<i64>(),
        ) {
            let mut payloads: Vec<serde_json::Value> =
                serde_json::from_slice(&bytes).into_iter().collect();
            // Valid shapes with hostile numbers get further than random bytes.
            for (_, event) in events() {
                let mut json = event.to_json();
                json["ticket_no"] = ticket_no.into();
                for weight in ["gross", "tare", "net"] {
                    if json.get(weight).is_some() {
                        json[weight]["value"] = value.into();
                    }
                }
                payloads.push(json);
            }
            let states = [None, Some(TicketState::Open), Some(TicketState::Complete), Some(TicketState::Cancelled)];
            for payload in &payloads {
                for kind in [crate::KIND_FIRST_WEIGHING, crate::KIND_SECOND_WEIGHING,
                             crate::KIND_STORED_TARE_WEIGHING, crate::KIND_CANCELLATION,
                             crate::KIND_REPRINT, crate::KIND_QUALITY_SAMPLE] {
                    if let Ok(Some(event)) = TicketEvent::from_record(kind, payload) {
                        for state in states {
                            if let Ok(ticket) = Ticket::apply(ticket_in(state).as_ref(), "box-1", &event) {
                                proptest::prop_assert_eq!(ticket.ticket_no, event.ticket_no());
                            }
                        }
                    }
                }
            }
        }
    }
}
