//! The generation loop: prefill the prompt, then sample one token at a time with a
//! preallocated cache, streaming text as it becomes final and stopping on EOS, a stop
//! string or the token budget.

use crate::error::{Error, Result};
use crate::sampler::{Sampler, SamplingParams};
use ethos_model::hooks::ResidualHook;
use ethos_model::tokenizer::StreamDecoder;
use ethos_model::{LastLogits, Model};
use std::time::Instant;

#[derive(Clone, Debug, Default)]
pub struct GenerateOptions {
    pub max_tokens: usize,
    pub stop: Vec<String>,
    pub ignore_eos: bool,
}

/// One generation: a prompt as token ids, how to sample and when to stop.
#[derive(Clone, Debug, Default)]
pub struct GenerateRequest {
    pub prompt: Vec<u32>,
    pub sampling: SamplingParams,
    pub limits: GenerateOptions,
}

impl GenerateRequest {
    pub fn new(prompt: Vec<u32>, sampling: SamplingParams, limits: GenerateOptions) -> Self {
        Self {
            prompt,
            sampling,
            limits,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    Eos,
    Stop,
    Length,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct Generation {
    pub text: String,
    pub token_ids: Vec<u32>,
    /// Each token's log-prob under the model's own distribution (before steering and
    /// sampling changed the logits): the bits `ethos score` gives for the same text.
    pub token_logprobs: Vec<f32>,
    pub prompt_tokens: usize,
    pub finish_reason: FinishReason,
    pub prefill_seconds: f64,
    pub decode_seconds: f64,
}

/// Runs the prompt through `cache` (one row, from position 0): the logits after its last token.
fn prefill<'h>(
    model: &Model,
    prompt_ids: &[u32],
    cache: &mut ethos_model::KvCache,
    hook: Option<&mut (dyn ResidualHook + 'h)>,
) -> Result<Vec<f32>> {
    let positions: Vec<i32> = (0..prompt_ids.len() as i32).collect();
    one_row(
        model
            .decoder
            .forward_last(&[prompt_ids.to_vec()], &[positions], cache, hook)?,
    )
}

/// Generates for `req` with `sampler` (`Session::generate`).
pub(crate) fn run_generate<'h>(
    model: &Model,
    req: &GenerateRequest,
    mut sampler: Sampler<'_>,
    mut hook: Option<&mut (dyn ResidualHook + 'h)>,
    on_text: &mut dyn FnMut(&str),
) -> Result<Generation> {
    let (prompt_ids, opts) = (req.prompt.as_slice(), &req.limits);
    sampler.params().validate_for(model.config().vocab_size)?;
    check_request(model, prompt_ids, opts)?;
    let tokenizer = model.tokenizer()?;
    let mut prompt_cache = model.decoder.new_cache(1, prompt_ids.len())?;
    let mut context: Vec<u32> = prompt_ids.to_vec();
    let mut stream = StreamDecoder::new();
    let mut text = String::new();
    let mut emitted = 0usize;
    let hold = opts.stop.iter().map(String::len).max().unwrap_or(0);

    let t0 = Instant::now();
    let mut logits = prefill(model, prompt_ids, &mut prompt_cache, hook.as_deref_mut())?;
    let mut cache = prompt_cache.fork_rows(&[0], opts.max_tokens)?;
    drop(prompt_cache);
    let prefill_seconds = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    let mut generated = Vec::new();
    let mut token_logprobs = Vec::new();
    let mut finish = FinishReason::Length;
    while generated.len() < opts.max_tokens {
        let lse = ethos_model::logprobs::log_sum_exp(&logits);
        let model_logits = logits.clone();
        let tok = sampler.sample(&context, &mut logits)?;
        if !opts.ignore_eos && model.eos_ids().contains(&tok) {
            finish = FinishReason::Eos;
            break;
        }
        generated.push(tok);
        token_logprobs.push(model_logits[tok as usize] - lse);
        context.push(tok);
        text.push_str(&stream.push(tokenizer, tok)?);
        if let Some(cut) = opts.stop.iter().filter_map(|s| text.find(s.as_str())).min() {
            text.truncate(cut);
            finish = FinishReason::Stop;
            break;
        }
        // Hold back what could still become the start of a stop string.
        let safe = floor_char_boundary(&text, text.len().saturating_sub(hold.saturating_sub(1)));
        if safe > emitted {
            on_text(&text[emitted..safe]);
            emitted = safe;
        }
        if generated.len() == opts.max_tokens {
            break;
        }
        let pos = (context.len() - 1) as i32;
        logits = one_row(model.decoder.forward_last(
            &[vec![tok]],
            &[vec![pos]],
            &mut cache,
            hook.as_deref_mut(),
        )?)?;
    }
    if text.len() > emitted {
        on_text(&text[emitted..]);
    }
    Ok(Generation {
        text,
        token_ids: generated,
        token_logprobs,
        prompt_tokens: prompt_ids.len(),
        finish_reason: finish,
        prefill_seconds,
        decode_seconds: t1.elapsed().as_secs_f64(),
    })
}

/// Generates one continuation of `prompt_ids` per sampler (each with its own seed) in one
/// batch: the prompt runs once, its cache is copied to every row, and the rows decode
/// together, leaving the batch as they finish. Row j is the same draw as `run_generate` with
/// `samplers[j]`, bit for bit: a row's logits do not depend on the rows beside it.
pub(crate) fn run_generate_batch<'h>(
    model: &Model,
    prompt_ids: &[u32],
    mut samplers: Vec<Sampler<'_>>,
    opts: &GenerateOptions,
    mut hook: Option<&mut (dyn ResidualHook + 'h)>,
) -> Result<Vec<Generation>> {
    for s in &samplers {
        s.params().validate_for(model.config().vocab_size)?;
    }
    check_request(model, prompt_ids, opts)?;
    if samplers.is_empty() || opts.max_tokens == 0 {
        return Ok(samplers
            .iter()
            .map(|_| Generation {
                text: String::new(),
                token_ids: vec![],
                token_logprobs: vec![],
                prompt_tokens: prompt_ids.len(),
                finish_reason: FinishReason::Length,
                prefill_seconds: 0.0,
                decode_seconds: 0.0,
            })
            .collect());
    }
    check_batch_fits(model, samplers.len(), prompt_ids.len() + opts.max_tokens)?;
    let tokenizer = model.tokenizer()?;
    let t0 = Instant::now();
    let mut prompt_cache = model.decoder.new_cache(1, prompt_ids.len())?;
    let first = prefill(model, prompt_ids, &mut prompt_cache, hook.as_deref_mut())?;
    let prefill_seconds = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    let n = samplers.len();
    let mut cache = prompt_cache.fork_rows(&vec![0; n], opts.max_tokens)?;
    let mut streams: Vec<StreamDecoder> = (0..n).map(|_| StreamDecoder::new()).collect();
    let mut texts = vec![String::new(); n];
    let mut generated: Vec<Vec<u32>> = vec![Vec::new(); n];
    let mut token_logprobs: Vec<Vec<f32>> = vec![Vec::new(); n];
    let mut finish = vec![FinishReason::Length; n];
    // The rows still decoding, in the order of the cache's rows, and their logits.
    let mut active: Vec<usize> = (0..n).collect();
    let mut logits: Vec<Vec<f32>> = vec![first; n];
    let mut context: Vec<u32> = prompt_ids.to_vec();
    for step in 0..opts.max_tokens {
        let mut next = Vec::with_capacity(active.len());
        let mut still = Vec::with_capacity(active.len());
        for (slot, &r) in active.iter().enumerate() {
            context.truncate(prompt_ids.len());
            context.extend_from_slice(&generated[r]);
            let lse = ethos_model::logprobs::log_sum_exp(&logits[slot]);
            let model_logits = logits[slot].clone();
            let tok = samplers[r].sample(&context, &mut logits[slot])?;
            if !opts.ignore_eos && model.eos_ids().contains(&tok) {
                finish[r] = FinishReason::Eos;
                continue;
            }
            generated[r].push(tok);
            token_logprobs[r].push(model_logits[tok as usize] - lse);
            texts[r].push_str(&streams[r].push(tokenizer, tok)?);
            if let Some(cut) = opts
                .stop
                .iter()
                .filter_map(|s| texts[r].find(s.as_str()))
                .min()
            {
                texts[r].truncate(cut);
                finish[r] = FinishReason::Stop;
                continue;
            }
            next.push(tok);
            still.push(slot);
        }
        if still.is_empty() || step + 1 == opts.max_tokens {
            break;
        }
        if still.len() < active.len() {
            cache = cache.fork_rows(&still, opts.max_tokens - step - 1)?;
            active = still.iter().map(|&slot| active[slot]).collect();
        }
        let pos = (prompt_ids.len() + step) as i32;
        logits = model
            .decoder
            .forward_last(
                &next.iter().map(|&t| vec![t]).collect::<Vec<_>>(),
                &vec![vec![pos]; next.len()],
                &mut cache,
                hook.as_deref_mut(),
            )?
            .rows()?;
    }
    let decode_seconds = t1.elapsed().as_secs_f64();
    Ok((0..n)
        .map(|r| Generation {
            text: std::mem::take(&mut texts[r]),
            token_ids: std::mem::take(&mut generated[r]),
            token_logprobs: std::mem::take(&mut token_logprobs[r]),
            prompt_tokens: prompt_ids.len(),
            finish_reason: finish[r],
            prefill_seconds,
            decode_seconds,
        })
        .collect())
}

/// A prompt that is empty or leaves no room for `max_tokens` in the context, and an empty
/// stop string, are refused.
fn check_request(model: &Model, prompt_ids: &[u32], opts: &GenerateOptions) -> Result<()> {
    if prompt_ids.is_empty() {
        return Err(Error::Msg("the prompt is empty".into()));
    }
    if opts.stop.iter().any(String::is_empty) {
        return Err(Error::Input(
            "stop: an empty stop string would end every generation at once".into(),
        ));
    }
    let ctx = model.decoder.max_positions();
    if prompt_ids.len() + opts.max_tokens > ctx {
        return Err(Error::Limit(format!(
            "prompt of {} tokens + max_tokens {} exceeds the context length {ctx}",
            prompt_ids.len(),
            opts.max_tokens
        )));
    }
    Ok(())
}

/// Refuses a batch whose KV cache and per-row logits would not fit in memory: each row holds
/// a cache of `tokens` and a few vocabulary-wide buffers (logits, the sampler's scratch).
pub(crate) fn check_batch_fits(model: &Model, rows: usize, tokens: usize) -> Result<()> {
    let decoder = &model.decoder;
    let per_row = (decoder.kv_shape().bytes_per_token(decoder.dtype) as u64)
        .saturating_mul(tokens as u64)
        .saturating_add(3 * 4 * model.config().vocab_size as u64);
    ethos_model::budget::check_fits(
        &format!("a batch of {rows} generations of up to {tokens} tokens"),
        per_row.saturating_mul(rows as u64),
        "ask for fewer candidates (--candidates) or tokens (--max-tokens)",
    )?;
    Ok(())
}

/// The logits of a one-row step.
fn one_row(l: LastLogits) -> Result<Vec<f32>> {
    Ok(l.0.squeeze(0)?.to_vec1::<f32>()?)
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}
