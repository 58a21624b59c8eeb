//! Device drivers for the Valeo Edge box: scale protocols, the byte transports they run on
//! (serial, TCP) and simulators that speak the real wire protocols.
//!
//! Layering, from the bytes up: per-protocol frame functions (pure parse/format, typed
//! errors) → `scale::framing` (frame splitting with a length cap and resync) →
//! `scale::protocol` (`ScaleProtocol`: a frame becomes a protocol-independent `Reply`) →
//! `scale::link` (one request, one reply, generic over `AsyncRead + AsyncWrite`) →
//! `scale::bus` (the single task that owns a port or connection, shared by every device on
//! it) → `scale::device` (one task per scale: polling, legal weighings, health). Protocols:
//! `mtsics`, `toledo`, `sma`, `systec`, `disomat`, and the configurable `line`.
//!
//! This crate knows nothing of MQTT, SQLite or HTTP.

/// Grain analyzers (moisture, hectolitre weight, protein) read over a serial line or TCP.
pub mod analyzer;
/// Modbus TCP and RTU devices: register maps, polling, writes, a simulator.
pub mod modbus;
pub mod scale;
pub mod sim;
/// Traffic lights, barriers and vehicle-position sensors at the platform, with the weighing interlock.
pub mod site_io;
pub mod transport;
pub mod tse;
