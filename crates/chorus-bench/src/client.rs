//! Load-generator connections: connect, join a channel in the server's dialect, read text.

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tokio_tungstenite::WebSocketStream;

use crate::dialect::{Dialect, Inbound};
use crate::error::{within, BenchError};

/// A load-generator WebSocket.
pub type Ws = WebSocketStream<TcpStream>;

/// How long one connection may take to open and join.
pub const JOIN_TIMEOUT: Duration = Duration::from_secs(20);

/// Client buffers: small enough that 10,000 connections fit, large enough that a subscriber
/// reads many frames per system call.
fn client_config() -> WebSocketConfig {
    WebSocketConfig::default().read_buffer_size(16 * 1024)
}

/// Opens a WebSocket to `addr` with the dialect's request for `user` (not yet joined).
pub async fn open(
    dialect: &dyn Dialect,
    addr: SocketAddr,
    channel: &str,
    user: &str,
) -> Result<Ws, BenchError> {
    open_with(dialect, addr, channel, user, None).await
}

/// [`open`] with an explicit socket receive buffer (a small one makes a stalled reader
/// push back on the server sooner, like a slow mobile link).
pub async fn open_with(
    dialect: &dyn Dialect,
    addr: SocketAddr,
    channel: &str,
    user: &str,
    recv_buffer: Option<u32>,
) -> Result<Ws, BenchError> {
    let request = dialect.request(addr, channel, user)?;
    let socket = TcpSocket::new_v4().map_err(BenchError::io("socket"))?;
    if let Some(size) = recv_buffer {
        socket
            .set_recv_buffer_size(size)
            .map_err(BenchError::io("SO_RCVBUF"))?;
    }
    let tcp = socket
        .connect(addr)
        .await
        .map_err(BenchError::io(format!("connect {addr}")))?;
    tcp.set_nodelay(true)
        .map_err(BenchError::io("set TCP_NODELAY"))?;
    let (ws, _) =
        tokio_tungstenite::client_async_with_config(request, tcp, Some(client_config())).await?;
    Ok(ws)
}

/// Opens a WebSocket and joins `channel`; returns once the server says it is in.
pub async fn connect(
    dialect: &dyn Dialect,
    addr: SocketAddr,
    channel: &str,
    user: &str,
) -> Result<Ws, BenchError> {
    connect_with(dialect, addr, channel, user, None).await
}

/// [`connect`] with an explicit socket receive buffer (see [`open_with`]).
pub async fn connect_with(
    dialect: &dyn Dialect,
    addr: SocketAddr,
    channel: &str,
    user: &str,
    recv_buffer: Option<u32>,
) -> Result<Ws, BenchError> {
    within(
        JOIN_TIMEOUT,
        &format!("joining {channel} as {user}"),
        async {
            let mut ws = open_with(dialect, addr, channel, user, recv_buffer).await?;
            for frame in dialect.join_frames(channel) {
                ws.send(Message::text(frame)).await?;
            }
            loop {
                let text = recv_text(&mut ws).await?;
                if let Some(answer) = dialect.reply(&text) {
                    ws.send(Message::text(answer)).await?;
                }
                match dialect.classify(&text) {
                    Inbound::Joined => return Ok(ws),
                    Inbound::Error => return Err(BenchError::Protocol(text.to_string())),
                    _ => {}
                }
            }
        },
    )
    .await
}

/// Opens and joins many connections, `concurrency` at a time, in order.
pub async fn connect_many(
    dialect: &dyn Dialect,
    addr: SocketAddr,
    members: &[(String, String)],
    concurrency: usize,
) -> Result<Vec<Ws>, BenchError> {
    connect_many_with(dialect, addr, members, concurrency, |ws| ws).await
}

/// [`connect_many`], handing each connection to `joined` as soon as it is in (e.g. to start
/// reading the presence events later members cause).
pub async fn connect_many_with<T>(
    dialect: &dyn Dialect,
    addr: SocketAddr,
    members: &[(String, String)],
    concurrency: usize,
    joined: impl Fn(Ws) -> T,
) -> Result<Vec<T>, BenchError> {
    let joined = &joined;
    futures_util::stream::iter(members)
        .map(|(channel, user)| async move { Ok(joined(connect(dialect, addr, channel, user).await?)) })
        .buffered(concurrency.max(1))
        .collect::<Vec<Result<T, BenchError>>>()
        .await
        .into_iter()
        .collect()
}

/// The next text frame; a close or end of stream is an error naming the close code.
pub async fn recv_text(ws: &mut Ws) -> Result<Utf8Bytes, BenchError> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(text))) => return Ok(text),
            Some(Ok(Message::Close(frame))) => {
                let code = frame.map(|f| u16::from(f.code));
                return Err(BenchError::Protocol(format!("closed by server ({code:?})")));
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e.into()),
            None => return Err(BenchError::Protocol("connection ended".to_owned())),
        }
    }
}

/// Closes gracefully (close frame, then wait for the server's) within `limit`; a server that
/// already went away is fine.
pub async fn close(mut ws: Ws, limit: Duration) {
    let _ = tokio::time::timeout(limit, async {
        if ws.close(None).await.is_ok() {
            while let Some(Ok(_)) = ws.next().await {}
        }
    })
    .await;
}
