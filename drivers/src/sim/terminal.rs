//! The device side shared by every simulated terminal: `Terminal` is what a protocol
//! simulator implements (command framing, replies, stream frames), `serve_terminal` runs one
//! on any byte stream, and `Faults` injects line faults at runtime: garbage bytes before
//! replies, dropped bytes, a wrong checksum, silence, and a disconnect.

use std::io;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::{Instant, MissedTickBehavior};

use crate::scale::framing::{FrameSplitter, Framing, RawFrame};
use crate::sim::truck::TruckScale;

/// How long a command that needs stability waits for it before the terminal gives up;
/// below the driver's default response timeout (2000 ms) so the refusal arrives in time.
pub const STABLE_WAIT_MS: u64 = 1500;

/// How often stability is checked while a command waits.
const STABLE_CHECK_MS: u64 = 50;

/// Interval of continuous output.
pub const STREAM_INTERVAL_MS: u64 = 100;

/// Command frames longer than this are refused.
pub const MAX_COMMAND_BYTES: usize = 64;

/// The garbage sent before replies when `Faults::garbage_before_reply` is set: binary noise
/// like a baud-rate mismatch produces, terminated so the reply after it stays intact.
pub const GARBAGE_LINE: &[u8] = b"\x00\xfe#~\xff?x\x13\r\n";

/// Faults to inject, settable at runtime through the shared `Arc<Mutex<Faults>>`.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Send a garbage line before every reply.
    pub garbage_before_reply: bool,
    /// Read commands but never answer.
    pub silent: bool,
    /// Drop one byte from the middle of every reply.
    pub drop_byte: bool,
    /// Send replies with a wrong check byte (protocols with a checksum/BCC only).
    pub wrong_checksum: bool,
    /// Close the connection at the next reply (then clears itself).
    pub disconnect: bool,
}

fn lock(faults: &Mutex<Faults>) -> std::sync::MutexGuard<'_, Faults> {
    faults.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One simulated terminal speaking one protocol.
pub trait Terminal: Send + Sync {
    /// How commands are framed; None for terminals that take no commands.
    fn command_framing(&self) -> Option<Framing>;

    /// The scale a command must wait for stability on before it is answered, if any.
    fn waits_for(&self, command: &[u8]) -> Option<TruckScale> {
        let _ = command;
        None
    }

    /// The reply to one command frame (empty = no reply).
    fn respond(&mut self, command: &RawFrame) -> Vec<u8>;

    /// The reply to a command frame that could not be split off (too long).
    fn on_bad_command(&mut self) -> Vec<u8> {
        Vec::new()
    }

    /// Whether continuous output is on.
    fn streaming(&self) -> bool {
        false
    }

    /// The next frame of continuous output.
    fn stream_frame(&mut self) -> Vec<u8> {
        Vec::new()
    }

    /// Makes the check byte of `reply` wrong; no-op for protocols without one.
    fn corrupt_checksum(&self, reply: &mut Vec<u8>) {
        let _ = reply;
    }
}

/// Builds a fresh terminal per connection (state such as a running stream is per connection;
/// weights, tare and alibi memory live in the shared `TruckScale`).
pub type TerminalFactory = Arc<dyn Fn() -> Box<dyn Terminal> + Send + Sync>;

async fn send<T: AsyncWrite + Unpin>(
    io: &mut T,
    terminal: &dyn Terminal,
    mut reply: Vec<u8>,
    faults: &Mutex<Faults>,
) -> io::Result<()> {
    if reply.is_empty() {
        return Ok(());
    }
    let current = {
        let mut guard = lock(faults);
        let current = guard.clone();
        guard.disconnect = false;
        current
    };
    if current.disconnect {
        return Err(io::Error::new(
            io::ErrorKind::ConnectionAborted,
            "simulated disconnect",
        ));
    }
    if current.silent {
        return Ok(());
    }
    if current.wrong_checksum {
        terminal.corrupt_checksum(&mut reply);
    }
    if current.drop_byte && reply.len() > 2 {
        reply.remove(reply.len() / 2);
    }
    if current.garbage_before_reply {
        io.write_all(GARBAGE_LINE).await?;
    }
    io.write_all(&reply).await?;
    io.flush().await
}

async fn wait_for_stability(scale: &TruckScale) {
    let deadline = Instant::now() + Duration::from_millis(STABLE_WAIT_MS);
    loop {
        let sample = scale.sample();
        if sample.stable || sample.overload || Instant::now() >= deadline {
            return;
        }
        tokio::time::sleep(Duration::from_millis(STABLE_CHECK_MS)).await;
    }
}

enum Event {
    Read(io::Result<usize>),
    StreamTick,
}

/// Serves `terminal` on any byte stream until the peer closes it (Ok) or a simulated
/// disconnect or I/O error ends it (Err).
pub async fn serve_terminal<T: AsyncRead + AsyncWrite + Unpin>(
    mut io: T,
    mut terminal: Box<dyn Terminal>,
    faults: Arc<Mutex<Faults>>,
) -> io::Result<()> {
    let mut buf = BytesMut::with_capacity(MAX_COMMAND_BYTES);
    let mut splitter = terminal.command_framing().map(FrameSplitter::new);
    let mut stream_tick = tokio::time::interval(Duration::from_millis(STREAM_INTERVAL_MS));
    stream_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut was_streaming = terminal.streaming();
    loop {
        if let Some(splitter) = splitter.as_mut() {
            match splitter.next_frame(&mut buf) {
                Ok(Some(command)) => {
                    if let Some(scale) = terminal.waits_for(command.body()) {
                        wait_for_stability(&scale).await;
                    }
                    let reply = terminal.respond(&command);
                    if terminal.streaming() && !was_streaming {
                        stream_tick.reset();
                    }
                    was_streaming = terminal.streaming();
                    send(&mut io, terminal.as_ref(), reply, &faults).await?;
                    continue;
                }
                Ok(None) => {}
                Err(error) => {
                    tracing::debug!(%error, "simulator: bad command bytes");
                    let reply = terminal.on_bad_command();
                    was_streaming = terminal.streaming();
                    send(&mut io, terminal.as_ref(), reply, &faults).await?;
                    continue;
                }
            }
        } else {
            // No commands: whatever arrives is read and dropped.
            buf.clear();
        }
        let streaming = terminal.streaming();
        let event = tokio::select! {
            read = io.read_buf(&mut buf) => Event::Read(read),
            _ = stream_tick.tick(), if streaming => Event::StreamTick,
        };
        match event {
            Event::Read(Ok(0)) => return Ok(()),
            Event::Read(Ok(_)) => {}
            Event::Read(Err(error)) => return Err(error),
            Event::StreamTick => {
                let frame = terminal.stream_frame();
                send(&mut io, terminal.as_ref(), frame, &faults).await?;
            }
        }
    }
}
