//! DeepSeek's mixture-of-experts feed-forward: a router (`nn::moe::route`), routed experts
//! and always-on shared experts.
//!
//! Tokens are grouped by expert, so each chosen expert runs one matrix product over all of
//! its tokens in the batch; the weighted outputs are summed back per token in one scatter-add
//! (in expert order, as transformers sums them). `per_token` runs the naive loop (each token
//! through each of its experts alone), which `ethos bench speed` compares against.

use super::mlp::Mlp;
use super::moe::{route, RouterConfig};
use crate::error::Result;
use crate::ops::linear::Linear;
use candle_core::{DType, Tensor};

pub struct MoeFfn {
    /// `(n_experts, hidden)`: f32 (routing is computed in f32 whatever the compute dtype),
    /// or quantized as a GGUF file stores it (then computed as llama.cpp does).
    router: Linear,
    /// V3's `e_score_correction_bias`.
    bias: Option<Vec<f32>>,
    cfg: RouterConfig,
    experts: Vec<Mlp>,
    shared: Option<Mlp>,
}

impl MoeFfn {
    pub fn new(
        router: Linear,
        bias: Option<Vec<f32>>,
        cfg: RouterConfig,
        experts: Vec<Mlp>,
        shared: Option<Mlp>,
    ) -> Result<Self> {
        Ok(Self {
            router,
            bias,
            cfg,
            experts,
            shared,
        })
    }

    /// `x` `(b, t, hidden)`.
    pub fn forward(&self, x: &Tensor, per_token: bool) -> Result<Tensor> {
        let (b, t, hidden) = x.dims3()?;
        let x2 = x.reshape((b * t, hidden))?;
        let logits = self.router.forward(&x2.to_dtype(DType::F32)?)?;
        let logits = logits
            .to_dtype(DType::F32)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        let routes = route(&logits, self.bias.as_deref(), &self.cfg)?;
        let mut y = if per_token {
            self.per_token(&x2, &routes)?
        } else {
            self.grouped(&x2, &routes)?
        };
        if let Some(shared) = &self.shared {
            y = (y + shared.forward(&x2, false)?)?;
        }
        Ok(y.reshape((b, t, hidden))?)
    }

    fn grouped(&self, x2: &Tensor, routes: &[Vec<(u32, f32)>]) -> Result<Tensor> {
        let n_experts = self.experts.len();
        let mut rows: Vec<Vec<u32>> = vec![Vec::new(); n_experts];
        let mut weights: Vec<Vec<f32>> = vec![Vec::new(); n_experts];
        for (token, chosen) in routes.iter().enumerate() {
            for &(e, w) in chosen {
                rows[e as usize].push(token as u32);
                weights[e as usize].push(w);
            }
        }
        let device = x2.device();
        let (mut outputs, mut index) = (Vec::new(), Vec::new());
        for (e, expert) in self.experts.iter().enumerate() {
            let n = rows[e].len();
            if n == 0 {
                continue;
            }
            let idx = Tensor::from_slice(&rows[e], n, device)?;
            let w = Tensor::from_slice(&weights[e], (n, 1), device)?.to_dtype(x2.dtype())?;
            let y = expert.forward(&x2.index_select(&idx, 0)?, false)?;
            outputs.push(y.broadcast_mul(&w)?);
            index.extend_from_slice(&rows[e]);
        }
        let n = index.len();
        let index = Tensor::from_vec(index, n, device)?;
        Ok(x2
            .zeros_like()?
            .index_add(&index, &Tensor::cat(&outputs, 0)?, 0)?)
    }

    fn per_token(&self, x2: &Tensor, routes: &[Vec<(u32, f32)>]) -> Result<Tensor> {
        let rows = routes
            .iter()
            .enumerate()
            .map(|(token, chosen)| {
                let x = x2.narrow(0, token, 1)?;
                let mut acc = x.zeros_like()?;
                for &(e, w) in chosen {
                    let y = self.experts[e as usize].forward(&x, false)?;
                    acc = (acc + (y * w as f64)?)?;
                }
                Ok(acc)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Tensor::cat(&rows, 0)?)
    }
}
