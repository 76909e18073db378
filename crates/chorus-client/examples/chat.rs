//! A minimal chat: subscribes to a channel, prints every message and presence change, and
//! publishes each line typed on stdin.
//!
//! ```sh
//! cargo run -p chorus-cli -- serve --dev &          # a local server in development mode
//! cargo run -p chorus-client --example chat -- ws://127.0.0.1:8080/ws presence-lobby TOKEN
//! ```

use chorus_client::{ChannelEvent, Client};
use tokio::io::{AsyncBufReadExt, BufReader};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .unwrap_or_else(|| "ws://127.0.0.1:8080/ws".into());
    let channel = args.next().unwrap_or_else(|| "presence-lobby".into());
    let mut builder = Client::builder(url);
    if let Some(token) = args.next() {
        builder = builder.token(token);
    }
    let client = builder.connect()?;
    let welcome = client.wait_open().await?;
    eprintln!("connected as {} to {}", welcome.user.id, welcome.server);
    let (chat, mut events) = client.subscribe(channel).await?.into_split();
    let printer = tokio::spawn(async move {
        while let Some(event) = events.next().await {
            match event {
                ChannelEvent::Message(d) => println!("{:?}", d.item),
                ChannelEvent::MemberJoined(m) => println!("+ {}", m.user_id),
                ChannelEvent::MemberLeft { user_id } => println!("- {user_id}"),
                ChannelEvent::Subscribed { stale: true, .. } => println!("(missed messages)"),
                _ => {}
            }
        }
    });
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Some(line) = lines.next_line().await? {
        if let Err(e) = chat
            .publish("chat:message", serde_json::json!({ "text": line }))
            .await
        {
            eprintln!("not sent: {e}");
        }
    }
    client.close().await;
    printer.abort();
    Ok(())
}
