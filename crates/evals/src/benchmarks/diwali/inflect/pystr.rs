//! The few pieces of Python `str` / `re` behaviour that inflect relies on,
//! reproduced on Rust strings: code-point slicing, `str.isspace` / `split()`,
//! `lower` / `upper` / `capitalize` as CPython 3.11 (Unicode 14.0) does them,
//! and how an `re.IGNORECASE` pattern letter matches a character.

/// Python's `str.isspace` for one character, which is also what `\s` matches
/// in a `str` pattern. Unlike `char::is_whitespace` it includes the
/// information separators U+001C..U+001F.
pub fn is_space(c: char) -> bool {
    matches!(
        c,
        '\t'..='\r'
            | '\u{1c}'..='\u{20}'
            | '\u{85}'
            | '\u{a0}'
            | '\u{1680}'
            | '\u{2000}'..='\u{200a}'
            | '\u{2028}'
            | '\u{2029}'
            | '\u{202f}'
            | '\u{205f}'
            | '\u{3000}'
    )
}

/// Python's `s.split()` (no argument): runs of whitespace separate, empty
/// pieces are dropped.
pub fn split_ws(s: &str) -> Vec<&str> {
    s.split(is_space).filter(|t| !t.is_empty()).collect()
}

pub fn char_len(s: &str) -> usize {
    s.chars().count()
}

/// Python `s[start:stop]`, counted in code points: negative bounds count from
/// the end, out-of-range bounds are clamped, and an empty range gives "".
pub fn slice(s: &str, start: Option<isize>, stop: Option<isize>) -> &str {
    let n = char_len(s) as isize;
    let norm = |i: isize| if i < 0 { (i + n).max(0) } else { i.min(n) };
    let a = start.map_or(0, norm);
    let b = stop.map_or(n, norm);
    if a >= b {
        return "";
    }
    let byte = |i: isize| s.char_indices().nth(i as usize).map_or(s.len(), |(p, _)| p);
    &s[byte(a)..byte(b)]
}

/// `s[-k:]` (for k > 0).
pub fn tail(s: &str, k: usize) -> &str {
    slice(s, Some(-(k as isize)), None)
}

/// `s[:-k]` (for k > 0).
pub fn drop_end(s: &str, k: usize) -> &str {
    slice(s, None, Some(-(k as isize)))
}

/// `s[:n]`.
pub fn head(s: &str, n: usize) -> &str {
    slice(s, None, Some(n as isize))
}

/// `s[n:]`.
pub fn from(s: &str, n: usize) -> &str {
    slice(s, Some(n as isize), None)
}

/// Characters that Rust's (newer, 17.0) Unicode tables lower-case but
/// CPython 3.11 (Unicode 14.0) leaves alone: capitals added since.
fn lower_is_identity_in_py(c: char) -> bool {
    matches!(
        c,
        '\u{1c89}'
            | '\u{a7cb}'
            | '\u{a7cc}'
            | '\u{a7ce}'
            | '\u{a7d2}'
            | '\u{a7d4}'
            | '\u{a7da}'
            | '\u{a7dc}'
            | '\u{10d50}'..='\u{10d65}'
            | '\u{16ea0}'..='\u{16eb8}'
    )
}

/// As above for upper-casing: small letters whose capitals are newer than
/// Unicode 14.0.
fn upper_is_identity_in_py(c: char) -> bool {
    matches!(
        c,
        '\u{19b}'
            | '\u{264}'
            | '\u{1c8a}'
            | '\u{a7cd}'
            | '\u{a7cf}'
            | '\u{a7d3}'
            | '\u{a7d5}'
            | '\u{a7db}'
            | '\u{10d70}'..='\u{10d85}'
            | '\u{16ebb}'..='\u{16ed3}'
    )
}

/// Code points whose Cased / Case_Ignorable properties (which drive the
/// final-sigma rule) differ between Unicode 14.0 and Rust's tables, found by
/// comparing Python's and Rust's lowering of "bcΣ", "AΣc", "AΣcb" for every c.
/// All are unassigned in Unicode 14.0 (neither cased nor case-ignorable)
/// except U+0295 (cased there) and U+1171E (case-ignorable there).
#[rustfmt::skip]
const CASE_PROPERTIES_DIFFER: &[(u32, u32)] = &[
    (0x295, 0x295), (0x897, 0x897), (0xECE, 0xECE), (0x1ACF, 0x1ADD), (0x1AE0, 0x1AEB),
    (0x1C89, 0x1C8A), (0xA7CB, 0xA7CF), (0xA7D2, 0xA7D2), (0xA7D4, 0xA7D4), (0xA7DA, 0xA7DC),
    (0xA7F1, 0xA7F1), (0x10D4E, 0x10D4E), (0x10D50, 0x10D65), (0x10D69, 0x10D6D),
    (0x10D6F, 0x10D85), (0x10EC5, 0x10EC5), (0x10EFA, 0x10EFF), (0x11241, 0x11241),
    (0x113BB, 0x113C0), (0x113CE, 0x113CE), (0x113D0, 0x113D0), (0x113D2, 0x113D2),
    (0x113E1, 0x113E2), (0x1171E, 0x1171E), (0x11B60, 0x11B60), (0x11B62, 0x11B64),
    (0x11B66, 0x11B66), (0x11DD9, 0x11DD9), (0x11F00, 0x11F01), (0x11F36, 0x11F3A),
    (0x11F40, 0x11F40), (0x11F42, 0x11F42), (0x11F5A, 0x11F5A), (0x13439, 0x13440),
    (0x13447, 0x13455), (0x1611E, 0x16129), (0x1612D, 0x1612F), (0x16D40, 0x16D42),
    (0x16D6B, 0x16D6C), (0x16EA0, 0x16EB8), (0x16EBB, 0x16ED3), (0x16FF2, 0x16FF3),
    (0x1DF25, 0x1DF2A), (0x1E030, 0x1E06D), (0x1E08F, 0x1E08F), (0x1E4EB, 0x1E4EF),
    (0x1E5EE, 0x1E5EF), (0x1E6E3, 0x1E6E3), (0x1E6E6, 0x1E6E6), (0x1E6EE, 0x1E6EF),
    (0x1E6F5, 0x1E6F5), (0x1E6FF, 0x1E6FF),
];

fn case_properties_differ(c: char) -> bool {
    let cp = c as u32;
    cp >= 0x295
        && CASE_PROPERTIES_DIFFER
            .iter()
            .any(|&(a, b)| (a..=b).contains(&cp))
}

/// Unicode's Cased property as of 14.0.
fn py_cased(c: char) -> bool {
    match c {
        '\u{295}' => true,
        _ if case_properties_differ(c) => false,
        // Cased = Lowercase + Uppercase + the title-case letters (Lt)
        _ => {
            c.is_lowercase()
                || c.is_uppercase()
                || matches!(c, '\u{1c5}' | '\u{1c8}' | '\u{1cb}' | '\u{1f2}' | '\u{1f88}'..='\u{1f8f}'
                    | '\u{1f98}'..='\u{1f9f}' | '\u{1fa8}'..='\u{1faf}' | '\u{1fbc}' | '\u{1fcc}' | '\u{1ffc}')
        }
    }
}

/// Unicode's Case_Ignorable property as of 14.0.
fn py_case_ignorable(c: char) -> bool {
    // std keeps its Case_Ignorable table private, but its final-sigma rule
    // shows it: a Σ after `x c` is final iff c is skipped (ignorable) and x
    // is cased, or c is not skipped and is cased itself.
    let sigma_is_final_after =
        |x: char| format!("{x}{c}\u{3a3}").to_lowercase().ends_with('\u{3c2}');
    match c {
        '\u{1171e}' => true,
        _ if case_properties_differ(c) => false,
        _ if py_cased(c) => !sigma_is_final_after(' '),
        _ => sigma_is_final_after('b'),
    }
}

/// Unicode's Final_Sigma condition for the Σ at `i`: a cased letter before
/// it and none after it, skipping case-ignorable characters both ways.
fn is_final_sigma(chars: &[char], i: usize) -> bool {
    fn cased_next<'a>(mut it: impl Iterator<Item = &'a char>) -> bool {
        it.find(|&&c| !py_case_ignorable(c))
            .is_some_and(|&c| py_cased(c))
    }
    cased_next(chars[..i].iter().rev()) && !cased_next(chars[i + 1..].iter())
}

/// Python `s.lower()`: full case mapping, with the final-sigma rule.
pub fn lower(s: &str) -> String {
    // Without the characters whose properties changed, Rust's rules are Python's.
    if !s.chars().any(case_properties_differ) {
        return s.to_lowercase();
    }
    let chars: Vec<char> = s.chars().collect();
    let mut out = String::with_capacity(s.len());
    for (i, &c) in chars.iter().enumerate() {
        if c == '\u{3a3}' {
            out.push(if is_final_sigma(&chars, i) {
                '\u{3c2}'
            } else {
                '\u{3c3}'
            });
        } else if lower_is_identity_in_py(c) {
            out.push(c);
        } else {
            out.extend(c.to_lowercase());
        }
    }
    out
}

fn push_upper(out: &mut String, c: char) {
    if upper_is_identity_in_py(c) {
        out.push(c);
    } else {
        out.extend(c.to_uppercase());
    }
}

/// Python `s.upper()` (full case mapping, no context rules).
pub fn upper(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        push_upper(&mut out, c);
    }
    out
}

/// Python's title-case mapping of one character (used by `capitalize`), where
/// it differs from the upper-case mapping; `None` means "same as upper".
fn title_if_not_upper(c: char) -> Option<String> {
    let one = |x: u32| char::from_u32(x).map(String::from);
    let cp = c as u32;
    match cp {
        // ß and the Latin, Armenian ligatures: capital first, small rest
        0xdf => Some("Ss".into()),
        0xfb00 => Some("Ff".into()),
        0xfb01 => Some("Fi".into()),
        0xfb02 => Some("Fl".into()),
        0xfb03 => Some("Ffi".into()),
        0xfb04 => Some("Ffl".into()),
        0xfb05 | 0xfb06 => Some("St".into()),
        0x587 => Some("\u{535}\u{582}".into()),
        0xfb13 => Some("\u{544}\u{576}".into()),
        0xfb14 => Some("\u{544}\u{565}".into()),
        0xfb15 => Some("\u{544}\u{56b}".into()),
        0xfb16 => Some("\u{54e}\u{576}".into()),
        0xfb17 => Some("\u{544}\u{56d}".into()),
        // DŽ Dž dž, LJ Lj lj, NJ Nj nj -> the middle (title-case) form
        0x1c4..=0x1c6 => one(0x1c5),
        0x1c7..=0x1c9 => one(0x1c8),
        0x1ca..=0x1cc => one(0x1cb),
        0x1f1..=0x1f3 => one(0x1f2),
        // Georgian Mkhedruli letters are their own title case
        0x10d0..=0x10fa | 0x10fd..=0x10ff => Some(c.into()),
        // Greek with ypogegrammeni: title case keeps a prosgegrammeni letter
        0x1f80..=0x1faf => one(cp | 0x8),
        0x1fb3 | 0x1fbc => one(0x1fbc),
        0x1fc3 | 0x1fcc => one(0x1fcc),
        0x1ff3 | 0x1ffc => one(0x1ffc),
        0x1fb2 => Some("\u{1fba}\u{345}".into()),
        0x1fb4 => Some("\u{386}\u{345}".into()),
        0x1fb7 => Some("\u{391}\u{342}\u{345}".into()),
        0x1fc2 => Some("\u{1fca}\u{345}".into()),
        0x1fc4 => Some("\u{389}\u{345}".into()),
        0x1fc7 => Some("\u{397}\u{342}\u{345}".into()),
        0x1ff2 => Some("\u{1ffa}\u{345}".into()),
        0x1ff4 => Some("\u{38f}\u{345}".into()),
        0x1ff7 => Some("\u{3a9}\u{342}\u{345}".into()),
        _ => None,
    }
}

/// Python `s.capitalize()`: the first character in title case, the rest
/// lowered (with the first character still counting as context for the
/// final-sigma rule, as in CPython).
pub fn capitalize(s: &str) -> String {
    let Some(first) = s.chars().next() else {
        return String::new();
    };
    let mut out = match title_if_not_upper(first) {
        Some(t) => t,
        None => {
            let mut t = String::new();
            push_upper(&mut t, first);
            t
        }
    };
    let lowered = lower(s);
    let first_lowered = lower(&s[..first.len_utf8()]);
    out.push_str(
        lowered
            .strip_prefix(first_lowered.as_str())
            .unwrap_or(&lowered),
    );
    out
}

/// Does `c` match the pattern letter `lit` (ASCII lower case) under
/// `re.IGNORECASE`? Besides both ASCII cases, Python also accepts the
/// characters whose simple lower case is the letter (İ -> i, K KELVIN -> k)
/// and its listed equivalents (ı ~ i, ſ ~ s).
pub fn ci_eq(c: char, lit: char) -> bool {
    c.to_ascii_lowercase() == lit
        || match lit {
            'i' => c == '\u{130}' || c == '\u{131}',
            's' => c == '\u{17f}',
            'k' => c == '\u{212a}',
            _ => false,
        }
}

/// Does the IGNORECASE literal `lit` match `chars` starting at `at`?
pub fn ci_at(chars: &[char], at: usize, lit: &str) -> bool {
    let mut i = at;
    for l in lit.chars() {
        match chars.get(i) {
            Some(&c) if ci_eq(c, l) => i += 1,
            _ => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slicing_like_python() {
        assert_eq!(slice("abcdef", Some(-2), Some(-1)), "e");
        assert_eq!(slice("a", Some(-2), Some(-1)), "");
        assert_eq!(tail("ab", 5), "ab");
        assert_eq!(drop_end("ab", 5), "");
        assert_eq!(drop_end("₹500s", 1), "₹500");
        assert_eq!(head("₹5", 1), "₹");
        assert_eq!(from("₹5", 1), "5");
    }

    /// The tables above compare Unicode 14.0 with Rust's own Unicode version;
    /// a toolchain with other tables needs them derived again.
    #[test]
    fn unicode_tables_match_this_toolchain() {
        assert_eq!(
            char::UNICODE_VERSION,
            (17, 0, 0),
            "re-derive the Unicode 14.0 differences"
        );
    }

    #[test]
    fn case_like_python() {
        assert_eq!(upper("straße"), "STRASSE");
        assert_eq!(capitalize("ßa"), "Ssa");
        assert_eq!(capitalize("ǆemal"), "ǅemal");
        assert_eq!(capitalize("ΑΣ"), "Ας");
        assert_eq!(lower("İ"), "i\u{307}");
        assert_eq!(capitalize(""), "");
    }
}
