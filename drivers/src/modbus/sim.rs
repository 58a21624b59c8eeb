//! A Modbus device simulator speaking the real protocol: the four tables of
//! each simulated device behind a Modbus TCP endpoint or on an RTU line on a
//! real pseudo-terminal, with the field-bus faults the poller must survive
//! (slow, silent and refusing devices, absent unit ids).
//!
//! The wire side is tokio-modbus' own server, so framing, CRC and exception
//! encoding are exactly what a client meets on site; this module only
//! decides what each device answers. Tests, the demo and `mbpoll` use it as
//! a peer; the `valeo-modbus-sim` binary puts it on the command line.
//!
//! Devices implement function codes 1–6, 15, 16 and 22 (mask write, which
//! the poller uses for single bits); anything else is IllegalFunction.

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio_modbus::server::{Service, rtu, tcp};
use tokio_modbus::{ExceptionCode, Request, Response, SlaveRequest};
use tokio_serial::{SerialPort, SerialStream};

/// Modbus TCP connections served at once; real devices allow a handful, and
/// further ones are closed right away as theirs are.
pub const MAX_TCP_CONNECTIONS: usize = 8;

/// Spec limits (Modbus Application Protocol V1.1b3, 6.1–6.12): beyond them a
/// device answers IllegalDataValue.
const MAX_READ_BITS: u16 = 2000;
const MAX_READ_REGISTERS: u16 = 125;
const MAX_WRITE_COILS: u16 = 1968;
const MAX_WRITE_REGISTERS: u16 = 123;

/// Pause after a failed accept (e.g. out of file descriptors) so the loop does not spin.
const ACCEPT_RETRY_MS: u64 = 100;

/// Pause before the RTU line is served again after its server stopped.
const RTU_RESTART_MS: u64 = 20;

/// In-memory pipe between a TCP connection and tokio-modbus; a Modbus TCP
/// frame is at most 260 bytes, so this holds several.
const RELAY_BUFFER: usize = 4096;

/// The four Modbus tables of one simulated device, 0-based protocol addresses.
/// An address that is not in its table does not exist on the device.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tables {
    pub coils: BTreeMap<u16, bool>,
    pub discrete_inputs: BTreeMap<u16, bool>,
    pub input_registers: BTreeMap<u16, u16>,
    pub holding_registers: BTreeMap<u16, u16>,
}

/// How the device misbehaves (field-bus faults to test against).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Behaviour {
    /// Pause before every answer.
    pub reply_delay_ms: u64,
    /// Never answer: no bytes on RTU; on TCP the connection stays open but
    /// gets no reply.
    pub silent: bool,
    /// Modbus exception code answered to every request (after the delay).
    pub exception: Option<u8>,
    /// Every read (function 1–4) first increments each input register by 1
    /// (wrapping), so values change from poll to poll.
    pub changing: bool,
    /// Lacks function 22 (mask write register), as many field devices do.
    pub no_mask_write: bool,
}

#[derive(Debug, Default)]
struct DeviceState {
    tables: Tables,
    behaviour: Behaviour,
    requests_total: u64,
}

/// One simulated device (one unit id). Clones share state, so a test keeps a
/// clone to change values and faults while the device is being served.
#[derive(Debug, Clone)]
pub struct SimDevice {
    unit: u8,
    state: Arc<Mutex<DeviceState>>,
}

impl SimDevice {
    pub fn new(unit: u8, tables: Tables) -> Self {
        SimDevice {
            unit,
            state: Arc::new(Mutex::new(DeviceState {
                tables,
                ..DeviceState::default()
            })),
        }
    }

    pub fn unit(&self) -> u8 {
        self.unit
    }

    pub fn set_behaviour(&self, b: Behaviour) {
        self.lock().behaviour = b;
    }

    pub fn behaviour(&self) -> Behaviour {
        self.lock().behaviour.clone()
    }

    /// Sets a holding register, adding the address to the device if it was not there.
    pub fn set_holding(&self, addr: u16, value: u16) {
        self.lock().tables.holding_registers.insert(addr, value);
    }

    /// Sets an input register, adding the address to the device if it was not there.
    pub fn set_input(&self, addr: u16, value: u16) {
        self.lock().tables.input_registers.insert(addr, value);
    }

    /// Sets a coil, adding the address to the device if it was not there.
    pub fn set_coil(&self, addr: u16, v: bool) {
        self.lock().tables.coils.insert(addr, v);
    }

    /// Sets a discrete input, adding the address to the device if it was not there.
    pub fn set_discrete(&self, addr: u16, v: bool) {
        self.lock().tables.discrete_inputs.insert(addr, v);
    }

    pub fn holding(&self, addr: u16) -> Option<u16> {
        self.lock().tables.holding_registers.get(&addr).copied()
    }

    pub fn input(&self, addr: u16) -> Option<u16> {
        self.lock().tables.input_registers.get(&addr).copied()
    }

    pub fn coil(&self, addr: u16) -> Option<bool> {
        self.lock().tables.coils.get(&addr).copied()
    }

    pub fn discrete(&self, addr: u16) -> Option<bool> {
        self.lock().tables.discrete_inputs.get(&addr).copied()
    }

    /// A copy of all four tables as they are now.
    pub fn tables(&self) -> Tables {
        self.lock().tables.clone()
    }

    /// Requests addressed to this device so far, answered or not (silent,
    /// exception), so a test can tell a device that was skipped from one
    /// that was asked and did not answer.
    pub fn requests_total(&self) -> u64 {
        self.lock().requests_total
    }

    fn lock(&self) -> MutexGuard<'_, DeviceState> {
        // A test that panicked while holding the lock must not take every later request down.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts the request and returns the behaviour it meets; taken at arrival so a
    /// fault set while a delayed answer is pending applies from the next request on.
    fn arrive(&self) -> Behaviour {
        let mut state = self.lock();
        state.requests_total += 1;
        state.behaviour.clone()
    }

    /// Executes one request on the tables, as the device firmware would.
    fn execute(&self, request: &Request<'_>, changing: bool) -> Result<Response, ExceptionCode> {
        let mut state = self.lock();
        let tables = &mut state.tables;
        let is_read = matches!(
            request,
            Request::ReadCoils(..)
                | Request::ReadDiscreteInputs(..)
                | Request::ReadHoldingRegisters(..)
                | Request::ReadInputRegisters(..)
        );
        if changing && is_read {
            for value in tables.input_registers.values_mut() {
                *value = value.wrapping_add(1);
            }
        }
        match request {
            Request::ReadCoils(addr, count) => {
                read(&tables.coils, *addr, *count, MAX_READ_BITS).map(Response::ReadCoils)
            }
            Request::ReadDiscreteInputs(addr, count) => {
                read(&tables.discrete_inputs, *addr, *count, MAX_READ_BITS)
                    .map(Response::ReadDiscreteInputs)
            }
            Request::ReadHoldingRegisters(addr, count) => {
                read(&tables.holding_registers, *addr, *count, MAX_READ_REGISTERS)
                    .map(Response::ReadHoldingRegisters)
            }
            Request::ReadInputRegisters(addr, count) => {
                read(&tables.input_registers, *addr, *count, MAX_READ_REGISTERS)
                    .map(Response::ReadInputRegisters)
            }
            Request::WriteSingleCoil(addr, value) => write(&mut tables.coils, *addr, &[*value], 1)
                .map(|_| Response::WriteSingleCoil(*addr, *value)),
            Request::WriteSingleRegister(addr, value) => {
                write(&mut tables.holding_registers, *addr, &[*value], 1)
                    .map(|_| Response::WriteSingleRegister(*addr, *value))
            }
            Request::WriteMultipleCoils(addr, values) => {
                write(&mut tables.coils, *addr, values, MAX_WRITE_COILS)
                    .map(|count| Response::WriteMultipleCoils(*addr, count))
            }
            Request::WriteMultipleRegisters(addr, values) => write(
                &mut tables.holding_registers,
                *addr,
                values,
                MAX_WRITE_REGISTERS,
            )
            .map(|count| Response::WriteMultipleRegisters(*addr, count)),
            // Beyond the eight basic functions because the poller sets one bit of a
            // register with it (one request, no read-modify-write race).
            Request::MaskWriteRegister(addr, and_mask, or_mask) => {
                let register = tables
                    .holding_registers
                    .get_mut(addr)
                    .ok_or(ExceptionCode::IllegalDataAddress)?;
                *register = (*register & and_mask) | (or_mask & !and_mask);
                Ok(Response::MaskWriteRegister(*addr, *and_mask, *or_mask))
            }
            // Function codes 7, 8, 11, 17, 23, 43 and vendor codes: not implemented,
            // as on most field devices.
            _ => Err(ExceptionCode::IllegalFunction),
        }
    }
}

/// The `count` addresses from `start`, or the exception a device answers: the
/// quantity is checked before the addresses, as the spec's state diagrams do.
fn span(start: u16, count: u16, max: u16) -> Result<Vec<u16>, ExceptionCode> {
    if count == 0 || count > max {
        return Err(ExceptionCode::IllegalDataValue);
    }
    (0..count)
        .map(|i| {
            start
                .checked_add(i)
                .ok_or(ExceptionCode::IllegalDataAddress)
        })
        .collect()
}

fn read<T: Copy>(
    table: &BTreeMap<u16, T>,
    start: u16,
    count: u16,
    max: u16,
) -> Result<Vec<T>, ExceptionCode> {
    span(start, count, max)?
        .iter()
        .map(|addr| {
            table
                .get(addr)
                .copied()
                .ok_or(ExceptionCode::IllegalDataAddress)
        })
        .collect()
}

/// Writes all values or none: a write touching one missing address changes nothing.
fn write<T: Copy>(
    table: &mut BTreeMap<u16, T>,
    start: u16,
    values: &[T],
    max: u16,
) -> Result<u16, ExceptionCode> {
    let count = u16::try_from(values.len()).map_err(|_| ExceptionCode::IllegalDataValue)?;
    let addresses = span(start, count, max)?;
    if addresses.iter().any(|addr| !table.contains_key(addr)) {
        return Err(ExceptionCode::IllegalDataAddress);
    }
    for (addr, value) in addresses.into_iter().zip(values) {
        table.insert(addr, *value);
    }
    Ok(count)
}

/// The devices behind one endpoint or on one RS-485 line, by unit id.
#[derive(Debug, Clone, Default)]
pub struct SimBank {
    devices: BTreeMap<u8, SimDevice>,
}

impl SimBank {
    /// A later device with the same unit id replaces an earlier one.
    pub fn new(devices: Vec<SimDevice>) -> Self {
        SimBank {
            devices: devices.into_iter().map(|d| (d.unit(), d)).collect(),
        }
    }

    pub fn device(&self, unit: u8) -> Option<SimDevice> {
        self.devices.get(&unit).cloned()
    }
}

/// Which wire the bank is on: the two answer an absent unit differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wire {
    Tcp,
    Rtu,
}

/// The tokio-modbus service for one bank. A response of `None` makes the
/// tokio-modbus server send nothing at all, which is how silence and absent
/// RTU units are done.
#[derive(Debug, Clone)]
struct BankService {
    bank: SimBank,
    wire: Wire,
}

impl Service for BankService {
    type Request = SlaveRequest<'static>;
    type Response = Option<Response>;
    type Exception = ExceptionCode;
    type Future = BoxFuture<'static, Result<Option<Response>, ExceptionCode>>;

    fn call(&self, req: SlaveRequest<'static>) -> Self::Future {
        let Some(device) = self.bank.device(req.slave) else {
            let answer = match self.wire {
                // A gateway answers for the devices behind it; 0x0B says nobody answered.
                Wire::Tcp => Err(ExceptionCode::GatewayTargetDevice),
                // On RS-485 nobody has that address, so the line stays quiet.
                Wire::Rtu => Ok(None),
            };
            return Box::pin(std::future::ready(answer));
        };
        let behaviour = device.arrive();
        Box::pin(async move {
            if behaviour.silent {
                return Ok(None);
            }
            if behaviour.reply_delay_ms > 0 {
                tokio::time::sleep(Duration::from_millis(behaviour.reply_delay_ms)).await;
            }
            if let Some(code) = behaviour.exception {
                return Err(ExceptionCode::new(code));
            }
            if behaviour.no_mask_write && matches!(req.request, Request::MaskWriteRegister(..)) {
                return Err(ExceptionCode::IllegalFunction);
            }
            device.execute(&req.request, behaviour.changing).map(Some)
        })
    }
}

/// Listens on `addr` (e.g. "127.0.0.1:0") and serves the bank over Modbus TCP,
/// the unit id choosing the device. Aborting the returned task closes the
/// listener and every open connection, which is how tests cut the link.
pub async fn serve_tcp(addr: &str, bank: SimBank) -> io::Result<(SocketAddr, JoinHandle<()>)> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let task = tokio::spawn(async move {
        // tokio-modbus spawns a detached task per connection, which aborting this task would
        // not reach. So each connection is relayed through a pipe by a task of ours that
        // ends, closing the socket and the pipe, once this sender is dropped with the task.
        let (_closing, closed) = watch::channel(());
        let slots = Arc::new(Semaphore::new(MAX_TCP_CONNECTIONS));
        let on_connected = |stream: TcpStream, peer: SocketAddr| {
            let accepted = relay_connection(stream, peer, &bank, &slots, closed.clone());
            std::future::ready(Ok(accepted))
        };
        let server = tcp::Server::new(listener);
        loop {
            let ended = |error: io::Error| {
                tracing::debug!(%error, "modbus simulator connection ended");
            };
            if let Err(error) = server.serve(&on_connected, ended).await {
                tracing::warn!(%error, "modbus simulator accept failed");
                tokio::time::sleep(Duration::from_millis(ACCEPT_RETRY_MS)).await;
            }
        }
    });
    Ok((local, task))
}

/// Listens on `addr` and serves the bank with RTU frames over TCP, as a
/// serial device server in transparent mode passes an RS-485 line through:
/// each connection is a line of its own. Aborting the task stops serving.
pub async fn serve_rtu_tcp(addr: &str, bank: SimBank) -> io::Result<(SocketAddr, JoinHandle<()>)> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let task = tokio::spawn(async move {
        let slots = Arc::new(Semaphore::new(MAX_TCP_CONNECTIONS));
        // Connections end with this task: the set aborts them when dropped.
        let mut lines = JoinSet::new();
        loop {
            let (mut stream, peer) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "modbus rtu-over-tcp simulator accept failed");
                    tokio::time::sleep(Duration::from_millis(ACCEPT_RETRY_MS)).await;
                    continue;
                }
            };
            let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
                tracing::warn!(%peer, "too many modbus simulator connections, closing");
                continue;
            };
            let bank = bank.clone();
            lines.spawn(async move {
                let _slot = slot;
                if let Err(error) = serve_rtu(&mut stream, &bank).await {
                    tracing::debug!(%peer, %error, "modbus rtu-over-tcp connection ended");
                }
            });
            // Reap finished connections so the set does not grow.
            while lines.try_join_next().is_some() {}
        }
    });
    Ok((local, task))
}

/// Starts relaying `stream` and returns the pipe end tokio-modbus serves, or
/// `None` (the connection is closed) when all slots are taken.
fn relay_connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    bank: &SimBank,
    slots: &Arc<Semaphore>,
    mut closed: watch::Receiver<()>,
) -> Option<(BankService, tokio::io::DuplexStream)> {
    let Ok(slot) = Arc::clone(slots).try_acquire_owned() else {
        tracing::warn!(%peer, "too many modbus simulator connections, closing");
        return None;
    };
    if let Err(error) = stream.set_nodelay(true) {
        tracing::debug!(%error, "set_nodelay failed");
    }
    let (served, mut relayed) = tokio::io::duplex(RELAY_BUFFER);
    tokio::spawn(async move {
        let _slot = slot;
        tokio::select! {
            copied = tokio::io::copy_bidirectional(&mut stream, &mut relayed) => {
                if let Err(error) = copied {
                    tracing::debug!(%peer, %error, "modbus simulator connection failed");
                }
            }
            // Only ever an error: the server task that owns the sender is gone.
            _ = closed.changed() => {}
        }
    });
    let service = BankService {
        bank: bank.clone(),
        wire: Wire::Tcp,
    };
    Some((service, served))
}

/// The bank on a simulated RS-485 line: Modbus RTU on a real pseudo-terminal,
/// whose slave path (e.g. /dev/pts/7) a driver opens like `/dev/ttyUSB0`.
/// Dropping it stops serving.
pub struct PtyModbus {
    path: PathBuf,
    task: JoinHandle<()>,
    /// Held only so the master does not see EIO between client connections.
    _slave: SerialStream,
}

impl std::fmt::Debug for PtyModbus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PtyModbus")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl PtyModbus {
    /// Creates the pty pair and serves the bank on it; must be called inside a tokio runtime.
    pub fn spawn(bank: SimBank) -> io::Result<PtyModbus> {
        let (mut line, slave) = SerialStream::pair().map_err(io::Error::from)?;
        let path = slave
            .name()
            .map(PathBuf::from)
            .ok_or_else(|| io::Error::other("pty slave has no path"))?;
        let task = tokio::spawn(async move {
            loop {
                match serve_rtu(&mut line, &bank).await {
                    Ok(()) => tracing::debug!("modbus rtu simulator stopped, restarting"),
                    Err(error) => {
                        tracing::debug!(%error, "modbus rtu simulator failed, restarting");
                    }
                }
                tokio::time::sleep(Duration::from_millis(RTU_RESTART_MS)).await;
            }
        });
        Ok(PtyModbus {
            path,
            task,
            _slave: slave,
        })
    }

    /// The slave device path to open as a serial port.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for PtyModbus {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves the line until tokio-modbus' RTU server stops. That server owns its
/// port and ends for good on 20 undecodable bytes in a row or on a CRC-valid
/// frame it cannot parse (and panics on some), where a real device would
/// just ignore the frame. So it runs on an inner pty pair relayed to `line`,
/// and a fresh pair replaces it while the path clients opened stays valid.
async fn serve_rtu<L>(line: &mut L, bank: &SimBank) -> io::Result<()>
where
    L: AsyncRead + AsyncWrite + Unpin,
{
    let (device, mut relay) = SerialStream::pair().map_err(io::Error::from)?;
    let service = BankService {
        bank: bank.clone(),
        wire: Wire::Rtu,
    };
    // A task of its own so a panic in the decoder is a restart, not the end of the line;
    // in a JoinSet so it is aborted when we are.
    let mut server = JoinSet::new();
    server.spawn(rtu::Server::new(device).serve_forever(service));
    tokio::select! {
        copied = tokio::io::copy_bidirectional(line, &mut relay) => copied.map(drop),
        ended = server.join_next() => match ended {
            Some(Ok(served)) => served,
            Some(Err(join)) => Err(io::Error::other(join)),
            None => Ok(()),
        },
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use tokio::io::AsyncWriteExt;
    use tokio_modbus::client::{Context, rtu as rtu_client, tcp as tcp_client};
    use tokio_modbus::prelude::{Client, Reader, Slave, SlaveContext, Writer};

    use super::*;

    /// Short, because every expected silence costs this much test time.
    const SILENCE: Duration = Duration::from_millis(100);

    fn device(unit: u8) -> SimDevice {
        let base = u16::from(unit) * 100;
        SimDevice::new(
            unit,
            Tables {
                coils: (0..4).map(|a| (a, a % 2 == 1)).collect(),
                discrete_inputs: (0..4).map(|a| (a, a == 0)).collect(),
                input_registers: (0..4).map(|a| (a, base + 50 + a)).collect(),
                holding_registers: (0..4).map(|a| (a, base + a)).collect(),
            },
        )
    }

    async fn connect_tcp(addr: SocketAddr, unit: u8) -> Context {
        tcp_client::connect_slave(addr, Slave(unit)).await.unwrap()
    }

    fn open_rtu(pty: &PtyModbus, unit: u8) -> Context {
        let port =
            SerialStream::open(&tokio_serial::new(pty.path().to_string_lossy(), 19200)).unwrap();
        rtu_client::attach_slave(port, Slave(unit))
    }

    #[tokio::test]
    async fn tcp_reads_and_writes_every_table() {
        let dev = device(1);
        let (addr, _server) = serve_tcp("127.0.0.1:0", SimBank::new(vec![dev.clone()]))
            .await
            .unwrap();
        let mut ctx = connect_tcp(addr, 1).await;

        assert_eq!(
            ctx.read_coils(0, 4).await.unwrap(),
            Ok(vec![false, true, false, true])
        );
        assert_eq!(
            ctx.read_discrete_inputs(0, 2).await.unwrap(),
            Ok(vec![true, false])
        );
        assert_eq!(
            ctx.read_holding_registers(1, 3).await.unwrap(),
            Ok(vec![101, 102, 103])
        );
        assert_eq!(
            ctx.read_input_registers(0, 2).await.unwrap(),
            Ok(vec![150, 151])
        );

        ctx.write_single_coil(0, true).await.unwrap().unwrap();
        ctx.write_single_register(0, 7).await.unwrap().unwrap();
        ctx.write_multiple_coils(2, &[true, false])
            .await
            .unwrap()
            .unwrap();
        ctx.write_multiple_registers(2, &[8, 9])
            .await
            .unwrap()
            .unwrap();
        assert_eq!(dev.coil(0), Some(true));
        assert_eq!(dev.coil(3), Some(false));
        assert_eq!(dev.holding(0), Some(7));
        assert_eq!(
            ctx.read_holding_registers(0, 4).await.unwrap(),
            Ok(vec![7, 101, 8, 9])
        );
        assert_eq!(
            ctx.read_coils(0, 4).await.unwrap(),
            Ok(vec![true, true, true, false])
        );
        // Function 22: set bit 1 and clear bit 0 of 101 (0b110_0101), nothing else.
        ctx.masked_write_register(1, !0b11, 0b10)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(dev.holding(1), Some(0b110_0110));
        assert_eq!(dev.requests_total(), 11);
    }

    #[tokio::test]
    async fn tcp_refuses_what_a_device_would_refuse() {
        let dev = device(1);
        let (addr, _server) = serve_tcp("127.0.0.1:0", SimBank::new(vec![dev.clone()]))
            .await
            .unwrap();
        let mut ctx = connect_tcp(addr, 1).await;

        assert_eq!(
            ctx.read_holding_registers(3, 2).await.unwrap(),
            Err(ExceptionCode::IllegalDataAddress)
        );
        assert_eq!(
            ctx.read_holding_registers(0, 126).await.unwrap(),
            Err(ExceptionCode::IllegalDataValue)
        );
        assert_eq!(
            ctx.read_coils(0, 2001).await.unwrap(),
            Err(ExceptionCode::IllegalDataValue)
        );
        // One missing address and nothing is written.
        assert_eq!(
            ctx.write_multiple_registers(3, &[1, 2]).await.unwrap(),
            Err(ExceptionCode::IllegalDataAddress)
        );
        assert_eq!(dev.holding(3), Some(103));
        assert_eq!(
            ctx.call(Request::ReadWriteMultipleRegisters(0, 1, 0, vec![1].into()))
                .await
                .unwrap(),
            Err(ExceptionCode::IllegalFunction)
        );

        ctx.set_slave(Slave(9));
        assert_eq!(
            ctx.read_holding_registers(0, 1).await.unwrap(),
            Err(ExceptionCode::GatewayTargetDevice)
        );

        dev.set_behaviour(Behaviour {
            exception: Some(6),
            ..Behaviour::default()
        });
        ctx.set_slave(Slave(1));
        assert_eq!(
            ctx.write_single_register(0, 1).await.unwrap(),
            Err(ExceptionCode::ServerDeviceBusy)
        );
        assert_eq!(dev.holding(0), Some(100));
    }

    #[tokio::test]
    async fn tcp_silence_keeps_the_connection_and_abort_closes_it() {
        let dev = device(1);
        let (addr, server) = serve_tcp("127.0.0.1:0", SimBank::new(vec![dev.clone()]))
            .await
            .unwrap();
        let mut ctx = connect_tcp(addr, 1).await;
        dev.set_behaviour(Behaviour {
            silent: true,
            ..Behaviour::default()
        });
        let silent = tokio::time::timeout(SILENCE, ctx.read_holding_registers(0, 1)).await;
        assert!(silent.is_err(), "a silent device answered: {silent:?}");

        dev.set_behaviour(Behaviour::default());
        assert_eq!(
            ctx.read_holding_registers(0, 1).await.unwrap(),
            Ok(vec![100])
        );
        assert_eq!(dev.requests_total(), 2);

        server.abort();
        assert!(server.await.unwrap_err().is_cancelled());
        let cut = tokio::time::timeout(Duration::from_secs(1), ctx.read_holding_registers(0, 1))
            .await
            .expect("an aborted server closes its connections");
        assert!(cut.is_err(), "{cut:?}");
        assert!(TcpStream::connect(addr).await.is_err());
    }

    #[tokio::test]
    async fn rtu_serves_two_units_on_one_line_and_absent_units_are_quiet() {
        let (one, two) = (device(1), device(2));
        let pty = PtyModbus::spawn(SimBank::new(vec![one.clone(), two.clone()])).unwrap();
        let mut ctx = open_rtu(&pty, 1);

        assert_eq!(
            ctx.read_holding_registers(0, 2).await.unwrap(),
            Ok(vec![100, 101])
        );
        ctx.set_slave(Slave(2));
        assert_eq!(
            ctx.read_input_registers(0, 2).await.unwrap(),
            Ok(vec![250, 251])
        );
        ctx.write_single_coil(0, true).await.unwrap().unwrap();
        assert_eq!((one.coil(0), two.coil(0)), (Some(false), Some(true)));

        ctx.set_slave(Slave(3));
        let absent = tokio::time::timeout(SILENCE, ctx.read_holding_registers(0, 1)).await;
        assert!(absent.is_err(), "an absent unit answered: {absent:?}");

        // Nothing late arrives to be taken for the next answer.
        ctx.set_slave(Slave(1));
        assert_eq!(
            ctx.read_discrete_inputs(0, 2).await.unwrap(),
            Ok(vec![true, false])
        );
        assert_eq!((one.requests_total(), two.requests_total()), (2, 2));
    }

    #[tokio::test]
    async fn rtu_faults_exception_silence_delay_and_changing_values() {
        let dev = device(1);
        let pty = PtyModbus::spawn(SimBank::new(vec![dev.clone()])).unwrap();
        let mut ctx = open_rtu(&pty, 1);

        dev.set_behaviour(Behaviour {
            exception: Some(4),
            ..Behaviour::default()
        });
        assert_eq!(
            ctx.read_holding_registers(0, 1).await.unwrap(),
            Err(ExceptionCode::ServerDeviceFailure)
        );

        dev.set_behaviour(Behaviour {
            silent: true,
            ..Behaviour::default()
        });
        let silent = tokio::time::timeout(SILENCE, ctx.read_holding_registers(0, 1)).await;
        assert!(silent.is_err(), "a silent device answered: {silent:?}");

        dev.set_behaviour(Behaviour {
            reply_delay_ms: 150,
            changing: true,
            ..Behaviour::default()
        });
        let started = Instant::now();
        assert_eq!(ctx.read_input_registers(0, 1).await.unwrap(), Ok(vec![151]));
        assert!(started.elapsed() >= Duration::from_millis(150));
        dev.set_behaviour(Behaviour {
            changing: true,
            ..Behaviour::default()
        });
        assert_eq!(
            ctx.read_input_registers(0, 2).await.unwrap(),
            Ok(vec![152, 153])
        );
        assert_eq!(dev.input(0), Some(152));
        assert_eq!(dev.requests_total(), 4);
    }

    #[tokio::test]
    async fn rtu_line_survives_garbage_and_malformed_frames() {
        let pty = PtyModbus::spawn(SimBank::new(vec![device(1)])).unwrap();
        let mut port =
            SerialStream::open(&tokio_serial::new(pty.path().to_string_lossy(), 19200)).unwrap();
        // Noise that makes tokio-modbus give up on the stream.
        port.write_all(&[0xFF; 40]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        // Write multiple coils, quantity 100 but one data byte, valid CRC: the decoder panics.
        let mut frame = vec![1, 0x0F, 0, 0, 0, 100, 1, 0xFF];
        frame.extend_from_slice(&crate::modbus::ascii::crc16(&frame).to_le_bytes());
        port.write_all(&frame).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;

        let mut ctx = rtu_client::attach_slave(port, Slave(1));
        let read = tokio::time::timeout(Duration::from_secs(1), ctx.read_holding_registers(0, 1))
            .await
            .expect("the line is served again");
        assert_eq!(read.unwrap(), Ok(vec![100]));
    }

    #[tokio::test]
    async fn spec_limits_beyond_what_the_client_can_send() {
        let tables = Tables {
            holding_registers: (0..=200).map(|a| (a, 0)).collect(),
            coils: (0..=2000).map(|a| (a, false)).collect(),
            ..Tables::default()
        };
        let service = BankService {
            bank: SimBank::new(vec![SimDevice::new(1, tables)]),
            wire: Wire::Rtu,
        };
        let call = |request: Request<'static>| service.call(SlaveRequest { slave: 1, request });
        let registers = |n: usize| Request::WriteMultipleRegisters(0, vec![1; n].into());
        let coils = |n: usize| Request::WriteMultipleCoils(0, vec![true; n].into());
        assert!(matches!(call(registers(123)).await, Ok(Some(_))));
        assert_eq!(
            call(registers(124)).await,
            Err(ExceptionCode::IllegalDataValue)
        );
        assert!(matches!(call(coils(1968)).await, Ok(Some(_))));
        assert_eq!(
            call(coils(1969)).await,
            Err(ExceptionCode::IllegalDataValue)
        );
        assert!(matches!(
            call(Request::ReadCoils(0, 2000)).await,
            Ok(Some(_))
        ));
        assert!(matches!(
            call(Request::ReadHoldingRegisters(0, 125)).await,
            Ok(Some(_))
        ));
        assert_eq!(
            call(Request::ReadInputRegisters(0, 0)).await,
            Err(ExceptionCode::IllegalDataValue)
        );
        assert_eq!(
            call(Request::ReadHoldingRegisters(u16::MAX, 2)).await,
            Err(ExceptionCode::IllegalDataAddress)
        );
        // An absent unit on RTU: no answer at all.
        assert_eq!(
            service
                .call(SlaveRequest {
                    slave: 2,
                    request: Request::ReadCoils(0, 1),
                })
                .await,
            Ok(None)
        );
    }
}
