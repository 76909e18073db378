//! # chorus-server
//!
//! The Chorus v1 reference server: a pure protocol [`core`] (no sockets, no clock) driven by
//! a thin tokio shell that owns sockets, HTTP, SSE, timers and the [`store`].

pub mod core;
pub mod store;
pub mod auth;
pub mod config;
