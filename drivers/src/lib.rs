//! Device drivers for the Valeo Edge box: scale protocols, the byte transports they run on
//! (serial, TCP) and simulators that speak the real wire protocols.
//!
//! Layering, from the bytes up: `scale::mtsics::frame` (pure parse/format), `scale::mtsics::codec`
//! (line framing with a length cap and resync), `scale::mtsics::client` (one command, one reply,
//! generic over `AsyncRead + AsyncWrite`), `transport` (opens serial/TCP byte streams) and
//! `scale::device` (the single task that owns a scale connection).
//!
//! This crate knows nothing of MQTT, SQLite or HTTP.

pub mod scale;
pub mod sim;
pub mod transport;
