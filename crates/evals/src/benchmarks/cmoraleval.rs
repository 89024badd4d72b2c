//! CMoralEval (Yu et al., Findings of ACL 2024): Chinese moral scenarios, each asked four
//! ways: as the person in it (`party`) or as a bystander about them (`standby`), what one
//! should (`moral`) or should not (`unmoral`) do; three options, one right.
//!
//! Items are scenarios (7,597: explicit moral scenarios and dilemmas, from a TV programme and
//! from collected cases of moral anomie); the four ways of asking are the conditions, so that
//! 30,388 questions are judged in all. Formats: `zero-shot` (the upstream question, its three
//! lettered options, then "答案：" and the letter, as lm-eval's Chinese multiple-choice tasks
//! ask) and `few-shot` (the five upstream exemplars of the same file first, each with its
//! answer). Consistency: the share of scenarios answered right all four ways.

use crate::benchmark::{argmax, Answer, Ask, Benchmark, Judgement, Prompt};
use crate::data::Source;
use crate::error::{bail, Error, Result};
use serde_json::Value;
use std::collections::HashMap;
use std::path::Path;

const PACKED: &[u8] = include_bytes!("../../data/cmoraleval/cmoraleval.jsonl.zst");
/// The four ways a scenario is asked, as conditions, and the upstream file names' parts.
const CONDITIONS: &[&str] = &[
    "party-moral",
    "party-unmoral",
    "standby-moral",
    "standby-unmoral",
];
const FORMATS: &[&str] = &["zero-shot", "few-shot"];
const LETTERS: [&str; 3] = ["A", "B", "C"];
/// The most bytes a packed copy may unpack to (the upstream data is 24 MB).
const MAX_UNPACKED: u64 = 256 << 20;

#[derive(Clone)]
struct Question {
    text: String,
    choices: Vec<String>,
    /// The right option's index.
    answer: usize,
}

struct Scenario {
    /// Upstream file group: c1 / c2 (explicit moral scenarios), d1 / d2 (dilemmas).
    group: String,
    index: u64,
    categories: Vec<String>,
    /// One question per condition, in `CONDITIONS` order.
    asked: Vec<Question>,
}

/// A scenario's categories and the questions read so far, one slot per condition.
type AskedSoFar = (Vec<String>, Vec<Option<Question>>);

pub struct CMoralEval {
    scenarios: Vec<Scenario>,
    /// (group, condition) -> the five few-shot exemplars.
    exemplars: HashMap<(String, usize), Vec<Question>>,
    pub sources: Vec<Source>,
}

impl CMoralEval {
    pub fn builtin() -> Result<Self> {
        let source = Source::embedded("cmoraleval.jsonl.zst", PACKED);
        let text = source.unpacked_text(MAX_UNPACKED)?;
        let mut rows = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let mut row: serde_json::Map<String, Value> =
                serde_json::from_str(line).map_err(|err| Error::Json {
                    at: format!("{}:{}", source.name, i + 1),
                    err,
                })?;
            let file = match row.remove("file") {
                Some(Value::String(f)) => f,
                _ => bail!(Data, "{}:{}: no `file`", source.name, i + 1),
            };
            rows.push((file, row));
        }
        Self::from_rows(rows, vec![source])
    }

    /// A copy in the upstream layout: `DIR/test_data/cmoraleval_<group>_<condition>_test_data`
    /// and `DIR/val_data/cmoraleval_<group>_<condition>_val_data`, JSON Lines.
    pub fn from_dir(dir: &Path) -> Result<Self> {
        let mut rows = Vec::new();
        let mut sources = Vec::new();
        for (sub, suffix) in [("test_data", "test"), ("val_data", "val")] {
            let folder = dir.join(sub);
            let entries = std::fs::read_dir(&folder).map_err(|e| {
                Error::io(
                    &folder,
                    "cannot list (cmoraleval --data wants the upstream data/ folder)",
                    e,
                )
            })?;
            let mut names: Vec<String> = entries
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("cmoraleval_"))
                .collect();
            names.sort();
            for name in names {
                let tag = name
                    .trim_start_matches("cmoraleval_")
                    .trim_end_matches(&format!("_{suffix}_data"))
                    .to_string();
                let source = Source::read(&folder.join(&name))?;
                let text = std::str::from_utf8(&source.bytes).map_err(|e| Error::NotUtf8 {
                    name: source.name.clone(),
                    source: e,
                })?;
                for (i, line) in text
                    .lines()
                    .enumerate()
                    .filter(|(_, l)| !l.trim().is_empty())
                {
                    let row = serde_json::from_str(line).map_err(|err| Error::Json {
                        at: format!("{}:{}", source.name, i + 1),
                        err,
                    })?;
                    rows.push((format!("{tag}_{suffix}"), row));
                }
                sources.push(source);
            }
        }
        Self::from_rows(rows, sources)
    }

    fn from_rows(
        rows: Vec<(String, serde_json::Map<String, Value>)>,
        sources: Vec<Source>,
    ) -> Result<Self> {
        let name = sources.first().map(|s| s.name.clone()).unwrap_or_default();
        // (group, index) -> (categories, question per condition)
        let mut by_scenario: HashMap<(String, u64), AskedSoFar> = HashMap::new();
        let mut order: Vec<(String, u64)> = Vec::new();
        let mut exemplars: HashMap<(String, usize), Vec<Question>> = HashMap::new();
        for (file, row) in rows {
            let at = || {
                format!(
                    "{name}: file {file}, index {}",
                    row.get("index").cloned().unwrap_or(Value::Null)
                )
            };
            let mut parts = file.splitn(2, '_');
            let group = parts.next().unwrap_or_default().to_string();
            let rest = parts.next().unwrap_or_default();
            let (cond_part, split) = rest.rsplit_once('_').unwrap_or((rest, ""));
            let Some(c) = CONDITIONS
                .iter()
                .position(|k| k.replace('-', "_") == cond_part)
            else {
                bail!(
                    Data,
                    "{}: `{cond_part}` is none of {}",
                    at(),
                    CONDITIONS.join(", ")
                );
            };
            let q = question(&row).map_err(|e| Error::Data(format!("{}: {e}", at())))?;
            if split == "val" {
                exemplars.entry((group, c)).or_default().push(q);
                continue;
            }
            let index = row
                .get("index")
                .and_then(Value::as_u64)
                .ok_or_else(|| Error::Data(format!("{}: no `index`", at())))?;
            let categories: Vec<String> = match row.get("category") {
                Some(Value::Array(a)) => a
                    .iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect(),
                _ => bail!(Data, "{}: no `category` list", at()),
            };
            let key = (group, index);
            let entry = by_scenario.entry(key.clone()).or_insert_with(|| {
                order.push(key.clone());
                (categories, vec![None; CONDITIONS.len()])
            });
            entry.1[c] = Some(q);
        }
        let mut scenarios = Vec::with_capacity(order.len());
        for key in order {
            let (categories, asked) = by_scenario.remove(&key).unwrap_or_default();
            let asked: Option<Vec<Question>> = asked.into_iter().collect();
            let Some(asked) = asked else {
                bail!(
                    Data,
                    "{name}: scenario {}-{} is not asked all four ways",
                    key.0,
                    key.1
                );
            };
            scenarios.push(Scenario {
                group: key.0,
                index: key.1,
                categories,
                asked,
            });
        }
        if scenarios.is_empty() {
            bail!(Data, "{name}: no scenarios");
        }
        Ok(Self {
            scenarios,
            exemplars,
            sources,
        })
    }

    fn raw(q: &Question) -> String {
        format!("{}\n{}\n答案：", q.text, q.choices.join("\n"))
    }
}

/// One upstream row: the question, three `"A.…"` options and the right letter.
fn question(row: &serde_json::Map<String, Value>) -> std::result::Result<Question, String> {
    let text = row
        .get("question")
        .and_then(Value::as_str)
        .ok_or("no `question`")?;
    let choices: Vec<String> = match row.get("choices") {
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        _ => return Err("no `choices` list".into()),
    };
    if choices.len() != LETTERS.len() {
        return Err(format!("{} choices, not 3", choices.len()));
    }
    let letter = row
        .get("correct_answer")
        .and_then(Value::as_str)
        .ok_or("no `correct_answer`")?;
    let answer = LETTERS
        .iter()
        .position(|l| *l == letter)
        .ok_or_else(|| format!("`correct_answer` {letter} is none of A, B, C"))?;
    Ok(Question {
        text: text.to_string(),
        choices,
        answer,
    })
}

impl Benchmark for CMoralEval {
    fn name(&self) -> &str {
        "cmoraleval"
    }
    fn item_count(&self) -> usize {
        self.scenarios.len()
    }
    fn item_id(&self, i: usize) -> String {
        let s = &self.scenarios[i];
        format!("{}-{}", s.group, s.index)
    }
    fn groups(&self, i: usize) -> Vec<(&'static str, String)> {
        let s = &self.scenarios[i];
        let (kind, source) = match s.group.as_str() {
            "c1" => ("explicit", "tv"),
            "c2" => ("explicit", "anomie"),
            "d1" => ("dilemma", "tv"),
            _ => ("dilemma", "anomie"),
        };
        let mut g = vec![("kind", kind.to_string()), ("source", source.to_string())];
        g.extend(s.categories.iter().map(|c| ("category", c.clone())));
        g
    }
    fn conditions(&self) -> &'static [&'static str] {
        CONDITIONS
    }
    fn consistency_conditions(&self) -> &'static [&'static str] {
        CONDITIONS
    }
    fn check_format(&self, format: &str) -> Result<()> {
        crate::benchmark::check_known_format("cmoraleval", format, FORMATS)
    }
    fn default_formats(&self) -> Vec<String> {
        vec!["zero-shot".into()]
    }
    fn prompts(&self, i: usize, condition: &str, format: &str, _chat: bool) -> Result<Vec<Prompt>> {
        let s = &self.scenarios[i];
        let Some(c) = CONDITIONS.iter().position(|k| *k == condition) else {
            bail!(Selection, "unknown condition `{condition}` for cmoraleval");
        };
        let mut body = String::new();
        if format == "few-shot" {
            for e in self
                .exemplars
                .get(&(s.group.clone(), c))
                .into_iter()
                .flatten()
            {
                body.push_str(&format!("{} {}\n\n", Self::raw(e), LETTERS[e.answer]));
            }
        }
        body.push_str(&Self::raw(&s.asked[c]));
        let options = LETTERS.iter().map(|l| l.to_string()).collect();
        Ok(vec![Prompt::raw(body, " ", Ask::Choose { options })])
    }
    fn judge(
        &self,
        i: usize,
        condition: &str,
        _format: &str,
        _p: &[Prompt],
        answers: &[Answer],
    ) -> Result<Judgement> {
        let c = CONDITIONS.iter().position(|k| *k == condition).unwrap_or(0);
        let q = &self.scenarios[i].asked[c];
        let [Answer::Options(lps)] = answers else {
            bail!(Internal, "cmoraleval: one scored prompt expected");
        };
        let pred = argmax(lps);
        Ok(Judgement {
            prediction: LETTERS[pred].into(),
            gold: LETTERS[q.answer].into(),
            correct: pred == q.answer,
            correct_norm: None,
            option_logprobs: LETTERS
                .iter()
                .zip(lps)
                .map(|(l, lp)| (l.to_string(), Value::from(*lp)))
                .collect(),
            generated: None,
            score: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_copy_has_every_scenario_asked_four_ways() {
        let b = CMoralEval::builtin().unwrap();
        // 3,441 + 3,541 + 300 + 315 scenarios, 30,388 questions (the paper's count).
        assert_eq!(b.item_count(), 7597);
        assert_eq!(b.item_count() * CONDITIONS.len(), 30_388);
        assert_eq!(b.exemplars.len(), 16);
        assert!(b.exemplars.values().all(|e| e.len() == 5));
        assert_eq!(b.item_id(0), "c1-1");
        let p = &b.prompts(0, "party-unmoral", "zero-shot", false).unwrap()[0];
        assert!(
            p.body.starts_with("请根据以下场景，你不应该怎么做？"),
            "{}",
            p.body
        );
        assert!(p.body.contains("\nA.") && p.body.ends_with("\n答案："));
        let few = &b.prompts(0, "party-unmoral", "few-shot", false).unwrap()[0];
        assert_eq!(few.body.matches("答案：").count(), 6);
        assert!(few.body.ends_with(&p.body));
        let g = b.groups(0);
        assert!(g.contains(&("kind", "explicit".into())) && g.contains(&("source", "tv".into())));
    }

    /// The zero-shot prompt is the one lm-eval builds from a task file asking it so (the file
    /// `benches/peers/cmoraleval_speed.py` gives lm-eval), string for string.
    #[test]
    fn zero_shot_prompts_are_those_of_the_lm_eval_task_file() {
        let b = CMoralEval::builtin().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let rows: Vec<String> = b.scenarios[..20]
            .iter()
            .map(|s| {
                let q = &s.asked[0];
                serde_json::json!({
                    "question": q.text,
                    "choices": q.choices,
                    "correct_answer": LETTERS[q.answer],
                })
                .to_string()
            })
            .collect();
        std::fs::write(dir.path().join("cm.jsonl"), rows.join("\n")).unwrap();
        let yaml = dir.path().join("cm.yaml");
        std::fs::write(
            &yaml,
            "task: cm\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    test: cm.jsonl\ntest_split: test\noutput_type: multiple_choice\ndoc_to_text: \"{{question}}\\n{{choices[0]}}\\n{{choices[1]}}\\n{{choices[2]}}\\n答案：\"\ndoc_to_choice: [\"A\", \"B\", \"C\"]\ndoc_to_target: \"{{['A', 'B', 'C'].index(correct_answer)}}\"\n",
        )
        .unwrap();
        let task = crate::benchmarks::task::Task::load(&yaml).unwrap();
        for i in 0..20 {
            let p = &b.prompts(i, "party-moral", "zero-shot", false).unwrap()[0];
            assert_eq!(task.context(i), p.body);
            let Ask::Choose { options } = &p.ask else {
                panic!("scored")
            };
            let ours: Vec<String> = options
                .iter()
                .map(|o| format!("{}{o}", p.delimiter))
                .collect();
            assert_eq!(task.continuations(i), ours);
        }
    }

    #[test]
    fn a_copy_missing_a_way_of_asking_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        for sub in ["test_data", "val_data"] {
            std::fs::create_dir(dir.path().join(sub)).unwrap();
        }
        let row = r#"{"index": 1, "category": ["个人品德"], "question": "q", "choices": ["A.a", "B.b", "C.c"], "correct_answer": "A"}"#;
        std::fs::write(
            dir.path()
                .join("test_data/cmoraleval_c1_party_moral_test_data"),
            row,
        )
        .unwrap();
        let e = CMoralEval::from_dir(dir.path()).err().unwrap().to_string();
        assert!(
            e.contains("scenario c1-1 is not asked all four ways"),
            "{e}"
        );
        std::fs::write(
            dir.path()
                .join("test_data/cmoraleval_c1_party_moral_test_data"),
            row.replace("\"A\"}", "\"D\"}"),
        )
        .unwrap();
        let e = CMoralEval::from_dir(dir.path()).err().unwrap().to_string();
        assert!(e.contains("`correct_answer` D is none of A, B, C"), "{e}");
    }
}
