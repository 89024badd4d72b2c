//! DIWALI's LLM judge: the authors' 0-5 rubric (Cultural Relevance, Language Fluency,
//! Mathematical Integrity) over each original text and its adaptation, read back as their
//! scorer reads it.
//!
//! The authors' scorer parses the decoded *whole sequence*, prompt included, and the prompt
//! shows an example answer ("Cultural Relevance: 5", ...): a criterion the reply leaves out
//! keeps the example's 5. That leniency is part of their numbers, so it is kept, and
//! `from_reply` counts the scores the judge itself gave.

use super::matching::is_py_space;
use crate::backend::Backend;
use crate::benchmark::{Ask, Prompt};
use crate::error::{Error, Result};
use crate::log::{RunIdentity, RunLog};
use crate::pyjson::PyValue;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use serde_json::Value;
use std::path::Path;

const TEMPLATE: &str = include_str!("../../../data/diwali/judge_prompt_template.txt");
/// The authors' `max_new_tokens` for a judgement.
pub const MAX_TOKENS: usize = 400;
pub const CRITERIA: [&str; 3] = [
    "Cultural Relevance",
    "Language Fluency",
    "Mathematical Integrity",
];

/// The authors' judge prompt (target culture Indian), with `{original_text}` and
/// `{adapted_text}` where the texts go.
pub fn default_template() -> &'static str {
    TEMPLATE
}

/// The judge's prompt for one text and its adaptation in the authors' template (a raw
/// prompt, as they send it).
pub fn prompt(original: &str, adapted: &str) -> String {
    fill(TEMPLATE, original, adapted)
}

/// A judge template from a file: it must say where both texts go.
pub fn read_template(path: &std::path::Path) -> Result<String> {
    let s = crate::data::Source::read(path)?;
    let text = String::from_utf8(s.bytes).map_err(|e| Error::NotUtf8 {
        name: s.name,
        source: e.utf8_error(),
    })?;
    for key in ["{original_text}", "{adapted_text}"] {
        if !text.contains(key) {
            crate::error::bail!(
                Data,
                "{}: a judge template needs `{key}` where that text goes",
                path.display()
            );
        }
    }
    Ok(text)
}

fn fill(template: &str, original: &str, adapted: &str) -> String {
    template
        .replace("{original_text}", original)
        .replace("{adapted_text}", adapted)
}

/// The adapted text the judge sees for one output, as the authors' scorer takes it: the
/// output parsed as JSON, a non-empty list, its first entry's `cultural_adapted_text`,
/// stripped. `None` where their scorer skips the item.
pub fn adapted_text(output: &PyValue) -> Option<String> {
    let parsed = output.parsed()?;
    let PyValue::List(items) = parsed.as_ref() else {
        return None;
    };
    let first = items.first()?;
    if !matches!(first, PyValue::Dict(_)) {
        return None;
    }
    match first.get("cultural_adapted_text") {
        None => Some(String::new()),
        Some(PyValue::Str(s)) => Some(s.trim_matches(is_py_space).to_string()),
        Some(_) => None,
    }
}

/// One judgement's three scores, and which of them the reply itself gave.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Scores {
    pub scores: [f64; 3],
    pub from_reply: [bool; 3],
}

/// The authors' `parse_response` over `prompt + reply`: the last line starting with a
/// criterion's name and a colon gives its score, the first number after the colon;
/// `Err` (the item is skipped, as their scorer skips it) where such a line holds "[score]"
/// or no number.
pub fn parse(prompt: &str, reply: &str) -> std::result::Result<Scores, String> {
    let mut scores = [0.0; 3];
    let mut from_reply = [false; 3];
    let whole = format!("{prompt}{reply}");
    let mut start = 0;
    for line in whole.split('\n') {
        let in_reply = start + line.len() > prompt.len();
        start += line.len() + 1;
        let line = line.trim_matches(is_py_space);
        for (k, name) in CRITERIA.iter().enumerate() {
            if let Some(rest) = line.strip_prefix(name).and_then(|r| r.strip_prefix(':')) {
                scores[k] = first_number(rest.trim_matches(is_py_space))?;
                from_reply[k] = in_reply;
            }
        }
    }
    Ok(Scores { scores, from_reply })
}

/// The authors' `extract_score`: `(\d+(\.\d+)?)`, first match, as a float (ASCII digits).
fn first_number(text: &str) -> std::result::Result<f64, String> {
    if text.contains("[score]") {
        return Err("placeholder [score]".into());
    }
    let b = text.as_bytes();
    let Some(start) = b.iter().position(u8::is_ascii_digit) else {
        return Err(format!("no score in {text:?}"));
    };
    let mut end = start;
    while end < b.len() && b[end].is_ascii_digit() {
        end += 1;
    }
    if end + 1 < b.len() && b[end] == b'.' && b[end + 1].is_ascii_digit() {
        end += 1;
        while end < b.len() && b[end].is_ascii_digit() {
            end += 1;
        }
    }
    text[start..end]
        .parse()
        .map_err(|_| format!("no score in {text:?}"))
}

#[derive(Debug, Serialize)]
pub struct JudgeResults {
    pub model: Value,
    /// "the authors'" or the template given (`--judge-template`).
    pub template: Value,
    /// Outputs the judge scored; the others are skipped as the authors' scorer skips them
    /// (no adapted text, or a reply whose score it cannot read).
    pub judged: usize,
    pub skipped_no_text: usize,
    pub skipped_unreadable: usize,
    /// Means over the judged items, on the 0-5 scale, and of the three's average (absent
    /// where nothing was judged).
    pub cultural_relevance: Option<f64>,
    pub language_fluency: Option<f64>,
    pub mathematical_integrity: Option<f64>,
    pub average: Option<f64>,
    /// How many judged items' scores came from the reply itself, per criterion (the rest
    /// kept the prompt example's 5).
    pub from_reply: [usize; 3],
}

/// Judges each output against its original text (`originals[i]` for `outputs[i]`), greedily,
/// resuming from `dir`; writes `dir/judge.csv` in the authors' columns.
pub fn judge(
    backend: &mut dyn Backend,
    template: &str,
    originals: &[String],
    outputs: &[PyValue],
    dir: &Path,
    batch: usize,
    progress: bool,
) -> Result<JudgeResults> {
    let n = originals.len().min(outputs.len());
    let asked: Vec<Option<(String, String)>> = (0..n)
        .map(|i| {
            adapted_text(&outputs[i]).map(|a| {
                let original = originals[i].trim_matches(is_py_space).to_string();
                (fill(template, &original, &a), a)
            })
        })
        .collect();
    let identity = RunIdentity {
        steering: None,
        benchmark: "diwali-judge".into(),
        model: backend.identity()?,
        dataset_sha256: crate::data::hex(&{
            use sha2::{Digest, Sha256};
            let mut h = Sha256::new();
            for (p, _) in asked.iter().flatten() {
                h.update((p.len() as u64).to_le_bytes());
                h.update(p.as_bytes());
            }
            h.finalize()
        }),
    };
    let mut log = RunLog::open(dir, &identity)?;
    log.refuse_unknown(
        |r| r.id.parse::<usize>().is_ok_and(|i| i < n),
        "diwali-judge",
    )?;
    let key = |i: usize| (i.to_string(), "judge".to_string(), "rubric".to_string());
    let pending: Vec<usize> = (0..n)
        .filter(|&i| asked[i].is_some() && !log.records.contains_key(&key(i)))
        .collect();
    let bar = if progress {
        let b = ProgressBar::new(pending.len() as u64);
        b.set_style(
            ProgressStyle::with_template("judge {bar:30} {pos}/{len}  ETA {eta}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        b
    } else {
        ProgressBar::hidden()
    };
    for part in pending.chunks(batch.max(1)) {
        let prompts: Vec<Prompt> = part
            .iter()
            .filter_map(|&i| asked[i].as_ref())
            .map(|(p, _)| {
                Prompt::raw(
                    p.clone(),
                    "",
                    Ask::Generate {
                        max_tokens: MAX_TOKENS,
                        stop: Vec::new(),
                    },
                )
            })
            .collect();
        let replies = super::generate(backend, &prompts, MAX_TOKENS, |k| {
            format!("judge: output {}", part[k] + 1)
        })?;
        let records = part
            .iter()
            .zip(replies)
            .map(|(&i, (reply, _, _))| super::generated_record(i, "judge", "rubric", "", reply))
            .collect();
        log.append(records)?;
        bar.inc(part.len() as u64);
    }
    bar.finish_and_clear();

    let mut csv = csv::Writer::from_writer(Vec::new());
    let header = [
        "Identifier",
        "Original Text",
        "Adapted Text",
        "Cultural Relevance Score",
        "Language Fluency Score",
        "Mathematical Integrity Score",
        "Average Score",
    ];
    let csv_err = |e: csv::Error| Error::Internal(format!("judge.csv: {e}"));
    csv.write_record(header).map_err(csv_err)?;
    let (mut sums, mut from_reply, mut judged, mut unreadable) = ([0.0; 4], [0usize; 3], 0, 0);
    for i in 0..n {
        let Some((p, adapted)) = &asked[i] else {
            continue;
        };
        let Some(r) = log.records.get(&key(i)) else {
            continue;
        };
        let reply = r.judgement.generated.as_deref().unwrap_or_default();
        let Ok(s) = parse(p, reply) else {
            unreadable += 1;
            continue;
        };
        let avg = s.scores.iter().sum::<f64>() / 3.0;
        for k in 0..3 {
            sums[k] += s.scores[k];
            from_reply[k] += usize::from(s.from_reply[k]);
        }
        sums[3] += avg;
        judged += 1;
        let row = [
            format!("eval_{}", i + 1),
            originals[i].trim_matches(is_py_space).to_string(),
            adapted.clone(),
            py_float(s.scores[0]),
            py_float(s.scores[1]),
            py_float(s.scores[2]),
            format!("{avg:.2}"),
        ];
        csv.write_record(&row).map_err(csv_err)?;
    }
    let bytes = csv
        .into_inner()
        .map_err(|e| Error::Internal(format!("judge.csv: {e}")))?;
    let path = dir.join("judge.csv");
    std::fs::write(&path, bytes).map_err(|e| Error::io(&path, "cannot write", e))?;
    let mean = |k: usize| (judged > 0).then(|| sums[k] / judged as f64);
    Ok(JudgeResults {
        model: identity.model,
        template: if template == TEMPLATE {
            Value::from("the authors'")
        } else {
            Value::from(template)
        },
        judged,
        skipped_no_text: asked.iter().filter(|a| a.is_none()).count(),
        skipped_unreadable: unreadable,
        cultural_relevance: mean(0),
        language_fluency: mean(1),
        mathematical_integrity: mean(2),
        average: mean(3),
        from_reply,
    })
}

/// A score as Python prints a float (`5.0`, `4.5`).
fn py_float(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e16 {
        format!("{x:.1}")
    } else {
        format!("{x}")
    }
}
