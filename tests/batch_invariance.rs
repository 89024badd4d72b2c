//! The batch-invariance guarantee on both real models (SmolLM2-135M Q4_1, Gemma 3 270M
//! Q4_K_M), on the default quantized path and on `--dtype f32` and `bf16`: a continuation's log-probs
//! are the same bits whatever shares its call (alone, beside other continuations of its
//! context, in batches of other requests of any length, at any position, with any batch
//! size and chunking); greedy generation is, token for token, the argmax of scoring's
//! distribution, with scoring's log-probs bit for bit; decode through the KV cache gives the
//! full forward's logits bit for bit. Locally these skip with a message when a model is
//! absent; CI fetches both and requires them.

mod common;

use common::*;
use ethos::model::scoring::{score, ScoreOptions, ScoreRequest};
use ethos::model::{DType, Model};
use ethos::steer::{GenerateOptions, GenerateRequest, SamplingParams, Session};

const MODELS: [&str; 2] = [
    "SmolLM2-135M-Instruct.Q4_1.gguf",
    "gemma-3-270m-q4_k_m.gguf",
];

/// A small deterministic generator (xorshift64*), so that a failing mix can be replayed.
struct Draws(u64);

impl Draws {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % n
    }

    fn between(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below(hi - lo + 1)
    }
}

/// Token ids of real text (the CIVICS and NormAd texts of the tokenizer fixture, in this
/// model's tokenizer), so that the mixes see the model's usual activations.
fn text_ids(m: &Model) -> Vec<u32> {
    let tok = m.tokenizer().unwrap();
    let text = std::fs::read_to_string(fixtures().join("smollm2/tokenizer_ids.jsonl")).unwrap();
    let mut ids = Vec::new();
    for line in text.lines().take(400) {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        ids.extend(tok.encode(v["text"].as_str().unwrap()).unwrap());
    }
    ids
}

/// A random mix: contexts of 1-300 tokens, 1-20 continuations of 1-3 tokens each, drawn
/// from real text; some requests share a long opening (the shared-prefix path).
fn mix(draws: &mut Draws, ids: &[u32], requests: usize) -> Vec<ScoreRequest> {
    let span = |d: &mut Draws, n: usize| -> Vec<u32> {
        let at = d.below(ids.len() - n);
        ids[at..at + n].to_vec()
    };
    let opening = span(draws, 40);
    (0..requests)
        .map(|i| {
            let len = draws.between(1, 300);
            let mut context = span(draws, len);
            if i % 4 == 3 {
                context = opening.iter().chain(&context).copied().collect();
                context.truncate(300);
            }
            let continuations = (0..draws.between(1, 20))
                .map(|_| {
                    let n = draws.between(1, 3);
                    span(draws, n)
                })
                .collect();
            ScoreRequest {
                context,
                continuations,
            }
        })
        .collect()
}

/// Every continuation's per-token log-probs as bits, request by request.
fn bits(m: &Model, requests: &[ScoreRequest], opts: &ScoreOptions) -> Vec<Vec<Vec<u32>>> {
    score(&m.decoder, requests, opts, None)
        .unwrap()
        .iter()
        .map(|r| {
            r.iter()
                .map(|c| c.token_logprobs.iter().map(|x| x.to_bits()).collect())
                .collect()
        })
        .collect()
}

fn opts(batch_requests: usize, max_batch_tokens: usize) -> ScoreOptions {
    ScoreOptions {
        batch_requests,
        max_batch_tokens,
    }
}

/// Random request mixes, scored alone and in batches of several sizes, chunkings and orders:
/// the same bits for every (context, continuation).
#[test]
fn log_probs_are_the_same_bits_in_any_batch() {
    for name in MODELS {
        for dtype in [None, Some(DType::F32), Some(DType::BF16)] {
            let Some(m) = load_real(name, dtype) else {
                return;
            };
            let t0 = std::time::Instant::now();
            let ids = text_ids(&m);
            let mut draws = Draws(0x9e37_79b9_7f4a_7c15 ^ name.len() as u64);
            // The f32 and bf16 paths (dequantized weights) are the slower: fewer draws.
            let (rounds, size) = if dtype.is_none() { (2, 8) } else { (1, 4) };
            for round in 0..rounds {
                let requests = mix(&mut draws, &ids, size);
                let alone: Vec<Vec<Vec<u32>>> = requests
                    .iter()
                    .flat_map(|r| bits(&m, std::slice::from_ref(r), &opts(1, 8192)))
                    .collect();
                for (batch, chunk) in [(16, 8192), (5, 8192), (3, 48)] {
                    assert_eq!(
                        bits(&m, &requests, &opts(batch, chunk)),
                        alone,
                        "{name} {dtype:?} round {round}: batch {batch}, chunks of {chunk} tokens"
                    );
                }
                // Another order: request i lands at another position of other batches.
                let mut order: Vec<usize> = (0..requests.len()).collect();
                order.reverse();
                order.rotate_left(3);
                let shuffled: Vec<ScoreRequest> = order
                    .iter()
                    .map(|&i| ScoreRequest {
                        context: requests[i].context.clone(),
                        continuations: requests[i].continuations.clone(),
                    })
                    .collect();
                let got = bits(&m, &shuffled, &opts(4, 8192));
                for (k, &i) in order.iter().enumerate() {
                    assert_eq!(
                        got[k], alone[i],
                        "{name} {dtype:?} round {round}: request {i} moved to {k}"
                    );
                }
                // One continuation at a time, each its own request.
                for (i, r) in requests.iter().enumerate().take(2) {
                    for (c, cont) in r.continuations.iter().enumerate().take(3) {
                        let one = ScoreRequest {
                            context: r.context.clone(),
                            continuations: vec![cont.clone()],
                        };
                        assert_eq!(
                            bits(&m, &[one], &opts(1, 8192))[0][0],
                            alone[i][c],
                            "{name} {dtype:?}: request {i} continuation {c} alone"
                        );
                    }
                }
            }
            eprintln!(
                "{name} {dtype:?}: {rounds} rounds of {size} requests, the same bits in every batch ({:.1} s)",
                t0.elapsed().as_secs_f64()
            );
        }
    }
}

/// The guarantee with a LoRA adapter (the committed SmolLM2 fine-tune), unmerged beside the
/// quantized weights and on f32: alone, batched, chunked, the same bits.
#[test]
fn log_probs_are_the_same_bits_in_any_batch_with_an_adapter() {
    use ethos::model::lora::{AdapterSpec, Adapters};
    let spec = AdapterSpec {
        path: fixtures().join("lora/smollm2/hk"),
        scale: 0.8,
    };
    for dtype in [None, Some(DType::F32)] {
        let adapters = Adapters::load(std::slice::from_ref(&spec), false).unwrap();
        let Some(m) = load_real_with(MODELS[0], dtype, adapters) else {
            return;
        };
        let ids = text_ids(&m);
        let mut draws = Draws(0x51_7cc1_b727_220a);
        let requests = mix(&mut draws, &ids, 6);
        let alone: Vec<Vec<Vec<u32>>> = requests
            .iter()
            .flat_map(|r| bits(&m, std::slice::from_ref(r), &opts(1, 8192)))
            .collect();
        for (batch, chunk) in [(16, 8192), (3, 48)] {
            assert_eq!(
                bits(&m, &requests, &opts(batch, chunk)),
                alone,
                "{dtype:?} with the adapter: batch {batch}, chunks of {chunk} tokens"
            );
        }
    }
}

/// 50 prompts x 32 greedy tokens: each token is the argmax of scoring's distribution on the
/// same text, and the log-probs generation reports are scoring's, bit for bit.
#[test]
fn greedy_generation_is_the_argmax_of_scoring_with_its_log_probs() {
    for name in MODELS {
        let Some(m) = load_real(name, None) else {
            return;
        };
        let ids = text_ids(&m);
        let mut draws = Draws(7 + name.len() as u64);
        for p in 0..50 {
            let len = draws.between(4, 40);
            let at = draws.below(ids.len() - len);
            let prompt = ids[at..at + len].to_vec();
            let req = GenerateRequest::new(
                prompt.clone(),
                SamplingParams::greedy(),
                GenerateOptions {
                    max_tokens: 32,
                    ignore_eos: true,
                    ..Default::default()
                },
            );
            let g = Session::new(&m).generate(&req, &mut |_| {}).unwrap();
            assert_eq!(g.token_ids.len(), 32);
            let scored = score(
                &m.decoder,
                &[ScoreRequest {
                    context: prompt,
                    continuations: vec![g.token_ids.clone()],
                }],
                &ScoreOptions::default(),
                None,
            )
            .unwrap()
            .remove(0)
            .remove(0);
            assert!(
                scored.greedy,
                "{name} prompt {p}: a generated token is not scoring's argmax"
            );
            let b = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(
                b(&scored.token_logprobs),
                b(&g.token_logprobs),
                "{name} prompt {p}: generation's log-probs are not scoring's"
            );
        }
        eprintln!("{name}: 50 prompts x 32 tokens, generation = scoring bit for bit");
    }
}

/// Decode through the KV cache, one token at a time after a prefill, gives the full
/// forward's logits at every position, bit for bit (quantized, f32 and bf16).
#[test]
fn decode_through_the_cache_equals_the_full_forward() {
    for name in MODELS {
        for dtype in [None, Some(DType::F32), Some(DType::BF16)] {
            let Some(m) = load_real(name, dtype) else {
                return;
            };
            let ids = text_ids(&m);
            for (start, len, prefill) in [(0, 48, 1), (500, 80, 17), (900, 40, 39)] {
                let seq = &ids[start..start + len];
                let full = all_logits(&m.decoder, seq);
                let decoded = decoded_logits(&m.decoder, seq, prefill);
                for (p, (f, d)) in full.iter().zip(&decoded).enumerate() {
                    assert!(
                        f.iter().zip(d).all(|(a, b)| a.to_bits() == b.to_bits()),
                        "{name} {dtype:?}: position {p} of {len} (prefill {prefill})"
                    );
                }
            }
        }
    }
}
