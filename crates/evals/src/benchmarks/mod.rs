//! The benchmarks, one file each, and how to get one by name (with the built-in data or a
//! user's own copy in the upstream schema).

pub mod civics;
pub mod cmoraleval;
pub mod culturalbench;
pub mod cvc;
pub mod diwali;
pub mod hkcanto;
pub mod normad;
pub mod task;
pub mod utility;
pub mod valueprism;
pub mod yue;

use crate::benchmark::Benchmark;
use crate::data::{combined_sha256, Source};
use crate::error::{bail, Result, ResultExt};
use std::path::Path;

pub const NAMES: &[&str] = &[
    "civics",
    "cmoraleval",
    "culturalbench",
    "cvc",
    "hkcanto",
    "normad",
    "valueprism",
    "yue-arc-c",
    "yue-truthfulqa",
];

/// A benchmark ready to run, and the SHA-256 of the data it holds.
pub struct Loaded {
    pub bench: Box<dyn Benchmark>,
    pub dataset_sha256: String,
}

/// Benchmark `name` with its built-in data, or the data at `path`: for CulturalBench an Easy
/// or Hard CSV (upstream columns) or a folder holding `CulturalBench-Easy.csv` and/or
/// `CulturalBench-Hard.csv`; for NormAd a CSV with the vendored file's columns; for CIVICS
/// the upstream `civics_dataset.json`.
pub fn load(name: &str, path: Option<&Path>) -> Result<Loaded> {
    match name {
        "culturalbench" => {
            let b = match path {
                None => culturalbench::CulturalBench::builtin()?,
                Some(p) if p.is_dir() => {
                    let mut sources = Vec::new();
                    for f in ["CulturalBench-Easy.csv", "CulturalBench-Hard.csv"] {
                        if p.join(f).exists() {
                            sources.push(Source::read(&p.join(f))?);
                        }
                    }
                    if sources.is_empty() {
                        bail!(
                            Data,
                            "{}: holds neither CulturalBench-Easy.csv nor CulturalBench-Hard.csv",
                            p.display()
                        );
                    }
                    culturalbench::CulturalBench::from_sources(sources)?
                }
                Some(p) => culturalbench::CulturalBench::from_sources(vec![Source::read(p)?])?,
            };
            let sha = combined_sha256(&b.sources.iter().collect::<Vec<_>>());
            Ok(Loaded {
                bench: Box::new(b),
                dataset_sha256: sha,
            })
        }
        "normad" => {
            let b = match path {
                None => normad::NormAd::builtin()?,
                Some(p) => normad::NormAd::from_source(
                    Source::read(p).context(|| "normad --data wants one CSV file".to_string())?,
                )?,
            };
            let sha = combined_sha256(&b.sources.iter().collect::<Vec<_>>());
            Ok(Loaded {
                bench: Box::new(b),
                dataset_sha256: sha,
            })
        }
        "civics" => {
            let b = match path {
                None => civics::Civics::builtin()?,
                Some(p) => civics::Civics::from_source(Source::read(p)?)?,
            };
            let sha = combined_sha256(&b.sources.iter().collect::<Vec<_>>());
            Ok(Loaded {
                bench: Box::new(b),
                dataset_sha256: sha,
            })
        }
        "cmoraleval" => {
            let b = match path {
                None => cmoraleval::CMoralEval::builtin()?,
                Some(p) => cmoraleval::CMoralEval::from_dir(p)?,
            };
            let sha = combined_sha256(&b.sources.iter().collect::<Vec<_>>());
            Ok(Loaded {
                bench: Box::new(b),
                dataset_sha256: sha,
            })
        }
        "cvc" => {
            let Some(p) = path else {
                bail!(Selection, "cvc needs --data: {}", cvc::WHERE);
            };
            let b = cvc::Cvc::from_dir(p)?;
            let sha = combined_sha256(&b.sources.iter().collect::<Vec<_>>());
            Ok(Loaded {
                bench: Box::new(b),
                dataset_sha256: sha,
            })
        }
        "hkcanto" => {
            let Some(p) = path else {
                bail!(Selection, "hkcanto needs --data: {}", hkcanto::WHERE);
            };
            let b = hkcanto::HkCanto::from_dir(p)?;
            let sha = combined_sha256(&b.sources.iter().collect::<Vec<_>>());
            Ok(Loaded {
                bench: Box::new(b),
                dataset_sha256: sha,
            })
        }
        "valueprism" => {
            let Some(p) = path else {
                bail!(Selection, "valueprism needs --data: {}", valueprism::WHERE);
            };
            let b = valueprism::ValuePrism::from_source(Source::read(p)?)?;
            let sha = combined_sha256(&b.sources.iter().collect::<Vec<_>>());
            Ok(Loaded {
                bench: Box::new(b),
                dataset_sha256: sha,
            })
        }
        "yue-arc-c" | "yue-truthfulqa" => {
            let set = if name == "yue-arc-c" {
                yue::Set::ArcC
            } else {
                yue::Set::TruthfulQa
            };
            let b = match path {
                None => yue::Yue::builtin(set)?,
                Some(p) => yue::Yue::from_source(set, Source::read(p)?)?,
            };
            let sha = combined_sha256(&b.sources.iter().collect::<Vec<_>>());
            Ok(Loaded {
                bench: Box::new(b),
                dataset_sha256: sha,
            })
        }
        other => bail!(
            Selection,
            "unknown benchmark `{other}` (known: {}, diwali, utility)",
            NAMES.join(", ")
        ),
    }
}

/// A user's own benchmark: the lm-evaluation-harness task YAML at `path` over its local data.
pub fn load_task(path: &Path) -> Result<Loaded> {
    let t = task::Task::load(path)?;
    let sha = t.sha256();
    Ok(Loaded {
        bench: Box::new(t),
        dataset_sha256: sha,
    })
}

/// The formats the names a user gives stand for (`Benchmark::expand_format`), each once,
/// in order.
pub fn expand_formats(bench: &dyn Benchmark, names: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for m in names.iter().flat_map(|n| bench.expand_format(n)) {
        if !out.contains(&m) {
            out.push(m);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_benchmark_is_named() {
        let e = load("mmlu", None).err().unwrap().to_string();
        assert_eq!(
            e,
            "unknown benchmark `mmlu` (known: civics, cmoraleval, culturalbench, cvc, hkcanto, normad, valueprism, yue-arc-c, yue-truthfulqa, diwali, utility)"
        );
    }

    #[test]
    fn builtin_hashes_are_stable() {
        let l = load("normad", None).unwrap();
        assert_eq!(
            l.dataset_sha256,
            "e542fd9378ae59521595894d5c99c7dada84c59055492dc1a05ad42528e8cbe1"
        );
    }
}
