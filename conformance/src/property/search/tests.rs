//! Shrinking synthetic failures.
