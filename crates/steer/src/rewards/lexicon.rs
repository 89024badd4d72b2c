//! `lexicon`: the summed weights of the words and phrases of a file found in the response.
//!
//! File: CSV with a `phrase,weight` header, one entry per line; weights may be negative
//! (words to avoid). Matching ignores case; a phrase matches where it is not part of a longer
//! word (letters or digits on either side), except next to characters of scripts written
//! without spaces (CJK), where any occurrence counts. Occurrences of one phrase do not
//! overlap. Scoring a response extended by a candidate piece is exact: the text is rescored.

use super::{Pair, Reward};
use crate::error::{Error, Result};
use ethos_model::error::one_line;
use std::path::Path;

pub struct Lexicon {
    name: String,
    /// Lower-cased phrase and weight.
    entries: Vec<(String, f64)>,
}

/// A character that belongs to a space-separated word (scripts written without spaces, from
/// the CJK radicals block on, never join a word).
fn joins_word(c: char) -> bool {
    c.is_alphanumeric() && (c as u32) < 0x2E80
}

impl Lexicon {
    pub fn new(name: &str, entries: Vec<(String, f64)>) -> Self {
        Self {
            name: name.to_string(),
            entries: entries
                .into_iter()
                .map(|(p, w)| (p.to_lowercase(), w))
                .collect(),
        }
    }

    pub fn read(name: &str, path: &Path) -> Result<Self> {
        let file = path.display();
        let text = ethos_model::files::read_text(path)?;
        let mut rdr = csv::Reader::from_reader(text.as_bytes());
        let headers = rdr
            .headers()
            .map_err(|e| Error::Msg(format!("{file}: {}", one_line(&e))))?
            .clone();
        let col = |h: &str| {
            headers.iter().position(|x| x.trim() == h).ok_or_else(|| {
                Error::Msg(format!(
                    "{file}: no `{h}` column (the header must be phrase,weight)"
                ))
            })
        };
        let (pc, wc) = (col("phrase")?, col("weight")?);
        let mut entries = Vec::new();
        for (i, rec) in rdr.records().enumerate() {
            let line = i + 2;
            let rec = rec.map_err(|e| Error::Msg(format!("{file}:{line}: {}", one_line(&e))))?;
            let phrase = rec.get(pc).unwrap_or("").trim().to_string();
            if phrase.is_empty() {
                return Err(Error::Msg(format!("{file}:{line}: empty phrase")));
            }
            let raw = rec.get(wc).unwrap_or("").trim();
            let weight: f64 = raw
                .parse()
                .ok()
                .filter(|w: &f64| w.is_finite())
                .ok_or_else(|| {
                    Error::Msg(format!(
                        "{file}:{line}: weight `{raw}` is not a finite number"
                    ))
                })?;
            entries.push((phrase, weight));
        }
        if entries.is_empty() {
            return Err(Error::Msg(format!("{file}: no entries")));
        }
        Ok(Self::new(name, entries))
    }

    /// The lexicon reward of `text`.
    pub fn value(&self, text: &str) -> f64 {
        let text = text.to_lowercase();
        self.entries
            .iter()
            .map(|(phrase, w)| w * count(&text, phrase) as f64)
            .sum()
    }
}

/// Non-overlapping occurrences of `phrase` in `text` that are not inside a longer word.
fn count(text: &str, phrase: &str) -> usize {
    let (first, last) = match (phrase.chars().next(), phrase.chars().last()) {
        (Some(f), Some(l)) => (f, l),
        _ => return 0,
    };
    let mut n = 0;
    let mut from = 0;
    while let Some(i) = text[from..].find(phrase) {
        let start = from + i;
        let end = start + phrase.len();
        let before = text[..start].chars().next_back();
        let after = text[end..].chars().next();
        let left_ok = !(joins_word(first) && before.is_some_and(joins_word));
        let right_ok = !(joins_word(last) && after.is_some_and(joins_word));
        if left_ok && right_ok {
            n += 1;
            from = end;
        } else {
            from = start + first.len_utf8();
        }
    }
    n
}

impl Reward for Lexicon {
    fn name(&self) -> &str {
        &self.name
    }
    fn score(&mut self, pairs: &[Pair]) -> Result<Vec<f64>> {
        Ok(pairs.iter().map(|p| self.value(&p.response)).collect())
    }
    fn score_extensions(&mut self, pair: &Pair, pieces: &[String]) -> Option<Result<Vec<f64>>> {
        Some(Ok(pieces
            .iter()
            .map(|s| self.value(&format!("{}{s}", pair.response)))
            .collect()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_phrases_case_and_boundaries() {
        let l = Lexicon::new(
            "polite",
            vec![
                ("please".into(), 1.0),
                ("thank you".into(), 2.0),
                ("rude".into(), -1.5),
                ("唔該".into(), 1.0),
            ],
        );
        // "Please" counts, "pleased" does not; "Thank you" twice; "rudeness" is not "rude".
        assert_eq!(
            l.value("Please, thank you. I am pleased. THANK YOU! rudeness"),
            1.0 + 2.0 * 2.0
        );
        assert_eq!(l.value("so rude"), -1.5);
        // Cantonese: no spaces, counted inside running text.
        assert_eq!(l.value("唔該晒你唔該"), 2.0);
    }

    #[test]
    fn extension_scores_equal_rescoring() {
        let mut l = Lexicon::new("p", vec![("thank you".into(), 1.0)]);
        let pair = Pair {
            prompt: "x".into(),
            response: "Well, thank".into(),
        };
        let got = l
            .score_extensions(&pair, &[" you".into(), " goodness".into(), " youth".into()])
            .unwrap()
            .unwrap();
        assert_eq!(got, vec![1.0, 0.0, 0.0]);
    }

    #[test]
    fn bad_files_name_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("lex.csv");
        // A file that never ends stops at the size limit, naming the file.
        if Path::new("/dev/zero").exists() {
            let e = Lexicon::read("l", Path::new("/dev/zero"))
                .err()
                .unwrap()
                .to_string();
            assert!(e.contains("/dev/zero") && e.contains("limit"), "{e}");
        } else {
            eprintln!("SKIPPED the endless-file case: this system has no /dev/zero");
        }
        std::fs::write(&p, "phrase,weight\nplease,1\nthanks,NaN\n").unwrap();

        let e = Lexicon::read("l", &p).err().unwrap().to_string();
        assert!(e.contains("lex.csv:3") && e.contains("NaN"), "{e}");
        std::fs::write(&p, "word,score\nplease,1\n").unwrap();
        let e = Lexicon::read("l", &p).err().unwrap().to_string();
        assert!(e.contains("phrase"), "{e}");
    }
}
