//! MAP's `diversity` reward: the product over n = 2, 3, 4 of (distinct n-grams) / (n-grams + 1)
//! over the words of the full text (prompt and response), words as NLTK's `word_tokenize`
//! splits them.
//!
//! `word_tokens` is NLTK's `NLTKWordTokenizer` (the improved Treebank tokenizer behind
//! `word_tokenize`), rule for rule, applied to the whole text (`preserve_line=True`): NLTK's
//! Punkt sentence splitter, which needs a trained model file, would also split off the period
//! of every sentence-final word inside the text. Checked against NLTK 3.10 in
//! `tests/ref/make_reward_refs.py`.

use fancy_regex::Regex;
use std::collections::HashSet;
use std::sync::OnceLock;

/// (pattern, replacement) in NLTK's order; `$n` are the groups (Python's `\n`).
const STARTING_QUOTES: &[(&str, &str)] = &[
    ("([«“‘„]|[`]+)", " $1 "),
    (r#"^""#, "``"),
    ("(``)", " $1 "),
    (r#"([ (\[{<])("|'{2})"#, "$1 `` "),
    (r"(?i)(?<!\w)(')(?!(?:re|ve|ll|m|t|s|d|n)\b)(?=\w)", "$1 "),
];

const PUNCTUATION: &[(&str, &str)] = &[
    (r#"([^\.])(\.)([\]\)}>"'»”’ ]*+)\s*$"#, "$1 $2 $3 "),
    (r"([:,])([^\d])", " $1 $2"),
    (r"([:,])$", " $1 "),
    (r"\.{2,}", " $0 "),
    (r"[;@#$%&]", " $0 "),
    (r"[\x{2012}-\x{2015}]", " $0 "),
    (r#"([^\.])(\.)([\]\)}>"']*)\s*$"#, "$1 $2$3 "),
    (r"[?!]", " $0 "),
    (r"([^'])' ", "$1 ' "),
    (r"[*]", " $0 "),
    // PARENS_BRACKETS, then DOUBLE_DASHES.
    (r"[\]\[\(\)\{\}<>]", " $0 "),
    (r"--", " -- "),
];

const ENDING_QUOTES: &[(&str, &str)] = &[
    ("([»”’])", " $1 "),
    ("''", " '' "),
    ("\"", " '' "),
    (r"\s+", " "),
    (r"([^' ])('[sS]|'[mM]|'[dD]|') ", "$1 $2 "),
    (r"([^' ])('ll|'LL|'re|'RE|'ve|'VE|n't|N'T) ", "$1 $2 "),
];

const CONTRACTIONS: &[&str] = &[
    r"(?i)\b(can)(not)\b",
    r"(?i)\b(d)('ye)\b",
    r"(?i)\b(gim)(me)\b",
    r"(?i)\b(gon)(na)\b",
    r"(?i)\b(got)(ta)\b",
    r"(?i)\b(lem)(me)\b",
    r"(?i)\b(more)('n)\b",
    r"(?i)\b(wan)(na)(?=\s)",
    r"(?i) ('t)(is)\b",
    r"(?i) ('t)(was)\b",
];

struct Rules {
    before_padding: Vec<(Regex, &'static str)>,
    after_padding: Vec<(Regex, &'static str)>,
}

fn rules() -> &'static Rules {
    static RULES: OnceLock<Rules> = OnceLock::new();
    RULES.get_or_init(|| {
        let compile = |p: &str| Regex::new(p).expect("NLTK's patterns compile");
        Rules {
            before_padding: STARTING_QUOTES
                .iter()
                .chain(PUNCTUATION)
                .map(|&(p, r)| (compile(p), r))
                .collect(),
            after_padding: ENDING_QUOTES
                .iter()
                .copied()
                .chain(CONTRACTIONS.iter().map(|&p| (p, " $1 $2 ")))
                .map(|(p, r)| (compile(p), r))
                .collect(),
        }
    })
}

fn apply(text: String, rules: &[(Regex, &str)]) -> String {
    rules.iter().fold(text, |t, (re, rep)| {
        // A pattern that backtracks too far leaves the text as it is rather than failing.
        re.try_replacen(&t, 0, *rep)
            .map(|c| c.into_owned())
            .unwrap_or(t)
    })
}

/// The words of `text` as NLTK's `NLTKWordTokenizer().tokenize(text)` gives them.
pub fn word_tokens(text: &str) -> Vec<String> {
    let r = rules();
    let t = apply(text.to_string(), &r.before_padding);
    let t = apply(format!(" {t} "), &r.after_padding);
    t.split_whitespace().map(String::from).collect()
}

/// MAP's diversity of a text.
pub fn diversity(text: &str) -> f64 {
    let words = word_tokens(text);
    (2..=4)
        .map(|n| {
            let grams: Vec<&[String]> = words.windows(n).collect();
            let distinct: HashSet<&[String]> = grams.iter().copied().collect();
            distinct.len() as f64 / (grams.len() as f64 + 1.0)
        })
        .product()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// NLTK's own doctest for `NLTKWordTokenizer.tokenize`.
    #[test]
    fn nltk_doctest() {
        let s = "Good muffins cost $3.88 (roughly 3,36 euros)\nin New York.  Please buy me\ntwo of them.\nThanks.";
        let want = [
            "Good", "muffins", "cost", "$", "3.88", "(", "roughly", "3,36", "euros", ")", "in",
            "New", "York.", "Please", "buy", "me", "two", "of", "them.", "Thanks", ".",
        ];
        assert_eq!(word_tokens(s), want);
    }

    #[test]
    fn contractions_and_quotes() {
        assert_eq!(
            word_tokens("\"I can't go,\" she said -- cannot!"),
            ["``", "I", "ca", "n't", "go", ",", "''", "she", "said", "--", "can", "not", "!"]
        );
    }

    #[test]
    fn diversity_of_repeats() {
        // 4 words: 3 bigrams (2 distinct), 2 trigrams (2), 1 four-gram (1).
        let d = diversity("a b a b");
        assert!((d - (2.0 / 4.0) * (2.0 / 3.0) * (1.0 / 2.0)).abs() < 1e-12);
        assert_eq!(diversity("one"), 0.0);
    }
}
