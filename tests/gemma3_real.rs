//! The real Gemma 3 270M (Q4_K_M GGUF from the PyPI chunk packages) against independent
//! references made by `tests/ref/make_gemma3_refs.py`: HF transformers on the GGUF dequantized
//! to f32, and llama.cpp on the same file (log-probs and a greedy continuation). One text is
//! longer than the 512-token sliding window, so the local/global layer pattern, the two rotary
//! bases and the window are all exercised. Locally these skip when the model is absent; CI
//! fetches it and requires them.

mod common;

use common::*;
use ethos::model::chat::Message;
use ethos::model::scoring::score_text;
use ethos::model::{DType, Model};

fn load(dtype: Option<DType>) -> Option<Model> {
    load_real("gemma-3-270m-q4_k_m.gguf", dtype)
}

/// The GGUF dequantized to f32 against transformers on the same dequantized weights: the
/// same arithmetic up to summation order, so every next-token log-prob agrees to 1e-3.
#[test]
fn dequantized_f32_logprobs_match_transformers() {
    let Some(m) = load(Some(DType::F32)) else {
        return;
    };
    for t in &ref_texts("gemma3/hf_f32_logprobs.json").0 {
        let got = score_text(&m.decoder, &t.ids, None).unwrap().token_logprobs;
        let (max, mean) = diff_stats(&got, &t.logprobs);
        eprintln!(
            "{} ({} ids): max {max:.2e} mean {mean:.2e}",
            t.name,
            t.ids.len()
        );
        assert!(max < 1e-3, "{}: max |logprob diff| {max}", t.name);
    }
}

/// The Q4_K_M file as ethos runs it by default against llama.cpp on the same file, within
/// the envelope the foundation issue justified for quantized arithmetic (llama.cpp against
/// itself moves log-probs by up to 0.71 when only its batching changes): max 0.75, mean 0.10.
#[test]
fn quantized_logprobs_agree_with_llama_cpp() {
    let Some(m) = load(None) else { return };
    let (texts, _) = ref_texts("gemma3/llamacpp_q4km.json");
    let (hf, _) = ref_texts("gemma3/hf_f32_logprobs.json");
    for (t, h) in texts.iter().zip(&hf) {
        assert_eq!(t.ids, h.ids);
        let got = score_text(&m.decoder, &t.ids, None).unwrap().token_logprobs;
        let (max, mean) = diff_stats(&got, &t.logprobs);
        let (hmax, hmean) = diff_stats(&got, &h.logprobs);
        eprintln!(
            "{}: vs llama.cpp max {max:.4} mean {mean:.4}; vs HF f32 max {hmax:.4} mean {hmean:.4}",
            t.name
        );
        assert!(
            max < 0.75 && mean < 0.10,
            "{}: max {max} mean {mean}",
            t.name
        );
    }
}

/// A golden greedy continuation: 48 tokens, token for token as llama.cpp on the same file.
/// The prompt is one whose continuation has no near-tie in llama.cpp (smallest gap between
/// the top two logits 0.19, `logit_margins` in the fixture): this small model's quantized
/// arithmetic differs between engines by about 0.1 logit (llama.cpp against itself, batched
/// or token by token: mean log-prob difference 0.04), so at a near-tie either token is a
/// faithful answer (see `tests/ref/make_gemma3_refs.py`).
#[test]
fn greedy_continuation_matches_llama_cpp() {
    let Some(m) = load(None) else { return };
    let (_, greedy) = ref_texts("gemma3/llamacpp_q4km.json");
    assert_greedy_matches(&m, greedy["prompt"].as_str().unwrap(), &greedy);
}

/// The GGUF has no chat template: ethos supplies Gemma's turn format, whose control tokens
/// encode as single ids, with one BOS; `<end_of_turn>` stops generation.
#[test]
fn gemma_turn_format_is_supplied() {
    let Some(m) = load(None) else { return };
    let t = m.chat_template.as_ref().expect("a chat template");
    let text = t.render(&[Message::new("user", "Hello")], true).unwrap();
    assert_eq!(
        text,
        "<bos><start_of_turn>user\nHello<end_of_turn>\n<start_of_turn>model\n"
    );
    let ids = m.tokenizer().unwrap().encode_prompt(&text).unwrap();
    assert_eq!(&ids[..2], &[2, 105], "{ids:?}");
    assert_eq!(ids.iter().filter(|&&i| i == 2).count(), 1);
    assert!(ids.contains(&106));
    assert!(m.eos_ids().contains(&106) && m.eos_ids().contains(&1));
}
