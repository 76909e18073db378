//! The parts of the `chorus` command that its tests drive directly: the embedded reference
//! server of `chorus conform` and the mutation self-test (`chorus conform --mutation`).

pub mod embedded;
pub mod mutation;
