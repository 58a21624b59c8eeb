//! `PtyScale`: a simulated terminal (MT-SICS by default, any protocol via a
//! `TerminalFactory`) on a real pseudo-terminal, so drivers can be tested through the serial
//! transport exactly as they would open `/dev/ttyUSB0`.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_serial::{SerialPort, SerialStream};

use crate::sim::mtsics::MtSicsTerminal;
use crate::sim::terminal::{Faults, TerminalFactory, serve_terminal};
use crate::sim::truck::TruckScale;

/// Pause before serving again after the master side failed (e.g. EIO while no slave is open).
const RETRY_AFTER_ERROR_MS: u64 = 50;

/// A simulated terminal on a real pseudo-terminal: creates a pty pair, keeps the slave open
/// (non-exclusive) so the master does not see EIO before a client opens it, serves MT-SICS on
/// the master, and exposes the slave's path (e.g. /dev/pts/7) that a driver opens like any
/// serial device. Dropping the PtyScale stops the task.
pub struct PtyScale {
    path: PathBuf,
    task: JoinHandle<()>,
    /// Held only to keep the slave side open between client connections.
    _slave: SerialStream,
}

impl std::fmt::Debug for PtyScale {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PtyScale")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl PtyScale {
    /// Creates the pty pair and serves MT-SICS; must be called inside a tokio runtime.
    pub fn spawn(scale: TruckScale, faults: Arc<Mutex<Faults>>) -> io::Result<PtyScale> {
        let factory: TerminalFactory =
            Arc::new(move || Box::new(MtSicsTerminal::new(scale.clone())));
        Self::spawn_terminal(factory, faults)
    }

    /// Creates the pty pair and serves the terminals `factory` builds (one per session).
    pub fn spawn_terminal(
        factory: TerminalFactory,
        faults: Arc<Mutex<Faults>>,
    ) -> io::Result<PtyScale> {
        let (mut master, slave) = SerialStream::pair().map_err(io::Error::from)?;
        let path = slave
            .name()
            .map(PathBuf::from)
            .ok_or_else(|| io::Error::other("pty slave has no path"))?;
        let task = tokio::spawn(async move {
            loop {
                match serve_terminal(&mut master, factory(), Arc::clone(&faults)).await {
                    // The master only sees EOF/EIO when every slave fd is closed; ours stays
                    // open, but if it happens anyway, wait for a client to open the slave again.
                    Ok(()) => tracing::debug!("pty master reached end of stream"),
                    Err(error) => tracing::debug!(%error, "pty master failed, retrying"),
                }
                tokio::time::sleep(Duration::from_millis(RETRY_AFTER_ERROR_MS)).await;
            }
        });
        Ok(PtyScale {
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

impl Drop for PtyScale {
    fn drop(&mut self) {
        self.task.abort();
    }
}
