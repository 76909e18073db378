//! The bounded outbound queue of one connection (LIMIT-7..10, CURS-15).
//!
//! Frames wait in a bounded channel between the core (which enqueues without ever blocking,
//! under the hub lock) and the connection's writer task. The queue is bounded twice: in
//! frames and in bytes (so that its memory is bounded whatever the frames' sizes, LIMIT-7;
//! a single frame larger than the byte bound still passes an empty queue, LIMIT-10). A full
//! queue means the client stopped reading: the connection is closed with 4200 at once,
//! instead of growing memory or slowing the senders. Droppable frames (`cursor:moved`) are
//! dropped while the queue is above its watermark.

use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::Arc;

use axum::extract::ws::Utf8Bytes;
use chorus_protocol::CloseCode;
use tokio::sync::{mpsc, Notify};

/// A frame as queued: reference-counted bytes, so one serialization fanned out to many
/// connections is shared, never copied per recipient, down to the socket write.
pub type WireFrame = Utf8Bytes;

/// One item of the queue.
#[derive(Debug, Clone, PartialEq)]
pub enum Outbound {
    /// A frame to write.
    Frame(WireFrame),
    /// Close with this code once everything queued before it is written.
    Close(CloseCode),
}

/// What happened to an enqueued frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enqueued {
    /// Queued.
    Queued,
    /// A droppable frame above the watermark: dropped (CURS-15).
    Dropped,
    /// The queue was full: the connection is being closed with 4200 (LIMIT-8).
    Overflow,
    /// The connection is already closing or gone.
    Closed,
}

/// Out-of-band close request that bypasses the queue (a full queue cannot carry it).
#[derive(Debug, Default)]
pub struct Closer {
    code: AtomicU16,
    notify: Notify,
}

impl Closer {
    /// Asks for an immediate close with `code`; the first request wins.
    pub fn close_now(&self, code: CloseCode) {
        if self
            .code
            .compare_exchange(0, code.code(), Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            self.notify.notify_one();
        }
    }

    /// The immediate close requested, if any.
    pub fn requested(&self) -> Option<CloseCode> {
        CloseCode::from_code(self.code.load(Ordering::Acquire))
    }

    /// Resolves once an immediate close has been requested.
    pub async fn wait(&self) -> CloseCode {
        loop {
            if let Some(code) = self.requested() {
                return code;
            }
            self.notify.notified().await;
        }
    }
}

/// The bounds of one connection's queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueLimits {
    /// Items (frames and closes) the queue holds at most.
    pub capacity: usize,
    /// Queue length from which droppable frames are dropped.
    pub watermark: usize,
    /// Bytes of queued frames above which the connection is closed with 4200.
    pub max_bytes: usize,
}

/// The sending side of a connection's queue, held by the hub.
#[derive(Debug, Clone)]
pub struct ConnHandle {
    tx: mpsc::Sender<Outbound>,
    closer: Arc<Closer>,
    watermark: usize,
    max_bytes: usize,
    bytes: Arc<AtomicUsize>,
}

/// The receiving side, held by the connection's writer.
#[derive(Debug)]
pub struct ConnQueue {
    rx: mpsc::Receiver<Outbound>,
    /// Immediate close requests.
    pub closer: Arc<Closer>,
    bytes: Arc<AtomicUsize>,
}

/// A queue within `limits`.
pub fn queue(limits: QueueLimits) -> (ConnHandle, ConnQueue) {
    let (tx, rx) = mpsc::channel(limits.capacity.max(1));
    let closer = Arc::new(Closer::default());
    let bytes = Arc::new(AtomicUsize::new(0));
    let handle = ConnHandle {
        tx,
        closer: closer.clone(),
        watermark: limits.watermark,
        max_bytes: limits.max_bytes,
        bytes: bytes.clone(),
    };
    (handle, ConnQueue { rx, closer, bytes })
}

impl ConnQueue {
    /// The next item, once one is queued; `None` once every handle is gone.
    pub async fn recv(&mut self) -> Option<Outbound> {
        let item = self.rx.recv().await?;
        Some(self.taken(item))
    }

    /// The next item if one is queued now.
    pub fn try_recv(&mut self) -> Option<Outbound> {
        let item = self.rx.try_recv().ok()?;
        Some(self.taken(item))
    }

    fn taken(&self, item: Outbound) -> Outbound {
        if let Outbound::Frame(frame) = &item {
            self.bytes.fetch_sub(frame.len(), Ordering::AcqRel);
        }
        item
    }
}

impl ConnHandle {
    /// Items waiting in the queue.
    pub fn len(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }

    /// Whether nothing waits in the queue.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Enqueues a frame without ever waiting.
    pub fn send(&self, frame: WireFrame, droppable: bool) -> Enqueued {
        if self.closer.requested().is_some() {
            return Enqueued::Closed;
        }
        if droppable && self.len() >= self.watermark {
            return Enqueued::Dropped;
        }
        let len = frame.len();
        let queued = self.bytes.load(Ordering::Acquire);
        if queued > 0 && queued + len > self.max_bytes {
            self.closer.close_now(CloseCode::SlowConsumer);
            return Enqueued::Overflow;
        }
        // Counted before the writer can take it, so the count never goes below zero.
        self.bytes.fetch_add(len, Ordering::AcqRel);
        match self.tx.try_send(Outbound::Frame(frame)) {
            Ok(()) => Enqueued::Queued,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.bytes.fetch_sub(len, Ordering::AcqRel);
                self.closer.close_now(CloseCode::SlowConsumer);
                Enqueued::Overflow
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                self.bytes.fetch_sub(len, Ordering::AcqRel);
                Enqueued::Closed
            }
        }
    }

    /// Closes after the frames already queued (CONN-19, TRANS-24); when the queue is full the
    /// close happens at once with the same code.
    pub fn close_after_queued(&self, code: CloseCode) {
        if let Err(mpsc::error::TrySendError::Full(_)) = self.tx.try_send(Outbound::Close(code)) {
            self.closer.close_now(code);
        }
    }

    /// Closes at once, dropping what is queued.
    pub fn close_now(&self, code: CloseCode) {
        self.closer.close_now(code);
    }

    /// Resolves when an immediate close was requested (slow consumer, full queue).
    pub async fn closing(&self) -> CloseCode {
        self.closer.wait().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(s: &str) -> WireFrame {
        WireFrame::from(s)
    }

    fn limits(capacity: usize, watermark: usize) -> QueueLimits {
        QueueLimits {
            capacity,
            watermark,
            max_bytes: 1 << 20,
        }
    }

    #[test]
    fn the_byte_bound_closes_before_the_frame_bound() {
        let (h, mut q) = queue(QueueLimits {
            capacity: 100,
            watermark: 100,
            max_bytes: 10,
        });
        // A frame larger than the bound passes an empty queue (LIMIT-10)...
        assert_eq!(h.send(frame("0123456789abc"), false), Enqueued::Queued);
        // ...and once it is written, the bytes are free again.
        assert_eq!(q.try_recv(), Some(Outbound::Frame(frame("0123456789abc"))));
        assert_eq!(h.send(frame("123456"), false), Enqueued::Queued);
        assert_eq!(h.send(frame("7890"), false), Enqueued::Queued);
        assert_eq!(h.send(frame("x"), false), Enqueued::Overflow);
        assert_eq!(q.closer.requested(), Some(CloseCode::SlowConsumer));
    }

    #[test]
    fn full_queue_requests_slow_consumer_close() {
        let (h, q) = queue(limits(2, 2));
        assert_eq!(h.send(frame("a"), false), Enqueued::Queued);
        assert_eq!(h.send(frame("b"), false), Enqueued::Queued);
        assert_eq!(h.send(frame("c"), false), Enqueued::Overflow);
        assert_eq!(q.closer.requested(), Some(CloseCode::SlowConsumer));
        // Once closing, nothing more is queued.
        assert_eq!(h.send(frame("d"), false), Enqueued::Closed);
    }

    #[test]
    fn droppable_frames_are_dropped_above_the_watermark() {
        let (h, mut q) = queue(limits(4, 1));
        assert_eq!(h.send(frame("cursor"), true), Enqueued::Queued);
        assert_eq!(h.send(frame("cursor"), true), Enqueued::Dropped);
        assert_eq!(h.send(frame("message"), false), Enqueued::Queued);
        assert_eq!(q.try_recv().unwrap(), Outbound::Frame(frame("cursor")));
        assert_eq!(q.try_recv().unwrap(), Outbound::Frame(frame("message")));
        assert!(q.closer.requested().is_none());
    }

    #[test]
    fn ordered_close_follows_queued_frames() {
        let (h, mut q) = queue(limits(4, 4));
        h.send(frame("last"), false);
        h.close_after_queued(CloseCode::GoingAway);
        assert_eq!(q.try_recv().unwrap(), Outbound::Frame(frame("last")));
        assert_eq!(q.try_recv().unwrap(), Outbound::Close(CloseCode::GoingAway));
    }

    #[test]
    fn ordered_close_on_a_full_queue_is_immediate() {
        let (h, q) = queue(limits(1, 1));
        h.send(frame("a"), false);
        h.close_after_queued(CloseCode::GoingAway);
        assert_eq!(q.closer.requested(), Some(CloseCode::GoingAway));
    }

    #[tokio::test]
    async fn first_immediate_close_wins() {
        let (h, q) = queue(limits(1, 1));
        h.close_now(CloseCode::SlowConsumer);
        h.close_now(CloseCode::GoingAway);
        assert_eq!(q.closer.wait().await, CloseCode::SlowConsumer);
    }
}
