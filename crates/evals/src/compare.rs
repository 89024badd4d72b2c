//! Steered against unsteered: the same benchmark run twice (`ethos eval ...
//! --control-vector`), compared item by item. For every condition and format: the accuracy
//! (or mean graded score, for benchmarks without gold answers) of each run and their
//! difference, steered minus unsteered, with a paired bootstrap 95 % interval over the items
//! both runs judged.

use crate::error::{Error, Result};
use crate::log::ItemRecord;
use crate::metrics::{bootstrap, mean_of, Interval};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

#[derive(Serialize, Debug)]
pub struct Difference {
    pub condition: String,
    pub format: String,
    /// Items judged in both runs.
    pub n: usize,
    /// "accuracy" or "score".
    pub metric: &'static str,
    pub unsteered: f64,
    pub steered: f64,
    pub difference: Interval,
}

fn read_items(dir: &Path) -> Result<HashMap<(String, String, String), ItemRecord>> {
    let path = dir.join("items.jsonl");
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, "cannot read", e))?;
    let mut out = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let r: ItemRecord = serde_json::from_str(line).map_err(|e| Error::ItemRecord {
            path: path.clone(),
            line: i + 1,
            err: e,
        })?;
        out.insert(r.key(), r);
    }
    Ok(out)
}

fn value(r: &ItemRecord, graded: bool) -> f64 {
    if graded {
        r.judgement.score.unwrap_or(f64::NAN)
    } else if r.judgement.correct {
        1.0
    } else {
        0.0
    }
}

/// The differences between the run folders `unsteered` and `steered`; `graded`: compare mean
/// scores instead of accuracy.
pub fn steering_effect(
    unsteered: &Path,
    steered: &Path,
    graded: bool,
    seed: u64,
) -> Result<Vec<Difference>> {
    let (u, s) = (read_items(unsteered)?, read_items(steered)?);
    let mut pairs: BTreeMap<(String, String), Vec<(f64, f64)>> = BTreeMap::new();
    let mut keys: Vec<_> = u.keys().filter(|k| s.contains_key(*k)).cloned().collect();
    keys.sort();
    for k in keys {
        let (a, b) = (value(&u[&k], graded), value(&s[&k], graded));
        if a.is_finite() && b.is_finite() {
            pairs
                .entry((k.1.clone(), k.2.clone()))
                .or_default()
                .push((a, b));
        }
    }
    Ok(pairs
        .into_iter()
        .map(|((condition, format), xs)| {
            let us: Vec<f64> = xs.iter().map(|p| p.0).collect();
            let st: Vec<f64> = xs.iter().map(|p| p.1).collect();
            let d: Vec<f64> = xs.iter().map(|p| p.1 - p.0).collect();
            let all: Vec<usize> = (0..xs.len()).collect();
            Difference {
                condition,
                format,
                n: xs.len(),
                metric: if graded { "score" } else { "accuracy" },
                unsteered: mean_of(&us, &all),
                steered: mean_of(&st, &all),
                difference: bootstrap(d.len(), seed, |idx| mean_of(&d, idx)),
            }
        })
        .collect())
}

/// How steering moved a Utility Engineering run: the correlation of the outcomes' utility
/// means between the runs, and the outcomes that moved most each way.
#[derive(Serialize, Debug)]
pub struct UtilityShift {
    pub outcomes: usize,
    /// Pearson correlation of the utility means, unsteered against steered.
    pub pearson: f64,
    pub mean_abs_change: f64,
    /// (outcome, unsteered mean, steered mean), largest rises first.
    pub rose: Vec<(String, f64, f64)>,
    /// Largest falls first.
    pub fell: Vec<(String, f64, f64)>,
}

pub fn utility_shift(
    unsteered: &crate::benchmarks::utility::UtilityResults,
    steered: &crate::benchmarks::utility::UtilityResults,
    top: usize,
) -> UtilityShift {
    let by_id: HashMap<usize, &crate::benchmarks::utility::RankedOutcome> =
        steered.utilities.iter().map(|o| (o.id, o)).collect();
    let mut rows: Vec<(String, f64, f64)> = unsteered
        .utilities
        .iter()
        .filter_map(|o| {
            by_id
                .get(&o.id)
                .map(|s| (o.outcome.clone(), o.mean, s.mean))
        })
        .collect();
    let n = rows.len() as f64;
    let (mu, ms) = (
        rows.iter().map(|r| r.1).sum::<f64>() / n,
        rows.iter().map(|r| r.2).sum::<f64>() / n,
    );
    let cov: f64 = rows.iter().map(|r| (r.1 - mu) * (r.2 - ms)).sum();
    let (vu, vs): (f64, f64) = (
        rows.iter().map(|r| (r.1 - mu).powi(2)).sum(),
        rows.iter().map(|r| (r.2 - ms).powi(2)).sum(),
    );
    let mean_abs_change = rows.iter().map(|r| (r.2 - r.1).abs()).sum::<f64>() / n;
    rows.sort_by(|a, b| (b.2 - b.1).total_cmp(&(a.2 - a.1)));
    let rose = rows.iter().take(top).cloned().collect();
    let fell = rows.iter().rev().take(top).cloned().collect();
    UtilityShift {
        outcomes: rows.len(),
        pearson: cov / (vu * vs).sqrt(),
        mean_abs_change,
        rose,
        fell,
    }
}

/// The comparison as a terminal table.
pub fn table(diffs: &[Difference]) -> String {
    table_of(diffs, "unsteered", "steered")
}

/// The comparison of run `after` against run `before` as a terminal table.
pub fn table_of(diffs: &[Difference], before: &str, after: &str) -> String {
    let mut out = format!(
        "{:<12} {:<16} {:>6} {:>10} {:>10} {:>28}\n",
        "condition",
        "format",
        "n",
        before,
        after,
        format!("{after} - {before} (95 %)")
    );
    for d in diffs {
        out.push_str(&format!(
            "{:<12} {:<16} {:>6} {:>10.4} {:>10.4} {:>28}\n",
            d.condition,
            d.format,
            d.n,
            d.unsteered,
            d.steered,
            format!(
                "{:+.4} [{:+.4}, {:+.4}]",
                d.difference.value, d.difference.ci95[0], d.difference.ci95[1]
            )
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, correct: bool) -> String {
        let r = ItemRecord::judged(id, "easy", "harness", correct);
        serde_json::to_string(&r).unwrap() + "\n"
    }

    /// Paired by item: 4 items, steering fixes two and breaks none: +0.5, and the interval
    /// holds it; an item only one run judged is left out.
    #[test]
    fn paired_difference_of_accuracy() {
        let (u, s) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let un: String = [
            ("1", true),
            ("2", false),
            ("3", false),
            ("4", true),
            ("5", true),
        ]
        .iter()
        .map(|(i, c)| record(i, *c))
        .collect();
        let st: String = [("1", true), ("2", true), ("3", true), ("4", true)]
            .iter()
            .map(|(i, c)| record(i, *c))
            .collect();
        std::fs::write(u.path().join("items.jsonl"), un).unwrap();
        std::fs::write(s.path().join("items.jsonl"), st).unwrap();
        let d = steering_effect(u.path(), s.path(), false, 0).unwrap();
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].n, 4);
        assert_eq!((d[0].unsteered, d[0].steered), (0.5, 1.0));
        assert_eq!(d[0].difference.value, 0.5);
        let [lo, hi] = d[0].difference.ci95;
        assert!(lo <= 0.5 && 0.5 <= hi && lo >= 0.0, "{lo} {hi}");
    }
}
