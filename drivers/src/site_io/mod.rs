//! Site I/O at the weighbridge: the traffic lights and barriers at the platform ends and the
//! position sensors (light barriers, induction loops) that tell whether a truck stands fully on
//! the platform. A weighing is only legal with the vehicle positioned, and the lights must keep
//! the next truck off the platform until the current one is weighed and has left.
//!
//! Layering: `pins` (the `[site_io]` config, GPIO, Modbus and simulated pins behind
//! `embedded_hal`)
//! → `interlock` (the pure state machine deciding states, refusals and outputs) →
//! `controller` (the task that owns the pins, polls the sensors and publishes the status).

pub mod controller;
pub mod interlock;
mod modbus_pins;

pub use modbus_pins::check_modbus_pins;
pub mod pins;

pub use controller::{
    COMMAND_QUEUE_CAPACITY, PIN_FAULT_HOLD_MS, SensorStatus, SiteIoHandle, SiteIoStatus,
    WeighingGuard, spawn, spawn_with,
};
pub use interlock::{
    Barrier, Event, Interlock, InterlockError, InterlockState, Light, Outputs, check_can_weigh,
};
pub use pins::{
    ConfigError, Level, LightConfig, OpenError, PinConfig, PinError, PinSources, SensorConfig,
    SimulatedPin, SimulatedPinError, SimulatedPins, SiteIoConfig, SiteOutput,
};

/// `site_io::spawn` could not start.
#[derive(Debug, thiserror::Error)]
pub enum SiteIoError {
    /// The `[site_io]` config is inconsistent.
    #[error("invalid site I/O config: {0}")]
    Config(#[from] ConfigError),
    /// A pin could not be opened; the message names its config field.
    #[error(transparent)]
    Open(#[from] OpenError),
}
