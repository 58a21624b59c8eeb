//! Commands from central to one box, and the record of what became of each.
//!
//! Central publishes a [`DeviceCommand`] on the box's `commands` topic (QoS 1, not retained).
//! The box carries it out at most once (it remembers recent ids), unless it has expired by
//! the box's clock, and writes a [`CommandResult`] record (`command.result`) to its outbox:
//! the result reaches central exactly once, also after an outage, and stays in the device's
//! hash chain as the audit trail of who moved what remotely.

use serde::{Deserialize, Serialize};

/// `kind` of the record a box writes for every command it received.
pub const KIND_COMMAND_RESULT: &str = "command.result";

/// Version of the command document.
pub const COMMAND_VERSION: u32 = 1;

/// Largest command document a box accepts, in bytes.
pub const MAX_COMMAND_BYTES: usize = 16 * 1024;

/// Longest a command may stay valid.
pub const MAX_COMMAND_TTL_MS: u64 = 60 * 60 * 1000;

/// Longest command id.
pub const MAX_COMMAND_ID_CHARS: usize = 64;

/// Longest device, point or requester name in a command.
pub const MAX_NAME_CHARS: usize = 128;

/// What central asks a box to do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceCommand {
    /// [`COMMAND_VERSION`].
    pub v: u32,
    /// Unique per command, chosen by central (1–64 of `A-Z a-z 0-9 - _`).
    pub id: String,
    pub action: CommandAction,
    /// The central user or integration that asked.
    pub requested_by: String,
    /// RFC 3339.
    pub requested_at: String,
    /// RFC 3339; a box that receives the command later refuses it as expired.
    pub expires_at: String,
}

/// The action of a command.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum CommandAction {
    /// Write a read-write point of a Modbus device on one of the box's lines.
    ModbusWrite {
        device: String,
        point: String,
        /// A boolean, number or string, converted by the point's data type.
        value: serde_json::Value,
    },
}

/// What became of a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CommandOutcome {
    /// Carried out and confirmed by the device.
    Done,
    /// Tried, and the device or the line failed (timeout, exception, ...).
    Failed,
    /// Not tried: unknown target, read-only or interlocked point, bad value.
    Refused,
    /// Not tried: it arrived after `expires_at`.
    Expired,
}

impl CommandOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            CommandOutcome::Done => "done",
            CommandOutcome::Failed => "failed",
            CommandOutcome::Refused => "refused",
            CommandOutcome::Expired => "expired",
        }
    }
}

/// Payload of [`KIND_COMMAND_RESULT`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandResult {
    pub command_id: String,
    pub action: CommandAction,
    pub requested_by: String,
    pub outcome: CommandOutcome,
    /// Why it failed or was refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// RFC 3339, when the box finished with it.
    pub at: String,
}

/// A command document is unusable; the message names what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    #[error("command is {0} bytes, more than {MAX_COMMAND_BYTES}")]
    TooLarge(usize),
    #[error("command does not parse at {path}: {reason}")]
    Malformed { path: String, reason: String },
    #[error("command {field}: {problem}")]
    Invalid {
        field: &'static str,
        problem: String,
    },
}

fn check_name(field: &'static str, value: &str, max: usize) -> Result<(), CommandError> {
    if value.is_empty() || value.chars().count() > max {
        return Err(CommandError::Invalid {
            field,
            problem: format!("must be 1 to {max} characters"),
        });
    }
    if value.chars().any(char::is_control) {
        return Err(CommandError::Invalid {
            field,
            problem: "must not contain control characters".into(),
        });
    }
    Ok(())
}

/// Checks a command id: 1–64 of `A-Z a-z 0-9 - _`.
pub fn check_command_id(id: &str) -> Result<(), CommandError> {
    let ok = !id.is_empty()
        && id.chars().count() <= MAX_COMMAND_ID_CHARS
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(CommandError::Invalid {
            field: "id",
            problem: format!("must be 1 to {MAX_COMMAND_ID_CHARS} of A-Z a-z 0-9 - _"),
        })
    }
}

/// Checks who asked: 1–128 characters, no control characters.
pub fn check_requested_by(by: &str) -> Result<(), CommandError> {
    check_name("requested_by", by, MAX_NAME_CHARS)
}

impl CommandAction {
    /// Checks the names and the value's type.
    pub fn validate(&self) -> Result<(), CommandError> {
        match self {
            CommandAction::ModbusWrite {
                device,
                point,
                value,
            } => {
                check_name("action.device", device, MAX_NAME_CHARS)?;
                check_name("action.point", point, MAX_NAME_CHARS)?;
                if !(value.is_boolean() || value.is_number() || value.is_string()) {
                    return Err(CommandError::Invalid {
                        field: "action.value",
                        problem: format!("must be a boolean, number or string, got {value}"),
                    });
                }
                Ok(())
            }
        }
    }
}

impl DeviceCommand {
    /// Parses and checks a command as received from the broker.
    pub fn decode(bytes: &[u8]) -> Result<Self, CommandError> {
        if bytes.len() > MAX_COMMAND_BYTES {
            return Err(CommandError::TooLarge(bytes.len()));
        }
        let mut de = serde_json::Deserializer::from_slice(bytes);
        let command: DeviceCommand =
            serde_path_to_error::deserialize(&mut de).map_err(|e| CommandError::Malformed {
                path: e.path().to_string(),
                reason: e.inner().to_string(),
            })?;
        command.validate()?;
        Ok(command)
    }

    /// Checks version, id, names and value.
    pub fn validate(&self) -> Result<(), CommandError> {
        if self.v != COMMAND_VERSION {
            return Err(CommandError::Invalid {
                field: "v",
                problem: format!(
                    "version {} is not supported (want {COMMAND_VERSION})",
                    self.v
                ),
            });
        }
        check_command_id(&self.id)?;
        check_requested_by(&self.requested_by)?;
        self.action.validate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn command() -> DeviceCommand {
        DeviceCommand {
            v: 1,
            id: "c-1".into(),
            action: CommandAction::ModbusWrite {
                device: "lights".into(),
                point: "yard_lamp".into(),
                value: serde_json::json!(true),
            },
            requested_by: "office:anna".into(),
            requested_at: "2026-11-29T08:00:00.000Z".into(),
            expires_at: "2026-11-29T08:01:00.000Z".into(),
        }
    }

    #[test]
    fn a_command_round_trips() {
        let bytes = serde_json::to_vec(&command()).unwrap();
        assert_eq!(DeviceCommand::decode(&bytes).unwrap(), command());
    }

    #[test]
    fn bad_commands_name_what_is_wrong() {
        let mut json = serde_json::to_value(command()).unwrap();
        // (object path, new member value, expected error start)
        let cases: [(&[&str], serde_json::Value, &str); 6] = [
            (&["v"], 2.into(), "command v: version 2"),
            (&["id"], "a/b".into(), "command id: must be"),
            (
                &["action", "value"],
                serde_json::json!([1]),
                "command action.value: must be a boolean",
            ),
            (
                &["action", "kind"],
                "reboot".into(),
                "command does not parse at action",
            ),
            (
                &["extra"],
                1.into(),
                "command does not parse at extra: unknown field `extra`",
            ),
            (
                &["action", "device"],
                "".into(),
                "command action.device: must be 1 to 128",
            ),
        ];
        for (path, value, expected) in cases {
            let mut c = json.clone();
            let (last, parents) = path.split_last().unwrap();
            let mut target = &mut c;
            for key in parents {
                target = &mut target[*key];
            }
            target[*last] = value;
            let error = DeviceCommand::decode(&serde_json::to_vec(&c).unwrap()).unwrap_err();
            assert!(error.to_string().starts_with(expected), "{error}");
        }
        json["requested_by"] = "x".repeat(MAX_COMMAND_BYTES).into();
        assert!(matches!(
            DeviceCommand::decode(&serde_json::to_vec(&json).unwrap()),
            Err(CommandError::TooLarge(_))
        ));
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            // Either answer is fine; a panic is not.
            drop(DeviceCommand::decode(&bytes));
        }
    }
}
