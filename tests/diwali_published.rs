//! DIWALI's concept matching against the authors' published numbers, without a model: the
//! two models' adaptation outputs as published give the authors' totals exactly
//! (Llama-3.1-8B 1313 sentences, 1222 with replacements, 113 strict, 31 singular/plural, 53
//! fuzzy; Mistral-7B 1275, 1264, 72, 41, 135) and, entry by entry, the same replaced words
//! and matches as the authors' score files (tests/fixtures/diwali, made by
//! tests/ref/make_diwali_fixtures.py from the authors' files).

mod common;

use common::*;
use ethos::evals::benchmarks::diwali::matching::{match_outputs, read_adaptations, Concepts};
use ethos::evals::data::Source;
use serde_json::Value;

fn unpacked(name: &str) -> Source {
    let path = fixtures().join("diwali").join(name);
    let packed = Source::read(&path).unwrap();
    Source {
        name: name.into(),
        bytes: packed.unpacked_text(16 << 20).unwrap().into_bytes(),
    }
}

fn check(model: &str, published: [usize; 5]) {
    let outputs = read_adaptations(&unpacked(&format!("{model}_gsm_8k_test.json.zst"))).unwrap();
    let m = match_outputs(&outputs, &Concepts::builtin().unwrap());
    let t = &m.totals;
    assert_eq!(
        [
            t.total_sentences,
            t.entries_with_replacements,
            t.total_strict_matches,
            t.total_singular_plural_matches,
            t.total_fuzzy_matches
        ],
        published,
        "{model}"
    );
    let text = String::from_utf8(unpacked(&format!("{model}-matches.jsonl.zst")).bytes).unwrap();
    let mut lines = text
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap());
    let stats = lines.next().unwrap()["dataset_statistics"].clone();
    assert_eq!(
        stats["average_fuzzy_match_per_sentence"].as_f64().unwrap(),
        t.average_fuzzy_match_per_sentence
    );
    assert_eq!(
        stats["average_strict_match_per_sentence"].as_f64().unwrap(),
        t.average_strict_match_per_sentence
    );
    let authors: Vec<Value> = lines.collect();
    assert_eq!(authors.len(), m.entries.len(), "{model}: scored entries");
    let mut differ = Vec::new();
    for (k, ((out, e), a)) in m.entries.iter().zip(&authors).enumerate() {
        let ours = serde_json::json!({
            "replaced_words": e.replaced_words,
            "strict_matches": e.strict_matches,
            "singular_plural_matches": e.singular_plural_matches,
            "fuzzy_matches": e.fuzzy_matches,
        });
        if &ours != a {
            differ.push(format!(
                "entry {k} (output {out}): ours {ours}, authors' {a}"
            ));
        }
    }
    assert!(
        differ.is_empty(),
        "{model}: {} entries differ:\n{}",
        differ.len(),
        differ.join("\n")
    );
}

#[test]
fn llama_3_1_8b_outputs_give_the_published_totals_entry_by_entry() {
    check("llama-3.1-8b", [1313, 1222, 113, 31, 53]);
}

#[test]
fn mistral_7b_outputs_give_the_published_totals_entry_by_entry() {
    check("mistral-7b", [1275, 1264, 72, 41, 135]);
}
