//! Figures of a run, latency histograms and medians over repetitions.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;

/// One run's figures by name (units in the name: `_us`, `_ms`, `_kib`, `_per_sec`...).
pub type Figures = BTreeMap<String, f64>;

/// A latency histogram in nanoseconds, 3 significant digits, up to 100 s.
pub fn latency_histogram() -> Histogram<u64> {
    // Constant bounds within hdrhistogram's accepted range: no input reaches this.
    Histogram::new_with_bounds(1_000, 100_000_000_000, 3).expect("valid histogram bounds")
}

/// Adds p50/p99/p99.9 (ms) of `hist` to `figures` under `prefix` (e.g. `latency`).
pub fn add_percentiles(figures: &mut Figures, prefix: &str, hist: &Histogram<u64>) {
    if hist.is_empty() {
        return;
    }
    for (name, q) in [("p50", 0.50), ("p99", 0.99), ("p999", 0.999)] {
        let ms = hist.value_at_quantile(q) as f64 / 1e6;
        figures.insert(format!("{prefix}_{name}_ms"), ms);
    }
}

/// The median of `values` (mean of the two middle ones for an even count).
pub fn median(values: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    })
}

/// Per-figure medians over several runs; a figure missing from some runs takes the median of
/// the runs that have it.
pub fn medians(runs: &[Figures]) -> Figures {
    let mut names: Vec<&String> = runs.iter().flat_map(|r| r.keys()).collect();
    names.sort();
    names.dedup();
    names
        .into_iter()
        .filter_map(|name| {
            let values: Vec<f64> = runs.iter().filter_map(|r| r.get(name).copied()).collect();
            median(&values).map(|m| (name.clone(), m))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&[]), None);
    }

    #[test]
    fn medians_are_per_figure() {
        let run = |a: f64, b: f64| Figures::from([("a".into(), a), ("b".into(), b)]);
        let m = medians(&[run(1.0, 10.0), run(3.0, 30.0), run(2.0, 20.0)]);
        assert_eq!(m["a"], 2.0);
        assert_eq!(m["b"], 20.0);
    }

    #[test]
    fn percentiles_are_in_milliseconds() {
        let mut h = latency_histogram();
        for us in 1..=1000u64 {
            h.record(us * 1000).unwrap();
        }
        let mut f = Figures::new();
        add_percentiles(&mut f, "latency", &h);
        assert!((f["latency_p50_ms"] - 0.5).abs() < 0.01, "{f:?}");
        assert!((f["latency_p99_ms"] - 0.99).abs() < 0.01, "{f:?}");
    }
}
