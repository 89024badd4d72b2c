//! What the loader adds to every matrix while the architecture loads its layers: a tensor
//! source that asks the source beneath for each matrix, gives it the kernels the loader chose
//! (`LoadOptions::kernels`) and adds the adapters' update for that module, unmerged
//! (`Linear::with_low_rank`) or merged (`Linear::merged`). Every adapter module must find its
//! layer, or loading fails naming the first that did not.

use super::{Adapter, AdapterFormat, Adapters};
use crate::config::ModelConfig;
use crate::decoder::Embedding;
use crate::error::{Error, Result};
use crate::ops::linear::Linear;
use crate::ops::low_rank::LowRank;
use crate::ops::Kernels;
use crate::weights::TensorSource;
use candle_core::{DType, Device, Tensor};
use std::collections::BTreeSet;
use std::path::Path;

pub struct WithAdapters<'s> {
    inner: &'s mut dyn TensorSource,
    kernels: Kernels,
    adapters: &'s Adapters,
    cfg: &'s ModelConfig,
    dtype: DType,
    /// Per adapter (the list's, then the named ones), the modules that found their layer.
    used: Vec<BTreeSet<String>>,
}

impl<'s> WithAdapters<'s> {
    pub fn new(
        inner: &'s mut dyn TensorSource,
        kernels: Kernels,
        adapters: &'s Adapters,
        cfg: &'s ModelConfig,
        dtype: DType,
    ) -> Result<Self> {
        for a in adapters.all() {
            if let (Some(theirs), Some(ours)) = (&a.gguf_arch, cfg.arch.get().gguf_name()) {
                if theirs != ours {
                    return Err(Error::config(
                        &a.path,
                        "general.architecture",
                        format!("\"{theirs}\": the adapter is for another architecture than the model's ({ours})"),
                    ));
                }
            }
        }
        Ok(Self {
            inner,
            kernels,
            adapters,
            cfg,
            dtype,
            used: vec![BTreeSet::new(); adapters.list.len() + adapters.named.len()],
        })
    }

    /// Fails naming the first adapter module that matched no layer (an adapter for another
    /// base, or a module ethos does not adapt).
    pub fn finish(self) -> Result<()> {
        for (a, used) in self.adapters.all().zip(&self.used) {
            if let Some(m) = a.modules.keys().find(|m| !used.contains(*m)) {
                return Err(Error::format(
                    &a.path,
                    format!(
                        "module {m} matches no layer of this {} model (an adapter for another base model, or a module ethos does not adapt)",
                        self.cfg.arch.name()
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The name of HF matrix `hf` (`....q_proj.weight`) among `adapter`'s modules.
    fn module_name(&self, adapter: &Adapter, hf: &str) -> Option<String> {
        match adapter.format {
            AdapterFormat::Peft => hf.strip_suffix(".weight").map(str::to_string),
            AdapterFormat::Gguf => self
                .cfg
                .arch
                .get()
                .gguf_tensor_name(hf)
                .and_then(|g| g.strip_suffix(".weight").map(str::to_string)),
        }
    }

    /// Every listed adapter's factors for matrix `hf` of shape `(out, in)`, stacked, scales
    /// folded in and rows in the base's layout.
    fn update(&mut self, hf: &str, shape: [usize; 2]) -> Result<Option<LowRank>> {
        let mut pairs = Vec::new();
        for (i, a) in self.adapters.list.iter().enumerate() {
            if let Some((module, pair)) = self.factors(a, hf, shape)? {
                pairs.push(pair);
                self.used[i].insert(module);
            }
        }
        self.low_rank(pairs)
    }

    /// Each named adapter's update for matrix `hf`, by its index.
    fn slots(&mut self, hf: &str, shape: [usize; 2]) -> Result<Vec<(usize, LowRank)>> {
        let mut slots = Vec::new();
        let offset = self.adapters.list.len();
        for (i, (_, a)) in self.adapters.named.iter().enumerate() {
            if let Some((module, pair)) = self.factors(a, hf, shape)? {
                if let Some(l) = self.low_rank(vec![pair])? {
                    slots.push((i, l));
                }
                self.used[offset + i].insert(module);
            }
        }
        Ok(slots)
    }

    fn low_rank(&self, pairs: Vec<(Tensor, Tensor)>) -> Result<Option<LowRank>> {
        if pairs.is_empty() {
            return Ok(None);
        }
        let device = self.inner.device().clone();
        let pairs = pairs
            .into_iter()
            .map(|(a, b)| Ok((a.to_device(&device)?, b.to_device(&device)?)))
            .collect::<Result<Vec<_>>>()?;
        Ok(Some(LowRank::new(&pairs, self.dtype)?))
    }

    /// `adapter`'s module for matrix `hf` and its factors `(a, b)`, checked against the
    /// layer's shape, the adapter's factor and scale folded into `b`, its rows in the base's
    /// layout.
    fn factors(
        &self,
        a: &Adapter,
        hf: &str,
        shape: [usize; 2],
    ) -> Result<Option<(String, (Tensor, Tensor))>> {
        let Some(module) = self.module_name(a, hf) else {
            return Ok(None);
        };
        let Some(f) = a.modules.get(&module) else {
            return Ok(None);
        };
        let (r, inp) = (f.a.dims()[0], f.a.dims()[1]);
        let out = f.b.dims()[0];
        if inp != shape[1] || out != shape[0] {
            return Err(Error::format(
                &a.path,
                format!(
                    "module {module}: the adapter's factors make a ({out}, {inp}) update; the model's layer is ({}, {}) (an adapter for another base model?)",
                    shape[0], shape[1]
                ),
            ));
        }
        if r > inp.min(out) {
            return Err(Error::format(
                &a.path,
                format!(
                    "module {module}: rank {r} is over the layer's size ({}, {})",
                    shape[0], shape[1]
                ),
            ));
        }
        let b = self.rows_for_base(a, hf, &f.b)?;
        let b = (b * (f.factor * a.scale))?;
        Ok(Some((module, (f.a.clone(), b))))
    }

    /// llama.cpp's converter permutes Llama's q/k rows (for its adjacent-pair rotation); an
    /// adapter's `b` rows follow its own file's layout and move to the base's.
    fn rows_for_base(&self, a: &Adapter, hf: &str, b: &Tensor) -> Result<Tensor> {
        if !self.cfg.arch.get().gguf_permutes_qk() {
            return Ok(b.clone());
        }
        let heads = if hf.ends_with("self_attn.q_proj.weight") {
            self.cfg.num_heads
        } else if hf.ends_with("self_attn.k_proj.weight") {
            self.cfg.num_kv_heads
        } else {
            return Ok(b.clone());
        };
        let base_gguf = self.inner.is_gguf();
        let adapter_gguf = a.format == AdapterFormat::Gguf;
        let (out, r) = b.dims2()?;
        let half = out / heads / 2;
        Ok(match (adapter_gguf, base_gguf) {
            // HF rows (head, pair half, i) to llama.cpp's (head, i, pair half).
            (false, true) => b
                .reshape((heads, 2, half, r))?
                .transpose(1, 2)?
                .contiguous()?
                .reshape((out, r))?,
            (true, false) => b
                .reshape((heads, half, 2, r))?
                .transpose(1, 2)?
                .contiguous()?
                .reshape((out, r))?,
            _ => b.clone(),
        })
    }

    fn attach(&mut self, hf: &str, shape: [usize; 2], layer: Linear) -> Result<Linear> {
        let mut layer = match self.update(hf, shape)? {
            None => layer,
            Some(u) if self.adapters.merge => layer.merged(&u, self.dtype)?,
            Some(u) => layer.with_low_rank(u)?,
        };
        for (i, u) in self.slots(hf, shape)? {
            layer = layer.with_slot(i, u)?;
        }
        Ok(layer)
    }
}

impl TensorSource for WithAdapters<'_> {
    fn path(&self) -> &Path {
        self.inner.path()
    }
    fn device(&self) -> &Device {
        self.inner.device()
    }
    fn contains(&self, name: &str) -> bool {
        self.inner.contains(name)
    }
    fn dense(&mut self, name: &str, shape: &[usize], dtype: DType) -> Result<Tensor> {
        self.inner.dense(name, shape, dtype)
    }
    fn linear(&mut self, name: &str, shape: [usize; 2], bias: Option<Tensor>) -> Result<Linear> {
        let layer = self
            .inner
            .linear(name, shape, bias)?
            .with_kernels(self.kernels);
        self.attach(name, shape, layer)
    }
    fn embedding(&mut self, name: &str, shape: [usize; 2]) -> Result<Embedding> {
        self.inner.embedding(name, shape)
    }
    fn tied_head(&mut self, name: &str, shape: [usize; 2]) -> Result<Linear> {
        let layer = self
            .inner
            .tied_head(name, shape)?
            .with_kernels(self.kernels);
        // PEFT names the output head `lm_head` whether or not it is tied.
        self.attach("lm_head.weight", shape, layer)
    }
    fn is_gguf(&self) -> bool {
        self.inner.is_gguf()
    }
    fn kernels(&self) -> Kernels {
        self.kernels
    }
}
