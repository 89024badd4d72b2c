//! The real default model, SmolLM2-135M-Instruct Q4_1 GGUF, against independent references
//! made by the scripts in `tests/ref/`: HF transformers (tokenizer built from this GGUF; the
//! f32 dequantized model) and llama.cpp (log-probs and greedy text on the same Q4_1 file).
//! Locally these skip with a message when the model is absent; CI fetches it and requires them.

mod common;

use common::*;
use ethos::model::scoring::score_text;
use ethos::model::{DType, Model};
use ethos::steer::{FinishReason, GenerateOptions, GenerateRequest, SamplingParams, Session};

fn load(dtype: Option<DType>) -> Option<Model> {
    load_real("SmolLM2-135M-Instruct.Q4_1.gguf", dtype)
}

fn our_logprobs(m: &Model, ids: &[u32]) -> Vec<f32> {
    score_text(&m.decoder, ids, None).unwrap().token_logprobs
}

/// Every CIVICS statement (original and English translation, all nine language variants)
/// and every NormAd story: ids equal those of the HF tokenizer transformers builds from
/// this GGUF, and those of llama.cpp's tokenizer.
#[test]
fn tokenizer_matches_hf_on_civics_and_normad() {
    let Some(m) = load(None) else { return };
    let tok = m.tokenizer().unwrap();
    let text = std::fs::read_to_string(fixtures().join("smollm2/tokenizer_ids.jsonl")).unwrap();
    let mut n = 0;
    let mut bad = Vec::new();
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let want: Vec<u32> = serde_json::from_value(v["ids"].clone()).unwrap();
        let got = tok.encode(v["text"].as_str().unwrap()).unwrap();
        if got != want {
            bad.push(format!("{} {} {}", v["source"], v["id"], v["field"]));
        }
        n += 1;
    }
    assert!(n >= 700 + 560 + 2633, "only {n} texts in the fixture");
    // llama.cpp's tokenizer on the same file, same texts in the same order.
    let lcpp =
        std::fs::read_to_string(fixtures().join("smollm2/llamacpp_tokenizer_ids.jsonl")).unwrap();
    for (line, hf_line) in lcpp.lines().zip(text.lines()) {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let h: serde_json::Value = serde_json::from_str(hf_line).unwrap();
        assert_eq!(
            (&v["source"], &v["id"], &v["field"]),
            (&h["source"], &h["id"], &h["field"])
        );
        let want: Vec<u32> = serde_json::from_value(v["ids"].clone()).unwrap();
        if tok.encode(h["text"].as_str().unwrap()).unwrap() != want {
            bad.push(format!("llama.cpp {} {}", v["source"], v["id"]));
        }
    }
    assert!(
        bad.is_empty(),
        "{} of {n} texts differ, e.g. {:?}",
        bad.len(),
        &bad[..bad.len().min(5)]
    );
}

/// The dequantized f32 model (`--dtype f32`) against HF transformers' f32 model from the
/// same GGUF: log-probs of every next token agree to 1e-3.
#[test]
fn dequantized_f32_logprobs_match_transformers() {
    let Some(m) = load(Some(DType::F32)) else {
        return;
    };
    let (texts, _) = ref_texts("smollm2/hf_f32_logprobs.json");
    for t in &texts {
        let got = our_logprobs(&m, &t.ids);
        let diff = got
            .iter()
            .zip(&t.logprobs)
            .map(|(a, b)| (*a as f64 - b).abs())
            .fold(0.0, f64::max);
        assert!(diff < 1e-3, "{}: max |logprob diff| {diff}", t.name);
    }
}

/// The Q4_1 file as ethos runs it by default against llama.cpp on the same file, and
/// against the exact model (HF transformers in f32 on the dequantized weights).
///
/// Tolerance, from quantized arithmetic rather than float epsilon: llama.cpp quantizes
/// activations to 8 bits and keeps an f16 KV cache; ethos quantizes them to 16 bits (every
/// product, decode's too, so that its numbers do not depend on the batch) and keeps
/// llama.cpp's f16 rounding of q, k, v. How far such legitimate differences move this model's
/// log-probs is measured by llama.cpp against itself: evaluating the same ids one token per
/// call instead of one batch moves them by up to 0.71 (mean 0.02-0.08 per text;
/// `batch_split_check` in the fixture). ethos must be within max 0.75 and mean 0.10 of
/// llama.cpp per text, or, where llama.cpp itself is further than that from the exact model
/// (civics_en: mean 0.103), within 0.01 of llama.cpp's own distance from it; and within max
/// 0.02, mean 0.005 of the exact model.
#[test]
fn q4_1_logprobs_agree_with_llama_cpp() {
    let Some(m) = load(None) else { return };
    let (texts, _) = ref_texts("smollm2/llamacpp_q41.json");
    let (hf, _) = ref_texts("smollm2/hf_f32_logprobs.json");
    for (t, h) in texts.iter().zip(&hf) {
        assert_eq!(t.ids, h.ids, "{}: both references tokenize alike", t.name);
        let got = our_logprobs(&m, &t.ids);
        let (max, mean) = diff_stats(&got, &t.logprobs);
        let (hmax, hmean) = diff_stats(&got, &h.logprobs);
        let lcpp_to_hf = mean_abs_diff(&t.logprobs, &h.logprobs);
        eprintln!(
            "{}: vs llama.cpp max {max:.4} mean {mean:.4} (llama.cpp vs HF f32: mean {lcpp_to_hf:.4}); vs HF f32 max {hmax:.4} mean {hmean:.4}",
            t.name
        );
        assert!(
            max < 0.75 && mean < 0.10f64.max(lcpp_to_hf + 0.01),
            "{}: vs llama.cpp max {max} mean {mean}",
            t.name
        );
        assert!(
            hmax < 0.02 && hmean < 0.005,
            "{}: vs HF f32 max {hmax} mean {hmean}",
            t.name
        );
    }
}

/// A golden greedy continuation: 48 tokens of the Q4_1 model, token for token as the exact
/// model (HF transformers, f32, dequantized weights) decodes them. llama.cpp's 8-bit
/// arithmetic leaves that text at a near-tie: ethos agrees with llama.cpp up to there, and
/// there llama.cpp's token is ethos' runner-up, less than 0.1 logit behind.
#[test]
fn greedy_continuation_matches_the_exact_model_and_llama_cpp_to_its_near_tie() {
    let Some(m) = load(None) else { return };
    let (_, exact) = ref_texts("smollm2/hf_f32_logprobs.json");
    let (_, lcpp) = ref_texts("smollm2/llamacpp_q41.json");
    let text = read_json(&fixtures().join("smollm2/texts.json"));
    assert_greedy_matches(&m, text["greedy_prompt"].as_str().unwrap(), &exact);
    let ours: Vec<u32> = serde_json::from_value(exact["ids"].clone()).unwrap();
    let theirs: Vec<u32> = serde_json::from_value(lcpp["ids"].clone()).unwrap();
    let prompt: Vec<u32> = serde_json::from_value(lcpp["prompt_ids"].clone()).unwrap();
    let Some(split) = ours.iter().zip(&theirs).position(|(a, b)| a != b) else {
        return;
    };
    let ids: Vec<u32> = prompt.iter().chain(&ours[..split]).copied().collect();
    let logits = all_logits(&m.decoder, &ids).pop().unwrap();
    let mut order: Vec<usize> = (0..logits.len()).collect();
    order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
    let gap = logits[order[0]] - logits[order[1]];
    eprintln!(
        "llama.cpp parts at token {split}: ours {} theirs {} gap {gap:.4}",
        order[0], theirs[split]
    );
    assert_eq!(order[0] as u32, ours[split]);
    assert_eq!(
        order[1] as u32, theirs[split],
        "llama.cpp's token is our runner-up"
    );
    assert!(gap < 0.1, "a near-tie: gap {gap}");
}

/// A per-request seed: the same seed gives the same tokens, another seed other tokens;
/// a stop string ends generation before it and never appears in the output.
#[test]
fn seeded_sampling_is_reproducible_and_stops_on_stop_strings() {
    let Some(m) = load(None) else { return };
    let prompt = m
        .tokenizer()
        .unwrap()
        .encode_prompt("The three most important values in a community are")
        .unwrap();
    let params = |seed| SamplingParams {
        temperature: 0.9,
        top_p: 0.95,
        seed,
        ..Default::default()
    };
    let opts = GenerateOptions {
        max_tokens: 24,
        ignore_eos: true,
        ..Default::default()
    };
    let run = |seed, opts: &GenerateOptions| {
        let req = GenerateRequest::new(prompt.clone(), params(seed), opts.clone());
        Session::new(&m).generate(&req, &mut |_| {}).unwrap()
    };
    let (a, b, c) = (run(7, &opts), run(7, &opts), run(8, &opts));
    assert_eq!(a.token_ids, b.token_ids);
    assert_ne!(a.token_ids, c.token_ids);
    // Stop at the first space after the 6th character of a known output.
    let stop = a
        .text
        .char_indices()
        .filter(|&(i, ch)| i > 5 && ch == ' ')
        .map(|(i, _)| a.text[i..].split_inclusive(' ').next().unwrap().to_string())
        .next();
    if let Some(stop) = stop {
        let mut streamed = String::new();
        let req = GenerateRequest::new(
            prompt.clone(),
            params(7),
            GenerateOptions {
                stop: vec![stop.clone()],
                ..opts.clone()
            },
        );
        let s = Session::new(&m)
            .generate(&req, &mut |t| streamed.push_str(t))
            .unwrap();
        assert_eq!(s.finish_reason, ethos::steer::FinishReason::Stop);
        assert!(
            !s.text.contains(&stop) && a.text.starts_with(&s.text),
            "{:?} / {:?}",
            s.text,
            a.text
        );
        assert_eq!(streamed, s.text);
    }
    // An empty stop string and a logit bias on an id outside the vocabulary are errors, not
    // a generation that ends at once or a bias dropped in silence.
    let req = GenerateRequest::new(
        prompt.clone(),
        params(7),
        GenerateOptions {
            stop: vec![String::new()],
            ..opts.clone()
        },
    );
    let e = Session::new(&m)
        .generate(&req, &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(e.contains("empty stop string"), "{e}");
    let mut biased = params(7);
    biased.logit_bias = vec![(999_999_999, 1.0)];
    let req = GenerateRequest::new(prompt.clone(), biased, opts.clone());
    let e = Session::new(&m)
        .generate(&req, &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("999999999") && e.contains("outside the vocabulary"),
        "{e}"
    );
}

/// Batched sampling (the palette's candidates): below the dense-GEMM threshold every row is
/// the same draw as `generate` alone with its seed, rows that hit EOS or a stop string leave
/// the batch without disturbing the others, and a batch of 20 rows (the f32 GEMM path) gives
/// 20 complete generations of which the seeds make distinct ones.
#[test]
fn batched_sampling_equals_single_rows_and_rows_leave_on_their_own() {
    let Some(m) = load(None) else { return };
    let prompt = m
        .tokenizer()
        .unwrap()
        .encode_prompt("My neighbour plays loud music at night. I")
        .unwrap();
    let params = |seed| SamplingParams {
        temperature: 1.0,
        top_k: 50,
        seed,
        ..Default::default()
    };
    let opts = GenerateOptions {
        max_tokens: 12,
        stop: vec![".".into()],
        ..Default::default()
    };
    let seeds: Vec<u64> = (0..10).collect();
    let mut session = Session::new(&m);
    let batch = session
        .generate_batch(
            &prompt,
            &seeds.iter().map(|&s| params(s)).collect::<Vec<_>>(),
            &opts,
        )
        .unwrap();
    for (&seed, b) in seeds.iter().zip(&batch) {
        let req = GenerateRequest::new(prompt.clone(), params(seed), opts.clone());
        let alone = session.generate(&req, &mut |_| {}).unwrap();
        assert_eq!(b.token_ids, alone.token_ids, "seed {seed}");
        assert_eq!(b.text, alone.text, "seed {seed}");
        assert_eq!(b.finish_reason, alone.finish_reason, "seed {seed}");
    }
    // Some rows stop early (a full stop within 12 tokens) while others run to the budget.
    let reasons: Vec<FinishReason> = batch.iter().map(|g| g.finish_reason).collect();
    assert!(
        reasons.contains(&FinishReason::Stop) && reasons.contains(&FinishReason::Length),
        "{reasons:?}"
    );
    let wide = session
        .generate_batch(
            &prompt,
            &(100..120).map(params).collect::<Vec<_>>(),
            &GenerateOptions {
                max_tokens: 12,
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(wide.len(), 20);
    for g in &wide {
        assert!(!g.token_ids.is_empty() && g.token_ids.len() <= 12);
        let n = if g.finish_reason == FinishReason::Length {
            12
        } else {
            g.token_ids.len()
        };
        assert_eq!(g.token_ids.len(), n);
    }
    let distinct: std::collections::HashSet<&str> = wide.iter().map(|g| g.text.as_str()).collect();
    assert!(distinct.len() >= 15, "{distinct:?}");
}

/// On the quantized default, an option's log-prob does not depend on the batch its question
/// lands in: 20 multiple-choice questions scored alone, in batches of 7 and of 16 (the last
/// batch then has 4) give the same bits. Every product of a layer takes the 16-bit
/// arithmetic, few rows as many; with llama.cpp's one-row kernels for calls under 16 rows,
/// the 4 of the last batch moved by up to 0.15.
#[test]
fn option_logprobs_do_not_depend_on_the_batch() {
    use ethos::model::scoring::{score, ScoreOptions, ScoreRequest};
    let Some(m) = load(None) else { return };
    let tok = m.tokenizer().unwrap();
    let options: Vec<Vec<u32>> = [" A", " B", " C", " D"]
        .iter()
        .map(|o| tok.encode(o).unwrap())
        .collect();
    let requests: Vec<ScoreRequest> = (0..20)
        .map(|i| {
            let text = format!(
                "Question {i}: in country number {}, which of these is a common greeting?\nA. A bow\nB. A handshake\nC. A kiss on the cheek{}\nD. A wave\nAnswer:",
                i * 7 % 13,
                " twice".repeat(i % 4)
            );
            ScoreRequest {
                context: tok.encode_prompt(&text).unwrap(),
                continuations: options.clone(),
            }
        })
        .collect();
    let run = |batch: usize| -> Vec<Vec<u64>> {
        let opts = ScoreOptions {
            batch_requests: batch,
            ..Default::default()
        };
        score(&m.decoder, &requests, &opts, None)
            .unwrap()
            .iter()
            .map(|r| r.iter().map(|c| c.logprob.to_bits()).collect())
            .collect()
    };
    let alone: Vec<Vec<u64>> = requests
        .iter()
        .flat_map(|r| {
            score(
                &m.decoder,
                std::slice::from_ref(r),
                &ScoreOptions::default(),
                None,
            )
            .unwrap()
            .into_iter()
            .map(|s| s.iter().map(|c| c.logprob.to_bits()).collect::<Vec<_>>())
        })
        .collect();
    assert_eq!(run(16), alone);
    assert_eq!(run(7), alone);
}

/// On the f32 path a continuation's log-probs do not depend on what shares its batch:
/// contexts of 1 to about 200 tokens with 1 to 6 continuations of 1 to 8 tokens, each
/// request scored alone and all in batches of 16 and 5, give the same bits per token. The
/// batch pads shorter contexts, which leaves the attention sums' lanes as they are (lanes by
/// key position), and f32 attention takes the same products for one query as for many.
#[test]
fn f32_continuation_logprobs_do_not_depend_on_the_batch() {
    use ethos::model::scoring::{score, ScoreOptions, ScoreRequest};
    let Some(m) = load(Some(DType::F32)) else {
        return;
    };
    let tok = m.tokenizer().unwrap();
    let words: Vec<&str> = "the people of the city keep their old customs and greet each other \
        with care while the young learn new ways from far away and bring them home each year"
        .split_whitespace()
        .collect();
    let text = |start: usize, n: usize| -> String {
        (0..n)
            .map(|j| words[(start + j * 7) % words.len()])
            .collect::<Vec<_>>()
            .join(" ")
    };
    let requests: Vec<ScoreRequest> = (0..12)
        .map(|i| ScoreRequest {
            context: tok
                .encode(&text(i, [1, 3, 17, 40, 90, 150][i % 6]))
                .unwrap(),
            continuations: (0..1 + i % 6)
                .map(|c| {
                    tok.encode(&format!(" {}", text(i + c, 1 + (i + c) % 8)))
                        .unwrap()
                })
                .collect(),
        })
        .collect();
    let bits = |scored: Vec<Vec<ethos::ContinuationScore>>| -> Vec<Vec<Vec<u32>>> {
        scored
            .iter()
            .map(|r| {
                r.iter()
                    .map(|c| c.token_logprobs.iter().map(|x| x.to_bits()).collect())
                    .collect()
            })
            .collect()
    };
    let run = |batch: usize| {
        let opts = ScoreOptions {
            batch_requests: batch,
            ..Default::default()
        };
        bits(score(&m.decoder, &requests, &opts, None).unwrap())
    };
    let alone: Vec<Vec<Vec<u32>>> = requests
        .iter()
        .flat_map(|r| {
            bits(
                score(
                    &m.decoder,
                    std::slice::from_ref(r),
                    &ScoreOptions::default(),
                    None,
                )
                .unwrap(),
            )
        })
        .collect();
    assert_eq!(run(16), alone);
    assert_eq!(run(5), alone);
}

/// The model's own chat template (from the GGUF) renders the ChatML prompt of the fixtures.
#[test]
fn chat_template_from_gguf_renders_chatml() {
    let Some(m) = load(None) else { return };
    let t = m
        .chat_template
        .as_ref()
        .expect("SmolLM2's GGUF carries a chat template");
    let got = t
        .render(
            &[ethos::model::chat::Message::new(
                "user",
                "What is the capital of France?",
            )],
            true,
        )
        .unwrap();
    let texts = read_json(&fixtures().join("smollm2/texts.json"));
    let want = texts["texts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["name"] == "chatml_prompt")
        .unwrap()["text"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(got, want);
}

/// Control vectors at work through the residual hook, against llama.cpp applying the same
/// file with its own loader and against the exact model steered (HF transformers in f32 on
/// the dequantized weights, each direction added after its block: `tests/ref/
/// make_control_exact_refs.py`): one file written by gguf-py as repeng writes it
/// (`direction.5` .. `direction.20`, scale 2), and one llama.cpp's `llama-cvector-generator`
/// trained itself (`--method mean` on the acceptance pairs, unit directions on all 29 layers
/// 1..29, scale 0.5). Against the exact model: max 0.05, mean 0.005 per text. Against
/// llama.cpp: the unsteered envelope (max 0.75, mean 0.10; 0.15 for llama.cpp's own file,
/// which steers every layer and so amplifies the engines' rounding differences), or 0.05
/// (max) and 0.01 (mean) past llama.cpp's own distance from the exact model where that is
/// larger (its 8-bit activations are further from it than ethos' 16 bits); and closer to
/// llama.cpp steered than to llama.cpp unsteered.
#[test]
fn control_vector_logprobs_agree_with_llama_cpp() {
    use ethos::steer::control::ControlSet;
    let Some(m) = load(None) else { return };
    let (unsteered, _) = ref_texts("smollm2/llamacpp_q41.json");
    let exact = read_json(&fixtures().join("control/hf_f32_steered.json"));
    for (refs_file, mean_tol, moved_factor) in [
        ("control/llamacpp_cv.json", 0.10f64, 1.5),
        ("control/llamacpp_cvgen.json", 0.15, 1.0),
    ] {
        let refs = read_json(&fixtures().join(refs_file));
        let scale = refs["scale"].as_f64().unwrap() as f32;
        let cv = fixtures()
            .join("control")
            .join(refs["control_vector"].as_str().unwrap());
        let c = m.config();
        let set = ControlSet::load(&[(cv, scale)], None, c.hidden_size, c.num_layers).unwrap();
        for (t, u) in refs["texts"].as_array().unwrap().iter().zip(&unsteered) {
            let ids: Vec<u32> = serde_json::from_value(t["ids"].clone()).unwrap();
            let want: Vec<f64> = serde_json::from_value(t["logprobs"].clone()).unwrap();
            let mut hook = set.hook(&m.decoder.device).unwrap();
            let got = score_text(&m.decoder, &ids, Some(&mut hook))
                .unwrap()
                .token_logprobs;
            let (max, mean) = diff_stats(&got, &want);
            let (umax, umean) = diff_stats(&got, &u.logprobs);
            // The exact model steered (HF f32, dequantized weights), and llama.cpp's own
            // distance from it on this text.
            let name = t["name"].as_str().unwrap();
            let file = refs_file.trim_start_matches("control/");
            let e: Vec<f64> = exact["files"][file]["texts"]
                .as_array()
                .unwrap()
                .iter()
                .find(|x| x["name"] == name)
                .map(|x| serde_json::from_value(x["logprobs"].clone()).unwrap())
                .unwrap();
            let (emax, emean) = diff_stats(&got, &e);
            let lcpp_max = want
                .iter()
                .zip(&e)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f64::max);
            let floor = mean_abs_diff(&want, &e);
            eprintln!(
                "{refs_file} {name}: steered vs llama.cpp steered max {max:.4} mean {mean:.4}; vs unsteered max {umax:.4} mean {umean:.4}; vs the exact model steered max {emax:.4} mean {emean:.4} (llama.cpp: max {lcpp_max:.4} mean {floor:.4})"
            );
            assert!(
                max < 0.75f64.max(lcpp_max + 0.05) && mean < mean_tol.max(floor + 0.01),
                "{refs_file} {name}: vs llama.cpp max {max} mean {mean}"
            );
            assert!(
                emax < 0.05 && emean < 0.005,
                "{refs_file} {name}: vs the exact model steered max {emax} mean {emean}"
            );
            assert!(
                umean > moved_factor * mean,
                "{refs_file} {}: the vector did not move the log-probs",
                t["name"]
            );
        }
    }
}
