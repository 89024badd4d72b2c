//! `ethos bench speed`: prefill, decode and scoring throughput, load time and peak memory,
//! optionally next to llama.cpp's `llama-bench` run on the same file in the same process
//! tree, so speed is always reported as a ratio against a peer measured alongside.

use crate::common::{print_json, ModelArgs};
use anyhow::{bail, Context, Result};
use ethos_model::device::{copy_bandwidth, device_info, nominal_bandwidth};
use ethos_model::scoring::{score, ScoreOptions, ScoreRequest};
use std::process::Command;
use std::time::Instant;

#[derive(clap::Subcommand, Debug)]
pub enum Which {
    /// Tokens per second of prefill, decode and scoring.
    Speed(SpeedArgs),
}

#[derive(clap::Args, Debug)]
pub struct SpeedArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Prompt length of the prefill test (llama-bench's pp).
    #[arg(long, default_value_t = 512)]
    pub prompt_tokens: usize,
    /// Tokens generated in the decode test (llama-bench's tg), from an empty context.
    #[arg(long, default_value_t = 128)]
    pub gen_tokens: usize,
    /// Scoring test: this many sequences ...
    #[arg(long, default_value_t = 16)]
    pub score_seqs: usize,
    /// ... of this many tokens, log-probs of every token.
    #[arg(long, default_value_t = 128)]
    pub score_len: usize,
    /// Repetitions; the median is reported.
    #[arg(long, short = 'r', default_value_t = 3)]
    pub repetitions: usize,
    /// Path of llama.cpp's llama-bench, run on the same GGUF with the same thread count.
    #[arg(long)]
    pub llama_bench: Option<String>,
    /// `dummy`: random weights in the shapes of `--arch`, built on the device (no download);
    /// `file`: load `--model`.
    #[arg(long, default_value = "file", value_parser = ["file", "dummy"])]
    pub load_format: String,
    /// The shapes of `--load-format dummy`: smollm2-135m, llama-3-8b, deepseek-v2-lite,
    /// deepseek-moe-mini.
    #[arg(long)]
    pub arch: Option<String>,
    /// Also time palette decoding with this lambda file (resample and best-of-n with
    /// --palette-candidates candidates, token mode with 10 candidate tokens per step), as
    /// generated tokens per second next to plain decoding of the same prompt.
    #[arg(long)]
    pub lambda: Option<std::path::PathBuf>,
    #[arg(long, default_value_t = 8)]
    pub palette_candidates: usize,
    #[arg(long)]
    pub json: bool,
}

/// Token ids that look like text to the model without needing a tokenizer: a fixed,
/// seeded walk over the lower vocabulary.
fn synthetic_ids(n: usize, vocab: usize, seed: u64) -> Vec<u32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (100 + s % (vocab.min(20_000) as u64 - 100)) as u32
        })
        .collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

pub fn run(w: Which) -> Result<()> {
    let Which::Speed(a) = w;
    if a.repetitions == 0 || a.prompt_tokens == 0 || a.gen_tokens == 0 {
        bail!("--repetitions, --prompt-tokens and --gen-tokens must be at least 1");
    }
    let mut model = match (a.load_format.as_str(), &a.arch) {
        ("dummy", Some(arch)) => {
            if a.model.model.is_some() || a.llama_bench.is_some() || !a.model.lora.is_empty() {
                bail!("--load-format dummy builds random weights: drop --model, --llama-bench and --lora");
            }
            ethos_model::loader::load_dummy(arch, &a.model.options()?)?
        }
        ("dummy", None) => bail!(
            "--load-format dummy needs --arch ({})",
            ethos_model::DUMMY_PRESETS
        ),
        (_, Some(_)) => bail!("--arch needs --load-format dummy"),
        _ => a.model.load()?,
    };
    let d = &model.decoder;
    let device_before = device_info(&d.device);
    let vocab = model.config().vocab_size;
    let threads: usize = std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);

    // Prefill: one sequence of prompt_tokens, last-position logits.
    let prompt = synthetic_ids(a.prompt_tokens, vocab, 1);
    let (prefill_first, prefill) = prefill_rates(d, &prompt, a.repetitions)?;
    let prefill_mem = peak_rss_mib();
    let device_after_prefill = device_info(&d.device);

    let decode = decode_rates(d, &a, a.repetitions)?;
    let scoring = scoring_rates(d, &a, a.repetitions)?;
    let decode_tps = median(decode.clone());
    let device_after = device_info(&d.device);
    let device_memory = device_before.total_bytes.map(|total| {
        let least_free = [device_after_prefill.free_bytes, device_after.free_bytes]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(total);
        (total - least_free) as f64 / (1 << 20) as f64
    });
    let bytes_per_token = decode_bytes_per_token(&model, a.gen_tokens);
    let c = model.config().clone();
    let elem = model.info.dtype.size_in_bytes();
    let kv_cache_bytes = model.decoder.kv_shape().bytes_per_token(model.info.dtype);
    let kv_expanded_bytes = c.expanded_kv_bytes_per_token(elem);
    let prefill_tps = median(prefill);
    // Mixture of experts: the same prefill with each token run through its experts alone.
    let moe_per_token_tps = if c.moe.is_some() {
        model.decoder.kernels.moe_per_token = true;
        let r = prefill_rates(&model.decoder, &prompt, a.repetitions);
        model.decoder.kernels.moe_per_token = false;
        Some(median(r?.1))
    } else {
        None
    };
    let nominal = nominal_bandwidth(&device_before.name);
    let copy = if model.decoder.device.is_cpu() {
        None
    } else {
        Some(copy_bandwidth(&model.decoder.device, 2 << 30, 5)?)
    };
    let fraction = |bw: Option<f64>| bw.map(|bw| decode_tps * bytes_per_token / bw);
    let ours = serde_json::json!({
        "device": device_before.name,
        "device_async_alloc": device_before.async_alloc,
        "device_memory_total_mib": device_before.total_bytes.map(|b| b as f64 / (1 << 20) as f64),
        "device_memory_used_mib": device_memory,
        "decode_bytes_per_token": bytes_per_token,
        "bandwidth_nominal_bytes_per_second": nominal,
        "bandwidth_copy_bytes_per_second": copy,
        "decode_fraction_of_nominal_bandwidth": fraction(nominal),
        "decode_fraction_of_copy_bandwidth": fraction(copy),
        "engine": "ethos",
        "model": model.info.source,
        "weights": model.info.weights,
        "threads": threads,
        "load_seconds": model.info.load_seconds,
        "prefill_first_call_seconds": prefill_first,
        "prefill_tokens_per_second": prefill_tps,
        "moe_per_token_prefill_tokens_per_second": moe_per_token_tps,
        "moe_grouped_vs_per_token_prefill": moe_per_token_tps.map(|p| prefill_tps / p),
        "kv_cache_bytes_per_token": kv_cache_bytes,
        "kv_cache_layout": if c.mla.is_some() { "latent" } else { "per-head keys and values" },
        "kv_expanded_bytes_per_token": kv_expanded_bytes,
        "decode_tokens_per_second": decode_tps,
        "scoring_tokens_per_second": median(scoring),
        "peak_rss_mib_after_prefill": prefill_mem,
        "peak_rss_mib": peak_rss_mib(),
        "prompt_tokens": a.prompt_tokens,
        "gen_tokens": a.gen_tokens,
        "score_tokens": a.score_seqs * a.score_len,
        "repetitions": a.repetitions,
    });
    let palette = match &a.lambda {
        Some(path) => Some(palette_rates(
            &model,
            path,
            a.gen_tokens,
            a.palette_candidates,
        )?),
        None => None,
    };
    let ours = {
        let mut o = ours;
        o["palette_decoding"] = serde_json::to_value(&palette)?;
        o
    };
    let peer = match &a.llama_bench {
        Some(path) => Some(llama_bench(path, &model.info.source, threads, &a)?),
        None => None,
    };
    let base = if a.model.lora.is_empty() {
        None
    } else {
        Some(without_adapters(&a, &prompt, &model.decoder)?)
    };
    let ours = {
        let mut o = ours;
        o["adapters"] = serde_json::to_value(&model.info.adapters)?;
        o["without_adapters"] = serde_json::to_value(&base)?;
        o
    };
    if a.json {
        return print_json(&serde_json::json!({"ethos": ours, "llama_cpp": peer}));
    }
    let f = |k: &str| ours[k].as_f64().unwrap_or(0.0);
    println!(
        "ethos bench speed: {} ({}) on {}, {} threads, median of {}",
        model.info.source, model.info.weights, device_before.name, threads, a.repetitions
    );
    println!(
        "{:<28} {:>12} {:>14} {:>8}",
        "metric", "ethos", "llama.cpp", "ratio"
    );
    let row = |name: &str, ours: f64, peer: Option<f64>| {
        let (p, r) = match peer {
            Some(p) if p > 0.0 => (format!("{p:.1}"), format!("{:.2}x", ours / p)),
            _ => ("-".into(), "-".into()),
        };
        println!("{name:<28} {ours:>12.1} {p:>14} {r:>8}");
    };
    let peer_pp = peer
        .as_ref()
        .and_then(|p| p["pp_tokens_per_second"].as_f64());
    let peer_tg = peer
        .as_ref()
        .and_then(|p| p["tg_tokens_per_second"].as_f64());
    row(
        &format!("prefill pp{} tok/s", a.prompt_tokens),
        f("prefill_tokens_per_second"),
        peer_pp,
    );
    row(
        &format!("decode tg{} tok/s", a.gen_tokens),
        f("decode_tokens_per_second"),
        peer_tg,
    );
    row("scoring tok/s", f("scoring_tokens_per_second"), None);
    if let Some(b) = &base {
        println!(
            "with {} adapter(s) ({}) against the same model without, same run:",
            model.info.adapters.len(),
            if a.model.merge_lora {
                "merged"
            } else {
                "unmerged"
            }
        );
        for name in ["prefill", "decode", "scoring"] {
            let m = &b[name];
            let g = |k: &str| m[k].as_f64().unwrap_or(0.0);
            println!(
                "{:<28} {:>12.1}   with adapters {:.1}, alternated: {:+.1} % (median ratio)",
                format!("{name} without adapters"),
                g("without_adapters_tokens_per_second"),
                g("with_adapters_tokens_per_second"),
                100.0 * (g("ratio_median") - 1.0)
            );
        }
        println!(
            "{:<28} {:>12.1}",
            "adapter load ms",
            1e3 * b["adapter_load_seconds"].as_f64().unwrap_or(0.0)
        );
    }
    if let Some(p) = moe_per_token_tps {
        println!(
            "{:<28} {:>12.1}   grouped by expert is {:.2}x the per-token loop",
            "prefill, per-token experts",
            p,
            prefill_tps / p
        );
    }
    println!(
        "{:<28} {:>12}   ({}; {} bytes if every head's K and V were cached: {:.1}x)",
        "KV cache bytes/token",
        kv_cache_bytes,
        if c.mla.is_some() {
            "latent"
        } else {
            "per-head K and V"
        },
        kv_expanded_bytes,
        kv_expanded_bytes as f64 / kv_cache_bytes as f64
    );
    if let Some(p) = &palette {
        for r in p {
            println!(
                "{:<28} {:>12.1}   {:.3}x plain decoding",
                format!("palette {} tok/s", r["mode"].as_str().unwrap_or("")),
                r["tokens_per_second"].as_f64().unwrap_or(0.0),
                r["ratio_to_plain"].as_f64().unwrap_or(0.0)
            );
        }
    }
    println!("{:<28} {:>12.2}", "load s", f("load_seconds"));
    println!(
        "{:<28} {:>12.2}",
        "first prefill call s",
        f("prefill_first_call_seconds")
    );
    println!("{:<28} {:>12.0}", "peak RSS MiB", f("peak_rss_mib"));
    if let Some(m) = device_memory {
        println!("{:<28} {:>12.0}", "device memory used MiB", m);
    }
    println!("{:<28} {:>12.3e}", "decode bytes/token", bytes_per_token);
    for (name, bw) in [("datasheet", nominal), ("measured copy", copy)] {
        if let (Some(bw), Some(fr)) = (bw, fraction(bw)) {
            println!(
                "decode at {:.1} % of the {name} bandwidth ({:.2} TB/s)",
                100.0 * fr,
                bw / 1e12
            );
        }
    }
    Ok(())
}

/// Decode: `gen_tokens` greedy steps from an empty context, one token at a time; tokens per
/// second of each repetition.
fn decode_rates(d: &ethos_model::Decoder, a: &SpeedArgs, reps: usize) -> Result<Vec<f64>> {
    let vocab = d.config.vocab_size;
    let mut decode = Vec::new();
    for _ in 0..reps {
        let mut cache = d.new_cache(1, a.gen_tokens + 1)?;
        let mut tok = synthetic_ids(1, vocab, 2)[0];
        let t = Instant::now();
        for p in 0..a.gen_tokens {
            let l = d.forward_last(&[vec![tok]], &[vec![p as i32]], &mut cache, None)?;
            tok = l.0.squeeze(0)?.argmax(0)?.to_scalar::<u32>()?;
        }
        decode.push(a.gen_tokens as f64 / t.elapsed().as_secs_f64());
    }
    Ok(decode)
}

/// Scoring: log-probs of every token of `score_seqs` sequences, batched; tokens per second
/// of each repetition.
fn scoring_rates(d: &ethos_model::Decoder, a: &SpeedArgs, reps: usize) -> Result<Vec<f64>> {
    let vocab = d.config.vocab_size;
    let requests: Vec<ScoreRequest> = (0..a.score_seqs)
        .map(|i| {
            let ids = synthetic_ids(a.score_len, vocab, 10 + i as u64);
            ScoreRequest {
                context: ids[..1].to_vec(),
                continuations: vec![ids[1..].to_vec()],
            }
        })
        .collect();
    let mut scoring = Vec::new();
    for _ in 0..reps {
        let t = Instant::now();
        score(d, &requests, &ScoreOptions::default(), None)?;
        scoring.push((a.score_seqs * a.score_len) as f64 / t.elapsed().as_secs_f64());
    }
    Ok(scoring)
}

/// With `--lora`: the adapters' load time, and prefill, decode and scoring of the same model
/// without them, in the same run, alternating with the adapted model's (`adapted`) rep by
/// rep so that both see the same machine; each metric's median rate and the median of the
/// rep-by-rep ratios.
fn without_adapters(
    a: &SpeedArgs,
    prompt: &[u32],
    adapted: &ethos_model::Decoder,
) -> Result<serde_json::Value> {
    let t = Instant::now();
    let adapters =
        ethos_model::lora::Adapters::load(&a.model.adapter_specs()?, a.model.merge_lora)?;
    let adapter_load = t.elapsed().as_secs_f64();
    drop(adapters);
    let base = a.model.without_adapters().load()?;
    let d = &base.decoder;
    prefill_rates(d, prompt, 1)?;
    let mut out = serde_json::json!({"adapter_load_seconds": adapter_load});
    type Rates<'a> = dyn Fn(&ethos_model::Decoder) -> Result<f64> + 'a;
    let metrics: [(&str, Box<Rates>); 3] = [
        (
            "prefill",
            Box::new(|d| Ok(prefill_rates(d, prompt, 1)?.1[0])),
        ),
        ("decode", Box::new(|d| Ok(decode_rates(d, a, 1)?[0]))),
        ("scoring", Box::new(|d| Ok(scoring_rates(d, a, 1)?[0]))),
    ];
    for (name, rate) in metrics {
        let (mut with, mut without, mut ratio) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..a.repetitions {
            let w = rate(adapted)?;
            let b = rate(d)?;
            with.push(w);
            without.push(b);
            ratio.push(w / b);
        }
        out[name] = serde_json::json!({
            "with_adapters_tokens_per_second": median(with),
            "without_adapters_tokens_per_second": median(without),
            "ratio_median": median(ratio),
        });
    }
    Ok(out)
}

/// Generated tokens per second of plain decoding and of each palette mode on one chat
/// prompt (`gen_tokens` per response, EOS ignored so every mode makes the same length).
fn palette_rates(
    model: &ethos_model::Model,
    lambda: &std::path::Path,
    gen_tokens: usize,
    candidates: usize,
) -> Result<Vec<serde_json::Value>> {
    use ethos_steer::palette::decode::{LambdaFile, PaletteDecoder, PaletteMode};
    let lf = LambdaFile::read(lambda)?;
    let prompt = "How should I greet an older relative at a family dinner?";
    let ids = model.tokenizer()?.encode_prompt(prompt)?;
    let params = ethos_steer::SamplingParams {
        top_k: 50,
        seed: 1,
        ..Default::default()
    };
    let opts = ethos_steer::GenerateOptions {
        max_tokens: gen_tokens,
        ignore_eos: true,
        ..Default::default()
    };
    let t = Instant::now();
    let req = ethos_steer::GenerateRequest::new(ids.clone(), params.clone(), opts.clone());
    let g = ethos_steer::Session::new(model).generate(&req, &mut |_| {})?;
    let plain = g.token_ids.len() as f64 / t.elapsed().as_secs_f64();
    let mut out = vec![
        serde_json::json!({"mode": "plain", "tokens_per_second": plain, "ratio_to_plain": 1.0}),
    ];
    for (name, mode) in [
        ("resample", PaletteMode::Resample),
        ("best-of-n", PaletteMode::BestOfN),
        ("token", PaletteMode::Token { k: 10 }),
    ] {
        let mut dec = PaletteDecoder::new(&lf, model, mode, candidates)?;
        let t = Instant::now();
        let (cands, pick) = dec.generate(&mut ethos_steer::Session::new(model), prompt, &req)?;
        let secs = t.elapsed().as_secs_f64();
        // Tokens the user gets per second: one response, however many were sampled for it.
        let tps = cands[pick].generation.token_ids.len() as f64 / secs;
        out.push(serde_json::json!({
            "mode": name, "tokens_per_second": tps, "ratio_to_plain": tps / plain,
            "candidates": cands.len(),
        }));
    }
    Ok(out)
}

/// The first prefill call's seconds and the tokens/s of `repetitions` more.
fn prefill_rates(
    d: &ethos_model::Decoder,
    prompt: &[u32],
    repetitions: usize,
) -> Result<(f64, Vec<f64>)> {
    let pos: Vec<i32> = (0..prompt.len() as i32).collect();
    let mut rates = Vec::new();
    let mut first = 0.0;
    for r in 0..=repetitions {
        let mut cache = d.new_cache(1, prompt.len())?;
        let t = Instant::now();
        d.forward_last(
            &[prompt.to_vec()],
            std::slice::from_ref(&pos),
            &mut cache,
            None,
        )?;
        // GPU work is queued: wait for it before reading the clock.
        d.device.synchronize()?;
        let s = t.elapsed().as_secs_f64();
        // The first run also dequantizes the batched-path weights: reported apart.
        if r == 0 {
            first = s;
        } else {
            rates.push(prompt.len() as f64 / s);
        }
    }
    Ok((first, rates))
}

/// Bytes one decode step reads: every matrix once (the embedding only as the head when tied,
/// one row otherwise, which is left out), plus the KV cache at the mean context of the test.
fn decode_bytes_per_token(model: &ethos_model::Model, gen_tokens: usize) -> f64 {
    let c = model.config();
    let untied_embedding = if c.tie_word_embeddings {
        0
    } else {
        (c.vocab_size * c.hidden_size) as u64
    };
    let params = (c.active_parameter_count() - untied_embedding) as f64;
    let matrices = if model.info.format == "gguf" && !model.info.weights.contains("dequantized") {
        // Quantized: the file's bytes per parameter.
        model.info.file_bytes as f64 / c.parameter_count() as f64 * params
    } else {
        params * model.info.dtype.size_in_bytes() as f64
    };
    let kv =
        model.decoder.kv_shape().bytes_per_token(model.info.dtype) as f64 * gen_tokens as f64 / 2.0;
    matrices + kv
}

/// Runs llama-bench (`-o json`) and returns its pp and tg throughput.
fn llama_bench(
    path: &str,
    model: &str,
    threads: usize,
    a: &SpeedArgs,
) -> Result<serde_json::Value> {
    let out = Command::new(path)
        .args([
            "-m",
            model,
            "-t",
            &threads.to_string(),
            "-p",
            &a.prompt_tokens.to_string(),
            "-n",
            &a.gen_tokens.to_string(),
        ])
        .args(["-r", &a.repetitions.max(3).to_string(), "-o", "json"])
        .output()
        .with_context(|| format!("cannot run {path}"))?;
    if !out.status.success() {
        bail!(
            "{path} failed: {}",
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .last()
                .unwrap_or("")
        );
    }
    let runs: serde_json::Value = serde_json::from_slice(&out.stdout)
        .with_context(|| format!("{path}: output is not JSON"))?;
    let mut pp = None;
    let mut tg = None;
    for r in runs.as_array().into_iter().flatten() {
        let ts = r["avg_ts"].as_f64();
        if r["n_prompt"].as_u64().unwrap_or(0) > 0 && r["n_gen"].as_u64() == Some(0) {
            pp = ts;
        } else if r["n_gen"].as_u64().unwrap_or(0) > 0 {
            tg = ts;
        }
    }
    Ok(
        serde_json::json!({"engine": "llama.cpp llama-bench", "pp_tokens_per_second": pp, "tg_tokens_per_second": tg, "build": runs.get(0).and_then(|r| r.get("build_commit")).cloned()}),
    )
}
