//! How many HTTP/2 HEADERS frames a client connection has sent, counted
//! on the plaintext the `h2` server reads ([`super::h2_serve`]), so that
//! the connection task knows when no stream can be waiting to be accepted.
//!
//! The task accepts streams with `poll_accept`, which first polls the
//! whole `h2` connection (reads, flushes) and only then hands out a
//! decoded stream; after taking one it has to call it again, to take the
//! next. At one stream at a time that second call finds nothing and costs
//! a whole connection poll (~2,200 instructions per call, issue 17). Every
//! new stream opens with one HEADERS frame, so when as many streams were
//! accepted as HEADERS frames were read, none is waiting (a HEADERS frame
//! that opened no stream, such as trailers or a refused stream, only keeps
//! the count ahead, and the task polls as before).

use std::{
    io,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll, ready},
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The client connection preface ("PRI * HTTP/2.0...") before the frames.
const PREFACE_LEN: usize = 24;
/// A frame header: length (24 bits), type, flags, stream id (32 bits).
const FRAME_HEADER_LEN: usize = 9;
const HEADERS: u8 = 0x1;

/// Where the byte stream stands: preface, a frame header, or a payload.
#[derive(Debug)]
pub(crate) struct Scan {
    preface_left: usize,
    header: [u8; FRAME_HEADER_LEN],
    have: usize,
    payload_left: usize,
}

impl Default for Scan {
    fn default() -> Self {
        Self {
            preface_left: PREFACE_LEN,
            header: [0; FRAME_HEADER_LEN],
            have: 0,
            payload_left: 0,
        }
    }
}

impl Scan {
    /// Reads the next bytes of the stream; the HEADERS frames whose header
    /// ended in them.
    pub(crate) fn feed(&mut self, mut bytes: &[u8]) -> u64 {
        let mut headers = 0;
        while !bytes.is_empty() {
            let skip = if self.preface_left > 0 {
                &mut self.preface_left
            } else {
                &mut self.payload_left
            };
            if *skip > 0 {
                let n = (*skip).min(bytes.len());
                *skip -= n;
                bytes = &bytes[n..];
                continue;
            }
            let n = (FRAME_HEADER_LEN - self.have).min(bytes.len());
            self.header[self.have..self.have + n].copy_from_slice(&bytes[..n]);
            self.have += n;
            bytes = &bytes[n..];
            if self.have == FRAME_HEADER_LEN {
                let [a, b, c, kind, ..] = self.header;
                self.payload_left = (usize::from(a) << 16) | (usize::from(b) << 8) | usize::from(c);
                headers += u64::from(kind == HEADERS);
                self.have = 0;
            }
        }
        headers
    }
}

/// The connection's IO, counting the HEADERS frames read into `seen`.
pub(crate) struct HeadersSeen<I> {
    io: I,
    scan: Scan,
    seen: Arc<AtomicU64>,
}

impl<I> HeadersSeen<I> {
    /// `io`, and the count its reads keep.
    pub(crate) fn new(io: I) -> (Self, Arc<AtomicU64>) {
        let seen = Arc::new(AtomicU64::new(0));
        let io = Self {
            io,
            scan: Scan::default(),
            seen: seen.clone(),
        };
        (io, seen)
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for HeadersSeen<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.io).poll_read(cx, buf))?;
        let headers = this.scan.feed(&buf.filled()[before..]);
        if headers > 0 {
            this.seen.fetch_add(headers, Ordering::Release);
        }
        Poll::Ready(Ok(()))
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for HeadersSeen<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, payload: usize) -> Vec<u8> {
        let len = u32::try_from(payload).expect("small").to_be_bytes();
        let mut f = vec![len[1], len[2], len[3], kind, 0x4, 0, 0, 0, 1];
        f.resize(FRAME_HEADER_LEN + payload, 0xaa);
        f
    }

    #[test]
    fn counts_headers_frames_across_any_split_of_the_stream() {
        let mut stream = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        stream.extend(frame(0x4, 12)); // SETTINGS
        stream.extend(frame(HEADERS, 300)); // a stream opens
        stream.extend(frame(0x9, 20)); // CONTINUATION: the same block
        stream.extend(frame(0x0, 30)); // DATA
        stream.extend(frame(HEADERS, 1)); // another
        stream.extend(frame(0x3, 4)); // RST_STREAM
        for chunk in [1, 2, 7, 9, 10, 64, stream.len()] {
            let mut scan = Scan::default();
            let seen: u64 = stream.chunks(chunk).map(|c| scan.feed(c)).sum();
            assert_eq!(seen, 2, "chunks of {chunk}");
            assert_eq!(
                (scan.have, scan.payload_left),
                (0, 0),
                "at a frame boundary"
            );
        }
    }

    #[test]
    fn a_payload_that_looks_like_a_frame_header_is_skipped() {
        let mut stream = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        let mut data = frame(0x0, 18);
        data[FRAME_HEADER_LEN..].copy_from_slice(&frame(HEADERS, 9));
        stream.extend(data);
        assert_eq!(Scan::default().feed(&stream), 0);
    }
}
