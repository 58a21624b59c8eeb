//! The task that owns one Modbus line (a serial port with RTU, or a Modbus
//! TCP endpoint) and every device on it. It serialises all requests (polls
//! and writes), so overlapping requests can never collide on a shared
//! RS-485 line, and schedules each device's poll groups at their interval.
//!
//! A device that fails (timeouts, transport errors) `degrade_after_failures`
//! polls in a row is skipped for `degrade_ms`: one dead device costs its
//! timeouts once, not on every cycle, and the live ones keep their
//! interval. A Modbus exception is an answer, not a failure: it marks the
//! points it concerns bad and leaves the device alone.

use std::collections::BTreeMap;
use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_modbus::client::{Context, Reader, Writer};
use tokio_modbus::prelude::SlaveContext;
use tokio_modbus::{ExceptionCode, Slave};

use super::ascii::AsciiIo;
use super::map::{
    self, Access, DataType, DeviceConfig, Framing, LineConfig, PointConfig, Table, Value,
};
use super::plan::{ReadRequest, plan};
use crate::transport::{self, BoxedIo, TransportConfig};

/// Writes waiting for the line's task.
pub const COMMAND_QUEUE_CAPACITY: usize = 64;
/// Value changes waiting for the consumer; beyond, changes are counted as
/// dropped (the snapshot still has the latest value).
pub const CHANGE_QUEUE_CAPACITY: usize = 4096;

/// Whether a value can be trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Quality {
    Good,
    /// Not read: the device failed, is degraded, or answered an exception.
    Bad,
}

/// The latest reading of a point.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PointReading {
    pub value: Option<Value>,
    pub quality: Quality,
    /// Unix time of the reading in milliseconds.
    pub at_ms: u64,
    /// Why the quality is bad. The value is then the last good one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub unit: Option<String>,
    /// The point can be written (`access = "rw"`).
    pub writable: bool,
}

/// Poll health of one device.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct DeviceHealth {
    pub device_id: String,
    pub unit: u8,
    pub requests_total: u64,
    pub requests_failed: u64,
    pub exceptions_total: u64,
    pub timeouts_total: u64,
    /// Successful requests / all requests, 1.0 before the first.
    pub success_rate: f64,
    pub last_latency_ms: Option<f64>,
    pub last_error: Option<String>,
    pub consecutive_failures: u32,
    /// Skipped until it has had a rest.
    pub degraded: bool,
    /// Reportable changes that did not fit the change queue.
    pub changes_dropped: u64,
}

/// A device's health and every point's latest reading.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct DeviceSnapshot {
    pub health: DeviceHealth,
    pub points: BTreeMap<String, PointReading>,
}

/// A value that moved beyond its deadband (or its quality changed).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PointChange {
    pub device_id: String,
    pub point: String,
    pub reading: PointReading,
    pub unit: Option<String>,
    /// The point is marked `record = true`: this change goes to the outbox.
    pub record: bool,
}

/// Why a request or a write did not work.
#[derive(Debug, thiserror::Error)]
pub enum ModbusError {
    #[error("modbus device {0:?} is not on this line")]
    UnknownDevice(String),
    #[error("modbus device {device:?} has no point {point:?}")]
    UnknownPoint { device: String, point: String },
    #[error("modbus point {0:?} is read-only")]
    ReadOnly(String),
    #[error(transparent)]
    Codec(#[from] map::CodecError),
    #[error("modbus device {device:?} answered exception {code}")]
    Exception { device: String, code: String },
    #[error("modbus device {device:?}: no answer within {timeout_ms} ms")]
    Timeout { device: String, timeout_ms: u64 },
    #[error("modbus device {device:?}: {detail}")]
    Transport { device: String, detail: String },
    #[error("modbus device {0:?} is degraded after repeated failures; not asked")]
    Degraded(String),
    #[error("the modbus line task has stopped")]
    Gone,
    #[error("the modbus line has {COMMAND_QUEUE_CAPACITY} writes waiting; try again")]
    Busy,
}

type WriteReply = oneshot::Sender<Result<(), ModbusError>>;

#[derive(Debug)]
enum Command {
    Write {
        device: String,
        point: String,
        value: Value,
        reply: WriteReply,
    },
}

/// Handle to a running line. Cheap to clone.
#[derive(Debug, Clone)]
pub struct LineHandle {
    id: String,
    devices: Vec<(String, watch::Receiver<DeviceSnapshot>)>,
    configs: Vec<Arc<DeviceConfig>>,
    commands: mpsc::Sender<Command>,
}

/// The answer to a write queued with [`LineHandle::try_write`].
pub type PendingWrite = oneshot::Receiver<Result<(), ModbusError>>;

impl LineHandle {
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Each device's id and its snapshot channel.
    pub fn devices(&self) -> &[(String, watch::Receiver<DeviceSnapshot>)] {
        &self.devices
    }

    /// The config of a device on this line.
    pub fn device_config(&self, device: &str) -> Option<&DeviceConfig> {
        self.configs
            .iter()
            .find(|c| c.id == device)
            .map(|c| c.as_ref())
    }

    /// The snapshot channel of a device on this line.
    pub fn snapshot(&self, device: &str) -> Option<watch::Receiver<DeviceSnapshot>> {
        self.devices
            .iter()
            .find(|(id, _)| id == device)
            .map(|(_, rx)| rx.clone())
    }

    fn write_command(&self, device: &str, point: &str, value: Value) -> (Command, PendingWrite) {
        let (reply, rx) = oneshot::channel();
        let command = Command::Write {
            device: device.to_owned(),
            point: point.to_owned(),
            value,
            reply,
        };
        (command, rx)
    }

    /// Writes `value` to a read-write point; answered after the device
    /// confirmed (or refused) it.
    pub async fn write(&self, device: &str, point: &str, value: Value) -> Result<(), ModbusError> {
        let (command, rx) = self.write_command(device, point, value);
        self.commands
            .send(command)
            .await
            .map_err(|_| ModbusError::Gone)?;
        rx.await.map_err(|_| ModbusError::Gone)?
    }

    /// Queues a write without waiting, for callers that cannot await (the
    /// site interlock drives its pins synchronously). The device's answer
    /// arrives on the returned channel; a full queue is `Busy`, never a wait.
    pub fn try_write(
        &self,
        device: &str,
        point: &str,
        value: Value,
    ) -> Result<PendingWrite, ModbusError> {
        let (command, rx) = self.write_command(device, point, value);
        self.commands.try_send(command).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => ModbusError::Busy,
            mpsc::error::TrySendError::Closed(_) => ModbusError::Gone,
        })?;
        Ok(rx)
    }
}

/// Starts the task owning `line`. Value changes beyond their deadband go to
/// `changes` (never blocking the line: a full queue drops and counts).
pub fn spawn(line: LineConfig, changes: mpsc::Sender<PointChange>) -> LineHandle {
    let (commands, command_rx) = mpsc::channel(COMMAND_QUEUE_CAPACITY);
    let mut devices = Vec::new();
    let mut configs = Vec::new();
    let mut states = Vec::new();
    for device in &line.devices {
        let snapshot = DeviceSnapshot {
            health: DeviceHealth {
                device_id: device.id.clone(),
                unit: device.unit,
                success_rate: 1.0,
                ..DeviceHealth::default()
            },
            points: BTreeMap::new(),
        };
        let (tx, rx) = watch::channel(snapshot);
        devices.push((device.id.clone(), rx));
        let groups = device
            .groups()
            .into_iter()
            .map(|(name, interval_ms)| Group {
                requests: Arc::new(plan(device, &name)),
                interval: Duration::from_millis(interval_ms),
                due: Instant::now(),
            })
            .filter(|g| !g.requests.is_empty())
            .collect();
        let config = Arc::new(device.clone());
        configs.push(Arc::clone(&config));
        states.push(DeviceState {
            config,
            reported: BTreeMap::new(),
            groups,
            degraded_until: None,
            snapshot: tx,
        });
    }
    let id = line.id.clone();
    let task = Line {
        config: line,
        ctx: None,
        devices: states,
        changes,
    };
    tokio::spawn(task.run(command_rx));
    LineHandle {
        id,
        devices,
        configs,
        commands,
    }
}

struct Group {
    /// Shared so a poll takes it without copying the plan.
    requests: Arc<Vec<ReadRequest>>,
    interval: Duration,
    due: Instant,
}

struct DeviceState {
    /// Shared so each request takes it without copying every point.
    config: Arc<DeviceConfig>,
    /// What was last reported per point: the deadband is measured from
    /// there, so a slow drift is reported once it adds up.
    reported: BTreeMap<String, (Option<Value>, Quality)>,
    groups: Vec<Group>,
    degraded_until: Option<Instant>,
    snapshot: watch::Sender<DeviceSnapshot>,
}

struct Line {
    config: LineConfig,
    ctx: Option<Context>,
    devices: Vec<DeviceState>,
    changes: mpsc::Sender<PointChange>,
}

/// How one request ended.
enum Outcome<T> {
    Ok(T),
    Exception(ExceptionCode),
    /// Timeout or transport error, after retries.
    Failed(ModbusError),
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Line {
    async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        loop {
            let next = self
                .devices
                .iter()
                .enumerate()
                .flat_map(|(d, dev)| {
                    dev.groups
                        .iter()
                        .enumerate()
                        .map(move |(g, gr)| (gr.due, d, g))
                })
                .min();
            let sleep = async {
                match next {
                    Some((due, ..)) => tokio::time::sleep_until(due).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                // Writes first: an operator waits for a barrier to open.
                biased;
                command = commands.recv() => match command {
                    Some(Command::Write { device, point, value, reply }) => {
                        let result = self.write(&device, &point, &value).await;
                        drop(reply.send(result));
                    }
                    None if next.is_none() => return,
                    None => {}
                },
                () = sleep => {
                    if let Some((_, d, g)) = next {
                        self.poll_group(d, g).await;
                    }
                }
            }
        }
    }

    async fn poll_group(&mut self, d: usize, g: usize) {
        let now = Instant::now();
        {
            let group = &mut self.devices[d].groups[g];
            // Keep the cadence; after a stall, start again from now.
            group.due += group.interval;
            if group.due < now {
                group.due = now + group.interval;
            }
        }
        if let Some(until) = self.devices[d].degraded_until {
            if now < until {
                return;
            }
            self.devices[d].degraded_until = None;
            self.devices[d]
                .snapshot
                .send_modify(|s| s.health.degraded = false);
        }
        let requests = Arc::clone(&self.devices[d].groups[g].requests);
        let mut failed = None;
        for request in requests.iter() {
            let outcome = self.read(d, request).await;
            let config = Arc::clone(&self.devices[d].config);
            match outcome {
                Outcome::Ok(regs) => {
                    let at_ms = now_ms();
                    for &i in &request.points {
                        let point = &config.points[i];
                        let reading = match request
                            .offset_of(&config, i)
                            .and_then(|at| regs.get(at..at + usize::from(point.width())))
                        {
                            Some(slice) => match map::decode(point, slice) {
                                Ok(value) => good(value, at_ms),
                                Err(e) => bad(e.to_string(), at_ms),
                            },
                            None => bad("reply shorter than requested".into(), at_ms),
                        };
                        self.update(d, point, reading);
                    }
                }
                Outcome::Exception(code) => {
                    let at_ms = now_ms();
                    for &i in &request.points {
                        self.update(
                            d,
                            &config.points[i],
                            bad(format!("exception: {code}"), at_ms),
                        );
                    }
                }
                Outcome::Failed(error) => {
                    failed = Some(error);
                    break;
                }
            }
            Self::pause(self.devices[d].config.pause_between_ms).await;
        }
        let state = &mut self.devices[d];
        match failed {
            None => state
                .snapshot
                .send_modify(|s| s.health.consecutive_failures = 0),
            Some(error) => {
                let at_ms = now_ms();
                let message = error.to_string();
                let points: Vec<PointConfig> = requests
                    .iter()
                    .flat_map(|r| r.points.iter().map(|&i| state.config.points[i].clone()))
                    .collect();
                let mut degrade = false;
                state.snapshot.send_modify(|s| {
                    s.health.consecutive_failures += 1;
                    s.health.last_error = Some(message.clone());
                    degrade = s.health.consecutive_failures >= state.config.degrade_after_failures;
                    if degrade {
                        s.health.degraded = true;
                    }
                });
                if degrade {
                    tracing::warn!(line = %self.config.id, device = %state.config.id, %error,
                        degrade_ms = state.config.degrade_ms, "modbus device degraded");
                    state.degraded_until =
                        Some(Instant::now() + Duration::from_millis(state.config.degrade_ms));
                }
                for point in &points {
                    self.update(d, point, bad(message.clone(), at_ms));
                }
            }
        }
    }

    /// Stores a reading and reports it when it moved beyond the deadband or
    /// its quality changed.
    fn update(&mut self, d: usize, point: &PointConfig, mut reading: PointReading) {
        let state = &mut self.devices[d];
        reading.unit = point.unit.clone();
        reading.writable = point.access == Access::ReadWrite;
        let report = match state.reported.get(&point.name) {
            None => true,
            Some((_, quality)) if *quality != reading.quality => true,
            // Still bad: said already.
            Some(_) if reading.quality == Quality::Bad => false,
            Some((before, _)) => match (before, &reading.value) {
                (Some(a), Some(b)) => match (a.as_f64(), b.as_f64()) {
                    (Some(x), Some(y)) if point.deadband > 0.0 => (x - y).abs() >= point.deadband,
                    _ => a != b,
                },
                (a, b) => a != b,
            },
        };
        state.snapshot.send_modify(|s| {
            // A bad reading keeps the last good value, marked bad, so the
            // operator still sees what it was.
            if reading.quality == Quality::Bad && reading.value.is_none() {
                reading.value = s.points.get(&point.name).and_then(|p| p.value.clone());
            }
            s.points.insert(point.name.clone(), reading.clone());
        });
        if !report {
            return;
        }
        state
            .reported
            .insert(point.name.clone(), (reading.value.clone(), reading.quality));
        let change = PointChange {
            device_id: state.config.id.clone(),
            point: point.name.clone(),
            reading,
            unit: point.unit.clone(),
            record: point.record,
        };
        if self.changes.try_send(change).is_err() {
            state
                .snapshot
                .send_modify(|s| s.health.changes_dropped += 1);
        }
    }

    /// The device's quiet time after a request. Takes the number, not
    /// `&self`: the client context is not `Sync`.
    async fn pause(ms: u64) {
        if ms > 0 {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
    }

    async fn connect(&mut self, device: &DeviceConfig) -> Result<(), ModbusError> {
        if self.ctx.is_some() {
            return Ok(());
        }
        let transport_error = |detail: String| ModbusError::Transport {
            device: device.id.clone(),
            detail,
        };
        let timeout = Duration::from_millis(
            device
                .timeout_ms
                .max(connect_floor_ms(&self.config.transport)),
        );
        let io = tokio::time::timeout(timeout, transport::connect(&self.config.transport))
            .await
            .map_err(|_| {
                transport_error(format!(
                    "cannot connect to {}: timed out",
                    self.config.transport.describe()
                ))
            })?
            .map_err(|e| {
                transport_error(format!(
                    "cannot connect to {}: {e}",
                    self.config.transport.describe()
                ))
            })?;
        let io = DebugIo(io);
        self.ctx = Some(match self.config.framing() {
            Framing::Rtu => tokio_modbus::client::rtu::attach(io),
            Framing::Ascii => tokio_modbus::client::rtu::attach(AsciiIo::new(io)),
            Framing::Tcp => tokio_modbus::client::tcp::attach(io),
        });
        if self.config.pause_after_connect_ms > 0 {
            tokio::time::sleep(Duration::from_millis(self.config.pause_after_connect_ms)).await;
        }
        Ok(())
    }

    /// Runs one request against device `d` with its timeout and retries.
    /// After a timeout or transport error the connection is dropped: a late
    /// reply would otherwise be read as the answer to the next request.
    async fn call<T, F>(&mut self, d: usize, mut request: F) -> Outcome<T>
    where
        F: for<'c> FnMut(
            &'c mut Context,
        )
            -> Pin<Box<dyn Future<Output = tokio_modbus::Result<T>> + Send + 'c>>,
    {
        let device = Arc::clone(&self.devices[d].config);
        let timeout_ms = device.timeout_ms;
        let mut last = None;
        for _ in 0..=device.retries {
            if let Err(error) = self.connect(&device).await {
                // A request that could not even be sent failed too.
                let message = error.to_string();
                self.devices[d].snapshot.send_modify(|s| {
                    let h = &mut s.health;
                    h.requests_total += 1;
                    h.requests_failed += 1;
                    h.last_error = Some(message);
                    h.success_rate = 1.0 - h.requests_failed as f64 / h.requests_total as f64;
                });
                last = Some(error);
                continue;
            }
            let Some(ctx) = self.ctx.as_mut() else {
                continue;
            };
            ctx.set_slave(Slave(device.unit));
            let started = Instant::now();
            let result =
                tokio::time::timeout(Duration::from_millis(timeout_ms), request(ctx)).await;
            let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
            let outcome = match result {
                Ok(Ok(Ok(value))) => Outcome::Ok(value),
                Ok(Ok(Err(code))) => Outcome::Exception(code),
                Ok(Err(error)) => Outcome::Failed(ModbusError::Transport {
                    device: device.id.clone(),
                    detail: error.to_string(),
                }),
                Err(_) => Outcome::Failed(ModbusError::Timeout {
                    device: device.id.clone(),
                    timeout_ms,
                }),
            };
            self.devices[d].snapshot.send_modify(|s| {
                let h = &mut s.health;
                h.requests_total += 1;
                match &outcome {
                    Outcome::Ok(_) => h.last_latency_ms = Some(latency_ms),
                    Outcome::Exception(code) => {
                        h.exceptions_total += 1;
                        h.last_latency_ms = Some(latency_ms);
                        h.last_error = Some(format!("exception: {code}"));
                    }
                    Outcome::Failed(error) => {
                        h.requests_failed += 1;
                        if matches!(error, ModbusError::Timeout { .. }) {
                            h.timeouts_total += 1;
                        }
                        h.last_error = Some(error.to_string());
                    }
                }
                h.success_rate = 1.0 - h.requests_failed as f64 / h.requests_total as f64;
            });
            match outcome {
                Outcome::Failed(error) => {
                    self.ctx = None;
                    last = Some(error);
                }
                done => return done,
            }
        }
        Outcome::Failed(last.unwrap_or(ModbusError::Gone))
    }

    async fn read(&mut self, d: usize, request: &ReadRequest) -> Outcome<Vec<u16>> {
        let (start, count, table) = (request.start, request.count, request.table);
        self.call(d, move |ctx| {
            Box::pin(async move {
                match table {
                    Table::Coil => bits(ctx.read_coils(start, count).await),
                    Table::DiscreteInput => bits(ctx.read_discrete_inputs(start, count).await),
                    Table::InputRegister => ctx.read_input_registers(start, count).await,
                    Table::HoldingRegister => ctx.read_holding_registers(start, count).await,
                }
            })
        })
        .await
    }

    async fn write(&mut self, device: &str, point: &str, value: &Value) -> Result<(), ModbusError> {
        let d = self
            .devices
            .iter()
            .position(|s| s.config.id == device)
            .ok_or_else(|| ModbusError::UnknownDevice(device.to_owned()))?;
        let config = Arc::clone(&self.devices[d].config);
        let p = config
            .point(point)
            .cloned()
            .ok_or_else(|| ModbusError::UnknownPoint {
                device: device.to_owned(),
                point: point.to_owned(),
            })?;
        if p.access != Access::ReadWrite {
            return Err(ModbusError::ReadOnly(point.to_owned()));
        }
        if self.devices[d]
            .degraded_until
            .is_some_and(|until| Instant::now() < until)
        {
            return Err(ModbusError::Degraded(device.to_owned()));
        }
        let words = map::encode(&p, value)?;
        let address =
            p.protocol_address(config.address_base)
                .ok_or_else(|| ModbusError::UnknownPoint {
                    device: device.to_owned(),
                    point: point.to_owned(),
                })?;
        let outcome = match (p.table, p.data_type) {
            (Table::Coil, _) => {
                let on = words.first() == Some(&1);
                self.call(d, move |ctx| {
                    Box::pin(async move { ctx.write_single_coil(address, on).await })
                })
                .await
            }
            (_, DataType::Bool) => {
                // One bit of a register: change only that bit, in one request
                // (FC 22). Many field devices lack FC 22; for them read the
                // register and write it back (FC 3 + FC 6), on this task, so no
                // other request of ours can come in between.
                let bit = 1u16 << p.bit.unwrap_or(0);
                let or_mask = words.first().copied().unwrap_or(0) & bit;
                let masked = self
                    .call(d, move |ctx| {
                        Box::pin(
                            async move { ctx.masked_write_register(address, !bit, or_mask).await },
                        )
                    })
                    .await;
                match masked {
                    Outcome::Exception(ExceptionCode::IllegalFunction) => {
                        match self
                            .call(d, move |ctx| {
                                Box::pin(
                                    async move { ctx.read_holding_registers(address, 1).await },
                                )
                            })
                            .await
                        {
                            Outcome::Ok(current) => {
                                let word = (current.first().copied().unwrap_or(0) & !bit) | or_mask;
                                self.call(d, move |ctx| {
                                    Box::pin(async move {
                                        ctx.write_single_register(address, word).await
                                    })
                                })
                                .await
                            }
                            Outcome::Exception(code) => Outcome::Exception(code),
                            Outcome::Failed(error) => Outcome::Failed(error),
                        }
                    }
                    other => other,
                }
            }
            (_, _) if words.len() == 1 => {
                let word = words[0];
                self.call(d, move |ctx| {
                    Box::pin(async move { ctx.write_single_register(address, word).await })
                })
                .await
            }
            _ => {
                self.call(d, move |ctx| {
                    let words = words.clone();
                    Box::pin(async move { ctx.write_multiple_registers(address, &words).await })
                })
                .await
            }
        };
        Self::pause(self.devices[d].config.pause_between_ms).await;
        match outcome {
            Outcome::Ok(()) => {
                tracing::info!(line = %self.config.id, device, point, ?value, "modbus write");
                Ok(())
            }
            Outcome::Exception(code) => Err(ModbusError::Exception {
                device: device.to_owned(),
                code: code.to_string(),
            }),
            Outcome::Failed(error) => Err(error),
        }
    }
}

fn bits(result: tokio_modbus::Result<Vec<bool>>) -> tokio_modbus::Result<Vec<u16>> {
    result.map(|r| r.map(|bits| bits.into_iter().map(u16::from).collect()))
}

fn good(value: Value, at_ms: u64) -> PointReading {
    PointReading {
        value: Some(value),
        quality: Quality::Good,
        at_ms,
        error: None,
        unit: None,
        writable: false,
    }
}

fn bad(error: String, at_ms: u64) -> PointReading {
    PointReading {
        value: None,
        quality: Quality::Bad,
        at_ms,
        error: Some(error),
        unit: None,
        writable: false,
    }
}

/// A TCP connect may take longer than one request's timeout on a busy
/// network; a serial open is immediate.
fn connect_floor_ms(transport: &TransportConfig) -> u64 {
    match transport {
        TransportConfig::Tcp {
            connect_timeout_ms, ..
        } => *connect_timeout_ms,
        TransportConfig::Serial { .. } => 0,
    }
}

/// tokio-modbus wants a `Debug` transport; ours is a boxed stream.
struct DebugIo(BoxedIo);

impl fmt::Debug for DebugIo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("modbus transport")
    }
}

impl AsyncRead for DebugIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for DebugIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}
