//! Value palettes (MAP): a palette file names values and their targets; the solver
//! (`solver.rs`) finds the lambda that reaches them with the least KL from the base model.
//!
//! Palette file (TOML):
//!
//! ```toml
//! [[value]]
//! name = "gpt2-harmless"   # a column of the reward table, or a reward defined below
//! target = "q80"           # a number, a quantile of the base rewards ("q70"), or "keep" (the base mean)
//!
//! # Rewards `ethos steer fit` computes (see `rewards`); `perplexity` and `diversity` need
//! # no table. A `classifier` names an HF folder (`model`), optionally `label` and
//! # `template` ("{prompt}{response}" by default).
//! [[reward]]
//! name = "respect"
//! kind = "lm-judge"        # lm-judge, lexicon, classifier, perplexity, diversity
//! question = "Is the response respectful of local norms?"
//!
//! [[reward]]
//! name = "polite-words"
//! kind = "lexicon"
//! file = "polite.csv"      # phrase,weight; relative to the palette file
//! ```

pub mod decode;
pub mod evaluate;
pub mod fit;
pub mod solver;
pub mod token;

use crate::error::{Error, Result};
use serde::Deserialize;
use solver::RewardTable;
use std::collections::HashMap;
use std::path::Path;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PaletteFile {
    value: Vec<ValueEntry>,
    #[serde(default)]
    reward: Vec<RewardSpec>,
}

/// A reward a palette defines (`[[reward]]`).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RewardSpec {
    pub name: String,
    pub kind: String,
    /// lm-judge: the yes/no question asked about each response.
    pub question: Option<String>,
    /// lexicon: the phrase,weight CSV (relative to the palette file).
    pub file: Option<std::path::PathBuf>,
    /// classifier: the HF folder of a sequence-classification model (relative to the palette).
    pub model: Option<std::path::PathBuf>,
    /// classifier: which label's logit (default: the last).
    pub label: Option<usize>,
    /// classifier: the text it reads, with `{prompt}` and `{response}` (default both joined).
    pub template: Option<String>,
}

/// The reward kinds a palette may define.
pub const REWARD_KINDS: &str = "lm-judge, lexicon, classifier, perplexity, diversity";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ValueEntry {
    name: String,
    target: toml::Value,
}

/// A palette target before it meets the base rewards.
#[derive(Clone, Debug, PartialEq)]
pub enum Target {
    Level(f64),
    /// Quantile q in [0, 1] of the base rewards.
    Quantile(f64),
    /// The base mean: "do not degrade".
    Keep,
}

#[derive(Clone, Debug)]
pub struct Palette {
    pub values: Vec<(String, Target)>,
    pub rewards: Vec<RewardSpec>,
    /// The palette file's folder: reward files are relative to it.
    pub dir: std::path::PathBuf,
}

fn err(file: &str, msg: String) -> Error {
    Error::Input(format!("{file}: {msg}"))
}

impl Palette {
    pub fn parse(text: &str, file: &str) -> Result<Self> {
        let p: PaletteFile = toml::from_str(text).map_err(|e| {
            // toml's message is several lines: where, a source excerpt, then what.
            let text = e.to_string();
            let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
            let what = lines.last().copied().unwrap_or("");
            err(
                file,
                format!("{}: {what}", lines.first().copied().unwrap_or("")),
            )
        })?;
        if p.value.is_empty() {
            return Err(err(file, "no [[value]] tables".into()));
        }
        for (i, r) in p.reward.iter().enumerate() {
            let missing = |field: &str| {
                err(
                    file,
                    format!("reward `{}` ({}) needs `{field}`", r.name, r.kind),
                )
            };
            match r.kind.as_str() {
                "lm-judge" if r.question.as_deref().is_none_or(str::is_empty) => {
                    return Err(missing("question"))
                }
                "lexicon" if r.file.is_none() => return Err(missing("file")),
                "classifier" if r.model.is_none() => return Err(missing("model")),
                "lm-judge" | "lexicon" | "classifier" | "perplexity" | "diversity" => {}
                other => {
                    return Err(err(
                        file,
                        format!(
                            "reward `{}`: kind `{other}` is not one of {REWARD_KINDS}",
                            r.name
                        ),
                    ))
                }
            }
            if p.reward[..i].iter().any(|q| q.name == r.name) {
                return Err(err(file, format!("reward `{}` is defined twice", r.name)));
            }
        }
        let mut values = Vec::new();
        for v in p.value {
            let target = match &v.target {
                toml::Value::Float(x) => Target::Level(*x),
                toml::Value::Integer(x) => Target::Level(*x as f64),
                toml::Value::String(s) if s == "keep" => Target::Keep,
                toml::Value::String(s) if s.starts_with('q') => match s[1..].parse::<f64>() {
                    Ok(q) if (0.0..=100.0).contains(&q) => Target::Quantile(q / 100.0),
                    _ => {
                        return Err(err(
                            file,
                            format!(
                                "value `{}`: target `{s}` is not a quantile q0..q100",
                                v.name
                            ),
                        ))
                    }
                },
                other => {
                    return Err(err(
                        file,
                        format!(
                            "value `{}`: target `{other}` is not a number, `qNN` or `keep`",
                            v.name
                        ),
                    ))
                }
            };
            if let Target::Level(x) = target {
                if !x.is_finite() {
                    return Err(err(
                        file,
                        format!("value `{}`: target {x} is not finite", v.name),
                    ));
                }
            }
            if values.iter().any(|(n, _): &(String, Target)| n == &v.name) {
                return Err(err(file, format!("value `{}` appears twice", v.name)));
            }
            values.push((v.name, target));
        }
        Ok(Self {
            values,
            rewards: p.reward,
            dir: Path::new(file)
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_default(),
        })
    }

    /// The rewards `steer fit` computes: every value's (defined here, or the built-in
    /// `perplexity` and `diversity`), then the defined ones no value targets.
    pub fn reward_specs(&self, file: &str) -> Result<Vec<RewardSpec>> {
        let mut out: Vec<RewardSpec> = Vec::new();
        for (name, _) in &self.values {
            let spec = match self.rewards.iter().find(|r| &r.name == name) {
                Some(r) => r.clone(),
                None if name == "perplexity" || name == "diversity" => RewardSpec {
                    name: name.clone(),
                    kind: name.clone(),
                    question: None,
                    file: None,
                    model: None,
                    label: None,
                    template: None,
                },
                None => {
                    return Err(err(
                        file,
                        format!(
                            "value `{name}` names no reward: define it in a [[reward]] table \
                             (kinds: {REWARD_KINDS}) or use perplexity or diversity"
                        ),
                    ))
                }
            };
            out.push(spec);
        }
        for r in &self.rewards {
            if !out.iter().any(|o| o.name == r.name) {
                out.push(r.clone());
            }
        }
        Ok(out)
    }

    pub fn read(path: &Path) -> Result<Self> {
        let text = ethos_model::files::read_text(path)?;
        Self::parse(&text, &path.display().to_string())
    }

    /// (column index, target level) for each value, against the base rewards of `table`.
    pub fn resolve(&self, table: &RewardTable, file: &str) -> Result<Vec<(usize, f64)>> {
        self.values
            .iter()
            .map(|(name, t)| {
                let Some(k) = table.values.iter().position(|v| v == name) else {
                    return Err(err(
                        file,
                        format!(
                            "unknown reward `{name}` (the table has: {})",
                            table.values.join(", ")
                        ),
                    ));
                };
                let level = match t {
                    Target::Level(x) => *x,
                    Target::Quantile(q) => solver::quantile(table, k, *q),
                    Target::Keep => solver::mean(table, k),
                };
                // The paper's quantile palettes never ask for less than the base mean.
                let level = match t {
                    Target::Quantile(_) => level.max(solver::mean(table, k)),
                    _ => level,
                };
                Ok((k, level))
            })
            .collect()
    }
}

/// The most value columns a reward table may have: Newton's step is cubic in them.
pub const MAX_VALUE_COLUMNS: usize = 64;

/// A reward table: a CSV whose columns are values (one row per base sample) and, optionally,
/// a `prompt` column grouping samples by prompt (for the per-prompt objective).
pub fn read_table(path: &Path) -> Result<RewardTable> {
    let name = path.display().to_string();
    let text = ethos_model::files::read_text(path).map_err(|e| Error::Input(e.to_string()))?;
    let mut r = csv::Reader::from_reader(text.as_bytes());
    let header: Vec<String> = r
        .headers()
        .map_err(|e| Error::Input(format!("{name}: {e}")))?
        .iter()
        .map(str::to_string)
        .collect();
    let prompt_col = header.iter().position(|h| h == "prompt");
    let values: Vec<String> = header.iter().filter(|h| *h != "prompt").cloned().collect();
    if values.is_empty() {
        return Err(Error::Input(format!("{name}: no reward columns")));
    }
    if values.len() > MAX_VALUE_COLUMNS {
        return Err(Error::Input(format!(
            "{name}: {} value columns, more than the solver takes ({MAX_VALUE_COLUMNS})",
            values.len()
        )));
    }
    let mut rows = Vec::new();
    let mut groups = Vec::new();
    let mut group_ids: HashMap<String, usize> = HashMap::new();
    for (n, rec) in r.records().enumerate() {
        let rec = rec.map_err(|e| Error::Input(format!("{name}: row {}: {e}", n + 2)))?;
        let mut row = Vec::with_capacity(values.len());
        for (c, field) in rec.iter().enumerate() {
            if Some(c) == prompt_col {
                let next = group_ids.len();
                groups.push(*group_ids.entry(field.to_string()).or_insert(next));
                continue;
            }
            let x: f64 = field.trim().parse().map_err(|_| {
                Error::Input(format!(
                    "{name}: row {}, column `{}`: `{field}` is not a number",
                    n + 2,
                    header[c]
                ))
            })?;
            if !x.is_finite() {
                return Err(Error::Input(format!(
                    "{name}: row {}, column `{}`: {x} is not finite",
                    n + 2,
                    header[c]
                )));
            }
            row.push(x);
        }
        if prompt_col.is_none() {
            groups.push(0);
        }
        rows.push(row);
    }
    if rows.len() < 2 {
        return Err(Error::Input(format!(
            "{name}: {} rows; the solver needs base samples",
            rows.len()
        )));
    }
    let n_groups = group_ids.len().max(1);
    Ok(RewardTable {
        values,
        rows,
        groups,
        n_groups,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reward table the `reward_csv` fuzz target found slow (an extreme column, base
    /// mean near -3e14): every solve the target runs returns, infeasible, with a nearest
    /// feasible palette of finite levels between base and target.
    #[test]
    fn the_fuzzers_slow_reward_table_solves() {
        use solver::{mean, nearest_feasible, quantile, solve, Objective, Solver, Status};
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures/fuzz/reward_csv_slow_solve.csv");
        let table = read_table(&path).unwrap();
        let m = table.values.len();
        let targets: Vec<(usize, f64)> = (0..m).map(|k| (k, quantile(&table, k, 0.7))).collect();
        let base: Vec<f64> = (0..m).map(|k| mean(&table, k)).collect();
        for solver in [Solver::Newton, Solver::Adam150] {
            let s = solve(&table, &targets, solver, Objective::Joint, 0.0);
            assert_eq!(s.status, Status::Infeasible, "{solver:?}");
        }
        let (rho, palette) = nearest_feasible(&table, &targets, &base, Objective::Joint);
        assert!((0.0..=1.0).contains(&rho), "rho {rho}");
        for (k, level) in palette {
            let (lo, hi) = (base[k].min(targets[k].1), base[k].max(targets[k].1));
            assert!(
                level.is_finite() && level >= lo && level <= hi,
                "{k}: {level}"
            );
        }
    }

    const VALUES: &str = "[[value]]\nname = \"respect\"\ntarget = \"q70\"\n";

    #[test]
    fn reward_tables_are_checked() {
        let ok = format!(
            "{VALUES}[[reward]]\nname = \"respect\"\nkind = \"lm-judge\"\nquestion = \"Polite?\"\n"
        );
        let p = Palette::parse(&ok, "p.toml").unwrap();
        let specs = p.reward_specs("p.toml").unwrap();
        assert_eq!(specs[0].kind, "lm-judge");
        let refused = |reward: &str| {
            Palette::parse(&format!("{VALUES}[[reward]]\n{reward}"), "p.toml")
                .unwrap_err()
                .to_string()
        };
        let e = refused("name = \"respect\"\nkind = \"lm-judge\"\n");
        assert!(e.contains("p.toml") && e.contains("question"), "{e}");
        let e = refused("name = \"respect\"\nkind = \"oracle\"\n");
        assert!(e.contains("oracle") && e.contains("lm-judge"), "{e}");
        let e = refused("name = \"x\"\nkind = \"lexicon\"\n");
        assert!(e.contains("`x`") && e.contains("file"), "{e}");
        // A value that names no reward (nor a built-in one) is refused by `steer fit`.
        let p = Palette::parse(VALUES, "p.toml").unwrap();
        let e = p.reward_specs("p.toml").unwrap_err().to_string();
        assert!(
            e.contains("respect") && e.contains("names no reward"),
            "{e}"
        );
        let p = Palette::parse(
            "[[value]]\nname = \"perplexity\"\ntarget = \"keep\"\n",
            "p.toml",
        )
        .unwrap();
        assert_eq!(p.reward_specs("p.toml").unwrap()[0].kind, "perplexity");
    }

    #[test]
    fn palette_targets_and_their_errors() {
        let p = Palette::parse(
            "[[value]]\nname = \"a\"\ntarget = \"q70\"\n[[value]]\nname = \"b\"\ntarget = 1.5\n[[value]]\nname = \"c\"\ntarget = \"keep\"\n",
            "p.toml",
        )
        .unwrap();
        assert_eq!(
            p.values,
            vec![
                ("a".into(), Target::Quantile(0.7)),
                ("b".into(), Target::Level(1.5)),
                ("c".into(), Target::Keep)
            ]
        );
        for (text, want) in [
            (
                "[[value]]\nname = \"a\"\ntarget = nan\n",
                "target NaN is not finite",
            ),
            (
                "[[value]]\nname = \"a\"\ntarget = inf\n",
                "target inf is not finite",
            ),
            (
                "[[value]]\nname = \"a\"\ntarget = \"q170\"\n",
                "not a quantile",
            ),
            (
                "[[value]]\nname = \"a\"\ntarget = \"more\"\n",
                "is not a number, `qNN` or `keep`",
            ),
            (
                "[[value]]\nname = \"a\"\ntarget = 1\n[[value]]\nname = \"a\"\ntarget = 2\n",
                "appears twice",
            ),
            (
                "[[value]]\nname = \"a\"\ntarget = 1\nweight = 2\n",
                "unknown field `weight`",
            ),
        ] {
            let e = Palette::parse(text, "p.toml").unwrap_err().to_string();
            assert!(e.starts_with("p.toml: ") && e.contains(want), "{e}");
        }
        let table = RewardTable {
            values: vec!["x".into()],
            rows: vec![vec![1.0], vec![2.0]],
            groups: vec![0, 0],
            n_groups: 1,
        };
        let e = Palette::parse("[[value]]\nname = \"hum\"\ntarget = 1\n", "p.toml")
            .unwrap()
            .resolve(&table, "p.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown reward `hum` (the table has: x)"), "{e}");
    }
}
