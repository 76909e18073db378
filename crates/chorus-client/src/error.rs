//! The client's errors: one enum per kind of operation.

use chorus_protocol::{ErrorCode, ErrorFrame, StateVersion};
use thiserror::Error;

/// Why a request did not succeed.
#[derive(Debug, Clone, PartialEq, Error)]
#[non_exhaustive]
pub enum RequestError {
    /// The server answered with an `error` frame. Act on [`ErrorFrame::code`], never on its
    /// message text (ERR-6).
    #[error("server error {}: {}", crate::decode::error_code_text(.0), .0.message)]
    Server(Box<ErrorFrame>),
    /// The connection ended after the request was sent and before its reply arrived: it may
    /// or may not have taken effect (CLIENT-18). Check (a broadcast through the recovered
    /// stream, a state write through the state's version) before repeating it.
    #[error("the connection ended before the reply: outcome unknown")]
    OutcomeUnknown,
    /// The client stopped (closed by the application, or a terminal close) before the request
    /// could be sent; it had no effect.
    #[error("the client is stopped: {0}")]
    Stopped(String),
    /// The server announced no capability for this request.
    #[error("the server does not announce the `{0}` capability")]
    Unsupported(&'static str),
    /// The client is already subscribed to this channel; use the existing handle.
    #[error("already subscribed to this channel")]
    AlreadySubscribed,
    /// The frame would exceed the server's `limits.max_frame_bytes` (the server would close
    /// the connection with 1009); it was not sent.
    #[error("the frame has {bytes} bytes, above the server's limit of {limit}")]
    TooLarge {
        /// The frame's size.
        bytes: u64,
        /// `welcome.limits.max_frame_bytes`.
        limit: u64,
    },
    /// The reply had an unexpected type (a server bug).
    #[error("unexpected reply `{0}`")]
    UnexpectedReply(String),
}

impl RequestError {
    /// The error code, when the server answered with an error (unknown codes read as
    /// `internal`, ERR-7).
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            RequestError::Server(frame) => {
                Some(crate::decode::error_code(frame).unwrap_or(ErrorCode::Internal))
            }
            _ => None,
        }
    }

    /// The error code exactly as the server sent it (also a code this client does not know).
    pub fn code_text(&self) -> Option<String> {
        match self {
            RequestError::Server(frame) => Some(crate::decode::error_code_text(frame)),
            _ => None,
        }
    }
}

/// Why a shared-state write did not succeed.
#[derive(Debug, Clone, PartialEq, Error)]
#[non_exhaustive]
pub enum StateError {
    /// Compare-and-set failed: the state is at `current`. Resync (the view does so on its
    /// own), then retry against the new version.
    #[error("conflict: the state is at version {} of epoch {}", .current.version, .current.epoch)]
    Conflict {
        /// The state's current version.
        current: StateVersion,
    },
    /// Any other failure.
    #[error(transparent)]
    Request(#[from] RequestError),
}

/// A token provider could not give a token.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("no token: {0}")]
pub struct TokenError(pub String);

/// A client option is invalid.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum BuildError {
    /// The URL is not a `ws://` or `wss://` URL.
    #[error("not a ws:// or wss:// URL: {0}")]
    Url(String),
    /// No fault of this name (only with the `faults` feature).
    #[error("unknown fault {0:?}")]
    UnknownFault(String),
}
