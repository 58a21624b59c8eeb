//! Gets records from an edge box into central exactly once in effect.
//!
//! - [`wire`]: the contract (topics, envelopes, hash chain, acks); the only
//!   place where its bytes are defined.
//! - [`outbox`]: the edge's durable, hash-chained SQLite log of records.
//! - [`uplink`]: the edge task that sends the outbox and applies acks.
//! - [`receiver`]: the central task that checks batches, has them committed,
//!   then acks.
//! - [`identity`]: the device's ed25519 key; batch signatures.
//! - [`mqtt`]: the only module that knows rumqttc.
//!
//! This crate knows envelopes, not what they carry: it never interprets a
//! record's `kind` or `payload`.

pub mod error;
pub mod identity;
pub mod mqtt;
pub mod outbox;
pub mod receiver;
pub mod uplink;
pub mod wire;

pub use error::{OutboxError, WireError};
