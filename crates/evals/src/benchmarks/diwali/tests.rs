use super::matching::*;
use super::*;
use serde_json::json;

fn concepts(names: &[&str]) -> Concepts {
    let text = names.join("\n");
    Concepts::from_source(Source {
        name: "list.txt".into(),
        bytes: text.into_bytes(),
    })
    .unwrap()
}

fn entry(pairs: Value) -> Entry {
    match serde_json::from_value(json!({"cultural_adapted_text": "t", "replaced_concepts": pairs}))
        .unwrap()
    {
        crate::pyjson::PyValue::Dict(d) => d,
        _ => unreachable!(),
    }
}

/// Values from the authors' `normalize` (Python 3.11 `re`).
#[test]
fn normalize_is_the_authors() {
    for (w, n) in [
        ("₹3.5 crores", "₹35 crores"),
        (" Diwali! ", "diwali"),
        ("Crème brûlée", "crme brle"),
        ("\u{1c}a b\u{1f}", "a b"),
        ("Mother-In-Law", "motherinlaw"),
        ("ÀB\u{a0}c\u{3000}", "b\u{a0}c"),
    ] {
        assert_eq!(normalize(w), n, "{w:?}");
    }
}

/// Values from rapidfuzz 3.14 `fuzz.token_sort_ratio`.
#[test]
fn token_sort_ratio_is_rapidfuzz() {
    for (a, b, r) in [
        ("sarees", "saree", 90.9090909090909),
        ("paratha", "parathas", 93.33333333333333),
        ("new delhi", "delhi new", 100.0),
        ("gulab jamun", "Gulab Jamun", 81.81818181818181),
        ("masala chai", "chai", 53.333333333333336),
        ("a  b", "b a", 100.0),
        ("kurta pyjama", "kurta", 58.82352941176471),
        ("rangoli", "Rangoli", 85.71428571428572),
        ("dosa", "idli dosa", 61.53846153846154),
        ("anda", "mandap", 80.0),
    ] {
        assert_eq!(token_sort_ratio(a, b), r, "{a} | {b}");
    }
    // The fuzzy step's best name, as `process.extractOne` finds it.
    let c = concepts(&["mandal", "mandap", "anda bhurji"]);
    assert_eq!(c.best("anda"), Some(("mandal", 80.0)));
}

#[test]
fn output_is_taken_from_between_the_tags() {
    assert_eq!(extract_output(" x <output> [1] </output> y"), "[1]");
    assert_eq!(extract_output("  [1]\n"), "[1]");
    assert_eq!(extract_output("<output>[1]"), "<output>[1]");
    // The closing tag first: Python's slice is empty.
    assert_eq!(extract_output("</output> <output>[1]"), "");
}

/// As the authors' `calculate_adaptation_score` scores the same entry against the same list.
#[test]
fn the_three_steps_and_the_authors_double_count() {
    let c = concepts(&["saree", "laddoo", "Holi"]);
    let e = entry(json!({
        "robe": "Saree!", "dress": "sarees", "cake": "ladoos", "party": "holi",
        "same": "same", "gone": "", "none": null,
    }));
    let s = score_entry(&e, &c).unwrap();
    assert_eq!(s.replaced_words, ["holi", "ladoos", "saree", "sarees"]);
    assert_eq!(s.strict_matches, ["saree"]);
    // "sarees" finds "saree" by its singular and then again by fuzz: the fuzzy step only
    // skips words equal to a form found, as the authors' set difference does.
    assert_eq!(s.singular_plural_matches, ["saree"]);
    // Names are compared as written: "holi" is 75 from "Holi", under the bar.
    assert_eq!(s.fuzzy_matches, ["laddoo", "saree"]);
    assert_eq!(s.total_replaced_words, 4);
    assert!(score_entry(&entry(json!({"a": "a"})), &c).is_none());
}

#[test]
fn outputs_are_read_as_the_authors_read_them() {
    let c = concepts(&["sari"]);
    let outputs = vec![
        json!("[{\"cultural_adapted_text\":\"x\",\"replaced_concepts\":{\"robe\":\"sari\"}}]"),
        json!("not json"),
        json!([{"replaced_concepts": {}}, {"replaced_concepts": {"a": 2.5}}, 3]),
        json!({"replaced_concepts": {"a": true}}),
        json!(7),
    ];
    let outputs: Vec<crate::pyjson::PyValue> = outputs
        .into_iter()
        .map(|v| serde_json::from_value(v).unwrap())
        .collect();
    let m = match_outputs(&outputs, &c);
    assert_eq!(m.unparsed, [1, 4]);
    assert_eq!(m.totals.total_sentences, 4);
    assert_eq!(m.totals.entries_with_replacements, 3);
    assert_eq!(m.totals.total_strict_matches, 1);
    // Non-string targets are printed as Python's str prints them, then normalised.
    assert_eq!(m.entries[1].1.replaced_words, ["25"]);
    assert_eq!(m.entries[2].1.replaced_words, ["true"]);
    assert_eq!(m.totals.average_strict_match_per_sentence, 0.25);
}

#[test]
fn concept_lists_in_each_format() {
    let candle = r#"[{"facet":"food","concepts":[{"name":"dosa"},{"name":""},{"name":"Idli"}]},
        {"concepts":[{"name":"skipped: no facet"}]}]"#;
    let lines = "{\"facet\":\"food\",\"concepts\":[{\"name\":\"dosa\"}]}\n\n{\"facet\":\"games\",\"concepts\":[{\"name\":\"kho kho\"}]}\n";
    let csis =
        r#"{"food":[{"state":"Kerala","name":"Appam","description":"","source":""}],"games":[]}"#;
    for (name, text, want) in [
        ("a.json", candle, vec!["dosa", "Idli"]),
        ("a.jsonl", lines, vec!["dosa", "kho kho"]),
        ("csis.json", csis, vec!["Appam"]),
        (
            "hk.txt",
            "# Hong Kong\nyum cha\n\ndim sum\nyum cha\n",
            vec!["yum cha", "dim sum"],
        ),
    ] {
        let c = Concepts::from_source(Source {
            name: name.into(),
            bytes: text.as_bytes().to_vec(),
        })
        .unwrap();
        assert_eq!(c.names, want, "{name}");
    }
    let builtin = Concepts::builtin().unwrap();
    assert_eq!(builtin.names.len(), 452);
}

#[test]
fn bad_concept_lists_and_adaptation_files_are_named() {
    let err = |name: &str, text: &str| {
        Concepts::from_source(Source {
            name: name.into(),
            bytes: text.as_bytes().to_vec(),
        })
        .err()
        .unwrap()
        .to_string()
    };
    assert_eq!(
        err("c.json", r#"[{"facet":"f","concepts":[{"name":5}]}]"#),
        "c.json: record 1: concept 1: `name` is not a string"
    );
    assert_eq!(err("c.json", "[]"), "c.json: no concept names");
    assert_eq!(
        err("c.json", "{\"facet\": 1,"),
        "c.json:1: EOF while parsing a value at line 1 column 12"
    );
    assert_eq!(
        err("c.json", r#"{"food": {"name": "x"}}"#),
        "c.json: facet `food` is not a list of items"
    );
    let e = read_adaptations(&Source {
        name: "a.json".into(),
        bytes: b"{\"x\": 1}".to_vec(),
    })
    .err()
    .unwrap()
    .to_string();
    assert!(
        e.starts_with("a.json: not a JSON list of adaptation outputs"),
        "{e}"
    );
}

#[test]
fn a_team_can_ask_for_another_culture() {
    let dir = tempfile::tempdir().unwrap();
    let system = dir.path().join("system.txt");
    std::fs::write(&system, "Adapt texts to Hong Kong culture.").unwrap();
    let user = dir.path().join("user.txt");
    std::fs::write(&user, "Adapt this to Hong Kong:\n{text}").unwrap();
    let p = AdaptationPrompts::read(Some(&system), Some(&user)).unwrap();
    let asked = p.prompt("Janet has 3 ducks.", 64);
    assert_eq!(
        asked.system.as_deref(),
        Some("Adapt texts to Hong Kong culture.")
    );
    assert_eq!(asked.body, "Adapt this to Hong Kong:\nJanet has 3 ducks.");
    // Only the system prompt: the authors' user message stays.
    let p = AdaptationPrompts::read(Some(&system), None).unwrap();
    assert!(p
        .prompt("x", 1)
        .body
        .starts_with("Adapt the following text to Indian culture"));
    std::fs::write(&user, "no placeholder").unwrap();
    let e = AdaptationPrompts::read(None, Some(&user))
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.ends_with("user.txt: a user template needs `{text}` where the text to adapt goes"),
        "{e}"
    );
    let judge_t = dir.path().join("judge.txt");
    std::fs::write(&judge_t, "Rate {adapted_text} for Hong Kong.").unwrap();
    let e = judge::read_template(&judge_t).err().unwrap().to_string();
    assert!(
        e.ends_with("judge.txt: a judge template needs `{original_text}` where that text goes"),
        "{e}"
    );
}

#[test]
fn the_adaptation_prompt_is_the_authors() {
    let p = adaptation_prompt("Janet has 3 ducks.", 512);
    assert_eq!(
        p.body,
        "Adapt the following text to Indian culture and provide the output in the specified format:\nJanet has 3 ducks."
    );
    let system = p.system.unwrap();
    assert!(system.starts_with("You are an AI assistant tasked with adapting a text"));
    assert!(system.ends_with("\"$10\":\"₹830\"}}]</output>\n"));
    assert!(p.chat);
    let texts = Texts::builtin().unwrap();
    assert_eq!(texts.questions.len(), 1319);
    assert!(texts.questions[0].starts_with("Janet\u{2019}s ducks lay 16 eggs per day."));
}

/// Values from the authors' `parse_response` over the decoded prompt and reply.
#[test]
fn judge_replies_are_read_as_the_authors_scorer_reads_them() {
    let p = judge::prompt("o", "a");
    let read = |reply: &str| judge::parse(&p, reply);
    let s = read("\nCultural Relevance: 3\nExplanation: x\nLanguage Fluency: 4.5/5\n").unwrap();
    // Mathematical Integrity keeps the prompt example's 5.
    assert_eq!(s.scores, [3.0, 4.5, 5.0]);
    assert_eq!(s.from_reply, [true, true, false]);
    let s = read("  Mathematical Integrity:  2 (of 5)\nCultural Relevance: 1.").unwrap();
    assert_eq!(s.scores, [1.0, 5.0, 2.0]);
    for reply in ["cultural relevance: 1", "Cultural Relevance : 2"] {
        let s = read(reply).unwrap();
        assert_eq!(s.scores, [5.0, 5.0, 5.0]);
        assert_eq!(s.from_reply, [false; 3]);
    }
    assert!(read("Cultural Relevance: [score]").is_err());
    assert!(read("Language Fluency: none").is_err());
}

#[test]
fn the_judge_sees_what_the_authors_scorer_takes() {
    let t = |v: Value| judge::adapted_text(&serde_json::from_value(v).unwrap());
    assert_eq!(
        t(json!(
            "[{\"cultural_adapted_text\":\"  x \",\"replaced_concepts\":{}}]"
        )),
        Some("x".into())
    );
    assert_eq!(
        t(json!("[{\"replaced_concepts\":{}}]")),
        Some(String::new())
    );
    for skipped in [
        json!("[]"),
        json!("{\"cultural_adapted_text\":\"x\"}"),
        json!("no"),
        json!([1]),
        json!([{"cultural_adapted_text": null}]),
    ] {
        assert_eq!(t(skipped.clone()), None, "{skipped}");
    }
    let p = judge::prompt("Janet has 3 ducks.", "Aisha has 3 ducks.");
    assert!(p.starts_with("Consider yourself as an AI expert trained to evaluate the cultural adaptation of a given text.\n\nOriginal Text:\nJanet has 3 ducks.\n\nAdapted Text:\nAisha has 3 ducks.\n\nTarget Culture: Indian\n"));
    assert!(p.ends_with("Do not output any extra text or placeholders such as \"[score]\".\n"));
}
