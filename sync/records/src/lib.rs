//! The business records an edge box writes to its outbox and central reads
//! back: one payload type per record `kind`.
//!
//! The sync envelope (`valeo-sync`) carries these as opaque JSON; this crate
//! is where both sides agree on what the JSON means. It knows nothing of
//! transport or storage. Fields are only ever added (with a default), never
//! renamed or removed, because central must read records written by boxes of
//! every deployed version.

use serde::{Deserialize, Serialize};
use valeo_drivers::scale::reading::Weight;

/// `kind` of the record written when a vehicle's first weighing is taken.
pub const KIND_FIRST_WEIGHING: &str = "weighing.first";
/// `kind` of the record written when the second weighing completes a ticket.
pub const KIND_SECOND_WEIGHING: &str = "weighing.second";

/// Whether goods come in (the truck arrives loaded) or go out (it arrives empty).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Intake,
    Outgoing,
}

/// One weighing as the terminal reported it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeighingStep {
    pub scale_id: String,
    pub weight: Weight,
    /// The terminal's alibi (ident) number; `None` when the terminal's
    /// protocol has none, which makes the weighing not legal for trade.
    pub alibi_id: Option<String>,
    /// RFC 3339 UTC time the box took the weighing.
    pub weighed_at: String,
    /// The terminal's own date and time of the weighing, as it sent it
    /// (SysTec, DISOMAT); the legal timestamp where present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub terminal_time: Option<String>,
}

/// Payload of [`KIND_FIRST_WEIGHING`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FirstWeighing {
    /// Consecutive per site, never reused.
    pub ticket_no: u64,
    pub plate: String,
    pub direction: Direction,
    pub first: WeighingStep,
}

/// Payload of [`KIND_SECOND_WEIGHING`]: completes the ticket. Gross is the
/// heavier weighing, tare the lighter; which step each came from follows
/// from `direction`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecondWeighing {
    pub ticket_no: u64,
    pub plate: String,
    pub direction: Direction,
    pub first: WeighingStep,
    pub second: WeighingStep,
    pub gross: Weight,
    pub tare: Weight,
    pub net: Weight,
}

/// Two weighings that cannot form a ticket.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TicketError {
    #[error("first weighing is {first} but second is {second}: units or resolution differ")]
    IncompatibleWeights { first: String, second: String },
}

/// Assigns gross and tare and computes net = gross − tare.
///
/// Intake: the truck comes loaded, so the first weighing is normally gross.
/// Outgoing: it comes empty and the first weighing is tare. If the weights
/// say otherwise (a returned load), the heavier one is still gross: net is
/// never negative.
pub fn gross_tare_net(
    first: &Weight,
    second: &Weight,
) -> Result<(Weight, Weight, Weight), TicketError> {
    let net = first
        .abs_diff(second)
        .ok_or_else(|| TicketError::IncompatibleWeights {
            first: first.to_string(),
            second: second.to_string(),
        })?;
    let (gross, tare) = if first.value >= second.value {
        (*first, *second)
    } else {
        (*second, *first)
    };
    Ok((gross, tare, net))
}

#[cfg(test)]
mod tests {
    use super::*;
    use valeo_drivers::scale::reading::Unit;

    fn kg(value: i64) -> Weight {
        Weight::new(value, 0, Unit::Kg)
    }

    #[test]
    fn gross_is_the_heavier_weighing_in_either_order() {
        assert_eq!(
            gross_tare_net(&kg(40_000), &kg(14_980)).unwrap(),
            (kg(40_000), kg(14_980), kg(25_020))
        );
        assert_eq!(
            gross_tare_net(&kg(14_980), &kg(40_000)).unwrap(),
            (kg(40_000), kg(14_980), kg(25_020))
        );
    }

    #[test]
    fn mixed_units_are_refused() {
        let err = gross_tare_net(&kg(40_000), &Weight::new(1498, 2, Unit::T)).unwrap_err();
        assert!(err.to_string().contains("14.98 t"), "{err}");
    }

    #[test]
    fn payloads_round_trip_as_documented_json() {
        let step = WeighingStep {
            scale_id: "bridge-1".into(),
            weight: kg(40_000),
            alibi_id: None,
            weighed_at: "2026-11-22T08:00:00.000Z".into(),
            terminal_time: None,
        };
        let first = FirstWeighing {
            ticket_no: 7,
            plate: "AB-C 123".into(),
            direction: Direction::Intake,
            first: step,
        };
        let json = serde_json::to_value(&first).unwrap();
        assert_eq!(json["direction"], "intake");
        assert_eq!(json["first"]["weight"]["unit"], "kg");
        assert_eq!(
            serde_json::from_value::<FirstWeighing>(json).unwrap(),
            first
        );
    }
}
