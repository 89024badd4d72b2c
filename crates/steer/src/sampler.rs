//! The sampler: a chain of logits processors, then temperature, truncation and a seeded draw.
//!
//! Order of operations for each new token (fixed and documented, as users compare runs):
//! 1. repetition penalty (HF rule: positive logits of seen tokens divided by the penalty,
//!    negative ones multiplied; "seen" = prompt and generated tokens);
//! 2. presence and frequency penalties (OpenAI rule, over generated tokens only:
//!    `logit -= presence * [count > 0] + frequency * count`);
//! 3. logit bias (added as given);
//! 4. the user's processors (steering, palette weights), in the order they were added;
//! 5. temperature; 0 means greedy (argmax of the processed logits, ties to the lowest id),
//!    and steps 6-8 are skipped;
//! 6. top-k, then 7. top-p (nucleus, smallest set with mass >= p), then 8. min-p (drop
//!    tokens whose probability is below min_p times the top one), each on the
//!    renormalised survivors;
//! 9. one draw from the request's own RNG (seeded per request: same seed, same tokens).
//!
//! Log-probs reported by ethos are raw (before this chain) unless a caller says otherwise.

use crate::rng::Rng;
use serde::{Deserialize, Serialize};

/// Changes logits in place before sampling. `context` holds prompt and generated ids. An
/// error ends the generation with it.
pub trait LogitsProcessor {
    fn process(&mut self, context: &[u32], logits: &mut [f32]) -> crate::Result<()>;
}

impl<F: FnMut(&[u32], &mut [f32])> LogitsProcessor for F {
    fn process(&mut self, context: &[u32], logits: &mut [f32]) -> crate::Result<()> {
        self(context, logits);
        Ok(())
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct SamplingParams {
    pub temperature: f32,
    /// 0 = off.
    pub top_k: usize,
    /// 1 = off.
    pub top_p: f32,
    /// 0 = off.
    pub min_p: f32,
    /// 1 = off.
    pub repetition_penalty: f32,
    pub presence_penalty: f32,
    pub frequency_penalty: f32,
    pub logit_bias: Vec<(u32, f32)>,
    pub seed: u64,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self {
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            repetition_penalty: 1.0,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            logit_bias: Vec::new(),
            seed: 0,
        }
    }
}

impl SamplingParams {
    /// Greedy decoding: deterministic whatever the seed.
    pub fn greedy() -> Self {
        Self {
            temperature: 0.0,
            ..Self::default()
        }
    }

    /// `validate`, and every logit-bias id inside a vocabulary of `vocab` tokens (a bias on
    /// an id the model has not would be dropped in silence).
    pub fn validate_for(&self, vocab: usize) -> crate::Result<()> {
        self.validate()?;
        match self.logit_bias.iter().find(|(t, _)| *t as usize >= vocab) {
            Some((t, _)) => Err(crate::Error::Sampling(format!(
                "logit bias: token id {t} is outside the vocabulary ({vocab})"
            ))),
            None => Ok(()),
        }
    }

    /// Checks every parameter's range; the error names the parameter.
    pub fn validate(&self) -> crate::Result<()> {
        let check = |ok: bool, what: &str| {
            if ok {
                Ok(())
            } else {
                Err(crate::Error::Sampling(what.to_string()))
            }
        };
        check(
            self.temperature >= 0.0 && self.temperature.is_finite(),
            "temperature must be >= 0",
        )?;
        check(
            self.top_p > 0.0 && self.top_p <= 1.0,
            "top_p must be in (0, 1]",
        )?;
        check((0.0..=1.0).contains(&self.min_p), "min_p must be in [0, 1]")?;
        check(
            self.repetition_penalty > 0.0 && self.repetition_penalty.is_finite(),
            "repetition_penalty must be > 0",
        )?;
        check(
            self.presence_penalty.is_finite() && self.frequency_penalty.is_finite(),
            "penalties must be finite",
        )?;
        check(
            self.logit_bias.iter().all(|(_, b)| !b.is_nan()),
            "logit bias must not be NaN",
        )
    }
}

pub struct Sampler<'a> {
    params: SamplingParams,
    rng: Rng,
    processors: Vec<Box<dyn LogitsProcessor + 'a>>,
    /// Generated tokens so far (for presence/frequency penalties).
    generated: Vec<u32>,
}

impl<'a> Sampler<'a> {
    pub fn new(params: SamplingParams) -> Self {
        let rng = Rng::new(params.seed);
        Self {
            params,
            rng,
            processors: Vec::new(),
            generated: Vec::new(),
        }
    }

    /// Appends a processor to step 4 of the chain.
    pub fn push_processor(&mut self, p: Box<dyn LogitsProcessor + 'a>) {
        self.processors.push(p);
    }

    pub fn params(&self) -> &SamplingParams {
        &self.params
    }

    /// Steps 1-4 of the chain, in place.
    pub fn process(&mut self, context: &[u32], logits: &mut [f32]) -> crate::Result<()> {
        let p = &self.params;
        if p.repetition_penalty != 1.0 {
            let mut seen = vec![false; logits.len()];
            for &t in context {
                if let Some(s) = seen.get_mut(t as usize) {
                    *s = true;
                }
            }
            for (l, s) in logits.iter_mut().zip(seen) {
                if s {
                    *l = if *l > 0.0 {
                        *l / p.repetition_penalty
                    } else {
                        *l * p.repetition_penalty
                    };
                }
            }
        }
        if p.presence_penalty != 0.0 || p.frequency_penalty != 0.0 {
            let mut counts = std::collections::HashMap::<u32, u32>::new();
            for &t in &self.generated {
                *counts.entry(t).or_default() += 1;
            }
            for (t, c) in counts {
                if let Some(l) = logits.get_mut(t as usize) {
                    *l -= p.presence_penalty + p.frequency_penalty * c as f32;
                }
            }
        }
        for &(t, b) in &p.logit_bias {
            if let Some(l) = logits.get_mut(t as usize) {
                *l += b;
            }
        }
        for proc in &mut self.processors {
            proc.process(context, logits)?;
        }
        Ok(())
    }

    /// Runs the whole chain and returns the chosen token.
    pub fn sample(&mut self, context: &[u32], logits: &mut [f32]) -> crate::Result<u32> {
        self.process(context, logits)?;
        let tok = if self.params.temperature == 0.0 {
            argmax(logits)
        } else {
            self.draw(logits)
        };
        self.generated.push(tok);
        Ok(tok)
    }

    fn draw(&mut self, logits: &[f32]) -> u32 {
        let p = &self.params;
        let t = p.temperature;
        let mut cand: Vec<(u32, f32)> = logits
            .iter()
            .enumerate()
            .filter(|(_, l)| l.is_finite())
            .map(|(i, &l)| (i as u32, l / t))
            .collect();
        if cand.is_empty() {
            return argmax(logits);
        }
        // Descending by logit; ties by id for determinism.
        cand.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        if p.top_k > 0 && p.top_k < cand.len() {
            cand.truncate(p.top_k);
        }
        let max = cand[0].1;
        let mut probs: Vec<f64> = cand.iter().map(|c| ((c.1 - max) as f64).exp()).collect();
        let total: f64 = probs.iter().sum();
        probs.iter_mut().for_each(|x| *x /= total);
        if p.top_p < 1.0 {
            let mut acc = 0.0;
            let mut keep = probs.len();
            for (i, x) in probs.iter().enumerate() {
                acc += x;
                if acc >= p.top_p as f64 {
                    keep = i + 1;
                    break;
                }
            }
            probs.truncate(keep);
            cand.truncate(keep);
        }
        if p.min_p > 0.0 {
            let floor = probs[0] * p.min_p as f64;
            let keep = probs.iter().take_while(|&&x| x >= floor).count().max(1);
            probs.truncate(keep);
            cand.truncate(keep);
        }
        let total: f64 = probs.iter().sum();
        let mut u = self.rng.uniform() * total;
        for (c, x) in cand.iter().zip(&probs) {
            if u < *x {
                return c.0;
            }
            u -= x;
        }
        cand[cand.len() - 1].0
    }
}

pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0usize;
    for (i, &l) in logits.iter().enumerate() {
        if l > logits[best] || logits[best].is_nan() {
            best = i;
        }
    }
    best as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(f: impl FnOnce(&mut SamplingParams)) -> SamplingParams {
        let mut p = SamplingParams::default();
        f(&mut p);
        p
    }

    fn draws(p: &SamplingParams, logits: &[f32], n: usize) -> Vec<u32> {
        let mut s = Sampler::new(p.clone());
        (0..n)
            .map(|_| s.sample(&[], &mut logits.to_vec()).unwrap())
            .collect()
    }

    #[test]
    fn greedy_takes_the_argmax_whatever_the_seed() {
        let logits = [0.1, 2.0, 1.9, -1.0];
        for seed in 0..5 {
            let p = params(|p| {
                p.temperature = 0.0;
                p.seed = seed;
            });
            assert_eq!(draws(&p, &logits, 3), vec![1, 1, 1]);
        }
    }

    #[test]
    fn same_seed_same_tokens_other_seed_other_tokens() {
        let logits: Vec<f32> = (0..50).map(|i| (i as f32 * 0.37).sin()).collect();
        let a = draws(&params(|p| p.seed = 7), &logits, 64);
        assert_eq!(a, draws(&params(|p| p.seed = 7), &logits, 64));
        assert_ne!(a, draws(&params(|p| p.seed = 8), &logits, 64));
    }

    #[test]
    fn logit_bias_suppresses_the_argmax_token() {
        let p = params(|p| {
            p.temperature = 0.0;
            p.logit_bias = vec![(1, -100.0)];
        });
        assert_eq!(draws(&p, &[0.1, 2.0, 1.9], 1), vec![2]);
    }

    #[test]
    fn top_k_one_is_greedy() {
        let p = params(|p| {
            p.top_k = 1;
            p.seed = 3;
        });
        assert!(draws(&p, &[0.0, 0.5, 3.0, 2.9], 50).iter().all(|&t| t == 2));
    }

    #[test]
    fn top_p_keeps_the_smallest_nucleus() {
        // probabilities ~ [0.64, 0.24, 0.09, 0.03]: top_p 0.8 keeps two tokens.
        let logits = [3.0f32, 2.0, 1.0, 0.0];
        let got = draws(
            &params(|p| {
                p.top_p = 0.8;
                p.seed = 11;
            }),
            &logits,
            400,
        );
        assert!(got.iter().all(|&t| t <= 1));
        assert!(got.contains(&1));
    }

    #[test]
    fn min_p_applies_without_top_p() {
        // token 0 has p ~ 0.64, token 3 ~ 0.03 < 0.1 * 0.64: dropped; token 2 (0.09) > 0.064 kept.
        let got = draws(
            &params(|p| {
                p.min_p = 0.1;
                p.seed = 5;
            }),
            &[3.0, 2.0, 1.0, 0.0],
            2000,
        );
        assert!(!got.contains(&3));
        assert!(got.contains(&2));
    }

    #[test]
    fn temperature_sharpens_and_flattens() {
        let logits = [1.0f32, 0.0];
        let share = |t: f32| {
            draws(
                &params(|p| {
                    p.temperature = t;
                    p.seed = 1;
                }),
                &logits,
                4000,
            )
            .iter()
            .filter(|&&x| x == 0)
            .count() as f64
                / 4000.0
        };
        // p(0) = sigmoid(1/t): t=0.5 -> 0.88, t=1 -> 0.73, t=4 -> 0.56
        assert!((share(0.5) - 0.881).abs() < 0.03);
        assert!((share(1.0) - 0.731).abs() < 0.03);
        assert!((share(4.0) - 0.562).abs() < 0.03);
    }

    #[test]
    fn repetition_penalty_follows_the_hf_rule() {
        let mut s = Sampler::new(params(|p| p.repetition_penalty = 2.0));
        let mut l = vec![2.0, -2.0, 1.0];
        s.process(&[0, 1], &mut l).unwrap();
        assert_eq!(l, vec![1.0, -4.0, 1.0]);
    }

    #[test]
    fn presence_and_frequency_count_generated_tokens() {
        let mut s = Sampler::new(params(|p| {
            p.temperature = 0.0;
            p.presence_penalty = 0.5;
            p.frequency_penalty = 1.0;
        }));
        s.sample(&[], &mut [5.0, 0.0]).unwrap(); // generates 0
        s.sample(&[], &mut [5.0, 0.0]).unwrap(); // generates 0 again
        let mut l = vec![5.0, 0.0];
        s.process(&[], &mut l).unwrap();
        assert_eq!(l, vec![5.0 - 0.5 - 2.0, 0.0]);
    }

    #[test]
    fn processors_run_after_bias_in_insertion_order() {
        let mut s = Sampler::new(params(|p| p.logit_bias = vec![(0, 1.0)]));
        s.push_processor(Box::new(|_: &[u32], l: &mut [f32]| l[0] *= 10.0));
        s.push_processor(Box::new(|_: &[u32], l: &mut [f32]| l[0] -= 1.0));
        let mut l = vec![1.0];
        s.process(&[], &mut l).unwrap();
        assert_eq!(l, vec![(1.0 + 1.0) * 10.0 - 1.0]);
    }

    /// A processor's error ends the draw with that error, and no later processor runs.
    #[test]
    fn a_failing_processor_fails_the_draw() {
        struct Fails;
        impl LogitsProcessor for Fails {
            fn process(&mut self, _: &[u32], _: &mut [f32]) -> crate::Result<()> {
                Err(crate::Error::Msg("reward `judge`: the judge failed".into()))
            }
        }
        let mut s = Sampler::new(SamplingParams::greedy());
        s.push_processor(Box::new(Fails));
        s.push_processor(Box::new(|_: &[u32], l: &mut [f32]| l[0] = 99.0));
        let mut l = vec![1.0, 2.0];
        let e = s.sample(&[], &mut l).unwrap_err().to_string();
        assert_eq!(e, "reward `judge`: the judge failed");
        assert_eq!(l, vec![1.0, 2.0]);
    }

    #[test]
    fn rejects_bad_parameters() {
        assert!(params(|p| p.top_p = 0.0).validate().is_err());
        assert!(params(|p| p.temperature = -1.0).validate().is_err());
        assert!(SamplingParams::greedy().validate().is_ok());
        let e = params(|p| p.logit_bias = vec![(999_999_999, 1.0)])
            .validate_for(100)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("999999999") && e.contains("vocabulary (100)"),
            "{e}"
        );
        assert!(params(|p| p.logit_bias = vec![(99, 1.0)])
            .validate_for(100)
            .is_ok());
    }
}
