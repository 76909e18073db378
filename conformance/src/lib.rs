//! # chorus-conformance
//!
//! The Chorus conformance harness: it reads fixtures (data: named clients and steps), plays
//! them against a server's URL, grades every case against the spec's requirements, and
//! renders the one result structure as terminal, JSON, JUnit or HTML reports.
//!
//! Black box: it speaks only the wire protocol and the documented HTTP endpoints, and never
//! links the reference server (except in its own tests).

pub mod baseline;
pub mod case;
pub mod client;
pub mod client_suite;
pub mod fixture;
pub mod http;
pub mod matcher;
pub mod progress;
pub mod property;
pub mod replay;
pub mod report;
pub mod runner;
pub mod schema;
pub mod sse;
pub mod suite;
pub mod template;
pub mod tokens;
pub mod trace;
pub mod transcript;
pub mod validate;
pub mod verdict;
