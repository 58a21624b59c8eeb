//! Byte transports for device drivers: opening a serial port or a TCP connection from a
//! `TransportConfig` and handing back a boxed `AsyncRead + AsyncWrite` stream.
//!
//! Drivers never see which transport they run on; tests substitute in-memory pipes.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_serial::{SerialPort, SerialPortBuilderExt};

/// Serial parity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Parity {
    /// No parity bit.
    #[default]
    None,
    /// Even parity.
    Even,
    /// Odd parity.
    Odd,
}

/// Serial flow control.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FlowControl {
    /// No handshake (the MT-SICS default).
    #[default]
    None,
    /// XON/XOFF.
    Software,
    /// RTS/CTS.
    Hardware,
}

fn default_baud() -> u32 {
    9600
}

fn default_data_bits() -> u8 {
    8
}

fn default_stop_bits() -> u8 {
    1
}

fn default_connect_timeout_ms() -> u64 {
    3000
}

/// Where a device is attached.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum TransportConfig {
    /// A serial port (RS-232/RS-485 adapter, or a pty in tests).
    Serial {
        /// Device path, e.g. `/dev/ttyUSB0`.
        path: PathBuf,
        /// Line speed in bit/s.
        #[serde(default = "default_baud")]
        baud: u32,
        /// 5 to 8.
        #[serde(default = "default_data_bits")]
        data_bits: u8,
        /// Parity.
        #[serde(default)]
        parity: Parity,
        /// 1 or 2.
        #[serde(default = "default_stop_bits")]
        stop_bits: u8,
        /// Handshake.
        #[serde(default)]
        flow_control: FlowControl,
    },
    /// A TCP connection (terminal network port or serial device server).
    Tcp {
        /// `host:port`.
        address: String,
        /// Give up connecting after this long.
        #[serde(default = "default_connect_timeout_ms")]
        connect_timeout_ms: u64,
    },
}

impl TransportConfig {
    /// Checks value ranges: data bits 5..=8, stop bits 1 or 2, baud > 0, non-empty path and
    /// address, connect timeout > 0.
    pub fn validate(&self) -> Result<(), String> {
        match self {
            TransportConfig::Serial {
                path,
                baud,
                data_bits,
                stop_bits,
                ..
            } => {
                if path.as_os_str().is_empty() {
                    return Err("serial path is empty".to_owned());
                }
                if *baud == 0 {
                    return Err("baud must be greater than 0".to_owned());
                }
                if !(5..=8).contains(data_bits) {
                    return Err(format!("data_bits must be 5 to 8, got {data_bits}"));
                }
                if !matches!(stop_bits, 1 | 2) {
                    return Err(format!("stop_bits must be 1 or 2, got {stop_bits}"));
                }
                Ok(())
            }
            TransportConfig::Tcp {
                address,
                connect_timeout_ms,
            } => {
                if address.trim().is_empty() {
                    return Err("tcp address is empty".to_owned());
                }
                if *connect_timeout_ms == 0 {
                    return Err("connect_timeout_ms must be greater than 0".to_owned());
                }
                Ok(())
            }
        }
    }

    /// A short human-readable description for logs, e.g. `serial /dev/ttyUSB0 9600 8N1`.
    pub fn describe(&self) -> String {
        match self {
            TransportConfig::Serial {
                path,
                baud,
                data_bits,
                parity,
                stop_bits,
                flow_control,
            } => {
                let parity = match parity {
                    Parity::None => 'N',
                    Parity::Even => 'E',
                    Parity::Odd => 'O',
                };
                let flow = match flow_control {
                    FlowControl::None => "",
                    FlowControl::Software => " xon/xoff",
                    FlowControl::Hardware => " rts/cts",
                };
                format!(
                    "serial {} {baud} {data_bits}{parity}{stop_bits}{flow}",
                    path.display()
                )
            }
            TransportConfig::Tcp { address, .. } => format!("tcp {address}"),
        }
    }
}

/// A bidirectional byte stream a driver can run on.
pub trait AsyncReadWrite: AsyncRead + AsyncWrite + Unpin + Send {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> AsyncReadWrite for T {}

/// A boxed transport stream.
pub type BoxedIo = Box<dyn AsyncReadWrite>;

fn invalid_input(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message)
}

/// Opens the transport described by `cfg`.
pub async fn connect(cfg: &TransportConfig) -> io::Result<BoxedIo> {
    cfg.validate().map_err(invalid_input)?;
    match cfg {
        TransportConfig::Serial {
            path,
            baud,
            data_bits,
            parity,
            stop_bits,
            flow_control,
        } => {
            let data_bits = match data_bits {
                5 => tokio_serial::DataBits::Five,
                6 => tokio_serial::DataBits::Six,
                7 => tokio_serial::DataBits::Seven,
                _ => tokio_serial::DataBits::Eight,
            };
            let parity = match parity {
                Parity::None => tokio_serial::Parity::None,
                Parity::Even => tokio_serial::Parity::Even,
                Parity::Odd => tokio_serial::Parity::Odd,
            };
            let stop_bits = match stop_bits {
                2 => tokio_serial::StopBits::Two,
                _ => tokio_serial::StopBits::One,
            };
            let flow_control = match flow_control {
                FlowControl::None => tokio_serial::FlowControl::None,
                FlowControl::Software => tokio_serial::FlowControl::Software,
                FlowControl::Hardware => tokio_serial::FlowControl::Hardware,
            };
            let port = tokio_serial::new(path.to_string_lossy(), *baud)
                .data_bits(data_bits)
                .parity(parity)
                .stop_bits(stop_bits)
                .flow_control(flow_control)
                .open_native_async()
                .map_err(io::Error::from)?;
            // Bytes queued before we opened the port answer nobody's command; flush them so
            // they are not taken as replies.
            if let Err(error) = port.clear(tokio_serial::ClearBuffer::All) {
                tracing::debug!(%error, path = %path.display(), "could not flush serial buffers");
            }
            Ok(Box::new(port))
        }
        TransportConfig::Tcp {
            address,
            connect_timeout_ms,
        } => {
            let timeout = Duration::from_millis(*connect_timeout_ms);
            let stream = tokio::time::timeout(timeout, tokio::net::TcpStream::connect(address))
                .await
                .map_err(|_| {
                    io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("connecting to {address} took longer than {connect_timeout_ms} ms"),
                    )
                })??;
            // Commands are tiny and latency-bound; never let Nagle hold them back.
            stream.set_nodelay(true)?;
            Ok(Box::new(stream))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serial_defaults_apply() {
        let cfg: TransportConfig =
            serde_json::from_str(r#"{"kind":"serial","path":"/dev/ttyUSB0"}"#).unwrap();
        assert_eq!(
            cfg,
            TransportConfig::Serial {
                path: PathBuf::from("/dev/ttyUSB0"),
                baud: 9600,
                data_bits: 8,
                parity: Parity::None,
                stop_bits: 1,
                flow_control: FlowControl::None,
            }
        );
        assert_eq!(cfg.describe(), "serial /dev/ttyUSB0 9600 8N1");
        cfg.validate().unwrap();
    }

    #[test]
    fn tcp_from_toml() {
        let cfg: TransportConfig =
            toml::from_str("kind = \"tcp\"\naddress = \"10.0.0.5:4305\"\n").unwrap();
        assert_eq!(
            cfg,
            TransportConfig::Tcp {
                address: "10.0.0.5:4305".to_owned(),
                connect_timeout_ms: 3000
            }
        );
        assert_eq!(cfg.describe(), "tcp 10.0.0.5:4305");
    }

    #[test]
    fn unknown_fields_and_kinds_are_rejected() {
        assert!(
            serde_json::from_str::<TransportConfig>(r#"{"kind":"tcp","address":"a:1","bogus":1}"#)
                .is_err()
        );
        assert!(serde_json::from_str::<TransportConfig>(r#"{"kind":"usb"}"#).is_err());
        assert!(
            serde_json::from_str::<TransportConfig>(
                r#"{"kind":"serial","path":"/dev/x","parity":"mark"}"#
            )
            .is_err()
        );
    }

    #[test]
    fn validate_checks_ranges() {
        let serial = |baud, data_bits, stop_bits| TransportConfig::Serial {
            path: PathBuf::from("/dev/ttyS0"),
            baud,
            data_bits,
            parity: Parity::Even,
            stop_bits,
            flow_control: FlowControl::Hardware,
        };
        serial(19_200, 7, 2).validate().unwrap();
        assert_eq!(
            serial(19_200, 7, 2).describe(),
            "serial /dev/ttyS0 19200 7E2 rts/cts"
        );
        assert!(serial(0, 8, 1).validate().is_err());
        assert!(serial(9600, 4, 1).validate().is_err());
        assert!(serial(9600, 9, 1).validate().is_err());
        assert!(serial(9600, 8, 3).validate().is_err());
        let tcp = TransportConfig::Tcp {
            address: " ".to_owned(),
            connect_timeout_ms: 3000,
        };
        assert!(tcp.validate().is_err());
    }

    #[tokio::test]
    async fn connect_refuses_invalid_config_and_missing_device() {
        let bad = TransportConfig::Tcp {
            address: String::new(),
            connect_timeout_ms: 100,
        };
        let error = connect(&bad).await.err().unwrap();
        assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
        let missing = TransportConfig::Serial {
            path: PathBuf::from("/dev/valeo-no-such-port"),
            baud: 9600,
            data_bits: 8,
            parity: Parity::None,
            stop_bits: 1,
            flow_control: FlowControl::None,
        };
        assert!(connect(&missing).await.is_err());
    }
}
