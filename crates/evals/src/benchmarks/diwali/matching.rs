//! DIWALI's concept matching, as the authors' matcher (`concept_matching_*.py`) counts it.
//!
//! An adaptation output is a JSON list (or object) of entries `{"cultural_adapted_text",
//! "replaced_concepts": {source: target}}`. Each entry's targets (where the target differs
//! from its source and is not empty) are normalised (`[a-zA-Z0-9₹\s]` kept, lower-cased,
//! stripped) into a set of words, matched against the concept names as written, in three
//! steps: exactly; then the rest through `inflect`'s `singular_noun`, then `plural_noun`;
//! then what remains by the best `token_sort_ratio` over all names, if it is at least 80.
//! The authors' quirks are kept because their totals depend on them: the fuzzy step skips a
//! word only where it equals a singular/plural *form* found in step two (not the word that
//! found it), so a plural can count twice; a sentence is a parsed entry, not an input item.

use super::inflect;
use crate::data::Source;
use crate::error::{bail, Error, Result};
use crate::pyjson::PyValue;
use serde::Serialize;
use serde_json::{Map, Value};
use std::collections::{BTreeSet, HashSet};

/// One entry of an output: a dict (`cultural_adapted_text`, `replaced_concepts`).
pub type Entry = Vec<(String, PyValue)>;

/// The lowest `token_sort_ratio` (0-100) the fuzzy step accepts.
pub const FUZZY_THRESHOLD: f64 = 80.0;

/// Whitespace as Python's `str.isspace` (and so `re`'s `\s` and `str.strip`) has it, which
/// is `char::is_whitespace` plus the four ASCII separators U+001C..U+001F.
pub fn is_py_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// The authors' `normalize`: ASCII letters, digits, `₹` and whitespace kept, lower-cased,
/// whitespace stripped at both ends.
pub fn normalize(word: &str) -> String {
    let kept: String = word
        .chars()
        .filter(|&c| c.is_ascii_alphanumeric() || c == '₹' || is_py_space(c))
        .map(|c| c.to_ascii_lowercase())
        .collect();
    kept.trim_matches(is_py_space).to_string()
}

/// rapidfuzz's `token_sort_ratio` (no preprocessing, as rapidfuzz 3 calls it): the words of
/// each side sorted and joined by one space, then the Indel similarity scaled to 0-100.
pub fn token_sort_ratio(a: &str, b: &str) -> f64 {
    let a = sorted_tokens(a);
    let b = sorted_tokens(b);
    rapidfuzz::fuzz::ratio(a.chars(), b.chars()) * 100.0
}

fn sorted_tokens(s: &str) -> String {
    let mut words: Vec<&str> = s.split(is_py_space).filter(|w| !w.is_empty()).collect();
    words.sort_unstable();
    words.join(" ")
}

/// The names an adaptation is credited for, in the order the file gives them (the fuzzy
/// step's ties go to the first; the authors' Python set left ties to hash order).
pub struct Concepts {
    pub names: Vec<String>,
    set: HashSet<String>,
    /// `names`, each with its words sorted, for the fuzzy step.
    sorted: Vec<Vec<char>>,
    pub source: Source,
    /// Names that hold characters the normaliser removes (capitals, punctuation): the
    /// authors' matcher compares normalised words with names as written, so these never
    /// match exactly.
    pub never_exact: usize,
}

impl Concepts {
    /// The list every published DIWALI matching row uses (CANDLE's `concepts_filtered`).
    pub fn builtin() -> Result<Self> {
        Self::from_source(Source::embedded(
            "diwali concepts_filtered.json",
            include_bytes!("../../../data/diwali/concepts_filtered.json"),
        ))
    }

    /// A concept list: CANDLE's `{"facet", "concepts": [{"name"}]}` records (one JSON array
    /// or JSON lines), DIWALI's `india_cultural_features.json` (facet -> `[{"name", ...}]`),
    /// or a `.txt` file of one name per line.
    pub fn from_source(source: Source) -> Result<Self> {
        let text = std::str::from_utf8(&source.bytes).map_err(|e| Error::NotUtf8 {
            name: source.name.clone(),
            source: e,
        })?;
        let names = if source.name.ends_with(".txt") {
            text.lines()
                .map(|l| l.trim_matches(is_py_space))
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(str::to_string)
                .collect()
        } else {
            json_names(&source.name, text)?
        };
        if names.is_empty() {
            bail!(Data, "{}: no concept names", source.name);
        }
        let mut seen = HashSet::new();
        let names: Vec<String> = names
            .into_iter()
            .filter(|n| seen.insert(n.clone()))
            .collect();
        let never_exact = names.iter().filter(|n| normalize(n) != **n).count();
        Ok(Concepts {
            sorted: names
                .iter()
                .map(|n| sorted_tokens(n).chars().collect())
                .collect(),
            set: seen,
            names,
            source,
            never_exact,
        })
    }

    fn contains(&self, word: &str) -> bool {
        self.set.contains(word)
    }

    /// rapidfuzz's `extractOne(word, names, scorer=token_sort_ratio)`: the first name with
    /// the highest score, and the score.
    pub(crate) fn best(&self, word: &str) -> Option<(&str, f64)> {
        // `fuzz::ratio` pair by pair: rapidfuzz-rs 0.5's cached `RatioBatchComparator` scores
        // differently (e.g. 0.67 for "anda" / "mandap", whose ratio is 0.8).
        let query: Vec<char> = sorted_tokens(word).chars().collect();
        let mut best: Option<(usize, f64)> = None;
        for (i, name) in self.sorted.iter().enumerate() {
            let score = rapidfuzz::fuzz::ratio(query.iter().copied(), name.iter().copied()) * 100.0;
            if best.is_none_or(|(_, s)| score > s) {
                best = Some((i, score));
                if score == 100.0 {
                    break;
                }
            }
        }
        best.map(|(i, s)| (self.names[i].as_str(), s))
    }
}

/// The names of a JSON concept list (see `Concepts::from_source`).
fn json_names(name: &str, text: &str) -> Result<Vec<String>> {
    let trimmed = text.trim_start();
    let records: Vec<(String, Value)> = if trimmed.starts_with('[') {
        let items: Vec<Value> = serde_json::from_str(text).map_err(|err| Error::Json {
            at: name.to_string(),
            err,
        })?;
        items
            .into_iter()
            .enumerate()
            .map(|(i, v)| (format!("{name}: record {}", i + 1), v))
            .collect()
    } else if let Ok(Value::Object(map)) = serde_json::from_str::<Value>(text) {
        if !map.contains_key("facet") {
            return csi_names(name, map);
        }
        vec![(format!("{name}: record 1"), Value::Object(map))]
    } else {
        let mut out = Vec::new();
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let v = serde_json::from_str(line).map_err(|err| Error::Json {
                at: format!("{name}:{}", i + 1),
                err,
            })?;
            out.push((format!("{name}:{}", i + 1), v));
        }
        out
    };
    let mut names = Vec::new();
    for (at, record) in records {
        let Value::Object(record) = record else {
            bail!(Data, "{at}: not a {{\"facet\", \"concepts\"}} record");
        };
        // As the authors' reader: records without a facet are skipped, names that are empty
        // or null are skipped.
        if record.get("facet").is_none_or(|f| !truthy(f)) {
            continue;
        }
        let concepts = match record.get("concepts") {
            None | Some(Value::Null) => continue,
            Some(Value::Array(c)) => c,
            Some(_) => bail!(Data, "{at}: `concepts` is not a list"),
        };
        for (j, c) in concepts.iter().enumerate() {
            match c.get("name") {
                Some(Value::String(s)) if !s.is_empty() => names.push(s.clone()),
                None | Some(Value::Null) | Some(Value::String(_)) => {}
                Some(_) => bail!(Data, "{at}: concept {}: `name` is not a string", j + 1),
            }
        }
    }
    Ok(names)
}

/// DIWALI's `india_cultural_features.json`: facet -> list of `{"state", "name", ...}`.
fn csi_names(name: &str, map: Map<String, Value>) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for (facet, items) in map {
        let Value::Array(items) = items else {
            bail!(Data, "{name}: facet `{facet}` is not a list of items");
        };
        for (j, it) in items.iter().enumerate() {
            match it.get("name") {
                Some(Value::String(s)) if !s.is_empty() => names.push(s.clone()),
                None | Some(Value::Null) | Some(Value::String(_)) => {}
                Some(_) => bail!(
                    Data,
                    "{name}: facet `{facet}` item {}: `name` is not a string",
                    j + 1
                ),
            }
        }
    }
    Ok(names)
}

/// Python's truth value of a JSON value.
fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

/// The entries of one output, as the authors' reader takes them: a string is parsed as JSON
/// (`None` where it does not parse), and a list gives its dicts, a dict itself.
pub fn entries_of(output: &PyValue) -> Option<Vec<Entry>> {
    Some(match output.parsed()?.as_ref() {
        PyValue::List(items) => items
            .iter()
            .filter_map(|e| match e {
                PyValue::Dict(d) => Some(d.clone()),
                _ => None,
            })
            .collect(),
        PyValue::Dict(d) => vec![d.clone()],
        _ => Vec::new(),
    })
}

/// The authors' post-processing of a reply: the text between the first `<output>` and the
/// first `</output>`, stripped, or the whole reply stripped where either tag is missing.
pub fn extract_output(reply: &str) -> String {
    match (reply.find("<output>"), reply.find("</output>")) {
        (Some(s), Some(e)) => reply
            .get(s + "<output>".len()..e)
            .unwrap_or("")
            .trim_matches(is_py_space)
            .to_string(),
        _ => reply.trim_matches(is_py_space).to_string(),
    }
}

/// One entry's matches, in the authors' `detailed_scores` shape (lists sorted here).
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct EntryScore {
    pub adapted_text: String,
    pub replaced_words: Vec<String>,
    pub strict_matches: Vec<String>,
    pub singular_plural_matches: Vec<String>,
    pub fuzzy_matches: Vec<String>,
    pub total_replaced_words: usize,
}

/// The targets an entry credits: `replaced_concepts` values that differ from their source
/// and are truthy, as Python's `str` prints them, normalised.
fn replaced_words(entry: &Entry) -> BTreeSet<String> {
    let Some((_, PyValue::Dict(pairs))) =
        entry.iter().rev().find(|(k, _)| k == "replaced_concepts")
    else {
        // The authors' script stops on a non-dict here; an entry without pairs counts as a
        // sentence without replacements.
        return BTreeSet::new();
    };
    pairs
        .iter()
        .filter(|(src, tgt)| tgt.truthy() && tgt.as_str() != Some(src.as_str()))
        .map(|(_, tgt)| normalize(&tgt.py_str()))
        .collect()
}

/// The three steps over one entry; `None` where it replaced nothing.
pub fn score_entry(entry: &Entry, concepts: &Concepts) -> Option<EntryScore> {
    let words = replaced_words(entry);
    if words.is_empty() {
        return None;
    }
    let strict: BTreeSet<String> = words
        .iter()
        .filter(|w| concepts.contains(w))
        .cloned()
        .collect();
    let remaining: Vec<&String> = words.iter().filter(|w| !strict.contains(*w)).collect();
    let mut singular_plural = BTreeSet::new();
    for w in &remaining {
        if w.is_empty() {
            continue;
        }
        // As the authors' try block: an exception in either call ends the step for the word.
        let form = match inflect::try_singular_noun(w) {
            Err(_) => None,
            Ok(Some(s)) if !s.is_empty() && concepts.contains(&s) => Some(s),
            Ok(_) => inflect::try_plural_noun(w)
                .ok()
                .filter(|p| !p.is_empty() && concepts.contains(p)),
        };
        if let Some(f) = form {
            singular_plural.insert(f);
        }
    }
    let mut fuzzy = BTreeSet::new();
    for w in remaining {
        if w.is_empty() || singular_plural.contains(w) {
            continue;
        }
        if let Some((name, score)) = concepts.best(w) {
            if score >= FUZZY_THRESHOLD {
                fuzzy.insert(name.to_string());
            }
        }
    }
    Some(EntryScore {
        adapted_text: match entry.iter().find(|(k, _)| k == "cultural_adapted_text") {
            Some((_, PyValue::Str(s))) => s.clone(),
            None | Some((_, PyValue::None)) => String::new(),
            Some((_, other)) => other.py_str(),
        },
        total_replaced_words: words.len(),
        replaced_words: words.into_iter().collect(),
        strict_matches: strict.into_iter().collect(),
        singular_plural_matches: singular_plural.into_iter().collect(),
        fuzzy_matches: fuzzy.into_iter().collect(),
    })
}

/// The authors' `dataset_statistics`, under their names.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct MatchTotals {
    pub total_sentences: usize,
    pub entries_with_replacements: usize,
    pub total_strict_matches: usize,
    pub total_singular_plural_matches: usize,
    pub total_fuzzy_matches: usize,
    pub average_strict_match_per_sentence: f64,
    pub average_singular_plural_match_per_sentence: f64,
    pub average_fuzzy_match_per_sentence: f64,
}

/// Every output's entries scored: the totals, each scored entry with the index of the
/// output it came from, and the outputs that did not parse.
#[derive(Debug, Default)]
pub struct Matched {
    pub totals: MatchTotals,
    pub entries: Vec<(usize, EntryScore)>,
    pub unparsed: Vec<usize>,
}

pub fn match_outputs(outputs: &[PyValue], concepts: &Concepts) -> Matched {
    let mut sentences = 0;
    let mut entries = Vec::new();
    let mut unparsed = Vec::new();
    for (i, out) in outputs.iter().enumerate() {
        let Some(es) = entries_of(out) else {
            unparsed.push(i);
            continue;
        };
        if es.is_empty() {
            unparsed.push(i);
        }
        sentences += es.len();
        entries.extend(
            es.iter()
                .filter_map(|e| score_entry(e, concepts).map(|s| (i, s))),
        );
    }
    let count = |f: fn(&EntryScore) -> usize| entries.iter().map(|(_, e)| f(e)).sum::<usize>();
    let strict = count(|e| e.strict_matches.len());
    let sp = count(|e| e.singular_plural_matches.len());
    let fuzzy = count(|e| e.fuzzy_matches.len());
    let per = |n: usize| {
        if sentences == 0 {
            0.0
        } else {
            n as f64 / sentences as f64
        }
    };
    Matched {
        totals: MatchTotals {
            total_sentences: sentences,
            entries_with_replacements: entries.len(),
            total_strict_matches: strict,
            total_singular_plural_matches: sp,
            total_fuzzy_matches: fuzzy,
            average_strict_match_per_sentence: per(strict),
            average_singular_plural_match_per_sentence: per(sp),
            average_fuzzy_match_per_sentence: per(fuzzy),
        },
        entries,
        unparsed,
    }
}

/// An adaptations file in the authors' format: a JSON list of outputs (each a JSON string,
/// a list of entries or an entry).
pub fn read_adaptations(source: &Source) -> Result<Vec<PyValue>> {
    let v: PyValue = serde_json::from_slice(&source.bytes).map_err(|err| Error::Json {
        at: source.name.clone(),
        err,
    })?;
    match v {
        PyValue::List(items) => Ok(items),
        _ => bail!(
            Data,
            "{}: not a JSON list of adaptation outputs (the authors' format: a list of JSON strings, each `[{{\"cultural_adapted_text\", \"replaced_concepts\"}}]`)",
            source.name
        ),
    }
}
