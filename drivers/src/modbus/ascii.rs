//! Modbus ASCII framing as a translating stream: [`AsciiIo`] sits between
//! an RTU codec (tokio-modbus has no ASCII) and the wire, turning each RTU
//! frame the codec writes into an ASCII frame and each ASCII frame read
//! into the RTU frame the codec expects.
//!
//! ASCII frame (Modbus over Serial Line V1.02, 2.5.2): `:` then the unit
//! address, the PDU and an LRC, each byte as two upper-case hex digits,
//! then CR LF. The LRC is the two's complement of the 8-bit sum of address
//! and PDU. RTU frame: address, PDU, CRC-16 (poly 0xA001, init 0xFFFF) low
//! byte first.
//!
//! Frame boundaries on the way out are the codec's flushes (one request per
//! flush); on the way in, line ends. A frame that does not decode (bad hex,
//! wrong LRC, too long) is an `InvalidData` error: the poller counts it as a
//! failed request and reconnects, the same as a bad CRC on RTU.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Longest ASCII frame: `:` + 2 × (1 address + 253 PDU + 1 LRC) + CR LF.
pub const MAX_ASCII_FRAME_BYTES: usize = 1 + 2 * 255 + 2;
/// Longest RTU frame: address + 253 PDU + 2 CRC.
pub const MAX_RTU_FRAME_BYTES: usize = 256;

/// Why a frame could not be translated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AsciiError {
    #[error("modbus ascii frame does not start with ':'")]
    NoStart,
    #[error("modbus ascii frame has an odd number of hex digits")]
    OddLength,
    #[error("modbus ascii frame has a non-hex character {0:?}")]
    NotHex(char),
    #[error("modbus ascii frame is too short ({0} bytes, at least address, function and LRC)")]
    TooShort(usize),
    #[error("modbus ascii frame is longer than {MAX_ASCII_FRAME_BYTES} bytes")]
    TooLong,
    #[error("modbus ascii LRC mismatch: frame says {got:02X}, content gives {want:02X}")]
    Lrc { got: u8, want: u8 },
    #[error("rtu frame to send has a wrong CRC or is shorter than 4 bytes")]
    BadRtu,
}

/// Modbus RTU CRC-16 (poly 0xA001, init 0xFFFF); sent low byte first.
pub fn crc16(bytes: &[u8]) -> u16 {
    let mut crc = 0xFFFF_u16;
    for byte in bytes {
        crc ^= u16::from(*byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xA001
            } else {
                crc >> 1
            };
        }
    }
    crc
}

/// The LRC of address and PDU.
pub fn lrc(bytes: &[u8]) -> u8 {
    bytes
        .iter()
        .fold(0u8, |sum, b| sum.wrapping_add(*b))
        .wrapping_neg()
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// RTU frame (address, PDU, CRC) → ASCII frame. The CRC is checked, so a
/// frame damaged on our side never goes out with a fresh LRC.
pub fn rtu_to_ascii(frame: &[u8]) -> Result<Vec<u8>, AsciiError> {
    if frame.len() < 4 || frame.len() > MAX_RTU_FRAME_BYTES {
        return Err(AsciiError::BadRtu);
    }
    let (content, crc) = frame.split_at(frame.len() - 2);
    if crc16(content).to_le_bytes() != [crc[0], crc[1]] {
        return Err(AsciiError::BadRtu);
    }
    let mut out = Vec::with_capacity(1 + 2 * (content.len() + 1) + 2);
    out.push(b':');
    for byte in content.iter().copied().chain([lrc(content)]) {
        out.push(HEX[usize::from(byte >> 4)]);
        out.push(HEX[usize::from(byte & 0x0F)]);
    }
    out.extend_from_slice(b"\r\n");
    Ok(out)
}

fn hex_value(c: u8) -> Result<u8, AsciiError> {
    match c {
        b'0'..=b'9' => Ok(c - b'0'),
        b'A'..=b'F' => Ok(c - b'A' + 10),
        // Upper case is the standard; lower case costs nothing to accept.
        b'a'..=b'f' => Ok(c - b'a' + 10),
        _ => Err(AsciiError::NotHex(char::from(c))),
    }
}

/// ASCII frame (from `:` up to, without, CR LF) → RTU frame with its CRC.
pub fn ascii_to_rtu(frame: &[u8]) -> Result<Vec<u8>, AsciiError> {
    let digits = frame.strip_prefix(b":").ok_or(AsciiError::NoStart)?;
    if frame.len() > MAX_ASCII_FRAME_BYTES {
        return Err(AsciiError::TooLong);
    }
    if digits.len() % 2 != 0 {
        return Err(AsciiError::OddLength);
    }
    let bytes = digits
        .chunks(2)
        .map(|pair| Ok(hex_value(pair[0])? << 4 | hex_value(pair[1])?))
        .collect::<Result<Vec<u8>, AsciiError>>()?;
    // Address, function code, LRC.
    if bytes.len() < 3 {
        return Err(AsciiError::TooShort(bytes.len()));
    }
    let (content, got) = bytes.split_at(bytes.len() - 1);
    let want = lrc(content);
    if got[0] != want {
        return Err(AsciiError::Lrc { got: got[0], want });
    }
    let mut out = content.to_vec();
    out.extend_from_slice(&crc16(content).to_le_bytes());
    Ok(out)
}

fn invalid(error: AsciiError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, error)
}

/// A stream speaking ASCII frames on `inner` and RTU frames to its user.
#[derive(Debug)]
pub struct AsciiIo<T> {
    inner: T,
    /// RTU bytes written since the last flush.
    outgoing: Vec<u8>,
    /// The ASCII frame being written out, and how much of it is written.
    encoded: Vec<u8>,
    encoded_sent: usize,
    /// ASCII bytes read, not yet a whole line.
    incoming: Vec<u8>,
    /// Translated RTU bytes not yet handed to the reader.
    decoded: Vec<u8>,
    decoded_read: usize,
}

impl<T> AsciiIo<T> {
    pub fn new(inner: T) -> Self {
        Self {
            inner,
            outgoing: Vec::new(),
            encoded: Vec::new(),
            encoded_sent: 0,
            incoming: Vec::new(),
            decoded: Vec::new(),
            decoded_read: 0,
        }
    }

    /// Takes one whole line off `incoming`, if there is one, and translates it.
    fn next_frame(&mut self) -> Option<Result<Vec<u8>, AsciiError>> {
        loop {
            let end = self.incoming.iter().position(|b| *b == b'\n')?;
            let line: Vec<u8> = self.incoming.drain(..=end).collect();
            // Everything before the last start character is noise or a cut
            // frame, and a line without one is idle noise (a stray CR LF, an
            // adapter's echo): a receiver waits for the next start.
            let Some(start) = line.iter().rposition(|b| *b == b':') else {
                continue;
            };
            let frame = line[start..].strip_suffix(b"\n").unwrap_or(&line[start..]);
            let frame = frame.strip_suffix(b"\r").unwrap_or(frame);
            return Some(ascii_to_rtu(frame));
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for AsciiIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            if this.decoded_read < this.decoded.len() {
                let rest = &this.decoded[this.decoded_read..];
                let n = rest.len().min(buf.remaining());
                buf.put_slice(&rest[..n]);
                this.decoded_read += n;
                return Poll::Ready(Ok(()));
            }
            match this.next_frame() {
                Some(Ok(frame)) => {
                    this.decoded = frame;
                    this.decoded_read = 0;
                    continue;
                }
                Some(Err(error)) => return Poll::Ready(Err(invalid(error))),
                None => {}
            }
            if this.incoming.len() > MAX_ASCII_FRAME_BYTES {
                this.incoming.clear();
                return Poll::Ready(Err(invalid(AsciiError::TooLong)));
            }
            let mut chunk = [0u8; 128];
            let mut read = ReadBuf::new(&mut chunk);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut read))?;
            if read.filled().is_empty() {
                // End of stream.
                return Poll::Ready(Ok(()));
            }
            this.incoming.extend_from_slice(read.filled());
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for AsciiIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.outgoing.len() + buf.len() > MAX_RTU_FRAME_BYTES {
            self.outgoing.clear();
            return Poll::Ready(Err(invalid(AsciiError::BadRtu)));
        }
        self.outgoing.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.encoded_sent == this.encoded.len() && !this.outgoing.is_empty() {
            let frame = std::mem::take(&mut this.outgoing);
            this.encoded = rtu_to_ascii(&frame).map_err(invalid)?;
            this.encoded_sent = 0;
        }
        while this.encoded_sent < this.encoded.len() {
            let n = ready!(
                Pin::new(&mut this.inner).poll_write(cx, &this.encoded[this.encoded_sent..])
            )?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            this.encoded_sent += n;
        }
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.as_mut().poll_flush(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    fn with_crc(content: &[u8]) -> Vec<u8> {
        let mut frame = content.to_vec();
        frame.extend_from_slice(&crc16(content).to_le_bytes());
        frame
    }

    /// Frames from the Modbus over Serial Line specification and checked
    /// by hand: read holding registers of unit 1 at 0x0000, count 1.
    #[test]
    fn known_frames_translate_both_ways() {
        let cases: [(&[u8], &[u8]); 3] = [
            (
                &[0x01, 0x03, 0x00, 0x00, 0x00, 0x01],
                b":010300000001FB\r\n",
            ),
            (
                &[0x11, 0x03, 0x00, 0x6B, 0x00, 0x03],
                b":1103006B00037E\r\n",
            ),
            (
                &[0xF7, 0x03, 0x13, 0x89, 0x00, 0x0A],
                b":F7031389000A60\r\n",
            ),
        ];
        for (content, ascii) in cases {
            assert_eq!(rtu_to_ascii(&with_crc(content)).unwrap(), ascii);
            assert_eq!(
                ascii_to_rtu(&ascii[..ascii.len() - 2]).unwrap(),
                with_crc(content)
            );
        }
    }

    #[test]
    fn damaged_frames_name_the_problem() {
        let cases: [(&[u8], AsciiError); 6] = [
            (b"010300000001FB", AsciiError::NoStart),
            (b":010300000001F", AsciiError::OddLength),
            (b":0103000G0001FB", AsciiError::NotHex('G')),
            (b":0103", AsciiError::TooShort(2)),
            (
                b":010300000001FC",
                AsciiError::Lrc {
                    got: 0xFC,
                    want: 0xFB,
                },
            ),
            (&[b':'; MAX_ASCII_FRAME_BYTES + 1], AsciiError::TooLong),
        ];
        for (frame, error) in cases {
            assert_eq!(ascii_to_rtu(frame).unwrap_err(), error);
        }
        assert_eq!(
            rtu_to_ascii(&[0x01, 0x03, 0, 0, 0, 1, 0, 0]).unwrap_err(),
            AsciiError::BadRtu
        );
    }

    #[tokio::test]
    async fn the_stream_translates_a_request_and_a_noisy_reply() {
        let (ours, mut wire) = tokio::io::duplex(1024);
        let mut io = AsciiIo::new(ours);
        io.write_all(&with_crc(&[0x01, 0x03, 0x00, 0x00, 0x00, 0x01]))
            .await
            .unwrap();
        io.flush().await.unwrap();
        let mut sent = [0u8; 17];
        wire.read_exact(&mut sent).await.unwrap();
        assert_eq!(&sent, b":010300000001FB\r\n");
        // An idle CR LF, then line noise and a reply cut in two pieces that
        // lacks its LRC: refused as data, not handed on.
        wire.write_all(b"\r\n\x00\x7f:0103020").await.unwrap();
        wire.write_all(b"0E9\r\n").await.unwrap();
        let reply = with_crc(&[0x01, 0x03, 0x02, 0x00, 0xE9]);
        let mut got = vec![0u8; reply.len()];
        let read = io.read_exact(&mut got).await;
        assert_eq!(read.unwrap_err().kind(), io::ErrorKind::InvalidData);
        // A cut frame followed by a whole one on the same line: the whole one counts.
        // LRC = -(0x01 + 0x03 + 0x02 + 0x00 + 0xE9) = 0x11.
        wire.write_all(b":0103:01030200E911\r\n").await.unwrap();
        io.read_exact(&mut got).await.unwrap();
        assert_eq!(got, reply);
        wire.write_all(b":01030200E911\r\n").await.unwrap();
        io.read_exact(&mut got).await.unwrap();
        assert_eq!(got, reply);
    }

    proptest::proptest! {
        #[test]
        fn any_frame_round_trips(content in proptest::collection::vec(proptest::num::u8::ANY, 2..=254)) {
            let rtu = with_crc(&content);
            let ascii = rtu_to_ascii(&rtu).unwrap();
            proptest::prop_assert_eq!(ascii_to_rtu(&ascii[..ascii.len() - 2]).unwrap(), rtu);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..600)) {
            drop(ascii_to_rtu(&bytes));
            drop(rtu_to_ascii(&bytes));
        }
    }
}
