//! CulturalBench (Chiu et al. 2024): cultural knowledge questions from 45 countries.
//!
//! Conditions: `easy` (four options, one correct) and `hard` (each option judged true or
//! false on its own; a question is correct only when all its judgements are, as in the paper).
//! Formats: `harness` (lm-evaluation-harness' `cultural_bench` prompts, verbatim), `paper`
//! (the paper's instruction prompts, through the chat template when the model has one), and
//! for Easy every point of the robustness grid (`formats.rs`); `harness` is the grid's
//! `orig.letters.label.raw`.

use crate::benchmark::{argmax, argmax_norm, Answer, Ask, Benchmark, Judgement, Prompt};
use crate::data::{Source, Table};
use crate::error::{bail, Error, Result};
use crate::formats::GridPoint;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

const EASY_CSV: &[u8] = include_bytes!("../../data/culturalbench/CulturalBench-Easy.csv");
const HARD_CSV: &[u8] = include_bytes!("../../data/culturalbench/CulturalBench-Hard.csv");
const EASY_COLUMNS: &[&str] = &[
    "question_idx",
    "prompt_question",
    "prompt_option_a",
    "prompt_option_b",
    "prompt_option_c",
    "prompt_option_d",
    "answer",
    "country",
];
const HARD_COLUMNS: &[&str] = &[
    "question_idx",
    "prompt_question",
    "prompt_option",
    "answer",
    "country",
];
const LETTERS: [&str; 4] = ["A", "B", "C", "D"];
const PAPER_EASY: &str = "To answer the following multiple-choice question, you should choose one option only among A,B,C,D. Instruction: You must select one option among A,B,C,D. Do not output any other things. ";

struct Easy {
    question: String,
    options: Vec<String>,
    answer: usize,
}

struct Hard {
    question: String,
    /// (option text, is it a correct answer), in file order.
    rows: Vec<(String, bool)>,
}

struct Question {
    idx: String,
    country: String,
    easy: Option<Easy>,
    hard: Option<Hard>,
}

pub struct CulturalBench {
    questions: Vec<Question>,
    pub sources: Vec<Source>,
}

impl CulturalBench {
    /// The vendored v1 release (1,227 questions, Easy and Hard).
    pub fn builtin() -> Result<Self> {
        Self::from_sources(vec![
            Source::embedded("CulturalBench-Easy.csv", EASY_CSV),
            Source::embedded("CulturalBench-Hard.csv", HARD_CSV),
        ])
    }

    /// Easy and/or Hard CSVs in the upstream columns; which is which is told by the header.
    pub fn from_sources(sources: Vec<Source>) -> Result<Self> {
        let mut by_idx: BTreeMap<u64, Question> = BTreeMap::new();
        let mut order: Vec<u64> = Vec::new();
        // Where each question was first read (file, row), to name both rows of a clash.
        let mut first: BTreeMap<(u64, bool), (String, usize)> = BTreeMap::new();
        for s in &sources {
            let header = Table::header(s)?;
            let has = |c: &str| header.iter().any(|h| h == c);
            if has("prompt_option_a") {
                let t = Table::parse(s, EASY_COLUMNS)?;
                for i in 0..t.rows.len() {
                    let (key, idx) = parse_idx(&t, i)?;
                    let answer = t.get(i, "answer")?.trim();
                    let Some(a) = LETTERS.iter().position(|l| *l == answer) else {
                        bail!(
                            Data,
                            "{}: row {}: `answer` is `{answer}`, not A-D",
                            t.name,
                            i + 2
                        );
                    };
                    let options = ["a", "b", "c", "d"]
                        .iter()
                        .map(|l| t.get(i, &format!("prompt_option_{l}")).map(str::to_string))
                        .collect::<Result<Vec<_>>>()?;
                    non_empty(
                        &t,
                        i,
                        &[
                            "prompt_question",
                            "prompt_option_a",
                            "prompt_option_b",
                            "prompt_option_c",
                            "prompt_option_d",
                        ],
                    )?;
                    if let Some((file, row)) = first.insert((key, true), (t.name.clone(), i + 2)) {
                        bail!(
                            Data,
                            "{}: row {}: question_idx {idx} is already the Easy question of {file} row {row}",
                            t.name,
                            i + 2
                        );
                    }
                    let q = entry(&mut by_idx, &mut order, key, idx, t.get(i, "country")?);
                    q.easy = Some(Easy {
                        question: t.get(i, "prompt_question")?.to_string(),
                        options,
                        answer: a,
                    });
                }
            } else if has("prompt_option") {
                let t = Table::parse(s, HARD_COLUMNS)?;
                for i in 0..t.rows.len() {
                    let (key, idx) = parse_idx(&t, i)?;
                    let truth = match t.get(i, "answer")?.trim().to_ascii_lowercase().as_str() {
                        "true" => true,
                        "false" => false,
                        other => bail!(
                            Data,
                            "{}: row {}: `answer` is `{other}`, not TRUE/FALSE",
                            t.name,
                            i + 2
                        ),
                    };
                    let question = t.get(i, "prompt_question")?.to_string();
                    let option = t.get(i, "prompt_option")?.to_string();
                    non_empty(&t, i, &["prompt_question", "prompt_option"])?;
                    let (file, row) = first
                        .entry((key, false))
                        .or_insert_with(|| (t.name.clone(), i + 2));
                    let q = entry(
                        &mut by_idx,
                        &mut order,
                        key,
                        idx.clone(),
                        t.get(i, "country")?,
                    );
                    if q.hard.as_ref().is_some_and(|h| h.question != question) {
                        bail!(
                            Data,
                            "{}: row {}: question_idx {idx} is already another Hard question ({file} row {row})",
                            t.name,
                            i + 2
                        );
                    }
                    q.hard
                        .get_or_insert_with(|| Hard {
                            question,
                            rows: Vec::new(),
                        })
                        .rows
                        .push((option, truth));
                }
            } else {
                // Name the Easy columns: the more common file.
                Table::parse(s, EASY_COLUMNS)?;
            }
        }
        let mut questions = Vec::new();
        for k in order {
            if let Some(q) = by_idx.remove(&k) {
                questions.push(q);
            }
        }
        Ok(Self { questions, sources })
    }

    fn question(&self, i: usize) -> &Question {
        &self.questions[i]
    }
}

/// Row `i`'s `columns` hold text (an empty question or option would be scored as one).
fn non_empty(t: &Table, i: usize, columns: &[&str]) -> Result<()> {
    for c in columns {
        if t.get(i, c)?.trim().is_empty() {
            bail!(Data, "{}: row {}: `{c}` is empty", t.name, i + 2);
        }
    }
    Ok(())
}

fn parse_idx(t: &Table, i: usize) -> Result<(u64, String)> {
    let raw = t.get(i, "question_idx")?.trim().to_string();
    match raw.parse::<u64>() {
        Ok(k) => Ok((k, raw)),
        Err(_) => bail!(
            Data,
            "{}: row {}: `question_idx` is `{raw}`, not a number",
            t.name,
            i + 2
        ),
    }
}

fn entry<'a>(
    by_idx: &'a mut BTreeMap<u64, Question>,
    order: &mut Vec<u64>,
    key: u64,
    idx: String,
    country: &str,
) -> &'a mut Question {
    by_idx.entry(key).or_insert_with(|| {
        order.push(key);
        Question {
            idx,
            country: country.to_string(),
            easy: None,
            hard: None,
        }
    })
}

fn paper_prompt(body: String, chat: bool, options: Vec<String>) -> Prompt {
    Prompt {
        system: None,
        body,
        // Without a chat template the instruction prompt gets the harness' answer cue.
        cue: if chat {
            String::new()
        } else {
            "\nAnswer:".into()
        },
        delimiter: " ".into(),
        chat,
        history: Vec::new(),
        prefill: None,
        harness_split: false,
        ask: Ask::Choose { options },
    }
}

impl Benchmark for CulturalBench {
    fn name(&self) -> &str {
        "culturalbench"
    }

    fn item_count(&self) -> usize {
        self.questions.len()
    }

    fn item_id(&self, i: usize) -> String {
        self.question(i).idx.clone()
    }

    fn groups(&self, i: usize) -> Vec<(&'static str, String)> {
        vec![("country", self.question(i).country.clone())]
    }

    fn conditions(&self) -> &'static [&'static str] {
        &["easy", "hard"]
    }

    fn check_format(&self, format: &str) -> Result<()> {
        if format == "harness" || format == "paper" || GridPoint::parse(format, 4).is_ok() {
            return Ok(());
        }
        if format.contains('.') {
            GridPoint::parse(format, 4)?;
        }
        bail!(Selection, "unknown format `{format}` for culturalbench (harness, paper, grid, or a grid point ORDER.LABELS.ANSWER.TEMPLATE such as rev.numbers.text.chat)")
    }

    fn default_formats(&self) -> Vec<String> {
        vec!["harness".into()]
    }

    /// `grid`: every grid point; `all`: `harness`, `paper` and the grid.
    fn expand_format(&self, name: &str) -> Vec<String> {
        let grid = || GridPoint::all(4).into_iter().map(|p| p.name());
        match name {
            "grid" => grid().collect(),
            "all" => ["harness".to_string(), "paper".to_string()]
                .into_iter()
                .chain(grid().filter(|n| n != "orig.letters.label.raw"))
                .collect(),
            _ => vec![name.to_string()],
        }
    }

    fn applies(&self, i: usize, condition: &str, format: &str) -> bool {
        let q = self.question(i);
        match condition {
            "easy" => q.easy.is_some(),
            "hard" => q.hard.is_some() && (format == "harness" || format == "paper"),
            _ => false,
        }
    }

    fn prompts(&self, i: usize, condition: &str, format: &str, chat: bool) -> Result<Vec<Prompt>> {
        let q = self.question(i);
        match (condition, q.easy.as_ref(), q.hard.as_ref()) {
            ("easy", Some(e), _) => {
                if format == "paper" {
                    let mut body = format!("{PAPER_EASY}{}", e.question);
                    for (l, o) in LETTERS.iter().zip(&e.options) {
                        body.push_str(&format!("\n{l}. {o}"));
                    }
                    let opts = LETTERS.iter().map(|s| s.to_string()).collect();
                    return Ok(vec![paper_prompt(body, chat, opts)]);
                }
                let point = grid_point(format)?;
                Ok(vec![point.render(e.question.trim(), &e.options).0])
            }
            ("hard", _, Some(h)) => Ok(h
                .rows
                .iter()
                .map(|(option, _)| {
                    if format == "paper" {
                        let body = format!("Question: {}\nAnswer: {option}\nIs this answer true or false for this question? You must choose either True or False.", h.question);
                        paper_prompt(body, chat, vec!["False".into(), "True".into()])
                    } else {
                        Prompt {
                            system: None,
                            body: format!("{}\n{option}", h.question.trim()),
                            cue: "\nAnswer:".into(),
                            delimiter: " ".into(),
                            chat: false,
                            history: Vec::new(),
                            prefill: None,
                            harness_split: false,
                            ask: Ask::Choose {
                                options: vec!["False".into(), "True".into()],
                            },
                        }
                    }
                })
                .collect()),
            _ => bail!(Internal, "question {}: no {condition} data", q.idx),
        }
    }

    fn judge(
        &self,
        i: usize,
        condition: &str,
        format: &str,
        prompts: &[Prompt],
        answers: &[Answer],
    ) -> Result<Judgement> {
        let q = self.question(i);
        let mut lps = Vec::new();
        for a in answers {
            match a {
                Answer::Options(x) => lps.push(x.clone()),
                Answer::Text(_) => bail!(Internal, "culturalbench is scored by options"),
            }
        }
        if lps.len() != prompts.len() {
            bail!(
                Internal,
                "question {}: {} answers for {} prompts",
                q.idx,
                lps.len(),
                prompts.len()
            );
        }
        let options_of = |p: &Prompt| match &p.ask {
            Ask::Choose { options } => options.clone(),
            Ask::Generate { .. } => Vec::new(),
        };
        if condition == "easy" {
            let e = q
                .easy
                .as_ref()
                .ok_or_else(|| Error::Internal(format!("question {}: no easy data", q.idx)))?;
            let shown = if format == "paper" {
                vec![0, 1, 2, 3]
            } else {
                grid_point(format)?.permutation(e.options.len())
            };
            let lp = &lps[0];
            let pick = shown[argmax(lp)];
            let pick_norm = shown[argmax_norm(lp, &options_of(&prompts[0]))];
            // Keyed by the original letters (serde_json's map keeps them sorted).
            let by_letter: Map<String, Value> = shown
                .iter()
                .enumerate()
                .map(|(pos, &orig)| (LETTERS[orig].to_string(), json!(lp[pos])))
                .collect();
            return Ok(Judgement {
                prediction: LETTERS[pick].into(),
                gold: LETTERS[e.answer].into(),
                correct: pick == e.answer,
                correct_norm: Some(pick_norm == e.answer),
                option_logprobs: Value::Object(by_letter),
                generated: None,
                score: None,
            });
        }
        let h = q
            .hard
            .as_ref()
            .ok_or_else(|| Error::Internal(format!("question {}: no hard data", q.idx)))?;
        let mut pred = String::new();
        let mut pred_norm = String::new();
        let mut gold = String::new();
        let mut per_option = Map::new();
        for (k, ((_, truth), lp)) in h.rows.iter().zip(&lps).enumerate() {
            let opts = options_of(&prompts[k]);
            let said_true = opts[argmax(lp)] == "True";
            let said_true_norm = opts[argmax_norm(lp, &opts)] == "True";
            pred.push(if said_true { 'T' } else { 'F' });
            pred_norm.push(if said_true_norm { 'T' } else { 'F' });
            gold.push(if *truth { 'T' } else { 'F' });
            let key = LETTERS
                .get(k)
                .map_or_else(|| k.to_string(), |l| l.to_string());
            let m: Map<String, Value> = opts
                .iter()
                .zip(lp)
                .map(|(o, x)| (o.clone(), json!(x)))
                .collect();
            per_option.insert(key, Value::Object(m));
        }
        Ok(Judgement {
            correct: pred == gold,
            correct_norm: Some(pred_norm == gold),
            prediction: pred,
            gold,
            option_logprobs: Value::Object(per_option),
            generated: None,
            score: None,
        })
    }
}

fn grid_point(format: &str) -> Result<GridPoint> {
    if format == "harness" {
        Ok(GridPoint::HARNESS)
    } else {
        GridPoint::parse(format, 4)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Judges item `i` on the prompts the benchmark itself builds for it.
    fn judge_(
        b: &CulturalBench,
        i: usize,
        c: &str,
        f: &str,
        answers: &[Answer],
    ) -> Result<Judgement> {
        let prompts = b.prompts(i, c, f, true)?;
        b.judge(i, c, f, &prompts, answers)
    }

    #[test]
    fn builtin_data_has_the_v1_release() {
        let b = CulturalBench::builtin().unwrap();
        assert_eq!(b.item_count(), 1227);
        let easy = b.questions.iter().filter(|q| q.easy.is_some()).count();
        let hard_rows: usize = b
            .questions
            .iter()
            .filter_map(|q| q.hard.as_ref())
            .map(|h| h.rows.len())
            .sum();
        assert_eq!((easy, hard_rows), (1227, 4908));
        let countries: std::collections::BTreeSet<_> =
            b.questions.iter().map(|q| q.country.clone()).collect();
        assert_eq!(countries.len(), 45);
    }

    #[test]
    fn harness_prompts_are_lm_eval_verbatim() {
        let b = CulturalBench::builtin().unwrap();
        let p = &b.prompts(0, "easy", "harness", true).unwrap()[0];
        assert_eq!(
            format!("{}{}", p.body, p.cue),
            "In the Netherlands, which of the following is an unusual common public practice?\nA. Cycle everywhere\nB. Using deodorant\nC. Tipping generously\nD. Talking loudly on the phone.\nAnswer:"
        );
        assert_eq!(
            p.ask,
            Ask::Choose {
                options: vec!["A".into(), "B".into(), "C".into(), "D".into()]
            }
        );
        let h = b.prompts(0, "hard", "harness", true).unwrap();
        assert_eq!(h.len(), 4);
        assert_eq!(
            format!("{}{}", h[1].body, h[1].cue),
            "In the Netherlands, which of the following is an unusual common public practice?\nUsing deodorant\nAnswer:"
        );
        assert!(!b.applies(0, "hard", "rev.letters.label.raw"));
    }

    #[test]
    fn judging_maps_shown_positions_back_to_original_letters() {
        let b = CulturalBench::builtin().unwrap();
        // Question 0: the answer is C. Reversed order shows D C B A; the model's best is
        // position 1 (C).
        let j = judge_(
            &b,
            0,
            "easy",
            "rev.letters.label.raw",
            &[Answer::Options(vec![-3.0, -1.0, -2.0, -4.0])],
        )
        .unwrap();
        assert_eq!(
            (j.prediction.as_str(), j.gold.as_str(), j.correct),
            ("C", "C", true)
        );
        assert_eq!(j.option_logprobs["D"], json!(-3.0));
        assert_eq!(j.option_logprobs["A"], json!(-4.0));
        // Hard: all four judgements must be right ("C" is the only true option).
        let ft = |f: f64, t: f64| Answer::Options(vec![f, t]);
        let right = [
            ft(-0.1, -2.0),
            ft(-0.1, -2.0),
            ft(-2.0, -0.1),
            ft(-0.1, -2.0),
        ];
        let j = judge_(&b, 0, "hard", "harness", &right).unwrap();
        assert_eq!(
            (j.prediction.as_str(), j.gold.as_str(), j.correct),
            ("FFTF", "FFTF", true)
        );
        let one_wrong = [
            ft(-0.1, -2.0),
            ft(-2.0, -0.1),
            ft(-2.0, -0.1),
            ft(-0.1, -2.0),
        ];
        assert!(
            !judge_(&b, 0, "hard", "harness", &one_wrong)
                .unwrap()
                .correct
        );
        // acc_norm divides by characters: "False" (5) vs "True" (4).
        let j = judge_(
            &b,
            0,
            "hard",
            "harness",
            &[
                ft(-5.0, -4.5),
                ft(-0.1, -2.0),
                ft(-2.0, -0.1),
                ft(-0.1, -2.0),
            ],
        )
        .unwrap();
        assert_eq!(j.prediction.chars().next(), Some('T'));
        assert_eq!(j.correct_norm, Some(true), "-5/5 = -1 beats -4.5/4");
    }

    #[test]
    fn user_files_with_a_missing_column_or_a_bad_answer_are_refused() {
        let s = |t: &str| Source {
            name: "my.csv".into(),
            bytes: t.as_bytes().to_vec(),
        };
        let e = CulturalBench::from_sources(vec![s("question_idx,prompt_question,prompt_option_a,prompt_option_b,prompt_option_c,prompt_option_d,country\n0,q,a,b,c,d,X\n")]).err().unwrap().to_string();
        assert!(
            e.contains("my.csv") && e.contains("missing column `answer`"),
            "{e}"
        );
        let e = CulturalBench::from_sources(vec![s("question_idx,prompt_question,prompt_option_a,prompt_option_b,prompt_option_c,prompt_option_d,answer,country\n0,q,a,b,c,d,E,X\n")]).err().unwrap().to_string();
        assert!(e.contains("`answer` is `E`"), "{e}");
        let e = CulturalBench::from_sources(vec![s("foo,bar\n1,2\n")])
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("missing column `question_idx`"), "{e}");
    }

    /// Two Easy questions sharing a `question_idx` (one was dropped in silence), an idx
    /// holding two different Hard questions, and empty questions or options are refused,
    /// naming the rows.
    #[test]
    fn duplicate_ids_and_empty_fields_are_refused_naming_the_rows() {
        let s = |t: &str| Source {
            name: "my.csv".into(),
            bytes: t.as_bytes().to_vec(),
        };
        let easy = "question_idx,prompt_question,prompt_option_a,prompt_option_b,prompt_option_c,prompt_option_d,answer,country\n";
        let e = CulturalBench::from_sources(vec![s(&format!(
            "{easy}7,q,a,b,c,d,A,X\n7,other,a,b,c,d,B,X\n"
        ))])
        .err()
        .unwrap()
        .to_string();
        assert!(
            e.contains("my.csv: row 3: question_idx 7") && e.contains("row 2"),
            "{e}"
        );
        let e = CulturalBench::from_sources(vec![s(&format!("{easy}1,,a,b,c,d,A,X\n"))])
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("row 2: `prompt_question` is empty"), "{e}");
        let e = CulturalBench::from_sources(vec![s(&format!("{easy}1,q,a, ,c,d,A,X\n"))])
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("`prompt_option_b` is empty"), "{e}");
        let hard = "question_idx,prompt_question,prompt_option,answer,country\n";
        let e = CulturalBench::from_sources(vec![s(&format!(
            "{hard}4,q,a,TRUE,X\n4,q,b,FALSE,X\n4,other,c,FALSE,X\n"
        ))])
        .err()
        .unwrap()
        .to_string();
        assert!(
            e.contains("row 4: question_idx 4 is already another Hard question"),
            "{e}"
        );
    }
}
