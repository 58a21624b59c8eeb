//! Simulators that speak the real wire protocols, for tests and demos: a weighbridge
//! physical model (`truck`), an MT-SICS terminal on any byte stream (`mtsics`), and the same
//! terminal on a real pseudo-terminal (`pty`) or a TCP port (`tcp`).

pub mod mtsics;
pub mod pty;
pub mod tcp;
pub mod truck;

pub use mtsics::{Faults, serve};
pub use pty::PtyScale;
pub use tcp::spawn_tcp;
pub use truck::{ScaleSample, TruckScale, TruckScaleParams};
