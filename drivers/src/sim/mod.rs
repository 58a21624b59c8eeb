//! Simulators that speak the real wire protocols, for tests, the demo and installers without
//! hardware: a weighbridge physical model with an alibi memory (`truck`), the shared device
//! side with fault injection (`terminal`), one terminal per protocol (`mtsics`, `terminals`),
//! and the same terminals on a real pseudo-terminal (`pty`) or a TCP port (`tcp`); and a
//! grain analyzer (`analyzer`).

pub mod analyzer;
pub mod mtsics;
pub mod pty;
pub mod tcp;
pub mod terminal;
pub mod terminals;
pub mod truck;

pub use mtsics::serve;
pub use pty::PtyScale;
pub use tcp::{spawn_tcp, spawn_tcp_terminal};
pub use terminal::{Faults, Terminal, TerminalFactory, serve_terminal};
pub use terminals::{factory, multidrop_factory};
pub use truck::{ScaleSample, TruckScale, TruckScaleParams};
