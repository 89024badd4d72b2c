//! The decoder skeleton every architecture is assembled on:
//! embed -> [block -> residual hook] x N -> final norm -> head (in the requested logits mode).
//!
//! The skeleton knows nothing of steering: the hook is an opaque callback at block
//! boundaries, and sampling happens on the returned logits elsewhere.

use crate::cache::{attention_mask, KvCache, KvShape};
use crate::config::ModelConfig;
use crate::error::{Error, Result};
use crate::hooks::ResidualHook;
use crate::nn::attention::Attention;
use crate::nn::experts::MoeFfn;
use crate::nn::mla::LatentAttention;
use crate::nn::mlp::Mlp;
use crate::nn::norm::RmsNorm;
use crate::nn::rope::{Positions, Rope};
use crate::ops::attention::{takes_cpu_kernel, StepContext};
use crate::ops::linear::Linear;
use crate::ops::{Kernels, Numerics};
use candle_core::quantized::QTensor;
use candle_core::{DType, Device, Tensor, D};
use std::sync::Arc;

/// The log-prob of one target token at one position, and the position's argmax.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TargetScore {
    pub logprob: f32,
    pub argmax: u32,
}

/// Logits of the last real token of each row: `(b, vocab)`, f32.
#[derive(Debug)]
pub struct LastLogits(pub Tensor);

/// Logits at every position of every row: `(b, t, vocab)`, f32.
#[derive(Debug)]
pub struct AllLogits(pub Tensor);

/// For each `[row][position]` of a step, the target's score where one was asked for.
pub type Gathered = Vec<Vec<Option<TargetScore>>>;

impl LastLogits {
    /// The rows as vectors (the sampler's input).
    pub fn rows(&self) -> Result<Vec<Vec<f32>>> {
        Ok(self.0.to_vec2::<f32>()?)
    }

    /// The log-softmax of each row (`logprobs`: the formula every path shares).
    pub fn log_probs(&self) -> Result<Tensor> {
        crate::logprobs::log_softmax_rows(&self.0)
    }
}

impl AllLogits {
    /// The positions of a one-row step as vectors.
    pub fn single_row(&self) -> Result<Vec<Vec<f32>>> {
        Ok(self.0.squeeze(0)?.to_vec2::<f32>()?)
    }
}

/// Which positions of a step the caller reads; the last block's feed-forward runs on those
/// alone where it can (the keys and values of every position are cached by then).
enum Reads<'a> {
    Every,
    LastOfEachRow,
    Targets(&'a [Vec<i64>]),
}

/// The final normed hidden states of a step: flat position `r * t + i` is row
/// `slot[r * t + i]` of `x` (row `r * t + i` itself without `slot`: every row kept).
struct Hidden {
    x: Tensor,
    slot: Option<Vec<u32>>,
}

impl Hidden {
    fn row(&self, flat: usize) -> u32 {
        self.slot.as_ref().map_or(flat as u32, |s| s[flat])
    }
}

/// `x` as the compute dtype holds it (HF rounds Gemma's embedding scale so: sqrt(640) is
/// 25.25 in bf16).
fn rounded_to(x: f64, dtype: DType) -> f64 {
    match dtype {
        DType::BF16 => half::bf16::from_f64(x).to_f64(),
        DType::F16 => half::f16::from_f64(x).to_f64(),
        _ => x as f32 as f64,
    }
}

/// Rows of hidden states projected to the vocabulary at once in gather mode.
const GATHER_CHUNK: usize = 64;

/// The index of a row's last real token (its last position that is not padding).
fn last_real(positions: &[i32]) -> usize {
    positions
        .iter()
        .rposition(|&q| q >= 0)
        .unwrap_or(positions.len().saturating_sub(1))
}

/// The rows of a step the last block's feed-forward runs on (`Decoder::last_block_rows`).
struct LastRows {
    /// Flat positions `r * t + i`, ascending.
    kept: Vec<u32>,
    /// For each flat position, its row among `kept` (`u32::MAX` where not kept).
    slot: Vec<u32>,
}

pub enum Embedding {
    Dense(Tensor),
    Quant(Arc<QTensor>),
}

impl Embedding {
    fn forward(&self, ids: &Tensor, dtype: DType) -> Result<Tensor> {
        let (b, t) = ids.dims2()?;
        let flat = ids.flatten_all()?;
        let x = match self {
            Embedding::Dense(w) => w.index_select(&flat, 0)?,
            Embedding::Quant(q) => q.embedding(&flat)?,
        };
        Ok(x.reshape((b, t, ()))?.to_dtype(dtype)?)
    }
}

// One per block, so the unboxed MoE variant's size costs nothing worth an indirection.
#[allow(clippy::large_enum_variant)]
pub enum FeedForward {
    Dense(Mlp),
    /// DeepSeek's routed and shared experts.
    Moe(MoeFfn),
}

// One per block too: latent attention's extra weights are not worth boxing.
#[allow(clippy::large_enum_variant)]
pub enum SelfAttention {
    /// Grouped-query (or multi-head) attention over per-head keys and values.
    Grouped(Attention),
    /// DeepSeek's multi-head latent attention over a latent cache.
    Latent(LatentAttention),
}

pub struct Block {
    pub attn_norm: RmsNorm,
    pub attn: SelfAttention,
    /// Gemma 3: a norm on the attention output before it joins the residual.
    pub post_attn_norm: Option<RmsNorm>,
    pub mlp_norm: RmsNorm,
    pub ffn: FeedForward,
    /// Gemma 3: a norm on the feed-forward output before it joins the residual.
    pub post_ffn_norm: Option<RmsNorm>,
    /// Attends through the sliding window.
    pub sliding: bool,
}

impl Block {
    /// One block on the residual `x`, whose input-normed form `xn` the caller has made (fused
    /// with the previous boundary's add). Returns the residual after attention `h` and the
    /// feed-forward output `y`; the block's output is `h + y`.
    fn forward(
        &self,
        x: &Tensor,
        xn: &Tensor,
        step: &StepContext,
        cache: &mut KvCache,
        layer: usize,
    ) -> Result<(Tensor, Tensor)> {
        let a = self.attention(xn, step, cache, layer)?;
        self.feed_forward(x, &a, step)
    }

    /// The attention half: what the block adds to the residual `x` before its feed-forward.
    fn attention(
        &self,
        xn: &Tensor,
        step: &StepContext,
        cache: &mut KvCache,
        layer: usize,
    ) -> Result<Tensor> {
        let mut a = match &self.attn {
            SelfAttention::Grouped(at) => at.forward(xn, step, cache, layer, self.sliding)?,
            SelfAttention::Latent(at) => at.forward(xn, step, cache, layer)?,
        };
        if let Some(n) = &self.post_attn_norm {
            a = n.forward(&a)?;
        }
        Ok(a)
    }

    /// The feed-forward half on `x + a`, row by row: `(x + a, its feed-forward output)`.
    fn feed_forward(&self, x: &Tensor, a: &Tensor, step: &StepContext) -> Result<(Tensor, Tensor)> {
        let (h, hn) = self.mlp_norm.add_forward(x, a, &step.kernels)?;
        let mut y = match &self.ffn {
            FeedForward::Dense(mlp) => mlp.forward(&hn, step.llama_cpp())?,
            FeedForward::Moe(moe) => moe.forward(&hn, step.kernels.moe_per_token)?,
        };
        if let Some(n) = &self.post_ffn_norm {
            y = n.forward(&y)?;
        }
        Ok((h, y))
    }
}

pub struct Decoder {
    pub config: ModelConfig,
    pub(crate) embed: Embedding,
    pub(crate) blocks: Vec<Block>,
    pub(crate) norm: RmsNorm,
    pub(crate) head: Linear,
    pub(crate) rope: Rope,
    /// Rotary of the sliding-window layers where it differs (Gemma 3's local base).
    pub(crate) rope_local: Option<Rope>,
    pub dtype: DType,
    pub device: Device,
    /// The arithmetic the model follows (llama.cpp's for quantized GGUF weights), set at load.
    pub numerics: Numerics,
    /// Which of our kernels the step's ops may take, set at load.
    pub kernels: Kernels,
}

impl Decoder {
    /// A decoder of these parts, with exact numerics and this build's default kernels; the
    /// loader sets both.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        config: ModelConfig,
        embed: Embedding,
        blocks: Vec<Block>,
        norm: RmsNorm,
        head: Linear,
        rope: Rope,
        rope_local: Option<Rope>,
        dtype: DType,
        device: Device,
    ) -> Self {
        Self {
            config,
            embed,
            blocks,
            norm,
            head,
            rope,
            rope_local,
            dtype,
            device,
            numerics: Numerics::Exact,
            kernels: Kernels::default(),
        }
    }

    pub fn kv_shape(&self) -> KvShape {
        match &self.config.mla {
            Some(m) => KvShape {
                layers: self.blocks.len(),
                kv_heads: 1,
                head_dim: m.kv_lora_rank + m.qk_rope_head_dim,
                latent: true,
            },
            None => KvShape {
                layers: self.blocks.len(),
                kv_heads: self.config.num_kv_heads,
                head_dim: self.config.head_dim,
                latent: false,
            },
        }
    }

    /// The longest sequence the model accepts (its context length).
    pub fn max_positions(&self) -> usize {
        self.rope.max_positions()
    }

    pub fn new_cache(&self, batch: usize, capacity: usize) -> Result<KvCache> {
        if capacity > self.max_positions() {
            return Err(Error::Limit(format!(
                "{capacity} tokens exceed the model's context length {}",
                self.max_positions()
            )));
        }
        KvCache::new(self.kv_shape(), batch, capacity, self.dtype, &self.device)
    }

    /// One step over `ids` `(b, t)`, whose positions are `positions[b][t]` (-1 for padding):
    /// the logits after each row's last real token. The hook sees the residual after every
    /// block.
    pub fn forward_last<'h>(
        &self,
        ids: &[Vec<u32>],
        positions: &[Vec<i32>],
        cache: &mut KvCache,
        hook: Option<&mut (dyn ResidualHook + 'h)>,
    ) -> Result<LastLogits> {
        self.step(ids, positions, cache, Reads::LastOfEachRow, hook, |h| {
            self.project_last(h, positions)
        })
    }

    /// As `forward_last`, with the logits at every position: `(b, t, vocab)`.
    pub fn forward_all<'h>(
        &self,
        ids: &[Vec<u32>],
        positions: &[Vec<i32>],
        cache: &mut KvCache,
        hook: Option<&mut (dyn ResidualHook + 'h)>,
    ) -> Result<AllLogits> {
        self.step(ids, positions, cache, Reads::Every, hook, |h| {
            self.project_all(h, positions)
        })
    }

    /// As `forward_last`, with, for each `[row][position]`, the log-prob of the target id
    /// `targets[row][position]` (skip with -1) and the argmax; the full `(t, vocab)` logits
    /// are only ever built a chunk of rows at a time.
    pub fn forward_gather<'h>(
        &self,
        ids: &[Vec<u32>],
        positions: &[Vec<i32>],
        cache: &mut KvCache,
        targets: &[Vec<i64>],
        hook: Option<&mut (dyn ResidualHook + 'h)>,
    ) -> Result<Gathered> {
        let (b, t) = (ids.len(), ids.first().map_or(0, Vec::len));
        if targets.len() != b || targets.iter().any(|r| r.len() != t) {
            return Err(Error::Msg(format!("gather targets must be {b} x {t}")));
        }
        let vocab = self.config.vocab_size as i64;
        if let Some(id) = targets.iter().flatten().find(|&&id| id >= vocab) {
            return Err(Error::Limit(format!(
                "target id {id} is outside the vocabulary ({vocab})"
            )));
        }
        self.step(ids, positions, cache, Reads::Targets(targets), hook, |h| {
            self.project_gathered(h, positions, targets)
        })
    }

    /// Checks a step's shape, runs the hidden-state pass and `project` on its result, and
    /// commits the step to the cache only if both succeed.
    fn step<'h, T>(
        &self,
        ids: &[Vec<u32>],
        positions: &[Vec<i32>],
        cache: &mut KvCache,
        reads: Reads,
        hook: Option<&mut (dyn ResidualHook + 'h)>,
        project: impl FnOnce(&Hidden) -> Result<T>,
    ) -> Result<T> {
        let b = ids.len();
        let t = ids.first().map_or(0, Vec::len);
        if t == 0
            || positions.len() != b
            || ids
                .iter()
                .zip(positions)
                .any(|(i, p)| i.len() != t || p.len() != t)
        {
            return Err(Error::Msg(format!(
                "forward needs a non-empty rectangular batch of ids and positions ({b} rows)"
            )));
        }
        let max_pos = positions.iter().flatten().copied().max().unwrap_or(0);
        if max_pos as usize >= self.max_positions() {
            return Err(Error::Limit(format!(
                "position {max_pos} is beyond the model's context length {}",
                self.max_positions()
            )));
        }
        let vocab = self.config.vocab_size as u32;
        if let Some(bad) = ids.iter().flatten().find(|&&i| i >= vocab) {
            return Err(Error::Limit(format!(
                "token id {bad} is outside the vocabulary ({vocab})"
            )));
        }
        cache.begin_step(positions)?;
        let out = self
            .hidden(ids, positions, cache, reads, hook)
            .and_then(|h| project(&h));
        match out {
            Ok(l) => {
                cache.end_step(t);
                Ok(l)
            }
            Err(e) => {
                cache.rollback();
                Err(e)
            }
        }
    }

    /// The hidden-state pass every entry point shares: embed, the blocks with the hook at
    /// their boundaries, and the final norm.
    fn hidden<'h>(
        &self,
        ids: &[Vec<u32>],
        positions: &[Vec<i32>],
        cache: &mut KvCache,
        reads: Reads,
        mut hook: Option<&mut (dyn ResidualHook + 'h)>,
    ) -> Result<Hidden> {
        let (b, t) = (ids.len(), ids[0].len());
        let flat: Vec<u32> = ids.iter().flatten().copied().collect();
        let ids_t = Tensor::from_vec(flat, (b, t), &self.device)?;
        let mut x = self.embed.forward(&ids_t, self.dtype)?;
        if let Some(scale) = self.config.embed_scale {
            x = x.affine(rounded_to(scale, self.dtype), 0.0)?;
        }
        let pos = Positions::new(positions)?;
        // In the compute dtype once per step, not once per layer and projection (as HF, the
        // tables are made in f32 and rounded to the activations' dtype).
        let in_dtype = |(c, s): (Tensor, Tensor)| -> Result<(Tensor, Tensor)> {
            Ok((c.to_dtype(self.dtype)?, s.to_dtype(self.dtype)?))
        };
        let (cos, sin) = in_dtype(self.rope.tables(&pos)?)?;
        let sliding_tables = match &self.rope_local {
            Some(r) => Some(in_dtype(r.tables(&pos)?)?),
            None => None,
        };
        let cpu_kernel = takes_cpu_kernel(&self.kernels, &self.device, self.dtype);
        let any_sliding = self.blocks.iter().any(|b| b.sliding);
        let any_global = self.blocks.iter().any(|b| !b.sliding);
        let mask_for = |window: Option<usize>, needed: bool| -> Result<Option<Tensor>> {
            if cpu_kernel || !needed {
                return Ok(None);
            }
            attention_mask(positions, cache.key_positions(), window, &self.device)
        };
        let mask = mask_for(None, any_global)?;
        let sliding_mask = mask_for(self.config.sliding_window, any_sliding)?;
        let step = StepContext {
            rope: &self.rope,
            cos,
            sin,
            sliding_tables,
            mask,
            sliding_mask,
            numerics: self.numerics,
            kernels: self.kernels,
            cpu_kernel,
            query_positions: positions,
            window: self.config.sliding_window,
        };
        // Each boundary adds the block's output to the residual and applies the next norm
        // (the next block's input norm, or the final norm) in one step, unless a hook must
        // see (and may replace) the residual in between.
        let mut xn = match self.blocks.first() {
            Some(b) => b.attn_norm.forward(&x)?,
            None => self.norm.forward(&x)?,
        };
        // After the last block's attention only the rows the caller reads matter (the keys
        // and values of every row are cached by then).
        let mut last_rows = if hook.is_none() {
            self.last_block_rows(positions, &reads)
        } else {
            None
        };
        for (i, block) in self.blocks.iter().enumerate() {
            let last = i + 1 == self.blocks.len();
            if let Some(rows) = last_rows.take_if(|_| last) {
                let a = block.attention(&xn, &step, cache, i)?;
                let hidden = x.dim(D::Minus1)?;
                let index = Tensor::new(rows.kept.as_slice(), &self.device)?;
                let pick = |t: &Tensor| -> Result<Tensor> {
                    Ok(t.reshape(((), hidden))?.index_select(&index, 0)?)
                };
                let (h, y) = block.feed_forward(&pick(&x)?, &pick(&a)?, &step)?;
                let (_, xn) = self.norm.add_forward(&h, &y, &self.kernels)?;
                return Ok(Hidden {
                    x: xn,
                    slot: Some(rows.slot),
                });
            }
            let (h, y) = block.forward(&x, &xn, &step, cache, i)?;
            let next_norm = self.blocks.get(i + 1).map_or(&self.norm, |b| &b.attn_norm);
            match hook.as_deref_mut() {
                None => (x, xn) = next_norm.add_forward(&h, &y, &self.kernels)?,
                Some(hk) => {
                    x = (h + y)?;
                    if let Some(replaced) = hk.after_block(i, &x)? {
                        x = replaced;
                    }
                    xn = next_norm.forward(&x)?;
                }
            }
        }
        let (b, t, hidden) = xn.dims3()?;
        Ok(Hidden {
            x: xn.reshape((b * t, hidden))?,
            slot: None,
        })
    }

    /// The rows the last block's feed-forward must run on: those the caller reads (a row's
    /// numbers do not depend on which others share the product). `None`: every row.
    fn last_block_rows(&self, positions: &[Vec<i32>], reads: &Reads) -> Option<LastRows> {
        let (b, t) = (positions.len(), positions.first().map_or(0, Vec::len));
        if !matches!(self.blocks.last()?.ffn, FeedForward::Dense(_)) {
            return None;
        }
        let mut needed = vec![false; b * t];
        match reads {
            Reads::Every => return None,
            Reads::LastOfEachRow => {
                for (r, p) in positions.iter().enumerate() {
                    needed[r * t + last_real(p)] = true;
                }
            }
            Reads::Targets(targets) => {
                for (r, row) in targets.iter().enumerate() {
                    for (i, &id) in row.iter().enumerate() {
                        needed[r * t + i] |= id >= 0;
                    }
                }
            }
        }
        let kept: Vec<u32> = (0..(b * t) as u32)
            .filter(|&f| needed[f as usize])
            .collect();
        if kept.len() == b * t {
            return None;
        }
        let mut slot = vec![u32::MAX; b * t];
        for (k, &f) in kept.iter().enumerate() {
            slot[f as usize] = k as u32;
        }
        Some(LastRows { kept, slot })
    }

    /// The head on every position: `(b, t, vocab)`.
    fn project_all(&self, h: &Hidden, positions: &[Vec<i32>]) -> Result<AllLogits> {
        let (b, t) = (positions.len(), positions.first().map_or(0, Vec::len));
        let hidden = h.x.dim(D::Minus1)?;
        Ok(AllLogits(
            self.head
                .forward(&h.x.reshape((b, t, hidden))?)?
                .to_dtype(DType::F32)?,
        ))
    }

    /// The head on each row's last real position: `(b, vocab)`.
    fn project_last(&self, h: &Hidden, positions: &[Vec<i32>]) -> Result<LastLogits> {
        let (b, t) = (positions.len(), positions.first().map_or(0, Vec::len));
        let last: Vec<u32> = positions
            .iter()
            .enumerate()
            .map(|(r, p)| h.row(r * t + last_real(p)))
            .collect();
        let n = last.len();
        let rows =
            h.x.index_select(&Tensor::from_vec(last, n, &self.device)?, 0)?;
        Ok(LastLogits(
            self.head
                .forward(&rows)?
                .narrow(0, 0, b)?
                .to_dtype(DType::F32)?,
        ))
    }

    /// The targets' log-probs and each position's argmax, a chunk of rows at a time.
    fn project_gathered(
        &self,
        h: &Hidden,
        positions: &[Vec<i32>],
        targets: &[Vec<i64>],
    ) -> Result<Gathered> {
        let (b, t) = (positions.len(), positions.first().map_or(0, Vec::len));
        let wanted: Vec<(usize, usize, u32)> = targets
            .iter()
            .enumerate()
            .flat_map(|(r, row)| {
                row.iter()
                    .enumerate()
                    .filter(|(_, &id)| id >= 0)
                    .map(move |(i, &id)| (r, i, id as u32))
            })
            .collect();
        let mut out = vec![vec![None; t]; b];
        for chunk in wanted.chunks(GATHER_CHUNK) {
            let rows: Vec<u32> = chunk.iter().map(|&(r, i, _)| h.row(r * t + i)).collect();
            let n = rows.len();
            let x =
                h.x.index_select(&Tensor::from_vec(rows, n, &self.device)?, 0)?;
            let logits = self
                .head
                .forward(&x)?
                .narrow(0, 0, n)?
                .to_dtype(DType::F32)?;
            let lp: Vec<f32> = logits
                .to_vec2::<f32>()?
                .iter()
                .zip(chunk)
                .map(|(row, w)| crate::logprobs::token_logprob(row, w.2))
                .collect();
            let am = logits.argmax(D::Minus1)?.to_vec1::<u32>()?;
            for (k, &(r, i, _)) in chunk.iter().enumerate() {
                out[r][i] = Some(TargetScore {
                    logprob: lp[k],
                    argmax: am[k],
                });
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedding_scale_is_rounded_to_the_compute_dtype() {
        let s = 640f64.sqrt();
        assert_eq!(rounded_to(s, DType::BF16), 25.25);
        assert_eq!(rounded_to(s, DType::F32), 25.298_222_f32 as f64);
        assert_eq!(rounded_to(s, DType::F16), 25.296875);
    }
}
