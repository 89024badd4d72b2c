//! The inflect port DIWALI's singular/plural step uses, against inflect 7.6.0 itself: every
//! row of tests/fixtures/diwali/inflect_refs.tsv.zst (inflect's answers for its own word
//! lists, DIWALI's concept names and replaced words, generated compounds, Unicode case and
//! whitespace edge cases and fuzz; made by tests/ref/make_inflect_refs.py) must match.

mod common;

use ethos::evals::benchmarks::diwali::inflect::{try_plural_noun, try_singular_noun, InflectError};
use ethos::evals::data::Source;

/// One field of refs.tsv, in the same shape as the `try_` results.
#[derive(Debug, PartialEq)]
enum Expected {
    Str(String),
    False,
    Error(String),
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('\\') => out.push('\\'),
            other => panic!("bad escape \\{other:?} in {s:?}"),
        }
    }
    out
}

fn parse(field: &str) -> Expected {
    if let Some(s) = field.strip_prefix('=') {
        Expected::Str(unescape(s))
    } else if field == "F" {
        Expected::False
    } else if let Some(e) = field.strip_prefix("E:") {
        Expected::Error(e.to_string())
    } else {
        panic!("bad field {field:?}")
    }
}

/// The Python exception each error stands for.
fn python_name(e: InflectError) -> &'static str {
    match e {
        InflectError::EmptyText => "TypeCheckError",
        InflectError::BlankWord => "IndexError",
        InflectError::RecursionLimit => "RecursionError",
    }
}

fn got_plural(input: &str) -> Expected {
    match try_plural_noun(input) {
        Ok(s) => Expected::Str(s),
        Err(e) => Expected::Error(python_name(e).to_string()),
    }
}

fn got_singular(input: &str) -> Expected {
    match try_singular_noun(input) {
        Ok(Some(s)) => Expected::Str(s),
        Ok(None) => Expected::False,
        Err(e) => Expected::Error(python_name(e).to_string()),
    }
}

fn shorten(e: &Expected) -> String {
    let s = format!("{e:?}");
    if s.chars().count() > 120 {
        s.chars().take(117).collect::<String>() + "..."
    } else {
        s
    }
}

#[test]
fn every_reference_row_matches() {
    // ETHOS_INFLECT_REFS names another reference file (`make_inflect_refs.py --full`'s).
    let path = std::env::var_os("ETHOS_INFLECT_REFS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| common::fixtures().join("diwali/inflect_refs.tsv.zst"));
    let text = Source::read(&path)
        .unwrap()
        .unpacked_text(64 << 20)
        .unwrap();
    let mut rows = 0;
    let mut mismatches = Vec::new();
    for line in text.split('\n').filter(|l| !l.is_empty()) {
        let fields: Vec<&str> = line.split('\t').collect();
        assert_eq!(fields.len(), 3, "bad row {line:?}");
        let Expected::Str(input) = parse(fields[0]) else {
            panic!("bad input in {line:?}")
        };
        rows += 1;
        for (func, expected, got) in [
            ("plural_noun", parse(fields[1]), got_plural(&input)),
            ("singular_noun", parse(fields[2]), got_singular(&input)),
        ] {
            if expected != got {
                mismatches.push(format!(
                    "{func}({}): expected {}, got {}",
                    shorten(&Expected::Str(input.clone())),
                    shorten(&expected),
                    shorten(&got)
                ));
            }
        }
    }
    println!("{rows} reference rows, {} mismatches", mismatches.len());
    for m in mismatches.iter().take(30) {
        println!("  {m}");
    }
    assert!(
        rows > 60_000,
        "{rows} rows in {}: cut short",
        path.display()
    );
    assert!(
        mismatches.is_empty(),
        "{} of {rows} rows differ from inflect (first 30 above)",
        mismatches.len()
    );
}
