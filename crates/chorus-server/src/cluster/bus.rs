//! The node's pub/sub connection to Redis: it subscribes to the bus of every channel this
//! node has subscribers on (and only those, so Redis fans a publish out to the nodes that
//! need it), and hands what arrives to the shell.
//!
//! A dedicated thread owns the reading half and parses replies with the `redis` crate's
//! parser; subscribing writes the command and waits for Redis's confirmation, so that a
//! subscriber's position is read only once every later publish is sure to arrive (CLUS-1).
//! The thread is not a runtime worker: the engine may wait for it while holding the core's
//! lock without starving the thread that would wake it.

use std::collections::HashMap;
use std::io::{BufReader, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use redis::Value;
use tokio::sync::mpsc::UnboundedSender;

/// How long a subscribe waits for Redis's confirmation.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(2);

/// What the bus hands the shell.
#[derive(Debug)]
pub enum BusEvent {
    /// A publish on a channel's bus.
    Message {
        /// The bus channel.
        channel: String,
        /// The payload (see the cluster module's wire format).
        payload: Vec<u8>,
    },
    /// The pub/sub connection broke: whatever was published meanwhile is unknown (CLUS-9).
    Lost,
}

/// The writing half and the confirmations the reader saw.
pub struct Bus {
    /// Where Redis is and how to log in, to connect again after a loss.
    addr: String,
    password: Option<(String, String)>,
    events: UnboundedSender<BusEvent>,
    /// [`Bus::close`] was called: no reconnect.
    closed: AtomicBool,
    writer: Mutex<Option<TcpStream>>,
    /// Per bus channel, how many subscribe confirmations arrived.
    confirmed: Mutex<HashMap<String, u64>>,
    arrived: Condvar,
}

/// Why the bus could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// The connection failed.
    #[error("redis pub/sub: {0}")]
    Io(#[from] std::io::Error),
    /// Redis did not confirm a subscription in time.
    #[error("redis pub/sub: no confirmation for {0}")]
    Unconfirmed(String),
    /// The connection is gone.
    #[error("redis pub/sub connection lost")]
    Lost,
}

impl Bus {
    /// Connects to `addr` (`host:port`), authenticating with `password` when given, and
    /// starts the reader thread, which sends to `events`.
    pub fn connect(
        addr: &str,
        password: Option<(&str, &str)>,
        events: UnboundedSender<BusEvent>,
    ) -> Result<Arc<Bus>, BusError> {
        let bus = Arc::new(Bus {
            addr: addr.to_owned(),
            password: password.map(|(u, p)| (u.to_owned(), p.to_owned())),
            events,
            closed: AtomicBool::new(false),
            writer: Mutex::new(None),
            confirmed: Mutex::new(HashMap::new()),
            arrived: Condvar::new(),
        });
        bus.reconnect()?;
        Ok(bus)
    }

    /// Opens the connection (again, after [`BusEvent::Lost`]: with no subscription, since
    /// the engine forgot every channel it delivered) and starts its reader thread.
    pub fn reconnect(self: &Arc<Self>) -> Result<(), BusError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(BusError::Lost);
        }
        let stream = TcpStream::connect(&self.addr)?;
        stream.set_nodelay(true)?;
        let reader = stream.try_clone()?;
        *self.lock_writer() = Some(stream);
        if let Some((user, pass)) = &self.password {
            let mut auth = redis::cmd("AUTH");
            if !user.is_empty() {
                auth.arg(user);
            }
            self.write(&auth.arg(pass).get_packed_command())?;
        }
        let reading = self.clone();
        let events = self.events.clone();
        std::thread::Builder::new()
            .name("chorus-redis-bus".into())
            .spawn(move || reading.read_loop(reader, events))?;
        Ok(())
    }

    fn lock_writer(&self) -> MutexGuard<'_, Option<TcpStream>> {
        self.writer.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self, bytes: &[u8]) -> Result<(), BusError> {
        let mut writer = self.lock_writer();
        let stream = writer.as_mut().ok_or(BusError::Lost)?;
        stream.write_all(bytes)?;
        Ok(())
    }

    /// Subscribes to `channel` and waits until Redis confirms it.
    pub fn subscribe(&self, channel: &str) -> Result<(), BusError> {
        let mut confirmed = self.confirmed.lock().unwrap_or_else(|p| p.into_inner());
        let before = confirmed.get(channel).copied().unwrap_or(0);
        self.write(&redis::cmd("SUBSCRIBE").arg(channel).get_packed_command())?;
        let deadline = Instant::now() + CONFIRM_TIMEOUT;
        while confirmed.get(channel).copied().unwrap_or(0) == before {
            if self.lock_writer().is_none() {
                return Err(BusError::Lost);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(BusError::Unconfirmed(channel.to_owned()));
            }
            confirmed = self
                .arrived
                .wait_timeout(confirmed, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        Ok(())
    }

    /// Unsubscribes from `channel` (without waiting: a late message is dropped by the
    /// engine, which no longer delivers the channel).
    pub fn unsubscribe(&self, channel: &str) -> Result<(), BusError> {
        self.write(&redis::cmd("UNSUBSCRIBE").arg(channel).get_packed_command())
    }

    /// Closes the connection; the reader thread ends.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        if let Some(stream) = self.lock_writer().take() {
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
        self.arrived.notify_all();
    }

    fn read_loop(self: Arc<Self>, stream: TcpStream, events: UnboundedSender<BusEvent>) {
        let mut reader = BufReader::new(stream);
        let mut parser = redis::Parser::new();
        loop {
            let value = match parser.parse_value(&mut reader) {
                Ok(value) => value,
                Err(e) => {
                    tracing::warn!(error = %e, "redis pub/sub connection ended");
                    break;
                }
            };
            match classify(value) {
                Some(Reply::Message { channel, payload }) => {
                    let event = BusEvent::Message { channel, payload };
                    let Ok(()) = events.send(event) else {
                        break; // the shell stopped
                    };
                }
                Some(Reply::Subscribed(channel)) => {
                    let mut confirmed = self.confirmed.lock().unwrap_or_else(|p| p.into_inner());
                    *confirmed.entry(channel).or_insert(0) += 1;
                    self.arrived.notify_all();
                }
                None => {}
            }
        }
        self.lock_writer().take();
        self.arrived.notify_all();
        let _ = events.send(BusEvent::Lost);
    }
}

enum Reply {
    Message { channel: String, payload: Vec<u8> },
    Subscribed(String),
}

fn classify(value: Value) -> Option<Reply> {
    let Value::Array(parts) = value else {
        return None;
    };
    let mut parts = parts.into_iter();
    let kind = bulk(parts.next()?)?;
    let channel = String::from_utf8(bulk(parts.next()?)?).ok()?;
    match kind.as_slice() {
        b"message" => Some(Reply::Message {
            channel,
            payload: bulk(parts.next()?)?,
        }),
        b"subscribe" => Some(Reply::Subscribed(channel)),
        _ => None,
    }
}

fn bulk(value: Value) -> Option<Vec<u8>> {
    match value {
        Value::BulkString(bytes) => Some(bytes),
        Value::SimpleString(s) => Some(s.into_bytes()),
        _ => None,
    }
}
