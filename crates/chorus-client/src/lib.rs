//! # chorus-client
//!
//! An async client for [Chorus](https://example.invalid/chorus) v1 servers, on tokio and
//! tokio-tungstenite, speaking the types of [`chorus_protocol`].
//!
//! One [`Client`] is one logical session that survives reconnects. It does what
//! `spec/client.md` asks of a well-behaved client:
//!
//! - reconnects by close code: terminal codes stop it, 4100-4199 fetch a new token first,
//!   4300-4399 reconnect at once, everything else backs off with full jitter (uniform in
//!   `[0, min(30 s, 1 s × 2^n)]`), and the attempt number resets only after a connection
//!   stayed up for 30 s (CLIENT-3 to CLIENT-8);
//! - resubscribes every channel with `since` set to the last position it saw, delivers
//!   each stream item once and in order, and reports `recovered: false` or a new epoch as
//!   [`ChannelEvent::Subscribed`] with `stale: true` (CLIENT-10 to CLIENT-12);
//! - keeps presence, cursors and shared state from snapshots and diffs, taking a new
//!   state snapshot after a reconnect or on any frame of another epoch (CLIENT-13,
//!   STATE-28, CURS-19);
//! - pings when idle, declares a silent connection dead, and refreshes its token before
//!   it expires through a [`TokenProvider`] (CLIENT-14 to CLIENT-16);
//! - reports a request whose reply never came as [`RequestError::OutcomeUnknown`]
//!   (CLIENT-18), and never panics on what a server sends (TRANS-27, VER-9).
//!
//! ```no_run
//! use chorus_client::{Client, ChannelEvent};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let client = Client::builder("ws://127.0.0.1:8080/ws")
//!     .token("eyJhbGciOi...")
//!     .connect()?;
//! let mut chat = client.subscribe("chat").await?;
//! chat.publish("chat:message", serde_json::json!({"text": "hi"})).await?;
//! while let Some(event) = chat.next().await {
//!     match event {
//!         ChannelEvent::Message(delivery) => println!("{:?}", delivery.item),
//!         ChannelEvent::Subscribed { stale: true, .. } => println!("reload the view"),
//!         _ => {}
//!     }
//! }
//! client.close().await;
//! # Ok(())
//! # }
//! ```
//!
//! Time comes from tokio (so tests can pause it) and a wall clock you may replace
//! ([`ClientBuilder::clock`]); the backoff jitter comes from a generator you may seed
//! ([`ClientBuilder::seed`]).

#![deny(missing_docs)]

pub mod backoff;
mod channel;
mod decode;
mod driver;
mod error;
pub mod faults;
pub mod reaction;
mod tracker;
mod view;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use chorus_protocol::{ChannelName, ErrorFrame, Welcome};
use tokio::sync::{broadcast, mpsc, oneshot, watch};

pub use channel::{
    Channel, ChannelEvent, ChannelEvents, ChannelHandle, Delivery, HistoryQuery, Published,
    StateWrite, SubscribeOptions,
};
pub use decode::{announces, decode, error_code, error_code_text, Inbound};
pub use error::{BuildError, RequestError, StateError, TokenError};
pub use reaction::{Ending, Reaction};
pub use view::{ChannelView, PresenceView, StateView};

pub use chorus_protocol;

use driver::{Command, Driver};
use faults::Faults;

/// A boxed token future.
pub type TokenFuture = Pin<Box<dyn Future<Output = Result<String, TokenError>> + Send>>;

/// Gives the client tokens: at connect, before expiry (CLIENT-16) and after a 4100
/// close (CLIENT-6). Any `Fn() -> impl Future<Output = Result<String, TokenError>>` is one.
pub trait TokenProvider: Send + Sync + 'static {
    /// A fresh token.
    fn token(&self) -> TokenFuture;
}

impl<F, Fut> TokenProvider for F
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<String, TokenError>> + Send + 'static,
{
    fn token(&self) -> TokenFuture {
        Box::pin(self())
    }
}

/// Wall-clock milliseconds since the Unix epoch.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

#[derive(Clone)]
pub(crate) struct Options {
    url: String,
    /// The first token; without one the provider is asked at start.
    token: Option<String>,
    provider: Option<Arc<dyn TokenProvider>>,
    token_in_header: bool,
    seed: u64,
    connect_timeout: Duration,
    refresh_fraction: f64,
    clock: Clock,
    faults: Faults,
}

fn system_clock() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Options of a [`Client`]; [`ClientBuilder::connect`] starts it.
pub struct ClientBuilder {
    options: Options,
    error: Option<BuildError>,
}

impl ClientBuilder {
    fn new(url: impl Into<String>) -> Self {
        let url = url.into();
        let error = (!(url.starts_with("ws://") || url.starts_with("wss://")))
            .then(|| BuildError::Url(url.clone()));
        ClientBuilder {
            options: Options {
                url,
                token: None,
                provider: None,
                token_in_header: true,
                seed: rand::random(),
                connect_timeout: Duration::from_secs(10),
                refresh_fraction: 0.8,
                clock: Arc::new(system_clock),
                faults: Faults::none(),
            },
            error,
        }
    }

    /// The first token. Without a [`ClientBuilder::token_provider`] it is the only one: when
    /// it expires the client stops.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.options.token = Some(token.into());
        self
    }

    /// A token provider, asked before expiry (CLIENT-16), after a 4100 close (CLIENT-6), and
    /// at start when no first [`ClientBuilder::token`] is given.
    pub fn token_provider(mut self, provider: impl TokenProvider) -> Self {
        self.options.provider = Some(Arc::new(provider));
        self
    }

    /// Sends the token as `Authorization: Bearer` (the default, SEC-4) or, with `false`, as
    /// `?token=` in the URL.
    pub fn token_in_header(mut self, yes: bool) -> Self {
        self.options.token_in_header = yes;
        self
    }

    /// Seeds the backoff jitter, for reproducible tests (default: random).
    pub fn seed(mut self, seed: u64) -> Self {
        self.options.seed = seed;
        self
    }

    /// How long an attempt may take from TCP connect to `welcome` (default 10 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.options.connect_timeout = timeout;
        self
    }

    /// The share of the token's remaining lifetime after which it is refreshed
    /// (default 0.8, CLIENT-16). Clamped to (0, 1).
    pub fn refresh_at(mut self, fraction: f64) -> Self {
        self.options.refresh_fraction = fraction.clamp(0.01, 0.99);
        self
    }

    /// The wall clock used to read `expires_at` (default: the system clock).
    pub fn clock(mut self, clock: impl Fn() -> u64 + Send + Sync + 'static) -> Self {
        self.options.clock = Arc::new(clock);
        self
    }

    /// Activates a deliberate bug by name (see [`faults::Fault`]); only with the `faults`
    /// feature, for `chorus conform-client --mutation`.
    #[cfg(feature = "faults")]
    pub fn fault(mut self, name: &str) -> Self {
        match faults::Fault::from_name(name) {
            Some(f) => self.options.faults.insert(f),
            None => self.error = Some(BuildError::UnknownFault(name.to_owned())),
        }
        self
    }

    /// Starts the client task (on the current tokio runtime) and returns at once; the
    /// client connects in the background. Requests made before `welcome` wait for it.
    pub fn connect(self) -> Result<Client, BuildError> {
        if let Some(e) = self.error {
            return Err(e);
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let (status_tx, status_rx) = watch::channel(Status::Connecting { attempt: 0 });
        // The first receiver exists before the task starts, so the first events() call
        // misses nothing (not even the first `Connecting`).
        let (events, first) = broadcast::channel(4096);
        let driver = Driver::new(self.options, rx, tx.clone(), status_tx, events.clone());
        tokio::spawn(driver.run());
        Ok(Client {
            inner: Arc::new(Inner {
                commands: tx,
                status: status_rx,
                events,
                first_events: std::sync::Mutex::new(Some(first)),
            }),
        })
    }
}

/// Where the client is in its connection cycle.
#[derive(Debug, Clone, PartialEq)]
pub enum Status {
    /// Opening a connection (attempt number `attempt` of CLIENT-3).
    Connecting {
        /// The attempt number.
        attempt: u32,
    },
    /// Connected; the server's `welcome`.
    Open(Arc<Welcome>),
    /// Waiting before the next attempt.
    Waiting {
        /// The attempt the delay is for.
        attempt: u32,
        /// The delay drawn.
        delay: Duration,
    },
    /// Stopped for good.
    Stopped(StopReason),
}

/// Why a client stopped.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum StopReason {
    /// The application closed it.
    ClosedByClient,
    /// The server ended the session in a way retrying cannot fix (CLIENT-5).
    Terminal(Ending),
    /// No token could be obtained (CLIENT-6).
    NoToken(String),
}

impl fmt::Display for StopReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StopReason::ClosedByClient => f.write_str("closed by the application"),
            StopReason::Terminal(e) => write!(f, "terminal: {e:?}"),
            StopReason::NoToken(e) => write!(f, "no token: {e}"),
        }
    }
}

impl std::error::Error for StopReason {}

/// What happened to the connection; [`Client::events`] streams them.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ClientEvent {
    /// An attempt starts.
    Connecting {
        /// The attempt number.
        attempt: u32,
    },
    /// `welcome` arrived.
    Open {
        /// The server's announcement.
        welcome: Arc<Welcome>,
    },
    /// The connection (or attempt) ended.
    Disconnected {
        /// How.
        ending: Ending,
        /// What the client does about it.
        reaction: Reaction,
    },
    /// Backing off before the next attempt.
    Waiting {
        /// The attempt the delay is for.
        attempt: u32,
        /// The delay drawn.
        delay: Duration,
    },
    /// `auth:refreshed` arrived.
    TokenRefreshed {
        /// The new expiry (ms).
        expires_at: Option<u64>,
    },
    /// The provider failed or the server refused the new token.
    TokenRefreshFailed {
        /// Why.
        reason: String,
    },
    /// A frame of an unknown type was ignored (TRANS-27).
    UnknownFrame {
        /// Its `type`.
        kind: String,
    },
    /// A malformed frame was ignored.
    MalformedFrame {
        /// Its `type`.
        kind: String,
        /// What is wrong.
        reason: String,
    },
    /// An `error` that answers no pending request.
    ServerError(Box<ErrorFrame>),
    /// The client stopped.
    Stopped {
        /// Why.
        reason: StopReason,
    },
}

struct Inner {
    commands: mpsc::UnboundedSender<Command>,
    status: watch::Receiver<Status>,
    events: broadcast::Sender<ClientEvent>,
    first_events: std::sync::Mutex<Option<broadcast::Receiver<ClientEvent>>>,
}

/// A Chorus client: one session over as many connections as it takes. Cheap to clone;
/// the task ends when [`Client::close`] is called or every clone is dropped.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("status", &*self.inner.status.borrow())
            .finish()
    }
}

impl Client {
    /// Options for a client of the server at `url` (`ws://…` or `wss://…`).
    ///
    /// ```
    /// let builder = chorus_client::Client::builder("ws://127.0.0.1:8080/ws")
    ///     .token_provider(|| async { Ok::<_, chorus_client::TokenError>("jwt".to_owned()) })
    ///     .seed(7);
    /// # drop(builder);
    /// ```
    pub fn builder(url: impl Into<String>) -> ClientBuilder {
        ClientBuilder::new(url)
    }

    /// The current status.
    pub fn status(&self) -> Status {
        self.inner.status.borrow().clone()
    }

    /// A receiver of status changes.
    pub fn watch_status(&self) -> watch::Receiver<Status> {
        self.inner.status.clone()
    }

    /// A stream of connection events. The first call gets every event since the client
    /// started; later calls get the events from the moment of the call. A receiver that
    /// lags more than 4096 events behind loses the oldest.
    pub fn events(&self) -> broadcast::Receiver<ClientEvent> {
        let first = self
            .inner
            .first_events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        first.unwrap_or_else(|| self.inner.events.subscribe())
    }

    /// Waits until a connection is open and returns its `welcome`, or the reason the client
    /// stopped.
    pub async fn wait_open(&self) -> Result<Arc<Welcome>, StopReason> {
        let mut rx = self.inner.status.clone();
        loop {
            match &*rx.borrow_and_update() {
                Status::Open(w) => return Ok(w.clone()),
                Status::Stopped(r) => return Err(r.clone()),
                _ => {}
            }
            if rx.changed().await.is_err() {
                return Err(StopReason::ClosedByClient);
            }
        }
    }

    /// Subscribes to `channel`; resolves with the first `subscribed`.
    pub async fn subscribe(&self, channel: impl Into<String>) -> Result<Channel, RequestError> {
        self.subscribe_with(channel, SubscribeOptions::default())
            .await
    }

    /// Subscribes with options (state snapshot, room password, room options).
    pub async fn subscribe_with(
        &self,
        channel: impl Into<String>,
        options: SubscribeOptions,
    ) -> Result<Channel, RequestError> {
        let (reply, rx) = oneshot::channel();
        self.inner
            .commands
            .send(Command::Subscribe {
                channel: ChannelName::from(channel.into().as_str()),
                options,
                reply,
            })
            .map_err(|_| channel::stopped())?;
        rx.await.map_err(|_| channel::stopped())?
    }

    /// Sends any request and returns its reply (an `error` reply is an `Err`); the id is
    /// chosen by the client.
    pub async fn request(
        &self,
        frame: chorus_protocol::ClientMessage,
    ) -> Result<chorus_protocol::ServerMessage, RequestError> {
        channel::request(&self.inner.commands, frame).await
    }

    /// Ends the session with a 1000 close (CLIENT-9) and stops the client.
    pub async fn close(&self) {
        let (reply, rx) = oneshot::channel();
        if self.inner.commands.send(Command::Close { reply }).is_ok() {
            let _ = rx.await;
        }
    }
}

/// The README's examples, compiled as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
