//! Writes to field devices, from the terminal (local API) and from central
//! (commands): one place decides whether a write may happen, converts the
//! value and reports the result.
//!
//! Points that drive the site interlock (lights and barriers configured as
//! Modbus pins in `[site_io]`) are refused here: only the interlock moves
//! them, so no remote click can open a barrier in front of a truck that is
//! being weighed.
//!
//! Central's commands arrive on the commands topic. Each is carried out at
//! most once per run (recent ids are remembered), refused when it arrived
//! after its `expires_at`, and answered with a `command.result` outbox
//! record, which reaches central exactly once, also after an outage.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use bytes::Bytes;
use chrono::DateTime;
use tokio::sync::mpsc;
use valeo_drivers::modbus::map::Value;
use valeo_drivers::modbus::poller::{LineHandle, ModbusError};
use valeo_drivers::site_io::{PinConfig, SiteIoConfig};
use valeo_records::command::{
    CommandAction, CommandOutcome, CommandResult, DeviceCommand, KIND_COMMAND_RESULT,
};
use valeo_sync::outbox::Outbox;

use crate::workflow::{Clock, OnRecord};

/// Command ids remembered to recognise a redelivery.
pub const REMEMBERED_COMMAND_IDS: usize = 1024;

/// Why a write did not happen or did not work.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("{0}")]
    BadValue(String),
    #[error("no modbus device {0:?}")]
    UnknownDevice(String),
    #[error(
        "{device}.{point} is driven by the site interlock ({field}); it cannot be written by hand"
    )]
    Interlocked {
        device: String,
        point: String,
        field: String,
    },
    #[error(transparent)]
    Modbus(#[from] ModbusError),
}

impl WriteError {
    /// Whether the write was tried on the device (and failed there), as
    /// opposed to refused before.
    pub fn outcome(&self) -> CommandOutcome {
        match self {
            WriteError::Modbus(
                ModbusError::Exception { .. }
                | ModbusError::Timeout { .. }
                | ModbusError::Transport { .. }
                | ModbusError::Degraded(_)
                | ModbusError::Gone
                | ModbusError::Busy,
            ) => CommandOutcome::Failed,
            _ => CommandOutcome::Refused,
        }
    }
}

/// Converts a JSON value to a point value; the line's codec checks it
/// against the point's data type.
pub fn value_from_json(value: &serde_json::Value) -> Result<Value, WriteError> {
    match value {
        serde_json::Value::Bool(b) => Ok(Value::Bool(*b)),
        serde_json::Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => Ok(Value::Int(i)),
            (_, Some(u), _) => Ok(Value::UInt(u)),
            (_, _, Some(f)) => Ok(Value::Float(f)),
            _ => Err(WriteError::BadValue("value is not a number".into())),
        },
        serde_json::Value::String(s) => Ok(Value::Text(s.clone())),
        other => Err(WriteError::BadValue(format!(
            "value must be a boolean, number or string, got {other}"
        ))),
    }
}

/// The Modbus lines and which of their points the interlock owns. Cheap to
/// clone.
#[derive(Debug, Clone, Default)]
pub struct FieldWrites {
    lines: Arc<Vec<LineHandle>>,
    /// (device, point) → the `[site_io]` field that drives it.
    interlocked: Arc<HashMap<(String, String), String>>,
}

impl FieldWrites {
    pub fn new(lines: Arc<Vec<LineHandle>>, site: &SiteIoConfig) -> Self {
        let mut interlocked = HashMap::new();
        for (field, pin) in site.pins() {
            if let PinConfig::Modbus { device, point, .. } = pin {
                interlocked.insert((device.clone(), point.clone()), field);
            }
        }
        Self {
            lines,
            interlocked: Arc::new(interlocked),
        }
    }

    /// The `[site_io]` field that drives the point, if the interlock owns it.
    pub fn driven_by(&self, device: &str, point: &str) -> Option<&str> {
        self.interlocked
            .get(&(device.to_owned(), point.to_owned()))
            .map(String::as_str)
    }

    /// The lines, for listing.
    pub fn lines(&self) -> &[LineHandle] {
        &self.lines
    }

    /// Writes `value` to a point and waits for the device's confirmation.
    pub async fn write(
        &self,
        device: &str,
        point: &str,
        value: &serde_json::Value,
        by: &str,
    ) -> Result<(), WriteError> {
        let value = value_from_json(value)?;
        if let Some(field) = self.driven_by(device, point) {
            return Err(WriteError::Interlocked {
                device: device.to_owned(),
                point: point.to_owned(),
                field: field.to_owned(),
            });
        }
        let line = self
            .lines
            .iter()
            .find(|l| l.device_config(device).is_some())
            .ok_or_else(|| WriteError::UnknownDevice(device.to_owned()))?;
        tracing::info!(device, point, %value, by, "modbus write");
        line.write(device, point, value).await?;
        Ok(())
    }
}

/// Ids seen recently, oldest first out.
#[derive(Debug, Default)]
struct RecentIds {
    order: VecDeque<String>,
    set: HashSet<String>,
}

impl RecentIds {
    /// True when `id` is new (and remembers it).
    fn insert(&mut self, id: &str) -> bool {
        if self.set.contains(id) {
            return false;
        }
        if self.order.len() >= REMEMBERED_COMMAND_IDS
            && let Some(old) = self.order.pop_front()
        {
            self.set.remove(&old);
        }
        self.order.push_back(id.to_owned());
        self.set.insert(id.to_owned());
        true
    }
}

/// Carries out central's commands until the uplink stops delivering them.
pub async fn run(
    mut commands: mpsc::Receiver<Bytes>,
    writes: FieldWrites,
    outbox: Outbox,
    clock: Arc<dyn Clock>,
    on_record: OnRecord,
) {
    let mut recent = RecentIds::default();
    while let Some(payload) = commands.recv().await {
        let command = match DeviceCommand::decode(&payload) {
            Ok(command) => command,
            Err(error) => {
                // Without a readable id there is nothing to answer; central
                // shows the command as overdue.
                tracing::warn!(%error, bytes = payload.len(), "command refused");
                continue;
            }
        };
        if !recent.insert(&command.id) {
            tracing::info!(command_id = %command.id, "command delivered again; already handled");
            continue;
        }
        let (outcome, error) = execute(&command, &writes, clock.as_ref()).await;
        let result = CommandResult {
            command_id: command.id.clone(),
            action: command.action,
            requested_by: command.requested_by,
            outcome,
            error,
            at: clock
                .now()
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        };
        let payload = serde_json::to_value(&result).unwrap_or_default();
        let outbox = outbox.clone();
        let now = clock.now();
        let stored =
            tokio::task::spawn_blocking(move || outbox.append(KIND_COMMAND_RESULT, payload, now))
                .await;
        match stored {
            Ok(Ok(_)) => (on_record.0)(),
            Ok(Err(error)) => {
                tracing::error!(command_id = %command.id, %error, "command result not recorded");
            }
            Err(_) => return,
        }
    }
}

async fn execute(
    command: &DeviceCommand,
    writes: &FieldWrites,
    clock: &dyn Clock,
) -> (CommandOutcome, Option<String>) {
    match DateTime::parse_from_rfc3339(&command.expires_at) {
        Ok(expires_at) if expires_at < clock.now() => {
            return (
                CommandOutcome::Expired,
                Some(format!(
                    "arrived after it expired at {}",
                    command.expires_at
                )),
            );
        }
        Ok(_) => {}
        Err(error) => {
            return (
                CommandOutcome::Refused,
                Some(format!("expires_at is not RFC 3339: {error}")),
            );
        }
    }
    let by = format!("central:{}", command.requested_by);
    match &command.action {
        CommandAction::ModbusWrite {
            device,
            point,
            value,
        } => match writes.write(device, point, value, &by).await {
            Ok(()) => (CommandOutcome::Done, None),
            Err(error) => (error.outcome(), Some(error.to_string())),
        },
    }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};
    use valeo_sync::outbox::OutboxLimits;

    use super::*;

    #[derive(Debug)]
    struct FixedClock(DateTime<Utc>);

    impl Clock for FixedClock {
        fn now(&self) -> DateTime<Utc> {
            self.0
        }
    }

    fn command(id: &str, expires_at: &str) -> Bytes {
        let command = DeviceCommand {
            v: 1,
            id: id.into(),
            action: CommandAction::ModbusWrite {
                device: "lights".into(),
                point: "yard_lamp".into(),
                value: serde_json::json!(true),
            },
            requested_by: "office:Ben".into(),
            requested_at: "2026-11-29T08:00:00.000Z".into(),
            expires_at: expires_at.into(),
        };
        Bytes::from(serde_json::to_vec(&command).unwrap())
    }

    /// Central's commands, garbage among them, through the runner into the
    /// outbox: one result record per distinct, readable command.
    #[tokio::test]
    async fn every_readable_command_is_answered_once_in_the_outbox() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Outbox::open(&dir.path().join("o.db"), "b1", OutboxLimits::default()).unwrap();
        let clock = Arc::new(FixedClock(
            Utc.with_ymd_and_hms(2026, 11, 29, 8, 0, 30).unwrap(),
        ));
        let (tx, rx) = mpsc::channel(16);
        for payload in [
            command("late", "2026-11-29T08:00:10.000Z"),
            Bytes::from_static(b"{not json"),
            command("nobody-home", "2026-11-29T08:01:00.000Z"),
            command("nobody-home", "2026-11-29T08:01:00.000Z"),
            command("odd-expiry", "tomorrow"),
        ] {
            tx.send(payload).await.unwrap();
        }
        drop(tx);
        run(
            rx,
            FieldWrites::default(),
            outbox.clone(),
            clock,
            OnRecord(Arc::new(|| {})),
        )
        .await;
        let results: Vec<CommandResult> = outbox
            .pending_after(0, 100)
            .unwrap()
            .into_iter()
            .map(|r| {
                assert_eq!(r.kind, KIND_COMMAND_RESULT);
                serde_json::from_value(r.payload).unwrap()
            })
            .collect();
        let summary: Vec<(&str, CommandOutcome)> = results
            .iter()
            .map(|r| (r.command_id.as_str(), r.outcome))
            .collect();
        assert_eq!(
            summary,
            [
                ("late", CommandOutcome::Expired),
                ("nobody-home", CommandOutcome::Refused),
                ("odd-expiry", CommandOutcome::Refused),
            ]
        );
        assert_eq!(
            results[1].error.as_deref(),
            Some("no modbus device \"lights\"")
        );
        assert_eq!(results[0].requested_by, "office:Ben");
        assert_eq!(results[0].at, "2026-11-29T08:00:30.000Z");
    }

    #[test]
    fn recent_ids_forget_the_oldest_beyond_the_cap() {
        let mut recent = RecentIds::default();
        assert!(recent.insert("a"));
        assert!(!recent.insert("a"));
        for i in 0..REMEMBERED_COMMAND_IDS {
            assert!(recent.insert(&format!("x{i}")));
        }
        assert!(recent.insert("a"), "a was the oldest and is forgotten");
        assert_eq!(recent.order.len(), REMEMBERED_COMMAND_IDS);
        assert_eq!(recent.set.len(), REMEMBERED_COMMAND_IDS);
    }

    #[test]
    fn values_convert_or_name_the_problem() {
        assert_eq!(
            value_from_json(&serde_json::json!(true)).unwrap(),
            Value::Bool(true)
        );
        assert_eq!(
            value_from_json(&serde_json::json!(-3)).unwrap(),
            Value::Int(-3)
        );
        assert_eq!(
            value_from_json(&serde_json::json!(2.5)).unwrap(),
            Value::Float(2.5)
        );
        let error = value_from_json(&serde_json::json!({"a": 1})).unwrap_err();
        assert_eq!(
            error.to_string(),
            "value must be a boolean, number or string, got {\"a\":1}"
        );
    }
}
