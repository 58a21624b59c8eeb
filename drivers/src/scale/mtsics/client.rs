//! `MtSicsClient`: one MT-SICS command, one reply, over any `AsyncRead + AsyncWrite` byte
//! stream, built on the protocol-independent `Link`.
//!
//! Each call sends one command and waits up to `response_timeout_ms` for the reply that
//! belongs to it. Garbage lines and replies to other commands (late answers, stream output)
//! are logged, counted and skipped, up to `MAX_SKIPPED_LINES_PER_COMMAND`. Terminal refusals
//! (`S I`, `Z I`, `ES`, …) become the matching `ScaleError`; they never poison the connection.

use std::fmt;

use tokio::io::{AsyncRead, AsyncWrite};

use crate::scale::error::ScaleError;
use crate::scale::link::{Link, MAX_SKIPPED_FRAMES_PER_REQUEST};
use crate::scale::mtsics::codec::{Frame, MtSicsCodec};
use crate::scale::mtsics::frame::{Command, Reply, Response, Status, WeightReply};
use crate::scale::reading::{Reading, Weight};

/// A terminal that keeps sending lines that are not our reply is treated as a protocol error.
pub const MAX_SKIPPED_LINES_PER_COMMAND: u32 = MAX_SKIPPED_FRAMES_PER_REQUEST;

/// MT-SICS client over a byte stream `T` (serial port, TCP socket, in-memory pipe).
pub struct MtSicsClient<T> {
    link: Link<T, MtSicsCodec>,
    response_timeout_ms: u64,
}

impl<T> fmt::Debug for MtSicsClient<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MtSicsClient")
            .field("response_timeout_ms", &self.response_timeout_ms)
            .field("link", &self.link)
            .finish()
    }
}

fn reply_text(frame: &Frame) -> String {
    String::from_utf8_lossy(&frame.raw).trim_end().to_owned()
}

fn rejected(command: Command, frame: &Frame) -> ScaleError {
    ScaleError::Rejected {
        command: command.as_str().to_owned(),
        reply: reply_text(frame),
    }
}

impl<T> MtSicsClient<T>
where
    T: AsyncRead + AsyncWrite + Unpin + Send,
{
    /// A client that gives up on a reply after `response_timeout_ms`.
    pub fn new(io: T, response_timeout_ms: u64) -> Self {
        Self {
            link: Link::new(io, MtSicsCodec::default()),
            response_timeout_ms,
        }
    }

    /// How many garbage or unrelated lines were skipped so far.
    pub fn skipped_lines_total(&self) -> u64 {
        self.link.skipped_frames_total()
    }

    /// The response timeout in milliseconds.
    pub fn response_timeout_ms(&self) -> u64 {
        self.response_timeout_ms
    }

    /// Gives the byte stream back.
    pub fn into_inner(self) -> T {
        self.link.into_inner()
    }

    /// `S`: only a stable reply is Ok; `S I` → `NotStable`, `S +` → `Overload`, `S -` → `Underload`.
    pub async fn stable_weight(&mut self) -> Result<Reading, ScaleError> {
        let command = Command::StableWeight;
        let frame = self.transact(command).await?;
        match &frame.response {
            Response::Weight(WeightReply::Stable(_)) => self.reading(command, &frame),
            // A dynamic value is no answer to "send stable weight"; treat it like a timeout.
            Response::Weight(WeightReply::Dynamic(_) | WeightReply::NotExecutable) => {
                Err(ScaleError::NotStable)
            }
            Response::Weight(WeightReply::Overload) => Err(ScaleError::Overload),
            Response::Weight(WeightReply::Underload) => Err(ScaleError::Underload),
            _ => Err(rejected(command, &frame)),
        }
    }

    /// `SI`: the current weight, stable or not. Overload and underload come back as a
    /// `Reading` with the flag set; `S I` (busy) is `NotStable`.
    pub async fn immediate_weight(&mut self) -> Result<Reading, ScaleError> {
        let command = Command::ImmediateWeight;
        let frame = self.transact(command).await?;
        match &frame.response {
            Response::Weight(WeightReply::NotExecutable) => Err(ScaleError::NotStable),
            Response::Weight(_) => self.reading(command, &frame),
            _ => Err(rejected(command, &frame)),
        }
    }

    /// `Z`: zero when stable. `Z I` → `NotStable`; out of the zero range → `Rejected`.
    pub async fn zero(&mut self) -> Result<(), ScaleError> {
        let command = Command::Zero;
        let frame = self.transact(command).await?;
        match &frame.response {
            Response::Zero(Status::Executed) => Ok(()),
            Response::Zero(Status::NotExecutable) => Err(ScaleError::NotStable),
            _ => Err(rejected(command, &frame)),
        }
    }

    /// `T`: tare when stable, returns the tare weight. `T I` → `NotStable`.
    pub async fn tare(&mut self) -> Result<Weight, ScaleError> {
        let command = Command::Tare;
        let frame = self.transact(command).await?;
        match &frame.response {
            Response::Tare(Reply::Value(weight)) => Ok(*weight),
            Response::Tare(Reply::Refused(Status::NotExecutable)) => Err(ScaleError::NotStable),
            _ => Err(rejected(command, &frame)),
        }
    }

    /// `TA`: the current tare value.
    pub async fn tare_value(&mut self) -> Result<Weight, ScaleError> {
        let command = Command::TareQuery;
        let frame = self.transact(command).await?;
        match &frame.response {
            Response::TareValue(Reply::Value(weight)) => Ok(*weight),
            _ => Err(rejected(command, &frame)),
        }
    }

    /// `TAC`: clear the tare.
    pub async fn clear_tare(&mut self) -> Result<(), ScaleError> {
        let command = Command::TareClear;
        let frame = self.transact(command).await?;
        match &frame.response {
            Response::TareCleared(Status::Executed) => Ok(()),
            _ => Err(rejected(command, &frame)),
        }
    }

    /// `@`: reset the terminal's interface state; returns the serial number it answers with.
    pub async fn reset(&mut self) -> Result<String, ScaleError> {
        self.text_command(Command::Reset).await
    }

    /// `I4`: the serial number.
    pub async fn serial_number(&mut self) -> Result<String, ScaleError> {
        self.text_command(Command::SerialNumber).await
    }

    /// `I2`: device data (type, capacity, unit) as one string.
    pub async fn device_data(&mut self) -> Result<String, ScaleError> {
        self.text_command(Command::DeviceData).await
    }

    async fn text_command(&mut self, command: Command) -> Result<String, ScaleError> {
        let frame = self.transact(command).await?;
        match frame.response {
            Response::SerialNumber(Reply::Value(text))
            | Response::DeviceData(Reply::Value(text)) => Ok(text),
            _ => Err(rejected(command, &frame)),
        }
    }

    fn reading(&self, command: Command, frame: &Frame) -> Result<Reading, ScaleError> {
        frame
            .response
            .to_reading(&frame.raw)
            .ok_or_else(|| rejected(command, frame))
    }

    /// Sends `command` and returns the first reply that belongs to it.
    async fn transact(&mut self, command: Command) -> Result<Frame, ScaleError> {
        self.link
            .transact(
                &command.encode(),
                self.response_timeout_ms,
                command.as_str(),
                |frame: &Frame| command.expects(&frame.response),
            )
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, DuplexStream};

    /// A scripted terminal: for each expected command line, writes the given bytes.
    fn scripted(script: Vec<(&'static str, &'static [u8])>) -> DuplexStream {
        let (client, server) = tokio::io::duplex(1024);
        tokio::spawn(async move {
            let (read, mut write) = tokio::io::split(server);
            let mut lines = BufReader::new(read).lines();
            for (expected, reply) in script {
                let Ok(Some(line)) = lines.next_line().await else {
                    return;
                };
                assert_eq!(line.trim_end(), expected);
                if write.write_all(reply).await.is_err() {
                    return;
                }
            }
            // Keep the pipe open and ignore further commands, so the client sees silence.
            while let Ok(Some(_)) = lines.next_line().await {}
        });
        client
    }

    #[tokio::test(start_paused = true)]
    async fn maps_terminal_replies() {
        let io = scripted(vec![
            ("S", b"S S      12340 kg\r\n"),
            ("S", b"S I\r\n"),
            ("S", b"S +\r\n"),
            ("S", b"S -\r\n"),
            ("SI", b"S D      12360 kg\r\n"),
            ("SI", b"S +\r\n"),
            ("Z", b"Z I\r\n"),
            ("Z", b"Z A\r\n"),
            ("Z", b"Z +\r\n"),
            ("T", b"T S       2000 kg\r\n"),
            ("TA", b"TA A       2000 kg\r\n"),
            ("TAC", b"TAC A\r\n"),
            ("I4", b"I4 A \"0123\"\r\n"),
            ("I2", b"I2 A \"T72XW Standard 50.00 kg\"\r\n"),
            ("@", b"I4 A \"0123\"\r\n"),
            ("I2", b"ES\r\n"),
        ]);
        let mut client = MtSicsClient::new(io, 2000);
        let reading = client.stable_weight().await.unwrap();
        assert_eq!(reading.net, Some(Weight::kg(12_340)));
        assert!(reading.stable);
        assert_eq!(reading.raw, b"S S      12340 kg\r\n");
        assert!(matches!(
            client.stable_weight().await,
            Err(ScaleError::NotStable)
        ));
        assert!(matches!(
            client.stable_weight().await,
            Err(ScaleError::Overload)
        ));
        assert!(matches!(
            client.stable_weight().await,
            Err(ScaleError::Underload)
        ));
        let reading = client.immediate_weight().await.unwrap();
        assert_eq!(reading.net, Some(Weight::kg(12_360)));
        assert!(!reading.stable);
        let reading = client.immediate_weight().await.unwrap();
        assert!(reading.overload);
        assert_eq!(reading.net, None);
        assert!(matches!(client.zero().await, Err(ScaleError::NotStable)));
        client.zero().await.unwrap();
        assert!(matches!(
            client.zero().await,
            Err(ScaleError::Rejected { .. })
        ));
        assert_eq!(client.tare().await.unwrap(), Weight::kg(2000));
        assert_eq!(client.tare_value().await.unwrap(), Weight::kg(2000));
        client.clear_tare().await.unwrap();
        assert_eq!(client.serial_number().await.unwrap(), "0123");
        assert_eq!(
            client.device_data().await.unwrap(),
            "T72XW Standard 50.00 kg"
        );
        assert_eq!(client.reset().await.unwrap(), "0123");
        match client.device_data().await {
            Err(ScaleError::Rejected { command, reply }) => {
                assert_eq!(command, "I2");
                assert_eq!(reply, "ES");
            }
            other => panic!("expected Rejected, got {other:?}"),
        }
        assert_eq!(client.skipped_lines_total(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn skips_garbage_and_unrelated_replies() {
        let io = scripted(vec![(
            "S",
            b"\xff\xfe\x00junk\r\nZ A\r\nS S 1\x002 kg\r\nS S        980 kg\r\n",
        )]);
        let mut client = MtSicsClient::new(io, 2000);
        let reading = client.stable_weight().await.unwrap();
        assert_eq!(reading.net, Some(Weight::kg(980)));
        assert_eq!(client.skipped_lines_total(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn times_out_on_silence() {
        let io = scripted(vec![]);
        let mut client = MtSicsClient::new(io, 1500);
        let started = tokio::time::Instant::now();
        match client.immediate_weight().await {
            Err(ScaleError::Timeout { timeout_ms }) => assert_eq!(timeout_ms, 1500),
            other => panic!("expected Timeout, got {other:?}"),
        }
        assert_eq!(started.elapsed(), Duration::from_millis(1500));
    }

    #[tokio::test(start_paused = true)]
    async fn endless_unrelated_output_is_a_protocol_error() {
        let (client_io, mut server) = tokio::io::duplex(64 * 1024);
        let mut client = MtSicsClient::new(client_io, 2000);
        let task = tokio::spawn(async move {
            let mut flood = Vec::new();
            for _ in 0..=MAX_SKIPPED_LINES_PER_COMMAND {
                flood.extend_from_slice(b"Z A\r\n");
            }
            let mut cmd = [0u8; 3];
            server.read_exact(&mut cmd).await.unwrap();
            server.write_all(&flood).await.unwrap();
            server
        });
        assert!(matches!(
            client.stable_weight().await,
            Err(ScaleError::Protocol(_))
        ));
        drop(task.await.unwrap());
    }

    #[tokio::test(start_paused = true)]
    async fn eof_is_disconnected_and_stale_input_is_dropped() {
        let (client_io, mut server) = tokio::io::duplex(1024);
        // A late reply to an earlier command is already waiting before "S" is sent.
        server
            .write_all(b"S S       5000 kg\r\nS S 12")
            .await
            .unwrap();
        let mut client = MtSicsClient::new(client_io, 2000);
        let task = tokio::spawn(async move {
            let mut cmd = [0u8; 3];
            server.read_exact(&mut cmd).await.unwrap();
            assert_eq!(&cmd, b"S\r\n");
            server.write_all(b"S S       7000 kg\r\n").await.unwrap();
            server.read_exact(&mut cmd[..3]).await.unwrap();
            // Closing the stream without a reply.
        });
        let reading = client.stable_weight().await.unwrap();
        assert_eq!(reading.net, Some(Weight::kg(7000)));
        assert!(matches!(
            client.stable_weight().await,
            Err(ScaleError::Disconnected)
        ));
        task.await.unwrap();
    }
}
