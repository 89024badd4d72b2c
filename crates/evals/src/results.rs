//! Aggregation of judged items into `results.json`: accuracy (and acc_norm) per condition and
//! format with bootstrap intervals, breakdowns per group (country, gold label, …), and the
//! robustness summary across formats. Also the short terminal table.

use crate::log::{ItemRecord, RunIdentity};
use crate::metrics::{accuracy, changed_share, spread, Interval};
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
}

#[derive(Serialize, Debug)]
pub struct GroupAccuracy {
    pub n: usize,
    pub acc: f64,
}

#[derive(Serialize, Debug)]
pub struct FormatMetrics {
    pub n: usize,
    pub acc: Interval,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acc_norm: Option<Interval>,
    /// Group kind (country, gold, …) -> group -> accuracy.
    pub by: BTreeMap<String, BTreeMap<String, GroupAccuracy>>,
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
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference: Option<Value>,
    /// condition -> format -> metrics
    pub metrics: BTreeMap<String, BTreeMap<String, FormatMetrics>>,
    /// condition -> robustness across the formats run (two or more)
    pub robustness: BTreeMap<String, Robustness>,
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
            let mut by: BTreeMap<String, BTreeMap<String, (usize, usize)>> = BTreeMap::new();
            for r in &rs {
                for (k, v) in &r.groups {
                    let e = by
                        .entry(k.clone())
                        .or_default()
                        .entry(v.clone())
                        .or_default();
                    e.0 += 1;
                    e.1 += r.judgement.correct as usize;
                }
            }
            let by = by
                .into_iter()
                .map(|(k, groups)| {
                    let g = groups
                        .into_iter()
                        .map(|(v, (n, ok))| {
                            (
                                v,
                                GroupAccuracy {
                                    n,
                                    acc: ok as f64 / n as f64,
                                },
                            )
                        })
                        .collect();
                    (k, g)
                })
                .collect();
            metrics.entry(c.clone()).or_default().insert(
                f.clone(),
                FormatMetrics {
                    n: rs.len(),
                    acc: accuracy(&correct, run.seed),
                    acc_norm: norm.map(|n| accuracy(&n, run.seed)),
                    by,
                },
            );
            per_format.push((f.clone(), rs.iter().map(|r| (r.id.as_str(), *r)).collect()));
        }
        if per_format.len() >= 2 {
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
    Results {
        benchmark: run.identity.benchmark.clone(),
        ethos_version: env!("CARGO_PKG_VERSION"),
        model: run.identity.model.clone(),
        dataset_sha256: run.identity.dataset_sha256.clone(),
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
        reference: run
            .reference
            .map(|(name, acc)| serde_json::json!({"name": name, "accuracy": acc})),
        metrics,
        robustness,
    }
}

fn pct(x: f64) -> String {
    format!("{:5.1}", 100.0 * x)
}

/// The short terminal table.
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
    out.push_str(&format!(
        "{:<10} {:<26} {:>6} {:>7} {:>15} {:>8}\n",
        "condition", "format", "n", "acc %", "95% CI", "norm %"
    ));
    for (c, fs) in &r.metrics {
        for (f, m) in fs {
            out.push_str(&format!(
                "{:<10} {:<26} {:>6} {:>7} {:>15} {:>8}\n",
                c,
                f,
                m.n,
                pct(m.acc.value),
                format!(
                    "[{}, {}]",
                    pct(m.acc.ci95[0]).trim(),
                    pct(m.acc.ci95[1]).trim()
                ),
                m.acc_norm.map_or("-".to_string(), |a| pct(a.value)),
            ));
        }
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
    if let Some(reference) = &r.reference {
        out.push_str(&format!(
            "reference: {} {}%\n",
            reference["name"].as_str().unwrap_or(""),
            pct(reference["accuracy"].as_f64().unwrap_or(f64::NAN)).trim()
        ));
    }
    out
}
