//! inflect's `_plnoun` with the default engine: no classical modes except
//! `names`, no user-defined nouns, count absent (so always plural).
//!
//! Each rule tests the lowered word (or its last word) and rebuilds the
//! result from the word as written, cutting a fixed number of characters off
//! its end; the order of the rules is inflect's and matters.

use super::common::*;
use super::lists::*;
use super::pystr::{char_len, drop_end, from, head, lower, slice, tail, upper};
use super::InflectError;

pub fn plnoun(word: &str, depth: usize) -> Res<String> {
    let depth = deeper(depth, 1)?;
    // inflect's `ud_match(word: Word, ...)` type check rejects ""
    if word.is_empty() {
        return Err(InflectError::EmptyText);
    }
    let w = Words::new(word)?;
    if let Some(compound) = compounds(&w, depth)? {
        return Ok(compound);
    }
    Ok(simple(&w))
}

/// The rules that recurse: uninflected phrases, compounds, units, "degree".
/// `None`: none applied, go on with the single-word rules.
fn compounds(w: &Words, depth: usize) -> Res<Option<String>> {
    let (word, lowered) = (w.word, w.lowered.as_str());
    // inflect's long-compound helper is three Python frames deep
    let inflect_long = |c: &str| plnoun(c, deeper(depth, 3)?).map(Some);

    // uninflected ("sheep", "news"), except inside a longer phrase like
    // "pair of scissors"
    if PL_SB_UNINFLECTED_COMPLETE.contains(&w.last_lower().as_str()) {
        if w.split.len() >= 3 {
            if let Some(s) = long_compound(&w.split, inflect_long)? {
                return Ok(Some(s));
            }
        }
        return Ok(Some(word.to_string()));
    }
    if PL_SB_UNINFLECTED_CAPS.contains(&word) || ends_with_any(lowered, PL_SB_UNINFLECTED_ENDINGS) {
        return Ok(Some(word.to_string()));
    }

    // "attorney general", "court martial"
    if let Some((head_word, rest)) = postfix_adjective(word) {
        return Ok(Some(plnoun(&head_word, depth)? + &rest));
    }

    // "son of a gun" -> "sons of guns" (the "a" goes)
    if lowered.contains(" a ") || lowered.contains("-a-") {
        if let Some((first, prep, second)) = prep_dual_compound(word) {
            if !second.is_empty() {
                return Ok(Some(
                    plnoun(&first, depth)? + &prep + &plnoun(&second, depth)?,
                ));
            }
        }
    }

    if w.split.len() >= 3 {
        if let Some(s) = long_compound(&w.split, inflect_long)? {
            return Ok(Some(s));
        }
    }

    // units: only the part before " per " / " a " is inflected
    if let Some(index) = denominator(lowered) {
        return Ok(Some(plnoun(head(word, index), depth)? + from(word, index)));
    }

    // "degree celsius": inflect pluralises the *first* word of the phrase
    if w.split.len() >= 2 && w.split[w.split.len() - 2] == "degree" {
        let mut words = vec![plnoun(w.first(), depth)?];
        words.extend(w.split[1..].iter().map(|s| s.to_string()));
        return Ok(Some(words.join(" ")));
    }

    // "mother-in-law" (on the lowered word; postprocess restores the case)
    prepositional_phrase(lowered, '-', |p| plnoun(p, deeper(depth, 1)?).map(Some))
}

/// inflect's `word[0] == word[0].upper()`.
fn starts_upper(s: &str) -> bool {
    let first = slice(s, None, Some(1));
    first == upper(first)
}

/// Unassimilated imports: (last letter, endings, letters to cut, suffix).
const UNASSIMILATED: [(char, &[&str], usize, &str); 7] = [
    ('h', PL_SB_U_CH_CHS, 0, "s"),
    ('x', PL_SB_U_EX_ICES, 2, "ices"),
    ('x', PL_SB_U_IX_ICES, 2, "ices"),
    ('m', PL_SB_U_UM_A, 2, "a"),
    ('s', PL_SB_U_US_I, 2, "i"),
    ('n', PL_SB_U_ON_A, 2, "a"),
    ('a', PL_SB_U_A_AE, 0, "e"),
];

/// The single-word rules: pronouns, irregulars, families, endings.
fn simple(w: &Words) -> String {
    let (word, lowered) = (w.word, w.lowered.as_str());
    let last_lower = w.last_lower();
    let last_lower = last_lower.as_str();
    let cut = |n: usize, suffix: &str| format!("{}{}", drop_end(word, n), suffix);
    let plus = |suffix: &str| format!("{word}{suffix}");
    let ends = |s: &str| lowered.ends_with(s);

    // pronouns ("to him" -> "to them", "she" -> "they")
    if let Some(s) = prep_pronoun(lowered, PL_PRON_ACC) {
        return s;
    }
    if let Some(p) = lookup(PL_PRON_NOM, lowered).or_else(|| lookup(PL_PRON_ACC, lowered)) {
        return p.to_string();
    }

    // isolated irregular plurals (value may be "modern|classical")
    if let Some(p) = lookup(PL_SB_IRREGULAR_CAPS, w.last()) {
        return cut(char_len(w.last()), p);
    }
    if let Some(p) = lookup(PL_SB_IRREGULAR, last_lower) {
        return cut(char_len(last_lower), p);
    }
    let dash_split: Vec<&str> = lowered.split('-').collect();
    let last_two = dash_split[dash_split.len().saturating_sub(2)..].join(" ");
    if let Some(p) = lookup(PL_SB_IRREGULAR_COMPOUND, &lower(&last_two)) {
        return cut(char_len(&last_two), p);
    }
    if ends("quy") {
        return cut(1, "ies");
    }
    if ends("person") {
        return cut(4, "ople");
    }

    // families of irregular plurals
    if ends("man") {
        if ends_with_any(lowered, PL_SB_U_MAN_MANS) || ends_with_any(word, PL_SB_U_MAN_MANS_CAPS) {
            return plus("s");
        }
        return cut(3, "men");
    }
    if ends("mouse") {
        return cut(5, "mice");
    }
    if ends("louse") {
        // inflect looks the word up among the list words of the same length
        if PL_SB_U_LOUSE_LICE.contains(&lowered) && char_len(word) == char_len(lowered) {
            return cut(5, "lice");
        }
        return plus("s");
    }
    if ends("goose") {
        return cut(5, "geese");
    }
    if ends("tooth") {
        return cut(5, "teeth");
    }
    if ends("foot") {
        return cut(4, "feet");
    }
    if ends("taco") {
        // sic: inflect cuts five letters, so "xtaco" -> "tacos"
        return cut(5, "tacos");
    }
    if lowered == "die" {
        return "dice".to_string();
    }

    // unassimilated imports
    if ends("ceps") {
        return word.to_string();
    }
    if ends("zoon") {
        return cut(2, "a");
    }
    if ["cis", "sis", "xis"].contains(&tail(lowered, 3)) {
        return cut(2, "es");
    }
    for (last_letter, endings, n, suffix) in UNASSIMILATED {
        if lowered.ends_with(last_letter) && ends_with_any(lowered, endings) {
            return if n == 0 { plus(suffix) } else { cut(n, suffix) };
        }
    }

    // singular nouns ending in ...s or other sibilants
    if PL_SB_SINGULAR_S_COMPLETE.contains(&last_lower)
        || ends_with_any(lowered, PL_SB_SINGULAR_S_ENDINGS)
    {
        return plus("es");
    }
    if ends("es") && starts_upper(word) {
        return plus("es");
    }
    if ends("z") {
        if ends_with_any(lowered, PL_SB_Z_ZES) {
            return plus("es");
        }
        if slice(lowered, Some(-2), Some(-1)) != "z" {
            return plus("zes");
        }
    }
    if ends("ze") && ends_with_any(lowered, PL_SB_ZE_ZES) {
        return plus("s");
    }
    if ["ch", "sh", "zz", "ss"].contains(&tail(lowered, 2)) || ends("x") {
        return plus("es");
    }

    // ...f -> ...ves
    if ["elf", "alf", "olf"].contains(&tail(lowered, 3)) {
        return cut(1, "ves");
    }
    if ends("eaf") && slice(lowered, Some(-4), Some(-3)) != "d" {
        return cut(1, "ves");
    }
    if ["nife", "life", "wife"].contains(&tail(lowered, 4)) {
        return cut(2, "ves");
    }
    if ends("arf") {
        return cut(1, "ves");
    }

    // ...y
    if ends("y") {
        // `lowered[-2:-1] in "aeiou"` is also true for "" (a lone "y")
        if "aeiou".contains(slice(lowered, Some(-2), Some(-1))) || char_len(word) == 1 {
            return plus("s");
        }
        // classical "names" mode is on by default: "Tony" -> "Tonys"
        if starts_upper(w.last()) {
            return plus("s");
        }
        return cut(1, "ies");
    }

    // ...o
    if PL_SB_U_O_OS_COMPLETE.contains(&last_lower)
        || ends_with_any(lowered, PL_SB_U_O_OS_ENDINGS)
        || ["ao", "eo", "io", "oo", "uo"].contains(&tail(lowered, 2))
    {
        return plus("s");
    }
    if ends("o") {
        return plus("es");
    }

    plus("s")
}
