//! Mettler-Toledo MT-SICS (Standard Interface Command Set), levels 0/1, layered as
//! `frame` (pure data and parse/format) → `codec` (line framing, resync) → `client`
//! (command/reply over any byte stream), plus `protocol`, the `ScaleProtocol` the device
//! task uses.

pub mod client;
pub mod codec;
pub mod frame;
pub mod protocol;

pub use client::MtSicsClient;
pub use codec::{CodecError, MtSicsCodec};
pub use frame::{Command, FrameError, Response, parse_line};
pub use protocol::MtSicsProtocol;
