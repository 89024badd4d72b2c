//! Tiny random Llama, Mistral, Qwen2, Gemma 3 and Qwen3 checkpoints made by
//! `tests/ref/make_tiny_fixtures.py` with HF transformers: our forward must reproduce transformers' logits at every position to
//! 1e-4 (f32), from safetensors and from the GGUF conversion of the same weights; batching,
//! gathering and incremental decoding must not change them.

mod common;

use common::*;
use ethos::model::hooks::{AddVector, Capture};
use ethos::model::{loader, DType, Decoder, Device, Tensor};

const MODELS: [&str; 5] = ["llama", "mistral", "qwen2", "gemma3", "qwen3"];

fn reference(name: &str) -> (Vec<Vec<u32>>, Vec<Vec<Vec<f32>>>) {
    let v = read_json(&fixtures().join("tiny").join(name).join("reference.json"));
    let ids = serde_json::from_value(v["input_ids"].clone()).unwrap();
    let logits = serde_json::from_value(v["logits"].clone()).unwrap();
    (ids, logits)
}

fn load_folder(name: &str) -> Decoder {
    let opts = loader::LoadOptions {
        dtype: Some(DType::F32),
        ..Default::default()
    };
    loader::load_folder(&fixtures().join("tiny").join(name), &opts)
        .unwrap()
        .decoder
}

fn load_gguf(name: &str) -> Decoder {
    let opts = loader::LoadOptions {
        dtype: Some(DType::F32),
        ..Default::default()
    };
    loader::load_gguf(
        &fixtures().join("tiny").join(name).join("model-f32.gguf"),
        &opts,
    )
    .unwrap()
    .decoder
}

fn max_diff(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .flat_map(|(x, y)| {
            assert_eq!(x.len(), y.len());
            x.iter().zip(y).map(|(p, q)| (p - q).abs())
        })
        .fold(0.0, f32::max)
}

#[test]
fn safetensors_logits_match_transformers() {
    for name in MODELS {
        let d = load_folder(name);
        let (ids, want) = reference(name);
        for (seq, w) in ids.iter().zip(&want) {
            let diff = max_diff(&all_logits(&d, seq), w);
            assert!(diff < 1e-4, "{name}: max |logit diff| {diff}");
        }
    }
}

#[test]
fn gguf_f32_logits_match_transformers() {
    for name in MODELS {
        let d = load_gguf(name);
        let (ids, want) = reference(name);
        for (seq, w) in ids.iter().zip(&want) {
            let diff = max_diff(&all_logits(&d, seq), w);
            assert!(diff < 1e-4, "{name} (gguf): max |logit diff| {diff}");
        }
    }
}

/// candle's attention ops (the path GPUs take) give the same logits as the fused CPU kernel.
#[test]
fn unfused_attention_path_matches_transformers() {
    for name in MODELS {
        let mut d = load_folder(name);
        d.kernels.cpu_attention = false;
        let (ids, want) = reference(name);
        for (seq, w) in ids.iter().zip(&want) {
            let diff = max_diff(&all_logits(&d, seq), w);
            assert!(diff < 1e-4, "{name} (unfused): max |logit diff| {diff}");
        }
    }
}

/// The sequences right-padded to the longest (id 0, position -1): `(ids, positions)`.
fn right_padded(ids: &[Vec<u32>]) -> (Vec<Vec<u32>>, Vec<Vec<i32>>) {
    let rows: Vec<&[u32]> = ids.iter().map(Vec::as_slice).collect();
    ethos::model::scoring::right_pad(&rows, &vec![0; rows.len()])
}

/// Right-padded batch of sequences of different lengths = each run alone, to 1e-5.
#[test]
fn padded_batch_equals_one_at_a_time() {
    for name in MODELS {
        let d = load_folder(name);
        let (ids, _) = reference(name);
        let (batch, pos) = right_padded(&ids);
        let t = batch[0].len();
        let mut cache = d.new_cache(ids.len(), t).unwrap();
        let all = d
            .forward_all(&batch, &pos, &mut cache, None)
            .unwrap()
            .0
            .to_vec3::<f32>()
            .unwrap();
        for (r, seq) in ids.iter().enumerate() {
            let alone = all_logits(&d, seq);
            let diff = max_diff(&all[r][..seq.len()], &alone);
            assert!(diff < 1e-5, "{name} row {r}: {diff}");
        }
    }
}

/// Token-by-token decoding through the cache equals the full forward.
#[test]
fn incremental_decode_equals_full_forward() {
    for name in MODELS {
        let d = load_folder(name);
        let (ids, want) = reference(name);
        let seq = &ids[2];
        // A 5-token prefill, then one token at a time.
        let diff = max_diff(&decoded_logits(&d, seq, 5), &want[2]);
        assert!(diff < 1e-4, "{name}: {diff}");
    }
}

/// Gather mode returns log_softmax(logits)[target] and the argmax, without full logits.
#[test]
fn gather_mode_equals_log_softmax_of_all_logits() {
    let d = load_folder("llama");
    let (ids, want) = reference("llama");
    let seq = &ids[0];
    let targets: Vec<i64> = (0..seq.len())
        .map(|j| seq.get(j + 1).map_or(-1, |&x| x as i64))
        .collect();
    let mut cache = d.new_cache(1, seq.len()).unwrap();
    let pos: Vec<i32> = (0..seq.len() as i32).collect();
    let got = d
        .forward_gather(
            std::slice::from_ref(seq),
            &[pos],
            &mut cache,
            std::slice::from_ref(&targets),
            None,
        )
        .unwrap()
        .remove(0);
    for (j, g) in got.iter().enumerate() {
        match (g, targets[j]) {
            (None, -1) => {}
            (Some(s), t) => {
                let lp = log_softmax(&want[0][j]);
                assert!((s.logprob as f64 - lp[t as usize]).abs() < 1e-4);
                let am = want[0][j]
                    .iter()
                    .enumerate()
                    .max_by(|a, b| a.1.total_cmp(b.1))
                    .unwrap()
                    .0;
                assert_eq!(s.argmax as usize, am);
            }
            other => panic!("position {j}: {other:?}"),
        }
    }
}

/// A hook that leaves the residual alone; its presence keeps every row through the last block.
struct Unchanged;

impl ethos::model::hooks::ResidualHook for Unchanged {
    fn after_block(&mut self, _: usize, _: &Tensor) -> ethos::model::error::Result<Option<Tensor>> {
        Ok(None)
    }
}

/// Without a hook the last block's feed-forward runs only on the rows the logits mode reads
/// (padded to the batched products' minimum): the bits of running it on every row, and
/// transformers' log-probs.
#[test]
fn last_block_on_the_rows_read_gives_the_bits_of_every_row() {
    for name in MODELS {
        let d = load_folder(name);
        let (ids, want) = reference(name);
        let (batch, pos) = right_padded(&ids);
        let t = batch[0].len();
        // Every third position predicts its next token: fewer rows than the minimum.
        let targets: Vec<Vec<i64>> = ids
            .iter()
            .map(|s| {
                (0..t)
                    .map(|j| match s.get(j + 1) {
                        Some(&next) if j % 3 == 1 => next as i64,
                        _ => -1,
                    })
                    .collect()
            })
            .collect();
        let gathered = |hook: Option<&mut dyn ethos::model::hooks::ResidualHook>| {
            let mut cache = d.new_cache(ids.len(), t).unwrap();
            d.forward_gather(&batch, &pos, &mut cache, &targets, hook)
                .unwrap()
        };
        let (read, every) = (gathered(None), gathered(Some(&mut Unchanged)));
        assert_eq!(read, every, "{name}: gathered");
        for (r, row) in read.iter().enumerate() {
            for (j, g) in row.iter().enumerate() {
                let Some(g) = g else {
                    assert_eq!(targets[r][j], -1, "{name} [{r}][{j}]");
                    continue;
                };
                let lp = log_softmax(&want[r][j])[targets[r][j] as usize];
                assert!((g.logprob as f64 - lp).abs() < 1e-4, "{name} [{r}][{j}]");
            }
        }
        let last = |hook: Option<&mut dyn ethos::model::hooks::ResidualHook>| {
            let mut cache = d.new_cache(ids.len(), t).unwrap();
            d.forward_last(&batch, &pos, &mut cache, hook)
                .unwrap()
                .rows()
                .unwrap()
        };
        let (read, every) = (last(None), last(Some(&mut Unchanged)));
        let bits = |v: &[Vec<f32>]| v.concat().iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&read), bits(&every), "{name}: last");
        for (r, s) in ids.iter().enumerate() {
            assert!(max_diff(&read[r..r + 1], &want[r][s.len() - 1..s.len()]) < 1e-4);
        }
    }
}

/// The residual hook adds scale * vector after the chosen blocks only; capture sees them.
#[test]
fn residual_hook_adds_a_vector_over_a_layer_range() {
    let d = load_folder("llama");
    let (ids, want) = reference("llama");
    let seq = &ids[1];
    let pos: Vec<i32> = (0..seq.len() as i32).collect();
    let run = |hook: Option<&mut dyn ethos::model::hooks::ResidualHook>| {
        let mut cache = d.new_cache(1, seq.len()).unwrap();
        d.forward_all(
            std::slice::from_ref(seq),
            std::slice::from_ref(&pos),
            &mut cache,
            hook,
        )
        .unwrap()
        .single_row()
        .unwrap()
    };
    let v = Tensor::ones(64, DType::F32, &Device::Cpu).unwrap();
    let mut zero = AddVector {
        vector: v.clone(),
        scale: 0.0,
        layers: 0..=1,
    };
    assert!(max_diff(&run(Some(&mut zero)), &want[1]) < 1e-4);
    let mut outside = AddVector {
        vector: v.clone(),
        scale: 4.0,
        layers: 5..=9,
    };
    assert!(max_diff(&run(Some(&mut outside)), &want[1]) < 1e-4);
    let mut steer = AddVector {
        vector: v,
        scale: 4.0,
        layers: 1..=1,
    };
    assert!(max_diff(&run(Some(&mut steer)), &want[1]) > 1e-2);
    let mut cap = Capture {
        layers: 0..=0,
        captured: vec![],
    };
    run(Some(&mut cap));
    assert_eq!(cap.captured.len(), 1);
    assert_eq!(cap.captured[0].1.dims(), &[1, seq.len(), 64]);
}

/// Rows of one batch steered by different control vectors (or none) give what each gives
/// alone with its own vectors: a batch of requests keeps each request's steering.
#[test]
fn rows_steered_by_their_own_vectors_equal_each_run_alone() {
    use ethos::steer::control::ControlSet;
    let d = load_folder("llama");
    let (ids, _) = reference("llama");
    let set = |seed: u32, scale: f32| ControlSet {
        per_layer: (0..2)
            .map(|l| {
                let v = (0..64)
                    .map(|i| scale * (((i * 7 + l * 13 + seed as usize) % 11) as f32 - 5.0) / 5.0)
                    .collect();
                (l, v)
            })
            .collect(),
    };
    let (a, b) = (set(1, 0.8), set(4, -1.5));
    let alone = |seq: &[u32], s: Option<&ControlSet>| {
        let mut cache = d.new_cache(1, seq.len()).unwrap();
        let mut hook = s.map(|s| s.hook(&d.device).unwrap());
        d.forward_all(
            &[seq.to_vec()],
            &[(0..seq.len() as i32).collect()],
            &mut cache,
            hook.as_mut()
                .map(|h| h as &mut dyn ethos::model::hooks::ResidualHook),
        )
        .unwrap()
        .single_row()
        .unwrap()
    };
    let rows = &ids[..3];
    let (batch, pos) = right_padded(rows);
    let t = batch[0].len();
    for steering in [
        [Some(&a), None, Some(&b)],
        [None, Some(&b), None],
        [Some(&a), Some(&a), Some(&b)],
    ] {
        let mut hook = ControlSet::rows_hook(&steering, 64, &d.device).unwrap();
        let mut cache = d.new_cache(rows.len(), t).unwrap();
        let all = d
            .forward_all(&batch, &pos, &mut cache, Some(&mut hook))
            .unwrap()
            .0
            .to_vec3::<f32>()
            .unwrap();
        for (r, seq) in rows.iter().enumerate() {
            let want = alone(seq, steering[r]);
            let diff = max_diff(&all[r][..seq.len()], &want);
            assert!(diff < 1e-5, "row {r}: {diff}");
        }
        // The steering moved the logits: a row compared with its unsteered self.
        if let Some(s) = steering[0] {
            assert!(max_diff(&alone(&rows[0], Some(s)), &alone(&rows[0], None)) > 1e-2);
        }
    }
}

/// Scoring with a shared, cached context equals the log-probs of the whole sequence.
#[test]
fn scoring_with_prefix_reuse_equals_full_sequence_logprobs() {
    use ethos::model::scoring::{score, ScoreOptions, ScoreRequest};
    let d = load_folder("qwen2");
    let (ids, want) = reference("qwen2");
    let mut requests = Vec::new();
    for seq in &ids {
        let c = 4;
        // The true continuation plus a shorter one and a one-token one.
        requests.push(ScoreRequest {
            context: seq[..c].to_vec(),
            continuations: vec![seq[c..].to_vec(), seq[c..c + 2].to_vec(), vec![seq[c]]],
        });
    }
    let got = score(
        &d,
        &requests,
        &ScoreOptions {
            batch_requests: 2,
            max_batch_tokens: 40,
        },
        None,
    )
    .unwrap();
    for ((seq, w), scores) in ids.iter().zip(&want).zip(&got) {
        for s in scores {
            let mut sum = 0.0;
            for (k, &tok) in s.token_ids.iter().enumerate() {
                let lp = log_softmax(&w[3 + k])[tok as usize];
                assert!((s.token_logprobs[k] as f64 - lp).abs() < 1e-4);
                sum += lp;
            }
            assert!((s.logprob - sum).abs() < 1e-3);
            let greedy = s.token_ids.iter().enumerate().all(|(k, &tok)| {
                let row = &w[3 + k];
                row.iter()
                    .enumerate()
                    .max_by(|a, b| a.1.total_cmp(b.1))
                    .unwrap()
                    .0
                    == tok as usize
            });
            assert_eq!(s.greedy, greedy);
        }
        assert_eq!(scores[0].token_ids, seq[4..].to_vec());
    }
}

/// The prefix scorer (token-level reward guidance) against transformers' logits: a sequence
/// grown token by token, then changed in its last token (a re-tokenized text), gives every
/// token's log-prob; branches off its end give their tokens' log-probs and the distribution
/// after them; the cache grows past its first capacity without changing anything.
#[test]
fn prefix_scorer_grows_backs_up_and_branches_like_full_passes() {
    use ethos::model::prefix::PrefixScorer;
    for name in ["llama", "gemma3"] {
        let d = load_folder(name);
        let (ids, want) = reference(name);
        let seq = &ids[0];
        let lsm: Vec<Vec<f64>> = want[0].iter().map(|r| log_softmax(r)).collect();
        let upto = |n: usize| -> f64 { (1..n).map(|i| lsm[i - 1][seq[i] as usize]).sum() };
        let mut p = PrefixScorer::new(&d);
        for n in 1..=seq.len() {
            p.advance(&seq[..n]).unwrap();
            assert!((p.logprob() - upto(n)).abs() < 1e-3, "{name} n={n}");
            let next = p.next_logprobs();
            assert!(
                (next[7] as f64 - lsm[n - 1][7]).abs() < 1e-4,
                "{name} n={n}"
            );
        }
        // Change the last token, then go back to the true sequence: only the tail reruns.
        let n = seq.len();
        let mut other = seq.to_vec();
        other[n - 1] = (seq[n - 1] + 1) % 64;
        p.advance(&other).unwrap();
        let want_other = upto(n - 1) + lsm[n - 2][other[n - 1] as usize];
        assert!((p.logprob() - want_other).abs() < 1e-3, "{name}");
        // Branches off the first 4 tokens: the true continuation, a shorter one, none.
        p.advance(&seq[..4]).unwrap();
        let branches = vec![seq[4..].to_vec(), seq[4..6].to_vec(), vec![]];
        let got = p.branch_logprobs(&branches).unwrap();
        assert!((got[0] - (upto(n) - upto(4))).abs() < 1e-3, "{name}");
        assert!((got[1] - (upto(6) - upto(4))).abs() < 1e-3, "{name}");
        assert_eq!(got[2], 0.0);
        let at = [3u32, 11];
        let ends = p.branch_end_logprobs(&branches[1..], &at).unwrap();
        for (k, &a) in at.iter().enumerate() {
            assert!(
                (ends[0][k] as f64 - lsm[5][a as usize]).abs() < 1e-4,
                "{name}"
            );
            assert!(
                (ends[1][k] as f64 - lsm[3][a as usize]).abs() < 1e-4,
                "{name}"
            );
        }
    }
    // Growing past the first capacity (the sequence plus 128 tokens) keeps the numbers.
    let d = load_folder("llama");
    let long: Vec<u32> = (0..250u32).map(|i| (i * 7 + 3) % 320).collect();
    let mut grown = PrefixScorer::new(&d);
    grown.advance(&long[..10]).unwrap();
    grown.advance(&long[..200]).unwrap();
    grown.advance(&long).unwrap();
    let mut once = PrefixScorer::new(&d);
    once.advance(&long).unwrap();
    assert!((grown.logprob() - once.logprob()).abs() < 1e-3);
}

/// Requests that open with the same 16+ tokens are batched as a family and run that opening
/// once; their log-probs still equal transformers' (contexts of 17 to 24 tokens of one
/// reference sequence, batched with requests that share nothing).
#[test]
fn scoring_with_a_shared_opening_equals_full_sequence_logprobs() {
    use ethos::model::scoring::{score, ScoreOptions, ScoreRequest};
    for name in ["llama", "gemma3"] {
        let d = load_folder(name);
        let (ids, want) = reference(name);
        let long = &ids[2];
        assert!(long.len() >= 24);
        let mut requests = Vec::new();
        for c in [22, 18, 20, 17, 24, 19, 23, 21] {
            requests.push(ScoreRequest {
                context: long[..c].to_vec(),
                continuations: vec![long[c..].to_vec(), vec![long[c]]],
            });
        }
        for seq in &ids[..2] {
            requests.push(ScoreRequest {
                context: seq[..4].to_vec(),
                continuations: vec![seq[4..].to_vec()],
            });
        }
        let got = score(&d, &requests, &ScoreOptions::default(), None).unwrap();
        for (r, scores) in requests.iter().zip(&got) {
            let k = ids.iter().position(|s| s.starts_with(&r.context)).unwrap();
            let c = r.context.len();
            for s in scores {
                for (j, &tok) in s.token_ids.iter().enumerate() {
                    let lp = log_softmax(&want[k][c - 1 + j])[tok as usize];
                    assert!(
                        (s.token_logprobs[j] as f64 - lp).abs() < 1e-4,
                        "{name} context {c} token {j}"
                    );
                }
            }
        }
    }
}

/// An opening kept from an earlier call is reused, not run again, and gives the same bits as
/// running it afresh (two calls whose batches open with the same 16 tokens).
#[test]
fn openings_kept_across_calls_give_the_same_bits() {
    use ethos::model::scoring::{score, score_with_openings, Openings, ScoreOptions, ScoreRequest};
    let d = load_folder("llama");
    let (ids, _) = reference("llama");
    let long = &ids[2];
    let call = |lens: &[usize]| -> Vec<ScoreRequest> {
        lens.iter()
            .map(|&c| ScoreRequest {
                context: long[..c].to_vec(),
                continuations: vec![long[c..].to_vec()],
            })
            .collect()
    };
    let (first, second) = (call(&[22, 18, 20, 17]), call(&[24, 17, 23, 21]));
    let opts = ScoreOptions {
        batch_requests: 4,
        ..Default::default()
    };
    let mut kept = Openings::default();
    let a = score_with_openings(&d, &first, &opts, &mut kept, None).unwrap();
    let b = score_with_openings(&d, &second, &opts, &mut kept, None).unwrap();
    assert_eq!(kept.len(), 1, "both calls open with the same 16 tokens");
    assert_eq!(a, score(&d, &first, &opts, None).unwrap());
    assert_eq!(b, score(&d, &second, &opts, None).unwrap());
}
