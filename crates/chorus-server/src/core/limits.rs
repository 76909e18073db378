//! Limits the core enforces itself: the broadcast token bucket (LIMIT-5, LIMIT-6), the
//! grant patterns of private channels (CHAN-5, CHAN-6) and the token's rights (CHAN-36).

use chorus_protocol::{ChannelName, Millis, Right, Rights};

use super::errors::CoreError;

/// The size limits of values (PRES-34, CURS-21, ROOM-22, CONN-25, STATE-34): bytes of the
/// value's compact JSON serialisation, UTF-8.
pub fn json_bytes(value: &serde_json::Value) -> u64 {
    serde_json::to_string(value).map_or(u64::MAX, |s| s.len() as u64)
}

/// `limit_exceeded` naming `limit` when `value` is larger than `max` bytes.
pub(super) fn check_size(
    value: Option<&serde_json::Value>,
    max: u64,
    limit: &'static str,
) -> Result<(), CoreError> {
    match value {
        Some(v) if json_bytes(v) > max => Err(CoreError::LimitExceeded { limit }),
        _ => Ok(()),
    }
}

/// A token bucket of capacity `burst`, starting full, refilling continuously at `rate`
/// tokens per second.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct TokenBucket {
    tokens: f64,
    at: Millis,
}

impl TokenBucket {
    pub fn full(burst: u32, now: Millis) -> TokenBucket {
        TokenBucket {
            tokens: f64::from(burst),
            at: now,
        }
    }

    /// Takes one token, or says how many ms until one is available (at least 1).
    pub fn take(&mut self, rate: u32, burst: u32, now: Millis) -> Result<(), u64> {
        self.take_at(f64::from(rate) / 1000.0, burst, now)
    }

    /// [`TokenBucket::take`] for a bucket gaining one token every `interval_ms`.
    pub fn take_every(&mut self, interval_ms: u64, burst: u32, now: Millis) -> Result<(), u64> {
        self.take_at(per_ms(interval_ms), burst, now)
    }

    /// Whether a bucket gaining one token every `interval_ms` holds one now, or how many ms
    /// until it does: [`TokenBucket::take_every`] without taking it.
    pub fn check_every(&mut self, interval_ms: u64, burst: u32, now: Millis) -> Result<(), u64> {
        self.refill(per_ms(interval_ms), burst, now);
        self.wait(per_ms(interval_ms))
    }

    fn take_at(&mut self, per_ms: f64, burst: u32, now: Millis) -> Result<(), u64> {
        self.refill(per_ms, burst, now);
        self.wait(per_ms)?;
        self.tokens -= 1.0;
        Ok(())
    }

    fn refill(&mut self, per_ms: f64, burst: u32, now: Millis) {
        let elapsed = now.saturating_sub(self.at) as f64;
        self.tokens = (self.tokens + elapsed * per_ms).min(f64::from(burst));
        self.at = self.at.max(now);
    }

    fn wait(&self, per_ms: f64) -> Result<(), u64> {
        if self.tokens >= 1.0 {
            return Ok(());
        }
        if per_ms <= 0.0 {
            return Err(u64::MAX);
        }
        let wait = ((1.0 - self.tokens) / per_ms).ceil();
        Err((wait as u64).max(1))
    }

    /// Whether the bucket has refilled completely by `now` (so it can be forgotten).
    pub fn is_full(&self, rate: u32, burst: u32, now: Millis) -> bool {
        let elapsed = now.saturating_sub(self.at) as f64;
        self.tokens + elapsed * f64::from(rate) / 1000.0 >= f64::from(burst)
    }
}

/// Tokens per ms of a bucket gaining one every `interval_ms`.
fn per_ms(interval_ms: u64) -> f64 {
    1.0 / interval_ms.max(1) as f64
}

/// Whether a `rights` claim allows `right` on `name`: no claim allows everything, a claim
/// allows what one of the right's patterns matches (CHAN-36).
pub(super) fn rights_allow(rights: Option<&Rights>, right: Right, name: &ChannelName) -> bool {
    rights.is_none_or(|r| grants_match(r.patterns(right), name))
}

/// Whether any grant pattern matches the whole name (`*` = any run, CHAN-6).
pub(super) fn grants_match(grants: &[String], name: &ChannelName) -> bool {
    grants
        .iter()
        .any(|g| glob_match(g.as_bytes(), name.as_str().as_bytes()))
}

/// Linear-time glob with `*` only (the classic backtracking-to-last-star algorithm).
fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if p < pattern.len() && pattern[p] == text[t] {
            p += 1;
            t += 1;
        } else if let Some((sp, st)) = star {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_whole_names() {
        let m = |p: &str, t: &str| glob_match(p.as_bytes(), t.as_bytes());
        assert!(m("private-team-*", "private-team-red"));
        assert!(m("private-team-*", "private-team-"));
        assert!(!m("private-team-*", "private-tea"));
        assert!(m("*", "private-x"));
        assert!(m("private-*-doc", "private-a-b-doc"));
        assert!(!m("private-doc-42", "private-doc-421"));
        assert!(m("private-doc-42", "private-doc-42"));
    }

    #[test]
    fn bucket_allows_burst_then_tells_the_wait() {
        let mut b = TokenBucket::full(2, 0);
        assert_eq!(b.take(10, 2, 0), Ok(()));
        assert_eq!(b.take(10, 2, 0), Ok(()));
        assert_eq!(b.take(10, 2, 0), Err(100));
        assert_eq!(b.take(10, 2, 60), Err(40));
        assert_eq!(b.take(10, 2, 100), Ok(()));
    }

    #[test]
    fn an_interval_bucket_regains_one_token_per_interval() {
        let mut b = TokenBucket::full(2, 0);
        assert_eq!(b.check_every(1000, 2, 0), Ok(()), "checking takes nothing");
        assert_eq!(b.take_every(1000, 2, 0), Ok(()));
        assert_eq!(b.take_every(1000, 2, 0), Ok(()));
        assert_eq!(b.check_every(1000, 2, 250), Err(750));
        assert_eq!(b.take_every(1000, 2, 1000), Ok(()));
    }
}
