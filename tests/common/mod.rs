//! Helpers shared by the integration tests.
#![allow(dead_code)]

use ethos::model::Decoder;
use std::path::{Path, PathBuf};

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

pub fn read_json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Logits at every position of one sequence, run alone: `[t][vocab]`.
pub fn all_logits(d: &Decoder, ids: &[u32]) -> Vec<Vec<f32>> {
    let mut cache = d.new_cache(1, ids.len()).unwrap();
    let pos: Vec<i32> = (0..ids.len() as i32).collect();
    d.forward_all(&[ids.to_vec()], &[pos], &mut cache, None)
        .unwrap()
        .single_row()
        .unwrap()
}

/// Logits at every position of one sequence, decoded through the cache: a prefill of the
/// first `prefill` tokens, then one token at a time.
pub fn decoded_logits(d: &Decoder, ids: &[u32], prefill: usize) -> Vec<Vec<f32>> {
    let mut cache = d.new_cache(1, ids.len()).unwrap();
    let pos: Vec<i32> = (0..prefill as i32).collect();
    let mut got = d
        .forward_all(&[ids[..prefill].to_vec()], &[pos], &mut cache, None)
        .unwrap()
        .single_row()
        .unwrap();
    for (p, &id) in ids.iter().enumerate().skip(prefill) {
        let step = d
            .forward_last(&[vec![id]], &[vec![p as i32]], &mut cache, None)
            .unwrap();
        got.push(step.rows().unwrap().remove(0));
    }
    got
}

pub fn log_softmax(row: &[f32]) -> Vec<f64> {
    let m = row.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)) as f64;
    let lse = m + row.iter().map(|&x| (x as f64 - m).exp()).sum::<f64>().ln();
    row.iter().map(|&x| x as f64 - lse).collect()
}

/// Whether tests that need the real model must run (CI sets ETHOS_REQUIRE_REAL_MODEL=1).
pub fn real_model_required() -> bool {
    std::env::var("ETHOS_REQUIRE_REAL_MODEL").is_ok_and(|v| v == "1")
}

/// A real model file under `models/`, or None (with a printed reason) when it is absent
/// locally; CI sets ETHOS_REQUIRE_REAL_MODEL=1 and fetches it, so there it must exist.
pub fn real_model(file: &str) -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("models")
        .join(file);
    if p.exists() {
        return Some(p);
    }
    if real_model_required() {
        panic!("{} is missing and ETHOS_REQUIRE_REAL_MODEL=1", p.display());
    }
    eprintln!(
        "SKIPPED: {} is absent (`ethos pull` or .ci/run fetches it); CI runs this test",
        p.display()
    );
    None
}

/// The default model file (see `real_model`).
pub fn smollm2_path() -> Option<PathBuf> {
    real_model("SmolLM2-135M-Instruct.Q4_1.gguf")
}

/// A real GGUF model under `models/` (see `real_model`), loaded with `dtype` (None: as stored).
pub fn load_real(file: &str, dtype: Option<ethos::model::DType>) -> Option<ethos::model::Model> {
    load_real_with(file, dtype, Default::default())
}

/// `load_real` with LoRA adapters.
pub fn load_real_with(
    file: &str,
    dtype: Option<ethos::model::DType>,
    adapters: ethos::model::lora::Adapters,
) -> Option<ethos::model::Model> {
    use ethos::model::{loader, LoadOptions, ModelSpec};
    let path = real_model(file)?;
    Some(
        loader::load(
            &ModelSpec::Gguf(path),
            &LoadOptions {
                dtype,
                adapters,
                ..Default::default()
            },
        )
        .unwrap(),
    )
}

/// One reference text: its ids and the log-prob of each next token.
pub struct RefText {
    pub name: String,
    pub ids: Vec<u32>,
    pub logprobs: Vec<f64>,
}

/// The `texts` of a reference file under `tests/fixtures/` (e.g. `gemma3/llamacpp_q4km.json`),
/// and its `greedy` entry.
pub fn ref_texts(file: &str) -> (Vec<RefText>, serde_json::Value) {
    let v = read_json(&fixtures().join(file));
    let texts = v["texts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| RefText {
            name: t["name"].as_str().unwrap().to_string(),
            ids: serde_json::from_value(t["ids"].clone()).unwrap(),
            logprobs: serde_json::from_value(t["logprobs"].clone()).unwrap(),
        })
        .collect();
    (texts, v["greedy"].clone())
}

/// Differences of two log-prob sequences: (max, mean) absolute.
/// The mean absolute difference of two references' log-probs.
pub fn mean_abs_diff(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).sum::<f64>() / a.len() as f64
}

pub fn diff_stats(a: &[f32], b: &[f64]) -> (f64, f64) {
    assert_eq!(a.len(), b.len());
    let d: Vec<f64> = a
        .iter()
        .zip(b)
        .map(|(x, y)| (*x as f64 - y).abs())
        .collect();
    (
        d.iter().cloned().fold(0.0, f64::max),
        d.iter().sum::<f64>() / d.len() as f64,
    )
}

/// The golden greedy check: `prompt` encodes to the reference's `prompt_ids`, and greedy
/// decoding from them gives the reference's `ids` token for token and its `text`.
pub fn assert_greedy_matches(m: &ethos::model::Model, prompt: &str, greedy: &serde_json::Value) {
    use ethos::steer::{GenerateOptions, GenerateRequest, SamplingParams, Session};
    let prompt_ids: Vec<u32> = serde_json::from_value(greedy["prompt_ids"].clone()).unwrap();
    let want: Vec<u32> = serde_json::from_value(greedy["ids"].clone()).unwrap();
    assert_eq!(
        m.tokenizer().unwrap().encode_prompt(prompt).unwrap(),
        prompt_ids
    );
    let opts = GenerateOptions {
        max_tokens: want.len(),
        ignore_eos: true,
        ..Default::default()
    };
    let req = GenerateRequest::new(prompt_ids.clone(), SamplingParams::greedy(), opts);
    let g = Session::new(m).generate(&req, &mut |_| {}).unwrap();
    let agree = g
        .token_ids
        .iter()
        .zip(&want)
        .take_while(|(a, b)| a == b)
        .count();
    eprintln!(
        "greedy: {agree}/{} tokens agree; ours: {:?}",
        want.len(),
        g.text
    );
    assert_eq!(g.token_ids, want, "first difference at token {agree}");
    assert_eq!(g.text, greedy["text"].as_str().unwrap());
}
