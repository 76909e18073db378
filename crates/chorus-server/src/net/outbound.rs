//! The bounded outbound queue of one connection (LIMIT-7..10, CURS-15).
//!
//! Frames wait in a bounded queue between the core (which enqueues without ever blocking,
//! under the hub lock) and the connection's writer task. The queue is bounded twice: in
//! frames and in bytes (so that its memory is bounded whatever the frames' sizes, LIMIT-7;
//! a single frame larger than the byte bound still passes an empty queue, LIMIT-10). A full
//! queue means the client stopped reading: the connection is closed with 4200 at once,
//! instead of growing memory or slowing the senders. Droppable frames (`cursor:moved`) are
//! dropped while the queue is above its watermark.
//!
//! The queue holds memory only while frames wait: it is a `VecDeque` behind a mutex that the
//! writer takes whole (one lock per batch, not per frame) and gives back unallocated once it
//! finds the queue empty. A bounded `tokio::sync::mpsc` channel, which this replaces, keeps a
//! block of 32 slots (1.3 KiB) allocated for every idle connection. The bound is a counter
//! checked under the same mutex, so no semaphore is paid per frame either.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use chorus_protocol::CloseCode;
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::Utf8Bytes;

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

/// What the hub's handles and the writer share.
#[derive(Debug, Default)]
struct Line {
    /// Items queued and not yet taken by the writer.
    items: Mutex<VecDeque<Outbound>>,
    /// Items queued and not yet received by the writer (its taken batch included).
    len: AtomicUsize,
    /// Bytes of those items' frames.
    bytes: AtomicUsize,
    /// Wakes the writer: an item was queued, or the last handle went.
    ready: Notify,
    /// Every handle is gone: the writer ends once it has received what is queued.
    handles_gone: AtomicBool,
    /// The writer is gone: nothing more is queued.
    writer_gone: AtomicBool,
}

impl Line {
    fn items(&self) -> MutexGuard<'_, VecDeque<Outbound>> {
        // Nothing panics under this lock; a poisoned queue is still a consistent one.
        self.items.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Marks the line when the last clone of a connection's handle is dropped.
#[derive(Debug)]
struct HandlesAlive(Arc<Line>);

impl Drop for HandlesAlive {
    fn drop(&mut self) {
        self.0.handles_gone.store(true, Ordering::Release);
        self.0.ready.notify_one();
    }
}

/// The sending side of a connection's queue, held by the hub.
#[derive(Debug, Clone)]
pub struct ConnHandle {
    line: Arc<Line>,
    closer: Arc<Closer>,
    capacity: usize,
    watermark: usize,
    max_bytes: usize,
    _alive: Arc<HandlesAlive>,
}

/// The receiving side, held by the connection's writer.
#[derive(Debug)]
pub struct ConnQueue {
    line: Arc<Line>,
    /// The batch taken from the line, received item by item.
    taken: VecDeque<Outbound>,
    /// Immediate close requests.
    pub closer: Arc<Closer>,
}

impl Drop for ConnQueue {
    fn drop(&mut self) {
        self.line.writer_gone.store(true, Ordering::Release);
    }
}

/// Why an item was not queued.
enum Refused {
    Full,
    Closed,
}

/// A queue within `limits`.
pub fn queue(limits: QueueLimits) -> (ConnHandle, ConnQueue) {
    let line = Arc::new(Line::default());
    let closer = Arc::new(Closer::default());
    let handle = ConnHandle {
        line: line.clone(),
        closer: closer.clone(),
        capacity: limits.capacity.max(1),
        watermark: limits.watermark,
        max_bytes: limits.max_bytes,
        _alive: Arc::new(HandlesAlive(line.clone())),
    };
    let queue = ConnQueue {
        line,
        taken: VecDeque::new(),
        closer,
    };
    (handle, queue)
}

impl ConnQueue {
    /// The next item, once one is queued; `None` once every handle is gone and everything
    /// queued was received. Waiting on an empty queue releases its buffers.
    pub async fn recv(&mut self) -> Option<Outbound> {
        loop {
            if let Some(item) = self.try_recv() {
                return Some(item);
            }
            if self.line.handles_gone.load(Ordering::Acquire) {
                // Anything queued before the last handle went was taken above.
                return self.try_recv();
            }
            self.release();
            // A notification sent since the check above is kept as a permit: no lost wake-up.
            self.line.ready.notified().await;
        }
    }

    /// The next item if one is queued now.
    pub fn try_recv(&mut self) -> Option<Outbound> {
        if self.taken.is_empty() {
            let mut items = self.line.items();
            if items.is_empty() {
                return None;
            }
            // The whole batch in one lock; the line keeps the (empty) buffer we had.
            std::mem::swap(&mut *items, &mut self.taken);
        }
        let item = self.taken.pop_front()?;
        if let Outbound::Frame(frame) = &item {
            self.line.bytes.fetch_sub(frame.len(), Ordering::AcqRel);
        }
        self.line.len.fetch_sub(1, Ordering::AcqRel);
        Some(item)
    }

    /// Nothing is queued: gives both buffers back, so an idle connection's queue holds no
    /// memory beyond its fixed parts.
    fn release(&mut self) {
        self.taken = VecDeque::new();
        let mut items = self.line.items();
        if items.is_empty() {
            *items = VecDeque::new();
        }
    }
}

impl ConnHandle {
    /// Items waiting in the queue.
    pub fn len(&self) -> usize {
        self.line.len.load(Ordering::Acquire)
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
        let queued = self.line.bytes.load(Ordering::Acquire);
        if queued > 0 && queued + frame.len() > self.max_bytes {
            self.closer.close_now(CloseCode::SlowConsumer);
            return Enqueued::Overflow;
        }
        match self.push(Outbound::Frame(frame)) {
            Ok(()) => Enqueued::Queued,
            Err(Refused::Full) => {
                self.closer.close_now(CloseCode::SlowConsumer);
                Enqueued::Overflow
            }
            Err(Refused::Closed) => Enqueued::Closed,
        }
    }

    fn push(&self, item: Outbound) -> Result<(), Refused> {
        if self.line.writer_gone.load(Ordering::Acquire) {
            return Err(Refused::Closed);
        }
        let bytes = match &item {
            Outbound::Frame(frame) => frame.len(),
            Outbound::Close(_) => 0,
        };
        {
            let mut items = self.line.items();
            if self.line.len.load(Ordering::Acquire) >= self.capacity {
                return Err(Refused::Full);
            }
            // Counted before the writer can take it, so the counts never go below zero.
            self.line.len.fetch_add(1, Ordering::AcqRel);
            self.line.bytes.fetch_add(bytes, Ordering::AcqRel);
            items.push_back(item);
        }
        self.line.ready.notify_one();
        Ok(())
    }

    /// Closes after the frames already queued (CONN-19, TRANS-24); when the queue is full the
    /// close happens at once with the same code.
    pub fn close_after_queued(&self, code: CloseCode) {
        if let Err(Refused::Full) = self.push(Outbound::Close(code)) {
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
    async fn an_idle_queue_gives_its_buffers_back() {
        let (h, mut q) = queue(limits(64, 64));
        for _ in 0..20 {
            h.send(frame("frame"), false);
        }
        for _ in 0..20 {
            assert!(q.recv().await.is_some());
        }
        assert!(h.is_empty());
        // The next wait finds the queue empty and releases it before sleeping.
        let waited = tokio::time::timeout(std::time::Duration::from_millis(10), q.recv()).await;
        assert!(waited.is_err(), "nothing was queued");
        assert_eq!(q.taken.capacity(), 0);
        assert_eq!(q.line.items().capacity(), 0);
    }

    #[tokio::test]
    async fn the_writer_ends_after_what_the_last_handle_queued() {
        let (h, mut q) = queue(limits(4, 4));
        let reader_copy = h.clone();
        h.send(frame("a"), false);
        drop(h);
        reader_copy.close_after_queued(CloseCode::GoingAway);
        drop(reader_copy);
        assert_eq!(q.recv().await, Some(Outbound::Frame(frame("a"))));
        assert_eq!(q.recv().await, Some(Outbound::Close(CloseCode::GoingAway)));
        assert_eq!(q.recv().await, None);
    }

    #[tokio::test]
    async fn a_waiting_writer_wakes_for_a_new_frame() {
        let (h, mut q) = queue(limits(4, 4));
        let writer = tokio::spawn(async move { q.recv().await });
        tokio::task::yield_now().await;
        h.send(frame("late"), false);
        assert_eq!(writer.await.unwrap(), Some(Outbound::Frame(frame("late"))));
    }

    #[test]
    fn nothing_is_queued_once_the_writer_is_gone() {
        let (h, q) = queue(limits(4, 4));
        drop(q);
        assert_eq!(h.send(frame("a"), false), Enqueued::Closed);
    }

    #[tokio::test]
    async fn first_immediate_close_wins() {
        let (h, q) = queue(limits(1, 1));
        h.close_now(CloseCode::SlowConsumer);
        h.close_now(CloseCode::GoingAway);
        assert_eq!(q.closer.wait().await, CloseCode::SlowConsumer);
    }
}
