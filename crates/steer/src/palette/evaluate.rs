//! `ethos steer evaluate`: what each decoding mode realises on held-out prompts, next to the
//! base model and the targets, as MAP's tables report it: per value the mean reward of the
//! chosen responses with its 95 % interval (normal, over prompts), and tokens/s.
//!
//! Token mode first recalibrates lambda by dual ascent on the realised levels (on prompts of
//! its own, not the held-out ones): lambda_k <- max(0, lambda_k - step * (level_k - target_k) /
//! var_k) for every targeted value, `rounds` times (Robbins-Monro on the Lagrangian; the
//! variance makes one step size fit rewards of any scale; see `dual_step` for its guards).

use super::decode::{LambdaFile, PaletteDecoder, PaletteMode};
use super::fit::prompt_ids;
use crate::error::{Error, Result};
use crate::generate::GenerateOptions;
use crate::sampler::SamplingParams;
use crate::session::{GenerateRequest, Session};
use ethos_model::Model;
use std::time::Instant;

#[derive(Clone, Debug)]
pub struct EvaluateOptions {
    pub chat: bool,
    pub params: SamplingParams,
    pub generate: GenerateOptions,
    pub candidates: usize,
    pub token_k: usize,
    /// `base`, `resample`, `best-of-n`, `token`.
    pub modes: Vec<String>,
    pub calibration_prompts: Vec<String>,
    pub calibration_rounds: usize,
    pub calibration_step: f64,
}

/// A mean and the half-width of its 95 % interval.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct Level {
    pub mean: f64,
    pub half_width: f64,
}

impl Level {
    pub fn of(xs: &[f64]) -> Self {
        let n = xs.len() as f64;
        let mean = xs.iter().sum::<f64>() / n.max(1.0);
        let var = if xs.len() > 1 {
            xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)
        } else {
            0.0
        };
        Self {
            mean,
            half_width: 1.96 * (var / n.max(1.0)).sqrt(),
        }
    }
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct ModeResult {
    pub mode: String,
    /// Per value (in `values` order).
    pub levels: Vec<Level>,
    /// The lambda the mode decoded with (token: after calibration).
    pub lambda: Vec<f64>,
    pub tokens_per_second: f64,
    pub responses: Vec<String>,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct Evaluation {
    pub values: Vec<String>,
    pub targets: Vec<Option<f64>>,
    pub modes: Vec<ModeResult>,
    /// Token mode's lambda after each calibration round, and the levels it realised.
    pub calibration: Vec<(Vec<f64>, Vec<f64>)>,
}

/// Decodes every prompt in `mode` with `lambda`; the rewards of every value of `lambda` for
/// each chosen response (rows: prompts) and tokens/s.
fn run_mode(
    model: &Model,
    lambda: &LambdaFile,
    mode: &str,
    prompts: &[String],
    o: &EvaluateOptions,
) -> Result<(Vec<Vec<f64>>, f64, Vec<String>)> {
    let all: Vec<String> = lambda.lambda.iter().map(|(n, _)| n.clone()).collect();
    let pmode = match mode {
        "base" => PaletteMode::Resample,
        m => PaletteMode::parse(m, o.token_k).ok_or_else(|| {
            Error::Msg(format!(
                "mode `{m}`: not one of base, resample, best-of-n, token"
            ))
        })?,
    };
    // Base: lambda 0 and one candidate, i.e. plain sampling, scored on every value.
    let (lambda_used, candidates) = if mode == "base" {
        let zero = LambdaFile {
            lambda: lambda
                .lambda
                .iter()
                .map(|(n, _)| (n.clone(), 0.0))
                .collect(),
            ..lambda.clone()
        };
        (zero, 1)
    } else {
        (lambda.clone(), o.candidates)
    };
    let mut dec = PaletteDecoder::with_values(&lambda_used, model, pmode, candidates, &all)?;
    let mut rows = Vec::with_capacity(prompts.len());
    let mut texts = Vec::with_capacity(prompts.len());
    let bar = indicatif::ProgressBar::new(prompts.len() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg} {bar:30} {pos}/{len} prompts, {eta} left")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar.set_message(mode.to_string());
    let (mut tokens, start) = (0usize, Instant::now());
    for (i, p) in prompts.iter().enumerate() {
        let ids = prompt_ids(model, p, o.chat)?;
        let params = SamplingParams {
            seed: o.params.seed.wrapping_add(1000 * i as u64),
            ..o.params.clone()
        };
        let req = GenerateRequest::new(ids, params, o.generate.clone());
        let (cands, pick) = dec.generate(&mut Session::new(model), p, &req)?;
        tokens += cands
            .iter()
            .map(|c| c.generation.token_ids.len())
            .sum::<usize>();
        rows.push(cands[pick].rewards.clone());
        texts.push(cands[pick].generation.text.clone());
        bar.inc(1);
    }
    bar.finish_and_clear();
    let tps = tokens as f64 / start.elapsed().as_secs_f64().max(1e-9);
    Ok((rows, tps, texts))
}

/// One dual-ascent step for a value whose realised rewards were `xs` against `target`:
/// lambda - step * (mean - target) / var, with the variance floored at (0.1 (1 + |target|))^2
/// (a reward that barely varies on a few prompts must not send lambda off) and the change
/// kept within lambda + 1 either way; never below 0.
pub fn dual_step(lambda: f64, xs: &[f64], target: f64, step: f64) -> f64 {
    let n = xs.len().max(1) as f64;
    let mean = xs.iter().sum::<f64>() / n;
    let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
    let floor = (0.1 * (1.0 + target.abs())).powi(2);
    let change = (-step * (mean - target) / var.max(floor)).clamp(-(lambda + 1.0), lambda + 1.0);
    (lambda + change).max(0.0)
}

fn levels(rows: &[Vec<f64>], k: usize) -> Vec<f64> {
    rows.iter().map(|r| r[k]).collect()
}

pub fn evaluate(
    model: &Model,
    lambda: &LambdaFile,
    prompts: &[String],
    o: &EvaluateOptions,
) -> Result<Evaluation> {
    let values: Vec<String> = lambda.lambda.iter().map(|(n, _)| n.clone()).collect();
    let targets: Vec<Option<f64>> = values
        .iter()
        .map(|v| lambda.targets.iter().find(|(n, _)| n == v).map(|t| t.1))
        .collect();
    if prompts.is_empty() {
        return Err(Error::Msg("no evaluation prompts".into()));
    }
    let mut modes = Vec::new();
    let mut calibration = Vec::new();
    for mode in &o.modes {
        let mut lf = lambda.clone();
        if mode == "token" && o.calibration_rounds > 0 {
            if o.calibration_prompts.is_empty() {
                return Err(Error::Msg(
                    "token-mode calibration needs --calibration-prompts (prompts apart from the held-out ones)"
                        .into(),
                ));
            }
            if targets.iter().all(Option::is_none) {
                return Err(Error::Msg(
                    "the lambda file records no targets to calibrate towards".into(),
                ));
            }
            for _ in 0..o.calibration_rounds {
                let (rows, _, _) = run_mode(model, &lf, "token", &o.calibration_prompts, o)?;
                let mut realised = Vec::new();
                for (k, (_, l)) in lf.lambda.iter_mut().enumerate() {
                    let xs = levels(&rows, k);
                    let lv = Level::of(&xs);
                    realised.push(lv.mean);
                    if let Some(c) = targets[k] {
                        *l = dual_step(*l, &xs, c, o.calibration_step);
                    }
                }
                calibration.push((lf.lambda.iter().map(|x| x.1).collect(), realised));
            }
        }
        let (rows, tps, texts) = run_mode(model, &lf, mode, prompts, o)?;
        modes.push(ModeResult {
            mode: mode.clone(),
            levels: (0..values.len())
                .map(|k| Level::of(&levels(&rows, k)))
                .collect(),
            lambda: if mode == "base" {
                vec![0.0; values.len()]
            } else {
                lf.lambda.iter().map(|x| x.1).collect()
            },
            tokens_per_second: tps,
            responses: texts,
        });
    }
    Ok(Evaluation {
        values,
        targets,
        modes,
        calibration,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dual_step_moves_towards_the_target_and_is_guarded() {
        // Below target: lambda rises; above: it falls; never below 0.
        assert!(dual_step(1.0, &[0.0, 1.0], 2.0, 0.5) > 1.0);
        assert!(dual_step(1.0, &[3.0, 4.0], 2.0, 0.5) < 1.0);
        assert_eq!(dual_step(0.1, &[9.0, 9.5], 0.0, 0.5), 0.0);
        // A reward that never varies: the floored variance keeps the step bounded.
        let l = dual_step(0.3, &[0.0, 0.0, 0.0], 0.07, 0.5);
        assert!(l > 0.3 && l <= 0.3 + 1.3, "{l}");
    }
}
