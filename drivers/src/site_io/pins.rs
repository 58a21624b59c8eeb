//! Site I/O configuration and the pins it names: the `[site_io]` table (`SiteIoConfig`), the
//! pin kinds (`PinConfig`: a GPIO character-device line or a simulated pin), and opening them
//! as boxed `embedded_hal` pins, so the controller never knows which hardware it drives.
//!
//! Output pins are *logical*: `set_high` means "active" (lamp lit, barrier open) and
//! `active_low` is applied here, once. GPIO lines are requested without the kernel's
//! `ACTIVE_LOW` flag because `CdevPin` inverts again for such lines, which would cancel the
//! inversion out; doing it in one place keeps the meaning of `active_low` unambiguous.
//!
//! Modbus pins (`modbus_pins`) are coils and discrete inputs of devices on a `[[modbus]]` line.
//!
//! Simulated pins are real `embedded_hal` implementations over a shared `AtomicBool`, listed by
//! name in a `SimulatedPins` registry so tests and demos can watch outputs and drive inputs.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use embedded_hal::digital::{ErrorKind, ErrorType, InputPin, OutputPin, StatefulOutputPin};
use linux_embedded_hal::gpio_cdev::{self, Chip, LineRequestFlags};
use linux_embedded_hal::{CdevPin, CdevPinError};
use serde::{Deserialize, Serialize};

use super::modbus_pins::{ModbusInput, ModbusOutput};

/// Default interval between two reads of the position sensors.
pub const DEFAULT_INPUT_POLL_MS: u64 = 50;

/// Shortest accepted sensor poll interval; faster only loads the CPU, sensors do not bounce
/// that quickly.
pub const MIN_INPUT_POLL_MS: u64 = 10;

/// Longest accepted sensor poll interval; slower would let a vehicle roll past unnoticed.
pub const MAX_INPUT_POLL_MS: u64 = 1000;

/// Default weight below which the platform counts as empty.
pub const DEFAULT_EMPTY_BELOW_KG: f64 = 200.0;

/// Consumer label of requested GPIO lines, shown by `gpioinfo`.
pub const GPIO_CONSUMER: &str = "valeo-edge";

/// The `[site_io]` table: traffic lights, barriers and position sensors of one weighbridge.
/// Everything is optional; with nothing configured the interlock still runs and always allows
/// weighing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SiteIoConfig {
    /// How often the position sensors are read, 10–1000 ms.
    pub input_poll_ms: u64,
    /// The platform counts as empty below this weight.
    pub empty_below_kg: f64,
    /// The traffic light at the entry.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entry_light: Option<LightConfig>,
    /// The traffic light at the exit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_light: Option<LightConfig>,
    /// The entry barrier; active = open.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entry_barrier: Option<PinConfig>,
    /// The exit barrier; active = open.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_barrier: Option<PinConfig>,
    /// Light barriers or induction loops at the platform ends.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub position_sensors: Vec<SensorConfig>,
}

impl Default for SiteIoConfig {
    fn default() -> Self {
        Self {
            input_poll_ms: DEFAULT_INPUT_POLL_MS,
            empty_below_kg: DEFAULT_EMPTY_BELOW_KG,
            entry_light: None,
            exit_light: None,
            entry_barrier: None,
            exit_barrier: None,
            position_sensors: Vec::new(),
        }
    }
}

/// A two-lamp traffic light.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LightConfig {
    /// The red lamp; active = lit.
    pub red: PinConfig,
    /// The green lamp; active = lit.
    pub green: PinConfig,
}

/// One position sensor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SensorConfig {
    /// Name in status, refusals and the simulator (`sensor.<name>`).
    pub name: String,
    /// The input pin.
    pub pin: PinConfig,
    /// The level that means a vehicle interrupts the sensor. Required: light barriers come
    /// both ways, and a wrong default would invert the interlock.
    pub blocked_when: Level,
}

/// An input level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Logical 1.
    High,
    /// Logical 0.
    Low,
}

/// Where a pin lives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum PinConfig {
    /// A line of a GPIO character device (`/dev/gpiochipN`).
    Gpio {
        /// The chip device.
        chip: PathBuf,
        /// The line offset on the chip.
        line: u32,
        /// The pin is active (lamp lit, barrier open) when the line is low. Not accepted for
        /// sensors, which say `blocked_when` instead.
        #[serde(default)]
        active_low: bool,
    },
    /// A pin in memory, registered in `SimulatedPins` under its name.
    Simulated {},
    /// A bool point of a device on a `[[modbus]]` line: a coil (or register bit) with
    /// `access = "rw"` for outputs; a discrete input, coil or bit for sensors. The line polls
    /// it; see `modbus_pins` for how writes are confirmed.
    Modbus {
        /// The Modbus device id.
        device: String,
        /// The point's name in the device's register map.
        point: String,
        /// A reading older than this is a fault (the device stopped being polled).
        #[serde(default = "default_modbus_max_age_ms")]
        max_age_ms: u64,
    },
}

/// Default for `max_age_ms` of a Modbus pin.
pub const DEFAULT_MODBUS_MAX_AGE_MS: u64 = 5_000;
/// Bounds of `max_age_ms` of a Modbus pin.
pub const MODBUS_MAX_AGE_RANGE_MS: std::ops::RangeInclusive<u64> = 100..=600_000;

fn default_modbus_max_age_ms() -> u64 {
    DEFAULT_MODBUS_MAX_AGE_MS
}

/// Where pins come from when `site_io::spawn_with` opens them.
#[derive(Debug, Clone, Default)]
pub struct PinSources {
    /// Registry for pins of kind `simulated`.
    pub simulated: SimulatedPins,
    /// The running Modbus lines, for pins of kind `modbus`.
    pub modbus: Vec<crate::modbus::poller::LineHandle>,
}

/// The `[site_io]` config is inconsistent. Every variant names the offending field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A value is out of range or malformed.
    #[error("{field}: {problem}")]
    Invalid {
        /// The field, e.g. `site_io.input_poll_ms`.
        field: String,
        /// What is wrong with it.
        problem: String,
    },
    /// Two sensors have the same name.
    #[error("{field}: sensor name {name:?} is already used by {other}")]
    DuplicateSensor {
        /// The second sensor's `name` field.
        field: String,
        /// The name.
        name: String,
        /// The first sensor with that name.
        other: String,
    },
    /// Two pins name the same GPIO line.
    #[error("{field}: line {line} on {} is already used by {other}", .chip.display())]
    PinUsedTwice {
        /// The second pin's field.
        field: String,
        /// The chip.
        chip: PathBuf,
        /// The line.
        line: u32,
        /// The pin that uses it first.
        other: String,
    },
}

impl ConfigError {
    /// The offending field, e.g. `site_io.entry_light.red`.
    pub fn field(&self) -> &str {
        match self {
            ConfigError::Invalid { field, .. }
            | ConfigError::DuplicateSensor { field, .. }
            | ConfigError::PinUsedTwice { field, .. } => field,
        }
    }
}

fn invalid(field: impl Into<String>, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field: field.into(),
        problem: problem.into(),
    }
}

/// Names of the output pins: the `SimulatedPins` name and, prefixed with `site_io.`, the field.
pub(crate) const ENTRY_LIGHT_RED: &str = "entry_light.red";
pub(crate) const ENTRY_LIGHT_GREEN: &str = "entry_light.green";
pub(crate) const EXIT_LIGHT_RED: &str = "exit_light.red";
pub(crate) const EXIT_LIGHT_GREEN: &str = "exit_light.green";
pub(crate) const ENTRY_BARRIER: &str = "entry_barrier";
pub(crate) const EXIT_BARRIER: &str = "exit_barrier";

impl SiteIoConfig {
    /// True when no light, barrier or sensor is configured.
    pub fn is_empty(&self) -> bool {
        self.outputs().is_empty() && self.position_sensors.is_empty()
    }

    /// Every configured output pin with its name (`entry_light.red`, `exit_barrier`, ...).
    pub(crate) fn outputs(&self) -> Vec<(&'static str, &PinConfig)> {
        let mut pins = Vec::new();
        for (light, red, green) in [
            (&self.entry_light, ENTRY_LIGHT_RED, ENTRY_LIGHT_GREEN),
            (&self.exit_light, EXIT_LIGHT_RED, EXIT_LIGHT_GREEN),
        ] {
            if let Some(light) = light {
                pins.push((red, &light.red));
                pins.push((green, &light.green));
            }
        }
        for (barrier, name) in [
            (&self.entry_barrier, ENTRY_BARRIER),
            (&self.exit_barrier, EXIT_BARRIER),
        ] {
            if let Some(pin) = barrier {
                pins.push((name, pin));
            }
        }
        pins
    }

    /// Every configured pin, outputs and sensors, with its config field
    /// (`site_io.exit_barrier`, `site_io.position_sensors[0].pin`).
    pub fn pins(&self) -> Vec<(String, &PinConfig)> {
        let outputs = self
            .outputs()
            .into_iter()
            .map(|(name, pin)| (format!("site_io.{name}"), pin));
        let sensors = self
            .position_sensors
            .iter()
            .enumerate()
            .map(|(index, sensor)| (format!("{}.pin", Self::sensor_field(index)), &sensor.pin));
        outputs.chain(sensors).collect()
    }

    /// The config field of sensor `index`.
    pub(crate) fn sensor_field(index: usize) -> String {
        format!("site_io.position_sensors[{index}]")
    }

    /// Checks ranges, sensor names and that no GPIO line is used twice. The first problem
    /// found is returned, naming its field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(MIN_INPUT_POLL_MS..=MAX_INPUT_POLL_MS).contains(&self.input_poll_ms) {
            return Err(invalid(
                "site_io.input_poll_ms",
                format!(
                    "must be between {MIN_INPUT_POLL_MS} and {MAX_INPUT_POLL_MS} ms, got {}",
                    self.input_poll_ms
                ),
            ));
        }
        if !self.empty_below_kg.is_finite() || self.empty_below_kg <= 0.0 {
            return Err(invalid(
                "site_io.empty_below_kg",
                format!("must be a positive weight, got {}", self.empty_below_kg),
            ));
        }
        let mut pins: Vec<(String, &PinConfig)> = self
            .outputs()
            .into_iter()
            .map(|(name, pin)| (format!("site_io.{name}"), pin))
            .collect();
        let mut names: HashMap<&str, String> = HashMap::new();
        for (index, sensor) in self.position_sensors.iter().enumerate() {
            let field = Self::sensor_field(index);
            check_sensor_name(&format!("{field}.name"), &sensor.name)?;
            if let Some(other) = names.get(sensor.name.as_str()) {
                return Err(ConfigError::DuplicateSensor {
                    field: format!("{field}.name"),
                    name: sensor.name.clone(),
                    other: other.clone(),
                });
            }
            names.insert(&sensor.name, field.clone());
            if let PinConfig::Gpio {
                active_low: true, ..
            } = sensor.pin
            {
                // Two knobs for one inversion invite configs where they cancel out.
                return Err(invalid(
                    format!("{field}.pin.active_low"),
                    "is not used for sensors; set blocked_when = \"low\" or \"high\" instead",
                ));
            }
            pins.push((format!("{field}.pin"), &sensor.pin));
        }
        let mut lines: HashMap<(&Path, u32), String> = HashMap::new();
        let mut points: HashMap<(&str, &str), String> = HashMap::new();
        for (field, pin) in pins {
            check_pin(&field, pin)?;
            if let PinConfig::Modbus { device, point, .. } = pin {
                if let Some(other) = points.get(&(device.as_str(), point.as_str())) {
                    return Err(invalid(
                        field,
                        format!("modbus point {device}.{point} is already used by {other}"),
                    ));
                }
                points.insert((device, point), field.clone());
            }
            // Two requests for one line: the second open would fail with EBUSY at start-up,
            // far from the config mistake that caused it.
            if let PinConfig::Gpio { chip, line, .. } = pin {
                if let Some(other) = lines.get(&(chip.as_path(), *line)) {
                    return Err(ConfigError::PinUsedTwice {
                        field,
                        chip: chip.clone(),
                        line: *line,
                        other: other.clone(),
                    });
                }
                lines.insert((chip.as_path(), *line), field);
            }
        }
        Ok(())
    }
}

fn check_pin(field: &str, pin: &PinConfig) -> Result<(), ConfigError> {
    match pin {
        PinConfig::Gpio { chip, .. } if chip.as_os_str().is_empty() => {
            Err(invalid(format!("{field}.chip"), "is empty"))
        }
        PinConfig::Gpio { chip, .. } if !chip.is_absolute() => Err(invalid(
            format!("{field}.chip"),
            format!(
                "must be an absolute path like /dev/gpiochip0, got {}",
                chip.display()
            ),
        )),
        PinConfig::Modbus { device, .. } if device.is_empty() => {
            Err(invalid(format!("{field}.device"), "is empty"))
        }
        PinConfig::Modbus { point, .. } if point.is_empty() => {
            Err(invalid(format!("{field}.point"), "is empty"))
        }
        PinConfig::Modbus { max_age_ms, .. } if !MODBUS_MAX_AGE_RANGE_MS.contains(max_age_ms) => {
            Err(invalid(
                format!("{field}.max_age_ms"),
                format!(
                    "must be between {} and {} ms, got {max_age_ms}",
                    MODBUS_MAX_AGE_RANGE_MS.start(),
                    MODBUS_MAX_AGE_RANGE_MS.end()
                ),
            ))
        }
        PinConfig::Gpio { .. } | PinConfig::Simulated {} | PinConfig::Modbus { .. } => Ok(()),
    }
}

fn check_sensor_name(field: &str, name: &str) -> Result<(), ConfigError> {
    if name.is_empty() {
        return Err(invalid(field, "is empty"));
    }
    // The name becomes part of `sensor.<name>` and of status JSON keys shown to operators.
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(invalid(
            field,
            format!("{name:?} may only contain letters, digits, '_' and '-'"),
        ));
    }
    Ok(())
}

/// A pin operation failed.
#[derive(Debug, thiserror::Error)]
pub enum PinError {
    /// The GPIO character device refused the read or write.
    #[error("gpio: {0}")]
    Gpio(#[from] CdevPinError),
    /// A fault injected through `SimulatedPins::set_fault`.
    #[error("simulated pin fault")]
    SimulatedFault,
    /// A Modbus pin's write was refused or not answered, or its reading is bad, stale or
    /// disagrees with what was written.
    #[error("modbus: {0}")]
    Modbus(String),
}

impl embedded_hal::digital::Error for PinError {
    fn kind(&self) -> ErrorKind {
        ErrorKind::Other
    }
}

/// An opened output pin; `set_high` = active.
pub type BoxedOutputPin = Box<dyn SiteOutput>;

/// An output pin as the controller drives it: an `embedded_hal` output that may learn only
/// later whether a write took effect (a Modbus coil: the write travels through the line's
/// queue). The controller asks `confirm` every cycle and treats an error as a pin fault.
pub trait SiteOutput: OutputPin<Error = PinError> + Send {
    /// Reports a failure of an earlier write, or a device no longer showing what was written.
    fn confirm(&mut self) -> Result<(), PinError> {
        Ok(())
    }

    /// Whether the last write has taken effect. The controller makes the
    /// next, more permissive change (a barrier opening, a light turning
    /// green) only once the previous ones have settled.
    fn settled(&mut self) -> bool {
        true
    }
}

// A GPIO write fails or succeeds on the spot.
impl SiteOutput for GpioPin {}

impl SiteOutput for SimulatedPin {}

/// An opened input pin.
pub type BoxedInputPin = Box<dyn InputPin<Error = PinError> + Send>;

/// A pin could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// Requesting the GPIO line failed (no such chip or line, line busy, no permission).
    #[error("{field}: cannot open gpio line {line} on {}: {source}", .chip.display())]
    Gpio {
        /// The pin's config field.
        field: String,
        /// The chip.
        chip: PathBuf,
        /// The line.
        line: u32,
        /// What the kernel said.
        #[source]
        source: gpio_cdev::Error,
    },
    /// A Modbus pin names a device or point that cannot serve it.
    #[error("{field}: {problem}")]
    Modbus {
        /// The pin's config field.
        field: String,
        /// What does not fit.
        problem: String,
    },
}

/// A GPIO line with `active_low` applied in software (see the module doc).
struct GpioPin {
    pin: CdevPin,
    active_low: bool,
}

impl ErrorType for GpioPin {
    type Error = PinError;
}

impl OutputPin for GpioPin {
    fn set_low(&mut self) -> Result<(), PinError> {
        set_physical(&mut self.pin, self.active_low)
    }

    fn set_high(&mut self) -> Result<(), PinError> {
        set_physical(&mut self.pin, !self.active_low)
    }
}

fn set_physical(pin: &mut CdevPin, high: bool) -> Result<(), PinError> {
    if high {
        pin.set_high()?;
    } else {
        pin.set_low()?;
    }
    Ok(())
}

impl InputPin for GpioPin {
    fn is_high(&mut self) -> Result<bool, PinError> {
        Ok(self.pin.is_high()? != self.active_low)
    }

    fn is_low(&mut self) -> Result<bool, PinError> {
        self.is_high().map(|high| !high)
    }
}

fn request_line(
    field: &str,
    chip_path: &Path,
    line: u32,
    flags: LineRequestFlags,
    value: u8,
) -> Result<CdevPin, OpenError> {
    let open = || -> Result<CdevPin, gpio_cdev::Error> {
        let mut chip = Chip::new(chip_path)?;
        let handle = chip.get_line(line)?.request(flags, value, GPIO_CONSUMER)?;
        CdevPin::new(handle)
    };
    open().map_err(|source| OpenError::Gpio {
        field: field.to_owned(),
        chip: chip_path.to_owned(),
        line,
        source,
    })
}

/// Opens an output pin and drives it to `initial_active` straight away, so the line never
/// shows a permissive value between the request and the controller's first write.
pub(crate) fn open_output(
    config: &PinConfig,
    name: &str,
    initial_active: bool,
    sources: &PinSources,
) -> Result<BoxedOutputPin, OpenError> {
    match config {
        PinConfig::Gpio {
            chip,
            line,
            active_low,
        } => {
            let physical_high = initial_active != *active_low;
            let pin = request_line(
                &format!("site_io.{name}"),
                chip,
                *line,
                LineRequestFlags::OUTPUT,
                u8::from(physical_high),
            )?;
            Ok(Box::new(GpioPin {
                pin,
                active_low: *active_low,
            }))
        }
        PinConfig::Simulated {} => Ok(Box::new(sources.simulated.register(
            name,
            initial_active,
            None,
        ))),
        PinConfig::Modbus {
            device,
            point,
            max_age_ms,
        } => Ok(Box::new(ModbusOutput::open(
            &format!("site_io.{name}"),
            &sources.modbus,
            device,
            point,
            *max_age_ms,
            initial_active,
        )?)),
    }
}

/// Opens the input pin of sensor `index`. A simulated sensor starts clear.
pub(crate) fn open_sensor(
    index: usize,
    sensor: &SensorConfig,
    sources: &PinSources,
) -> Result<BoxedInputPin, OpenError> {
    let field = || format!("{}.pin", SiteIoConfig::sensor_field(index));
    match &sensor.pin {
        PinConfig::Gpio {
            chip,
            line,
            active_low,
        } => {
            let pin = request_line(&field(), chip, *line, LineRequestFlags::INPUT, 0)?;
            Ok(Box::new(GpioPin {
                pin,
                active_low: *active_low,
            }))
        }
        PinConfig::Simulated {} => {
            let clear_high = sensor.blocked_when == Level::Low;
            Ok(Box::new(sources.simulated.register(
                &format!("sensor.{}", sensor.name),
                clear_high,
                Some(sensor.blocked_when),
            )))
        }
        PinConfig::Modbus {
            device,
            point,
            max_age_ms,
        } => Ok(Box::new(ModbusInput::open(
            &field(),
            &sources.modbus,
            device,
            point,
            *max_age_ms,
        )?)),
    }
}

/// A pin in memory. Clones share the level, so the registry sees what the controller writes.
#[derive(Debug, Clone)]
pub struct SimulatedPin {
    level: Arc<AtomicBool>,
    fault: Arc<AtomicBool>,
}

// Each flag is independent and publishes no other memory, so relaxed ordering suffices.
impl SimulatedPin {
    /// A pin at `high`, without fault.
    pub fn new(high: bool) -> Self {
        Self {
            level: Arc::new(AtomicBool::new(high)),
            fault: Arc::new(AtomicBool::new(false)),
        }
    }

    /// The level, as the outside world sees it.
    pub fn level(&self) -> bool {
        self.level.load(Ordering::Relaxed)
    }

    /// Sets the level from the outside (an input changing).
    pub fn set_level(&self, high: bool) {
        self.level.store(high, Ordering::Relaxed);
    }

    /// While set, every pin operation fails with `PinError::SimulatedFault`.
    pub fn set_fault(&self, fault: bool) {
        self.fault.store(fault, Ordering::Relaxed);
    }

    fn check(&self) -> Result<(), PinError> {
        if self.fault.load(Ordering::Relaxed) {
            Err(PinError::SimulatedFault)
        } else {
            Ok(())
        }
    }
}

impl ErrorType for SimulatedPin {
    type Error = PinError;
}

impl OutputPin for SimulatedPin {
    fn set_low(&mut self) -> Result<(), PinError> {
        self.check()?;
        self.set_level(false);
        Ok(())
    }

    fn set_high(&mut self) -> Result<(), PinError> {
        self.check()?;
        self.set_level(true);
        Ok(())
    }
}

impl StatefulOutputPin for SimulatedPin {
    fn is_set_high(&mut self) -> Result<bool, PinError> {
        self.check()?;
        Ok(self.level())
    }

    fn is_set_low(&mut self) -> Result<bool, PinError> {
        self.is_set_high().map(|high| !high)
    }
}

impl InputPin for SimulatedPin {
    fn is_high(&mut self) -> Result<bool, PinError> {
        self.check()?;
        Ok(self.level())
    }

    fn is_low(&mut self) -> Result<bool, PinError> {
        self.is_high().map(|high| !high)
    }
}

/// No simulated pin has the given name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SimulatedPinError {
    /// Not registered (the pin is not configured, or not as `simulated`).
    #[error("no simulated pin named {name:?}; known: {known}")]
    Unknown {
        /// The name asked for.
        name: String,
        /// The registered names, comma-separated.
        known: String,
    },
}

#[derive(Debug, Clone)]
struct SimEntry {
    pin: SimulatedPin,
    /// For sensors: the level that means blocked.
    blocked_when: Option<Level>,
}

/// Registry of the simulated pins opened by `site_io::spawn`, by name: `entry_light.red`,
/// `entry_light.green`, `exit_light.red`, `exit_light.green`, `entry_barrier`,
/// `exit_barrier`, `sensor.<name>`. Clones share the registry.
#[derive(Debug, Clone, Default)]
pub struct SimulatedPins {
    pins: Arc<Mutex<BTreeMap<String, SimEntry>>>,
}

impl SimulatedPins {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, SimEntry>> {
        // The map holds no invariant a panicking holder could break.
        self.pins.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers (or replaces) the pin `name` at level `high`.
    fn register(&self, name: &str, high: bool, blocked_when: Option<Level>) -> SimulatedPin {
        let pin = SimulatedPin::new(high);
        self.lock().insert(
            name.to_owned(),
            SimEntry {
                pin: pin.clone(),
                blocked_when,
            },
        );
        pin
    }

    /// The registered names, sorted.
    pub fn names(&self) -> Vec<String> {
        self.lock().keys().cloned().collect()
    }

    /// The pin `name` (a clone sharing its level).
    pub fn pin(&self, name: &str) -> Result<SimulatedPin, SimulatedPinError> {
        let pins = self.lock();
        match pins.get(name) {
            Some(entry) => Ok(entry.pin.clone()),
            None => Err(SimulatedPinError::Unknown {
                name: name.to_owned(),
                known: pins.keys().cloned().collect::<Vec<_>>().join(", "),
            }),
        }
    }

    /// The level of pin `name`; for outputs, high = active (lamp lit, barrier open).
    pub fn is_high(&self, name: &str) -> Result<bool, SimulatedPinError> {
        self.pin(name).map(|pin| pin.level())
    }

    /// Sets the level of pin `name` (drives a simulated input).
    pub fn set_high(&self, name: &str, high: bool) -> Result<(), SimulatedPinError> {
        self.pin(name).map(|pin| pin.set_level(high))
    }

    /// Makes every operation on pin `name` fail (or work again).
    pub fn set_fault(&self, name: &str, fault: bool) -> Result<(), SimulatedPinError> {
        self.pin(name).map(|pin| pin.set_fault(fault))
    }

    /// Interrupts (or clears) the simulated position sensor `sensor` (its config name, without
    /// the `sensor.` prefix), honouring its `blocked_when`.
    pub fn set_sensor_blocked(&self, sensor: &str, blocked: bool) -> Result<(), SimulatedPinError> {
        let name = format!("sensor.{sensor}");
        let blocked_when = self.lock().get(&name).and_then(|entry| entry.blocked_when);
        let pin = self.pin(&name)?;
        let blocked_high = blocked_when.unwrap_or(Level::High) == Level::High;
        pin.set_level(blocked == blocked_high);
        Ok(())
    }
}

impl fmt::Display for SimulatedPins {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pins = self.lock();
        let mut first = true;
        for (name, entry) in pins.iter() {
            if !first {
                f.write_str(" ")?;
            }
            first = false;
            write!(f, "{name}={}", u8::from(entry.pin.level()))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sources(sim: &SimulatedPins) -> PinSources {
        PinSources {
            simulated: sim.clone(),
            modbus: Vec::new(),
        }
    }

    fn parse(text: &str) -> SiteIoConfig {
        #[derive(Deserialize)]
        struct Root {
            site_io: SiteIoConfig,
        }
        toml::from_str::<Root>(text).unwrap().site_io
    }

    const EXAMPLE: &str = r#"
        [site_io]
        input_poll_ms = 50
        empty_below_kg = 200
        [site_io.entry_light]
        red = { kind = "gpio", chip = "/dev/gpiochip0", line = 17, active_low = false }
        green = { kind = "gpio", chip = "/dev/gpiochip0", line = 18 }
        [site_io.exit_light]
        red = { kind = "simulated" }
        green = { kind = "simulated" }
        [site_io.entry_barrier]
        kind = "simulated"
        [site_io.exit_barrier]
        kind = "gpio"
        chip = "/dev/gpiochip1"
        line = 17
        active_low = true
        [[site_io.position_sensors]]
        name = "front"
        pin = { kind = "gpio", chip = "/dev/gpiochip0", line = 22 }
        blocked_when = "low"
        [[site_io.position_sensors]]
        name = "rear"
        pin = { kind = "simulated" }
        blocked_when = "high"
    "#;

    #[test]
    fn the_documented_shape_parses_and_validates() {
        let cfg = parse(EXAMPLE);
        cfg.validate().unwrap();
        assert_eq!(cfg.empty_below_kg, 200.0);
        assert_eq!(
            cfg.entry_light.as_ref().unwrap().red,
            PinConfig::Gpio {
                chip: "/dev/gpiochip0".into(),
                line: 17,
                active_low: false
            }
        );
        assert_eq!(cfg.entry_barrier, Some(PinConfig::Simulated {}));
        assert_eq!(cfg.position_sensors[0].blocked_when, Level::Low);
        assert_eq!(cfg.outputs().len(), 6);
        assert!(!cfg.is_empty());
        let json = serde_json::to_value(&cfg).unwrap();
        assert_eq!(json["exit_barrier"]["kind"], "gpio");
        assert_eq!(json["entry_barrier"]["kind"], "simulated");
        let back: SiteIoConfig = serde_json::from_value(json).unwrap();
        assert_eq!(back, cfg);
    }

    #[test]
    fn defaults_mean_nothing_configured() {
        let cfg = parse("[site_io]\n");
        assert_eq!(cfg, SiteIoConfig::default());
        assert_eq!(cfg.input_poll_ms, 50);
        assert_eq!(cfg.empty_below_kg, 200.0);
        assert!(cfg.is_empty());
        cfg.validate().unwrap();
    }

    #[test]
    fn unknown_fields_and_kinds_are_rejected() {
        for text in [
            "[site_io]\npoll_ms = 50\n",
            "[site_io.entry_barrier]\nkind = \"modbus\"\n",
            "[site_io.entry_barrier]\nkind = \"simulated\"\nline = 3\n",
            "[site_io.entry_barrier]\nkind = \"gpio\"\nchip = \"/dev/gpiochip0\"\nline = 1\npull = \"up\"\n",
            "[site_io.entry_light]\nred = { kind = \"simulated\" }\n",
            "[site_io.entry_light]\nred = { kind = \"simulated\" }\ngreen = { kind = \"simulated\" }\namber = { kind = \"simulated\" }\n",
            "[[site_io.position_sensors]]\nname = \"front\"\npin = { kind = \"simulated\" }\n",
            "[[site_io.position_sensors]]\nname = \"front\"\npin = { kind = \"simulated\" }\nblocked_when = \"yes\"\n",
        ] {
            #[derive(Debug, Deserialize)]
            #[expect(dead_code, reason = "only whether parsing fails matters")]
            struct Root {
                site_io: SiteIoConfig,
            }
            assert!(toml::from_str::<Root>(text).is_err(), "{text}");
        }
    }

    #[test]
    fn validation_names_the_field() {
        let check = |text: &str, expected: &str| {
            let error = parse(text).validate().unwrap_err();
            assert_eq!(error.to_string(), expected, "{text}");
            assert!(expected.starts_with(error.field()), "{error:?}");
        };
        check(
            "[site_io]\ninput_poll_ms = 5\n",
            "site_io.input_poll_ms: must be between 10 and 1000 ms, got 5",
        );
        check(
            "[site_io]\ninput_poll_ms = 1001\n",
            "site_io.input_poll_ms: must be between 10 and 1000 ms, got 1001",
        );
        check(
            "[site_io]\nempty_below_kg = 0\n",
            "site_io.empty_below_kg: must be a positive weight, got 0",
        );
        check(
            "[site_io.entry_light]\nred = { kind = \"gpio\", chip = \"/dev/gpiochip0\", line = 17 }\ngreen = { kind = \"gpio\", chip = \"/dev/gpiochip0\", line = 17 }\n",
            "site_io.entry_light.green: line 17 on /dev/gpiochip0 is already used by site_io.entry_light.red",
        );
        check(
            "[site_io.exit_barrier]\nkind = \"gpio\"\nchip = \"/dev/gpiochip0\"\nline = 22\n[[site_io.position_sensors]]\nname = \"front\"\npin = { kind = \"gpio\", chip = \"/dev/gpiochip0\", line = 22 }\nblocked_when = \"low\"\n",
            "site_io.position_sensors[0].pin: line 22 on /dev/gpiochip0 is already used by site_io.exit_barrier",
        );
        check(
            "[site_io.entry_light]\nred = { kind = \"gpio\", chip = \"gpiochip0\", line = 17 }\ngreen = { kind = \"simulated\" }\n",
            "site_io.entry_light.red.chip: must be an absolute path like /dev/gpiochip0, got gpiochip0",
        );
        check(
            "[site_io.entry_barrier]\nkind = \"gpio\"\nchip = \"\"\nline = 1\n",
            "site_io.entry_barrier.chip: is empty",
        );
        let sensors = |a: &str, b: &str| {
            format!(
                "[[site_io.position_sensors]]\nname = \"{a}\"\npin = {{ kind = \"simulated\" }}\nblocked_when = \"low\"\n\
                 [[site_io.position_sensors]]\nname = \"{b}\"\npin = {{ kind = \"simulated\" }}\nblocked_when = \"high\"\n"
            )
        };
        check(
            &sensors("front", "front"),
            "site_io.position_sensors[1].name: sensor name \"front\" is already used by site_io.position_sensors[0]",
        );
        check(
            &sensors("front", ""),
            "site_io.position_sensors[1].name: is empty",
        );
        check(
            &sensors("front", "rear end"),
            "site_io.position_sensors[1].name: \"rear end\" may only contain letters, digits, '_' and '-'",
        );
        check(
            "[[site_io.position_sensors]]\nname = \"front\"\npin = { kind = \"gpio\", chip = \"/dev/gpiochip0\", line = 3, active_low = true }\nblocked_when = \"low\"\n",
            "site_io.position_sensors[0].pin.active_low: is not used for sensors; set blocked_when = \"low\" or \"high\" instead",
        );
    }

    #[test]
    fn simulated_pins_are_embedded_hal_pins_shared_through_the_registry() {
        let sim = SimulatedPins::new();
        let mut out = open_output(
            &PinConfig::Simulated {},
            "exit_barrier",
            false,
            &sources(&sim),
        )
        .unwrap();
        assert_eq!(sim.is_high("exit_barrier"), Ok(false));
        out.set_high().unwrap();
        assert_eq!(sim.is_high("exit_barrier"), Ok(true));
        let sensor = SensorConfig {
            name: "front".to_owned(),
            pin: PinConfig::Simulated {},
            blocked_when: Level::Low,
        };
        let mut input = open_sensor(0, &sensor, &sources(&sim)).unwrap();
        assert!(input.is_high().unwrap(), "a simulated sensor starts clear");
        sim.set_sensor_blocked("front", true).unwrap();
        assert!(input.is_low().unwrap());
        sim.set_fault("sensor.front", true).unwrap();
        assert!(matches!(input.is_high(), Err(PinError::SimulatedFault)));
        assert_eq!(sim.names(), ["exit_barrier", "sensor.front"]);
        assert_eq!(sim.to_string(), "exit_barrier=1 sensor.front=0");
        let unknown = sim.set_high("entry_light.red", true).unwrap_err();
        assert_eq!(
            unknown.to_string(),
            "no simulated pin named \"entry_light.red\"; known: exit_barrier, sensor.front"
        );
        let mut stateful = sim.pin("exit_barrier").unwrap();
        assert!(stateful.is_set_high().unwrap());
    }

    #[test]
    fn opening_a_missing_gpio_chip_names_the_pin() {
        let pin = PinConfig::Gpio {
            chip: "/nonexistent/gpiochip9".into(),
            line: 4,
            active_low: false,
        };
        let error = open_output(&pin, "entry_light.green", false, &PinSources::default())
            .err()
            .unwrap();
        let text = error.to_string();
        assert!(
            text.starts_with(
                "site_io.entry_light.green: cannot open gpio line 4 on /nonexistent/gpiochip9: "
            ),
            "{text}"
        );
        let sensor = SensorConfig {
            name: "front".to_owned(),
            pin,
            blocked_when: Level::High,
        };
        let error = open_sensor(2, &sensor, &PinSources::default())
            .err()
            .unwrap();
        assert!(
            error
                .to_string()
                .starts_with("site_io.position_sensors[2].pin: cannot open gpio line 4"),
            "{error}"
        );
    }
}
