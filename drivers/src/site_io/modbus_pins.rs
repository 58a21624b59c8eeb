//! Site I/O pins on Modbus devices: a traffic-light or barrier controller's coils as outputs,
//! a discrete input (an induction loop on a remote I/O module) as a sensor.
//!
//! The controller drives its pins synchronously and never waits for a field bus, so an output
//! queues its write on the line's task (`LineHandle::try_write`) and returns at once. What the
//! device did with it comes back through [`SiteOutput::confirm`], which the controller asks on
//! every cycle: a refused or unanswered write, a device that reads back something else than
//! what was written (a reset, a manual override), a bad or stale reading — each is a pin fault,
//! and the interlock holds everything safe until it clears. An input reads the line's latest
//! poll of its point; a bad or stale reading is an error, which counts as "interrupted".

use std::time::{SystemTime, UNIX_EPOCH};

use embedded_hal::digital::{ErrorType, InputPin, OutputPin};
use tokio::sync::oneshot::error::TryRecvError;
use tokio::sync::watch;

use super::pins::{OpenError, PinConfig, PinError, SiteIoConfig, SiteOutput};
use crate::modbus::map::{Access, DataType, DeviceConfig, LineConfig, Value};
use crate::modbus::poller::{DeviceSnapshot, LineHandle, ModbusError, PendingWrite, Quality};

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn modbus_error(error: impl std::fmt::Display) -> PinError {
    PinError::Modbus(error.to_string())
}

/// A bool point found on one of the lines.
struct Located {
    line: LineHandle,
    snapshot: watch::Receiver<DeviceSnapshot>,
}

fn problem(field: &str, problem: String) -> OpenError {
    OpenError::Modbus {
        field: field.to_owned(),
        problem,
    }
}

/// Checks that `device` (if found) has a bool `point`, writable for an output.
fn check_point(
    field: &str,
    device: Option<&DeviceConfig>,
    device_id: &str,
    point: &str,
    output: bool,
    max_age_ms: u64,
) -> Result<(), OpenError> {
    let config = device.ok_or_else(|| {
        problem(
            field,
            format!("no [[modbus]] line has a device {device_id:?}"),
        )
    })?;
    let point_config = config.point(point).ok_or_else(|| {
        problem(
            field,
            format!("modbus device {device_id:?} has no point {point:?}"),
        )
    })?;
    if point_config.data_type != DataType::Bool {
        return Err(problem(
            field,
            format!(
                "modbus point {device_id}.{point} must be of type bool (a coil, discrete input or register bit)"
            ),
        ));
    }
    if output && point_config.access != Access::ReadWrite {
        return Err(problem(
            field,
            format!(
                "modbus point {device_id}.{point} drives an output, so it needs access = \"rw\""
            ),
        ));
    }
    // Every reading would be stale by the time the next one comes.
    let interval_ms = config
        .groups()
        .get(&point_config.poll_group)
        .copied()
        .unwrap_or(config.poll_interval_ms);
    if interval_ms >= max_age_ms {
        return Err(problem(
            field,
            format!(
                "max_age_ms {max_age_ms} must be longer than the poll interval of {device_id}.{point} ({interval_ms} ms)"
            ),
        ));
    }
    Ok(())
}

/// Checks every Modbus pin of `config` against the `[[modbus]]` lines, so a
/// config can be refused at load, before anything is opened.
pub fn check_modbus_pins(config: &SiteIoConfig, lines: &[LineConfig]) -> Result<(), OpenError> {
    let outputs = config.outputs().len();
    for (index, (field, pin)) in config.pins().into_iter().enumerate() {
        if let PinConfig::Modbus {
            device,
            point,
            max_age_ms,
        } = pin
        {
            let found = lines
                .iter()
                .flat_map(|line| &line.devices)
                .find(|d| d.id == *device);
            check_point(&field, found, device, point, index < outputs, *max_age_ms)?;
        }
    }
    Ok(())
}

fn locate(
    field: &str,
    lines: &[LineHandle],
    device: &str,
    point: &str,
    output: bool,
    max_age_ms: u64,
) -> Result<Located, OpenError> {
    let found = lines
        .iter()
        .find_map(|line| line.device_config(device).map(|c| (line, c)));
    check_point(
        field,
        found.map(|(_, c)| c),
        device,
        point,
        output,
        max_age_ms,
    )?;
    let Some((line, _)) = found else {
        return Err(problem(
            field,
            format!("modbus device {device:?} is not polled"),
        ));
    };
    let snapshot = line
        .snapshot(device)
        .ok_or_else(|| problem(field, format!("modbus device {device:?} is not polled")))?;
    Ok(Located {
        line: line.clone(),
        snapshot,
    })
}

/// The latest trustworthy level of the point, or why there is none. `None`: not read yet.
fn read_level(
    snapshot: &watch::Receiver<DeviceSnapshot>,
    device: &str,
    point: &str,
    max_age_ms: u64,
) -> Result<Option<(bool, u64)>, PinError> {
    let snapshot = snapshot.borrow();
    let Some(reading) = snapshot.points.get(point) else {
        return Ok(None);
    };
    if reading.quality == Quality::Bad {
        return Err(modbus_error(format!(
            "{device}.{point} is not readable: {}",
            reading.error.as_deref().unwrap_or("bad quality")
        )));
    }
    let age_ms = now_ms().saturating_sub(reading.at_ms);
    if age_ms > max_age_ms {
        return Err(modbus_error(format!(
            "{device}.{point} was last read {age_ms} ms ago (limit {max_age_ms} ms)"
        )));
    }
    match reading.value {
        Some(Value::Bool(level)) => Ok(Some((level, reading.at_ms))),
        ref other => Err(modbus_error(format!(
            "{device}.{point} reads {other:?}, not a bool"
        ))),
    }
}

/// A coil (or register bit) driven as an output.
pub(crate) struct ModbusOutput {
    line: LineHandle,
    snapshot: watch::Receiver<DeviceSnapshot>,
    device: String,
    point: String,
    max_age_ms: u64,
    /// The level last queued, with the device's answer while it is outstanding.
    wanted: bool,
    pending: Option<PendingWrite>,
    /// Why the last write failed, until `confirm` reports it.
    failed: Option<String>,
    /// Unix ms at which the device confirmed `wanted`; readings after it must agree.
    confirmed_at_ms: Option<u64>,
}

impl ModbusOutput {
    /// Finds the point and queues `initial` on it straight away.
    pub(crate) fn open(
        field: &str,
        lines: &[LineHandle],
        device: &str,
        point: &str,
        max_age_ms: u64,
        initial: bool,
    ) -> Result<Self, OpenError> {
        let Located { line, snapshot } = locate(field, lines, device, point, true, max_age_ms)?;
        let mut output = Self {
            line,
            snapshot,
            device: device.to_owned(),
            point: point.to_owned(),
            max_age_ms,
            wanted: initial,
            pending: None,
            failed: None,
            confirmed_at_ms: None,
        };
        // A full queue right at start-up shows up as an unconfirmed write on the first cycle.
        if let Err(error) = output.queue(initial) {
            tracing::warn!(%field, %error, "initial modbus output write not queued");
        }
        Ok(output)
    }

    fn queue(&mut self, level: bool) -> Result<(), PinError> {
        self.wanted = level;
        self.confirmed_at_ms = None;
        self.pending = None;
        self.failed = None;
        let pending = self
            .line
            .try_write(&self.device, &self.point, Value::Bool(level))
            .map_err(modbus_error)?;
        self.pending = Some(pending);
        Ok(())
    }
}

impl ErrorType for ModbusOutput {
    type Error = PinError;
}

impl OutputPin for ModbusOutput {
    fn set_low(&mut self) -> Result<(), PinError> {
        self.queue(false)
    }

    fn set_high(&mut self) -> Result<(), PinError> {
        self.queue(true)
    }
}

impl ModbusOutput {
    /// Takes the device's answer to the outstanding write, if it has come.
    fn poll_pending(&mut self) {
        let Some(pending) = &mut self.pending else {
            return;
        };
        match pending.try_recv() {
            // Still on the line's queue or on the wire.
            Err(TryRecvError::Empty) => return,
            Err(TryRecvError::Closed) => self.failed = Some(ModbusError::Gone.to_string()),
            Ok(Err(error)) => self.failed = Some(error.to_string()),
            Ok(Ok(())) => self.confirmed_at_ms = Some(now_ms()),
        }
        self.pending = None;
    }
}

impl SiteOutput for ModbusOutput {
    fn confirm(&mut self) -> Result<(), PinError> {
        self.poll_pending();
        if let Some(error) = self.failed.take() {
            return Err(PinError::Modbus(error));
        }
        if self.pending.is_some() {
            return Ok(());
        }
        let Some(confirmed_at_ms) = self.confirmed_at_ms else {
            return Err(modbus_error(format!(
                "{}.{}: the write of {} was never queued",
                self.device, self.point, self.wanted
            )));
        };
        match read_level(&self.snapshot, &self.device, &self.point, self.max_age_ms)? {
            Some((level, at_ms)) if at_ms > confirmed_at_ms && level != self.wanted => {
                Err(modbus_error(format!(
                    "{}.{} reads {level} but was set to {}",
                    self.device, self.point, self.wanted
                )))
            }
            _ => Ok(()),
        }
    }

    fn settled(&mut self) -> bool {
        self.poll_pending();
        self.pending.is_none() && self.failed.is_none() && self.confirmed_at_ms.is_some()
    }
}

/// A discrete input (or coil, or register bit) read as a sensor, from the line's latest poll.
pub(crate) struct ModbusInput {
    snapshot: watch::Receiver<DeviceSnapshot>,
    device: String,
    point: String,
    max_age_ms: u64,
}

impl ModbusInput {
    pub(crate) fn open(
        field: &str,
        lines: &[LineHandle],
        device: &str,
        point: &str,
        max_age_ms: u64,
    ) -> Result<Self, OpenError> {
        let Located { snapshot, .. } = locate(field, lines, device, point, false, max_age_ms)?;
        Ok(Self {
            snapshot,
            device: device.to_owned(),
            point: point.to_owned(),
            max_age_ms,
        })
    }
}

impl ErrorType for ModbusInput {
    type Error = PinError;
}

impl InputPin for ModbusInput {
    fn is_high(&mut self) -> Result<bool, PinError> {
        match read_level(&self.snapshot, &self.device, &self.point, self.max_age_ms)? {
            Some((level, _)) => Ok(level),
            None => Err(modbus_error(format!(
                "{}.{} has not been read yet",
                self.device, self.point
            ))),
        }
    }

    fn is_low(&mut self) -> Result<bool, PinError> {
        self.is_high().map(|high| !high)
    }
}
