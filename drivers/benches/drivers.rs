//! Driver benchmark (not a timed test): decode throughput per protocol, and the latency from
//! the last byte of a frame written to a pty to the reading reaching a consumer of the
//! device's status, through the whole stack (serial transport, line task, device task,
//! watch channel). Run with `cargo bench -p valeo-drivers --bench drivers`; the figures go
//! into `docs/benchmarks.md`.

#![allow(
    clippy::unwrap_used,
    reason = "a benchmark that cannot set up should stop loudly"
)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use tokio_serial::{SerialPort, SerialStream};
use valeo_drivers::scale::config::{Mode, ScaleConfig};
use valeo_drivers::scale::disomat::{self, DisomatOptions, DisomatProtocol};
use valeo_drivers::scale::line::{self, LineOptions, LineProtocol};
use valeo_drivers::scale::link::Decode;
use valeo_drivers::scale::mtsics::MtSicsProtocol;
use valeo_drivers::scale::mtsics::frame::{Response, WeightReply};
use valeo_drivers::scale::protocol::{ProtocolCodec, ScaleProtocol};
use valeo_drivers::scale::sma::{self, SmaProtocol, SmaWeight};
use valeo_drivers::scale::systec::{self, SystecOptions, SystecOutput, SystecProtocol};
use valeo_drivers::scale::toledo::{self, ToledoOptions, ToledoOutput, ToledoProtocol};
use valeo_drivers::scale::{Protocol, Weight, device};
use valeo_drivers::transport::{FlowControl, Parity, TransportConfig};

/// Frames per throughput run.
const FRAMES: usize = 20_000;
/// Throughput runs per protocol; the median is reported.
const RUNS: usize = 7;
/// Bytes handed to the decoder at a time, like reads from a serial port.
const CHUNK_BYTES: usize = 64;
/// Frames sent in the latency run.
const LATENCY_FRAMES: usize = 1000;
/// Pause between latency frames, so each frame is measured on an idle pipeline.
const LATENCY_GAP_MS: u64 = 5;

fn frame_for(protocol: Protocol, i: usize) -> Vec<u8> {
    let kg = 10_000 + i64::try_from(i % 40_000).unwrap();
    match protocol {
        Protocol::MtSics => Response::Weight(WeightReply::Stable(Weight::kg(kg))).encode(),
        Protocol::ToledoContinuous => toledo::encode_frame(
            &ToledoOutput {
                displayed_kg: kg,
                tare_kg: 0,
                net_mode: false,
                motion: false,
                out_of_range: false,
                count_by: 2,
            },
            &ToledoOptions {
                checksum: true,
                ..ToledoOptions::default()
            },
        ),
        Protocol::Sma => sma::encode_weight(&SmaWeight {
            status: ' ',
            mode: 'G',
            motion: false,
            kg: Some(kg),
        }),
        Protocol::Systec => systec::encode_reply(&SystecOutput {
            error_code: 0,
            motion: false,
            invalid: false,
            date: "01.02.25".to_owned(),
            time: "08:15".to_owned(),
            ident: 17,
            scale: 1,
            gross_kg: kg,
            tare_kg: 0,
        }),
        Protocol::Disomat => disomat::encode_frame(&format!("00#TG#{kg:>8}#       0#0#0#"), false),
        Protocol::Line => line::encode_default_reply("ST", false, kg, None),
    }
}

fn protocol_object(protocol: Protocol) -> Arc<dyn ScaleProtocol> {
    match protocol {
        Protocol::MtSics => Arc::new(MtSicsProtocol),
        Protocol::ToledoContinuous => Arc::new(ToledoProtocol::new(ToledoOptions {
            checksum: true,
            ..ToledoOptions::default()
        })),
        Protocol::Sma => Arc::new(SmaProtocol::default()),
        Protocol::Systec => Arc::new(SystecProtocol::new(SystecOptions::default(), None)),
        Protocol::Disomat => Arc::new(DisomatProtocol::new(DisomatOptions::default(), None)),
        Protocol::Line => Arc::new(LineProtocol::new(LineOptions::default())),
    }
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn throughput(protocol: Protocol) -> (f64, f64) {
    let stream: Vec<u8> = (0..FRAMES).flat_map(|i| frame_for(protocol, i)).collect();
    let mut frames_per_s = Vec::new();
    for _ in 0..RUNS {
        let mut codec = ProtocolCodec::new(protocol_object(protocol));
        let mut buf = BytesMut::with_capacity(4096);
        let mut decoded = 0;
        let started = Instant::now();
        for chunk in stream.chunks(CHUNK_BYTES) {
            buf.extend_from_slice(chunk);
            while let Ok(Some(_)) = codec.decode(&mut buf) {
                decoded += 1;
            }
        }
        let elapsed = started.elapsed().as_secs_f64();
        assert_eq!(decoded, FRAMES, "{protocol}");
        frames_per_s.push(FRAMES as f64 / elapsed);
    }
    let frames = median(&mut frames_per_s);
    let bytes_per_frame = stream.len() as f64 / FRAMES as f64;
    (frames, frames * bytes_per_frame / 1e6)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

/// Latency through the whole device stack of a streaming protocol on a real pty.
async fn pty_latency(protocol: Protocol) -> Vec<Duration> {
    let (mut master, slave) = SerialStream::pair().unwrap();
    let path = PathBuf::from(slave.name().unwrap());
    let mut config = ScaleConfig::new(
        format!("bench-{protocol}"),
        TransportConfig::Serial {
            path,
            baud: 115_200,
            data_bits: 8,
            parity: Parity::None,
            stop_bits: 1,
            flow_control: FlowControl::None,
        },
    )
    .with_protocol(protocol);
    config.mode = Some(Mode::Stream);
    if protocol == Protocol::ToledoContinuous {
        config.toledo = Some(ToledoOptions {
            checksum: true,
            ..ToledoOptions::default()
        });
    }
    let handle = device::spawn(config);
    let mut status = handle.status();
    // Prime: frames until the device is following the stream.
    let mut i = 0;
    while !status.borrow().connected {
        master.write_all(&frame_for(protocol, i)).await.unwrap();
        i += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut latencies = Vec::with_capacity(LATENCY_FRAMES);
    for n in 0..LATENCY_FRAMES {
        tokio::time::sleep(Duration::from_millis(LATENCY_GAP_MS)).await;
        let frame = frame_for(protocol, 20_000 + n);
        let expected = Weight::kg(10_000 + i64::try_from((20_000 + n) % 40_000).unwrap());
        master.write_all(&frame).await.unwrap();
        // The write returns once the last byte is in the pty: the clock starts here.
        let sent = Instant::now();
        let arrived = tokio::time::timeout(
            Duration::from_secs(2),
            status.wait_for(|s| s.last_reading.as_ref().and_then(|r| r.net) == Some(expected)),
        )
        .await;
        if arrived.is_ok() {
            latencies.push(sent.elapsed());
        }
    }
    drop(slave);
    latencies
}

fn main() {
    println!(
        "## Decode throughput (ProtocolCodec, {CHUNK_BYTES}-byte chunks, median of {RUNS} runs of {FRAMES} frames)"
    );
    println!();
    println!("| protocol | frames/s | MB/s |");
    println!("|---|---:|---:|");
    for protocol in Protocol::ALL {
        let (frames, mb) = throughput(protocol);
        println!("| {protocol} | {frames:.0} | {mb:.1} |");
    }
    println!();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    println!(
        "## Latency, last byte on the pty → reading at a status consumer ({LATENCY_FRAMES} frames)"
    );
    println!();
    println!("| protocol | received | p50 µs | p90 µs | p99 µs | max µs |");
    println!("|---|---:|---:|---:|---:|---:|");
    for protocol in [Protocol::ToledoContinuous, Protocol::MtSics] {
        let mut latencies = runtime.block_on(pty_latency(protocol));
        latencies.sort_unstable();
        if latencies.is_empty() {
            println!("| {protocol} | 0 | - | - | - | - |");
            continue;
        }
        let us = |d: Duration| d.as_micros();
        println!(
            "| {protocol} | {} | {} | {} | {} | {} |",
            latencies.len(),
            us(percentile(&latencies, 0.50)),
            us(percentile(&latencies, 0.90)),
            us(percentile(&latencies, 0.99)),
            us(*latencies.last().unwrap()),
        );
    }
}
