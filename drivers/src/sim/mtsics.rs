//! An MT-SICS terminal simulator: serves the real wire protocol on any byte stream, backed
//! by a `TruckScale`, with runtime fault injection (garbage before replies, silence).

use std::io;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::{Instant, MissedTickBehavior};

use crate::scale::mtsics::codec::LineSplitter;
use crate::scale::mtsics::frame::{Command, ErrorReply, Reply, Response, Status, WeightReply};
use crate::scale::reading::Weight;
use crate::sim::truck::{TareOutcome, TruckScale, ZeroOutcome};

/// How long `S` waits for stability before answering `S I`; below the driver's default
/// response timeout (2000 ms) so that a waiting `S` is answered, not timed out.
pub const STABLE_WAIT_MS: u64 = 1500;

/// How often the terminal's stability is checked while `S` waits.
const STABLE_CHECK_MS: u64 = 50;

/// Interval of the `SIR` stream.
pub const STREAM_INTERVAL_MS: u64 = 100;

/// Command lines longer than this are answered with `ES`.
pub const MAX_COMMAND_BYTES: usize = 64;

/// The serial number the simulator reports (`I4`, `@`).
pub const SERIAL_NUMBER: &str = "SIM0000001";

/// The garbage line sent before replies when `Faults::garbage_before_reply` is set: binary
/// noise like a baud-rate mismatch produces, terminated so the reply after it stays intact.
pub const GARBAGE_LINE: &[u8] = b"\x00\xfe#~\xff?x\x13\r\n";

/// Underload below this many divisions under zero (the terminal's display limit).
const UNDERLOAD_DIVISIONS: i64 = 20;

/// Faults to inject, settable at runtime through the shared `Arc<Mutex<Faults>>`.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Send a garbage line before every reply.
    pub garbage_before_reply: bool,
    /// Read commands but never answer.
    pub silent: bool,
}

fn current_faults(faults: &Mutex<Faults>) -> Faults {
    faults
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone()
}

/// The weight reply the terminal would give right now for `SI`.
fn immediate_reply(scale: &TruckScale) -> Response {
    let sample = scale.sample();
    if sample.overload {
        return Response::Weight(WeightReply::Overload);
    }
    let division = scale.params().division_kg.max(1);
    if sample.weight_kg < -UNDERLOAD_DIVISIONS.saturating_mul(division) {
        return Response::Weight(WeightReply::Underload);
    }
    let net = Weight::kg(sample.weight_kg.saturating_sub(scale.tare_kg()));
    if sample.stable {
        Response::Weight(WeightReply::Stable(net))
    } else {
        Response::Weight(WeightReply::Dynamic(net))
    }
}

/// `S`: waits up to `STABLE_WAIT_MS` for a stable weight, then gives up with `S I`.
async fn stable_reply(scale: &TruckScale) -> Response {
    let deadline = Instant::now() + Duration::from_millis(STABLE_WAIT_MS);
    loop {
        let reply = immediate_reply(scale);
        match reply {
            Response::Weight(WeightReply::Dynamic(_)) => {}
            other => return other,
        }
        if Instant::now() >= deadline {
            return Response::Weight(WeightReply::NotExecutable);
        }
        tokio::time::sleep(Duration::from_millis(STABLE_CHECK_MS)).await;
    }
}

async fn respond(command: Command, scale: &TruckScale) -> Response {
    match command {
        Command::StableWeight => stable_reply(scale).await,
        Command::ImmediateWeight | Command::ImmediateWeightRepeat => immediate_reply(scale),
        Command::Zero => Response::Zero(match scale.zero() {
            ZeroOutcome::Done => Status::Executed,
            ZeroOutcome::NotStable => Status::NotExecutable,
            ZeroOutcome::AboveRange => Status::AboveRange,
            ZeroOutcome::BelowRange => Status::BelowRange,
        }),
        Command::Tare => Response::Tare(match scale.tare() {
            TareOutcome::Done(kg) => Reply::Value(Weight::kg(kg)),
            TareOutcome::NotStable => Reply::Refused(Status::NotExecutable),
            TareOutcome::AboveRange => Reply::Refused(Status::AboveRange),
            TareOutcome::BelowRange => Reply::Refused(Status::BelowRange),
        }),
        Command::TareQuery => Response::TareValue(Reply::Value(Weight::kg(scale.tare_kg()))),
        Command::TareClear => {
            scale.clear_tare();
            Response::TareCleared(Status::Executed)
        }
        Command::Reset => {
            scale.clear_tare();
            Response::SerialNumber(Reply::Value(SERIAL_NUMBER.to_owned()))
        }
        Command::DeviceData => {
            let capacity = scale.params().capacity_kg;
            Response::DeviceData(Reply::Value(format!("Valeo SimBridge {capacity} kg")))
        }
        Command::SerialNumber => Response::SerialNumber(Reply::Value(SERIAL_NUMBER.to_owned())),
    }
}

async fn send<T: AsyncWrite + Unpin>(
    io: &mut T,
    response: &Response,
    faults: &Mutex<Faults>,
) -> io::Result<()> {
    let faults = current_faults(faults);
    if faults.silent {
        return Ok(());
    }
    if faults.garbage_before_reply {
        io.write_all(GARBAGE_LINE).await?;
    }
    io.write_all(&response.encode()).await?;
    io.flush().await
}

enum Event {
    Read(io::Result<usize>),
    StreamTick,
}

/// Serves MT-SICS on any byte stream, as a terminal would: answers S (waits up to
/// `STABLE_WAIT_MS` for stability, else "S I"), SI, SIR (stream every 100 ms until next
/// command), Z, T, TA, TAC, @, I2, I4; unknown command -> "ES". Also supports fault injection.
/// Returns Ok when the peer closes the stream.
pub async fn serve<T: AsyncRead + AsyncWrite + Unpin>(
    mut io: T,
    scale: TruckScale,
    faults: Arc<Mutex<Faults>>,
) -> io::Result<()> {
    let mut buf = BytesMut::with_capacity(MAX_COMMAND_BYTES);
    let mut lines = LineSplitter::new(MAX_COMMAND_BYTES);
    let mut streaming = false;
    let mut stream_tick = tokio::time::interval(Duration::from_millis(STREAM_INTERVAL_MS));
    stream_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        match lines.next_line(&mut buf) {
            Ok(Some(line)) => {
                // Any command ends a running SIR stream, as on a real terminal.
                streaming = false;
                let response = match Command::parse(line.content()) {
                    Some(command) => {
                        streaming = command == Command::ImmediateWeightRepeat;
                        if streaming {
                            stream_tick.reset();
                        }
                        respond(command, &scale).await
                    }
                    None => Response::Error(ErrorReply::Syntax),
                };
                send(&mut io, &response, &faults).await?;
                continue;
            }
            Err(_) => {
                streaming = false;
                send(&mut io, &Response::Error(ErrorReply::Syntax), &faults).await?;
                continue;
            }
            Ok(None) => {}
        }
        let event = tokio::select! {
            read = io.read_buf(&mut buf) => Event::Read(read),
            _ = stream_tick.tick(), if streaming => Event::StreamTick,
        };
        match event {
            Event::Read(Ok(0)) => return Ok(()),
            Event::Read(Ok(_)) => {}
            Event::Read(Err(error)) => return Err(error),
            Event::StreamTick => send(&mut io, &immediate_reply(&scale), &faults).await?,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::truck::TruckScaleParams;
    use tokio::io::{AsyncBufReadExt, BufReader};

    async fn exchange<R: AsyncBufReadExt + AsyncWrite + Unpin>(
        io: &mut R,
        command: &str,
    ) -> String {
        io.write_all(format!("{command}\r\n").as_bytes())
            .await
            .unwrap();
        let mut line = String::new();
        io.read_line(&mut line).await.unwrap();
        line
    }

    fn start(
        params: TruckScaleParams,
    ) -> (
        BufReader<tokio::io::DuplexStream>,
        TruckScale,
        Arc<Mutex<Faults>>,
    ) {
        let (client, server) = tokio::io::duplex(4096);
        let scale = TruckScale::new(params);
        let faults = Arc::new(Mutex::new(Faults::default()));
        tokio::spawn(serve(server, scale.clone(), Arc::clone(&faults)));
        (BufReader::new(client), scale, faults)
    }

    #[tokio::test(start_paused = true)]
    async fn answers_the_command_set() {
        let (mut io, scale, _) = start(TruckScaleParams {
            ramp_ms: 1000,
            settle_ms: 1000,
            ..TruckScaleParams::default()
        });
        assert_eq!(exchange(&mut io, "S").await, "S S          0 kg\r\n");
        scale.drive_on(12_340);
        tokio::time::advance(Duration::from_millis(500)).await;
        assert_eq!(exchange(&mut io, "SI").await, "S D       6180 kg\r\n");
        assert_eq!(exchange(&mut io, "Z").await, "Z I\r\n");
        // S waits for stability: the bridge settles 1500 ms from now, within STABLE_WAIT_MS.
        assert_eq!(exchange(&mut io, "S").await, "S S      12340 kg\r\n");
        assert_eq!(exchange(&mut io, "T").await, "T S      12340 kg\r\n");
        assert_eq!(exchange(&mut io, "TA").await, "TA A      12340 kg\r\n");
        assert_eq!(exchange(&mut io, "SI").await, "S S          0 kg\r\n");
        assert_eq!(exchange(&mut io, "TAC").await, "TAC A\r\n");
        assert_eq!(exchange(&mut io, "I4").await, "I4 A \"SIM0000001\"\r\n");
        assert_eq!(
            exchange(&mut io, "I2").await,
            "I2 A \"Valeo SimBridge 60000 kg\"\r\n"
        );
        assert_eq!(exchange(&mut io, "@").await, "I4 A \"SIM0000001\"\r\n");
        assert_eq!(exchange(&mut io, "XYZ").await, "ES\r\n");
        assert_eq!(exchange(&mut io, &"S".repeat(200)).await, "ES\r\n");
        assert_eq!(exchange(&mut io, "I4").await, "I4 A \"SIM0000001\"\r\n");
        scale.drive_on(70_000);
        tokio::time::advance(Duration::from_millis(2000)).await;
        assert_eq!(exchange(&mut io, "S").await, "S +\r\n");
    }

    #[tokio::test(start_paused = true)]
    async fn stable_command_gives_up_while_moving() {
        let (mut io, scale, _) = start(TruckScaleParams::default());
        scale.drive_on(30_000);
        let started = Instant::now();
        assert_eq!(exchange(&mut io, "S").await, "S I\r\n");
        assert!(started.elapsed() >= Duration::from_millis(STABLE_WAIT_MS));
    }

    #[tokio::test(start_paused = true)]
    async fn sir_streams_until_the_next_command() {
        let (mut io, _, _) = start(TruckScaleParams::default());
        assert_eq!(exchange(&mut io, "SIR").await, "S S          0 kg\r\n");
        let mut line = String::new();
        for _ in 0..3 {
            line.clear();
            io.read_line(&mut line).await.unwrap();
            assert_eq!(line, "S S          0 kg\r\n");
        }
        io.write_all(b"Z\r\n").await.unwrap();
        // Stream lines already in flight may precede the Z reply; nothing may follow it.
        loop {
            line.clear();
            io.read_line(&mut line).await.unwrap();
            if line != "S S          0 kg\r\n" {
                break;
            }
        }
        assert_eq!(line, "Z A\r\n");
        let quiet = tokio::time::timeout(Duration::from_millis(500), async {
            line.clear();
            io.read_line(&mut line).await
        })
        .await;
        assert!(quiet.is_err(), "stream continued: {line:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn faults_apply_at_runtime() {
        let (mut io, _, faults) = start(TruckScaleParams::default());
        faults.lock().unwrap().garbage_before_reply = true;
        io.write_all(b"I4\r\n").await.unwrap();
        let mut raw = Vec::new();
        io.read_until(b'\n', &mut raw).await.unwrap();
        assert_eq!(raw, GARBAGE_LINE);
        raw.clear();
        io.read_until(b'\n', &mut raw).await.unwrap();
        assert_eq!(raw, b"I4 A \"SIM0000001\"\r\n");

        *faults.lock().unwrap() = Faults {
            garbage_before_reply: false,
            silent: true,
        };
        io.write_all(b"SI\r\n").await.unwrap();
        let silence =
            tokio::time::timeout(Duration::from_secs(5), io.read_until(b'\n', &mut raw)).await;
        assert!(silence.is_err());
        faults.lock().unwrap().silent = false;
        assert_eq!(exchange(&mut io, "SI").await, "S S          0 kg\r\n");
    }
}
