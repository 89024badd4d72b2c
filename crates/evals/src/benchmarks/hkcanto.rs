//! HKCanto-Eval (Cheng et al., CoNLL 2025, arXiv 2503.12440): Hong Kong culture, Hong Kong
//! law and HKDSE exam questions, four options each, from `hon9kon9ize/hkeval2025`. The data
//! has no licence, so ethos does not ship it: `--data` reads the repository's `data/` folder
//! (or one set's folder) in its published layout: `SET/test/SUBJECT_test.csv` and
//! `SET/dev/SUBJECT_dev.csv`, headerless CSV rows `question, A, B, C, D, answer`.
//!
//! Prompts are the authors' (`scripts/eval.py`): "The following are multiple choice
//! questions (with answers) about SUBJECT." then, five-shot, the first five dev questions with
//! their answers, then the question, its lettered options and "Answer:". Cells are printed as
//! pandas reads them (an all-number column prints as numbers). The authors generate and
//! compare the reply's first character; ethos scores the four letters and takes the likeliest,
//! which is what a greedy reply that starts with a letter says.

use crate::benchmark::{
    argmax, check_known_format, logprobs_by_name, one_scored, Answer, Ask, Benchmark, Judgement,
    Prompt,
};
use crate::data::Source;
use crate::error::{bail, Error, Result};
use serde_json::Value;
use std::path::Path;

/// The sets, as the repository names their folders.
const SETS: &[&str] = &["cultural", "hk-law", "dse"];
const FORMATS: &[&str] = &["five-shot", "zero-shot"];
const LETTERS: [&str; 4] = ["A", "B", "C", "D"];
/// The authors' `--ntrain` default.
const SHOTS: usize = 5;
/// Where the data is, for the error when `--data` is missing.
pub const WHERE: &str = "HKCanto-Eval's questions are published in github.com/hon9kon9ize/hkeval2025 (data/) without a licence, so ethos cannot ship them; clone that repository and pass --data PATH/hkeval2025/data";

struct Question {
    text: String,
    options: [String; 4],
    /// The answer cell as written (two upstream DSE answers are not a letter: never right).
    answer: String,
}

struct Subject {
    set: &'static str,
    name: String,
    dev: Option<Vec<Question>>,
}

struct Item {
    subject: usize,
    row: usize,
    question: Question,
}

pub struct HkCanto {
    subjects: Vec<Subject>,
    items: Vec<Item>,
    pub sources: Vec<Source>,
}

impl HkCanto {
    /// The repository's `data/` folder (any of its set folders present) or one set's folder.
    pub fn from_dir(path: &Path) -> Result<Self> {
        let own_set = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| SETS.iter().find(|s| **s == n));
        let sets: Vec<(&'static str, std::path::PathBuf)> = match own_set {
            Some(s) => vec![(*s, path.to_path_buf())],
            None => SETS
                .iter()
                .map(|s| (*s, path.join(s)))
                .filter(|(_, p)| p.is_dir())
                .collect(),
        };
        if sets.is_empty() {
            bail!(
                Data,
                "{}: holds none of HKCanto-Eval's set folders ({}); pass hkeval2025/data or one of them",
                path.display(),
                SETS.join(", ")
            );
        }
        let mut out = HkCanto {
            subjects: Vec::new(),
            items: Vec::new(),
            sources: Vec::new(),
        };
        for (set, dir) in sets {
            let test_dir = dir.join("test");
            let listing = std::fs::read_dir(&test_dir)
                .map_err(|e| Error::io(&test_dir, "cannot list the test files", e))?;
            let mut files: Vec<(String, std::path::PathBuf)> = listing
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter_map(|p| {
                    let stem = p
                        .file_name()?
                        .to_str()?
                        .strip_suffix("_test.csv")?
                        .to_string();
                    Some((stem, p))
                })
                .collect();
            files.sort();
            if files.is_empty() {
                bail!(Data, "{}: no SUBJECT_test.csv files", test_dir.display());
            }
            for (name, test_path) in files {
                let test = Source::read(&test_path)?;
                let questions = read_questions(&test)?;
                let dev_path = dir.join("dev").join(format!("{name}_dev.csv"));
                let dev = if dev_path.exists() {
                    let s = Source::read(&dev_path)?;
                    let d = read_questions(&s)?;
                    out.sources.push(s);
                    Some(d)
                } else {
                    None
                };
                out.sources.push(test);
                let subject = out.subjects.len();
                out.subjects.push(Subject { set, name, dev });
                out.items.extend(
                    questions
                        .into_iter()
                        .enumerate()
                        .map(|(row, question)| Item {
                            subject,
                            row,
                            question,
                        }),
                );
            }
        }
        Ok(out)
    }

    fn header(&self, subject: &Subject, zero_shot: bool) -> String {
        // The authors name one subject differently in the prompt.
        let name = if subject.name == "local_knowledge" {
            "geography".to_string()
        } else {
            subject
                .name
                .split('_')
                .collect::<Vec<_>>()
                .join(" ")
                .trim()
                .to_string()
        };
        let extra = if zero_shot { " DO NOT EXPLAIN." } else { "" };
        format!(
            "The following are multiple choice questions (with answers) about {name}.{extra}\n\n"
        )
    }
}

/// One headerless CSV file of `question, A, B, C, D, answer` rows, cells as pandas prints them.
fn read_questions(source: &Source) -> Result<Vec<Question>> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(source.bytes.as_slice());
    let mut records = Vec::new();
    for (i, r) in reader.records().enumerate() {
        let r = r.map_err(|err| Error::CsvRow {
            name: source.name.clone(),
            row: i + 1,
            err,
        })?;
        if r.len() != 6 {
            bail!(
                Data,
                "{}: row {}: {} columns; HKCanto-Eval rows are question, A, B, C, D, answer",
                source.name,
                i + 1,
                r.len()
            );
        }
        records.push(r);
    }
    if records.is_empty() {
        bail!(Data, "{}: no questions", source.name);
    }
    let cells = super::task::docs::pandas_typed(&records, 6);
    Ok(cells
        .into_iter()
        .map(|row| {
            let s: Vec<String> = row.iter().map(pandas_str).collect();
            Question {
                text: s[0].clone(),
                options: [s[1].clone(), s[2].clone(), s[3].clone(), s[4].clone()],
                answer: s[5].clone(),
            }
        })
        .collect())
}

/// A cell as Python's `"{}".format` prints what pandas read (`nan` for a missing one).
fn pandas_str(v: &Value) -> String {
    match v {
        Value::Null => "nan".into(),
        Value::String(s) => s.clone(),
        other => super::task::template::python_str(&minijinja::Value::from_serialize(other)),
    }
}

/// The authors' `format_example`: the question, its lettered options and "Answer:".
fn example(q: &Question) -> String {
    let mut s = q.text.clone();
    for (letter, option) in LETTERS.iter().zip(&q.options) {
        s.push_str(&format!("\n{letter}. {option}"));
    }
    s.push_str("\nAnswer:");
    s
}

impl Benchmark for HkCanto {
    fn name(&self) -> &str {
        "hkcanto"
    }
    fn item_count(&self) -> usize {
        self.items.len()
    }
    fn item_id(&self, i: usize) -> String {
        let it = &self.items[i];
        let s = &self.subjects[it.subject];
        format!("{}/{}/{}", s.set, s.name, it.row + 1)
    }
    fn groups(&self, i: usize) -> Vec<(&'static str, String)> {
        let s = &self.subjects[self.items[i].subject];
        vec![("subject", format!("{}/{}", s.set, s.name))]
    }
    fn conditions(&self) -> &'static [&'static str] {
        SETS
    }
    fn applies(&self, i: usize, condition: &str, _format: &str) -> bool {
        self.subjects[self.items[i].subject].set == condition
    }
    fn check_format(&self, format: &str) -> Result<()> {
        check_known_format("hkcanto", format, FORMATS)
    }
    fn default_formats(&self) -> Vec<String> {
        vec![FORMATS[0].into()]
    }
    fn prompts(&self, i: usize, _c: &str, format: &str, _chat: bool) -> Result<Vec<Prompt>> {
        let it = &self.items[i];
        let subject = &self.subjects[it.subject];
        let zero_shot = format == "zero-shot";
        let mut body = self.header(subject, zero_shot);
        if !zero_shot {
            let Some(dev) = &subject.dev else {
                bail!(
                    Data,
                    "hkcanto: {}/dev/{}_dev.csv is missing; five-shot takes its examples from it (or ask --formats zero-shot)",
                    subject.set,
                    subject.name
                );
            };
            for q in dev.iter().take(SHOTS) {
                body.push_str(&format!("{} {}\n\n", example(q), q.answer));
            }
        }
        body.push_str(&example(&it.question));
        let options = LETTERS.iter().map(|l| l.to_string()).collect();
        Ok(vec![Prompt::raw(body, " ", Ask::Choose { options })])
    }
    fn judge(
        &self,
        i: usize,
        _c: &str,
        _f: &str,
        _p: &[Prompt],
        answers: &[Answer],
    ) -> Result<Judgement> {
        let lps = one_scored("hkcanto", answers)?;
        let it = &self.items[i];
        let pred = LETTERS[argmax(lps)];
        // The authors' check: the reply's first character, case-folded, against the answer.
        let correct = it.question.answer.to_uppercase() == pred;
        Ok(Judgement {
            prediction: pred.into(),
            gold: it.question.answer.clone(),
            correct,
            correct_norm: None,
            option_logprobs: logprobs_by_name(&LETTERS, lps),
            generated: None,
            score: None,
        })
    }
}

#[cfg(test)]
mod tests;
