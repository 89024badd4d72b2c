//! Metrics with percentile-bootstrap 95 % intervals (items resampled with replacement,
//! seeded, so a run's intervals are reproducible).

use ethos_steer::rng::Rng;
use serde::Serialize;

pub const RESAMPLES: usize = 1000;

#[derive(Clone, Copy, Debug, Serialize, PartialEq)]
pub struct Interval {
    pub value: f64,
    pub ci95: [f64; 2],
}

/// Quantile q in [0, 1] of sorted values, numpy's linear interpolation.
pub(crate) fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    // Linear interpolation between closest ranks (numpy's default).
    let pos = q * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

/// A statistic of `n` items and its bootstrap interval: `stat` gets the item indices of
/// one resample.
pub fn bootstrap(n: usize, seed: u64, stat: impl Fn(&[usize]) -> f64) -> Interval {
    let all: Vec<usize> = (0..n).collect();
    let value = stat(&all);
    if n == 0 {
        return Interval {
            value,
            ci95: [f64::NAN, f64::NAN],
        };
    }
    let mut rng = Rng::new(seed);
    let mut idx = vec![0usize; n];
    let mut stats = Vec::with_capacity(RESAMPLES);
    for _ in 0..RESAMPLES {
        for x in idx.iter_mut() {
            *x = ((rng.uniform() * n as f64) as usize).min(n - 1);
        }
        stats.push(stat(&idx));
    }
    stats.sort_by(f64::total_cmp);
    Interval {
        value,
        ci95: [percentile(&stats, 0.025), percentile(&stats, 0.975)],
    }
}

pub fn mean_of(xs: &[f64], idx: &[usize]) -> f64 {
    if idx.is_empty() {
        return f64::NAN;
    }
    idx.iter().map(|&i| xs[i]).sum::<f64>() / idx.len() as f64
}

/// Accuracy of `correct` with its interval.
pub fn accuracy(correct: &[bool], seed: u64) -> Interval {
    let xs: Vec<f64> = correct.iter().map(|&c| c as u8 as f64).collect();
    bootstrap(xs.len(), seed, |idx| mean_of(&xs, idx))
}

/// The spread of accuracy across formats (max minus min), items resampled jointly:
/// `correct[f][i]` is item i under format f, the same items in every format.
pub fn spread(correct: &[Vec<bool>], seed: u64) -> Interval {
    let n = correct.first().map_or(0, Vec::len);
    let xs: Vec<Vec<f64>> = correct
        .iter()
        .map(|c| c.iter().map(|&b| b as u8 as f64).collect())
        .collect();
    bootstrap(n, seed, |idx| {
        let accs: Vec<f64> = xs.iter().map(|x| mean_of(x, idx)).collect();
        let max = accs.iter().cloned().fold(f64::MIN, f64::max);
        let min = accs.iter().cloned().fold(f64::MAX, f64::min);
        max - min
    })
}

/// Share of items whose prediction is not the same under every format:
/// `predictions[f][i]` as for `spread`.
pub fn changed_share(predictions: &[Vec<String>]) -> f64 {
    let n = predictions.first().map_or(0, Vec::len);
    if n == 0 {
        return f64::NAN;
    }
    let changed = (0..n)
        .filter(|&i| predictions.iter().any(|p| p[i] != predictions[0][i]))
        .count();
    changed as f64 / n as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accuracy_interval_brackets_the_value_and_narrows_with_more_items() {
        let small: Vec<bool> = (0..40).map(|i| i % 4 != 0).collect();
        let big: Vec<bool> = (0..4000).map(|i| i % 4 != 0).collect();
        let a = accuracy(&small, 1);
        let b = accuracy(&big, 1);
        assert_eq!(a.value, 0.75);
        assert_eq!(b.value, 0.75);
        assert!(a.ci95[0] < 0.75 && 0.75 < a.ci95[1], "{a:?}");
        assert!(b.ci95[1] - b.ci95[0] < (a.ci95[1] - a.ci95[0]) / 5.0);
        // Binomial standard error at n=4000 is 0.00685: the 95 % half-width is about 0.0134.
        let half = (b.ci95[1] - b.ci95[0]) / 2.0;
        assert!((half - 0.0134).abs() < 0.002, "{half}");
        assert_eq!(accuracy(&small, 1), accuracy(&small, 1), "seeded");
    }

    #[test]
    fn spread_and_changed_share() {
        let f1 = vec![true, true, false, false];
        let f2 = vec![true, false, false, false];
        let s = spread(&[f1.clone(), f2.clone()], 3);
        assert!((s.value - 0.25).abs() < 1e-12);
        assert!(s.ci95[0] >= 0.0);
        assert_eq!(spread(&[f1.clone(), f1], 3).ci95, [0.0, 0.0]);
        let p = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let share = changed_share(&[p(&["A", "B", "C", "D"]), p(&["A", "C", "C", "A"])]);
        assert_eq!(share, 0.5);
    }

    #[test]
    fn percentile_matches_numpy_linear() {
        // numpy.percentile([1, 2, 3, 4], [2.5, 97.5]) = [1.075, 3.925]
        let s = [1.0, 2.0, 3.0, 4.0];
        assert!((percentile(&s, 0.025) - 1.075).abs() < 1e-12);
        assert!((percentile(&s, 0.975) - 3.925).abs() < 1e-12);
    }
}
