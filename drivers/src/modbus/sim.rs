//! A Modbus device simulator speaking the real protocol (tokio-modbus'
//! server side), over TCP and over a pseudo-terminal for RTU: several unit
//! ids behind one endpoint or on one line, configurable tables, and the
//! field-bus faults the poller must survive (slow replies, exceptions,
//! silence, changing values).

use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_modbus::server::Service;
use tokio_modbus::{ExceptionCode, Request, Response, SlaveRequest};
use tokio_serial::{SerialPort, SerialStream};

/// Most registers in one read (FC 3/4) and bits (FC 1/2), and written at once (FC 16/15).
const MAX_READ_REGISTERS: u16 = 125;
const MAX_READ_BITS: u16 = 2000;
const MAX_WRITE_REGISTERS: usize = 123;
const MAX_WRITE_BITS: usize = 1968;
/// Exception answered for a unit id not behind a TCP gateway.
const GATEWAY_TARGET_FAILED: u8 = 0x0B;

/// The four tables of one simulated device, 0-based protocol addresses.
#[derive(Debug, Clone, Default)]
pub struct Tables {
    pub coils: BTreeMap<u16, bool>,
    pub discrete_inputs: BTreeMap<u16, bool>,
    pub input_registers: BTreeMap<u16, u16>,
    pub holding_registers: BTreeMap<u16, u16>,
}

/// How the device misbehaves.
#[derive(Debug, Clone, Default)]
pub struct Behaviour {
    pub reply_delay_ms: u64,
    /// Never answers.
    pub silent: bool,
    /// Answers this exception code to every request.
    pub exception: Option<u8>,
    /// Every read first increments each input register (wrapping).
    pub changing: bool,
}

#[derive(Debug, Default)]
struct DeviceState {
    tables: Tables,
    behaviour: Behaviour,
}

/// One simulated device (one unit id). Clones share state.
#[derive(Debug, Clone)]
pub struct SimDevice {
    unit: u8,
    state: Arc<Mutex<DeviceState>>,
    requests: Arc<AtomicU64>,
}

impl SimDevice {
    pub fn new(unit: u8, tables: Tables) -> Self {
        Self {
            unit,
            state: Arc::new(Mutex::new(DeviceState {
                tables,
                behaviour: Behaviour::default(),
            })),
            requests: Arc::new(AtomicU64::new(0)),
        }
    }

    pub fn unit(&self) -> u8 {
        self.unit
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, DeviceState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn set_behaviour(&self, behaviour: Behaviour) {
        self.lock().behaviour = behaviour;
    }
    pub fn set_holding(&self, addr: u16, value: u16) {
        self.lock().tables.holding_registers.insert(addr, value);
    }
    pub fn set_input(&self, addr: u16, value: u16) {
        self.lock().tables.input_registers.insert(addr, value);
    }
    pub fn set_coil(&self, addr: u16, value: bool) {
        self.lock().tables.coils.insert(addr, value);
    }
    pub fn set_discrete(&self, addr: u16, value: bool) {
        self.lock().tables.discrete_inputs.insert(addr, value);
    }
    pub fn holding(&self, addr: u16) -> Option<u16> {
        self.lock().tables.holding_registers.get(&addr).copied()
    }
    pub fn coil(&self, addr: u16) -> Option<bool> {
        self.lock().tables.coils.get(&addr).copied()
    }
    /// Requests addressed to this device so far, answered or not.
    pub fn requests_total(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// The answer to one request, or `None` for silence.
    fn answer(&self, request: &Request<'_>) -> (Behaviour, Result<Response, ExceptionCode>) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let mut state = self.lock();
        let behaviour = state.behaviour.clone();
        if let Some(code) = behaviour.exception {
            return (behaviour, Err(ExceptionCode::new(code)));
        }
        if behaviour.changing && matches!(request, Request::ReadInputRegisters(..)) {
            for value in state.tables.input_registers.values_mut() {
                *value = value.wrapping_add(1);
            }
        }
        (behaviour, execute(&mut state.tables, request))
    }
}

fn range(start: u16, count: u16, max: u16) -> Result<std::ops::Range<u32>, ExceptionCode> {
    if count == 0 || count > max {
        return Err(ExceptionCode::IllegalDataValue);
    }
    let end = u32::from(start) + u32::from(count);
    if end > 0x1_0000 {
        return Err(ExceptionCode::IllegalDataAddress);
    }
    Ok(u32::from(start)..end)
}

fn read<T: Copy>(
    table: &BTreeMap<u16, T>,
    start: u16,
    count: u16,
    max: u16,
) -> Result<Vec<T>, ExceptionCode> {
    range(start, count, max)?
        .map(|a| {
            table
                .get(&(a as u16))
                .copied()
                .ok_or(ExceptionCode::IllegalDataAddress)
        })
        .collect()
}

fn write<T: Copy>(
    table: &mut BTreeMap<u16, T>,
    start: u16,
    values: &[T],
    max: usize,
) -> Result<(), ExceptionCode> {
    if values.is_empty() || values.len() > max {
        return Err(ExceptionCode::IllegalDataValue);
    }
    let addresses = range(start, values.len() as u16, u16::MAX)?;
    // All or nothing: check every address before changing any.
    if addresses.clone().any(|a| !table.contains_key(&(a as u16))) {
        return Err(ExceptionCode::IllegalDataAddress);
    }
    for (a, v) in addresses.zip(values) {
        table.insert(a as u16, *v);
    }
    Ok(())
}

fn execute(tables: &mut Tables, request: &Request<'_>) -> Result<Response, ExceptionCode> {
    Ok(match request {
        Request::ReadCoils(a, n) => {
            Response::ReadCoils(read(&tables.coils, *a, *n, MAX_READ_BITS)?)
        }
        Request::ReadDiscreteInputs(a, n) => {
            Response::ReadDiscreteInputs(read(&tables.discrete_inputs, *a, *n, MAX_READ_BITS)?)
        }
        Request::ReadHoldingRegisters(a, n) => Response::ReadHoldingRegisters(read(
            &tables.holding_registers,
            *a,
            *n,
            MAX_READ_REGISTERS,
        )?),
        Request::ReadInputRegisters(a, n) => {
            Response::ReadInputRegisters(read(&tables.input_registers, *a, *n, MAX_READ_REGISTERS)?)
        }
        Request::WriteSingleCoil(a, v) => {
            write(&mut tables.coils, *a, &[*v], 1)?;
            Response::WriteSingleCoil(*a, *v)
        }
        Request::WriteMultipleCoils(a, values) => {
            write(&mut tables.coils, *a, values, MAX_WRITE_BITS)?;
            Response::WriteMultipleCoils(*a, values.len() as u16)
        }
        Request::WriteSingleRegister(a, v) => {
            write(&mut tables.holding_registers, *a, &[*v], 1)?;
            Response::WriteSingleRegister(*a, *v)
        }
        Request::WriteMultipleRegisters(a, values) => {
            write(
                &mut tables.holding_registers,
                *a,
                values,
                MAX_WRITE_REGISTERS,
            )?;
            Response::WriteMultipleRegisters(*a, values.len() as u16)
        }
        Request::MaskWriteRegister(a, and, or) => {
            let current = *tables
                .holding_registers
                .get(a)
                .ok_or(ExceptionCode::IllegalDataAddress)?;
            // Modbus spec 6.16: result = (current AND and_mask) OR (or_mask AND NOT and_mask).
            let value = (current & and) | (or & !and);
            tables.holding_registers.insert(*a, value);
            Response::MaskWriteRegister(*a, *and, *or)
        }
        _ => return Err(ExceptionCode::IllegalFunction),
    })
}

/// The devices behind one endpoint or on one RS-485 line, by unit id.
#[derive(Debug, Clone, Default)]
pub struct SimBank {
    devices: Arc<BTreeMap<u8, SimDevice>>,
}

impl SimBank {
    pub fn new(devices: Vec<SimDevice>) -> Self {
        Self {
            devices: Arc::new(devices.into_iter().map(|d| (d.unit, d)).collect()),
        }
    }

    pub fn device(&self, unit: u8) -> Option<SimDevice> {
        self.devices.get(&unit).cloned()
    }
}

/// The tokio-modbus service of a bank. On TCP an absent unit gets the
/// gateway exception; on a serial line it gets silence, as on a real bus.
#[derive(Debug, Clone)]
struct BankService {
    bank: SimBank,
    serial: bool,
}

type Answer = Result<Option<Response>, ExceptionCode>;

impl Service for BankService {
    type Request = SlaveRequest<'static>;
    type Response = Option<Response>;
    type Exception = ExceptionCode;
    type Future = Pin<Box<dyn Future<Output = Answer> + Send>>;

    fn call(&self, req: Self::Request) -> Self::Future {
        let Some(device) = self.bank.device(req.slave) else {
            let serial = self.serial;
            return Box::pin(async move {
                if serial {
                    Ok(None)
                } else {
                    Err(ExceptionCode::new(GATEWAY_TARGET_FAILED))
                }
            });
        };
        let (behaviour, result) = device.answer(&req.request);
        Box::pin(async move {
            if behaviour.silent {
                return Ok(None);
            }
            if behaviour.reply_delay_ms > 0 {
                tokio::time::sleep(Duration::from_millis(behaviour.reply_delay_ms)).await;
            }
            result.map(Some)
        })
    }
}

/// Serves `bank` as Modbus TCP on `addr`. Aborting the handle closes the
/// listener and every connection.
pub async fn serve_tcp(addr: &str, bank: SimBank) -> io::Result<(SocketAddr, JoinHandle<()>)> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let server = tokio_modbus::server::tcp::Server::new(listener);
    let task = tokio::spawn(async move {
        let service = BankService {
            bank,
            serial: false,
        };
        let on_connected = |stream, _addr| {
            let service = service.clone();
            async move { Ok(Some((service, stream))) }
        };
        // Connections are tasks of their own; an aborted server drops the
        // listener, and the test's client sees the close on its next request.
        if let Err(error) = server
            .serve(
                &on_connected,
                |error| tracing::debug!(%error, "simulated modbus connection ended"),
            )
            .await
        {
            tracing::debug!(%error, "simulated modbus server stopped");
        }
    });
    Ok((local, task))
}

/// Modbus RTU on a real pseudo-terminal; dropping it stops serving.
#[derive(Debug)]
pub struct PtyModbus {
    path: PathBuf,
    task: JoinHandle<()>,
    // The slave side stays open so the master never sees a hang-up while
    // no client has the port open.
    _slave: SerialStream,
}

impl PtyModbus {
    /// Creates the pty pair and serves `bank` on it; inside a tokio runtime.
    pub fn spawn(bank: SimBank) -> io::Result<PtyModbus> {
        let (master, slave) = SerialStream::pair().map_err(io::Error::from)?;
        let path = slave
            .name()
            .map(PathBuf::from)
            .ok_or_else(|| io::Error::other("pty slave has no path"))?;
        let task = tokio::spawn(async move {
            let server = tokio_modbus::server::rtu::Server::new(master);
            if let Err(error) = server
                .serve_forever(BankService { bank, serial: true })
                .await
            {
                tracing::debug!(%error, "simulated modbus rtu line stopped");
            }
        });
        Ok(PtyModbus {
            path,
            task,
            _slave: slave,
        })
    }

    /// The device path to open as a serial port.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for PtyModbus {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_modbus::Slave;
    use tokio_modbus::client::{Reader, Writer};
    use tokio_modbus::prelude::SlaveContext;

    fn device(unit: u8) -> SimDevice {
        let tables = Tables {
            holding_registers: (0..10).map(|a| (a, 100 + a)).collect(),
            coils: (0..10).map(|a| (a, false)).collect(),
            ..Tables::default()
        };
        SimDevice::new(unit, tables)
    }

    #[tokio::test]
    async fn tcp_reads_writes_and_refuses_by_exception() {
        let d = device(1);
        let (addr, _server) = serve_tcp("127.0.0.1:0", SimBank::new(vec![d.clone()]))
            .await
            .unwrap();
        let mut ctx = tokio_modbus::client::tcp::connect_slave(addr, Slave(1))
            .await
            .unwrap();
        assert_eq!(
            ctx.read_holding_registers(2, 3).await.unwrap().unwrap(),
            vec![102, 103, 104]
        );
        ctx.write_single_register(2, 7).await.unwrap().unwrap();
        ctx.masked_write_register(3, 0xFFFD, 0x0002)
            .await
            .unwrap()
            .unwrap();
        assert_eq!((d.holding(2), d.holding(3)), (Some(7), Some(103 | 2)));
        assert_eq!(
            ctx.read_holding_registers(9, 2).await.unwrap(),
            Err(ExceptionCode::IllegalDataAddress)
        );
        assert_eq!(
            ctx.read_holding_registers(0, 126).await.unwrap(),
            Err(ExceptionCode::IllegalDataValue)
        );
        ctx.set_slave(Slave(9));
        assert_eq!(
            ctx.read_holding_registers(0, 1).await.unwrap(),
            Err(ExceptionCode::new(GATEWAY_TARGET_FAILED))
        );
        ctx.set_slave(Slave(1));
        d.set_behaviour(Behaviour {
            exception: Some(6),
            ..Behaviour::default()
        });
        assert_eq!(
            ctx.read_coils(0, 1).await.unwrap(),
            Err(ExceptionCode::ServerDeviceBusy)
        );
        assert_eq!(
            d.requests_total(),
            6,
            "unit 9's request is not counted here"
        );
    }

    #[tokio::test]
    async fn rtu_on_a_pty_serves_units_and_stays_silent_for_others() {
        let (one, two) = (device(1), device(2));
        let pty = PtyModbus::spawn(SimBank::new(vec![one.clone(), two.clone()])).unwrap();
        let port =
            SerialStream::open(&tokio_serial::new(pty.path().to_string_lossy(), 19200)).unwrap();
        let mut ctx = tokio_modbus::client::rtu::attach_slave(port, Slave(2));
        assert_eq!(
            ctx.read_holding_registers(0, 1).await.unwrap().unwrap(),
            vec![100]
        );
        ctx.write_single_coil(4, true).await.unwrap().unwrap();
        assert_eq!((two.coil(4), one.coil(4)), (Some(true), Some(false)));
        ctx.set_slave(Slave(5));
        let absent =
            tokio::time::timeout(Duration::from_millis(200), ctx.read_holding_registers(0, 1))
                .await;
        assert!(absent.is_err(), "nobody answers for unit 5");
        one.set_behaviour(Behaviour {
            silent: true,
            ..Behaviour::default()
        });
        // A fresh client: the timed-out request above may leave state behind.
        drop(ctx);
        let port =
            SerialStream::open(&tokio_serial::new(pty.path().to_string_lossy(), 19200)).unwrap();
        let mut ctx = tokio_modbus::client::rtu::attach_slave(port, Slave(1));
        let silent = tokio::time::timeout(Duration::from_millis(200), ctx.read_coils(0, 1)).await;
        assert!(silent.is_err(), "a silent device does not answer");
        assert_eq!(one.requests_total(), 1);
    }
}
