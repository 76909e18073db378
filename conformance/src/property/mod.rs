//! Property-based testing: generated multi-client operation sequences checked against an
//! executable model of the spec, shrunk to a minimal failing sequence and saved as a fixture.

pub mod model;
pub mod ops;
pub mod check;
