//! Grading frames against plans.
