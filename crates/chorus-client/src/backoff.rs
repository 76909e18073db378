//! Full-jitter reconnect backoff (CLIENT-3) with the stable-connection reset (CLIENT-4).
//!
//! Pure: the random source is seeded by the caller and time is passed in, so a test can
//! replay any sequence of delays.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::faults::{Fault, Faults};

/// The largest backoff window: 30 s (CLIENT-3).
pub const BACKOFF_CAP: Duration = Duration::from_millis(30_000);
/// The first backoff window: 1 s (CLIENT-3).
pub const BACKOFF_BASE: Duration = Duration::from_millis(1_000);
/// How long a connection stays open after `welcome` before it counts as stable (CLIENT-4).
pub const STABLE_AFTER: Duration = Duration::from_millis(30_000);

/// The reconnect attempt counter and the random source of the delays.
#[derive(Debug)]
pub struct Backoff {
    attempt: u32,
    rng: StdRng,
    faults: Faults,
}

impl Backoff {
    /// A counter at attempt 0 drawing from a generator seeded with `seed`.
    pub fn new(seed: u64, faults: Faults) -> Self {
        Backoff {
            attempt: 0,
            rng: StdRng::seed_from_u64(seed),
            faults,
        }
    }

    /// The attempt number the next delay is for.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The window of attempt `n`: min(30 s, 1 s × 2^n).
    pub fn window(&self, n: u32) -> Duration {
        let cap = if self.faults.has(Fault::BackoffCapLow) {
            Duration::from_millis(500)
        } else if self.faults.has(Fault::BackoffCap120s) {
            Duration::from_millis(120_000)
        } else {
            BACKOFF_CAP
        };
        let exp = if self.faults.has(Fault::NoBackoffGrowth) {
            0
        } else {
            n.min(20)
        };
        (BACKOFF_BASE * 2u32.pow(exp)).min(cap)
    }

    /// Draws the delay before the next attempt, uniform in [0, window] (full jitter), and
    /// counts the attempt.
    pub fn next_delay(&mut self) -> Duration {
        let window = self.window(self.attempt);
        self.attempt = self.attempt.saturating_add(1);
        if self.faults.has(Fault::NoJitter) {
            return window;
        }
        let ms = window.as_millis() as u64;
        Duration::from_millis(self.rng.random_range(0..=ms))
    }

    /// The connection stayed open for [`STABLE_AFTER`] after `welcome`: back to attempt 0.
    pub fn stable(&mut self) {
        if !self.faults.has(Fault::NoStableReset) {
            self.attempt = 0;
        }
    }

    /// A `welcome` arrived. Only the [`Fault::EarlyStableReset`] fault resets here.
    pub fn welcomed(&mut self) {
        if self.faults.has(Fault::EarlyStableReset) {
            self.attempt = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_double_from_one_second_to_the_cap() {
        let b = Backoff::new(1, Faults::none());
        let windows: Vec<u64> = (0..8).map(|n| b.window(n).as_millis() as u64).collect();
        assert_eq!(
            windows,
            [1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]
        );
    }

    #[test]
    fn delays_stay_inside_their_window_and_spread() {
        let mut b = Backoff::new(7, Faults::none());
        let mut first = Vec::new();
        for _ in 0..200 {
            let d = b.next_delay();
            assert!(d <= Duration::from_millis(1000));
            first.push(d);
            b.stable();
        }
        let distinct: std::collections::BTreeSet<_> = first.iter().collect();
        assert!(distinct.len() > 100, "full jitter spreads the delays");
        let below_half = first.iter().filter(|d| d.as_millis() < 500).count();
        assert!(
            (60..140).contains(&below_half),
            "{below_half} of 200 below half"
        );
    }

    #[test]
    fn the_same_seed_gives_the_same_delays() {
        let mut a = Backoff::new(42, Faults::none());
        let mut b = Backoff::new(42, Faults::none());
        for _ in 0..10 {
            assert_eq!(a.next_delay(), b.next_delay());
        }
    }

    #[cfg(feature = "faults")]
    #[test]
    fn the_faults_no_conform_case_reaches_break_the_backoff() {
        let mut faults = Faults::none();
        faults.insert(Fault::BackoffCap120s);
        assert_eq!(Backoff::new(1, faults).window(8), Duration::from_secs(120));
        let mut faults = Faults::none();
        faults.insert(Fault::NoStableReset);
        let mut b = Backoff::new(1, faults);
        b.next_delay();
        b.stable();
        assert_eq!(
            b.attempt(),
            1,
            "the fault keeps the attempt after a stable connection"
        );
    }

    #[test]
    fn only_a_stable_connection_resets_the_attempt() {
        let mut b = Backoff::new(3, Faults::none());
        b.next_delay();
        b.next_delay();
        b.welcomed();
        assert_eq!(b.attempt(), 2, "a welcome alone does not reset");
        b.stable();
        assert_eq!(b.attempt(), 0);
    }
}
