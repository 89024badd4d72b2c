//! Token-level palette decoding (`--palette-mode token`, ARGS-style logit weighting): at each
//! step the top-K candidates by the model's logits get lambda . r(prompt, response + candidate)
//! added to their logits, and every other token is dropped; the sampler then draws as usual.
//! Rewards are evaluated with their cheapest exact path (`Reward::score_extensions`: the
//! lm-judge runs its prompt up to the response once per step, lexicon and diversity rescore
//! text), else by scoring each extended response.
//!
//! This is a logits processor: it sits in step 4 of the sampler's chain. A reward that fails
//! stops the weighting and the error is reported when generation ends (`take_error`).

use crate::error::Result;
use crate::rewards::{Pair, Reward};
use crate::sampler::LogitsProcessor;
use ethos_model::tokenizer::Tokenizer;
use std::cell::RefCell;
use std::rc::Rc;

pub struct TokenPalette<'m> {
    tokenizer: &'m Tokenizer,
    prompt: String,
    /// Tokens of the model's prompt: what follows them in the context is the response.
    prompt_len: usize,
    lambda: Vec<f64>,
    rewards: Rc<RefCell<Vec<Box<dyn Reward + 'm>>>>,
    top_k: usize,
}

impl<'m> TokenPalette<'m> {
    pub fn new(
        tokenizer: &'m Tokenizer,
        prompt: &str,
        prompt_len: usize,
        lambda: Vec<f64>,
        rewards: Rc<RefCell<Vec<Box<dyn Reward + 'm>>>>,
        top_k: usize,
    ) -> Self {
        Self {
            tokenizer,
            prompt: prompt.to_string(),
            prompt_len,
            lambda,
            rewards,
            top_k: top_k.max(1),
        }
    }

    fn weights(&mut self, context: &[u32], top: &[u32]) -> Result<Vec<f64>> {
        let generated = context.get(self.prompt_len..).unwrap_or(&[]);
        let response = self.tokenizer.decode(generated)?;
        let mut ids = generated.to_vec();
        let pieces = top
            .iter()
            .map(|&v| {
                ids.push(v);
                let text = self.tokenizer.decode(&ids);
                ids.pop();
                let text = text?;
                Ok(text
                    .strip_prefix(response.as_str())
                    .map_or(text.clone(), str::to_string))
            })
            .collect::<Result<Vec<String>>>()?;
        let pair = Pair {
            prompt: self.prompt.clone(),
            response: response.clone(),
        };
        let mut total = vec![0.0; top.len()];
        for (r, l) in self.rewards.borrow_mut().iter_mut().zip(&self.lambda) {
            let vals = match r.score_extensions(&pair, &pieces) {
                Some(v) => v?,
                None => {
                    let pairs: Vec<Pair> = pieces
                        .iter()
                        .map(|p| Pair {
                            prompt: self.prompt.clone(),
                            response: format!("{response}{p}"),
                        })
                        .collect();
                    r.score(&pairs)?
                }
            };
            for (t, v) in total.iter_mut().zip(vals) {
                *t += l * v;
            }
        }
        Ok(total)
    }
}

/// The indices of the `k` largest finite logits, largest first (ties to the lower id).
pub fn top_k(logits: &[f32], k: usize) -> Vec<u32> {
    let mut idx: Vec<u32> = (0..logits.len() as u32)
        .filter(|&i| logits[i as usize].is_finite())
        .collect();
    idx.sort_by(|&a, &b| {
        logits[b as usize]
            .total_cmp(&logits[a as usize])
            .then(a.cmp(&b))
    });
    idx.truncate(k);
    idx
}

impl LogitsProcessor for TokenPalette<'_> {
    fn process(&mut self, context: &[u32], logits: &mut [f32]) -> Result<()> {
        let top = top_k(logits, self.top_k);
        let w = self.weights(context, &top)?;
        let kept: Vec<f32> = top
            .iter()
            .zip(&w)
            .map(|(&v, x)| logits[v as usize] + *x as f32)
            .collect();
        logits.iter_mut().for_each(|l| *l = f32::NEG_INFINITY);
        for (&v, x) in top.iter().zip(kept) {
            logits[v as usize] = x;
        }
        Ok(())
    }
}
