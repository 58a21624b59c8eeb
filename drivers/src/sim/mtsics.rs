//! An MT-SICS terminal simulator: serves the real wire protocol on any byte stream, backed
//! by a `TruckScale`, with runtime fault injection (see `sim::terminal::Faults`).

use std::io;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncRead, AsyncWrite};

use crate::scale::framing::{Framing, RawFrame};
use crate::scale::mtsics::frame::{Command, ErrorReply, Reply, Response, Status, WeightReply};
use crate::scale::reading::Weight;
pub use crate::sim::terminal::{
    Faults, GARBAGE_LINE, MAX_COMMAND_BYTES, STABLE_WAIT_MS, STREAM_INTERVAL_MS,
};
use crate::sim::terminal::{Terminal, serve_terminal};
use crate::sim::truck::{TareOutcome, TruckScale, ZeroOutcome};

/// The serial number the simulator reports (`I4`, `@`).
pub const SERIAL_NUMBER: &str = "SIM0000001";

/// Underload below this many divisions under zero (the terminal's display limit).
pub(crate) const UNDERLOAD_DIVISIONS: i64 = 20;

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

/// `S` after the server waited for stability: a still dynamic weight becomes `S I`.
fn stable_reply(scale: &TruckScale) -> Response {
    match immediate_reply(scale) {
        Response::Weight(WeightReply::Dynamic(_)) => Response::Weight(WeightReply::NotExecutable),
        other => other,
    }
}

fn respond(command: Command, scale: &TruckScale) -> Response {
    match command {
        Command::StableWeight => stable_reply(scale),
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

/// The MT-SICS terminal: S (waits up to `STABLE_WAIT_MS` for stability, else `S I`), SI, SIR
/// (stream every `STREAM_INTERVAL_MS` until the next command), Z, T, TA, TAC, @, I2, I4;
/// anything else, or an over-long line, is answered `ES`.
#[derive(Debug, Clone)]
pub struct MtSicsTerminal {
    scale: TruckScale,
    streaming: bool,
}

impl MtSicsTerminal {
    /// A terminal on `scale`.
    pub fn new(scale: TruckScale) -> Self {
        Self {
            scale,
            streaming: false,
        }
    }
}

impl Terminal for MtSicsTerminal {
    fn command_framing(&self) -> Option<Framing> {
        Some(Framing::lines(MAX_COMMAND_BYTES))
    }

    fn waits_for(&self, command: &[u8]) -> Option<TruckScale> {
        (Command::parse(command) == Some(Command::StableWeight)).then(|| self.scale.clone())
    }

    fn respond(&mut self, command: &RawFrame) -> Vec<u8> {
        // Any command ends a running SIR stream, as on a real terminal.
        let command = Command::parse(command.body());
        self.streaming = command == Some(Command::ImmediateWeightRepeat);
        match command {
            Some(command) => respond(command, &self.scale).encode(),
            None => Response::Error(ErrorReply::Syntax).encode(),
        }
    }

    fn on_bad_command(&mut self) -> Vec<u8> {
        self.streaming = false;
        Response::Error(ErrorReply::Syntax).encode()
    }

    fn streaming(&self) -> bool {
        self.streaming
    }

    fn stream_frame(&mut self) -> Vec<u8> {
        immediate_reply(&self.scale).encode()
    }
}

/// Serves MT-SICS on any byte stream, as a terminal would (see `MtSicsTerminal`). Returns Ok
/// when the peer closes the stream.
pub async fn serve<T: AsyncRead + AsyncWrite + Unpin>(
    io: T,
    scale: TruckScale,
    faults: Arc<Mutex<Faults>>,
) -> io::Result<()> {
    serve_terminal(io, Box::new(MtSicsTerminal::new(scale)), faults).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::truck::TruckScaleParams;
    use std::time::Duration;
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    use tokio::time::Instant;

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
            silent: true,
            ..Faults::default()
        };
        io.write_all(b"SI\r\n").await.unwrap();
        let silence =
            tokio::time::timeout(Duration::from_secs(5), io.read_until(b'\n', &mut raw)).await;
        assert!(silence.is_err());
        faults.lock().unwrap().silent = false;
        assert_eq!(exchange(&mut io, "SI").await, "S S          0 kg\r\n");
    }
}
