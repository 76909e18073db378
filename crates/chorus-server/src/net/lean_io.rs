//! A connection's socket with buffers that exist only while bytes are in flight.
//!
//! Every accepted TCP stream is wrapped in [`LeanIo`] before hyper and tungstenite see it.
//! Reads go straight into the caller's buffer when it is large (hyper's); a small reader
//! (tungstenite, configured with a small buffer of its own) gets its bytes from one socket
//! read of up to `read_chunk` bytes into a stack buffer, and only what it could not take yet
//! waits on the heap, freed once taken. Writes are gathered until a flush (or until
//! `write_limit` bytes wait) and the buffer is freed after the flush. So an idle WebSocket
//! holds no read or write buffer here, where tungstenite's own 4 KiB read buffer and its
//! write buffer stayed allocated for the connection's life. Syscalls stay as before: one
//! read per chunk, one write per flushed batch.
//!
//! Two budgets act here, on bytes as they leave the socket and before anything decodes
//! them: the inbound byte bucket (LIMIT-19), which pauses reading once a connection spent
//! its burst so that TCP backpressure slows the sender, and the header deadline, which
//! closes a connection whose first HTTP request's headers are not complete in time
//! (slowloris).

use std::future::Future;
use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// The largest socket read into the stack buffer.
pub const MAX_READ_CHUNK: usize = 16 * 1024;

/// The inbound byte bucket's settings (LIMIT-19): refill rate and capacity, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InboundPace {
    /// Bytes per second the bucket regains.
    pub bytes_per_sec: u64,
    /// The bucket's capacity, full when the connection opens.
    pub burst_bytes: u64,
}

/// What an accepted stream's reads are held to: the byte bucket (none: unpaced) and the
/// time its first request's headers may take (none: unbounded).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InboundRules {
    /// The inbound byte bucket (LIMIT-19).
    pub pace: Option<InboundPace>,
    /// How long the first request's headers may take to arrive.
    pub header_timeout: Option<Duration>,
}

/// A token bucket over bytes, on the time it is given (so it is tested without a clock).
#[derive(Debug)]
struct ByteBucket {
    pace: InboundPace,
    tokens: f64,
    at: Instant,
}

impl ByteBucket {
    /// A full bucket at `now`.
    fn new(pace: InboundPace, now: Instant) -> Self {
        ByteBucket {
            pace,
            tokens: pace.burst_bytes as f64,
            at: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        let cap = self.pace.burst_bytes as f64;
        self.tokens = (self.tokens + elapsed * self.pace.bytes_per_sec as f64).min(cap);
        self.at = now;
    }

    /// Bytes that may be read at `now`, or how long to wait until `quantum` may: a paused
    /// reader wakes for a chunk, not for every byte regained.
    fn allowance(&mut self, now: Instant, quantum: usize) -> Result<usize, Duration> {
        self.refill(now);
        let quantum = (quantum as f64).min(self.pace.burst_bytes as f64).max(1.0);
        if self.tokens >= quantum {
            return Ok(self.tokens as usize);
        }
        let secs = (quantum - self.tokens) / self.pace.bytes_per_sec.max(1) as f64;
        // Rounded up to the timer's millisecond, so the wake finds the quantum there.
        Err(Duration::from_secs_f64(secs) + Duration::from_millis(1))
    }

    fn take(&mut self, n: usize) {
        self.tokens -= n as f64;
    }
}

/// Finds the end of the first request's headers (an empty line) across reads.
#[derive(Debug)]
struct HeaderDeadline {
    deadline: Pin<Box<Sleep>>,
    /// 0: inside a line; 1: after a `\n`; 2: after `\n\r`.
    state: u8,
}

impl HeaderDeadline {
    /// Whether `bytes` complete the headers.
    fn complete(&mut self, bytes: &[u8]) -> bool {
        for &b in bytes {
            self.state = match (self.state, b) {
                (1 | 2, b'\n') => return true,
                (1, b'\r') => 2,
                (_, b'\n') => 1,
                _ => 0,
            };
        }
        false
    }
}

/// A stream with transient read and write buffers.
#[derive(Debug)]
pub struct LeanIo<S> {
    inner: S,
    read_chunk: usize,
    write_limit: usize,
    /// The inbound byte bucket (LIMIT-19); none when unpaced.
    bucket: Option<ByteBucket>,
    /// Set while reading is paused for want of bytes in the bucket.
    pause: Option<Pin<Box<Sleep>>>,
    /// Set until the first request's headers are complete.
    headers: Option<HeaderDeadline>,
    /// Bytes read from the socket that the reader has not taken yet, from `unread_at`.
    unread: Vec<u8>,
    unread_at: usize,
    /// Bytes written and not yet passed to the socket, from `written_at`.
    unwritten: Vec<u8>,
    written_at: usize,
}

impl<S> LeanIo<S> {
    /// Wraps `inner`: socket reads of up to `read_chunk` bytes (at most
    /// [`MAX_READ_CHUNK`]), writes gathered up to `write_limit` bytes.
    pub fn new(inner: S, read_chunk: usize, write_limit: usize) -> Self {
        LeanIo {
            inner,
            read_chunk: read_chunk.clamp(1, MAX_READ_CHUNK),
            write_limit,
            unread: Vec::new(),
            unread_at: 0,
            unwritten: Vec::new(),
            written_at: 0,
            bucket: None,
            pause: None,
            headers: None,
        }
    }

    /// Holds reads to `rules` from now on: the bucket starts full, the header deadline
    /// runs from now.
    pub fn with_rules(mut self, rules: InboundRules) -> Self {
        let now = Instant::now();
        self.bucket = rules.pace.map(|pace| ByteBucket::new(pace, now));
        self.headers = rules.header_timeout.map(|t| HeaderDeadline {
            deadline: Box::pin(tokio::time::sleep_until(now + t)),
            state: 0,
        });
        self
    }

    /// The wrapped stream.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Bytes held in this wrapper's buffers right now (read and not taken, written and not
    /// yet passed on).
    pub fn buffered(&self) -> usize {
        self.unread.capacity() + self.unwritten.capacity()
    }
}

impl<S> LeanIo<S> {
    /// Bytes the bucket lets this read take from the socket, or `Pending` while it is
    /// empty: the sleep's wake brings the reader back (LIMIT-19).
    fn poll_allowance(&mut self, cx: &mut Context<'_>) -> Poll<usize> {
        let Some(bucket) = &mut self.bucket else {
            return Poll::Ready(usize::MAX);
        };
        loop {
            if let Some(pause) = &mut self.pause {
                ready!(pause.as_mut().poll(cx));
                self.pause = None;
            }
            match bucket.allowance(Instant::now(), self.read_chunk) {
                Ok(n) => return Poll::Ready(n),
                Err(wait) => {
                    self.pause = Some(Box::pin(tokio::time::sleep(wait)));
                }
            }
        }
    }

    /// Accounts for `got`, just read from the socket.
    fn took(&mut self, got: &[u8]) {
        if let Some(bucket) = &mut self.bucket {
            bucket.take(got.len());
        }
        if let Some(headers) = &mut self.headers {
            if headers.complete(got) {
                self.headers = None;
            }
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for LeanIo<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(headers) = &mut this.headers {
            // Polled first, so that a client sending nothing is woken up and closed too.
            if headers.deadline.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "request headers not complete in time",
                )));
            }
        }
        if buf.remaining() == 0 {
            // Nothing could be handed over: reading the socket now would only stash bytes.
            return Poll::Ready(Ok(()));
        }
        if this.unread_at < this.unread.len() {
            let rest = &this.unread[this.unread_at..];
            let n = rest.len().min(buf.remaining());
            buf.put_slice(&rest[..n]);
            this.unread_at += n;
            if this.unread_at == this.unread.len() {
                this.unread = Vec::new();
                this.unread_at = 0;
            }
            return Poll::Ready(Ok(()));
        }
        let allowed = ready!(this.poll_allowance(cx));
        let large = buf.remaining() >= this.read_chunk;
        if large && allowed >= buf.remaining() {
            let before = buf.filled().len();
            ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
            let len = buf.filled().len();
            this.took(&buf.filled()[before..len]);
            return Poll::Ready(Ok(()));
        }
        // A large reader held to its allowance reads through the stack buffer too.
        let want = if large {
            buf.remaining().min(MAX_READ_CHUNK)
        } else {
            this.read_chunk
        };
        let mut stack = [MaybeUninit::<u8>::uninit(); MAX_READ_CHUNK];
        let mut chunk = ReadBuf::uninit(&mut stack[..want.min(allowed)]);
        ready!(Pin::new(&mut this.inner).poll_read(cx, &mut chunk))?;
        let got = chunk.filled();
        let n = got.len().min(buf.remaining());
        buf.put_slice(&got[..n]);
        if n < got.len() {
            this.unread = got[n..].to_vec();
            this.unread_at = 0;
        }
        this.took(got);
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> LeanIo<S> {
    /// Passes the gathered bytes to the socket; frees the buffer once they are all gone.
    fn poll_write_out(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written_at < self.unwritten.len() {
            let rest = &self.unwritten[self.written_at..];
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, rest))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written_at += n;
        }
        self.unwritten = Vec::new();
        self.written_at = 0;
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for LeanIo<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.unwritten.len() + data.len() > this.write_limit {
            ready!(this.poll_write_out(cx))?;
            if data.len() >= this.write_limit {
                return Pin::new(&mut this.inner).poll_write(cx, data);
            }
        }
        if this.unwritten.capacity() == 0 {
            // One allocation per batch, not one per doubling.
            this.unwritten.reserve(this.write_limit.max(data.len()));
        }
        this.unwritten.extend_from_slice(data);
        Poll::Ready(Ok(data.len()))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.unwritten.is_empty() {
            // Nothing gathered that would have to go first: hyper's vectored writes pass.
            return Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        }
        ready!(this.poll_write_out(cx))?;
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_write_out(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_write_out(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

/// A listener whose accepted streams are [`LeanIo`]s.
#[derive(Debug)]
pub struct LeanListener<L> {
    inner: L,
    read_chunk: usize,
    write_limit: usize,
    rules: InboundRules,
}

impl<L> LeanListener<L> {
    /// Wraps `inner` (see [`LeanIo::new`] for the sizes).
    pub fn new(inner: L, read_chunk: usize, write_limit: usize) -> Self {
        LeanListener {
            inner,
            read_chunk,
            write_limit,
            rules: InboundRules::default(),
        }
    }

    /// Holds every accepted stream to `rules` (see [`LeanIo::with_rules`]).
    pub fn with_rules(mut self, rules: InboundRules) -> Self {
        self.rules = rules;
        self
    }
}

impl<L: axum::serve::Listener> axum::serve::Listener for LeanListener<L> {
    type Io = LeanIo<L::Io>;
    type Addr = L::Addr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (io, addr) = self.inner.accept().await;
        let io = LeanIo::new(io, self.read_chunk, self.write_limit).with_rules(self.rules);
        (io, addr)
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn a_small_reader_gets_every_byte_and_nothing_stays_buffered() {
        let (mut peer, io) = tokio::io::duplex(64 * 1024);
        let mut lean = LeanIo::new(io, 4096, 4096);
        let sent: Vec<u8> = (0..3000u32).map(|i| (i % 251) as u8).collect();
        peer.write_all(&sent).await.unwrap();
        let mut got = Vec::new();
        let mut small = [0u8; 100];
        while got.len() < sent.len() {
            let n = lean.read(&mut small).await.unwrap();
            got.extend_from_slice(&small[..n]);
            if got.len() < sent.len() {
                assert!(lean.buffered() > 0, "the rest of the chunk waits");
            }
        }
        assert_eq!(got, sent);
        assert_eq!(lean.buffered(), 0, "freed once taken");
    }

    #[tokio::test]
    async fn writes_are_gathered_until_a_flush_and_then_freed() {
        let (mut peer, io) = tokio::io::duplex(64 * 1024);
        let mut lean = LeanIo::new(io, 4096, 4096);
        lean.write_all(b"first ").await.unwrap();
        lean.write_all(b"second").await.unwrap();
        assert!(lean.buffered() > 0);
        let mut probe = [0u8; 16];
        let early =
            tokio::time::timeout(std::time::Duration::from_millis(20), peer.read(&mut probe));
        assert!(
            early.await.is_err(),
            "nothing reaches the peer before the flush"
        );
        lean.flush().await.unwrap();
        assert_eq!(lean.buffered(), 0);
        let mut got = [0u8; 12];
        peer.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"first second");
    }

    const PACE: InboundPace = InboundPace {
        bytes_per_sec: 1024 * 1024,
        burst_bytes: 2 * 1024 * 1024,
    };

    #[test]
    fn a_full_bucket_lets_the_burst_through_at_once() {
        let t0 = Instant::now();
        let mut bucket = ByteBucket::new(PACE, t0);
        assert_eq!(bucket.allowance(t0, 4096), Ok(2 * 1024 * 1024));
        bucket.take(2 * 1024 * 1024 - 100);
        assert_eq!(bucket.allowance(t0, 100), Ok(100), "to the last byte");
    }

    #[test]
    fn past_the_burst_reading_waits_for_the_rate() {
        let t0 = Instant::now();
        let mut bucket = ByteBucket::new(PACE, t0);
        bucket.take(2 * 1024 * 1024);
        // A 4 KiB chunk at 1 MiB/s: 3.9 ms, rounded up to the next millisecond.
        let wait = bucket.allowance(t0, 4096).unwrap_err();
        assert!(
            wait >= Duration::from_micros(3906) && wait <= Duration::from_millis(5),
            "{wait:?}"
        );
        // One more MiB takes a second after the burst, not less.
        let half = t0 + Duration::from_millis(500);
        assert_eq!(bucket.allowance(half, 4096), Ok(512 * 1024));
        bucket.take(512 * 1024);
        let second = t0 + Duration::from_millis(1000);
        assert_eq!(bucket.allowance(second, 4096), Ok(512 * 1024));
    }

    #[test]
    fn the_bucket_holds_no_more_than_the_burst() {
        let t0 = Instant::now();
        let mut bucket = ByteBucket::new(PACE, t0);
        bucket.take(1024);
        let later = t0 + Duration::from_secs(60);
        assert_eq!(bucket.allowance(later, 4096), Ok(2 * 1024 * 1024));
    }

    #[tokio::test]
    async fn a_paced_stream_delivers_every_byte_at_the_rate() {
        let (mut peer, io) = tokio::io::duplex(256 * 1024);
        let rules = InboundRules {
            pace: Some(InboundPace {
                bytes_per_sec: 64 * 1024,
                burst_bytes: 16 * 1024,
            }),
            header_timeout: None,
        };
        let mut lean = LeanIo::new(io, 4096, 4096).with_rules(rules);
        let sent: Vec<u8> = (0..32 * 1024u32).map(|i| (i % 251) as u8).collect();
        peer.write_all(&sent).await.unwrap();
        let started = std::time::Instant::now();
        let mut got = Vec::new();
        let mut big = vec![0u8; 64 * 1024];
        while got.len() < sent.len() {
            let n = lean.read(&mut big).await.unwrap();
            got.extend_from_slice(&big[..n]);
        }
        assert_eq!(got, sent);
        // 16 KiB past the burst at 64 KiB/s: a quarter of a second.
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(240), "{took:?}");
    }

    #[tokio::test]
    async fn headers_not_complete_in_time_end_the_stream() {
        let (mut peer, io) = tokio::io::duplex(4096);
        let rules = InboundRules {
            pace: None,
            header_timeout: Some(Duration::from_millis(50)),
        };
        let mut lean = LeanIo::new(io, 4096, 4096).with_rules(rules);
        peer.write_all(b"GET /ws HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        let mut buf = vec![0u8; 8192];
        assert!(lean.read(&mut buf).await.unwrap() > 0);
        let err = lean.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    }

    #[tokio::test]
    async fn complete_headers_stop_the_deadline() {
        let (mut peer, io) = tokio::io::duplex(4096);
        let rules = InboundRules {
            pace: None,
            header_timeout: Some(Duration::from_millis(50)),
        };
        let mut lean = LeanIo::new(io, 4096, 4096).with_rules(rules);
        peer.write_all(b"GET /ws HTTP/1.1\r\nHost: x\r")
            .await
            .unwrap();
        let mut buf = vec![0u8; 8192];
        assert!(lean.read(&mut buf).await.unwrap() > 0);
        peer.write_all(b"\n\r\n").await.unwrap();
        assert!(lean.read(&mut buf).await.unwrap() > 0);
        tokio::time::sleep(Duration::from_millis(100)).await;
        peer.write_all(b"later").await.unwrap();
        assert_eq!(lean.read(&mut buf).await.unwrap(), 5, "still open");
    }

    #[tokio::test]
    async fn writes_past_the_limit_reach_the_socket_without_a_flush() {
        let (mut peer, io) = tokio::io::duplex(64 * 1024);
        let mut lean = LeanIo::new(io, 4096, 8);
        lean.write_all(b"0123456").await.unwrap();
        lean.write_all(b"789abcdef").await.unwrap();
        let mut got = [0u8; 16];
        peer.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"0123456789abcdef");
    }
}
