//! The benchmark's error type.

use std::time::Duration;

use thiserror::Error;

use crate::procstat::ProcError;

/// Why a benchmark step failed.
#[derive(Debug, Error)]
pub enum BenchError {
    /// Socket or file I/O.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// Cause.
        source: std::io::Error,
    },
    /// WebSocket handshake or framing.
    #[error("websocket: {0}")]
    Ws(#[from] tokio_tungstenite::tungstenite::Error),
    /// Reading the server's `/proc` accounting.
    #[error(transparent)]
    Proc(#[from] ProcError),
    /// A server could not be started or stopped answering.
    #[error("server {server}: {reason}")]
    Server {
        /// Which server.
        server: String,
        /// What went wrong.
        reason: String,
    },
    /// The server answered something the scenario did not expect.
    #[error("unexpected reply: {0}")]
    Protocol(String),
    /// A step did not finish in time.
    #[error("timed out after {after:?} while {what}")]
    Timeout {
        /// The step.
        what: String,
        /// How long it was given.
        after: Duration,
    },
    /// A connection token could not be minted.
    #[error("token: {0}")]
    Token(#[from] jsonwebtoken::errors::Error),
    /// The options ask for something impossible.
    #[error("invalid options: {0}")]
    Options(String),
    /// The chart could not be drawn.
    #[error("chart: {0}")]
    Chart(String),
}

impl BenchError {
    /// Wraps an I/O error with what was being done.
    pub fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> BenchError {
        let context = context.into();
        move |source| BenchError::Io { context, source }
    }

    /// A timeout of `what` after `after`.
    pub fn timeout(what: impl Into<String>, after: Duration) -> BenchError {
        BenchError::Timeout {
            what: what.into(),
            after,
        }
    }
}

/// Runs `fut` with a time limit, turning expiry into [`BenchError::Timeout`].
pub async fn within<T>(
    after: Duration,
    what: &str,
    fut: impl std::future::Future<Output = Result<T, BenchError>>,
) -> Result<T, BenchError> {
    tokio::time::timeout(after, fut)
        .await
        .map_err(|_| BenchError::timeout(what, after))?
}
