//! The model's expectations for hand-written sequences.
