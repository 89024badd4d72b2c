//! Machinery shared by the plural and singular paths: inflect's `Words`,
//! `partition_word`, `postprocess`, the compound-word helpers, and hand-written
//! equivalents of the three regular expressions that inflect uses on nouns.

use super::lists::PL_PREP_LIST_DA;
use super::pystr::{capitalize, ci_at, is_space, lower, split_ws, upper};
use super::InflectError;

pub type Res<T> = Result<T, InflectError>;

/// Python's default recursion limit is 1000 frames. inflect recurses on
/// strictly shorter pieces, so only pathological inputs (hundreds of nested
/// "x per y ...", "x of a y ..." or "x-general-general...") get near it; there
/// inflect raises `RecursionError`, and so do we. In Python the exact
/// threshold depends on the caller's stack and on transient helper frames;
/// this one matches a direct chain ("x of a " * n + "x" fails from n = 987)
/// called four frames below the module, as the DIWALI matcher and
/// make_refs.py call it.
pub const MAX_DEPTH: usize = 987;

/// Depth bookkeeping in Python frames, so that the indirect recursions (through
/// `_handle_long_compounds`, `_handle_prepositional_phrase`) count as they do
/// in CPython.
pub fn deeper(depth: usize, frames: usize) -> Res<usize> {
    let d = depth + frames;
    if d > MAX_DEPTH {
        Err(InflectError::RecursionLimit)
    } else {
        Ok(d)
    }
}

/// inflect's `Words`: the word, its `lower()`, and its whitespace split.
pub struct Words<'a> {
    pub word: &'a str,
    pub lowered: String,
    pub split: Vec<&'a str>,
}

impl<'a> Words<'a> {
    /// Python raises IndexError (`split_[0]`) for a word that is all whitespace.
    pub fn new(word: &'a str) -> Res<Self> {
        let split = split_ws(word);
        if split.is_empty() {
            return Err(InflectError::BlankWord);
        }
        Ok(Words {
            word,
            lowered: lower(word),
            split,
        })
    }

    pub fn first(&self) -> &'a str {
        self.split[0]
    }

    pub fn last(&self) -> &'a str {
        self.split[self.split.len() - 1]
    }

    /// `word.last.lower()`
    pub fn last_lower(&self) -> String {
        lower(self.last())
    }
}

pub fn is_prep(s: &str) -> bool {
    PL_PREP_LIST_DA.contains(&s)
}

pub fn lookup(map: &'static [(&'static str, &'static str)], key: &str) -> Option<&'static str> {
    map.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
}

pub fn ends_with_any(s: &str, endings: &[&str]) -> bool {
    endings.iter().any(|e| s.ends_with(e))
}

/// `PARTITION_WORD = re.compile(r"\A(\s*)(.+?)(\s*)\Z")`: leading space, the
/// word, trailing space. `.` does not match "\n", so a word containing a
/// newline does not match at all and gives ("", "", "").
pub fn partition_word(text: &str) -> (&str, &str, &str) {
    const NONE: (&str, &str, &str) = ("", "", "");
    match text.char_indices().find(|&(_, c)| !is_space(c)) {
        Some((start, _)) => {
            // the word runs to the last non-space character
            let (last, c) = text
                .char_indices()
                .rev()
                .find(|&(_, c)| !is_space(c))
                .unwrap_or((start, ' '));
            let end = last + c.len_utf8();
            if text[start..end].contains('\n') {
                return NONE;
            }
            (&text[..start], &text[start..end], &text[end..])
        }
        // all whitespace: the greedy `\s*` gives back one character, the last
        // one that `.` can match
        None => match text.char_indices().rev().find(|&(_, c)| c != '\n') {
            Some((i, c)) => (
                &text[..i],
                &text[i..i + c.len_utf8()],
                &text[i + c.len_utf8()..],
            ),
            None => NONE,
        },
    }
}

/// `postprocess(orig, inflected)`: pick the modern alternative of "a|b" and
/// give each output word the case of the input word at the same position.
pub fn postprocess(orig: &str, inflected: &str) -> String {
    let result: Vec<&str> = if inflected.contains('|') {
        let options: Vec<&str> = inflected.split('|').collect();
        if options[0].split(' ').count() == options[1].split(' ').count() {
            // the whole phrase has alternatives: take the first
            options[0].split(' ').collect()
        } else {
            // only some words have alternatives
            inflected
                .split(' ')
                .map(|w| w.split('|').next().unwrap_or(w))
                .collect()
        }
    } else {
        inflected.split(' ').collect()
    };
    let originals: Vec<&str> = orig.split(' ').collect();
    let mut out: Vec<String> = originals
        .iter()
        .zip(&result)
        .map(|(o, w)| recase(o, w))
        .collect();
    // words beyond the input's count are left as they are
    out.extend(result.iter().skip(originals.len()).map(|w| w.to_string()));
    out.join(" ")
}

/// `_recase`: "I" keeps the inflected case; otherwise follow the original's
/// all-upper or capitalised form. Note that "" and "123" count as upper case.
fn recase(original: &str, inflected: &str) -> String {
    if original == "I" {
        inflected.to_string()
    } else if original == upper(original) {
        upper(inflected)
    } else if original == capitalize(original) {
        capitalize(inflected)
    } else {
        inflected.to_string()
    }
}

/// `(?:-|\s+)` at `at`: end of the separator, taking a whole run of space
/// (a shorter run could never be followed by the letter the patterns need).
fn separator(chars: &[char], at: usize) -> Option<usize> {
    match chars.get(at) {
        Some('-') => Some(at + 1),
        Some(&c) if is_space(c) => Some(
            chars[at..]
                .iter()
                .position(|&c| !is_space(c))
                .map_or(chars.len(), |n| at + n),
        ),
        _ => None,
    }
}

/// `(?=(?:-|\s+)lit)`, case-insensitive.
fn followed_by(chars: &[char], at: usize, lit: &str) -> bool {
    separator(chars, at).is_some_and(|p| ci_at(chars, p, lit))
}

/// `PL_SB_POSTFIX_ADJ_STEMS_RE` ("Governor General", "court martial",
/// "pound force"), case-insensitive: returns (head, rest) where the head
/// is to be inflected and the rest (starting with "-" or space) kept.
pub fn postfix_adjective(word: &str) -> Option<(String, String)> {
    let chars: Vec<char> = word.chars().collect();
    let split_at = |p: usize| Some((chars[..p].iter().collect(), chars[p..].iter().collect()));
    // (?!major|lieutenant|brigadier|adjutant|.*star)\S+(?=(?:-|\s+)general)
    let excluded = ["major", "lieutenant", "brigadier", "adjutant"]
        .iter()
        .any(|w| ci_at(&chars, 0, w))
        || (0..chars.len()).any(|i| ci_at(&chars, i, "star"));
    if !excluded {
        let token_end = chars
            .iter()
            .position(|&c| is_space(c))
            .unwrap_or(chars.len());
        // \S+ is greedy: the longest head wins
        if let Some(p) = (1..=token_end)
            .rev()
            .find(|&p| followed_by(&chars, p, "general"))
        {
            return split_at(p);
        }
    }
    for (head, adjective) in [("court", "martial"), ("pound", "force")] {
        if ci_at(&chars, 0, head) && followed_by(&chars, head.len(), adjective) {
            return split_at(head.len());
        }
    }
    None
}

/// `PL_SB_PREP_DUAL_COMPOUND_RE`: `(.*?)((?:-|\s+)PREP(?:-|\s+))a(?:-|\s+)(.*)`,
/// case-insensitive ("son of a gun"). Returns the three groups; the "a" and
/// the separator after it belong to none of them.
pub fn prep_dual_compound(word: &str) -> Option<(String, String, String)> {
    let chars: Vec<char> = word.chars().collect();
    let text = |a: usize, b: usize| chars[a..b].iter().collect::<String>();
    // the lazy first group: the leftmost place where the rest matches
    for i in 0..chars.len() {
        let Some(j) = separator(&chars, i) else {
            continue;
        };
        for prep in PL_PREP_LIST_DA {
            if !ci_at(&chars, j, prep) {
                continue;
            }
            let Some(k) = separator(&chars, j + prep.len()) else {
                continue;
            };
            if !ci_at(&chars, k, "a") {
                continue;
            }
            if let Some(m) = separator(&chars, k + 1) {
                return Some((text(0, i), text(i, k), text(m, chars.len())));
            }
        }
    }
    None
}

/// `DENOMINATOR = (?P<denominator>.+)( (per|a) .+)` searched in the lowered
/// word: the length in characters of the (greedy, so longest) denominator.
pub fn denominator(lowered: &str) -> Option<usize> {
    let chars: Vec<char> = lowered.chars().collect();
    let starts = |at: usize, lit: &str| {
        lit.chars()
            .enumerate()
            .all(|(n, l)| chars.get(at + n) == Some(&l))
    };
    (1..chars.len()).rev().find(|&j| {
        (starts(j, " per ") && chars.len() > j + 5) || (starts(j, " a ") && chars.len() > j + 3)
    })
}

/// `_handle_prepositional_phrase(phrase, transform, sep)`: inflect the word
/// before the first preposition found among the `sep`-separated parts (not
/// the first or last part). `Ok(None)` is inflect's ValueError (fewer than
/// three parts, or no preposition), on which the caller moves on.
/// `transform` gives `None` for inflect's `False`.
pub fn prepositional_phrase(
    phrase: &str,
    sep: char,
    mut transform: impl FnMut(&str) -> Res<Option<String>>,
) -> Res<Option<String>> {
    let parts: Vec<&str> = phrase.split(sep).collect();
    if parts.len() < 3 {
        return Ok(None);
    }
    let Some(pivot) = (1..parts.len() - 1).find(|&i| is_prep(parts[i])) else {
        return Ok(None);
    };
    let before = parts[pivot - 1];
    // `transform(...) or parts[pivot - 1]`: False and "" fall back
    let transformed = transform(before)?
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| before.to_string());
    let sep = sep.to_string();
    let assemble = |head: &str| {
        let mut leading: Vec<String> = parts[..pivot - 1].iter().map(|p| p.to_string()).collect();
        leading.push([head, parts[pivot], ""].join(&sep));
        leading.join(" ") + &parts[pivot + 1..].join(" ")
    };
    // a "modern|classical" head gives the whole phrase twice
    Ok(Some(
        transformed
            .split('|')
            .map(assemble)
            .collect::<Vec<_>>()
            .join("|"),
    ))
}

/// `_handle_long_compounds`: in a phrase of three or more words, inflect the
/// word before the first preposition (from the second word on) and join all
/// words with single spaces. `inflect` gives `None` for inflect's `False`,
/// which keeps the word.
pub fn long_compound(
    split: &[&str],
    mut inflect: impl FnMut(&str) -> Res<Option<String>>,
) -> Res<Option<String>> {
    for i in 0..split.len().saturating_sub(1) {
        if is_prep(split[i + 1]) {
            let head = inflect(split[i])?.unwrap_or_else(|| split[i].to_string());
            let mut words: Vec<&str> = split[..i].to_vec();
            words.push(&head);
            words.extend_from_slice(&split[i + 1..]);
            return Ok(Some(words.join(" ")));
        }
    }
    Ok(None)
}

/// The "preposition + accusative pronoun" rule ("to him" -> "to them"):
/// exactly two words, no surrounding space, the first a preposition and the
/// second a key of `pronouns`. Keeps the lowered text up to the pronoun.
pub fn prep_pronoun(
    lowered: &str,
    pronouns: &'static [(&'static str, &'static str)],
) -> Option<String> {
    let words = split_ws(lowered);
    let [prep, pronoun] = words[..] else {
        return None;
    };
    let mapped = lookup(pronouns, pronoun)?;
    if is_prep(prep) && lowered.starts_with(prep) && lowered.ends_with(pronoun) {
        Some(format!(
            "{}{}",
            &lowered[..lowered.len() - pronoun.len()],
            mapped
        ))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition() {
        assert_eq!(partition_word("  cat \t"), ("  ", "cat", " \t"));
        assert_eq!(partition_word("a\nb"), ("", "", ""));
        assert_eq!(partition_word("\na"), ("\n", "a", ""));
        assert_eq!(partition_word(" \n "), (" \n", " ", ""));
        assert_eq!(partition_word(" \n\n"), ("", " ", "\n\n"));
        assert_eq!(partition_word("\n"), ("", "", ""));
    }

    #[test]
    fn regex_equivalents() {
        assert_eq!(
            postfix_adjective("Attorney-General"),
            Some(("Attorney".into(), "-General".into()))
        );
        assert_eq!(postfix_adjective("major general"), None);
        assert_eq!(
            postfix_adjective("court  martial x"),
            Some(("court".into(), "  martial x".into()))
        );
        assert_eq!(
            prep_dual_compound("son of a gun"),
            Some(("son".into(), " of ".into(), "gun".into()))
        );
        assert_eq!(denominator("km per hour a day"), Some(11));
        assert_eq!(denominator("x a "), None);
    }
}
