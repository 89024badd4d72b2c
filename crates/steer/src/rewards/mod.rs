//! Rewards: what a value palette steers towards. Each scores (prompt, response) pairs; those
//! that can also score a response extended by each of several candidate next pieces, for
//! token-level decoding.
//!
//! - `lexicon`: weighted words and phrases from a file;
//! - `diversity` and `perplexity`: MAP's definitions;
//! - `lm-judge`: log-odds of "Yes" over "No" from a local model asked a question about the
//!   response;
//! - `classifier`: a sequence-classification reward model's logit.

pub mod classifier;
pub mod diversity;
pub mod judge;
pub mod lexicon;
pub mod perplexity;
pub mod remote;

use crate::error::{Error, Result};
use crate::palette::RewardSpec;
use ethos_model::Model;
use std::path::Path;

/// One prompt and a response to it.
#[derive(Clone, Debug, PartialEq)]
pub struct Pair {
    pub prompt: String,
    pub response: String,
}

pub trait Reward {
    fn name(&self) -> &str;

    /// The reward of each pair.
    fn score(&mut self, pairs: &[Pair]) -> Result<Vec<f64>>;

    /// The reward of `pair` with its response extended by each of `pieces` (the text of
    /// candidate next tokens); `None` when this reward has no cheaper way than `score`.
    fn score_extensions(&mut self, pair: &Pair, pieces: &[String]) -> Option<Result<Vec<f64>>> {
        let _ = (pair, pieces);
        None
    }
}

/// MAP's diversity of the full text.
pub struct Diversity;

impl Reward for Diversity {
    fn name(&self) -> &str {
        "diversity"
    }
    fn score(&mut self, pairs: &[Pair]) -> Result<Vec<f64>> {
        Ok(pairs
            .iter()
            .map(|p| diversity::diversity(&format!("{}{}", p.prompt, p.response)))
            .collect())
    }
    fn score_extensions(&mut self, pair: &Pair, pieces: &[String]) -> Option<Result<Vec<f64>>> {
        Some(Ok(pieces
            .iter()
            .map(|s| diversity::diversity(&format!("{}{}{s}", pair.prompt, pair.response)))
            .collect()))
    }
}

/// Where the model-based rewards (lm-judge, perplexity) run.
#[derive(Clone, Copy)]
pub enum Scorer<'a> {
    /// A model loaded here: the generating model.
    Local(&'a Model),
    /// A served model (perplexity is the served model's); lm-judge asks it too, unless a
    /// local `judge` model is given.
    Remote {
        served: remote::Served<'a>,
        judge: Option<&'a Model>,
    },
}

/// The rewards of `specs`, model-based ones run on `model`; files are relative to `dir`.
pub fn build<'m>(
    specs: &[RewardSpec],
    model: &'m Model,
    dir: &Path,
) -> Result<Vec<Box<dyn Reward + 'm>>> {
    build_on(specs, Scorer::Local(model), dir)
}

/// `build`, with the model-based rewards on `scorer`.
pub fn build_on<'a>(
    specs: &[RewardSpec],
    scorer: Scorer<'a>,
    dir: &Path,
) -> Result<Vec<Box<dyn Reward + 'a>>> {
    specs
        .iter()
        .map(|s| -> Result<Box<dyn Reward + 'a>> {
            let question = s.question.as_deref().unwrap_or("");
            Ok(match s.kind.as_str() {
                "lm-judge" => match scorer {
                    Scorer::Local(model)
                    | Scorer::Remote {
                        judge: Some(model), ..
                    } => Box::new(judge::LmJudge::new(&s.name, model, question)),
                    Scorer::Remote {
                        served,
                        judge: None,
                    } => Box::new(remote::RemoteJudge::new(&s.name, question, served)?),
                },
                "lexicon" => {
                    let f = s.file.as_deref().unwrap_or(Path::new(""));
                    Box::new(lexicon::Lexicon::read(&s.name, &dir.join(f))?)
                }
                "classifier" => {
                    let f = s.model.as_deref().unwrap_or(Path::new(""));
                    Box::new(classifier::Classifier::load(
                        &s.name,
                        &dir.join(f),
                        s.label,
                        s.template.as_deref(),
                    )?)
                }
                "perplexity" => match scorer {
                    Scorer::Local(model) => {
                        Box::new(Named(s.name.clone(), perplexity::Perplexity::new(model)))
                    }
                    Scorer::Remote { served, .. } => {
                        Box::new(Named(s.name.clone(), remote::RemotePerplexity(served)))
                    }
                },
                "diversity" => Box::new(Named(s.name.clone(), Diversity)),
                other => {
                    return Err(Error::Msg(format!(
                        "reward `{}`: unknown kind `{other}`",
                        s.name
                    )))
                }
            })
        })
        .collect()
}

/// A built-in reward under the name a palette gives it.
struct Named<R>(String, R);

impl<R: Reward> Reward for Named<R> {
    fn name(&self) -> &str {
        &self.0
    }
    fn score(&mut self, pairs: &[Pair]) -> Result<Vec<f64>> {
        self.1.score(pairs)
    }
    fn score_extensions(&mut self, pair: &Pair, pieces: &[String]) -> Option<Result<Vec<f64>>> {
        self.1.score_extensions(pair, pieces)
    }
}
