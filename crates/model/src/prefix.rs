//! Log-probs of a token sequence that grows step by step (a response being decoded, the judge
//! prompt around it), with its KV cache kept between calls, and of short branches off its
//! end (the candidate tokens of one decoding step). Token-level reward guidance needs both
//! at every step; rescoring the whole sequence per candidate costs K full passes a step.
//!
//! `advance` reuses the cache for the longest common prefix of the old and new sequence (a
//! re-tokenized text may change its last token), so a step that adds one token runs one token.
//! Batch shapes differ from a single full pass (and quantized layers switch paths at 16
//! rows), so values agree with `scoring::score` to float tolerance, not bit for bit.

use crate::cache::KvCache;
use crate::decoder::Decoder;
use crate::error::{Error, Result};
use crate::scoring::right_pad;

/// A cache forked per branch, with the branches' padded ids and positions.
type Forked = (KvCache, Vec<Vec<u32>>, Vec<Vec<i32>>);

/// Extra room allocated whenever the cache must grow, so growth is rare.
const GROWTH: usize = 128;

pub struct PrefixScorer<'d> {
    decoder: &'d Decoder,
    ids: Vec<u32>,
    cache: Option<KvCache>,
    /// `lp[i]` = log p(ids[i] | ids[..i]); `lp[0]` is 0 (the first token is the context).
    lp: Vec<f32>,
    /// The log-softmax after the last token.
    next: Vec<f32>,
}

impl<'d> PrefixScorer<'d> {
    pub fn new(decoder: &'d Decoder) -> Self {
        Self {
            decoder,
            ids: Vec::new(),
            cache: None,
            lp: Vec::new(),
            next: Vec::new(),
        }
    }

    /// Sum of log p(ids[i] | ids[..i]) over i >= 1.
    pub fn logprob(&self) -> f64 {
        self.lp.iter().map(|&x| x as f64).sum()
    }

    /// The log-softmax over the vocabulary after the sequence.
    pub fn next_logprobs(&self) -> &[f32] {
        &self.next
    }

    /// Moves to the sequence `ids`, running only the tokens after the longest prefix it shares
    /// with the current one.
    pub fn advance(&mut self, ids: &[u32]) -> Result<()> {
        if ids.is_empty() {
            return Err(Error::Msg("prefix scorer: the sequence is empty".into()));
        }
        if ids.len() > self.decoder.max_positions() {
            return Err(Error::Limit(format!(
                "prefix scorer: {} tokens exceed the context length {}",
                ids.len(),
                self.decoder.max_positions()
            )));
        }
        if ids == self.ids.as_slice() {
            return Ok(());
        }
        let common = self.ids.iter().zip(ids).take_while(|(a, b)| a == b).count();
        let cached = self.ids.len();
        // A pure extension scores its first new token from `next`; otherwise the last shared
        // token runs again, since its next-token distribution was not kept.
        let start = if common == cached && cached > 0 {
            self.lp.truncate(cached);
            self.lp.push(self.next[ids[cached] as usize]);
            cached
        } else {
            let s = common.saturating_sub(1);
            self.lp.truncate(s + 1);
            if self.lp.is_empty() {
                self.lp.push(0.0);
            }
            s
        };
        let room = (ids.len() + GROWTH).min(self.decoder.max_positions());
        let mut cache = match self.cache.take() {
            Some(mut c) => {
                c.truncate(start);
                if c.capacity() < ids.len() {
                    c.fork_rows(&[0], room - start)?
                } else {
                    c
                }
            }
            None => self.decoder.new_cache(1, room)?,
        };
        let new = &ids[start..];
        let positions: Vec<i32> = (start as i32..ids.len() as i32).collect();
        let out = self
            .decoder
            .forward_all(&[new.to_vec()], &[positions], &mut cache, None);
        let logits = match out {
            Ok(l) => l.0,
            Err(e) => {
                // The cache holds `start` tokens of the new sequence; keep the scorer coherent.
                self.ids.clear();
                self.lp.clear();
                return Err(e);
            }
        };
        let lsm = crate::logprobs::log_softmax_rows(&logits.squeeze(0)?)?;
        let rows = lsm.to_dtype(candle_core::DType::F32)?.to_vec2::<f32>()?;
        for (j, row) in rows.iter().enumerate().take(new.len() - 1) {
            self.lp.push(row[new[j + 1] as usize]);
        }
        self.next = rows.last().cloned().unwrap_or_default();
        self.ids = ids.to_vec();
        self.cache = Some(cache);
        Ok(())
    }

    fn forked(&self, branches: &[&[u32]]) -> Result<Forked> {
        let cache = self
            .cache
            .as_ref()
            .ok_or_else(|| Error::Msg("prefix scorer: advance to a sequence first".into()))?;
        let t = branches.iter().map(|b| b.len()).max().unwrap_or(0);
        let base = self.ids.len();
        if base + t > self.decoder.max_positions() {
            return Err(Error::Limit(format!(
                "prefix scorer: {base} + {t} tokens exceed the context length {}",
                self.decoder.max_positions()
            )));
        }
        let fork = cache.fork_rows(&vec![0; branches.len()], t)?;
        let (ids, pos) = right_pad(branches, &vec![base; branches.len()]);
        Ok((fork, ids, pos))
    }

    /// For each branch (tokens after the sequence), the sum of its tokens' log-probs. The
    /// first token of every branch is read from `next_logprobs`; one batched pass covers the
    /// rest, so branches of one token cost nothing.
    pub fn branch_logprobs(&self, branches: &[Vec<u32>]) -> Result<Vec<f64>> {
        let mut out: Vec<f64> = branches
            .iter()
            .map(|b| b.first().map_or(0.0, |&t| self.next[t as usize] as f64))
            .collect();
        let long: Vec<usize> = (0..branches.len())
            .filter(|&i| branches[i].len() > 1)
            .collect();
        if long.is_empty() {
            return Ok(out);
        }
        let inputs: Vec<&[u32]> = long
            .iter()
            .map(|&i| &branches[i][..branches[i].len() - 1])
            .collect();
        let (mut fork, ids, pos) = self.forked(&inputs)?;
        let t = ids[0].len();
        let targets: Vec<Vec<i64>> = long
            .iter()
            .map(|&i| {
                (0..t)
                    .map(|j| branches[i].get(j + 1).map_or(-1, |&x| x as i64))
                    .collect()
            })
            .collect();
        let gathered = self
            .decoder
            .forward_gather(&ids, &pos, &mut fork, &targets, None)?;
        for (&i, row) in long.iter().zip(gathered) {
            out[i] += row
                .into_iter()
                .flatten()
                .map(|s| s.logprob as f64)
                .sum::<f64>();
        }
        Ok(out)
    }

    /// For each branch, the log-probs of the tokens `at` right after it (the judge's answers
    /// after a candidate and the rest of its prompt); an empty branch reads `next_logprobs`.
    pub fn branch_end_logprobs(&self, branches: &[Vec<u32>], at: &[u32]) -> Result<Vec<Vec<f32>>> {
        let pick = |row: &[f32]| at.iter().map(|&a| row[a as usize]).collect::<Vec<f32>>();
        let mut out: Vec<Vec<f32>> = vec![Vec::new(); branches.len()];
        let full: Vec<usize> = (0..branches.len())
            .filter(|&i| !branches[i].is_empty())
            .collect();
        for (i, o) in out.iter_mut().enumerate() {
            if branches[i].is_empty() {
                *o = pick(&self.next);
            }
        }
        if full.is_empty() {
            return Ok(out);
        }
        let inputs: Vec<&[u32]> = full.iter().map(|&i| branches[i].as_slice()).collect();
        let (mut fork, ids, pos) = self.forked(&inputs)?;
        let last = self
            .decoder
            .forward_last(&ids, &pos, &mut fork, None)?
            .log_probs()?
            .to_vec2::<f32>()?;
        for (&i, row) in full.iter().zip(&last) {
            out[i] = pick(row);
        }
        Ok(out)
    }
}
