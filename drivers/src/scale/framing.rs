//! Byte-stream framing shared by every protocol: `Framing` describes where a frame starts and
//! ends (and how many check bytes follow the end byte), `FrameSplitter` cuts frames off a
//! buffer with a hard length cap and resynchronises on garbage, and `CodecError` is the typed
//! per-frame error every decoder returns.
//!
//! Resynchronisation rules, the same for all protocols:
//! * bytes before a start byte are dropped and reported once as `Garbage` (CR/LF between
//!   frames are not garbage);
//! * a start byte inside an unfinished frame means bytes were lost: the partial frame is
//!   dropped (`Garbage`) and the new frame starts there;
//! * a frame longer than `max_frame_bytes` is reported once (`FrameTooLong`) and dropped up
//!   to the next frame.
//!
//! Every error leaves the splitter in a clean state, so a caller can log, count and go on.

use bytes::{Buf, BytesMut};

/// Where frames start and end on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Framing {
    /// The byte that opens a frame (`<STX>`, `<LF>`, `<`); None for plain lines.
    pub start: Option<u8>,
    /// The byte that closes a frame (`<LF>`, `<CR>`, `<ETX>`, `>`).
    pub end: u8,
    /// Bytes after `end` that still belong to the frame (a checksum or BCC).
    pub trailer_bytes: usize,
    /// Longest accepted frame, delimiters and trailer excluded.
    pub max_frame_bytes: usize,
}

impl Framing {
    /// Lines ending in LF (a CR before it is stripped from the body), e.g. MT-SICS.
    pub const fn lines(max_frame_bytes: usize) -> Self {
        Self {
            start: None,
            end: b'\n',
            trailer_bytes: 0,
            max_frame_bytes,
        }
    }

    /// Frames between `start` and `end`, followed by `trailer_bytes` check bytes.
    pub const fn delimited(start: u8, end: u8, trailer_bytes: usize, max: usize) -> Self {
        Self {
            start: Some(start),
            end,
            trailer_bytes,
            max_frame_bytes: max,
        }
    }
}

/// An error for one frame of input; decoding can go on afterwards except after `Io`.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// A frame exceeded the length cap; its bytes up to the next frame are dropped.
    #[error("frame longer than {max_frame_bytes} bytes, discarded up to the next frame")]
    FrameTooLong {
        /// The cap that was exceeded.
        max_frame_bytes: usize,
    },
    /// Bytes outside any frame (noise, or a frame that lost bytes) were dropped.
    #[error("{bytes} bytes outside a frame dropped")]
    Garbage {
        /// How many bytes were dropped.
        bytes: usize,
    },
    /// A complete frame that is not a valid reply (bad check byte, bad field, ...).
    #[error("invalid frame {line:?}: {source}")]
    Frame {
        /// What is wrong with it, typed by the protocol's frame module.
        source: Box<dyn std::error::Error + Send + Sync>,
        /// The frame, lossily decoded and escaped, for the log.
        line: String,
    },
    /// The stream ended in the middle of a frame.
    #[error("stream ended inside a frame ({bytes} bytes without terminator)")]
    Truncated {
        /// How many bytes were left.
        bytes: usize,
    },
    /// Reading from the underlying stream failed.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

impl CodecError {
    /// True when decoding can go on with the following bytes.
    pub fn is_recoverable(&self) -> bool {
        !matches!(self, CodecError::Io(_))
    }

    /// Wraps a protocol's typed frame error together with the offending bytes.
    pub fn frame(
        source: impl std::error::Error + Send + Sync + 'static,
        frame: &[u8],
    ) -> CodecError {
        CodecError::Frame {
            source: Box::new(source),
            line: String::from_utf8_lossy(frame).escape_debug().to_string(),
        }
    }
}

/// One frame cut off the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawFrame {
    /// The bytes as received, delimiters and trailer included (kept for audit).
    pub raw: Vec<u8>,
    body_start: usize,
    body_end: usize,
}

impl RawFrame {
    /// The frame's content between the delimiters (for lines: without CR LF).
    pub fn body(&self) -> &[u8] {
        &self.raw[self.body_start..self.body_end]
    }

    /// The check bytes after the end byte.
    pub fn trailer(&self) -> &[u8] {
        &self.raw[(self.body_end + 1).min(self.raw.len())..]
    }
}

/// Cuts frames off a `BytesMut` according to a `Framing`; see the module docs for the rules.
#[derive(Debug, Clone)]
pub struct FrameSplitter {
    framing: Framing,
    /// Set while dropping the rest of an over-long frame.
    discarding: bool,
    /// Bytes at the front of the buffer already searched for the end byte.
    scanned: usize,
}

fn is_line_noise(b: u8) -> bool {
    matches!(b, b'\r' | b'\n')
}

impl FrameSplitter {
    /// A splitter for `framing` (a zero cap is raised to 1).
    pub fn new(mut framing: Framing) -> Self {
        framing.max_frame_bytes = framing.max_frame_bytes.max(1);
        Self {
            framing,
            discarding: false,
            scanned: 0,
        }
    }

    /// The framing in use.
    pub fn framing(&self) -> Framing {
        self.framing
    }

    /// Forgets any partial state (after the caller cleared the buffer).
    pub fn reset(&mut self) {
        self.discarding = false;
        self.scanned = 0;
    }

    /// Returns the next complete frame, None when more bytes are needed, or an error once
    /// per dropped run of bytes.
    pub fn next_frame(&mut self, buf: &mut BytesMut) -> Result<Option<RawFrame>, CodecError> {
        match self.framing.start {
            Some(start) => self.next_delimited(buf, start),
            None => self.next_line(buf),
        }
    }

    /// Called at end of stream: any unterminated bytes are reported and dropped.
    pub fn finish(&mut self, buf: &mut BytesMut) -> Result<Option<RawFrame>, CodecError> {
        if let Some(frame) = self.next_frame(buf)? {
            return Ok(Some(frame));
        }
        let discarding = std::mem::replace(&mut self.discarding, false);
        self.scanned = 0;
        let bytes = buf.len();
        buf.advance(bytes);
        if bytes > 0 && !discarding {
            return Err(CodecError::Truncated { bytes });
        }
        Ok(None)
    }

    /// No end byte yet: wait for more, unless the frame is already over the cap. One byte of
    /// slack covers the start byte, or the CR of a line still waiting for its LF.
    fn await_end(&mut self, buf: &mut BytesMut) -> Result<Option<RawFrame>, CodecError> {
        if buf.len() > self.framing.max_frame_bytes + 1 {
            buf.clear();
            self.scanned = 0;
            self.discarding = true;
            return Err(CodecError::FrameTooLong {
                max_frame_bytes: self.framing.max_frame_bytes,
            });
        }
        self.scanned = buf.len();
        Ok(None)
    }

    fn next_line(&mut self, buf: &mut BytesMut) -> Result<Option<RawFrame>, CodecError> {
        let end = self.framing.end;
        let max = self.framing.max_frame_bytes;
        loop {
            let found = buf[self.scanned.min(buf.len())..]
                .iter()
                .position(|&b| b == end)
                .map(|i| i + self.scanned);
            let Some(pos) = found else {
                if self.discarding {
                    buf.clear();
                    self.scanned = 0;
                    return Ok(None);
                }
                return self.await_end(buf);
            };
            let total = pos + 1 + self.framing.trailer_bytes;
            if buf.len() < total {
                self.scanned = pos;
                return Ok(None);
            }
            self.scanned = 0;
            let raw = buf.split_to(total).to_vec();
            if self.discarding {
                self.discarding = false;
                continue;
            }
            let body_end = if end == b'\n' && pos > 0 && raw[pos - 1] == b'\r' {
                pos - 1
            } else {
                pos
            };
            if body_end > max {
                return Err(CodecError::FrameTooLong {
                    max_frame_bytes: max,
                });
            }
            if raw[..body_end].iter().all(|&b| b == b' ' || b == b'\r') {
                // Blank lines carry nothing; terminals emit them when CR and LF get doubled.
                continue;
            }
            return Ok(Some(RawFrame {
                raw,
                body_start: 0,
                body_end,
            }));
        }
    }

    fn next_delimited(
        &mut self,
        buf: &mut BytesMut,
        start: u8,
    ) -> Result<Option<RawFrame>, CodecError> {
        let end = self.framing.end;
        let max = self.framing.max_frame_bytes;
        loop {
            if buf.is_empty() {
                self.scanned = 0;
                return Ok(None);
            }
            if buf[0] != start {
                let cut = buf.iter().position(|&b| b == start).unwrap_or(buf.len());
                let noise = buf[..cut].iter().all(|&b| is_line_noise(b));
                buf.advance(cut);
                self.scanned = 0;
                if self.discarding || noise {
                    // The tail of a dropped frame was already reported; CR/LF separate frames.
                    self.discarding = self.discarding && buf.is_empty();
                    continue;
                }
                return Err(CodecError::Garbage { bytes: cut });
            }
            self.discarding = false;
            let from = self.scanned.max(1).min(buf.len());
            let hit = buf[from..]
                .iter()
                .position(|&b| b == end || b == start)
                .map(|i| i + from);
            match hit {
                Some(pos) if buf[pos] == start && start != end => {
                    // A new frame begins before this one ended: bytes of this one were lost.
                    buf.advance(pos);
                    self.scanned = 0;
                    return Err(CodecError::Garbage { bytes: pos });
                }
                Some(pos) => {
                    let total = pos + 1 + self.framing.trailer_bytes;
                    if pos - 1 > max {
                        buf.advance(pos + 1);
                        self.scanned = 0;
                        return Err(CodecError::FrameTooLong {
                            max_frame_bytes: max,
                        });
                    }
                    if buf.len() < total {
                        self.scanned = pos;
                        return Ok(None);
                    }
                    self.scanned = 0;
                    let raw = buf.split_to(total).to_vec();
                    return Ok(Some(RawFrame {
                        raw,
                        body_start: 1,
                        body_end: pos,
                    }));
                }
                None => return self.await_end(buf),
            }
        }
    }
}

/// Splits `bytes` at the given (unsorted, possibly out-of-range) cut points; used by the
/// property tests of every decoder to feed a stream in arbitrary chunks.
#[cfg(test)]
pub(crate) fn split_at_points(bytes: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
    points.sort_unstable();
    let mut chunks = Vec::new();
    let mut start = 0;
    for p in points {
        chunks.push(bytes[start..p].to_vec());
        start = p;
    }
    chunks.push(bytes[start..].to_vec());
    chunks
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(framing: Framing, chunks: &[&[u8]]) -> Vec<Result<Vec<u8>, String>> {
        let mut splitter = FrameSplitter::new(framing);
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        let mut drain = |splitter: &mut FrameSplitter, buf: &mut BytesMut, eof: bool| loop {
            let next = if eof {
                splitter.finish(buf)
            } else {
                splitter.next_frame(buf)
            };
            match next {
                Ok(Some(frame)) => out.push(Ok(frame.body().to_vec())),
                Ok(None) => break,
                Err(e) => out.push(Err(e.to_string())),
            }
        };
        for chunk in chunks {
            buf.extend_from_slice(chunk);
            drain(&mut splitter, &mut buf, false);
        }
        drain(&mut splitter, &mut buf, true);
        out
    }

    #[test]
    fn delimited_frames_resync_on_garbage_and_lost_bytes() {
        let stx = Framing::delimited(0x02, 0x03, 1, 16);
        assert_eq!(
            frames(stx, &[b"xy\x02ab\x03", b"Z\r\n\x02c", b"d\x03Q"]),
            vec![
                Err("2 bytes outside a frame dropped".to_owned()),
                Ok(b"ab".to_vec()),
                Ok(b"cd".to_vec()),
            ]
        );
        // The first frame lost its end byte: the second start byte resynchronises.
        assert_eq!(
            frames(stx, &[b"\x02ab\x02cd\x03Q"]),
            vec![
                Err("3 bytes outside a frame dropped".to_owned()),
                Ok(b"cd".to_vec()),
            ]
        );
        // Unterminated at end of stream.
        assert_eq!(
            frames(stx, &[b"\x02ab"]),
            vec![Err(
                "stream ended inside a frame (3 bytes without terminator)".to_owned()
            )]
        );
    }

    #[test]
    fn over_long_delimited_frame_is_reported_once() {
        let framing = Framing::delimited(b'<', b'>', 0, 4);
        let out = frames(framing, &[b"<123456789", b"0123>\r\n<ok>"]);
        assert_eq!(
            out,
            vec![
                Err("frame longer than 4 bytes, discarded up to the next frame".to_owned()),
                Ok(b"ok".to_vec()),
            ]
        );
    }

    #[test]
    fn lines_strip_cr_and_skip_blank_lines() {
        let out = frames(Framing::lines(8), &[b"ab\r\n\r\n", b"cd\n"]);
        assert_eq!(out, vec![Ok(b"ab".to_vec()), Ok(b"cd".to_vec())]);
    }
}
