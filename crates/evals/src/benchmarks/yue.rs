//! Yue-Benchmark's Cantonese ARC-Challenge and TruthfulQA (Jiang et al., "How Far Can
//! Cantonese NLP Go?", arXiv 2408.16756): a Cantonese-competence control, so that a team can
//! tell weak values from weak Cantonese.
//!
//! - `yue-arc-c`: 1,171 science questions with their options, asked with lm-evaluation-harness'
//!   `arc_challenge` prompt ("Question: …\nAnswer:", each option's text scored after a space;
//!   acc and acc_norm).
//! - `yue-truthfulqa`: 817 questions, MC1 as lm-eval's `truthfulqa_mc1` scores it (the best
//!   answer against the false ones, the best first; acc) but zero-shot, "Q: …\nA:", since
//!   lm-eval's six-question primer is English. The upstream answer lists are separated by
//!   "；" and end with a "。" that is dropped.

use crate::benchmark::{
    argmax, argmax_norm, logprobs_by_name, one_scored, Answer, Ask, Benchmark, Judgement, Prompt,
};
use crate::data::Source;
use crate::error::{bail, Error, Result};
use serde_json::Value;

const ARC: &[u8] = include_bytes!("../../data/yue/Yue-ARC-C.json");
const TRUTHFULQA: &[u8] = include_bytes!("../../data/yue/Yue-TruthfulQA.json");
const CONDITIONS: &[&str] = &["cantonese"];
const FORMAT: &str = "harness";

#[derive(Clone, Copy, PartialEq)]
pub enum Set {
    ArcC,
    TruthfulQa,
}

struct Item {
    id: String,
    question: String,
    options: Vec<String>,
    gold: usize,
}

pub struct Yue {
    set: Set,
    items: Vec<Item>,
    pub sources: Vec<Source>,
}

impl Yue {
    pub fn builtin(set: Set) -> Result<Self> {
        let source = match set {
            Set::ArcC => Source::embedded("Yue-ARC-C.json", ARC),
            Set::TruthfulQa => Source::embedded("Yue-TruthfulQA.json", TRUTHFULQA),
        };
        Self::from_source(set, source)
    }

    /// The upstream JSON file (a list of objects).
    pub fn from_source(set: Set, source: Source) -> Result<Self> {
        let rows: Vec<serde_json::Map<String, Value>> = serde_json::from_slice(&source.bytes)
            .map_err(|err| Error::Json {
                at: source.name.clone(),
                err,
            })?;
        let mut items = Vec::with_capacity(rows.len());
        for (i, row) in rows.iter().enumerate() {
            let at = || format!("{}: item {}", source.name, i + 1);
            let text = |key: &str| -> Result<String> {
                match row.get(key) {
                    Some(Value::String(s)) => Ok(s.clone()),
                    _ => Err(Error::Data(format!("{}: no `{key}`", at()))),
                }
            };
            let item = match set {
                Set::ArcC => {
                    let options: Vec<String> = ["A", "B", "C", "D", "E"]
                        .iter()
                        .filter_map(|k| row.get(*k).and_then(Value::as_str))
                        .filter(|s| !s.is_empty())
                        .map(str::to_string)
                        .collect();
                    let answer = text("answer")?;
                    // ARC's numbered items keep their numbers as the answer: "3" is the third.
                    let gold = match answer.as_str() {
                        "A" | "B" | "C" | "D" | "E" => (answer.as_bytes()[0] - b'A') as usize,
                        n => n
                            .parse::<usize>()
                            .ok()
                            .and_then(|n| n.checked_sub(1))
                            .unwrap_or(usize::MAX),
                    };
                    if gold >= options.len() {
                        bail!(
                            Data,
                            "{}: answer `{answer}` names none of its {} options",
                            at(),
                            options.len()
                        );
                    }
                    Item {
                        id: text("id")?,
                        question: text("question")?,
                        options,
                        gold,
                    }
                }
                Set::TruthfulQa => {
                    let list = |key: &str| -> Result<Vec<String>> {
                        let s = text(key)?;
                        let s = s.strip_suffix('。').unwrap_or(&s);
                        Ok(s.split('；')
                            .map(|x| x.trim().to_string())
                            .filter(|x| !x.is_empty())
                            .collect())
                    };
                    let false_answers = list("false")?;
                    if false_answers.is_empty() {
                        bail!(Data, "{}: no false answers", at());
                    }
                    let mut options = vec![text("best_answer")?];
                    options.extend(false_answers);
                    Item {
                        id: (i + 1).to_string(),
                        question: text("question")?,
                        options,
                        gold: 0,
                    }
                }
            };
            items.push(item);
        }
        if items.is_empty() {
            bail!(Data, "{}: no items", source.name);
        }
        Ok(Self {
            set,
            items,
            sources: vec![source],
        })
    }
}

impl Benchmark for Yue {
    fn name(&self) -> &str {
        match self.set {
            Set::ArcC => "yue-arc-c",
            Set::TruthfulQa => "yue-truthfulqa",
        }
    }
    fn item_count(&self) -> usize {
        self.items.len()
    }
    fn item_id(&self, i: usize) -> String {
        self.items[i].id.clone()
    }
    fn conditions(&self) -> &'static [&'static str] {
        CONDITIONS
    }
    fn check_format(&self, format: &str) -> Result<()> {
        if format == FORMAT {
            return Ok(());
        }
        bail!(
            Selection,
            "unknown format `{format}` for {} (known: {FORMAT})",
            self.name()
        )
    }
    fn default_formats(&self) -> Vec<String> {
        vec![FORMAT.into()]
    }
    fn prompts(
        &self,
        i: usize,
        _condition: &str,
        _format: &str,
        _chat: bool,
    ) -> Result<Vec<Prompt>> {
        let item = &self.items[i];
        let body = match self.set {
            Set::ArcC => format!("Question: {}\nAnswer:", item.question),
            Set::TruthfulQa => format!("Q: {}\nA:", item.question),
        };
        let options = item.options.clone();
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
        let item = &self.items[i];
        let lps = one_scored(self.name(), answers)?;
        let pred = argmax(lps);
        // Options by position: TruthfulQA's answers may repeat across the lists.
        let positions: Vec<String> = (0..lps.len()).map(|k| k.to_string()).collect();
        Ok(Judgement {
            prediction: item.options[pred].clone(),
            gold: item.options[item.gold].clone(),
            correct: pred == item.gold,
            correct_norm: (self.set == Set::ArcC)
                .then(|| argmax_norm(lps, &item.options) == item.gold),
            option_logprobs: logprobs_by_name(&positions, lps),
            generated: None,
            score: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_sets_read_as_published() {
        let arc = Yue::builtin(Set::ArcC).unwrap();
        assert_eq!(arc.item_count(), 1171);
        // A numbered item: its answer "3" is its third option.
        let numbered = arc
            .items
            .iter()
            .find(|it| it.id == "Mercury_7041143" || it.options.len() == 3);
        assert!(numbered.is_some());
        let p = &arc.prompts(0, "cantonese", "harness", false).unwrap()[0];
        assert!(p.body.starts_with("Question: 一個天文學家") && p.body.ends_with("\nAnswer:"));
        let tqa = Yue::builtin(Set::TruthfulQa).unwrap();
        assert_eq!(tqa.item_count(), 817);
        let first = &tqa.items[0];
        assert_eq!(first.options[0], "西瓜核會經過你嘅消化系統");
        // Seven false answers, the last without the list's closing "。".
        assert_eq!(first.options.len(), 8);
        assert_eq!(first.options[7], "會消化瓜核");
    }

    #[test]
    fn an_answer_naming_no_option_is_refused() {
        let src = Source {
            name: "arc.json".into(),
            bytes: br#"[{"id": "x", "question": "q", "A": "a", "B": "b", "answer": "4"}]"#.to_vec(),
        };
        let e = Yue::from_source(Set::ArcC, src).err().unwrap().to_string();
        assert_eq!(
            e,
            "arc.json: item 1: answer `4` names none of its 2 options"
        );
    }
}
