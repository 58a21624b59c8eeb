//! Modbus devices (moisture analyzers, silo levels, energy meters, light
//! and barrier controllers) over Modbus TCP and RTU.
//!
//! Layering: `map` (the register map as configuration, validated, and the
//! value codec: registers ↔ values in every byte and word order) → `plan`
//! (points merged into as few requests as the spec and the device allow) →
//! `poller` (the one task that owns a serial line or TCP endpoint and
//! serialises every request on it) ; `sim` is a device simulator speaking
//! the real protocol, over TCP and over a pseudo-terminal for RTU.

pub mod ascii;
pub mod map;
pub mod plan;
pub mod poller;
pub mod sim;
