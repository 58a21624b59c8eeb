//! A fault-injecting TCP proxy on loopback: sits between an edge agent and
//! its broker and, on command, passes traffic, delays it, swallows it (a
//! blackhole: the connection looks alive but nothing arrives), or resets
//! every connection. It counts the faults it actually injected, so a test
//! can check that its chaos happened.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// What the proxy does to traffic right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Pass,
    /// Every chunk waits this long before it is forwarded.
    Delay(Duration),
    /// Chunks are read and dropped in both directions.
    Blackhole,
}

/// Faults that took effect (not just requested).
#[derive(Debug, Default)]
pub struct FaultCounts {
    pub chunks_delayed: AtomicU64,
    pub chunks_dropped: AtomicU64,
    pub connections_reset: AtomicU64,
    pub connections_accepted: AtomicU64,
}

/// Largest chunk moved at once.
const CHUNK_BYTES: usize = 16 * 1024;

/// A running proxy; stops when dropped.
#[derive(Debug)]
pub struct FaultProxy {
    pub port: u16,
    mode: watch::Sender<Mode>,
    /// Bumped to reset every open connection.
    generation: watch::Sender<u64>,
    pub counts: Arc<FaultCounts>,
    task: tokio::task::JoinHandle<()>,
    upstream: Arc<Mutex<u16>>,
}

impl FaultProxy {
    /// Listens on a free loopback port and forwards to `127.0.0.1:upstream_port`.
    pub async fn start(upstream_port: u16) -> std::io::Result<FaultProxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let (mode, mode_rx) = watch::channel(Mode::Pass);
        let (generation, generation_rx) = watch::channel(0u64);
        let counts = Arc::new(FaultCounts::default());
        let upstream = Arc::new(Mutex::new(upstream_port));
        let task = tokio::spawn(accept_loop(
            listener,
            Arc::clone(&upstream),
            mode_rx,
            generation_rx,
            Arc::clone(&counts),
        ));
        Ok(FaultProxy {
            port,
            mode,
            generation,
            counts,
            task,
            upstream,
        })
    }

    pub fn set_mode(&self, mode: Mode) {
        self.mode.send_replace(mode);
    }

    /// Resets (RST) every open connection; new ones are accepted as usual.
    pub fn reset_all(&self) {
        self.generation.send_modify(|g| *g += 1);
    }

    /// Points new connections at another upstream port.
    pub fn set_upstream(&self, port: u16) {
        *self.upstream.lock().unwrap_or_else(|p| p.into_inner()) = port;
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
        self.reset_all();
    }
}

async fn accept_loop(
    listener: TcpListener,
    upstream: Arc<Mutex<u16>>,
    mode: watch::Receiver<Mode>,
    generation: watch::Receiver<u64>,
    counts: Arc<FaultCounts>,
) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        counts.connections_accepted.fetch_add(1, Ordering::Relaxed);
        let port = *upstream.lock().unwrap_or_else(|p| p.into_inner());
        let (mode, generation, counts) = (mode.clone(), generation.clone(), Arc::clone(&counts));
        tokio::spawn(async move {
            // A refused upstream just closes the client, like a dead broker.
            if let Ok(server) = TcpStream::connect(("127.0.0.1", port)).await {
                splice(client, server, mode, generation, counts).await;
            }
        });
    }
}

async fn splice(
    mut client: TcpStream,
    mut server: TcpStream,
    mode: watch::Receiver<Mode>,
    mut generation: watch::Receiver<u64>,
    counts: Arc<FaultCounts>,
) {
    client.set_nodelay(true).ok();
    server.set_nodelay(true).ok();
    generation.borrow_and_update();
    let reset = {
        let (client_read, client_write) = client.split();
        let (server_read, server_write) = server.split();
        let up = pump(client_read, server_write, mode.clone(), Arc::clone(&counts));
        let down = pump(server_read, client_write, mode, Arc::clone(&counts));
        tokio::select! {
            () = up => false,
            () = down => false,
            _ = generation.changed() => true,
        }
    };
    if reset {
        counts.connections_reset.fetch_add(1, Ordering::Relaxed);
        for stream in [&client, &server] {
            #[allow(
                deprecated,
                reason = "linger 0 does not block; it makes the close an RST, the fault we inject"
            )]
            stream.set_linger(Some(Duration::ZERO)).ok();
        }
    }
    // Dropping both sockets closes them (with RST after a reset).
}

async fn pump(
    mut from: tokio::net::tcp::ReadHalf<'_>,
    mut to: tokio::net::tcp::WriteHalf<'_>,
    mode: watch::Receiver<Mode>,
    counts: Arc<FaultCounts>,
) {
    let mut buf = vec![0u8; CHUNK_BYTES];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let current = *mode.borrow();
        match current {
            Mode::Pass => {}
            Mode::Delay(delay) => {
                counts.chunks_delayed.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(delay).await;
            }
            Mode::Blackhole => {
                counts.chunks_dropped.fetch_add(1, Ordering::Relaxed);
                continue;
            }
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
