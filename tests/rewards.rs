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
        let (wp, wj) = (
            c["perplexity"].as_f64().unwrap(),
            c["judge"].as_f64().unwrap(),
        );
        assert!(
            (ppl[i] - wp).abs() < 1e-3,
            "perplexity {i}: {} vs {wp}",
            ppl[i]
        );
        assert!((j[i] - wj).abs() < 1e-3, "judge {i}: {} vs {wj}", j[i]);
    }
    // The judge prefers the polite response to each prompt.
    assert!(j[0] > j[1] && j[2] > j[3], "{j:?}");
}

/// `steer fit`'s sampling is reproducible sample by sample (seed + i * samples + j), and the
/// table holds every reward of every sample, grouped by prompt.
#[test]
fn fit_samples_are_reproducible_and_tabled() {
    use ethos::steer::palette::fit::{sample_responses, score_table, FitOptions};
    use ethos::steer::rewards::{lexicon::Lexicon, Diversity};
    use ethos::steer::{GenerateOptions, GenerateRequest, SamplingParams, Session};
    let Some(m) = load_real("SmolLM2-135M-Instruct.Q4_1.gguf", None) else {
        return;
    };
    let prompts = vec![
        "The best way to greet".to_string(),
        "Respect means".to_string(),
    ];
    let opts = FitOptions {
        samples: 2,
        max_tokens: 8,
        params: SamplingParams {
            top_k: 50,
            seed: 7,
            ..Default::default()
        },
        chat: false,
    };
    let pairs = sample_responses(&m, &prompts, &opts).unwrap();
    assert_eq!(pairs.len(), 4);
    // Sample 1 of prompt 1 alone, with seed 7 + 1 * 2 + 1.
    let ids = m.tokenizer().unwrap().encode_prompt(&prompts[1]).unwrap();
    let req = GenerateRequest::new(
        ids,
        SamplingParams {
            seed: 10,
            ..opts.params.clone()
        },
        GenerateOptions {
            max_tokens: 8,
            ..Default::default()
        },
    );
    let alone = Session::new(&m).generate(&req, &mut |_| {}).unwrap();
    assert_eq!(pairs[3].response, alone.text);
    let mut rewards: Vec<Box<dyn Reward>> = vec![
        Box::new(Diversity),
        Box::new(Lexicon::new("greet", vec![("greet".into(), 1.0)])),
    ];
    let table = score_table(&mut rewards, &pairs).unwrap();
    assert_eq!(table.values, ["diversity", "greet"]);
    assert_eq!(table.groups, [0, 0, 1, 1]);
    assert_eq!(table.n_groups, 2);
    assert_eq!(table.rows.len(), 4);
    assert_eq!(
        table.rows[3][0],
        diversity(&format!("{}{}", pairs[3].prompt, pairs[3].response))
    );
}

/// Palette decoding on SmolLM2 with a lexicon value: best-of-n takes the largest lambda . r,
/// resample's weights are softmax(lambda . r), and with a large lambda resample takes the
/// best candidate too; the same seed gives the same choice.
#[test]
fn palette_decoding_picks_by_lambda_dot_r() {
    use ethos::steer::palette::decode::{LambdaFile, PaletteDecoder, PaletteMode};
    use ethos::steer::{GenerateOptions, GenerateRequest, SamplingParams, Session};
    let Some(m) = load_real("SmolLM2-135M-Instruct.Q4_1.gguf", None) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("l.csv"), "phrase,weight\nthe,1\nand,1\n").unwrap();
    std::fs::write(
        dir.path().join("p.toml"),
        "[[value]]\nname = \"common\"\ntarget = 1.0\n[[reward]]\nname = \"common\"\nkind = \"lexicon\"\nfile = \"l.csv\"\n",
    )
    .unwrap();
    let ids = m
        .tokenizer()
        .unwrap()
        .encode_prompt("Once upon a time")
        .unwrap();
    let params = SamplingParams {
        top_k: 50,
        seed: 3,
        ..Default::default()
    };
    let opts = GenerateOptions {
        max_tokens: 12,
        ..Default::default()
    };
    let run = |lambda: f64, mode| {
        let lf = LambdaFile {
            lambda: vec![("common".into(), lambda)],
            palette: dir.path().join("p.toml"),
            targets: vec![],
        };
        let mut d = PaletteDecoder::new(&lf, &m, mode, 6).unwrap();
        let req = GenerateRequest::new(ids.clone(), params.clone(), opts.clone());
        d.generate(&mut Session::new(&m), "Once upon a time", &req)
            .unwrap()
    };
    let (c, pick) = run(0.7, PaletteMode::BestOfN);
    let best = c.iter().map(|x| x.score).fold(f64::MIN, f64::max);
    assert_eq!(c[pick].score, best);
    assert!(c.iter().any(|x| x.score != best), "candidates all tie");
    let (c, _) = run(0.7, PaletteMode::Resample);
    let z: f64 = c.iter().map(|x| (x.score).exp()).sum();
    for x in &c {
        assert!((x.weight - x.score.exp() / z).abs() < 1e-12);
        assert!((x.score - 0.7 * x.rewards[0]).abs() < 1e-12);
    }
    let (c, pick) = run(50.0, PaletteMode::Resample);
    let best = c.iter().map(|x| x.score).fold(f64::MIN, f64::max);
    assert_eq!(c[pick].score, best);
    assert_eq!(run(50.0, PaletteMode::Resample).1, pick);
}

/// A tiny random `LlamaForSequenceClassification` (one label, word-level tokenizer) from
/// `tests/ref/make_classifier_fixture.py`: our ids equal the HF tokenizer's, and the reward
/// equals transformers' score of each text, alone and in a right-padded batch.
#[test]
fn classifier_reward_matches_transformers() {
    use ethos::steer::rewards::classifier::Classifier;
    let folder = fixtures().join("tiny/llama_classifier");
    let v = read_json(&folder.join("reference.json"));
    let texts: Vec<String> = serde_json::from_value(v["texts"].clone()).unwrap();
    let ids: Vec<Vec<u32>> = serde_json::from_value(v["ids"].clone()).unwrap();
    let alone: Vec<f64> = serde_json::from_value(v["scores"].clone()).unwrap();
    let mut c = Classifier::load("rm", &folder, None, Some("{response}")).unwrap();
    let pairs: Vec<Pair> = texts
        .iter()
        .map(|t| Pair {
            prompt: "ignored".into(),
            response: t.clone(),
        })
        .collect();
    // All five texts in one right-padded batch.
    let got = c.score(&pairs).unwrap();
    for (i, (g, w)) in got.iter().zip(&alone).enumerate() {
        assert!((g - w).abs() < 1e-4, "text {i}: {g} vs {w}");
    }
    let tok = c.model().tokenizer().unwrap();
    for (i, x) in ids.iter().enumerate() {
        assert_eq!(&tok.encode_prompt(&texts[i]).unwrap(), x);
        let one = c.score_ids(std::slice::from_ref(x)).unwrap()[0];
        assert!((one - alone[i]).abs() < 1e-4, "text {i} alone: {one}");
    }
    // A label the model does not have, and a folder that is not a classifier.
    let e = Classifier::load("rm", &folder, Some(1), None)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("label 1") && e.contains("1 labels"), "{e}");
    let e = Classifier::load("rm", &fixtures().join("tiny/llama"), None, None)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("not a sequence classifier"), "{e}");
}

/// The token-level processor: the top K logits get lambda . r(response + candidate) added
/// (here a lexicon that rewards "thank"), every other token is dropped.
#[test]
fn token_palette_weights_the_top_k() {
    use ethos::model::tokenizer::Tokenizer;
    use ethos::steer::palette::token::TokenPalette;
    use ethos::steer::rewards::lexicon::Lexicon;
    use ethos::steer::LogitsProcessor;
    use std::cell::RefCell;
    use std::rc::Rc;
    let tok =
        Tokenizer::from_file(&fixtures().join("tiny/llama_classifier/tokenizer.json")).unwrap();
    let id = |w: &str| tok.encode(w).unwrap()[0];
    let (please, thank, rude) = (id("please"), id("thank"), id("rude"));
    let rewards: Vec<Box<dyn Reward>> = vec![Box::new(Lexicon::new(
        "polite",
        vec![("thank".into(), 1.0)],
    ))];
    let mut tp = TokenPalette::new(&tok, "p", 1, vec![2.0], Rc::new(RefCell::new(rewards)), 2);
    let mut logits = vec![0.0f32; 320];
    logits[please as usize] = 3.0;
    logits[thank as usize] = 2.5;
    logits[rude as usize] = 2.0;
    // Context: one prompt token, then the response so far ("please").
    tp.process(&[id("the"), please], &mut logits).unwrap();
    assert_eq!(logits[thank as usize], 2.5 + 2.0);
    assert_eq!(logits[please as usize], 3.0);
    assert_eq!(logits[rude as usize], f32::NEG_INFINITY);
    assert_eq!(logits.iter().filter(|l| l.is_finite()).count(), 2);
}

/// Token mode's rewards of candidate pieces equal judging each extended response whole, for
/// the lm-judge (one judge context, cached across steps) and perplexity (the text so far,
/// cached across steps), over a response that grows, changes its last word (the cache backs
/// up) and grows again (f32, where batch shapes change the arithmetic only in the last bits).
#[test]
fn reward_extensions_equal_whole_scores_across_steps() {
    let Some(m) = load_real("SmolLM2-135M-Instruct.Q4_1.gguf", Some(DType::F32)) else {
        return;
    };
    let mut judge = LmJudge::new("respect", &m, "Is the response respectful and polite?");
    let mut ppl = Perplexity::new(&m);
    let pieces: Vec<String> = [" politely", " rudely", " first", " with", "."]
        .iter()
        .map(|s| s.to_string())
        .collect();
    for response in [
        " Greet",
        " Greet them",
        " Greet them warmly",
        " Greet them kindly",
        " Greet them kindly and",
    ] {
        let pair = Pair {
            prompt: "How do I greet an older relative?".into(),
            response: response.into(),
        };
        let whole: Vec<Pair> = pieces
            .iter()
            .map(|p| Pair {
                prompt: pair.prompt.clone(),
                response: format!("{}{p}", pair.response),
            })
            .collect();
        let ext = judge.score_extensions(&pair, &pieces).unwrap().unwrap();
        let want = judge.score(&whole).unwrap();
        for (i, (a, b)) in ext.iter().zip(&want).enumerate() {
            assert!(
                (a - b).abs() < 2e-3,
                "judge {response:?} piece {i}: {a} vs {b}"
            );
        }
        let ext = ppl.score_extensions(&pair, &pieces).unwrap().unwrap();
        let want = ppl.score(&whole).unwrap();
        for (i, (a, b)) in ext.iter().zip(&want).enumerate() {
            assert!(
                (a - b).abs() < 1e-3,
                "perplexity {response:?} piece {i}: {a} vs {b}"
            );
        }
    }
}

/// `steer evaluate`: base mode is plain sampling (candidate 0 of every other mode), so for a
/// one-value palette best-of-n realises at least the base reward on every prompt; levels
/// carry 95 % intervals.
#[test]
fn evaluate_best_of_n_dominates_base_per_prompt() {
    use ethos::steer::palette::decode::LambdaFile;
    use ethos::steer::palette::evaluate::{evaluate, EvaluateOptions, Level};
    use ethos::steer::{GenerateOptions, SamplingParams};
    let l = Level::of(&[1.0, 2.0, 3.0, 4.0]);
    assert_eq!(l.mean, 2.5);
    assert!((l.half_width - 1.96 * (5.0f64 / 3.0 / 4.0).sqrt()).abs() < 1e-12);
    let Some(m) = load_real("SmolLM2-135M-Instruct.Q4_1.gguf", None) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("l.csv"),
        "phrase,weight\nthe,1\nand,1\na,1\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("p.toml"),
        "[[value]]\nname = \"common\"\ntarget = 3.0\n[[reward]]\nname = \"common\"\nkind = \"lexicon\"\nfile = \"l.csv\"\n",
    )
    .unwrap();
    let lf = LambdaFile {
        lambda: vec![("common".into(), 1.0)],
        palette: dir.path().join("p.toml"),
        targets: vec![("common".into(), 3.0)],
    };
    let prompts = vec![
        "Once upon a time".to_string(),
        "The city at night".to_string(),
    ];
    let o = EvaluateOptions {
        chat: false,
        params: SamplingParams {
            top_k: 50,
            seed: 5,
            ..Default::default()
        },
        generate: GenerateOptions {
            max_tokens: 12,
            ..Default::default()
        },
        candidates: 4,
        token_k: 5,
        modes: vec!["base".into(), "best-of-n".into()],
        calibration_prompts: vec![],
        calibration_rounds: 0,
        calibration_step: 0.5,
    };
    let ev = evaluate(&m, &lf, &prompts, &o).unwrap();
    let (base, best) = (&ev.modes[0], &ev.modes[1]);
    assert_eq!(ev.targets, vec![Some(3.0)]);
    assert!(best.levels[0].mean >= base.levels[0].mean);
    let lex =
        ethos::steer::rewards::lexicon::Lexicon::read("c", &dir.path().join("l.csv")).unwrap();
    for (b, s) in base.responses.iter().zip(&best.responses) {
        assert!(lex.value(s) >= lex.value(b), "{s:?} vs base {b:?}");
    }
}
