//! Error types of the sync crate, one enum per layer.

/// A message on the wire that breaks the contract.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("malformed message: {0}")]
    Malformed(String),
    #[error("message of {bytes} bytes exceeds the limit of {max_bytes} bytes")]
    TooLarge { bytes: usize, max_bytes: usize },
    #[error("unsupported protocol version {0}")]
    UnsupportedVersion(u32),
    #[error("topic {0:?} is not a records topic of the contract")]
    BadTopic(String),
    #[error("invalid device id {0:?}: use 1-64 characters of A-Z a-z 0-9 - _")]
    InvalidDeviceId(String),
    #[error("message on the topic of device {topic:?} claims to be from {claimed:?}")]
    IdentityMismatch { topic: String, claimed: String },
    #[error("record seq {seq}: hash does not match its content")]
    HashMismatch { seq: u64 },
    #[error("record seq {seq}: prev_hash does not link to the previous record")]
    ChainBroken { seq: u64 },
    #[error("sequence gap: expected seq {expected}, got {got}")]
    Gap { expected: u64, got: u64 },
    #[error("bad signature: {0}")]
    BadSignature(String),
}

impl WireError {
    /// The dead-letter category of this error.
    pub fn reason(&self) -> crate::receiver::RejectReason {
        use crate::receiver::RejectReason;
        match self {
            WireError::Malformed(_) | WireError::BadTopic(_) | WireError::InvalidDeviceId(_) => {
                RejectReason::Malformed
            }
            WireError::TooLarge { .. } => RejectReason::TooLarge,
            WireError::UnsupportedVersion(_) => RejectReason::UnsupportedVersion,
            WireError::IdentityMismatch { .. } => RejectReason::IdentityMismatch,
            WireError::HashMismatch { .. }
            | WireError::ChainBroken { .. }
            | WireError::Gap { .. } => RejectReason::ChainBreak,
            WireError::BadSignature(_) => RejectReason::BadSignature,
        }
    }
}

/// A failure of the edge outbox.
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error("outbox database {path}: {source}")]
    Open {
        path: String,
        source: rusqlite::Error,
    },
    #[error("outbox database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error(
        "outbox database belongs to device {stored:?} but the configuration says {configured:?}; \
         refusing to mix the records of two devices"
    )]
    DeviceMismatch { stored: String, configured: String },
    #[error("outbox holds a corrupt record at seq {seq}: {reason}")]
    Corrupt { seq: u64, reason: String },
    #[error("outbox is full: {pending_records} records pending, limit {max_pending_records}")]
    Full {
        pending_records: u64,
        max_pending_records: u64,
    },
    #[error(
        "outbox database uses {used_bytes} bytes, its quota is {max_bytes} bytes; free disk space or raise max_db_bytes"
    )]
    DiskQuota { used_bytes: u64, max_bytes: u64 },
    #[error("payload of kind {kind:?} is not valid JSON: {reason}")]
    Payload { kind: String, reason: String },
    #[error("outbox worker stopped")]
    WorkerGone,
    #[error(transparent)]
    Wire(#[from] WireError),
}
