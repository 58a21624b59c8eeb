//! Scales: protocol-independent readings, the error type, protocol drivers and the device
//! task that owns one scale connection.

pub mod device;
pub mod error;
pub mod mtsics;
pub mod reading;

pub use error::ScaleError;
pub use reading::{LegalWeighing, Reading, Unit, Weight};
