//! Scales: the protocol-independent reading model, the error type, shared framing and
//! request/response machinery, one module per wire protocol, the line task that owns each
//! connection and the device task per scale.

pub mod bus;
pub mod config;
pub mod device;
pub mod disomat;
pub mod error;
pub mod framing;
pub mod line;
pub mod link;
pub mod mtsics;
pub mod protocol;
pub mod reading;
pub mod sma;
pub mod stability;
pub mod systec;
pub mod toledo;

pub use error::ScaleError;
pub use protocol::{Protocol, ScaleProtocol};
pub use reading::{LegalWeighing, Reading, TareKind, Unit, Weight};
