//! Control vectors on the real default model: a vector trained on value-contrast pairs
//! (`examples/data/acceptance_pairs.jsonl`: "is it socially acceptable to ...?" answered
//! "Yes, that is perfectly fine." against "No, that is rude.") moves NormAd's log-prob
//! answers towards "Yes" with a positive scale and towards "No" with a negative one, more
//! with a larger scale. Locally this skips when the model is absent; CI requires it.

mod common;

use common::*;
use ethos::evals::{benchmarks, RunOptions};
use ethos::model::{loader, LoadOptions, ModelSpec};
use ethos::steer::control::ControlSet;
use ethos::steer::vectors::{train, Method, Pair};

#[test]
fn a_trained_vector_moves_normad_answers_in_its_direction() {
    let Some(path) = smollm2_path() else { return };
    let model = loader::load(&ModelSpec::Gguf(path), &LoadOptions::default()).unwrap();
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("examples/data/acceptance_pairs.jsonl"),
    )
    .unwrap();
    let pairs: Vec<Pair> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let cv_path = dir.path().join("accept.gguf");
    for method in [Method::Mean, Method::Pca] {
        let cv = train(&model, &pairs, 6..=14, method).unwrap();
        assert_eq!(cv.directions.len(), 9);
        cv.write(&cv_path).unwrap();
        let loaded = benchmarks::load("normad", None).unwrap();
        let mut log_odds = Vec::new();
        for scale in [-3.0f32, 0.0, 3.0] {
            let c = model.config();
            let set = ControlSet::load(
                &[(cv_path.clone(), scale)],
                None,
                c.hidden_size,
                c.num_layers,
            )
            .unwrap();
            let mut session = ethos::steer::Session::new(&model)
                .with_control(Some(&set))
                .unwrap();
            let out = dir.path().join(format!("run-{method:?}-{scale}"));
            let opts = RunOptions {
                conditions: vec!["none".into()],
                formats: vec!["logprob".into()],
                limit: Some(12),
                seed: 0,
                output: out.clone(),
                batch: 16,
                progress: false,
                steering: Some(serde_json::json!({"scale": scale})),
            };
            ethos::evals::run(
                &mut session,
                loaded.bench.as_ref(),
                &loaded.dataset_sha256,
                &opts,
            )
            .unwrap();
            let items = std::fs::read_to_string(out.join("items.jsonl")).unwrap();
            let lo: Vec<f64> = items
                .lines()
                .map(|l| {
                    let v: serde_json::Value = serde_json::from_str(l).unwrap();
                    v["option_logprobs"]["Yes"].as_f64().unwrap()
                        - v["option_logprobs"]["No"].as_f64().unwrap()
                })
                .collect();
            log_odds.push(lo.iter().sum::<f64>() / lo.len() as f64);
        }
        eprintln!("{method:?}: mean log P(Yes) - log P(No) at scales -3, 0, 3: {log_odds:?}");
        assert!(
            log_odds[0] < log_odds[1] - 0.1 && log_odds[1] + 0.1 < log_odds[2],
            "{method:?}: {log_odds:?}"
        );
    }
}
