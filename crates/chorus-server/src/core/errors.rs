//! Why the core refused a request, mapped onto the wire's error codes (ERR).

use chorus_protocol::{
    ChannelName, ChannelNameError, ErrorCode, ErrorFrame, RequestId, StateVersion,
};
use thiserror::Error;

use crate::store::StoreError;

/// A refused request. [`CoreError::code`] is the wire code; HTTP maps it to a status.
#[derive(Debug, Error)]
pub enum CoreError {
    /// The channel name breaks the rules, or the request does not fit the channel's kind.
    #[error("invalid channel: {0}")]
    InvalidChannel(String),
    /// A field is out of range or the request is not allowed in this shape.
    #[error("invalid message: {0}")]
    InvalidMessage(String),
    /// Token for another identity, or otherwise unacceptable.
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    /// Missing grant, or a broadcast on a `resource:` feed.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// Room password missing or wrong.
    #[error("wrong or missing room password")]
    BadPassword,
    /// Room at `max_users`.
    #[error("room is full")]
    RoomFull,
    /// The request needs a subscription.
    #[error("not subscribed to the channel")]
    NotSubscribed,
    /// Subscribed already.
    #[error("already subscribed to the channel")]
    AlreadySubscribed,
    /// A record with this id exists already (HTTP-26, 409 `conflict`).
    #[error("{0} exists already")]
    Exists(String),
    /// An `Idempotency-Key` already named another change (CHG-15, 409 `conflict`).
    #[error("Idempotency-Key {0:?} was used for another change")]
    KeyReused(String),
    /// Compare-and-set failed.
    #[error("expected version does not match the current version {}", current.version)]
    Conflict {
        /// The state's current version.
        current: StateVersion,
    },
    /// Broadcast rate limit.
    #[error("rate limited, retry after {retry_after_ms} ms")]
    RateLimited {
        /// How long to wait.
        retry_after_ms: u64,
    },
    /// A configured limit.
    #[error("limit {limit} exceeded")]
    LimitExceeded {
        /// The limit's name as in `welcome.limits`.
        limit: &'static str,
    },
    /// A capability this server does not announce.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// The thing asked for does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// The engine's broker failed (cluster engines).
    #[error("engine: {0}")]
    Engine(String),
}

impl From<ChannelNameError> for CoreError {
    fn from(e: ChannelNameError) -> Self {
        CoreError::InvalidChannel(e.to_string())
    }
}

impl CoreError {
    /// The wire error code.
    pub fn code(&self) -> ErrorCode {
        match self {
            CoreError::InvalidChannel(_) => ErrorCode::InvalidChannel,
            CoreError::InvalidMessage(_) => ErrorCode::InvalidMessage,
            CoreError::Unauthorized(_) => ErrorCode::Unauthorized,
            CoreError::Forbidden(_) => ErrorCode::Forbidden,
            CoreError::BadPassword => ErrorCode::BadPassword,
            CoreError::RoomFull => ErrorCode::RoomFull,
            CoreError::NotSubscribed => ErrorCode::NotSubscribed,
            CoreError::AlreadySubscribed => ErrorCode::AlreadySubscribed,
            CoreError::Conflict { .. } | CoreError::Exists(_) | CoreError::KeyReused(_) => {
                ErrorCode::Conflict
            }
            CoreError::RateLimited { .. } => ErrorCode::RateLimited,
            CoreError::LimitExceeded { .. } => ErrorCode::LimitExceeded,
            CoreError::Unsupported(_) => ErrorCode::Unsupported,
            CoreError::NotFound(_) => ErrorCode::NotFound,
            CoreError::Store(_) | CoreError::Engine(_) => ErrorCode::Internal,
        }
    }

    /// The `message` a client gets: the error's text, except for a store failure, whose
    /// text (SQLite's, with table and column names, paths, SQL) stays in the server's log
    /// (SEC-12, SEC-13).
    pub fn client_message(&self) -> String {
        match self {
            CoreError::Store(store) => {
                tracing::error!(error = %store, "store failure");
                "internal error".to_owned()
            }
            other => other.to_string(),
        }
    }

    /// The `error` frame answering request `id` about `channel`.
    pub fn to_frame(&self, id: Option<RequestId>, channel: Option<ChannelName>) -> ErrorFrame {
        let mut frame = ErrorFrame::new(id, self.code(), self.client_message());
        frame.channel = channel.map(|c| c.0);
        match self {
            CoreError::Conflict { current } => frame.current = Some(current.clone()),
            CoreError::RateLimited { retry_after_ms } => {
                frame.retry_after_ms = Some(*retry_after_ms)
            }
            CoreError::LimitExceeded { limit } => frame.limit = Some((*limit).to_owned()),
            _ => {}
        }
        frame
    }
}
