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

pub mod cash;
pub mod command;
pub mod master_data;
pub mod ticket;

pub use ticket::{Ticket, TicketEvent, TicketState, TransitionError};

/// `kind` of the record written when a vehicle's first weighing is taken.
pub const KIND_FIRST_WEIGHING: &str = "weighing.first";
/// `kind` of the record written when the second weighing completes a ticket.
pub const KIND_SECOND_WEIGHING: &str = "weighing.second";
/// `kind` of a one-pass weighing against the vehicle's stored tare.
pub const KIND_STORED_TARE_WEIGHING: &str = "weighing.stored_tare";
/// `kind` of a cancellation (storno); the cancelled ticket's records stay.
pub const KIND_CANCELLATION: &str = "ticket.cancelled";
/// `kind` of a reprint of a ticket (a copy, marked as such).
pub const KIND_REPRINT: &str = "ticket.reprinted";
/// `kind` of quality analyzer values attached to a ticket.
pub const KIND_QUALITY_SAMPLE: &str = "ticket.quality";

/// `kind` of a recorded field-device value (a Modbus point marked `record`).
pub const KIND_MODBUS_VALUE: &str = "modbus.value";

/// Payload of [`KIND_MODBUS_VALUE`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldValue {
    /// The field device (Modbus device id in the box's config).
    pub device_id: String,
    pub point: String,
    /// A number, boolean or text, as decoded and scaled by the box.
    pub value: serde_json::Value,
    #[serde(default)]
    pub unit: Option<String>,
    /// RFC 3339 UTC time of the reading.
    pub at: String,
}

/// Whether goods come in (the truck arrives loaded) or go out (it arrives empty).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Intake,
    Outgoing,
}

/// Where a weighing step's weight came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StepSource {
    /// A registered (alibi) weighing from the scale terminal.
    #[default]
    Scale,
    /// Typed in by the operator: never legal for trade.
    Manual,
    /// The vehicle's stored tare from master data (`PT` on the ticket).
    StoredTare,
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
    /// RFC 3339 UTC time the box took the weighing; for a stored tare, the
    /// time the tare was weighed.
    pub weighed_at: String,
    /// The terminal's own date and time of the weighing, as it sent it
    /// (SysTec, DISOMAT); the legal timestamp where present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub terminal_time: Option<String>,
    #[serde(default)]
    pub source: StepSource,
    /// Why the operator typed the weight in (only for manual steps).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manual_reason: Option<String>,
    /// Who took this weighing at the terminal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator: Option<String>,
}

impl WeighingStep {
    /// A step is legal for trade when it is an alibi-numbered weighing from
    /// the terminal (or a stored tare that was one).
    pub fn is_legal_for_trade(&self) -> bool {
        self.source != StepSource::Manual && self.alibi_id.is_some()
    }
}

/// A master-data entity as it was when the record was written: id and the
/// name printed on the ticket, so a later rename does not change history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ref {
    pub id: String,
    pub name: String,
}

/// What a ticket is about, fixed when it opens.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TicketContext {
    #[serde(default)]
    pub partner: Option<Ref>,
    #[serde(default)]
    pub article: Option<Ref>,
    #[serde(default)]
    pub contract_id: Option<String>,
    #[serde(default)]
    pub lot: Option<Ref>,
    #[serde(default)]
    pub location: Option<Ref>,
    /// Who took the weighing at the terminal.
    #[serde(default)]
    pub operator: Option<String>,
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
    /// Absent in records of boxes older than master data.
    #[serde(default)]
    pub context: TicketContext,
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
    #[serde(default)]
    pub operator: Option<String>,
}

/// Payload of [`KIND_STORED_TARE_WEIGHING`]: opens and completes a ticket
/// with one weighing; the tare is the vehicle's stored tare.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoredTareWeighing {
    pub ticket_no: u64,
    pub plate: String,
    pub direction: Direction,
    pub weighing: WeighingStep,
    /// Source `stored-tare`; `weighed_at` and `alibi_id` are the tare's own.
    pub stored_tare: WeighingStep,
    pub gross: Weight,
    pub tare: Weight,
    pub net: Weight,
    #[serde(default)]
    pub context: TicketContext,
}

/// Payload of [`KIND_CANCELLATION`]: the storno of a ticket. The ticket's
/// weighings stay in the chain; this record references them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cancellation {
    pub ticket_no: u64,
    pub at: String,
    pub operator: String,
    pub reason: String,
}

/// Payload of [`KIND_REPRINT`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reprint {
    pub ticket_no: u64,
    pub at: String,
    pub operator: String,
    /// 1 for the first copy.
    pub copy_no: u32,
}

/// Where quality values came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QualitySource {
    /// Read from a configured analyzer.
    Device,
    /// Typed in by the operator.
    Manual,
}

/// Payload of [`KIND_QUALITY_SAMPLE`]: analyzer values of a load.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QualitySample {
    pub ticket_no: u64,
    pub taken_at: String,
    pub source: QualitySource,
    /// The analyzer, when `source` is `device`.
    #[serde(default)]
    pub device_id: Option<String>,
    pub operator: String,
    #[serde(default)]
    pub moisture_percent: Option<f64>,
    /// Hectolitre weight (bulk density), kg/hl.
    #[serde(default)]
    pub hectolitre_kg: Option<f64>,
    #[serde(default)]
    pub protein_percent: Option<f64>,
    /// The analyzer's result line as received, when read from a device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw: Option<String>,
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
            source: StepSource::Scale,
            manual_reason: None,
            operator: None,
        };
        let first = FirstWeighing {
            ticket_no: 7,
            plate: "AB-C 123".into(),
            direction: Direction::Intake,
            first: step,
            context: TicketContext::default(),
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
