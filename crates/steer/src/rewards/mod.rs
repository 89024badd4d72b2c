//! Rewards: what a value palette steers towards. Each scores (prompt, response) pairs; those
//! that can also score a response extended by each of several candidate next pieces, for
//! token-level decoding.
//!
//! - `lexicon`: weighted words and phrases from a file;
//! - `diversity` and `perplexity`: MAP's definitions;
//! - `lm-judge`: log-odds of "Yes" over "No" from a local model asked a question about the
//!   response.

pub mod diversity;
pub mod judge;
pub mod lexicon;
pub mod perplexity;

use ethos_model::Result;

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
