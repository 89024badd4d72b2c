//! GGUF files: header validation, hyper-parameters from the metadata, tensors by HF name.
//!
//! Every tensor's extent is checked against the file size before anything is read, so a
//! corrupt or hostile header fails with one line instead of a huge allocation.

use super::names::{expert_tensor, gguf_name};
use super::TensorSource;
use crate::config::{
    Activation, Arch, MlaConfig, ModelConfig, MoeConfig, RopeConfig, RopeScaling, RopeStyle,
};
use crate::decoder::Embedding;
use crate::error::{one_line, Error, Result};
use crate::nn::linear::Linear;
use crate::nn::moe::{RouterConfig, ScoringFunc, TopkMethod};
use candle_core::quantized::gguf_file::{Content, Value};
use candle_core::quantized::{GgmlDType, QStorage, QTensor};
use candle_core::{DType, Device, Tensor};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub struct GgufFile {
    pub path: PathBuf,
    pub content: Content,
    file: File,
}

impl GgufFile {
    pub fn open(path: &Path) -> Result<Self> {
        let mut file = File::open(path).map_err(|e| Error::io(path, e))?;
        let file_size = file.metadata().map_err(|e| Error::io(path, e))?.len();
        // Buffered: the metadata (a tokenizer's vocabulary and merges) is some 100,000 small
        // strings, each two reads of its own; unbuffered, those syscalls took about a fifth
        // of a second.
        let content = Content::read(&mut std::io::BufReader::with_capacity(1 << 16, &mut file))
            .map_err(|e| Error::format(path, format!("not a valid GGUF file: {}", one_line(&e))))?;
        for (name, info) in &content.tensor_infos {
            let elems = info
                .shape
                .dims()
                .iter()
                .try_fold(1u64, |a, &d| a.checked_mul(d as u64))
                .ok_or_else(|| {
                    Error::format(
                        path,
                        format!("tensor {name}: shape {:?} overflows", info.shape.dims()),
                    )
                })?;
            let block = info.ggml_dtype.block_size() as u64;
            if elems % block != 0 {
                return Err(Error::format(path, format!("tensor {name}: {elems} elements are not a multiple of the block size {block}")));
            }
            let bytes = elems / block * info.ggml_dtype.type_size() as u64;
            let start = content.tensor_data_offset.saturating_add(info.offset);
            if start.saturating_add(bytes) > file_size {
                return Err(Error::format(
                    path,
                    format!("tensor {name} claims {bytes} bytes at offset {start}, but the file has {file_size} bytes (truncated or corrupt)"),
                ));
            }
        }
        Ok(Self {
            path: path.to_path_buf(),
            content,
            file,
        })
    }

    pub fn meta(&self, key: &str) -> Option<&Value> {
        self.content.metadata.get(key)
    }

    fn field_err(&self, key: &str, msg: &str) -> Error {
        Error::config(&self.path, key, msg.to_string())
    }

    pub fn get_u64(&self, key: &str) -> Result<u64> {
        let v = self
            .meta(key)
            .ok_or_else(|| self.field_err(key, "missing"))?;
        let n = match v {
            Value::U8(x) => *x as u64,
            Value::U16(x) => *x as u64,
            Value::U32(x) => *x as u64,
            Value::U64(x) => *x,
            Value::I8(x) if *x >= 0 => *x as u64,
            Value::I16(x) if *x >= 0 => *x as u64,
            Value::I32(x) if *x >= 0 => *x as u64,
            Value::I64(x) if *x >= 0 => *x as u64,
            _ => return Err(self.field_err(key, "not a non-negative integer")),
        };
        Ok(n)
    }

    pub fn get_usize(&self, key: &str) -> Result<usize> {
        let n = self.get_u64(key)?;
        usize::try_from(n).map_err(|_| self.field_err(key, "too large"))
    }

    pub fn get_f64(&self, key: &str) -> Result<f64> {
        match self.meta(key) {
            Some(Value::F32(x)) => Ok(*x as f64),
            Some(Value::F64(x)) => Ok(*x),
            Some(_) => Err(self.field_err(key, "not a number")),
            None => Err(self.field_err(key, "missing")),
        }
    }

    pub fn get_str(&self, key: &str) -> Result<&str> {
        match self.meta(key) {
            Some(Value::String(s)) => Ok(s),
            Some(_) => Err(self.field_err(key, "not a string")),
            None => Err(self.field_err(key, "missing")),
        }
    }

    pub fn get_bool(&self, key: &str) -> Option<bool> {
        match self.meta(key) {
            Some(Value::Bool(b)) => Some(*b),
            _ => None,
        }
    }

    /// End-of-sequence ids: EOS and, where the file names one, end-of-turn.
    pub fn eos_ids(&self) -> Vec<u32> {
        let mut eos = Vec::new();
        for key in ["tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id"] {
            if let Ok(id) = self.get_u64(key) {
                if !eos.contains(&(id as u32)) {
                    eos.push(id as u32);
                }
            }
        }
        eos
    }

    pub fn architecture(&self) -> Result<&str> {
        self.get_str("general.architecture")
    }

    pub fn tensor(&mut self, name: &str, device: &Device) -> Result<QTensor> {
        self.content
            .tensor(&mut self.file, name, device)
            .map_err(|e| Error::format(&self.path, format!("tensor {name}: {}", one_line(&e))))
    }

    pub fn tensor_shape(&self, name: &str) -> Option<Vec<usize>> {
        self.content
            .tensor_infos
            .get(name)
            .map(|i| i.shape.dims().to_vec())
    }

    /// The storage type of most weight matrices, for `ethos info`.
    pub fn main_type(&self) -> Option<GgmlDType> {
        self.content
            .tensor_infos
            .get("blk.0.attn_q.weight")
            .map(|i| i.ggml_dtype)
    }

    /// The model hyper-parameters from the GGUF metadata.
    pub fn config(&mut self, device: &Device) -> Result<ModelConfig> {
        let arch_name = self.architecture()?.to_string();
        let arch = match arch_name.as_str() {
            "llama" => Arch::Llama,
            "qwen2" => Arch::Qwen2,
            "gemma3" => Arch::Gemma3,
            // V2 and V3 share llama.cpp's architecture; V3 routes on sigmoid scores.
            "deepseek2" => match self.get_u64("deepseek2.expert_gating_func") {
                Ok(2) => Arch::DeepseekV3,
                _ => Arch::DeepseekV2,
            },
            other => {
                return Err(Error::Unsupported(format!(
                    "{}: GGUF architecture `{other}` (supported: llama, qwen2, gemma3, deepseek2)",
                    self.path.display()
                )))
            }
        };
        let k = |s: &str| format!("{arch_name}.{s}");
        let hidden_size = self.get_usize(&k("embedding_length"))?;
        let num_heads = self.get_usize(&k("attention.head_count"))?;
        if num_heads == 0 {
            return Err(self.field_err(&k("attention.head_count"), "must be greater than 0"));
        }
        let num_kv_heads = self
            .get_usize(&k("attention.head_count_kv"))
            .unwrap_or(num_heads);
        let head_dim = self
            .get_usize(&k("attention.key_length"))
            .unwrap_or(hidden_size / num_heads);
        let vocab_size = match self.tensor_shape("token_embd.weight") {
            Some(s) if s.len() == 2 => s[0],
            _ => {
                return Err(Error::format(
                    &self.path,
                    "tensor token_embd.weight is missing or not a matrix",
                ))
            }
        };
        let scaling = match self.get_str(&k("rope.scaling.type")) {
            Ok("linear") => RopeScaling::Linear {
                factor: self.get_f64(&k("rope.scaling.factor"))?,
            },
            // DeepSeek's converter stores 0.1 * mscale_all_dim as the log multiplier and no
            // mscale: llama.cpp takes the two as equal (true of every DeepSeek release).
            Ok("yarn") => {
                let m = self
                    .get_f64(&k("rope.scaling.yarn_log_multiplier"))
                    .map_or(0.0, |x| x / 0.1);
                RopeScaling::Yarn {
                    factor: self.get_f64(&k("rope.scaling.factor"))?,
                    original_max_position_embeddings: self
                        .get_usize(&k("rope.scaling.original_context_length"))?,
                    beta_fast: self
                        .get_f64(&k("rope.scaling.yarn_beta_fast"))
                        .unwrap_or(32.0),
                    beta_slow: self
                        .get_f64(&k("rope.scaling.yarn_beta_slow"))
                        .unwrap_or(1.0),
                    mscale: m,
                    mscale_all_dim: m,
                    truncate: true,
                }
            }
            Ok("none") | Err(_) => RopeScaling::None,
            Ok(other) => {
                return Err(self.field_err(
                    &k("rope.scaling.type"),
                    &format!("`{other}` is not supported"),
                ))
            }
        };
        let freq_factors = if self.content.tensor_infos.contains_key("rope_freqs.weight") {
            let t = self
                .tensor("rope_freqs.weight", device)?
                .dequantize(&Device::Cpu)?;
            Some(t.flatten_all()?.to_vec1::<f32>()?)
        } else {
            None
        };
        let eos = self.eos_ids();
        let gemma = arch == Arch::Gemma3;
        let num_layers = self.get_usize(&k("block_count"))?;
        // Gemma 3 as llama.cpp reads it: a window only if the key is there; every
        // `sliding_window_pattern`-th layer (default 6) global; the local rope base from
        // `rope.freq_base_swa`, else 10000; scores scaled by 1/sqrt(head_dim) (the 62-layer
        // 27B by 1/sqrt(hidden/heads)), since the converter does not store
        // query_pre_attn_scalar.
        let sliding_window = if gemma {
            self.get_usize(&k("attention.sliding_window"))
                .ok()
                .filter(|&w| w > 0)
        } else {
            None
        };
        let sliding_layers = if gemma && sliding_window.is_some() {
            let n = self
                .get_usize(&k("attention.sliding_window_pattern"))
                .unwrap_or(6);
            Some((0..num_layers).map(|i| n == 0 || i % n < n - 1).collect())
        } else {
            None
        };
        let rope_local = gemma.then(|| RopeConfig {
            theta: self.get_f64(&k("rope.freq_base_swa")).unwrap_or(10_000.0),
            style: RopeStyle::Half,
            scaling: RopeScaling::None,
            freq_factors: None,
        });
        let query_pre_attn_scalar = gemma.then(|| {
            if num_layers == 62 {
                (hidden_size / num_heads) as f64
            } else {
                head_dim as f64
            }
        });
        let (mla, moe) = if arch.is_deepseek() {
            let (mla, moe) = self.deepseek2(arch)?;
            (Some(mla), moe)
        } else {
            (None, None)
        };
        let cfg = ModelConfig {
            arch,
            vocab_size,
            hidden_size,
            intermediate_size: self.get_usize(&k("feed_forward_length"))?,
            num_layers,
            num_heads,
            // Latent attention: the converter writes MQA-shaped sizes; ethos keeps the heads.
            num_kv_heads: if mla.is_some() {
                num_heads
            } else {
                num_kv_heads
            },
            head_dim: mla.as_ref().map_or(head_dim, |m| m.qk_rope_head_dim),
            rms_norm_eps: self.get_f64(&k("attention.layer_norm_rms_epsilon"))?,
            rope: RopeConfig {
                theta: self.get_f64(&k("rope.freq_base")).unwrap_or(10000.0),
                // llama.cpp's converter permutes llama Q/K rows for its adjacent-pair rope;
                // qwen2 keeps HF's layout and llama.cpp runs it with NeoX (half) rope.
                style: if arch == Arch::Llama || arch.is_deepseek() {
                    RopeStyle::Interleaved
                } else {
                    RopeStyle::Half
                },
                scaling,
                freq_factors,
            },
            max_position_embeddings: self.get_usize(&k("context_length"))?,
            tie_word_embeddings: !self.content.tensor_infos.contains_key("output.weight"),
            attention_bias: self.content.tensor_infos.contains_key("blk.0.attn_q.bias"),
            sliding_window,
            sliding_layers,
            rope_local,
            query_pre_attn_scalar,
            embed_scale: gemma.then(|| (hidden_size as f64).sqrt()),
            hidden_act: if gemma {
                Activation::GeluTanh
            } else {
                Activation::Silu
            },
            bos_token_id: self
                .get_u64("tokenizer.ggml.bos_token_id")
                .ok()
                .map(|x| x as u32),
            eos_token_ids: eos,
            mla,
            moe,
            num_labels: None,
        };
        cfg.validate(&self.path)?;
        Ok(cfg)
    }

    /// DeepSeek's latent-attention and expert sizes from `deepseek2.*`. Both converter
    /// generations: with `key_length_mla` (kv_b split into `attn_k_b`/`attn_v_b`, key and
    /// value lengths MQA-shaped) and without (`attn_kv_b`, per-head lengths).
    fn deepseek2(&self, arch: Arch) -> Result<(MlaConfig, Option<MoeConfig>)> {
        let k = |s: &str| format!("deepseek2.{s}");
        let rope = self.get_usize(&k("rope.dimension_count"))?;
        let key_len = match self.get_usize(&k("attention.key_length_mla")) {
            Ok(n) => n,
            Err(_) => self.get_usize(&k("attention.key_length"))?,
        };
        let nope = key_len.checked_sub(rope).ok_or_else(|| {
            self.field_err(
                &k("attention.key_length"),
                &format!("{key_len} is smaller than the rotary part {rope}"),
            )
        })?;
        let v_head_dim = match self.get_usize(&k("attention.value_length_mla")) {
            Ok(n) => n,
            Err(_) => self.get_usize(&k("attention.value_length"))?,
        };
        let mla = MlaConfig {
            q_lora_rank: self.get_usize(&k("attention.q_lora_rank")).ok(),
            kv_lora_rank: self.get_usize(&k("attention.kv_lora_rank"))?,
            qk_nope_head_dim: nope,
            qk_rope_head_dim: rope,
            v_head_dim,
        };
        let Ok(n_experts) = self.get_usize(&k("expert_count")) else {
            return Ok((mla, None));
        };
        let n_group = self.get_usize(&k("expert_group_count")).unwrap_or(1);
        // GGUF does not name the method: V3's sigmoid scores come with noaux_tc, V2's softmax
        // with group-limited greedy when experts are grouped.
        let method = match (arch, n_group) {
            (Arch::DeepseekV3, _) => TopkMethod::NoauxTc,
            (_, 1) => TopkMethod::Greedy,
            _ => TopkMethod::GroupLimitedGreedy,
        };
        let moe = MoeConfig {
            router: RouterConfig {
                method,
                scoring: if arch == Arch::DeepseekV3 {
                    ScoringFunc::Sigmoid
                } else {
                    ScoringFunc::Softmax
                },
                n_experts,
                top_k: self.get_usize(&k("expert_used_count"))?,
                n_group,
                topk_group: self.get_usize(&k("expert_group_used_count")).unwrap_or(1),
                norm_topk_prob: self.get_bool(&k("expert_weights_norm")).unwrap_or(false),
                routed_scaling_factor: self.get_f64(&k("expert_weights_scale")).unwrap_or(1.0)
                    as f32,
            },
            moe_intermediate_size: self.get_usize(&k("expert_feed_forward_length"))?,
            n_shared_experts: self.get_usize(&k("expert_shared_count")).unwrap_or(0),
            first_k_dense_replace: self.get_usize(&k("leading_dense_block_count")).unwrap_or(0),
            moe_layer_freq: 1,
        };
        Ok((mla, Some(moe)))
    }
}

/// Tensors of a GGUF file by HF name. With `dense = Some(dtype)` every matrix is dequantized
/// at load (the exact reference path); otherwise matrices stay quantized.
pub struct GgufSource {
    pub file: GgufFile,
    device: Device,
    dense: Option<DType>,
    /// Gemma 3's norm names (see `names::gguf_name`).
    gemma: bool,
    /// The stacked expert tensor last read, kept while its experts are asked for one by one.
    experts: Option<(String, Arc<QTensor>)>,
}

impl GgufSource {
    pub fn new(file: GgufFile, device: &Device, dense: Option<DType>) -> Self {
        let gemma = file.architecture().is_ok_and(|a| a == "gemma3");
        Self {
            file,
            device: device.clone(),
            dense,
            gemma,
            experts: None,
        }
    }

    /// Expert `e` of the stacked `(experts, out, in)` tensor `name`, as its own `(out, in)`
    /// tensor (a contiguous run of its blocks).
    fn expert(&mut self, name: &str, e: usize, shape: [usize; 2]) -> Result<QTensor> {
        if self.experts.as_ref().is_none_or(|(n, _)| n != name) {
            let got = self.file.tensor_shape(name).ok_or_else(|| {
                Error::format(&self.file.path, format!("tensor {name} is missing"))
            })?;
            if got.len() != 3 || got[1..] != shape {
                return Err(Error::format(
                    &self.file.path,
                    format!(
                        "tensor {name} has shape {got:?}, the metadata implies [experts, {}, {}]",
                        shape[0], shape[1]
                    ),
                ));
            }
            let device = self.device.clone();
            let t = self.file.tensor(name, &device)?;
            self.experts = Some((name.to_string(), Arc::new(t)));
        }
        let Some((_, stacked)) = &self.experts else {
            unreachable!("set above")
        };
        let n = stacked.shape().dims()[0];
        if e >= n {
            return Err(Error::format(
                &self.file.path,
                format!("tensor {name} holds {n} experts, expert {e} is asked for"),
            ));
        }
        let data = stacked.data()?;
        let per = data.len() / n;
        let bytes = data[e * per..(e + 1) * per].to_vec();
        let storage = QStorage::from_data(
            std::borrow::Cow::Owned(bytes),
            &self.device,
            stacked.dtype(),
        )?;
        Ok(QTensor::new(storage, (shape[0], shape[1]))?)
    }

    /// DeepSeek's `kv_b_proj` `(heads * (nope + v), rank)` from the split `attn_k_b`
    /// `(heads, rank, nope)` and `attn_v_b` `(heads, v, rank)` of newer conversions.
    fn kv_b_from_split(&mut self, hf: &str, shape: [usize; 2]) -> Result<Linear> {
        let prefix = gguf_name(hf, false)
            .and_then(|n| n.strip_suffix("attn_kv_b.weight").map(String::from))
            .ok_or_else(|| Error::Msg(format!("no GGUF name for tensor {hf}")))?;
        let load = |s: &mut Self, name: String| -> Result<Tensor> {
            let device = s.device.clone();
            if s.file.tensor_shape(&name).is_none() {
                return Err(Error::format(
                    &s.file.path,
                    format!("tensor {name} is missing (and no attn_kv_b)"),
                ));
            }
            Ok(s.file.tensor(&name, &device)?.dequantize(&device)?)
        };
        let k_b = load(self, format!("{prefix}attn_k_b.weight"))?;
        let v_b = load(self, format!("{prefix}attn_v_b.weight"))?;
        let (heads, rank, nope) = k_b.dims3()?;
        let (vh, v, vr) = v_b.dims3()?;
        if vh != heads || vr != rank || heads * (nope + v) != shape[0] || rank != shape[1] {
            return Err(Error::format(
                &self.file.path,
                format!(
                    "tensors {prefix}attn_k_b {:?} and attn_v_b {:?} do not make kv_b {shape:?}",
                    k_b.dims(),
                    v_b.dims()
                ),
            ));
        }
        let kv = Tensor::cat(&[&k_b.transpose(1, 2)?, &v_b], 1)?.reshape((shape[0], shape[1]))?;
        Linear::dense(kv.to_dtype(self.dense.unwrap_or(DType::F32))?, None)
    }

    fn qtensor(&mut self, hf: &str, shape: &[usize]) -> Result<QTensor> {
        let name = gguf_name(hf, self.gemma)
            .ok_or_else(|| Error::Msg(format!("no GGUF name for tensor {hf}")))?;
        let got = self
            .file
            .tensor_shape(&name)
            .ok_or_else(|| Error::format(&self.file.path, format!("tensor {name} is missing")))?;
        if got != shape {
            return Err(Error::format(
                &self.file.path,
                format!("tensor {name} has shape {got:?}, the metadata implies {shape:?}"),
            ));
        }
        let device = self.device.clone();
        self.file.tensor(&name, &device)
    }

    fn matrix(&mut self, hf: &str, shape: [usize; 2], bias: Option<Tensor>) -> Result<Linear> {
        if hf.ends_with("kv_b_proj.weight") && !self.contains(hf) {
            return self.kv_b_from_split(hf, shape);
        }
        let q = match expert_tensor(hf) {
            Some((name, e)) => self.expert(&name, e, shape)?,
            None => self.qtensor(hf, &shape)?,
        };
        let linear = if q.dtype() == GgmlDType::F32
            || q.dtype() == GgmlDType::F16
            || q.dtype() == GgmlDType::BF16
        {
            Linear::dense(
                q.dequantize(&self.device)?
                    .to_dtype(self.dense.unwrap_or(DType::F32))?,
                bias,
            )?
        } else {
            Linear::quantized(Arc::new(q), bias)?
        };
        match self.dense {
            Some(dt) => linear.into_dense(dt),
            None => Ok(linear),
        }
    }
}

impl TensorSource for GgufSource {
    fn path(&self) -> &Path {
        &self.file.path
    }
    fn device(&self) -> &Device {
        &self.device
    }
    fn contains(&self, name: &str) -> bool {
        gguf_name(name, self.gemma).is_some_and(|n| self.file.content.tensor_infos.contains_key(&n))
    }
    fn is_gguf(&self) -> bool {
        true
    }
    fn dense(&mut self, name: &str, shape: &[usize], dtype: DType) -> Result<Tensor> {
        let q = self.qtensor(name, shape)?;
        Ok(q.dequantize(&self.device)?.to_dtype(dtype)?)
    }
    fn linear(&mut self, name: &str, shape: [usize; 2], bias: Option<Tensor>) -> Result<Linear> {
        self.matrix(name, shape, bias)
    }
    fn embedding(&mut self, name: &str, shape: [usize; 2]) -> Result<Embedding> {
        let q = self.qtensor(name, &shape)?;
        Ok(match self.dense {
            Some(dt) => Embedding::Dense(q.dequantize(&self.device)?.to_dtype(dt)?),
            None => Embedding::Quant(Arc::new(q)),
        })
    }
    fn tied_head(&mut self, name: &str, shape: [usize; 2]) -> Result<Linear> {
        self.matrix(name, shape, None)
    }
}
