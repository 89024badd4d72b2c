//! Aggregation of judged items into `results.json`: accuracy (and acc_norm) per condition and
//! format with bootstrap intervals, breakdowns per group (country, gold label, …), and the
//! robustness summary across formats. Also the short terminal table.

use crate::log::{ItemRecord, RunIdentity};
use crate::metrics::{accuracy, bootstrap, changed_share, mean_of, spread, Interval};
use serde::Serialize;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};

pub struct RunFacts {
    pub identity: RunIdentity,
    pub seed: u64,
    pub conditions: Vec<String>,
    pub formats: Vec<String>,
    pub items: usize,
    pub tasks: usize,
    pub computed: usize,
    pub resumed: usize,
    pub wall_seconds: f64,
    pub tokens: usize,
    pub tokens_per_second: f64,
    pub reference: Option<(&'static str, f64)>,
    pub has_gold: bool,
    /// (condition a, condition b, group kind) compared item by item, and the items taking part.
    pub paired: Option<(&'static str, &'static str, &'static str)>,
    pub paired_ids: std::collections::HashSet<String>,
    /// Conditions that ask the same thing differently (`Benchmark::consistency_conditions`)
    /// among those run.
    pub consistency: Vec<String>,
    /// What the run sent to a server (remote backend only).
    pub traffic: Option<Value>,
    /// Whether predictions and gold answers are class labels whose macro-F1 is reported
    /// (`Benchmark::macro_f1`).
    pub macro_f1: bool,
}

#[derive(Serialize, Debug)]
pub struct GroupAccuracy {
    pub n: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acc: Option<f64>,
    /// Mean graded score, for benchmarks that give one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub score: Option<f64>,
}

#[derive(Serialize, Debug)]
pub struct FormatMetrics {
    pub n: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acc: Option<Interval>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acc_norm: Option<Interval>,
    /// The mean over labels of each label's F1 (labels: those among the gold answers and
    /// predictions, as scikit-learn's `f1_score(average="macro")` takes them), for benchmarks
    /// that classify.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub macro_f1: Option<Interval>,
    /// Mean graded score in [-1, 1] with its interval (benchmarks without gold answers).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub score: Option<Interval>,
    /// Counts of scores in ten equal bins over [-1, 1].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub score_histogram: Option<Vec<usize>>,
    /// Group kind (country, gold, …) -> group -> accuracy / mean score.
    pub by: BTreeMap<String, BTreeMap<String, GroupAccuracy>>,
}

/// Condition a minus condition b, per item, for one format.
#[derive(Serialize, Debug)]
pub struct Gap {
    pub conditions: [String; 2],
    pub items: usize,
    pub overall: Interval,
    /// Group -> mean difference with its interval.
    pub by: BTreeMap<String, Interval>,
    pub by_kind: String,
}

#[derive(Serialize, Debug)]
pub struct Robustness {
    pub formats: Vec<String>,
    /// Items judged under every format (the ones compared).
    pub items: usize,
    pub accuracy: BTreeMap<String, f64>,
    /// Max minus min accuracy across the formats, with its bootstrap interval.
    pub spread: Interval,
    /// Share of items whose prediction differs between at least two formats.
    pub changed_share: f64,
}

#[derive(Serialize, Debug)]
pub struct Results {
    pub benchmark: String,
    pub ethos_version: &'static str,
    pub model: Value,
    pub dataset_sha256: String,
    /// The control vectors that steered the run (absent: unsteered).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub steering: Option<Value>,
    pub seed: u64,
    pub conditions: Vec<String>,
    pub formats: Vec<String>,
    pub items: usize,
    pub tasks: usize,
    pub computed_this_run: usize,
    pub resumed: usize,
    pub wall_seconds: f64,
    pub tokens: usize,
    pub tokens_per_second: f64,
    /// Requests, retries and tokens sent to the server this run (remote backend only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub traffic: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference: Option<Value>,
    /// condition -> format -> metrics
    pub metrics: BTreeMap<String, BTreeMap<String, FormatMetrics>>,
    /// condition -> robustness across the formats run (two or more)
    pub robustness: BTreeMap<String, Robustness>,
    /// format -> the paired-condition difference (CIVICS: original language minus English)
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub gaps: BTreeMap<String, Gap>,
    /// format -> the share of items right under every consistency condition
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub consistency: BTreeMap<String, Consistency>,
}

/// How often an item is answered right however it is asked.
#[derive(Serialize, Debug)]
pub struct Consistency {
    pub conditions: Vec<String>,
    /// Items judged under every one of the conditions.
    pub items: usize,
    /// The share of those right under all of them.
    pub all_right: Interval,
}

pub fn compute(run: &RunFacts, records: &[&ItemRecord]) -> Results {
    let mut metrics: BTreeMap<String, BTreeMap<String, FormatMetrics>> = BTreeMap::new();
    let mut robustness = BTreeMap::new();
    for c in &run.conditions {
        let mut per_format: Vec<(String, HashMap<&str, &ItemRecord>)> = Vec::new();
        for f in &run.formats {
            let rs: Vec<&ItemRecord> = records
                .iter()
                .copied()
                .filter(|r| &r.condition == c && &r.format == f)
                .collect();
            if rs.is_empty() {
                continue;
            }
            let correct: Vec<bool> = rs.iter().map(|r| r.judgement.correct).collect();
            let norm: Option<Vec<bool>> = rs.iter().map(|r| r.judgement.correct_norm).collect();
            let scores: Option<Vec<f64>> = rs.iter().map(|r| r.judgement.score).collect();
            // kind -> group -> (n, correct, score sum)
            let mut by: BTreeMap<String, BTreeMap<String, (usize, usize, f64)>> = BTreeMap::new();
            for r in &rs {
                for (k, vs) in &r.groups {
                    for v in vs {
                        let e = by
                            .entry(k.clone())
                            .or_default()
                            .entry(v.clone())
                            .or_default();
                        e.0 += 1;
                        e.1 += r.judgement.correct as usize;
                        e.2 += r.judgement.score.unwrap_or(0.0);
                    }
                }
            }
            let by = by
                .into_iter()
                .map(|(k, groups)| {
                    let g = groups
                        .into_iter()
                        .map(|(v, (n, ok, sum))| {
                            let a = GroupAccuracy {
                                n,
                                acc: run.has_gold.then(|| ok as f64 / n as f64),
                                score: scores.as_ref().map(|_| sum / n as f64),
                            };
                            (v, a)
                        })
                        .collect();
                    (k, g)
                })
                .collect();
            metrics.entry(c.clone()).or_default().insert(
                f.clone(),
                FormatMetrics {
                    n: rs.len(),
                    acc: run.has_gold.then(|| accuracy(&correct, run.seed)),
                    acc_norm: if run.has_gold {
                        norm.map(|n| accuracy(&n, run.seed))
                    } else {
                        None
                    },
                    macro_f1: run.macro_f1.then(|| {
                        let pairs: Vec<(&str, &str)> = rs
                            .iter()
                            .map(|r| (r.judgement.prediction.as_str(), r.judgement.gold.as_str()))
                            .collect();
                        bootstrap(pairs.len(), run.seed, |idx| macro_f1(&pairs, idx))
                    }),
                    score: scores
                        .as_ref()
                        .map(|x| bootstrap(x.len(), run.seed, |idx| mean_of(x, idx))),
                    score_histogram: scores.as_ref().map(|x| histogram(x)),
                    by,
                },
            );
            per_format.push((f.clone(), rs.iter().map(|r| (r.id.as_str(), *r)).collect()));
        }
        if per_format.len() >= 2 && run.has_gold {
            let mut ids: Vec<&str> = per_format[0].1.keys().copied().collect();
            ids.retain(|id| per_format.iter().all(|(_, m)| m.contains_key(id)));
            ids.sort_by_key(|id| (id.parse::<u64>().unwrap_or(u64::MAX), id.to_string()));
            let correct: Vec<Vec<bool>> = per_format
                .iter()
                .map(|(_, m)| ids.iter().map(|id| m[id].judgement.correct).collect())
                .collect();
            let preds: Vec<Vec<String>> = per_format
                .iter()
                .map(|(_, m)| {
                    ids.iter()
                        .map(|id| m[id].judgement.prediction.clone())
                        .collect()
                })
                .collect();
            let acc = per_format
                .iter()
                .zip(&correct)
                .map(|((f, _), c)| {
                    (
                        f.clone(),
                        c.iter().filter(|&&b| b).count() as f64 / c.len().max(1) as f64,
                    )
                })
                .collect();
            robustness.insert(
                c.clone(),
                Robustness {
                    formats: per_format.iter().map(|(f, _)| f.clone()).collect(),
                    items: ids.len(),
                    accuracy: acc,
                    spread: spread(&correct, run.seed),
                    changed_share: changed_share(&preds),
                },
            );
        }
    }
    let gaps = run
        .paired
        .map_or_else(BTreeMap::new, |p| gaps(run, records, p));
    let consistency = consistency(run, records);
    Results {
        benchmark: run.identity.benchmark.clone(),
        ethos_version: env!("CARGO_PKG_VERSION"),
        model: run.identity.model.clone(),
        dataset_sha256: run.identity.dataset_sha256.clone(),
        steering: run.identity.steering.clone(),
        seed: run.seed,
        conditions: run.conditions.clone(),
        formats: run.formats.clone(),
        items: run.items,
        tasks: run.tasks,
        computed_this_run: run.computed,
        resumed: run.resumed,
        wall_seconds: run.wall_seconds,
        tokens: run.tokens,
        tokens_per_second: run.tokens_per_second,
        traffic: run.traffic.clone(),
        reference: run
            .reference
            .map(|(name, acc)| serde_json::json!({"name": name, "accuracy": acc})),
        metrics,
        robustness,
        gaps,
        consistency,
    }
}

/// Per format: the share of items right under every consistency condition, over the items
/// judged under all of them.
fn consistency(run: &RunFacts, records: &[&ItemRecord]) -> BTreeMap<String, Consistency> {
    let mut out = BTreeMap::new();
    if run.consistency.len() < 2 {
        return out;
    }
    for f in &run.formats {
        // id -> (conditions seen, all right so far)
        let mut seen: BTreeMap<&str, (usize, bool)> = BTreeMap::new();
        for r in records
            .iter()
            .filter(|r| &r.format == f && run.consistency.contains(&r.condition))
        {
            let e = seen.entry(r.id.as_str()).or_insert((0, true));
            e.0 += 1;
            e.1 &= r.judgement.correct;
        }
        let all: Vec<bool> = seen
            .values()
            .filter(|(n, _)| *n == run.consistency.len())
            .map(|(_, ok)| *ok)
            .collect();
        if all.is_empty() {
            continue;
        }
        out.insert(
            f.clone(),
            Consistency {
                conditions: run.consistency.clone(),
                items: all.len(),
                all_right: accuracy(&all, run.seed),
            },
        );
    }
    out
}

fn histogram(xs: &[f64]) -> Vec<usize> {
    let mut h = vec![0; 10];
    for &x in xs {
        let b = (((x + 1.0) / 2.0 * 10.0).floor() as isize).clamp(0, 9) as usize;
        h[b] += 1;
    }
    h
}

/// Per format: score under condition a minus under condition b, item by item, over the items
/// that take part, overall and per group of `kind`.
fn gaps(
    run: &RunFacts,
    records: &[&ItemRecord],
    (a, b, kind): (&str, &str, &str),
) -> BTreeMap<String, Gap> {
    let mut out = BTreeMap::new();
    for f in &run.formats {
        let pick = |c: &str| -> HashMap<&str, &ItemRecord> {
            records
                .iter()
                .filter(|r| r.condition == c && &r.format == f && run.paired_ids.contains(&r.id))
                .map(|r| (r.id.as_str(), *r))
                .collect()
        };
        let (ma, mb) = (pick(a), pick(b));
        let mut ids: Vec<&str> = ma
            .keys()
            .copied()
            .filter(|id| mb.contains_key(id))
            .collect();
        if ids.is_empty() {
            continue;
        }
        ids.sort_by_key(|id| (id.parse::<u64>().unwrap_or(u64::MAX), id.to_string()));
        let diff = |id: &str| {
            ma[id].judgement.score.unwrap_or(0.0) - mb[id].judgement.score.unwrap_or(0.0)
        };
        let all: Vec<f64> = ids.iter().map(|id| diff(id)).collect();
        let mut by_group: BTreeMap<String, Vec<f64>> = BTreeMap::new();
        for id in &ids {
            for g in ma[id].groups.get(kind).into_iter().flatten() {
                by_group.entry(g.clone()).or_default().push(diff(id));
            }
        }
        out.insert(
            f.clone(),
            Gap {
                conditions: [a.to_string(), b.to_string()],
                items: ids.len(),
                overall: bootstrap(all.len(), run.seed, |idx| mean_of(&all, idx)),
                by: by_group
                    .into_iter()
                    .map(|(g, d)| (g, bootstrap(d.len(), run.seed, |idx| mean_of(&d, idx))))
                    .collect(),
                by_kind: kind.to_string(),
            },
        );
    }
    out
}

fn pct(x: f64) -> String {
    format!("{:5.1}", 100.0 * x)
}

/// The short terminal table.
/// Macro-F1 of (prediction, gold) pairs `idx`: each label's F1, 2 TP / (2 TP + FP + FN),
/// averaged over the labels among them.
pub fn macro_f1(pairs: &[(&str, &str)], idx: &[usize]) -> f64 {
    let mut labels: Vec<&str> = idx.iter().flat_map(|&i| [pairs[i].0, pairs[i].1]).collect();
    labels.sort_unstable();
    labels.dedup();
    if labels.is_empty() {
        return 0.0;
    }
    let f1 = |l: &str| {
        let (mut tp, mut fp, mut fn_) = (0usize, 0usize, 0usize);
        for &i in idx {
            let (p, g) = pairs[i];
            match (p == l, g == l) {
                (true, true) => tp += 1,
                (true, false) => fp += 1,
                (false, true) => fn_ += 1,
                (false, false) => {}
            }
        }
        2.0 * tp as f64 / (2 * tp + fp + fn_) as f64
    };
    labels.iter().map(|l| f1(l)).sum::<f64>() / labels.len() as f64
}

pub fn table(r: &Results) -> String {
    let mut out = format!(
        "{} on {} ({} items, {} judged now, {} resumed; {:.1} s, {:.0} tok/s)\n",
        r.benchmark,
        r.model.get("source").and_then(Value::as_str).unwrap_or("?"),
        r.items,
        r.computed_this_run,
        r.resumed,
        r.wall_seconds,
        r.tokens_per_second
    );
    // The condition column fits the longest condition name.
    let cw = r
        .metrics
        .keys()
        .map(|c| c.chars().count())
        .max()
        .unwrap_or(0)
        .max(10);
    let scored = r
        .metrics
        .values()
        .flat_map(|m| m.values())
        .any(|m| m.score.is_some());
    if scored {
        out.push_str(&format!(
            "{:<cw$} {:<26} {:>6} {:>7} {:>17}\n",
            "condition", "format", "n", "score", "95% CI"
        ));
    } else {
        out.push_str(&format!(
            "{:<cw$} {:<26} {:>6} {:>7} {:>15} {:>8}\n",
            "condition", "format", "n", "acc %", "95% CI", "norm %"
        ));
    }
    for (c, fs) in &r.metrics {
        for (f, m) in fs {
            if let (Some(s), true) = (m.score, scored) {
                out.push_str(&format!(
                    "{:<cw$} {:<26} {:>6} {:>+7.3} {:>17}\n",
                    c,
                    f,
                    m.n,
                    s.value,
                    format!("[{:+.3}, {:+.3}]", s.ci95[0], s.ci95[1])
                ));
            } else if let Some(acc) = m.acc {
                out.push_str(&format!(
                    "{:<cw$} {:<26} {:>6} {:>7} {:>15} {:>8}\n",
                    c,
                    f,
                    m.n,
                    pct(acc.value),
                    format!("[{}, {}]", pct(acc.ci95[0]).trim(), pct(acc.ci95[1]).trim()),
                    m.acc_norm.map_or("-".to_string(), |a| pct(a.value)),
                ));
            }
        }
    }
    for (c, fs) in &r.metrics {
        for (f, m) in fs {
            if let Some(m) = m.macro_f1 {
                out.push_str(&format!(
                    "macro-F1 ({c}, {f}): {:.3} [{:.3}, {:.3}]\n",
                    m.value, m.ci95[0], m.ci95[1]
                ));
            }
        }
    }
    for (f, g) in &r.gaps {
        out.push_str(&format!(
            "gap {} - {} ({f}, {} items): {:+.3} [{:+.3}, {:+.3}]; by {}: {}\n",
            g.conditions[0],
            g.conditions[1],
            g.items,
            g.overall.value,
            g.overall.ci95[0],
            g.overall.ci95[1],
            g.by_kind,
            g.by.iter()
                .map(|(k, v)| format!("{k} {:+.3}", v.value))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    for (c, rb) in &r.robustness {
        out.push_str(&format!(
            "robustness ({c}, {} formats, {} items): spread {} points [{}, {}], answer changes with the format for {}% of items\n",
            rb.formats.len(),
            rb.items,
            pct(rb.spread.value).trim(),
            pct(rb.spread.ci95[0]).trim(),
            pct(rb.spread.ci95[1]).trim(),
            pct(rb.changed_share).trim()
        ));
    }
    for (f, c) in &r.consistency {
        out.push_str(&format!(
            "consistency ({f}, {} items asked {} ways): right every way {}% [{}, {}]\n",
            c.items,
            c.conditions.len(),
            pct(c.all_right.value).trim(),
            pct(c.all_right.ci95[0]).trim(),
            pct(c.all_right.ci95[1]).trim()
        ));
    }
    if let Some(reference) = &r.reference {
        out.push_str(&format!(
            "reference: {} {}%\n",
            reference["name"].as_str().unwrap_or(""),
            pct(reference["accuracy"].as_f64().unwrap_or(f64::NAN)).trim()
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, condition: &str, correct: bool) -> ItemRecord {
        ItemRecord::judged(id, condition, "zero-shot", correct)
    }

    /// scikit-learn 1.x `f1_score(y_true, y_pred, average="macro")` on the same labels.
    #[test]
    fn macro_f1_is_scikit_learns() {
        let gold = [
            "Supports", "Supports", "Opposes", "Either", "Opposes", "Supports",
        ];
        let pred = [
            "Supports", "Opposes", "Opposes", "Supports", "Opposes", "Either",
        ];
        let pairs: Vec<(&str, &str)> = pred.iter().copied().zip(gold.iter().copied()).collect();
        let all: Vec<usize> = (0..pairs.len()).collect();
        // Supports 0.4, Opposes 0.8, Either 0: mean 0.4.
        assert!((macro_f1(&pairs, &all) - 0.4).abs() < 1e-12);
    }

    #[test]
    fn consistency_counts_items_right_every_way_among_those_asked_every_way() {
        let ways = vec!["moral".to_string(), "unmoral".to_string()];
        let run = RunFacts {
            identity: RunIdentity {
                benchmark: "b".into(),
                model: Value::Null,
                dataset_sha256: String::new(),
                steering: None,
            },
            seed: 0,
            conditions: ways.clone(),
            formats: vec!["zero-shot".into()],
            items: 3,
            tasks: 5,
            computed: 5,
            resumed: 0,
            wall_seconds: 0.0,
            tokens: 0,
            tokens_per_second: 0.0,
            reference: None,
            has_gold: true,
            paired: None,
            paired_ids: Default::default(),
            consistency: ways,
            traffic: None,
            macro_f1: false,
        };
        // Item 1 right both ways, item 2 right one way, item 3 asked one way only.
        let rs = [
            record("1", "moral", true),
            record("1", "unmoral", true),
            record("2", "moral", true),
            record("2", "unmoral", false),
            record("3", "moral", true),
        ];
        let refs: Vec<&ItemRecord> = rs.iter().collect();
        let c = &consistency(&run, &refs)["zero-shot"];
        assert_eq!(c.items, 2);
        assert_eq!(c.all_right.value, 0.5);
        let one_way = RunFacts {
            consistency: vec!["moral".into()],
            ..run
        };
        assert!(consistency(&one_way, &refs).is_empty());
    }
}
