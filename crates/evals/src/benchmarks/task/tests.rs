use super::*;
use crate::benchmark::{Answer, Benchmark};
use std::path::{Path, PathBuf};

/// A folder holding `task.yaml` (the given text) and `data.jsonl` (the given rows).
fn task_dir(yaml: &str, rows: &[&str]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("data.jsonl"), rows.join("\n")).unwrap();
    let path = dir.path().join("task.yaml");
    std::fs::write(&path, yaml).unwrap();
    (dir, path)
}

const ROWS: &[&str] = &[
    r#"{"q": "one", "opts": ["x", "y"], "gold": 0}"#,
    r#"{"q": "two", "opts": ["x", "y"], "gold": 1}"#,
    r#"{"q": "three", "opts": ["x", "y"], "gold": 1}"#,
];

const BASE: &str = "task: t\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    test: data.jsonl\ntest_split: test\noutput_type: multiple_choice\ndoc_to_text: \"Q: {{q}}\\nA:\"\ndoc_to_choice: opts\ndoc_to_target: gold\n";

fn error_of(yaml: &str) -> String {
    let (_dir, path) = task_dir(yaml, ROWS);
    match Task::load(&path) {
        Ok(_) => panic!("loaded: {yaml}"),
        Err(e) => {
            // The line the CLI prints: the error and its causes.
            let mut s = e.to_string();
            let mut cause = std::error::Error::source(&e);
            while let Some(c) = cause {
                s.push_str(&format!(": {c}"));
                cause = c.source();
            }
            assert!(!s.contains('\n'), "one line: {s}");
            s
        }
    }
}

#[test]
fn a_multiple_choice_task_builds_lm_eval_prompts_and_judges_by_index() {
    let (_dir, path) = task_dir(BASE, ROWS);
    let t = Task::load(&path).unwrap();
    assert_eq!(t.name(), "t");
    assert_eq!(t.item_count(), 3);
    assert_eq!(t.context(1), "Q: two\nA:");
    assert_eq!(t.continuations(1), [" x", " y"]);
    let p = t.prompts(1, "default", "harness", false).unwrap();
    let j = t
        .judge(
            1,
            "default",
            "harness",
            &p,
            &[Answer::Options(vec![-2.0, -1.0])],
        )
        .unwrap();
    assert!(j.correct);
    assert_eq!((j.prediction.as_str(), j.gold.as_str()), ("y", "y"));
    // acc_norm divides by the choice's length in characters (lm-eval's completion_len).
    let j = t
        .judge(
            0,
            "default",
            "harness",
            &p,
            &[Answer::Options(vec![-1.0, -1.5])],
        )
        .unwrap();
    assert_eq!((j.correct, j.correct_norm), (true, Some(true)));
}

#[test]
fn few_shot_examples_follow_the_first_n_sampler_and_leave_the_item_out() {
    let yaml = format!(
        "{BASE}num_fewshot: 1\nfewshot_split: test\nfewshot_config:\n  sampler: first_n\ndescription: \"D\\n\\n\"\n"
    );
    let (_dir, path) = task_dir(&yaml, ROWS);
    let t = Task::load(&path).unwrap();
    // The first document is the example of every other item; its own example is the second.
    assert_eq!(t.context(0), "D\n\nQ: two\nA: y\n\nQ: one\nA:");
    assert_eq!(t.context(2), "D\n\nQ: one\nA: x\n\nQ: three\nA:");
}

#[test]
fn random_few_shot_examples_are_drawn_as_python_draws_them() {
    // random.Random(1234).sample(range(3), 2) is [2, 1], then [0, 1] (one generator in item
    // order); the item itself is dropped and the first one kept.
    let yaml = format!("{BASE}num_fewshot: 1\nfewshot_split: test\n");
    let (_dir, path) = task_dir(&yaml, ROWS);
    let t = Task::load(&path).unwrap();
    let mut r = crate::pyrandom::PyRandom::new(1234);
    let first = r.sample(3, 2);
    let expected = if first[0] == 0 { first[1] } else { first[0] };
    let q = ["one", "two", "three"][expected];
    let a = ["x", "y", "y"][expected];
    assert!(
        t.context(0).starts_with(&format!("Q: {q}\nA: {a}\n\n")),
        "{}",
        t.context(0)
    );
}

#[test]
fn generate_until_cuts_at_stops_filters_and_matches_exactly() {
    let yaml = "task: g\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    test: data.jsonl\ntest_split: test\noutput_type: generate_until\ndoc_to_text: \"{{q}}\"\ndoc_to_target: \"{{a}}\"\ngeneration_kwargs:\n  until: [\"\\n\\n\"]\n  max_gen_toks: 32\nfilter_list:\n  - name: strict\n    filter:\n      - function: regex\n        regex_pattern: \"#### (\\\\-?[0-9\\\\.\\\\,]+)\"\n      - function: take_first\nmetric_list:\n  - metric: exact_match\n    ignore_case: true\n";
    let (_dir, path) = task_dir(yaml, &[r#"{"q": "2+2?", "a": "4"}"#]);
    let t = Task::load(&path).unwrap();
    let p = t.prompts(0, "default", "harness", false).unwrap();
    assert_eq!(
        p[0].ask,
        Ask::Generate {
            max_tokens: 32,
            stop: vec!["\n\n".to_string()]
        }
    );
    let judge = |text: &str| {
        t.judge(0, "default", "harness", &p, &[Answer::Text(text.into())])
            .unwrap()
    };
    assert!(judge("so #### 4\n\n#### 5").correct);
    let j = judge("no number");
    assert_eq!((j.correct, j.prediction.as_str()), (false, "[invalid]"));
}

#[test]
fn include_merges_a_base_file_under_the_task() {
    let (dir, _) = task_dir(BASE, ROWS);
    let path = dir.path().join("child.yaml");
    std::fs::write(
        &path,
        "include: task.yaml\ntask: child\ntarget_delimiter: \"\"\n",
    )
    .unwrap();
    let t = Task::load(&path).unwrap();
    assert_eq!(t.name(), "child");
    assert_eq!(t.continuations(0), ["x", "y"]);
    // The included file is part of the run's identity: editing it changes the hash.
    let before = t.sha256();
    std::fs::write(
        dir.path().join("task.yaml"),
        BASE.replace("Q: ", "Question: "),
    )
    .unwrap();
    assert_ne!(Task::load(&path).unwrap().sha256(), before);
}

#[test]
fn unsupported_keys_are_named() {
    let e = error_of(&format!("{BASE}process_results: foo\n"));
    assert!(e.contains("key `process_results` is not supported"), "{e}");
    let e = error_of(&format!(
        "{BASE}process_docs: !function utils.process_docs\n"
    ));
    assert!(
        e.contains("`process_docs` is `!function utils.process_docs`"),
        "{e}"
    );
    let e = error_of(&format!("{BASE}dataset_kwargs_x: 1\n"));
    assert!(e.contains("`dataset_kwargs_x`"), "{e}");
    let e = error_of(&BASE.replace("  data_files:", "  trust_remote_code: true\n  data_files:"));
    assert!(e.contains("`dataset_kwargs.trust_remote_code`"), "{e}");
    let e = error_of(&format!("{BASE}metric_list:\n  - metric: f1\n"));
    assert!(e.contains("metric `f1` is not supported"), "{e}");
    let e = error_of(&format!("{BASE}fewshot_config:\n  sampler: balanced\n"));
    assert!(e.contains("`fewshot_config.sampler`"), "{e}");
}

#[test]
fn data_that_is_not_local_or_missing_is_named() {
    let e = error_of(&BASE.replace("dataset_path: json", "dataset_path: allenai/ai2_arc"));
    assert!(
        e.contains("`dataset_path: allenai/ai2_arc` is not local data"),
        "{e}"
    );
    let e = error_of(&BASE.replace("dataset_path: json", "dataset_path: arrow"));
    assert!(e.contains("`dataset_path: arrow`: ethos reads json"), "{e}");
    let e = error_of(&BASE.replace("dataset_path: json", "dataset_path: parquet"));
    assert!(
        e.contains("data.jsonl: not Parquet data ethos can read"),
        "{e}"
    );
    let e = error_of(&BASE.replace("test: data.jsonl", "test: nope.jsonl"));
    assert!(e.contains("nope.jsonl: cannot read"), "{e}");
    let e = error_of(&BASE.replace("test_split: test", "test_split: other"));
    assert!(
        e.contains("`test_split`: split `other` has no data files"),
        "{e}"
    );
    let e = error_of(&format!("{BASE}num_fewshot: 3\nfewshot_split: test\n"));
    assert!(e.contains("`num_fewshot: 3` needs 4 documents"), "{e}");
}

#[test]
fn template_errors_name_the_item_and_key() {
    let e = error_of(&BASE.replace("{{q}}", "{{question}}"));
    assert!(e.contains("item 0") && e.contains("`doc_to_text`"), "{e}");
    let e = error_of(&BASE.replace(
        "doc_to_target: gold",
        "doc_to_target: \"{{ opts.index('z') }}\"",
    ));
    assert!(
        e.contains("`doc_to_target`") && e.contains("not in list"),
        "{e}"
    );
    let e = error_of(&BASE.replace("doc_to_choice: opts", "doc_to_choice: \"{{q}}\""));
    assert!(
        e.contains("`doc_to_choice`") && e.contains("not a list"),
        "{e}"
    );
}

#[test]
fn generation_settings_ethos_cannot_honour_are_refused() {
    let e = error_of(&format!("{BASE}generation_kwargs:\n  do_sample: true\n"));
    assert!(
        e.contains("`generation_kwargs.do_sample: true` is not supported"),
        "{e}"
    );
    let e = error_of(&format!("{BASE}repeats: 5\n"));
    assert!(e.contains("`repeats`"), "{e}");
}

/// A Parquet file cut short or with damaged pages: an error naming the file, never a crash.
#[test]
fn damaged_parquet_is_named() {
    let good = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures/tasks/data/yue_arc_c_test.parquet"),
    )
    .unwrap();
    let yaml = BASE
        .replace("dataset_path: json", "dataset_path: parquet")
        .replace("data.jsonl", "data.parquet");
    let mut damaged = vec![good[..good.len() / 2].to_vec()];
    // The pages' bytes overwritten, the footer (schema and offsets) kept.
    for fill in [0u8, 0xff] {
        let mut d = good.clone();
        let end = d.len().saturating_sub(600);
        for b in &mut d[8..end] {
            *b = fill;
        }
        damaged.push(d);
    }
    for bytes in damaged {
        let (dir, path) = task_dir(&yaml, &[]);
        std::fs::write(dir.path().join("data.parquet"), bytes).unwrap();
        let e = match Task::load(&path) {
            Ok(_) => panic!("damaged Parquet loaded"),
            Err(e) => e.to_string(),
        };
        assert!(
            e.contains("data.parquet: not Parquet data ethos can read"),
            "{e}"
        );
        assert!(!e.contains('\n'), "{e}");
    }
}
