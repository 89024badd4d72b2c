//! `ethos eval` on the real default model against independent implementations, on the same
//! prompts and the same dequantized f32 weights:
//! - CulturalBench Easy and Hard (first 100 questions) against lm-evaluation-harness' HF
//!   backend (`tests/ref/make_culturalbench_lmeval_refs.py`);
//! - NormAd log-prob mode (100 fixed stories, four conditions) against HF transformers
//!   (`tests/ref/make_normad_hf_refs.py`).
//!
//! Locally these skip with a message when the model is absent; CI fetches it and requires them.

mod common;

use common::*;
use ethos::evals::benchmarks;
use ethos::evals::log::ItemRecord;
use ethos::evals::RunOptions;
use ethos::model::{loader, DType, LoadOptions, Model, ModelSpec};

const TOL: f64 = 2e-3;

fn load_f32() -> Option<Model> {
    let path = smollm2_path()?;
    Some(
        loader::load(
            &ModelSpec::Gguf(path),
            &LoadOptions {
                dtype: Some(DType::F32),
                ..Default::default()
            },
        )
        .unwrap(),
    )
}

fn run(
    model: &Model,
    bench: &str,
    data: Option<&std::path::Path>,
    conditions: &[&str],
    limit: Option<usize>,
) -> (Vec<ItemRecord>, serde_json::Value) {
    let loaded = benchmarks::load(bench, data).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let opts = RunOptions {
        conditions: conditions.iter().map(|s| s.to_string()).collect(),
        formats: loaded.bench.default_formats(),
        limit,
        seed: 0,
        output: dir.path().to_path_buf(),
        batch: 16,
        progress: false,
        steering: None,
    };
    let res = ethos::evals::run(
        &mut ethos::steer::Session::new(model),
        loaded.bench.as_ref(),
        &loaded.dataset_sha256,
        &opts,
    )
    .unwrap();
    let text = std::fs::read_to_string(dir.path().join("items.jsonl")).unwrap();
    let items = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (items, serde_json::to_value(&res).unwrap())
}

fn argmax(xs: &[f64]) -> usize {
    let mut b = 0;
    for (i, &x) in xs.iter().enumerate() {
        if x > xs[b] {
            b = i;
        }
    }
    b
}

#[test]
fn culturalbench_matches_lm_evaluation_harness() {
    let Some(model) = load_f32() else { return };
    let reference = read_json(&fixtures().join("culturalbench/lmeval_harness_100.json"));
    let n = reference["questions"].as_u64().unwrap() as usize;
    let (items, results) = run(&model, "culturalbench", None, &["easy", "hard"], Some(n));
    let (mut max_diff, mut easy_agree, mut easy_n, mut easy_ok, mut ref_easy_ok) =
        (0f64, 0, 0, 0, 0);
    let (mut row_agree, mut rows, mut row_ok, mut ref_row_ok) = (0, 0, 0, 0);
    for it in &items {
        let lp = &it.judgement.option_logprobs;
        if it.condition == "easy" {
            let ours: Vec<f64> = ["A", "B", "C", "D"]
                .iter()
                .map(|l| lp[*l].as_f64().unwrap())
                .collect();
            let theirs: Vec<f64> = reference["easy"][&it.id]
                .as_array()
                .unwrap_or_else(|| panic!("question {} has no reference", it.id))
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect();
            for (a, b) in ours.iter().zip(&theirs) {
                max_diff = max_diff.max((a - b).abs());
            }
            let gold = (it.judgement.gold.as_bytes()[0] - b'A') as usize;
            easy_agree += (argmax(&ours) == argmax(&theirs)) as usize;
            easy_ok += it.judgement.correct as usize;
            ref_easy_ok += (argmax(&theirs) == gold) as usize;
            easy_n += 1;
        } else {
            let theirs = reference["hard"][&it.id].as_array().unwrap();
            for (k, row) in theirs.iter().enumerate() {
                let key = ["A", "B", "C", "D"][k];
                let ours = [
                    lp[key]["False"].as_f64().unwrap(),
                    lp[key]["True"].as_f64().unwrap(),
                ];
                let th = [row[0].as_f64().unwrap(), row[1].as_f64().unwrap()];
                for (a, b) in ours.iter().zip(&th) {
                    max_diff = max_diff.max((a - b).abs());
                }
                let gold_true = it.judgement.gold.as_bytes()[k] == b'T';
                row_agree += (argmax(&ours) == argmax(&th)) as usize;
                row_ok += ((ours[1] > ours[0]) == gold_true) as usize;
                ref_row_ok += ((th[1] > th[0]) == gold_true) as usize;
                rows += 1;
            }
        }
    }
    eprintln!("culturalbench vs lm-eval: {easy_n} Easy questions, {rows} Hard rows, max |diff| {max_diff:.2e}");
    assert_eq!((easy_n, rows), (n, 4 * n));
    assert!(
        max_diff < TOL,
        "option log-likelihoods differ by {max_diff}"
    );
    assert!(
        easy_agree as f64 >= 0.99 * easy_n as f64,
        "{easy_agree}/{easy_n}"
    );
    assert!(row_agree as f64 >= 0.99 * rows as f64, "{row_agree}/{rows}");
    // Accuracy within 0.5 points: Easy per question, Hard per row as lm-eval's YAML computes it.
    let acc = |ok: usize, n: usize| 100.0 * ok as f64 / n as f64;
    assert!((acc(easy_ok, easy_n) - acc(ref_easy_ok, easy_n)).abs() <= 0.5);
    assert!((acc(row_ok, rows) - acc(ref_row_ok, rows)).abs() <= 0.5);
    let lm_easy = reference["metrics"]["cultural_bench_easy_local"]["acc,none"]
        .as_f64()
        .unwrap();
    let lm_hard = reference["metrics"]["cultural_bench_hard_local"]["acc,none"]
        .as_f64()
        .unwrap();
    assert!(
        (acc(easy_ok, easy_n) - 100.0 * lm_easy).abs() <= 0.5,
        "lm-eval reported {lm_easy}"
    );
    assert!(
        (acc(row_ok, rows) - 100.0 * lm_hard).abs() <= 0.5,
        "lm-eval reported {lm_hard}"
    );
    let ours_easy = results["metrics"]["easy"]["harness"]["acc"]["value"]
        .as_f64()
        .unwrap();
    assert!((100.0 * ours_easy - 100.0 * lm_easy).abs() <= 0.5);
}

#[test]
fn normad_logprob_mode_matches_transformers() {
    let Some(model) = load_f32() else { return };
    let reference = read_json(&fixtures().join("normad/hf_logprob_100.json"));
    let data = fixtures().join("normad/stories_100.csv");
    let (items, _) = run(
        &model,
        "normad",
        Some(&data),
        &["none", "country", "value", "rot"],
        None,
    );
    assert_eq!(items.len(), 400);
    let mut max_diff = 0f64;
    let mut agree = 0;
    for it in &items {
        let theirs: Vec<f64> = reference["stories"][&it.id]["logprobs"][&it.condition]
            .as_array()
            .unwrap_or_else(|| panic!("story {} {} has no reference", it.id, it.condition))
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect();
        let lp = &it.judgement.option_logprobs;
        let ours: Vec<f64> = ["Yes", "No", "Neither"]
            .iter()
            .map(|k| lp[*k].as_f64().unwrap())
            .collect();
        for (a, b) in ours.iter().zip(&theirs) {
            max_diff = max_diff.max((a - b).abs());
        }
        agree += (argmax(&ours) == argmax(&theirs)) as usize;
        assert_eq!(
            it.judgement.gold,
            reference["stories"][&it.id]["gold"].as_str().unwrap()
        );
    }
    eprintln!("normad vs transformers: 400 (story, condition) pairs, max |diff| {max_diff:.2e}, argmax agreement {agree}/400");
    assert!(max_diff < TOL, "{max_diff}");
    assert_eq!(agree, 400);
}
