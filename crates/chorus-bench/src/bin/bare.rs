//! `chorus-bench-bare`: the bare tokio-tungstenite fan-out baseline. No protocol work at
//! all: a connection to `/ch/<name>` joins channel `<name>`, gets `ok`, and every text frame
//! it sends goes verbatim to every other member. It is the limit of the stack Chorus is
//! built on (tokio + tungstenite), with the same buffer sizes as Chorus's defaults.
//!
//! One thread (the bench pins servers to one core), per-connection unbounded queues, frames
//! shared by reference count, writes batched until the queue is empty.

use std::cell::RefCell;
use std::collections::HashMap;
use std::process::ExitCode;
use std::rc::Rc;

use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

/// Bare tokio-tungstenite fan-out server (benchmark baseline).
#[derive(Debug, Parser)]
struct Args {
    /// Loopback port to listen on.
    #[arg(long, default_value_t = 3002)]
    port: u16,
    /// WebSocket read buffer per connection, bytes.
    #[arg(long, default_value_t = 4096)]
    read_buffer: usize,
    /// WebSocket write buffer per connection, bytes.
    #[arg(long, default_value_t = 4096)]
    write_buffer: usize,
}

type Members = Vec<(u64, UnboundedSender<Message>)>;

#[derive(Default)]
struct Hub {
    channels: HashMap<String, Members>,
    next_id: u64,
}

impl Hub {
    fn join(&mut self, channel: &str, tx: UnboundedSender<Message>) -> u64 {
        self.next_id += 1;
        self.channels
            .entry(channel.to_owned())
            .or_default()
            .push((self.next_id, tx));
        self.next_id
    }

    fn leave(&mut self, channel: &str, id: u64) {
        if let Some(members) = self.channels.get_mut(channel) {
            members.retain(|(m, _)| *m != id);
            if members.is_empty() {
                self.channels.remove(channel);
            }
        }
    }

    fn fan_out(&self, channel: &str, from: u64, msg: &Message) {
        for (id, tx) in self.channels.get(channel).into_iter().flatten() {
            if *id != from {
                let _ = tx.send(msg.clone());
            }
        }
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("chorus-bench-bare: runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let local = tokio::task::LocalSet::new();
    match local.block_on(&runtime, serve(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("chorus-bench-bare: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(args: Args) -> std::io::Result<()> {
    let listener = TcpListener::bind(("127.0.0.1", args.port)).await?;
    let hub = Rc::new(RefCell::new(Hub::default()));
    let config = WebSocketConfig::default()
        .read_buffer_size(args.read_buffer)
        .write_buffer_size(args.write_buffer);
    loop {
        let (tcp, _) = listener.accept().await?;
        let _ = tcp.set_nodelay(true);
        tokio::task::spawn_local(connection(tcp, hub.clone(), config));
    }
}

async fn connection(tcp: TcpStream, hub: Rc<RefCell<Hub>>, config: WebSocketConfig) {
    let mut path = String::new();
    // The callback's signature is tungstenite's (its error type is large by design).
    #[allow(clippy::result_large_err)]
    let callback = |req: &Request, resp: Response| {
        path = req.uri().path().to_owned();
        Ok(resp)
    };
    let Ok(ws) = tokio_tungstenite::accept_hdr_async_with_config(tcp, callback, Some(config)).await
    else {
        return;
    };
    let channel = path.strip_prefix("/ch/").unwrap_or(&path).to_owned();
    let (tx, rx) = unbounded_channel();
    let id = hub.borrow_mut().join(&channel, tx.clone());
    let _ = tx.send(Message::text("ok"));
    drop(tx);
    let (sink, mut stream) = ws.split();
    let writer = tokio::task::spawn_local(write_queue(sink, rx));
    while let Some(Ok(msg)) = stream.next().await {
        match msg {
            Message::Text(_) => hub.borrow().fan_out(&channel, id, &msg),
            Message::Close(_) => break,
            _ => {}
        }
    }
    hub.borrow_mut().leave(&channel, id);
    // The hub held the last sender: the writer drains what is queued and ends.
    let _ = writer.await;
}

async fn write_queue<S>(mut sink: S, mut rx: UnboundedReceiver<Message>)
where
    S: futures_util::Sink<Message> + Unpin,
{
    while let Some(msg) = rx.recv().await {
        if sink.feed(msg).await.is_err() {
            return;
        }
        while let Ok(msg) = rx.try_recv() {
            if sink.feed(msg).await.is_err() {
                return;
            }
        }
        if sink.flush().await.is_err() {
            return;
        }
    }
    let _ = sink.close().await;
}
