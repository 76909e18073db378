//! The statistics of jitter grading: a one-sample Kolmogorov-Smirnov test against the
//! uniform distribution of a full-jitter window (CLIENT-3).

/// The KS distance between the samples and uniform on `[min, max]` (values outside clamp).
pub fn ks_uniform(xs: &[f64], min: f64, max: f64) -> f64 {
    if xs.is_empty() || max <= min {
        return 1.0;
    }
    let mut u: Vec<f64> = xs
        .iter()
        .map(|x| ((x - min) / (max - min)).clamp(0.0, 1.0))
        .collect();
    u.sort_by(f64::total_cmp);
    let n = u.len() as f64;
    u.iter()
        .enumerate()
        .map(|(i, v)| {
            let above = (i as f64 + 1.0) / n - v;
            let below = v - i as f64 / n;
            above.max(below)
        })
        .fold(0.0, f64::max)
}

/// The critical KS distance for `n` samples at significance 0.001 (asymptotic:
/// sqrt(ln(2/0.001)/2) / sqrt(n)).
pub fn ks_critical_001(n: usize) -> f64 {
    ((2.0f64 / 0.001).ln() / 2.0).sqrt() / (n.max(1) as f64).sqrt()
}

/// The mean.
pub fn mean(xs: &[f64]) -> f64 {
    if xs.is_empty() {
        0.0
    } else {
        xs.iter().sum::<f64>() / xs.len() as f64
    }
}

/// Samples rounded to whole milliseconds, sorted, for reports.
pub fn rounded(xs: &[f64]) -> Vec<i64> {
    let mut v: Vec<i64> = xs.iter().map(|x| x.round() as i64).collect();
    v.sort_unstable();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evenly_spread_delays_pass_and_fixed_or_half_jitter_fail() {
        let n = 24;
        let crit = ks_critical_001(n);
        let spread: Vec<f64> = (0..n)
            .map(|i| (i as f64 + 0.5) * 1000.0 / n as f64)
            .collect();
        assert!(ks_uniform(&spread, 0.0, 1000.0) < crit);
        let fixed = vec![1000.0; n];
        assert!(ks_uniform(&fixed, 0.0, 1000.0) > crit);
        let zero = vec![2.0; n];
        assert!(ks_uniform(&zero, 0.0, 1000.0) > crit);
        let half: Vec<f64> = spread.iter().map(|x| 500.0 + x / 2.0).collect();
        assert!(ks_uniform(&half, 0.0, 1000.0) > crit);
        // A window that did not grow: [0, 1000] where [0, 2000] was due.
        assert!(ks_uniform(&spread, 0.0, 2000.0) > crit);
    }
}
