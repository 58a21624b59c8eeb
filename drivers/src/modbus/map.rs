//! The register map as configuration, and the codec between registers and
//! values.
//!
//! A point says where a value lives (table, address with an explicit base
//! of 0 or 1 as the device manual counts), how it is encoded (type, byte
//! and word order, scale and offset) and how it is used (read or write,
//! poll group, deadband, whether it is a record). Everything the union of
//! EdgeX, Telegraf and Neuron register maps can say, checked at load with
//! errors that name the device and the point.

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::transport::TransportConfig;

/// Most registers in one read request (Modbus application protocol 1.1b3, FC 3/4).
pub const MAX_READ_REGISTERS: u16 = 125;
/// Most bits in one read request (FC 1/2).
pub const MAX_READ_BITS: u16 = 2000;
/// Most points one device may have: keeps a typo'd generator from eating memory.
pub const MAX_POINTS_PER_DEVICE: usize = 10_000;

/// The four Modbus tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Table {
    Coil,
    DiscreteInput,
    InputRegister,
    HoldingRegister,
}

impl Table {
    pub fn is_bits(self) -> bool {
        matches!(self, Table::Coil | Table::DiscreteInput)
    }
    pub fn is_writable(self) -> bool {
        matches!(self, Table::Coil | Table::HoldingRegister)
    }
}

/// How a value is encoded in its registers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DataType {
    /// A coil or discrete input, or one `bit` of a register.
    Bool,
    U16,
    I16,
    U32,
    I32,
    U64,
    I64,
    F32,
    F64,
    /// `registers` registers of text, two bytes each.
    String,
}

impl DataType {
    /// Registers a value occupies (`string` gives its own length).
    fn registers(self) -> Option<u16> {
        match self {
            DataType::Bool | DataType::U16 | DataType::I16 => Some(1),
            DataType::U32 | DataType::I32 | DataType::F32 => Some(2),
            DataType::U64 | DataType::I64 | DataType::F64 => Some(4),
            DataType::String => None,
        }
    }
}

/// Byte and word order, named by where the bytes of the big-endian value
/// `A B C D` end up on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Order {
    /// Big-endian words, big-endian bytes (the Modbus default).
    #[default]
    #[serde(rename = "ABCD")]
    Abcd,
    /// Little-endian words, little-endian bytes.
    #[serde(rename = "DCBA")]
    Dcba,
    /// Big-endian words, bytes swapped in each word.
    #[serde(rename = "BADC")]
    Badc,
    /// Little-endian words, big-endian bytes ("word swap").
    #[serde(rename = "CDAB")]
    Cdab,
}

impl Order {
    fn words_reversed(self) -> bool {
        matches!(self, Order::Dcba | Order::Cdab)
    }
    fn bytes_swapped(self) -> bool {
        matches!(self, Order::Dcba | Order::Badc)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Access {
    #[default]
    Read,
    #[serde(rename = "rw")]
    ReadWrite,
}

/// One value of a device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PointConfig {
    /// Unique per device; part of telemetry names (`modbus.{device}.{name}`).
    pub name: String,
    pub table: Table,
    /// The address as the device manual writes it, counted from the
    /// device's `address_base` (or the point's own).
    pub address: u32,
    /// Overrides the device's base for this point.
    #[serde(default)]
    pub address_base: Option<u8>,
    #[serde(rename = "type")]
    pub data_type: DataType,
    /// For `bool` in a register table: which bit, 0 = least significant.
    #[serde(default)]
    pub bit: Option<u8>,
    /// For `string`: how many registers.
    #[serde(default)]
    pub registers: Option<u16>,
    #[serde(default)]
    pub order: Order,
    /// value = raw × scale + offset.
    #[serde(default = "one")]
    pub scale: f64,
    #[serde(default)]
    pub offset: f64,
    #[serde(default)]
    pub unit: Option<String>,
    #[serde(default)]
    pub access: Access,
    /// The poll group that reads this point.
    #[serde(default = "default_group")]
    pub poll_group: String,
    /// A change smaller than this is not reported (telemetry, records).
    #[serde(default)]
    pub deadband: f64,
    /// Changes go through the outbox as records (e.g. a moisture result
    /// for a ticket), not only as telemetry.
    #[serde(default)]
    pub record: bool,
}

fn one() -> f64 {
    1.0
}
fn default_group() -> String {
    "default".to_owned()
}

/// A poll group: points read together at one interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PollGroup {
    pub name: String,
    pub interval_ms: u64,
}

/// One device (unit id) on a line or behind an endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceConfig {
    /// 1–64 of `A-Z a-z 0-9 - _`.
    pub id: String,
    /// Modbus unit id (slave address); 1–247 on a serial line.
    pub unit: u8,
    /// How the device manual counts addresses: 0 (protocol addresses) or
    /// 1 (register "1" is protocol address 0). No default: guessing it
    /// wrong reads the neighbouring register.
    pub address_base: u8,
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Further tries after a timeout or transport error, per request.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Quiet time after each request, for devices that need it.
    #[serde(default)]
    pub pause_between_ms: u64,
    /// Consecutive failed polls after which the device is skipped ...
    #[serde(default = "default_degrade_after_failures")]
    pub degrade_after_failures: u32,
    /// ... for this long, so it does not delay the others.
    #[serde(default = "default_degrade_ms")]
    pub degrade_ms: u64,
    #[serde(default = "default_max_registers")]
    pub max_registers_per_request: u16,
    #[serde(default = "default_max_bits")]
    pub max_bits_per_request: u16,
    /// Unused registers a merged request may read across to save a request.
    #[serde(default)]
    pub max_gap_registers: u16,
    /// Interval of the `default` group.
    #[serde(default = "default_poll_interval_ms")]
    pub poll_interval_ms: u64,
    #[serde(default)]
    pub poll_groups: Vec<PollGroup>,
    pub points: Vec<PointConfig>,
}

fn default_timeout_ms() -> u64 {
    1000
}
fn default_retries() -> u32 {
    1
}
fn default_degrade_after_failures() -> u32 {
    3
}
fn default_degrade_ms() -> u64 {
    30_000
}
fn default_max_registers() -> u16 {
    MAX_READ_REGISTERS
}
fn default_max_bits() -> u16 {
    MAX_READ_BITS
}
fn default_poll_interval_ms() -> u64 {
    1000
}

/// How Modbus frames look on a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Framing {
    /// Binary frames with a CRC-16: serial lines, and serial device servers
    /// in transparent mode over TCP ("RTU over TCP").
    Rtu,
    /// Hex text frames `:…LRC CR LF`, found on older analyzers and PLCs.
    Ascii,
    /// The MBAP header of Modbus TCP.
    Tcp,
}

/// A serial line or TCP endpoint with its devices; one task owns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LineConfig {
    pub id: String,
    pub transport: TransportConfig,
    /// Unset: `rtu` on a serial line, `tcp` on a TCP connection.
    #[serde(default)]
    pub framing: Option<Framing>,
    /// Quiet time after (re)connecting before the first request.
    #[serde(default)]
    pub pause_after_connect_ms: u64,
    pub devices: Vec<DeviceConfig>,
}

/// A register map that cannot work, with where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("modbus {place}: {problem}")]
pub struct MapError {
    /// `line "l1"`, `device "meter-1"` or `device "meter-1" point "power"`.
    pub place: String,
    pub problem: String,
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

impl PointConfig {
    /// Registers (or bits) the point covers.
    pub fn width(&self) -> u16 {
        if self.table.is_bits() {
            return 1;
        }
        self.data_type
            .registers()
            .unwrap_or_else(|| self.registers.unwrap_or(0))
    }

    /// The 0-based protocol address, given the device's base.
    pub fn protocol_address(&self, device_base: u8) -> Option<u16> {
        let base = u32::from(self.address_base.unwrap_or(device_base));
        self.address
            .checked_sub(base)
            .and_then(|a| u16::try_from(a).ok())
    }

    fn check(&self, device_base: u8) -> Result<(), String> {
        if !valid_id(&self.name) {
            return Err("name must be 1-64 of A-Z a-z 0-9 - _".into());
        }
        if let Some(base) = self.address_base
            && base > 1
        {
            return Err(format!("address_base must be 0 or 1, got {base}"));
        }
        let base = self.address_base.unwrap_or(device_base);
        let start = self
            .protocol_address(device_base)
            .ok_or_else(|| format!("address {} is below the address base {base}", self.address))?;
        match (self.table.is_bits(), self.data_type, self.bit) {
            (true, DataType::Bool, None) => {}
            (true, DataType::Bool, Some(_)) => {
                return Err("bit is only for a bool in a register".into());
            }
            (true, other, _) => {
                return Err(format!(
                    "a {:?} holds single bits: type must be bool, not {other:?}",
                    self.table
                ));
            }
            (false, DataType::Bool, None) => {
                return Err("a bool in a register needs bit = 0..15".into());
            }
            (false, DataType::Bool, Some(bit)) if bit > 15 => {
                return Err(format!("bit {bit} does not exist in a 16-bit register"));
            }
            (false, _, Some(_)) if self.data_type != DataType::Bool => {
                return Err("bit is only for type bool".into());
            }
            _ => {}
        }
        match (self.data_type, self.registers) {
            (DataType::String, None | Some(0)) => {
                return Err("a string needs registers = 1..125".into());
            }
            (DataType::String, Some(n)) if n > MAX_READ_REGISTERS => {
                return Err(format!("a string of {n} registers cannot be read at once"));
            }
            (DataType::String, _) => {}
            (_, Some(_)) => return Err("registers is only for type string".into()),
            _ => {}
        }
        let last = u32::from(start) + u32::from(self.width()) - 1;
        if last > 0xFFFF {
            return Err(format!(
                "covers protocol addresses {start}..={last}, beyond 65535"
            ));
        }
        let sixteen_bit = matches!(
            self.data_type,
            DataType::U16 | DataType::I16 | DataType::Bool
        );
        if sixteen_bit && self.order.words_reversed() && !self.table.is_bits() {
            return Err(format!(
                "order {:?} swaps words, but a {:?} has one register: use ABCD or BADC",
                self.order, self.data_type
            ));
        }
        if self.access == Access::ReadWrite && !self.table.is_writable() {
            return Err(format!("a {:?} cannot be written", self.table));
        }
        if !(self.scale.is_finite() && self.scale != 0.0 && self.offset.is_finite()) {
            return Err("scale must be a finite non-zero number, offset finite".into());
        }
        let plain = matches!(self.data_type, DataType::Bool | DataType::String);
        if plain && (self.scale != 1.0 || self.offset != 0.0) {
            return Err(format!(
                "scale and offset do not apply to {:?}",
                self.data_type
            ));
        }
        if !(self.deadband.is_finite() && self.deadband >= 0.0) {
            return Err("deadband must be 0 or more".into());
        }
        Ok(())
    }
}

impl DeviceConfig {
    /// The interval of each poll group, `default` included.
    pub fn groups(&self) -> BTreeMap<String, u64> {
        let mut groups = BTreeMap::from([("default".to_owned(), self.poll_interval_ms)]);
        for g in &self.poll_groups {
            groups.insert(g.name.clone(), g.interval_ms);
        }
        groups
    }

    pub fn point(&self, name: &str) -> Option<&PointConfig> {
        self.points.iter().find(|p| p.name == name)
    }

    /// Checks the device and its register map.
    pub fn validate(&self, serial: bool) -> Result<(), MapError> {
        let here = |problem: String| MapError {
            place: format!("device {:?}", self.id),
            problem,
        };
        if !valid_id(&self.id) {
            return Err(here("id must be 1-64 of A-Z a-z 0-9 - _".into()));
        }
        if serial && !(1..=247).contains(&self.unit) {
            return Err(here(format!(
                "unit {} is not a device address on a serial line (1..=247)",
                self.unit
            )));
        }
        if self.address_base > 1 {
            return Err(here(format!(
                "address_base must be 0 or 1, got {}",
                self.address_base
            )));
        }
        let limits = [
            ("timeout_ms", self.timeout_ms, 10, 60_000),
            ("retries", u64::from(self.retries), 0, 10),
            ("pause_between_ms", self.pause_between_ms, 0, 10_000),
            (
                "degrade_after_failures",
                u64::from(self.degrade_after_failures),
                1,
                1000,
            ),
            ("degrade_ms", self.degrade_ms, 100, 3_600_000),
            (
                "max_registers_per_request",
                u64::from(self.max_registers_per_request),
                1,
                u64::from(MAX_READ_REGISTERS),
            ),
            (
                "max_bits_per_request",
                u64::from(self.max_bits_per_request),
                1,
                u64::from(MAX_READ_BITS),
            ),
            (
                "max_gap_registers",
                u64::from(self.max_gap_registers),
                0,
                100,
            ),
            ("poll_interval_ms", self.poll_interval_ms, 10, 86_400_000),
        ];
        for (field, value, min, max) in limits {
            if !(min..=max).contains(&value) {
                return Err(here(format!("{field} must be {min}..={max}, got {value}")));
            }
        }
        let mut groups = HashSet::from(["default"]);
        for g in &self.poll_groups {
            if !valid_id(&g.name) || !groups.insert(g.name.as_str()) {
                return Err(here(format!("poll group {:?} is invalid or twice", g.name)));
            }
            if !(10..=86_400_000).contains(&g.interval_ms) {
                return Err(here(format!(
                    "poll group {:?}: interval_ms must be 10..=86400000",
                    g.name
                )));
            }
        }
        if self.points.len() > MAX_POINTS_PER_DEVICE {
            return Err(here(format!(
                "{} points, more than {MAX_POINTS_PER_DEVICE}",
                self.points.len()
            )));
        }
        let mut names = HashSet::new();
        for point in &self.points {
            let at = |problem: String| MapError {
                place: format!("device {:?} point {:?}", self.id, point.name),
                problem,
            };
            if !names.insert(point.name.as_str()) {
                return Err(at("the name is used twice".into()));
            }
            point.check(self.address_base).map_err(at)?;
            if !groups.contains(point.poll_group.as_str()) {
                return Err(at(format!(
                    "poll group {:?} is not defined",
                    point.poll_group
                )));
            }
        }
        self.check_overlaps()
    }

    /// Two points may share a register only as different bits of it.
    fn check_overlaps(&self) -> Result<(), MapError> {
        let mut spans: Vec<(Table, u32, u32, Option<u8>, &str)> = self
            .points
            .iter()
            .filter_map(|p| {
                let start = u32::from(p.protocol_address(self.address_base)?);
                Some((
                    p.table,
                    start,
                    start + u32::from(p.width()) - 1,
                    p.bit,
                    p.name.as_str(),
                ))
            })
            .collect();
        spans.sort();
        for pair in spans.windows(2) {
            let (a, b) = (&pair[0], &pair[1]);
            let same_register_bits =
                a.3.is_some() && b.3.is_some() && a.1 == b.1 && a.2 == a.1 && b.2 == b.1;
            if a.0 == b.0 && b.1 <= a.2 && !(same_register_bits && a.3 != b.3) {
                return Err(MapError {
                    place: format!("device {:?} point {:?}", self.id, b.4),
                    problem: format!(
                        "overlaps point {:?} in the {:?} table (protocol addresses {}..={} and {}..={})",
                        a.4, a.0, a.1, a.2, b.1, b.2
                    ),
                });
            }
        }
        Ok(())
    }
}

impl LineConfig {
    /// The framing in effect.
    pub fn framing(&self) -> Framing {
        self.framing.unwrap_or(match self.transport {
            TransportConfig::Serial { .. } => Framing::Rtu,
            TransportConfig::Tcp { .. } => Framing::Tcp,
        })
    }

    /// Checks the line and every device on it.
    pub fn validate(&self) -> Result<(), MapError> {
        let here = |problem: String| MapError {
            place: format!("line {:?}", self.id),
            problem,
        };
        if !valid_id(&self.id) {
            return Err(here("id must be 1-64 of A-Z a-z 0-9 - _".into()));
        }
        self.transport.validate().map_err(here)?;
        if matches!(self.transport, TransportConfig::Serial { .. })
            && self.framing == Some(Framing::Tcp)
        {
            return Err(here(
                "framing \"tcp\" (MBAP) needs a tcp transport; a serial line speaks rtu or ascii"
                    .into(),
            ));
        }
        if self.pause_after_connect_ms > 60_000 {
            return Err(here("pause_after_connect_ms must be at most 60000".into()));
        }
        if self.devices.is_empty() {
            return Err(here("has no devices".into()));
        }
        // RTU and ASCII address devices on a bus, whatever carries the frames.
        let bus = self.framing() != Framing::Tcp;
        let mut units = HashSet::new();
        for device in &self.devices {
            device.validate(bus)?;
            if !units.insert(device.unit) {
                return Err(here(format!("unit {} is used by two devices", device.unit)));
            }
        }
        Ok(())
    }
}

/// A decoded value.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Value {
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Text(String),
}

impl std::fmt::Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Value::Bool(b) => write!(f, "{b}"),
            Value::Int(i) => write!(f, "{i}"),
            Value::UInt(u) => write!(f, "{u}"),
            Value::Float(x) => write!(f, "{x}"),
            Value::Text(t) => write!(f, "{t:?}"),
        }
    }
}

impl Value {
    /// The number, for deadbands (`None` for text).
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Bool(b) => Some(f64::from(u8::from(*b))),
            Value::Int(i) => Some(*i as f64),
            Value::UInt(u) => Some(*u as f64),
            Value::Float(f) => Some(*f),
            Value::Text(_) => None,
        }
    }
}

/// Why registers do not make a value, or a value no registers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("point {point:?}: expected {expected} registers, got {got}")]
    Length {
        point: String,
        expected: usize,
        got: usize,
    },
    #[error("point {point:?}: {problem}")]
    Value { point: String, problem: String },
}

/// Registers in wire order → the big-endian bytes of the value.
fn to_big_endian(regs: &[u16], order: Order) -> Vec<u8> {
    let mut words: Vec<u16> = regs.to_vec();
    if order.words_reversed() {
        words.reverse();
    }
    words
        .iter()
        .flat_map(|w| {
            let w = if order.bytes_swapped() {
                w.swap_bytes()
            } else {
                *w
            };
            w.to_be_bytes()
        })
        .collect()
}

/// The big-endian bytes of a value → registers in wire order.
fn from_big_endian(bytes: &[u8], order: Order) -> Vec<u16> {
    let mut words: Vec<u16> = bytes
        .chunks(2)
        .map(|c| {
            let w = u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]);
            if order.bytes_swapped() {
                w.swap_bytes()
            } else {
                w
            }
        })
        .collect();
    if order.words_reversed() {
        words.reverse();
    }
    words
}

fn scaled(point: &PointConfig, raw: f64) -> f64 {
    let value = raw * point.scale + point.offset;
    // 121 × 0.1 is 12.100000000000001 in binary floating point; nobody's
    // register map is finer than a nanounit.
    let rounded = (value * 1e9).round() / 1e9;
    if rounded.is_finite() { rounded } else { value }
}

/// Decodes a point from the registers it covers (or one bit for coils and
/// discrete inputs: pass it as `0`/`1`).
pub fn decode(point: &PointConfig, regs: &[u16]) -> Result<Value, CodecError> {
    let expected = usize::from(point.width());
    if regs.len() != expected {
        return Err(CodecError::Length {
            point: point.name.clone(),
            expected,
            got: regs.len(),
        });
    }
    if point.table.is_bits() {
        return Ok(Value::Bool(regs[0] != 0));
    }
    let bytes = to_big_endian(regs, point.order);
    let plain = point.scale == 1.0 && point.offset == 0.0;
    let int = |v: i64| {
        if plain {
            Value::Int(v)
        } else {
            Value::Float(scaled(point, v as f64))
        }
    };
    let uint = |v: u64| {
        if plain {
            Value::UInt(v)
        } else {
            Value::Float(scaled(point, v as f64))
        }
    };
    let array = |n: usize| -> [u8; 8] {
        let mut out = [0u8; 8];
        out[8 - n..].copy_from_slice(&bytes[..n]);
        out
    };
    Ok(match point.data_type {
        DataType::Bool => {
            let bit = point.bit.unwrap_or(0);
            let word = u16::from_be_bytes([bytes[0], bytes[1]]);
            Value::Bool(word >> bit & 1 == 1)
        }
        DataType::U16 => uint(u64::from(u16::from_be_bytes([bytes[0], bytes[1]]))),
        DataType::I16 => int(i64::from(i16::from_be_bytes([bytes[0], bytes[1]]))),
        DataType::U32 => uint(u64::from_be_bytes(array(4))),
        DataType::I32 => int(i64::from(i32::from_be_bytes([
            bytes[0], bytes[1], bytes[2], bytes[3],
        ]))),
        DataType::U64 => uint(u64::from_be_bytes(array(8))),
        DataType::I64 => int(i64::from_be_bytes(array(8))),
        DataType::F32 => Value::Float(scaled(
            point,
            f64::from(f32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])),
        )),
        DataType::F64 => Value::Float(scaled(point, f64::from_be_bytes(array(8)))),
        DataType::String => {
            let text = String::from_utf8_lossy(&bytes);
            Value::Text(text.trim_end_matches(['\0', ' ']).to_owned())
        }
    })
}

/// Encodes a value to write (the inverse of [`decode`]): registers in wire
/// order, or one `0`/`1` for a coil. Refuses values the type cannot hold.
pub fn encode(point: &PointConfig, value: &Value) -> Result<Vec<u16>, CodecError> {
    let bad = |problem: String| CodecError::Value {
        point: point.name.clone(),
        problem,
    };
    if point.table.is_bits() || point.data_type == DataType::Bool {
        let Value::Bool(b) = value else {
            return Err(bad(format!("needs true or false, got {value}")));
        };
        if point.table.is_bits() {
            return Ok(vec![u16::from(*b)]);
        }
        // A bit of a register is written through a read-modify-write by the
        // caller; here the register with only that bit set or cleared.
        return Ok(vec![u16::from(*b) << point.bit.unwrap_or(0)]);
    }
    if let (DataType::String, Value::Text(text)) = (point.data_type, value) {
        let n = usize::from(point.width()) * 2;
        if text.len() > n {
            return Err(bad(format!(
                "text of {} bytes does not fit {n}",
                text.len()
            )));
        }
        let mut bytes = text.as_bytes().to_vec();
        bytes.resize(n, 0);
        return Ok(from_big_endian(&bytes, point.order));
    }
    let number = value
        .as_f64()
        .ok_or_else(|| bad(format!("needs a number, got {value}")))?;
    let raw = (number - point.offset) / point.scale;
    let plain = point.scale == 1.0 && point.offset == 0.0;
    let whole = || -> Result<i128, CodecError> {
        // Integers go through exactly: an f64 holds only 53 bits.
        match value {
            Value::Int(i) if plain => return Ok(i128::from(*i)),
            Value::UInt(u) if plain => return Ok(i128::from(*u)),
            _ => {}
        }
        let r = raw.round();
        if !r.is_finite() || (r - raw).abs() > 1e-6 * raw.abs().max(1.0) {
            return Err(bad(format!("{number} is not a whole raw value ({raw})")));
        }
        Ok(r as i128)
    };
    let in_range = |v: i128, min: i128, max: i128| {
        if (min..=max).contains(&v) {
            Ok(v)
        } else {
            Err(bad(format!("raw value {v} is outside {min}..={max}")))
        }
    };
    let bytes: Vec<u8> = match point.data_type {
        DataType::U16 => (in_range(whole()?, 0, i128::from(u16::MAX))? as u16)
            .to_be_bytes()
            .to_vec(),
        DataType::I16 => (in_range(whole()?, i128::from(i16::MIN), i128::from(i16::MAX))? as i16)
            .to_be_bytes()
            .to_vec(),
        DataType::U32 => (in_range(whole()?, 0, i128::from(u32::MAX))? as u32)
            .to_be_bytes()
            .to_vec(),
        DataType::I32 => (in_range(whole()?, i128::from(i32::MIN), i128::from(i32::MAX))? as i32)
            .to_be_bytes()
            .to_vec(),
        DataType::U64 => (in_range(whole()?, 0, i128::from(u64::MAX))? as u64)
            .to_be_bytes()
            .to_vec(),
        DataType::I64 => (in_range(whole()?, i128::from(i64::MIN), i128::from(i64::MAX))? as i64)
            .to_be_bytes()
            .to_vec(),
        DataType::F32 => {
            if raw.is_finite() && raw.abs() > f64::from(f32::MAX) {
                return Err(bad(format!("{raw} does not fit an f32")));
            }
            (raw as f32).to_be_bytes().to_vec()
        }
        DataType::F64 => raw.to_be_bytes().to_vec(),
        DataType::Bool | DataType::String => {
            return Err(bad(format!("needs text, got {value}")));
        }
    };
    Ok(from_big_endian(&bytes, point.order))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(toml_text: &str) -> PointConfig {
        toml::from_str(toml_text).unwrap()
    }

    fn device(points: &str) -> DeviceConfig {
        let text = format!("id = \"meter-1\"\nunit = 1\naddress_base = 1\n{points}");
        toml::from_str(&text).unwrap()
    }

    #[test]
    fn every_order_decodes_the_same_f32() {
        // 123.456 as f32 is 0x42F6E979: A=42 B=F6 C=E9 D=79.
        let cases = [
            ("ABCD", [0x42F6, 0xE979]),
            ("DCBA", [0x79E9, 0xF642]),
            ("BADC", [0xF642, 0x79E9]),
            ("CDAB", [0xE979, 0x42F6]),
        ];
        for (order, regs) in cases {
            let p = point(&format!(
                "name = \"t\"\ntable = \"holding_register\"\naddress = 1\ntype = \"f32\"\norder = \"{order}\""
            ));
            let Value::Float(v) = decode(&p, &regs).unwrap() else {
                panic!()
            };
            assert!((v - 123.456).abs() < 1e-4, "{order}: {v}");
            assert_eq!(
                encode(&p, &Value::Float(123.456)).unwrap(),
                regs.to_vec(),
                "{order}"
            );
        }
    }

    #[test]
    fn types_scale_bits_and_text_decode_as_documented() {
        let cases: &[(&str, &[u16], Value)] = &[
            ("type = \"u16\"", &[0xFFFF], Value::UInt(65535)),
            ("type = \"i16\"", &[0xFFFF], Value::Int(-1)),
            ("type = \"i32\"", &[0xFFFF, 0xFFFE], Value::Int(-2)),
            ("type = \"u64\"", &[0, 0, 1, 0], Value::UInt(65536)),
            (
                "type = \"i64\"\norder = \"CDAB\"",
                &[0xFFFF, 0xFFFF, 0xFFFF, 0xFFFF],
                Value::Int(-1),
            ),
            (
                "type = \"u16\"\nscale = 0.1\noffset = -40",
                &[650],
                Value::Float(25.0),
            ),
            ("type = \"bool\"\nbit = 3", &[0b1000], Value::Bool(true)),
            ("type = \"bool\"\nbit = 2", &[0b1000], Value::Bool(false)),
            (
                "type = \"string\"\nregisters = 3",
                &[0x4F53, 0x2D31, 0x0000],
                Value::Text("OS-1".into()),
            ),
            (
                "type = \"string\"\nregisters = 2\norder = \"BADC\"",
                &[0x534F, 0x312D],
                Value::Text("OS-1".into()),
            ),
        ];
        for (spec, regs, want) in cases {
            let p = point(&format!(
                "name = \"t\"\ntable = \"input_register\"\naddress = 0\n{spec}"
            ));
            let got = decode(&p, regs).unwrap();
            match (&got, want) {
                (Value::Float(a), Value::Float(b)) => {
                    assert!((a - b).abs() < 1e-9, "{spec}: {got:?}")
                }
                _ => assert_eq!(&got, want, "{spec}"),
            }
        }
    }

    #[test]
    fn bad_maps_are_refused_naming_device_and_point() {
        let cases = [
            (
                "[[points]]\nname = \"a\"\ntable = \"coil\"\naddress = 1\ntype = \"u16\"",
                "point \"a\": a Coil holds single bits",
            ),
            (
                "[[points]]\nname = \"a\"\ntable = \"holding_register\"\naddress = 1\ntype = \"bool\"",
                "needs bit",
            ),
            (
                "[[points]]\nname = \"a\"\ntable = \"holding_register\"\naddress = 1\ntype = \"bool\"\nbit = 16",
                "bit 16",
            ),
            (
                "[[points]]\nname = \"a\"\ntable = \"holding_register\"\naddress = 0\ntype = \"u16\"",
                "below the address base 1",
            ),
            (
                "[[points]]\nname = \"a\"\ntable = \"holding_register\"\naddress = 65536\ntype = \"u32\"",
                "beyond 65535",
            ),
            (
                "[[points]]\nname = \"a\"\ntable = \"input_register\"\naddress = 1\ntype = \"u16\"\naccess = \"rw\"",
                "cannot be written",
            ),
            (
                "[[points]]\nname = \"a\"\ntable = \"input_register\"\naddress = 1\ntype = \"string\"",
                "needs registers",
            ),
            (
                "[[points]]\nname = \"a\"\ntable = \"input_register\"\naddress = 1\ntype = \"u16\"\norder = \"CDAB\"",
                "swaps words",
            ),
            (
                "[[points]]\nname = \"a\"\ntable = \"input_register\"\naddress = 1\ntype = \"u16\"\npoll_group = \"fast\"",
                "poll group \"fast\" is not defined",
            ),
            (
                "[[points]]\nname = \"a\"\ntable = \"input_register\"\naddress = 1\ntype = \"u16\"\nscale = 0",
                "scale",
            ),
            (
                "[[points]]\nname = \"a\"\ntable = \"holding_register\"\naddress = 10\ntype = \"f32\"\n[[points]]\nname = \"b\"\ntable = \"holding_register\"\naddress = 11\ntype = \"u16\"",
                "point \"b\": overlaps point \"a\"",
            ),
            (
                "[[points]]\nname = \"a\"\ntable = \"holding_register\"\naddress = 3\ntype = \"bool\"\nbit = 1\n[[points]]\nname = \"b\"\ntable = \"holding_register\"\naddress = 3\ntype = \"bool\"\nbit = 1",
                "overlaps",
            ),
            (
                "[[points]]\nname = \"a\"\ntable = \"coil\"\naddress = 1\ntype = \"bool\"\n[[points]]\nname = \"a\"\ntable = \"coil\"\naddress = 2\ntype = \"bool\"",
                "used twice",
            ),
        ];
        for (points, needle) in cases {
            let err = device(points).validate(true).unwrap_err().to_string();
            assert!(err.contains("device \"meter-1\""), "{points}: {err}");
            assert!(err.contains(needle), "{points}: {err}");
        }
        // Different bits of one register, and the same address in two
        // tables, are fine.
        let ok = device(
            "[[points]]\nname = \"a\"\ntable = \"holding_register\"\naddress = 3\ntype = \"bool\"\nbit = 0\n\
             [[points]]\nname = \"b\"\ntable = \"holding_register\"\naddress = 3\ntype = \"bool\"\nbit = 1\n\
             [[points]]\nname = \"c\"\ntable = \"input_register\"\naddress = 3\ntype = \"u16\"",
        );
        ok.validate(true).unwrap();
        let mut unit0 = ok.clone();
        unit0.unit = 0;
        assert!(
            unit0
                .validate(true)
                .unwrap_err()
                .to_string()
                .contains("unit 0")
        );
        unit0.validate(false).unwrap();
    }

    #[test]
    fn framing_follows_the_transport_unless_set() {
        let line = |transport: &str, framing: &str| -> LineConfig {
            toml::from_str(&format!(
                "id = \"l\"\n{framing}\n[transport]\n{transport}\n\
                 [[devices]]\nid = \"d\"\nunit = 0\naddress_base = 0\n\
                 [[devices.points]]\nname = \"p\"\ntable = \"coil\"\naddress = 0\ntype = \"bool\""
            ))
            .unwrap()
        };
        let serial = "kind = \"serial\"\npath = \"/dev/ttyUSB0\"";
        let tcp = "kind = \"tcp\"\naddress = \"10.0.0.9:4001\"";
        assert_eq!(line(serial, "").framing(), Framing::Rtu);
        assert_eq!(line(tcp, "").framing(), Framing::Tcp);
        assert_eq!(line(tcp, "framing = \"ascii\"").framing(), Framing::Ascii);
        let wrong = line(serial, "framing = \"tcp\"").validate().unwrap_err();
        assert!(
            wrong.to_string().contains("needs a tcp transport"),
            "{wrong}"
        );
        // RTU over TCP is a bus: unit 0 (broadcast) is no device address there.
        let bus = line(tcp, "framing = \"rtu\"").validate().unwrap_err();
        assert!(bus.to_string().contains("unit 0"), "{bus}");
        line(tcp, "").validate().unwrap();
    }

    #[test]
    fn writes_refuse_values_the_type_cannot_hold() {
        let p = point(
            "name = \"sp\"\ntable = \"holding_register\"\naddress = 0\ntype = \"u16\"\nscale = 0.5",
        );
        assert_eq!(encode(&p, &Value::Float(10.0)).unwrap(), vec![20]);
        let err = encode(&p, &Value::Float(-1.0)).unwrap_err().to_string();
        assert!(err.contains("outside 0..=65535"), "{err}");
        let err = encode(&p, &Value::Float(0.25)).unwrap_err().to_string();
        assert!(err.contains("not a whole raw value"), "{err}");
        let err = encode(&p, &Value::Text("x".into()))
            .unwrap_err()
            .to_string();
        assert!(err.contains("needs a number"), "{err}");
    }

    proptest::proptest! {
        #[test]
        fn integers_round_trip_in_every_order(v in proptest::prelude::any::<i64>(), order in 0usize..4, ty in 0usize..6) {
            let order = ["ABCD", "DCBA", "BADC", "CDAB"][order];
            let (ty, v) = match ty {
                0 => ("i64", v),
                1 => ("u32", v.rem_euclid(1 << 32)),
                2 => ("i32", v % (1 << 31)),
                3 => ("u64", v.abs()),
                4 => ("u16", v.rem_euclid(1 << 16)),
                _ => ("i16", v % (1 << 15)),
            };
            let order = if matches!(ty, "u16" | "i16") && matches!(order, "DCBA" | "CDAB") { "BADC" } else { order };
            let p = point(&format!("name = \"t\"\ntable = \"holding_register\"\naddress = 0\ntype = \"{ty}\"\norder = \"{order}\""));
            let regs = encode(&p, &Value::Int(v)).unwrap();
            let back = decode(&p, &regs).unwrap();
            let exact = match back { Value::Int(i) => i128::from(i), Value::UInt(u) => i128::from(u), other => panic!("{other:?}") };
            proptest::prop_assert_eq!(exact, i128::from(v));
        }

        #[test]
        fn decoding_arbitrary_registers_never_panics(regs in proptest::collection::vec(proptest::prelude::any::<u16>(), 0..6), ty in 0usize..9) {
            let ty = ["u16", "i16", "u32", "i32", "u64", "i64", "f32", "f64", "string"][ty];
            let extra = if ty == "string" { "\nregisters = 2" } else { "" };
            let p = point(&format!("name = \"t\"\ntable = \"input_register\"\naddress = 0\ntype = \"{ty}\"{extra}"));
            if let Ok(value) = decode(&p, &regs) {
                proptest::prop_assert_eq!(regs.len(), usize::from(p.width()));
                drop(value);
            }
        }
    }
}
