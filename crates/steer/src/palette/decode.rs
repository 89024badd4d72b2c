//! Decoding with a palette: the lambda a solve found, turned into a choice among sampled
//! candidates.
//!
//! - `resample`: M candidates from the base model, one drawn with probability proportional to
//!   exp(lambda . r): MAP's own decoding (sampling-importance-resampling; exact as M grows);
//! - `best-of-n`: the candidate with the largest lambda . r (MAP's refactored code);
//! - `token`: one response, its top-K candidate tokens weighted by lambda . r at every step
//!   (`token.rs`); its lambda is usually recalibrated (`calibrate`) since a token-level tilt
//!   does not realise MAP's sequence-level one.
//!
//! Candidate j is sampled with seed `seed + j`; the draw uses its own stream of the request's
//! seed, so one seed gives one answer. The candidates decode together in one batch
//! (`Session::generate_batch`): the prompt runs once and each step is one batched forward pass.

use super::token::TokenPalette;
use crate::error::{Error, Result};
use crate::generate::Generation;
use crate::rewards::{build_on, Pair, Reward, Scorer};
use crate::rng::Rng;
use crate::sampler::SamplingParams;
use crate::session::{GenerateRequest, Session};
use ethos_model::Model;
use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::rc::Rc;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PaletteMode {
    Resample,
    BestOfN,
    /// Logit weighting of the top `k` candidates at every step.
    Token {
        k: usize,
    },
}

impl PaletteMode {
    /// `resample`, `best-of-n` or `token` (with `token_k` candidates per step).
    pub fn parse(s: &str, token_k: usize) -> Option<Self> {
        match s {
            "resample" => Some(Self::Resample),
            "best-of-n" => Some(Self::BestOfN),
            "token" => Some(Self::Token { k: token_k }),
            _ => None,
        }
    }
}

/// A lambda file (`steer solve/fit --lambda-out`): lambda per value and the palette that
/// defines their rewards.
#[derive(Clone, Debug)]
pub struct LambdaFile {
    pub lambda: Vec<(String, f64)>,
    pub palette: PathBuf,
    /// The target level of each targeted value, when the file records them.
    pub targets: Vec<(String, f64)>,
}

impl LambdaFile {
    pub fn read(path: &Path) -> Result<Self> {
        let file = path.display();
        // Told from its name alone: no need to read a palette to refuse it.
        if path.extension().is_some_and(|e| e == "toml") {
            return Err(Error::Msg(format!(
                "{file}: a palette file, not a lambda file; solve it first (`ethos steer fit` or `steer solve` with --lambda-out L.json) and pass L.json"
            )));
        }
        let text = ethos_model::files::read_text(path)?;
        let v: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| Error::Msg(format!("{file}: not JSON: {e}")))?;
        let map = v["lambda"]
            .as_object()
            .ok_or_else(|| Error::Msg(format!("{file}: no \"lambda\" object")))?;
        let mut lambda = Vec::new();
        for (k, x) in map {
            let x = x
                .as_f64()
                .filter(|x| x.is_finite() && *x >= 0.0)
                .ok_or_else(|| {
                    Error::Msg(format!("{file}: lambda of `{k}` is not a number >= 0"))
                })?;
            lambda.push((k.clone(), x));
        }
        let palette = v["palette"]
            .as_str()
            .ok_or_else(|| Error::Msg(format!("{file}: no \"palette\" path")))?;
        // Relative palette paths are relative to the lambda file.
        let palette = path.parent().unwrap_or(Path::new("")).join(palette);
        let targets = v["targets"]
            .as_object()
            .map(|m| {
                m.iter()
                    .filter_map(|(k, x)| x.as_f64().map(|x| (k.clone(), x)))
                    .collect()
            })
            .unwrap_or_default();
        Ok(Self {
            lambda,
            palette,
            targets,
        })
    }
}

pub struct Candidate {
    pub generation: Generation,
    /// Rewards in the order of `PaletteDecoder::values`.
    pub rewards: Vec<f64>,
    /// lambda . r
    pub score: f64,
    /// The probability `resample` gave it.
    pub weight: f64,
}

/// Candidates weighed by a palette: each one's rewards, lambda . r and resampling weight,
/// and the one picked.
pub struct Weighed {
    /// Per candidate, its rewards in the order of `PaletteDecoder::values`.
    pub rewards: Vec<Vec<f64>>,
    pub scores: Vec<f64>,
    pub weights: Vec<f64>,
    pub pick: usize,
}

pub struct PaletteDecoder<'m> {
    /// The model candidates are drawn from (none when they come from a server).
    model: Option<&'m Model>,
    values: Vec<String>,
    pub lambda: Vec<f64>,
    rewards: Rc<RefCell<Vec<Box<dyn Reward + 'm>>>>,
    pub mode: PaletteMode,
    pub candidates: usize,
}

impl<'m> PaletteDecoder<'m> {
    /// The rewards of every value with a positive lambda, as the lambda file's palette defines
    /// them, run on `model` where they need one.
    pub fn new(
        lambda: &LambdaFile,
        model: &'m Model,
        mode: PaletteMode,
        candidates: usize,
    ) -> Result<Self> {
        Self::with_values(lambda, model, mode, candidates, &[])
    }

    /// As `new`, also computing the rewards of `also` (values whose lambda may be 0 now but
    /// may change, as calibration does).
    pub fn with_values(
        lambda: &LambdaFile,
        model: &'m Model,
        mode: PaletteMode,
        candidates: usize,
        also: &[String],
    ) -> Result<Self> {
        Self::on(lambda, Scorer::Local(model), mode, candidates, also)
    }

    /// As `with_values`, with the model-based rewards on `scorer` (a served model: its
    /// candidates are drawn by the caller and weighed with `weigh`).
    pub fn on(
        lambda: &LambdaFile,
        scorer: Scorer<'m>,
        mode: PaletteMode,
        candidates: usize,
        also: &[String],
    ) -> Result<Self> {
        if candidates == 0 {
            return Err(Error::Msg("--candidates must be at least 1".into()));
        }
        let pfile = lambda.palette.display().to_string();
        let palette = super::Palette::read(&lambda.palette)?;
        let specs = palette.reward_specs(&pfile)?;
        let active: Vec<&(String, f64)> = lambda
            .lambda
            .iter()
            .filter(|(n, x)| *x > 0.0 || also.contains(n))
            .collect();
        let mut chosen = Vec::new();
        for (name, _) in &active {
            let spec = specs.iter().find(|s| &s.name == name).ok_or_else(|| {
                Error::Msg(format!(
                    "{pfile}: value `{name}` has a lambda but no reward definition to decode with"
                ))
            })?;
            chosen.push(spec.clone());
        }
        Ok(Self {
            model: match scorer {
                Scorer::Local(m) => Some(m),
                Scorer::Remote { .. } => None,
            },
            values: active.iter().map(|(n, _)| n.clone()).collect(),
            lambda: active.iter().map(|(_, x)| *x).collect(),
            rewards: Rc::new(RefCell::new(build_on(&chosen, scorer, &palette.dir)?)),
            mode,
            candidates,
        })
    }

    pub fn values(&self) -> &[String] {
        &self.values
    }

    /// The rewards of each response to `prompt`, in the order of `values`.
    pub fn rewards_of(&self, prompt: &str, responses: &[String]) -> Result<Vec<Vec<f64>>> {
        let pairs: Vec<Pair> = responses
            .iter()
            .map(|r| Pair {
                prompt: prompt.to_string(),
                response: r.clone(),
            })
            .collect();
        self.rewards
            .borrow_mut()
            .iter_mut()
            .map(|r| r.score(&pairs))
            .collect()
    }

    /// Samples the candidates of `req` through `session` (whose steering they carry) and
    /// picks one: (the candidates, the index picked). `prompt` is the request's text, as the
    /// rewards read it. In `token` mode there is one candidate, decoded with the weighting.
    pub fn generate(
        &mut self,
        session: &mut Session<'_>,
        prompt: &str,
        req: &GenerateRequest,
    ) -> Result<(Vec<Candidate>, usize)> {
        let model = self.model.ok_or_else(|| {
            Error::Msg("this palette decoder weighs a server's candidates; it has no model to draw them from".into())
        })?;
        let (ids, params) = (&req.prompt, &req.sampling);
        let mut gens = Vec::with_capacity(self.candidates);
        if let PaletteMode::Token { k } = self.mode {
            let tp = TokenPalette::new(
                model.tokenizer()?,
                prompt,
                ids.len(),
                self.lambda.clone(),
                self.rewards.clone(),
                k,
            );
            let g = session.generate_with(req, Box::new(tp), &mut |_| {})?;
            gens.push(g);
        } else {
            // Before anything is sized by the count.
            crate::generate::check_batch_fits(
                model,
                self.candidates,
                ids.len() + req.limits.max_tokens,
            )?;
            let params: Vec<SamplingParams> = (0..self.candidates)
                .map(|j| SamplingParams {
                    seed: params.seed.wrapping_add(j as u64),
                    ..params.clone()
                })
                .collect();
            gens = session.generate_batch(ids, &params, &req.limits)?;
        }
        let texts: Vec<String> = gens.iter().map(|g| g.text.clone()).collect();
        let w = self.weigh(prompt, &texts, params.seed)?;
        let candidates = gens
            .into_iter()
            .zip(w.rewards)
            .enumerate()
            .map(|(j, (generation, rewards))| Candidate {
                generation,
                rewards,
                score: w.scores[j],
                weight: w.weights[j],
            })
            .collect();
        Ok((candidates, w.pick))
    }

    /// The rewards of each of `texts` (responses to `prompt`), lambda . r, the resampling
    /// weights, and the candidate this decoder's mode picks (`resample` draws with a stream
    /// seeded by `seed`, apart from the candidates' own).
    pub fn weigh(&mut self, prompt: &str, texts: &[String], seed: u64) -> Result<Weighed> {
        let columns = self.rewards_of(prompt, texts)?;
        let scores: Vec<f64> = (0..texts.len())
            .map(|j| {
                self.lambda
                    .iter()
                    .zip(&columns)
                    .map(|(l, c)| l * c[j])
                    .sum()
            })
            .collect();
        let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let exp: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
        let total: f64 = exp.iter().sum();
        let weights: Vec<f64> = exp.iter().map(|e| e / total).collect();
        let pick = match self.mode {
            PaletteMode::Token { .. } => 0,
            PaletteMode::BestOfN => scores
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1).then(b.0.cmp(&a.0)))
                .map_or(0, |(j, _)| j),
            PaletteMode::Resample => {
                // A stream of its own, apart from the candidates' samplers.
                let u = Rng::new(seed ^ 0x5E_ED0F_7A11_E77E).uniform();
                let mut acc = 0.0;
                weights
                    .iter()
                    .position(|w| {
                        acc += w;
                        u < acc
                    })
                    .unwrap_or(weights.len() - 1)
            }
        };
        Ok(Weighed {
            rewards: (0..texts.len())
                .map(|j| columns.iter().map(|c| c[j]).collect())
                .collect(),
            scores,
            weights,
            pick,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lambda_files_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("lambda.json");
        std::fs::write(&p, r#"{"lambda": {"a": 0.5, "b": 0}, "palette": "p.toml"}"#).unwrap();
        let l = LambdaFile::read(&p).unwrap();
        assert_eq!(
            l.lambda,
            vec![("a".to_string(), 0.5), ("b".to_string(), 0.0)]
        );
        assert_eq!(l.palette, dir.path().join("p.toml"));
        std::fs::write(&p, r#"{"lambda": {"a": -1}, "palette": "p.toml"}"#).unwrap();
        let e = LambdaFile::read(&p).err().unwrap().to_string();
        assert!(e.contains("lambda.json") && e.contains("`a`"), "{e}");
        std::fs::write(&p, r#"{"lambda": {"a": 1}}"#).unwrap();
        let e = LambdaFile::read(&p).err().unwrap().to_string();
        assert!(e.contains("palette"), "{e}");
        // A palette passed where its solved lambda belongs says what to do.
        let t = dir.path().join("respect.toml");
        std::fs::write(&t, "[[value]]\nname = \"a\"\ntarget = 1\n").unwrap();
        let e = LambdaFile::read(&t).err().unwrap().to_string();
        assert!(
            e.contains("respect.toml") && e.contains("--lambda-out"),
            "{e}"
        );
    }
}
