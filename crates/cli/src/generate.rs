//! `ethos generate`

use crate::common::{print_json, ControlArgs, ModelArgs, RemoteArgs};
use anyhow::{bail, Context, Result};
use ethos_model::chat::Message;
use ethos_steer::{GenerateOptions, GenerateRequest, SamplingParams};
use std::io::Write;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    #[command(flatten)]
    pub control: ControlArgs,
    #[command(flatten)]
    pub remote: RemoteArgs,
    /// The prompt text (raw, or the user turn with --chat).
    #[arg(long, short = 'p')]
    pub prompt: String,
    /// Wrap the prompt in the model's chat template as one user turn.
    #[arg(long)]
    pub chat: bool,
    /// A system message (with --chat).
    #[arg(long)]
    pub system: Option<String>,
    /// Print one JSON object (text, token ids, timings) instead of streaming text.
    #[arg(long)]
    pub json: bool,
    /// Decode with a palette: the lambda file of `steer solve/fit --lambda-out` (its
    /// palette defines the rewards).
    #[arg(long)]
    pub lambda: Option<std::path::PathBuf>,
    /// resample (MAP: one of the candidates drawn with probability proportional to
    /// exp(lambda . r)), best-of-n (the candidate with the largest lambda . r), or token (the
    /// top --token-candidates tokens weighted by lambda . r at every step).
    #[arg(long, default_value = "resample")]
    pub palette_mode: String,
    /// Candidates sampled per prompt with --lambda (candidate j uses seed + j).
    #[arg(long, default_value_t = 16)]
    pub candidates: usize,
    /// --palette-mode token: candidate tokens weighted per step (the top K by logit).
    #[arg(long, default_value_t = 10)]
    pub token_candidates: usize,
}

#[derive(clap::Args, Debug, Clone)]
pub struct SamplingArgs {
    #[arg(long, default_value_t = 128)]
    pub max_tokens: usize,
    /// 0 = greedy.
    #[arg(long, default_value_t = 0.8)]
    pub temperature: f32,
    #[arg(long, default_value_t = 0)]
    pub top_k: usize,
    #[arg(long, default_value_t = 1.0)]
    pub top_p: f32,
    #[arg(long, default_value_t = 0.0)]
    pub min_p: f32,
    #[arg(long, default_value_t = 1.0)]
    pub repetition_penalty: f32,
    #[arg(long, default_value_t = 0.0)]
    pub presence_penalty: f32,
    #[arg(long, default_value_t = 0.0)]
    pub frequency_penalty: f32,
    /// TOKEN_ID=BIAS, repeatable.
    #[arg(long = "logit-bias", value_name = "ID=BIAS")]
    pub logit_bias: Vec<String>,
    /// Seed of this request's sampler: the same seed gives the same output.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Stop when this text appears (repeatable); it is not included in the output.
    #[arg(long)]
    pub stop: Vec<String>,
    /// Keep generating past the end-of-sequence token.
    #[arg(long)]
    pub ignore_eos: bool,
}

impl SamplingArgs {
    pub fn params(&self) -> Result<SamplingParams> {
        let logit_bias = self
            .logit_bias
            .iter()
            .map(|s| {
                let (id, b) = s
                    .split_once('=')
                    .with_context(|| format!("--logit-bias {s:?}: expected ID=BIAS"))?;
                Ok((
                    id.trim()
                        .parse::<u32>()
                        .with_context(|| format!("--logit-bias {s:?}: bad token id"))?,
                    b.trim()
                        .parse::<f32>()
                        .with_context(|| format!("--logit-bias {s:?}: bad bias"))?,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        let p = SamplingParams {
            temperature: self.temperature,
            top_k: self.top_k,
            top_p: self.top_p,
            min_p: self.min_p,
            repetition_penalty: self.repetition_penalty,
            presence_penalty: self.presence_penalty,
            frequency_penalty: self.frequency_penalty,
            logit_bias,
            seed: self.seed,
        };
        if let Err(e) = p.validate() {
            bail!("{e}");
        }
        Ok(p)
    }

    pub fn options(&self) -> GenerateOptions {
        GenerateOptions {
            max_tokens: self.max_tokens,
            stop: self.stop.clone(),
            ignore_eos: self.ignore_eos,
        }
    }
}

pub fn run(a: Args) -> Result<()> {
    let params = a.sampling.params()?;
    a.remote.check(&a.model)?;
    if a.remote.is_remote() {
        return run_remote(&a, &params);
    }
    let model = a.model.load()?;
    let tok = model.tokenizer()?;
    let text = if a.chat {
        let tmpl = model
            .chat_template
            .as_ref()
            .context("the model has no chat template; drop --chat")?;
        let mut msgs = Vec::new();
        if let Some(s) = &a.system {
            msgs.push(Message::new("system", s));
        }
        msgs.push(Message::new("user", &a.prompt));
        tmpl.render(&msgs, true)?
    } else {
        a.prompt.clone()
    };
    let ids = tok.encode_prompt(&text)?;
    if let Some(path) = &a.lambda {
        return palette_generate(&a, path, &model, &ids, &params);
    }
    let mut out = std::io::stdout();
    let json = a.json;
    let req = GenerateRequest::new(ids, params.clone(), a.sampling.options());
    let g = a.control.session(&model)?.generate(&req, &mut |piece| {
        if !json {
            let _ = out.write_all(piece.as_bytes());
            let _ = out.flush();
        }
    })?;
    if json {
        print_json(&serde_json::json!({
            "text": g.text,
            "token_ids": g.token_ids,
            "token_logprobs": g.token_logprobs,
            "prompt_tokens": g.prompt_tokens,
            "finish_reason": g.finish_reason,
            "seed": params.seed,
            "prefill_seconds": g.prefill_seconds,
            "decode_seconds": g.decode_seconds,
            "decode_tokens_per_second": if g.decode_seconds > 0.0 { g.token_ids.len() as f64 / g.decode_seconds } else { 0.0 },
        }))?;
    } else {
        println!();
    }
    Ok(())
}

fn palette_generate(
    a: &Args,
    path: &std::path::Path,
    model: &ethos_model::Model,
    ids: &[u32],
    params: &SamplingParams,
) -> Result<()> {
    use ethos_steer::palette::decode::{LambdaFile, PaletteDecoder, PaletteMode};
    let Some(mode) = PaletteMode::parse(&a.palette_mode, a.token_candidates) else {
        bail!(
            "--palette-mode {}: not one of resample, best-of-n, token",
            a.palette_mode
        );
    };
    let lambda = LambdaFile::read(path)?;
    let mut dec = PaletteDecoder::new(&lambda, model, mode, a.candidates)?;
    let req = GenerateRequest::new(ids.to_vec(), params.clone(), a.sampling.options());
    let (cands, pick) = dec.generate(&mut a.control.session(model)?, &a.prompt, &req)?;
    if a.json {
        let values = dec.values();
        return print_json(&serde_json::json!({
            "text": cands[pick].generation.text,
            "chosen": pick,
            "mode": a.palette_mode,
            "seed": params.seed,
            "candidates": cands.iter().map(|c| serde_json::json!({
                "text": c.generation.text,
                "rewards": values.iter().cloned().zip(c.rewards.iter().copied()).collect::<std::collections::BTreeMap<_, _>>(),
                "score": c.score,
                "weight": c.weight,
            })).collect::<Vec<_>>(),
        }));
    }
    println!("{}", cands[pick].generation.text);
    Ok(())
}

/// `ethos generate --backend openai`: the same sampling parameters, sent to the server
/// (`/v1/chat/completions` with `--chat`, else `/v1/completions` on the server's tokens of
/// the prompt); the answer is printed when it is complete.
fn run_remote(a: &Args, params: &SamplingParams) -> Result<()> {
    if !a.control.control_vector.is_empty() {
        bail!("--control-vector steers a model run here; with --backend openai the weights are the server's (ethos serve takes `control_vectors` per request)");
    }
    let backend = a.remote.backend()?;
    let client = &backend.client;
    let default = |v: f32, d: f32| (v != d).then_some(v as f64);
    let remote = ethos_remote::CompletionParams {
        max_tokens: a.sampling.max_tokens,
        temperature: Some(params.temperature as f64),
        top_p: default(params.top_p, 1.0),
        top_k: (params.top_k > 0).then_some(params.top_k),
        min_p: default(params.min_p, 0.0),
        seed: Some(params.seed),
        n: None,
        stop: a.sampling.stop.clone(),
        presence_penalty: default(params.presence_penalty, 0.0),
        frequency_penalty: default(params.frequency_penalty, 0.0),
        repetition_penalty: default(params.repetition_penalty, 1.0),
        logit_bias: params
            .logit_bias
            .iter()
            .map(|&(id, b)| (id, b as f64))
            .collect(),
        ignore_eos: a.sampling.ignore_eos,
    };
    if let Some(path) = &a.lambda {
        return remote_palette(a, path, &backend, remote, params.seed);
    }
    let mut answer = if a.chat {
        let mut msgs = Vec::new();
        if let Some(s) = &a.system {
            msgs.push(("system".to_string(), s.clone()));
        }
        msgs.push(("user".to_string(), a.prompt.clone()));
        client.chat(&msgs, &remote)?
    } else {
        let ids = backend.encoder().encode_text(&a.prompt, true)?;
        client.complete(&ids, &remote)?
    };
    let c = answer.remove(0);
    if a.json {
        let s = client.stats();
        return print_json(&serde_json::json!({
            "text": c.text,
            "finish_reason": c.finish_reason,
            "seed": params.seed,
            "prompt_tokens": s.prompt_tokens,
            "completion_tokens": s.completion_tokens,
            "backend": "openai",
            "served_model": client.model,
        }));
    }
    println!("{}", c.text);
    Ok(())
}

/// `generate --backend openai --lambda L`: the candidates drawn from the server (one request,
/// `n` = `--candidates`, seeded), their rewards computed (perplexity and lm-judge through the
/// server), and one picked by the palette here. Token mode weighs every step's logits, which a
/// server does not give: it runs on a local model.
fn remote_palette(
    a: &Args,
    path: &std::path::Path,
    backend: &ethos_evals::RemoteBackend,
    mut params: ethos_remote::CompletionParams,
    seed: u64,
) -> Result<()> {
    use ethos_steer::palette::decode::{LambdaFile, PaletteDecoder, PaletteMode};
    let mode = match PaletteMode::parse(&a.palette_mode, a.token_candidates) {
        Some(PaletteMode::Token { .. }) => bail!("--palette-mode token weighs the next-token logits at every step, which a server does not return: run it on a local model, or use resample or best-of-n with --backend openai"),
        Some(m) => m,
        None => bail!(
            "--palette-mode {}: not one of resample, best-of-n, token",
            a.palette_mode
        ),
    };
    let lambda = LambdaFile::read(path)?;
    let served = backend.served();
    let scorer = ethos_steer::rewards::Scorer::Remote {
        served,
        judge: None,
    };
    let mut dec = PaletteDecoder::on(&lambda, scorer, mode, a.candidates, &[])?;
    params.n = Some(a.candidates);
    let drawn = if a.chat {
        let mut msgs = Vec::new();
        if let Some(s) = &a.system {
            msgs.push(("system".to_string(), s.clone()));
        }
        msgs.push(("user".to_string(), a.prompt.clone()));
        backend.client.chat(&msgs, &params)?
    } else {
        let ids = backend.encoder().encode_text(&a.prompt, true)?;
        backend.client.complete(&ids, &params)?
    };
    let texts: Vec<String> = drawn.into_iter().map(|c| c.text).collect();
    let w = dec.weigh(&a.prompt, &texts, seed)?;
    if a.json {
        let values = dec.values();
        return print_json(&serde_json::json!({
            "text": texts[w.pick],
            "chosen": w.pick,
            "mode": a.palette_mode,
            "seed": seed,
            "backend": "openai",
            "served_model": backend.client.model,
            "candidates": texts.iter().enumerate().map(|(j, t)| serde_json::json!({
                "text": t,
                "rewards": values.iter().cloned().zip(w.rewards[j].iter().copied()).collect::<std::collections::BTreeMap<_, _>>(),
                "score": w.scores[j],
                "weight": w.weights[j],
            })).collect::<Vec<_>>(),
        }));
    }
    println!("{}", texts[w.pick]);
    Ok(())
}
