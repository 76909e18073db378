//! # chorus-server
//!
//! The Chorus v1 reference server: a pure protocol [`core`] (no sockets, no clock) driven by
//! a thin tokio shell ([`net`]) that owns sockets, HTTP, SSE, timers and the [`store`].
//!
//! Start it in-process with [`Server::start`] (tests bind `127.0.0.1:0`):
//!
//! ```no_run
//! # async fn run() -> Result<(), chorus_server::ServerError> {
//! let config = chorus_server::Config::for_tests("a-secret-of-at-least-32-bytes!!!", "api-key");
//! let server = chorus_server::Server::start(config).await?;
//! println!("{}", server.ws_url());
//! server.shutdown().await
//! # }
//! ```

pub mod auth;
pub mod cluster;
pub mod config;
pub mod core;
#[cfg(feature = "pgfeed")]
pub mod feed;
pub mod logging;
pub mod net;
pub mod server;
pub mod store;

pub use config::{Config, ConfigError, ServeArgs};
pub use server::{RunningServer, Server, ServerError, ShutdownHandle};
