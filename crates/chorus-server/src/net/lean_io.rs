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

use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The largest socket read into the stack buffer.
pub const MAX_READ_CHUNK: usize = 16 * 1024;

/// A stream with transient read and write buffers.
#[derive(Debug)]
pub struct LeanIo<S> {
    inner: S,
    read_chunk: usize,
    write_limit: usize,
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
        }
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

impl<S: AsyncRead + Unpin> AsyncRead for LeanIo<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
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
        if buf.remaining() >= this.read_chunk {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        }
        let mut stack = [MaybeUninit::<u8>::uninit(); MAX_READ_CHUNK];
        let mut chunk = ReadBuf::uninit(&mut stack[..this.read_chunk]);
        ready!(Pin::new(&mut this.inner).poll_read(cx, &mut chunk))?;
        let got = chunk.filled();
        let n = got.len().min(buf.remaining());
        buf.put_slice(&got[..n]);
        if n < got.len() {
            this.unread = got[n..].to_vec();
            this.unread_at = 0;
        }
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
}

impl<L> LeanListener<L> {
    /// Wraps `inner` (see [`LeanIo::new`] for the sizes).
    pub fn new(inner: L, read_chunk: usize, write_limit: usize) -> Self {
        LeanListener {
            inner,
            read_chunk,
            write_limit,
        }
    }
}

impl<L: axum::serve::Listener> axum::serve::Listener for LeanListener<L> {
    type Io = LeanIo<L::Io>;
    type Addr = L::Addr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (io, addr) = self.inner.accept().await;
        (LeanIo::new(io, self.read_chunk, self.write_limit), addr)
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
