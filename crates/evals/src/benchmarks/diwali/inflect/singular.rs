//! inflect's `_sinoun` with the default engine (gender "neuter", no classical
//! modes except `names`, no user-defined nouns). `None` is inflect's `False`
//! ("could not find a singular").

use super::common::*;
use super::lists::*;
use super::pystr::{char_len, drop_end, lower, slice, tail, upper};
use super::InflectError;

pub fn sinoun(word: &str, depth: usize) -> Res<Option<String>> {
    let depth = deeper(depth, 1)?;
    // inflect's `ud_match(word: Word, ...)` type check rejects ""
    if word.is_empty() {
        return Err(InflectError::EmptyText);
    }
    if SI_SB_OIS_OI_CASE.contains(&word) {
        return Ok(Some(drop_end(word, 1).to_string()));
    }
    let w = Words::new(word)?;
    if let Some(compound) = compounds(&w, depth)? {
        return Ok(compound);
    }
    Ok(simple(&w))
}

/// The rules up to and including the compounds. `None`: none applied;
/// `Some(None)`: inflect's `False`.
fn compounds(w: &Words, depth: usize) -> Res<Option<Option<String>>> {
    let (word, lowered) = (w.word, w.lowered.as_str());
    let last_lower = w.last_lower();
    let keep = || Ok(Some(Some(word.to_string())));

    if PL_SB_UNINFLECTED_COMPLETE.contains(&last_lower.as_str()) {
        if w.split.len() >= 3 {
            // inflect's long-compound helper is three Python frames deep
            if let Some(s) = long_compound(&w.split, |c| sinoun(c, deeper(depth, 3)?))? {
                return Ok(Some(Some(s)));
            }
        }
        return keep();
    }
    if PL_SB_UNINFLECTED_CAPS.contains(&word) || ends_with_any(lowered, PL_SB_UNINFLECTED_ENDINGS) {
        return keep();
    }
    // "status", "apparatus": no singular outside classical mode
    if PL_SB_C_US_US.contains(&last_lower.as_str()) {
        return Ok(Some(None));
    }

    // "attorneys general"; a head without a singular is formatted as Python
    // formats False: "attorney general" -> "False general"
    if let Some((head, rest)) = postfix_adjective(word) {
        let head = sinoun(&head, depth)?.unwrap_or_else(|| "False".to_string());
        return Ok(Some(Some(head + &rest)));
    }

    // "sons of guns", "mothers-in-law" (on the lowered word)
    for sep in [' ', '-'] {
        if let Some(s) = prepositional_phrase(lowered, sep, |p| sinoun(p, deeper(depth, 1)?))? {
            return Ok(Some(Some(s)));
        }
    }
    Ok(None)
}

/// inflect's `word[0] == word[0].upper()`.
fn starts_upper(s: &str) -> bool {
    let first = slice(s, None, Some(1));
    first == upper(first)
}

/// Unassimilated imports: (last letter, endings, letters to cut, suffix).
const UNASSIMILATED: [(char, &[&str], usize, &str); 7] = [
    ('s', SI_SB_U_CH_CHS, 1, ""),
    ('s', SI_SB_U_EX_ICES, 4, "ex"),
    ('s', SI_SB_U_IX_ICES, 4, "ix"),
    ('a', SI_SB_U_UM_A, 1, "um"),
    ('i', SI_SB_U_US_I, 1, "us"),
    ('a', SI_SB_U_ON_A, 1, "on"),
    ('e', SI_SB_U_A_AE, 1, ""),
];

fn simple(w: &Words) -> Option<String> {
    let (word, lowered) = (w.word, w.lowered.as_str());
    let last_lower = w.last_lower();
    let last_lower = last_lower.as_str();
    let cut = |n: usize, suffix: &str| Some(format!("{}{}", drop_end(word, n), suffix));
    let ends = |s: &str| lowered.ends_with(s);
    // a rule that has both a case-sensitive whole-word list and a last-word list
    let listed = |case: &[&str], list: &[&str]| case.contains(&word) || list.contains(&last_lower);

    // pronouns ("to them" -> "to it", "we" -> "I")
    if let Some(s) = prep_pronoun(lowered, SI_PRON_ACC) {
        return Some(s);
    }
    if let Some(p) = lookup(SI_PRON_NOM, lowered).or_else(|| lookup(SI_PRON_ACC, lowered)) {
        return Some(p.to_string());
    }

    // isolated irregular plurals
    if let Some(s) = lookup(SI_SB_IRREGULAR_CAPS, w.last()) {
        return cut(char_len(w.last()), s);
    }
    if let Some(s) = lookup(SI_SB_IRREGULAR, last_lower) {
        return cut(char_len(last_lower), s);
    }
    let dash_split: Vec<&str> = lowered.split('-').collect();
    let last_two = dash_split[dash_split.len().saturating_sub(2)..].join(" ");
    if let Some(s) = lookup(SI_SB_IRREGULAR_COMPOUND, &lower(&last_two)) {
        return cut(char_len(&last_two), s);
    }
    if ends("quies") {
        return cut(3, "y");
    }
    if ends("persons") {
        return cut(1, "");
    }
    if ends("people") {
        return cut(4, "rson");
    }

    // families of irregular plurals
    if ends("mans")
        && (ends_with_any(lowered, SI_SB_U_MAN_MANS) || ends_with_any(word, SI_SB_U_MAN_MANS_CAPS))
    {
        return cut(1, "");
    }
    if ends("men") {
        return cut(3, "man");
    }
    if ends("mice") {
        return cut(4, "mouse");
    }
    // inflect looks the word up among the list words of the same length
    if ends("lice") && SI_SB_U_LOUSE_LICE.contains(&lowered) && char_len(word) == char_len(lowered)
    {
        return cut(4, "louse");
    }
    if ends("geese") {
        return cut(5, "goose");
    }
    if ends("teeth") {
        return cut(5, "tooth");
    }
    if ends("feet") {
        return cut(4, "foot");
    }
    if lowered == "dice" {
        return Some("die".to_string());
    }

    // unassimilated imports
    if ends("ceps") {
        return Some(word.to_string());
    }
    if ends("zoa") {
        return cut(1, "on");
    }
    for (last_letter, endings, n, suffix) in UNASSIMILATED {
        if lowered.ends_with(last_letter) && ends_with_any(lowered, endings) {
            return cut(n, suffix);
        }
    }

    // -uses -> -use, -ies -> -ie, -oes -> -oe
    if ends("houses") || listed(SI_SB_USES_USE_CASE, SI_SB_USES_USE) {
        return cut(1, "");
    }
    if listed(SI_SB_IES_IE_CASE, SI_SB_IES_IE) {
        return cut(1, "");
    }
    if ends("shoes") || listed(SI_SB_OES_OE_CASE, SI_SB_OES_OE) {
        return cut(1, "");
    }

    // singular nouns ending in ...s or other sibilants
    if listed(SI_SB_SSES_SSE_CASE, SI_SB_SSES_SSE) {
        return cut(1, "");
    }
    if SI_SB_SINGULAR_S_COMPLETE.contains(&last_lower)
        || ends_with_any(lowered, SI_SB_SINGULAR_S_ENDINGS)
    {
        return cut(2, "");
    }
    if ends("eses") && starts_upper(word) {
        return cut(2, "");
    }
    if SI_SB_Z_ZES.contains(&last_lower) || SI_SB_ZZES_ZZ.contains(&last_lower) {
        return cut(2, "");
    }
    if ends("zzes") {
        return cut(3, "");
    }
    if listed(SI_SB_CHES_CHE_CASE, SI_SB_CHES_CHE) {
        return cut(1, "");
    }
    if ends("ches") || ends("shes") {
        return cut(2, "");
    }
    if SI_SB_XES_XE.contains(&last_lower) {
        return cut(1, "");
    }
    if ends("xes") {
        return cut(2, "");
    }

    // ...ves -> ...f(e)
    if listed(SI_SB_VES_VE_CASE, SI_SB_VES_VE) {
        return cut(1, "");
    }
    if ends("ves") {
        let before = slice(lowered, Some(-5), Some(-3));
        if ["el", "al", "ol"].contains(&before) {
            return cut(3, "f");
        }
        // sic: the "d" test is on the word as written
        if before == "ea" && slice(word, Some(-6), Some(-5)) != "d" {
            return cut(3, "f");
        }
        if ["ni", "li", "wi"].contains(&before) {
            return cut(3, "fe");
        }
        if before == "ar" {
            return cut(3, "f");
        }
    }

    // ...ys -> ...y after a vowel, or for names (classical "names" is on)
    if ends("ys") {
        let vowel_before =
            char_len(lowered) > 2 && "aeiou".contains(slice(lowered, Some(-3), Some(-2)));
        if vowel_before || starts_upper(word) {
            return cut(1, "");
        }
    }
    if ends("ies") {
        return cut(3, "y");
    }

    // ...os -> ...o
    if ends("os")
        && (SI_SB_U_O_OS_COMPLETE.contains(&last_lower)
            || ends_with_any(lowered, SI_SB_U_O_OS_ENDINGS)
            || ["aos", "eos", "ios", "oos", "uos"].contains(&tail(lowered, 3)))
    {
        return cut(1, "");
    }
    if ends("oes") {
        return cut(2, "");
    }

    if SI_SB_ES_IS.contains(&word) {
        return cut(2, "is");
    }
    // "grass", "moss" are already singular
    if ends("ss") {
        return None;
    }
    if ends("s") {
        return cut(1, "");
    }
    None
}
