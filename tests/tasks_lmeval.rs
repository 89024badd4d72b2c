//! `ethos eval --task` against lm-evaluation-harness 0.4.13 on four of its own task YAMLs
//! (tests/fixtures/tasks: cultural_bench Easy, ARC-Easy over Yue-ARC-C, the 3-shot JNLI over
//! synthetic pairs, and arc_challenge_chat, a generate_until task with `gen_prefix`, over
//! Yue-ARC-C as Parquet), each plain (`harness`) and as `--apply_chat_template` builds it
//! (`chat`), from `tests/ref/make_task_lmeval_refs.py`:
//! - the prompts: every plain context and continuation is the string lm-eval built (no model);
//! - on the real default model dequantized to f32: chat prompts are the strings lm-eval
//!   built with the model's template; each option's log-likelihood is lm-eval's HF backend's
//!   within 1e-4 per continuation token, and acc and acc_norm are lm-eval's; greedy
//!   generations, their filtered answers and exact_match are lm-eval's (skips locally without
//!   the model; CI requires it).

mod common;

use common::*;
use ethos::evals::benchmarks::task::docs::Splits;
use ethos::evals::benchmarks::task::Task;
use ethos::evals::encoding::{prompt_text, TextEncoder};
use ethos::evals::{Ask, RunOptions};
use ethos::model::{loader, DType, LoadOptions, ModelSpec};
use serde_json::Value;

const PER_TOKEN_TOL: f64 = 1e-4;

fn refs() -> Value {
    read_json(&fixtures().join("tasks/lmeval_refs.json"))
}

fn strings(v: &Value) -> Vec<&str> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect()
}

#[test]
fn task_prompts_are_the_requests_lm_evaluation_harness_builds() {
    let refs = refs();
    let mut formats = std::collections::BTreeSet::new();
    for (key, r) in refs["tasks"].as_object().unwrap() {
        formats.insert(r["format"].as_str().unwrap());
        if r["format"] != "harness" {
            continue; // chat prompts need the model's template: the next test
        }
        let task = Task::load(&fixtures().join("tasks").join(r["file"].as_str().unwrap())).unwrap();
        let docs = r["docs"].as_array().unwrap();
        assert!(!docs.is_empty());
        for d in docs {
            let i = d["doc_id"].as_u64().unwrap() as usize;
            assert_eq!(
                task.context(i),
                d["context"].as_str().unwrap(),
                "{key} doc {i}"
            );
            if let Some(c) = d.get("continuations") {
                assert_eq!(task.continuations(i), strings(c), "{key} doc {i}");
            }
        }
        eprintln!("{key}: {} prompts as lm-eval builds them", docs.len());
    }
    assert_eq!(formats.into_iter().collect::<Vec<_>>(), ["chat", "harness"]);
}

/// `datasets` reads the Parquet files as the JSON Lines they were written from.
#[test]
fn parquet_task_data_is_read_as_its_json_lines() {
    let load = |builder: &str, ext: &str| {
        let files = ethos::evals::benchmarks::task::config::DataFiles {
            builder: builder.to_string(),
            splits: ["train", "validation", "test"]
                .iter()
                .map(|s| {
                    let f = fixtures().join(format!("tasks/data/yue_arc_c_{s}.{ext}"));
                    (s.to_string(), vec![f])
                })
                .collect(),
            field: None,
        };
        Splits::load(&files).unwrap()
    };
    let (parquet, json) = (load("parquet", "parquet"), load("json", "jsonl"));
    assert_eq!(parquet.features, json.features);
    assert_eq!(parquet.splits, json.splits);
    assert_eq!(parquet.get("test").len(), 40);
}

#[test]
fn task_answers_match_lm_evaluation_harness() {
    let Some(path) = smollm2_path() else { return };
    let model = loader::load(
        &ModelSpec::Gguf(path),
        &LoadOptions {
            dtype: Some(DType::F32),
            ..Default::default()
        },
    )
    .unwrap();
    let tok = model.tokenizer().unwrap();
    let refs = refs();
    for (key, r) in refs["tasks"].as_object().unwrap() {
        let file = fixtures().join("tasks").join(r["file"].as_str().unwrap());
        let format = r["format"].as_str().unwrap();
        let started = std::time::Instant::now();
        let loaded = ethos::evals::benchmarks::load_task(&file).unwrap();
        let bench = loaded.bench.as_ref();
        let dir = tempfile::tempdir().unwrap();
        let opts = RunOptions {
            conditions: vec!["default".into()],
            formats: vec![format.to_string()],
            limit: r["limit"].as_u64().map(|n| n as usize),
            seed: 0,
            output: dir.path().to_path_buf(),
            batch: 16,
            progress: false,
            steering: None,
        };
        let res = ethos::evals::run(
            &mut ethos::steer::Session::new(&model),
            bench,
            &loaded.dataset_sha256,
            &opts,
        )
        .unwrap();
        let text = std::fs::read_to_string(dir.path().join("items.jsonl")).unwrap();
        let items: Vec<ethos::evals::log::ItemRecord> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let (mut worst, mut worst_per_token) = (0f64, 0f64);
        let docs = r["docs"].as_array().unwrap();
        assert_eq!(items.len(), docs.len(), "{key}");
        for d in docs {
            let i = d["doc_id"].as_u64().unwrap() as usize;
            let id = i.to_string();
            let it = items.iter().find(|it| it.id == id).unwrap();
            let p = &bench.prompts(i, "default", format, true).unwrap()[0];
            let theirs = d["context"].as_str().unwrap();
            let ours = prompt_text(model.chat_template.as_ref(), p).unwrap();
            let Some(conts) = d.get("continuations") else {
                // A generation: the context as lm-eval gives it to the model, the generation
                // cut at the stop sequences, the filtered answer and exact_match.
                assert_eq!(ours.context, theirs, "{key} doc {i}");
                let generated = it.judgement.generated.as_deref().unwrap();
                assert!(
                    generated.starts_with(d["generation"].as_str().unwrap()),
                    "{key} doc {i}: {generated:?} against lm-eval's {}",
                    d["generation"]
                );
                assert_eq!(
                    it.judgement.prediction,
                    d["answer"].as_str().unwrap(),
                    "{key} doc {i}"
                );
                assert_eq!(
                    it.judgement.correct,
                    d["exact_match"].as_f64().unwrap() == 1.0,
                    "{key} doc {i}"
                );
                continue;
            };
            // lm-eval moves the context's trailing whitespace into the continuation.
            assert_eq!(ours.context, theirs.trim_end(), "{key} doc {i}");
            let Ask::Choose { options } = &p.ask else {
                panic!("{key}: a scored task")
            };
            let lps = it.judgement.option_logprobs.as_object().unwrap();
            for ((c, ll), option) in strings(conts)
                .into_iter()
                .zip(d["lls"].as_array().unwrap())
                .zip(options)
            {
                assert_eq!(
                    format!("{}{}{option}", ours.context, ours.prefix),
                    format!("{theirs}{c}"),
                    "{key} doc {i}"
                );
                let ours = lps[option.as_str()].as_f64().unwrap();
                let diff = (ours - ll.as_f64().unwrap()).abs();
                let tokens = tok.encode_text(c, false).unwrap().len().max(1) as f64;
                assert!(
                    diff <= PER_TOKEN_TOL * tokens,
                    "{key} doc {i} {c:?}: |diff| {diff:.2e} over {tokens} tokens"
                );
                worst = worst.max(diff);
                worst_per_token = worst_per_token.max(diff / tokens);
            }
        }
        let ours = &res.metrics["default"][format];
        let theirs = &r["metrics"];
        let acc = ours.acc.as_ref().unwrap().value;
        let want = theirs
            .get("acc,none")
            .or_else(|| theirs.get("exact_match,remove_whitespace"))
            .unwrap();
        assert_eq!(acc, want.as_f64().unwrap(), "{key} acc");
        if let Some(norm) = theirs.get("acc_norm,none") {
            assert_eq!(
                ours.acc_norm.as_ref().unwrap().value,
                norm.as_f64().unwrap(),
                "{key} acc_norm"
            );
        }
        eprintln!(
            "{key}: {} items, acc {acc:.3} as lm-eval's, max |diff| {worst:.2e} ({worst_per_token:.2e} per token), {:.1} s",
            docs.len(),
            started.elapsed().as_secs_f64()
        );
    }
}

/// `ethos eval yue-arc-c` asks what lm-eval's ARC task file asks of the same questions.
#[test]
fn yue_arc_c_prompts_are_lm_evaluation_harness_arc_prompts() {
    let task = Task::load(&fixtures().join("tasks/arc_easy.yaml")).unwrap();
    let loaded = ethos::evals::benchmarks::load("yue-arc-c", None).unwrap();
    let bench = loaded.bench.as_ref();
    for i in 0..40 {
        let p = &bench.prompts(i, "cantonese", "harness", false).unwrap()[0];
        assert_eq!(task.context(i), p.body, "item {i}");
        let ethos::evals::Ask::Choose { options } = &p.ask else {
            panic!("scored")
        };
        let ours: Vec<String> = options
            .iter()
            .map(|o| format!("{}{o}", p.delimiter))
            .collect();
        assert_eq!(task.continuations(i), ours, "item {i}");
    }
}
