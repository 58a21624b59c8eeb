//! A simulated terminal on a TCP port, like an IND terminal's port 4305, a SysTec terminal's
//! port 1234, or a serial device server.

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

use crate::sim::mtsics::MtSicsTerminal;
use crate::sim::terminal::{Faults, TerminalFactory, serve_terminal};
use crate::sim::truck::TruckScale;

/// Connections served at once; further ones are closed right away.
pub const MAX_TCP_CONNECTIONS: usize = 8;

/// Pause after a failed accept (e.g. out of file descriptors) so the loop does not spin.
const ACCEPT_RETRY_MS: u64 = 100;

/// Listens on `addr` (e.g. "127.0.0.1:0") and serves MT-SICS on every connection. Aborting
/// the returned task closes the listener and every open connection, which is how tests cut
/// the line.
pub async fn spawn_tcp(
    addr: &str,
    scale: TruckScale,
    faults: Arc<Mutex<Faults>>,
) -> io::Result<(SocketAddr, JoinHandle<()>)> {
    let factory: TerminalFactory = Arc::new(move || Box::new(MtSicsTerminal::new(scale.clone())));
    spawn_tcp_terminal(addr, factory, faults).await
}

/// Like `spawn_tcp`, serving the terminals `factory` builds (one per connection).
pub async fn spawn_tcp_terminal(
    addr: &str,
    factory: TerminalFactory,
    faults: Arc<Mutex<Faults>>,
) -> io::Result<(SocketAddr, JoinHandle<()>)> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let task = tokio::spawn(async move {
        // Owned here so that aborting this task drops (and aborts) every connection too.
        let mut connections = JoinSet::new();
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        if connections.len() >= MAX_TCP_CONNECTIONS {
                            tracing::warn!(%peer, "too many simulator connections, closing");
                            continue;
                        }
                        if let Err(error) = stream.set_nodelay(true) {
                            tracing::debug!(%error, "set_nodelay failed");
                        }
                        let terminal = factory();
                        let faults = Arc::clone(&faults);
                        connections.spawn(async move {
                            if let Err(error) = serve_terminal(stream, terminal, faults).await {
                                tracing::debug!(%peer, %error, "simulator connection ended");
                            }
                        });
                    }
                    Err(error) => {
                        tracing::warn!(%error, "simulator accept failed");
                        tokio::time::sleep(Duration::from_millis(ACCEPT_RETRY_MS)).await;
                    }
                },
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
        }
    });
    Ok((local, task))
}
