//! Looking for a failing sequence with proptest, and shrinking it: every candidate, the
//! shrinking ones included, is played on its own fresh `{run}` prefix, so no channel state of
//! an earlier run interferes.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use proptest::strategy::Strategy;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestError, TestRng, TestRunner};

use super::catalog::Property;
use super::execute::Run;
use super::ops::Step;

/// Limits of one search.
#[derive(Debug, Clone)]
pub struct Budget {
    /// Seed (with the property, fixes every generated sequence).
    pub seed: u64,
    /// Sequences to try.
    pub cases: u32,
    /// Most steps in a sequence.
    pub max_steps: usize,
    /// Give up shrinking after this long (the smallest failure so far is kept).
    pub shrink_time: Duration,
    /// Give up shrinking after this many runs.
    pub shrink_runs: u32,
}

/// A failing sequence, as small as shrinking made it.
#[derive(Debug, Clone)]
pub struct Found {
    /// The minimal sequence.
    pub steps: Vec<Step>,
    /// Its run (plans, failure, transcript).
    pub run: Run,
    /// Length of the sequence that first failed.
    pub original_len: usize,
    /// Runs spent shrinking.
    pub shrink_runs: u32,
    /// The failure as proptest last saw it (kept for a minimum that did not fail again).
    pub message: String,
}

/// What a search saw.
#[derive(Debug, Clone)]
pub struct Searched {
    /// Sequences played before the first failure (all of them when none failed).
    pub cases: u32,
    /// The minimal failure, if any.
    pub found: Option<Found>,
}

/// The ChaCha seed of a property: the run's seed mixed with the property, so properties
/// explore different sequences under one `--seed`.
pub fn rng_seed(seed: u64, property: Property) -> [u8; 32] {
    let mut state = seed ^ (property as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let mut out = [0u8; 32];
    for chunk in out.chunks_mut(8) {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        chunk.copy_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out
}

/// Plays sequences drawn from `strategy` through `play` (which must return the run of a
/// sequence; a run with a failure fails the case) until one fails, then shrinks it.
/// Blocking: call it off the async runtime.
pub fn search<S>(
    property: Property,
    strategy: &S,
    budget: &Budget,
    play: impl Fn(&[Step], u32) -> Run,
) -> Result<Searched, String>
where
    S: Strategy<Value = Vec<Step>>,
{
    let config = Config {
        cases: budget.cases,
        max_shrink_iters: budget.shrink_runs,
        // The time budget is enforced below: proptest's own prints to stderr when it ends.
        max_shrink_time: 0,
        failure_persistence: None,
        fork: false,
        timeout: 0,
        ..Config::default()
    };
    let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &rng_seed(budget.seed, property));
    let mut runner = TestRunner::new_with_rng(config, rng);
    let runs = AtomicU32::new(0);
    let first_failure_at = AtomicU32::new(0);
    let original_len = AtomicU32::new(0);
    let last_failing: Mutex<Option<(Vec<Step>, Run)>> = Mutex::new(None);
    let shrinking_since: Mutex<Option<Instant>> = Mutex::new(None);
    let out_of_time = || {
        let since = shrinking_since.lock().ok().and_then(|g| *g);
        since.is_some_and(|t| t.elapsed() > budget.shrink_time)
    };
    let outcome = runner.run(strategy, |steps| {
        // Past the shrinking budget every further candidate "passes" unplayed, so proptest
        // keeps the smallest failure found so far.
        if out_of_time() {
            return Ok(());
        }
        let n = runs.fetch_add(1, Ordering::SeqCst);
        let run = play(&steps, n);
        let Some(f) = &run.failure else {
            return Ok(());
        };
        let message = f.to_string();
        if first_failure_at.load(Ordering::SeqCst) == 0 {
            if let Ok(mut g) = shrinking_since.lock() {
                *g = Some(Instant::now());
            }
            first_failure_at.store(n + 1, Ordering::SeqCst);
            original_len.store(
                u32::try_from(steps.len()).unwrap_or(u32::MAX),
                Ordering::SeqCst,
            );
        }
        if let Ok(mut g) = last_failing.lock() {
            *g = Some((steps, run));
        }
        Err(TestCaseError::fail(message))
    });
    let total = runs.load(Ordering::SeqCst);
    let first = first_failure_at.load(Ordering::SeqCst);
    match outcome {
        Ok(()) => Ok(Searched {
            cases: total,
            found: None,
        }),
        Err(TestError::Abort(reason)) => Err(format!("proptest aborted: {reason}")),
        Err(TestError::Fail(reason, minimal)) => {
            let last = last_failing.lock().ok().and_then(|mut g| g.take());
            // Shrinking keeps the last failing candidate as the current minimum; replay the
            // minimum only if proptest kept an earlier one (a flaky last candidate).
            let run = match last {
                Some((steps, run)) if steps == minimal => run,
                _ => play(&minimal, total),
            };
            Ok(Searched {
                cases: first,
                found: Some(Found {
                    original_len: original_len.load(Ordering::SeqCst) as usize,
                    shrink_runs: total.saturating_sub(first),
                    steps: minimal,
                    run,
                    message: reason.to_string(),
                }),
            })
        }
    }
}

#[cfg(test)]
mod tests;
