//! A Chorus connection driven request by request, for the scenarios that exercise more than
//! broadcast (presence, shared state, history, soak).

use std::time::Duration;

use chorus_protocol::{ClientMessage, ServerMessage};
use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

use crate::client::{self, Ws};
use crate::dialect::{frame_type, to_json, ChorusDialect};
use crate::error::{within, BenchError};
use crate::server::{Server, JWT_SECRET};

/// How long one request may wait for its reply.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// An open Chorus connection past its `welcome`.
pub struct Session {
    /// The socket.
    pub ws: Ws,
}

impl Session {
    /// Connects as `user` and waits for `welcome`.
    pub async fn open(server: &Server, user: &str) -> Result<Session, BenchError> {
        Self::open_with(server, user, None).await
    }

    /// [`Session::open`] with an explicit socket receive buffer.
    pub async fn open_with(
        server: &Server,
        user: &str,
        recv_buffer: Option<u32>,
    ) -> Result<Session, BenchError> {
        let dialect = ChorusDialect::new(JWT_SECRET);
        within(client::JOIN_TIMEOUT, &format!("welcome of {user}"), async {
            let mut ws = client::open_with(&dialect, server.addr, "", user, recv_buffer).await?;
            let first = client::recv_text(&mut ws).await?;
            if frame_type(&first) != "welcome" {
                return Err(BenchError::Protocol(format!(
                    "first frame is not welcome: {first}"
                )));
            }
            Ok(Session { ws })
        })
        .await
    }

    /// Sends one client frame.
    pub async fn send(&mut self, msg: &ClientMessage) -> Result<(), BenchError> {
        self.send_text(to_json(msg)).await
    }

    /// Sends one raw text frame.
    pub async fn send_text(&mut self, text: String) -> Result<(), BenchError> {
        Ok(self.ws.send(Message::text(text)).await?)
    }

    /// The next text frame.
    pub async fn recv(&mut self) -> Result<Utf8Bytes, BenchError> {
        client::recv_text(&mut self.ws).await
    }

    /// Reads until a frame whose type is one of `types`, handing every other frame to
    /// `other`; returns the matching frame's text.
    pub async fn until(
        &mut self,
        types: &[&str],
        mut other: impl FnMut(&str),
    ) -> Result<Utf8Bytes, BenchError> {
        within(REPLY_TIMEOUT, &format!("waiting for {types:?}"), async {
            loop {
                let text = self.recv().await?;
                if types.contains(&frame_type(&text)) {
                    return Ok(text);
                }
                other(&text);
            }
        })
        .await
    }

    /// Closes gracefully.
    pub async fn close(self) {
        client::close(self.ws, Duration::from_secs(2)).await;
    }
}

/// Decodes a server frame (for the low-volume replies whose fields matter).
pub fn decode(text: &str) -> Result<ServerMessage, BenchError> {
    serde_json::from_str(text).map_err(|e| BenchError::Protocol(format!("{e}: {text}")))
}
