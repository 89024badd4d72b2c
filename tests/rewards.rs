//! The rewards against independent references (`tests/ref/make_reward_refs.py`): diversity's
//! words and values against NLTK's tokenizer and MAP's formula; perplexity and the lm-judge
//! on SmolLM2 against transformers (f32, the same GGUF dequantized).

mod common;

use common::*;
use ethos::model::DType;
use ethos::steer::rewards::diversity::{diversity, word_tokens};
use ethos::steer::rewards::judge::LmJudge;
use ethos::steer::rewards::perplexity::Perplexity;
use ethos::steer::rewards::{Pair, Reward};

#[test]
fn diversity_matches_nltk_and_map() {
    let v = read_json(&fixtures().join("rewards/diversity.json"));
    let cases = v["cases"].as_array().unwrap();
    assert!(cases.len() >= 300);
    for c in cases {
        let text = c["text"].as_str().unwrap();
        let want: Vec<String> = serde_json::from_value(c["tokens"].clone()).unwrap();
        assert_eq!(word_tokens(text), want, "{text:?}");
        let d = c["diversity"].as_f64().unwrap();
        assert!((diversity(text) - d).abs() < 1e-12, "{text:?}");
    }
}

#[test]
fn perplexity_and_judge_match_transformers_on_smollm2() {
    let Some(m) = load_real("SmolLM2-135M-Instruct.Q4_1.gguf", Some(DType::F32)) else {
        return;
    };
    let v = read_json(&fixtures().join("rewards/smollm2.json"));
    let cases = v["cases"].as_array().unwrap();
    let pairs: Vec<Pair> = cases
        .iter()
        .map(|c| Pair {
            prompt: c["prompt"].as_str().unwrap().into(),
            response: c["response"].as_str().unwrap().into(),
        })
        .collect();
    let tok = m.tokenizer().unwrap();
    let mut judge = LmJudge::new("respect", &m, v["question"].as_str().unwrap());
    for (c, p) in cases.iter().zip(&pairs) {
        let ids: Vec<u32> = serde_json::from_value(c["perplexity_ids"].clone()).unwrap();
        let full = format!("{}{}", p.prompt, p.response);
        assert_eq!(tok.encode_prompt(&full).unwrap(), ids);
        let text = judge.judge_prompt(p).unwrap();
        assert_eq!(text, c["judge_text"].as_str().unwrap());
        let jids: Vec<u32> = serde_json::from_value(c["judge_ids"].clone()).unwrap();
        assert_eq!(tok.encode_prompt(&text).unwrap(), jids);
    }
    let ppl = Perplexity::new(&m).score(&pairs).unwrap();
    let j = judge.score(&pairs).unwrap();
    for (i, c) in cases.iter().enumerate() {
        let (wp, wj) = (c["perplexity"].as_f64().unwrap(), c["judge"].as_f64().unwrap());
        assert!((ppl[i] - wp).abs() < 1e-3, "perplexity {i}: {} vs {wp}", ppl[i]);
        assert!((j[i] - wj).abs() < 1e-3, "judge {i}: {} vs {wj}", j[i]);
    }
    // The judge prefers the polite response to each prompt.
    assert!(j[0] > j[1] && j[2] > j[3], "{j:?}");
}
