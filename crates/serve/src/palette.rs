//! Palette decoding per request (`"palette"`): the candidates of a solved MAP palette are
//! sampled and one is picked, as `ethos generate --lambda` does. A palette request runs
//! beside the continuous batch, on a blocking thread of its own: its candidates decode as
//! one batch of their own (`PaletteDecoder`), sized against the memory available.

use crate::error::ApiError;
use ethos_model::Model;
use ethos_steer::control::ControlSet;
use ethos_steer::palette::decode::{LambdaFile, PaletteDecoder, PaletteMode};
use ethos_steer::{FinishReason, GenerateOptions, GenerateRequest, SamplingParams, Session};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

/// What a palette request asks for.
#[derive(Clone)]
pub struct PaletteJob {
    pub path: PathBuf,
    pub mode: PaletteMode,
    pub candidates: usize,
    /// The request's text as the rewards read it (the prompt, or the last user message).
    pub reward_prompt: String,
}

pub struct PaletteCandidate {
    pub text: String,
    pub rewards: BTreeMap<String, f64>,
    pub score: f64,
    pub weight: f64,
}

pub struct PaletteOut {
    pub text: String,
    pub tokens: usize,
    pub finish: FinishReason,
    pub chosen: usize,
    pub candidates: Vec<PaletteCandidate>,
}

/// The decoder of the lambda file at `path`; errors in the palette's files name the file
/// inside the server's folder only.
fn decoder<'m>(
    model: &'m Model,
    path: &std::path::Path,
    mode: PaletteMode,
    candidates: usize,
) -> Result<PaletteDecoder<'m>, ApiError> {
    let name = path
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    let in_folder = |e: ethos_steer::Error| {
        let dir = path.parent().map(|d| d.display().to_string());
        let msg = e.to_string();
        let msg = match dir {
            Some(d) if !d.is_empty() => msg.replace(&format!("{d}/"), ""),
            _ => msg,
        };
        ApiError::field("palette", format!("{name}: {msg}"))
    };
    let lambda = LambdaFile::read(path).map_err(in_folder)?;
    PaletteDecoder::new(&lambda, model, mode, candidates).map_err(in_folder)
}

/// The palette's tilt of each prompt's option (its tokens after the first `context[i]`):
/// the option's rewards given the context's text, lambda . r, the option's log-prob (the sum
/// of its prompt log-probs `lps[i]`) and the two added, `log p_lambda(option | context)` up to
/// the context's normaliser, as `ethos score --lambda` gives them (blocking).
pub fn option_scores(
    model: &Model,
    path: &std::path::Path,
    prompts: &[Vec<u32>],
    context: &[usize],
    lps: &[Vec<Option<f32>>],
) -> Result<Vec<serde_json::Value>, ApiError> {
    let mut dec = decoder(model, path, PaletteMode::BestOfN, 1)?;
    let tok = model.tokenizer()?;
    let values = dec.values().to_vec();
    let mut out = Vec::with_capacity(prompts.len());
    for ((ids, &k), lp) in prompts.iter().zip(context).zip(lps) {
        let context_text = tok.decode(&ids[..k])?;
        let option_text = tok.decode(&ids[k..])?;
        let w = dec.weigh(&context_text, &[option_text], 0)?;
        let option_logprob: f64 = lp[k..].iter().map(|x| x.unwrap_or(0.0) as f64).sum();
        let rewards: BTreeMap<String, f64> = values
            .iter()
            .cloned()
            .zip(w.rewards[0].iter().copied())
            .collect();
        out.push(serde_json::json!({
            "context_tokens": k,
            "rewards": rewards,
            "palette_score": w.scores[0],
            "option_logprob": option_logprob,
            "tilted_logprob": option_logprob + w.scores[0],
        }));
    }
    Ok(out)
}

/// Samples the palette's candidates for `prompt` and picks one (blocking).
pub fn generate(
    model: Arc<Model>,
    job: PaletteJob,
    prompt: Vec<u32>,
    sampling: SamplingParams,
    limits: GenerateOptions,
    control: Option<Arc<ControlSet>>,
) -> Result<PaletteOut, ApiError> {
    let mut dec = decoder(&model, &job.path, job.mode, job.candidates)?;
    let mut session = Session::new(&model).with_control(control.as_deref())?;
    let req = GenerateRequest::new(prompt, sampling, limits);
    let (cands, pick) = dec.generate(&mut session, &job.reward_prompt, &req)?;
    let values = dec.values().to_vec();
    let chosen = &cands[pick].generation;
    Ok(PaletteOut {
        text: chosen.text.clone(),
        tokens: chosen.token_ids.len(),
        finish: chosen.finish_reason,
        chosen: pick,
        candidates: cands
            .iter()
            .map(|c| PaletteCandidate {
                text: c.generation.text.clone(),
                rewards: values
                    .iter()
                    .cloned()
                    .zip(c.rewards.iter().copied())
                    .collect(),
                score: c.score,
                weight: c.weight,
            })
            .collect(),
    })
}
