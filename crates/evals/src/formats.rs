//! The format-robustness grid ("Randomness, Not Representation", Khan et al. 2025) for
//! multiple-choice questions: option order, label style, answering by label or by option
//! text, and chat template or raw prompt. A grid point is named
//! `ORDER.LABELS.ANSWER.TEMPLATE`, e.g. `rev.numbers.text.chat`:
//!
//! - ORDER: `orig`, `rev` (reversed), `shiftK` (cyclic shift by K, 1 <= K < options);
//! - LABELS: `letters` (A. B. …) or `numbers` (1. 2. …);
//! - ANSWER: `label` (the continuation is the label) or `text` (the option's own text);
//! - TEMPLATE: `raw` (question, options, then the cue "Answer:") or `chat` (the same text as
//!   the user message of the model's chat template).
//!
//! `orig.letters.label.raw` is exactly lm-evaluation-harness' prompt.

use crate::benchmark::{Ask, Prompt};
use crate::error::{bail, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order {
    Original,
    Reversed,
    Shift(usize),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Labels {
    Letters,
    Numbers,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AnswerBy {
    Label,
    Text,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GridPoint {
    pub order: Order,
    pub labels: Labels,
    pub answer: AnswerBy,
    pub chat: bool,
}

impl GridPoint {
    pub const HARNESS: GridPoint = GridPoint {
        order: Order::Original,
        labels: Labels::Letters,
        answer: AnswerBy::Label,
        chat: false,
    };

    /// Parses `ORDER.LABELS.ANSWER.TEMPLATE` for questions with `n_options` options.
    pub fn parse(name: &str, n_options: usize) -> Result<Self> {
        let parts: Vec<&str> = name.split('.').collect();
        if parts.len() != 4 {
            bail!(Selection, "format `{name}`: a grid format is ORDER.LABELS.ANSWER.TEMPLATE, e.g. rev.numbers.text.chat");
        }
        let order = match parts[0] {
            "orig" => Order::Original,
            "rev" => Order::Reversed,
            s if s.starts_with("shift") => match s["shift".len()..].parse::<usize>() {
                Ok(k) if k >= 1 && k < n_options => Order::Shift(k),
                _ => bail!(
                    Selection,
                    "format `{name}`: the shift must be 1..{}",
                    n_options - 1
                ),
            },
            s => bail!(
                Selection,
                "format `{name}`: unknown order `{s}` (orig, rev, shiftK)"
            ),
        };
        let labels = match parts[1] {
            "letters" => Labels::Letters,
            "numbers" => Labels::Numbers,
            s => bail!(
                Selection,
                "format `{name}`: unknown label style `{s}` (letters, numbers)"
            ),
        };
        let answer = match parts[2] {
            "label" => AnswerBy::Label,
            "text" => AnswerBy::Text,
            s => bail!(
                Selection,
                "format `{name}`: unknown answer mode `{s}` (label, text)"
            ),
        };
        let chat = match parts[3] {
            "raw" => false,
            "chat" => true,
            s => bail!(
                Selection,
                "format `{name}`: unknown template `{s}` (raw, chat)"
            ),
        };
        Ok(Self {
            order,
            labels,
            answer,
            chat,
        })
    }

    pub fn name(&self) -> String {
        let order = match self.order {
            Order::Original => "orig".to_string(),
            Order::Reversed => "rev".to_string(),
            Order::Shift(k) => format!("shift{k}"),
        };
        let labels = match self.labels {
            Labels::Letters => "letters",
            Labels::Numbers => "numbers",
        };
        let answer = match self.answer {
            AnswerBy::Label => "label",
            AnswerBy::Text => "text",
        };
        let template = if self.chat { "chat" } else { "raw" };
        format!("{order}.{labels}.{answer}.{template}")
    }

    /// Every grid point for `n_options` options: all orders x labels x answers x templates.
    pub fn all(n_options: usize) -> Vec<GridPoint> {
        let mut orders = vec![Order::Original, Order::Reversed];
        orders.extend((1..n_options).map(Order::Shift));
        let mut out = Vec::new();
        for &order in &orders {
            for labels in [Labels::Letters, Labels::Numbers] {
                for answer in [AnswerBy::Label, AnswerBy::Text] {
                    for chat in [false, true] {
                        out.push(GridPoint {
                            order,
                            labels,
                            answer,
                            chat,
                        });
                    }
                }
            }
        }
        out
    }

    /// `shown[k]` = the original index of the option shown in position k.
    pub fn permutation(&self, n: usize) -> Vec<usize> {
        match self.order {
            Order::Original => (0..n).collect(),
            Order::Reversed => (0..n).rev().collect(),
            Order::Shift(k) => (0..n).map(|p| (p + k) % n).collect(),
        }
    }

    pub fn label(&self, position: usize) -> String {
        match self.labels {
            Labels::Letters => char::from(b'A' + position as u8).to_string(),
            Labels::Numbers => (position + 1).to_string(),
        }
    }

    /// The prompt of a question with `options` (original order), and the permutation used.
    pub fn render(&self, question: &str, options: &[String]) -> (Prompt, Vec<usize>) {
        let shown = self.permutation(options.len());
        let mut body = question.to_string();
        for (pos, &orig) in shown.iter().enumerate() {
            body.push_str(&format!("\n{}. {}", self.label(pos), options[orig]));
        }
        let answers = shown
            .iter()
            .enumerate()
            .map(|(pos, &orig)| match self.answer {
                AnswerBy::Label => self.label(pos),
                AnswerBy::Text => options[orig].clone(),
            })
            .collect();
        let prompt = Prompt {
            system: None,
            body,
            cue: "\nAnswer:".into(),
            delimiter: " ".into(),
            chat: self.chat,
            history: Vec::new(),
            prefill: None,
            harness_split: false,
            ask: Ask::Choose { options: answers },
        };
        (prompt, shown)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_the_grid_has_every_point_once() {
        let all = GridPoint::all(4);
        assert_eq!(all.len(), 5 * 2 * 2 * 2);
        let mut names: Vec<String> = all.iter().map(GridPoint::name).collect();
        for (p, n) in all.iter().zip(&names) {
            assert_eq!(&GridPoint::parse(n, 4).unwrap(), p);
        }
        names.sort();
        names.dedup();
        assert_eq!(names.len(), 40);
        assert_eq!(GridPoint::HARNESS.name(), "orig.letters.label.raw");
    }

    #[test]
    fn bad_names_are_refused_with_the_part_named() {
        for (name, part) in [
            ("orig.letters.label", "ORDER.LABELS"),
            ("sideways.letters.label.raw", "`sideways`"),
            ("shift4.letters.label.raw", "shift must be"),
            ("orig.roman.label.raw", "`roman`"),
            ("orig.letters.both.raw", "`both`"),
            ("orig.letters.label.html", "`html`"),
        ] {
            let e = GridPoint::parse(name, 4).unwrap_err().to_string();
            assert!(e.contains(part), "{name}: {e}");
        }
    }

    #[test]
    fn permutations_are_permutations_and_render_maps_back() {
        let opts: Vec<String> = ["w", "x", "y", "z"].iter().map(|s| s.to_string()).collect();
        for p in GridPoint::all(4) {
            let (prompt, shown) = p.render("Q?", &opts);
            let mut s = shown.clone();
            s.sort();
            assert_eq!(s, vec![0, 1, 2, 3]);
            let Ask::Choose { options } = &prompt.ask else {
                panic!()
            };
            for (pos, &orig) in shown.iter().enumerate() {
                let line = format!("\n{}. {}", p.label(pos), opts[orig]);
                assert!(prompt.body.contains(&line), "{}: {}", p.name(), prompt.body);
                match p.answer {
                    AnswerBy::Label => assert_eq!(options[pos], p.label(pos)),
                    AnswerBy::Text => assert_eq!(options[pos], opts[orig]),
                }
            }
        }
        let rev = GridPoint::parse("rev.numbers.label.raw", 4).unwrap();
        assert_eq!(rev.render("Q?", &opts).0.body, "Q?\n1. z\n2. y\n3. x\n4. w");
        let s1 = GridPoint::parse("shift1.letters.label.raw", 4).unwrap();
        assert_eq!(s1.render("Q?", &opts).0.body, "Q?\nA. x\nB. y\nC. z\nD. w");
    }
}
