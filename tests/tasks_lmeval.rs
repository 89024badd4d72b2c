//! `ethos eval --task` against lm-evaluation-harness 0.4.13 on three of its own task YAMLs
//! (tests/fixtures/tasks: cultural_bench Easy, ARC-Easy over Yue-ARC-C, the 3-shot JNLI over
//! synthetic pairs), from `tests/ref/make_task_lmeval_refs.py`:
//! - the prompts: every context and continuation is the string lm-eval built (no model);
//! - the scores: on the real default model dequantized to f32, each option's log-likelihood
//!   is lm-eval's HF backend's within 1e-4 per continuation token, and acc and acc_norm are
//!   lm-eval's (skips locally without the model; CI requires it).

mod common;

use common::*;
use ethos::evals::benchmarks::task::Task;
use ethos::evals::encoding::TextEncoder;
use ethos::evals::RunOptions;
use ethos::model::{loader, DType, LoadOptions, ModelSpec};

const PER_TOKEN_TOL: f64 = 1e-4;

fn refs() -> serde_json::Value {
    read_json(&fixtures().join("tasks/lmeval_refs.json"))
}

#[test]
fn task_prompts_are_the_requests_lm_evaluation_harness_builds() {
    let refs = refs();
    for (file, r) in refs["tasks"].as_object().unwrap() {
        let task = Task::load(&fixtures().join("tasks").join(file)).unwrap();
        let docs = r["docs"].as_array().unwrap();
        assert!(!docs.is_empty());
        for d in docs {
            let i = d["doc_id"].as_u64().unwrap() as usize;
            assert_eq!(
                task.context(i),
                d["context"].as_str().unwrap(),
                "{file} doc {i}"
            );
            let theirs: Vec<&str> = d["continuations"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c.as_str().unwrap())
                .collect();
            assert_eq!(task.continuations(i), theirs, "{file} doc {i}");
        }
        eprintln!("{file}: {} prompts as lm-eval builds them", docs.len());
    }
}

#[test]
fn task_log_likelihoods_and_accuracy_match_lm_evaluation_harness() {
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
    for (file, r) in refs["tasks"].as_object().unwrap() {
        let loaded =
            ethos::evals::benchmarks::load_task(&fixtures().join("tasks").join(file)).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let opts = RunOptions {
            conditions: vec!["default".into()],
            formats: loaded.bench.default_formats(),
            limit: r["limit"].as_u64().map(|n| n as usize),
            seed: 0,
            output: dir.path().to_path_buf(),
            batch: 16,
            progress: false,
            steering: None,
        };
        let res = ethos::evals::run(
            &mut ethos::steer::Session::new(&model),
            loaded.bench.as_ref(),
            &loaded.dataset_sha256,
            &opts,
        )
        .unwrap();
        let text = std::fs::read_to_string(dir.path().join("items.jsonl")).unwrap();
        let items: Vec<ethos::evals::log::ItemRecord> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let delimiter = Task::load(&fixtures().join("tasks").join(file))
            .unwrap()
            .config
            .target_delimiter;
        let (mut worst, mut worst_per_token) = (0f64, 0f64);
        let docs = r["docs"].as_array().unwrap();
        assert_eq!(items.len(), docs.len(), "{file}");
        for d in docs {
            let id = d["doc_id"].to_string();
            let it = items.iter().find(|it| it.id == id).unwrap();
            let lps = it.judgement.option_logprobs.as_object().unwrap();
            for (c, ll) in d["continuations"]
                .as_array()
                .unwrap()
                .iter()
                .zip(d["lls"].as_array().unwrap())
            {
                let c = c.as_str().unwrap();
                // The choice is the continuation after the target delimiter.
                let choice = c.strip_prefix(delimiter.as_str()).unwrap();
                let ours = lps[choice].as_f64().unwrap();
                let diff = (ours - ll.as_f64().unwrap()).abs();
                let tokens = tok.encode_text(c, false).unwrap().len().max(1) as f64;
                assert!(
                    diff <= PER_TOKEN_TOL * tokens,
                    "{file} doc {id} {c:?}: |diff| {diff:.2e} over {tokens} tokens"
                );
                worst = worst.max(diff);
                worst_per_token = worst_per_token.max(diff / tokens);
            }
        }
        let ours = &res.metrics["default"]["harness"];
        let theirs = &r["metrics"];
        assert_eq!(
            ours.acc.as_ref().unwrap().value,
            theirs["acc,none"].as_f64().unwrap(),
            "{file} acc"
        );
        if let Some(norm) = theirs.get("acc_norm,none") {
            assert_eq!(
                ours.acc_norm.as_ref().unwrap().value,
                norm.as_f64().unwrap(),
                "{file} acc_norm"
            );
        }
        eprintln!(
            "{file}: {} items, acc {:.3} as lm-eval's, max |diff| {worst:.2e} ({worst_per_token:.2e} per token)",
            docs.len(),
            ours.acc.as_ref().unwrap().value
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
