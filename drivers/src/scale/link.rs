//! `Link`: one request, one reply, over any `AsyncRead + AsyncWrite` byte stream, for every
//! protocol. The protocol supplies a `Decode` (frames off the byte stream) and says which
//! decoded frame answers the request; the link does the rest the same way for all of them:
//! drop stale input before a command, write it, read and decode until the answer arrives,
//! skip (log and count) garbage and unrelated frames up to `MAX_SKIPPED_FRAMES_PER_REQUEST`,
//! and give up after the request's timeout.
//!
//! A request without bytes (reading the next frame of a continuous stream) keeps what is
//! already buffered, because for a stream those bytes are the freshest data, not stale ones.

use std::fmt;
use std::time::Duration;

use bytes::BytesMut;
use futures::FutureExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::scale::error::ScaleError;
use crate::scale::framing::CodecError;

/// A terminal that keeps sending frames that are not our reply is treated as a protocol error
/// rather than letting one request wait on an endless stream.
pub const MAX_SKIPPED_FRAMES_PER_REQUEST: u32 = 64;

/// Bounds the non-blocking drain of stale input before each command.
const MAX_STALE_READS: usize = 16;

/// A byte-stream decoder a `Link` can drive.
pub trait Decode: Send {
    /// What one decoded frame becomes.
    type Item: Send;
    /// The next item, None when more bytes are needed, or a per-frame error.
    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Self::Item>, CodecError>;
    /// Like `decode`, at end of stream.
    fn decode_eof(&mut self, buf: &mut BytesMut) -> Result<Option<Self::Item>, CodecError>;
    /// Forget partial state after the buffer was cleared.
    fn reset(&mut self);
}

/// Request/response over a byte stream `T` with decoder `C`.
pub struct Link<T, C> {
    io: T,
    codec: C,
    read_buf: BytesMut,
    skipped_frames_total: u64,
}

impl<T, C> fmt::Debug for Link<T, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Link")
            .field("skipped_frames_total", &self.skipped_frames_total)
            .field("buffered_bytes", &self.read_buf.len())
            .finish_non_exhaustive()
    }
}

impl<T, C> Link<T, C>
where
    T: AsyncRead + AsyncWrite + Unpin + Send,
    C: Decode,
{
    /// A link over `io` decoding with `codec`.
    pub fn new(io: T, codec: C) -> Self {
        Self {
            io,
            codec,
            read_buf: BytesMut::with_capacity(256),
            skipped_frames_total: 0,
        }
    }

    /// How many garbage or unrelated frames were skipped so far.
    pub fn skipped_frames_total(&self) -> u64 {
        self.skipped_frames_total
    }

    /// The decoder, e.g. to reconfigure it between requests.
    pub fn codec_mut(&mut self) -> &mut C {
        &mut self.codec
    }

    /// Gives the byte stream back.
    pub fn into_inner(self) -> T {
        self.io
    }

    /// Sends `request` (nothing when empty) and returns the first decoded item `accept`s,
    /// within `timeout_ms`. `what` names the request in logs and errors.
    pub async fn transact(
        &mut self,
        request: &[u8],
        timeout_ms: u64,
        what: &str,
        accept: impl FnMut(&C::Item) -> bool,
    ) -> Result<C::Item, ScaleError> {
        if !request.is_empty() {
            self.discard_stale_input();
        }
        let timeout = Duration::from_millis(timeout_ms);
        match tokio::time::timeout(timeout, self.exchange(request, what, accept)).await {
            Ok(result) => result,
            Err(_) => {
                tracing::debug!(request = what, timeout_ms, "no reply");
                Err(ScaleError::Timeout { timeout_ms })
            }
        }
    }

    /// Anything that arrived before a command was sent is a late answer to an earlier one
    /// (e.g. after a timeout); dropping it keeps it from being taken for the new reply.
    fn discard_stale_input(&mut self) {
        for _ in 0..MAX_STALE_READS {
            match self.io.read_buf(&mut self.read_buf).now_or_never() {
                Some(Ok(n)) if n > 0 => {}
                _ => break,
            }
        }
        if !self.read_buf.is_empty() {
            self.skipped_frames_total += 1;
            tracing::debug!(
                bytes = self.read_buf.len(),
                data = %String::from_utf8_lossy(&self.read_buf).escape_debug(),
                "dropping stale input before command"
            );
            self.read_buf.clear();
            self.codec.reset();
        }
    }

    fn skip(
        &mut self,
        what: &str,
        skipped: &mut u32,
        why: &dyn fmt::Display,
    ) -> Result<(), ScaleError> {
        self.skipped_frames_total += 1;
        *skipped += 1;
        tracing::warn!(request = what, skipped = *skipped, "skipping input: {why}");
        if *skipped > MAX_SKIPPED_FRAMES_PER_REQUEST {
            return Err(ScaleError::Protocol(format!(
                "more than {MAX_SKIPPED_FRAMES_PER_REQUEST} frames without a reply to {what}"
            )));
        }
        Ok(())
    }

    async fn exchange(
        &mut self,
        request: &[u8],
        what: &str,
        mut accept: impl FnMut(&C::Item) -> bool,
    ) -> Result<C::Item, ScaleError> {
        if !request.is_empty() {
            self.io.write_all(request).await?;
            self.io.flush().await?;
        }
        let mut skipped = 0u32;
        loop {
            match self.codec.decode(&mut self.read_buf) {
                Ok(Some(item)) if accept(&item) => return Ok(item),
                Ok(Some(_)) => self.skip(what, &mut skipped, &"a frame that is no answer")?,
                Ok(None) => {
                    let n = self.io.read_buf(&mut self.read_buf).await?;
                    if n == 0 {
                        if let Ok(Some(item)) = self.codec.decode_eof(&mut self.read_buf)
                            && accept(&item)
                        {
                            return Ok(item);
                        }
                        return Err(ScaleError::Disconnected);
                    }
                }
                Err(error) if error.is_recoverable() => self.skip(what, &mut skipped, &error)?,
                Err(error) => return Err(ScaleError::Protocol(error.to_string())),
            }
        }
    }
}
