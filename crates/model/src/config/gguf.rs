//! GGUF metadata -> `ModelConfig`: the keys every llama.cpp architecture writes
//! (`<arch>.embedding_length`, `<arch>.attention.head_count`, ...), then the architecture's own
//! (`Architecture::gguf_config`).

use super::{Activation, Arch, ModelConfig, RopeConfig, RopeScaling, RopeStyle};
use crate::error::{Error, Result};
use crate::weights::gguf::GgufFile;
use candle_core::Device;

/// The model hyper-parameters from the metadata of `file` (`device` reads `rope_freqs`).
pub fn from_gguf(file: &mut GgufFile, device: &Device) -> Result<ModelConfig> {
    let arch = Arch::from_gguf(file)?;
    let arch_name = file.architecture()?.to_string();
    let k = |s: &str| format!("{arch_name}.{s}");
    let hidden_size = file.get_usize(&k("embedding_length"))?;
    let num_heads = file.get_usize(&k("attention.head_count"))?;
    if num_heads == 0 {
        return Err(Error::config(
            &file.path,
            &k("attention.head_count"),
            "must be greater than 0",
        ));
    }
    let num_kv_heads = file
        .get_usize(&k("attention.head_count_kv"))
        .unwrap_or(num_heads);
    let head_dim = file
        .get_usize(&k("attention.key_length"))
        .unwrap_or(hidden_size / num_heads);
    let vocab_size = match file.tensor_shape("token_embd.weight") {
        Some(s) if s.len() == 2 => s[0],
        _ => {
            return Err(Error::format(
                &file.path,
                "tensor token_embd.weight is missing or not a matrix",
            ))
        }
    };
    let scaling = match file.get_str(&k("rope.scaling.type")) {
        Ok("linear") => RopeScaling::Linear {
            factor: file.get_f64(&k("rope.scaling.factor"))?,
        },
        // DeepSeek's converter stores 0.1 * mscale_all_dim as the log multiplier and no
        // mscale: llama.cpp takes the two as equal (true of every DeepSeek release).
        Ok("yarn") => {
            let m = file
                .get_f64(&k("rope.scaling.yarn_log_multiplier"))
                .map_or(0.0, |x| x / 0.1);
            RopeScaling::Yarn {
                factor: file.get_f64(&k("rope.scaling.factor"))?,
                original_max_position_embeddings: file
                    .get_usize(&k("rope.scaling.original_context_length"))?,
                beta_fast: file
                    .get_f64(&k("rope.scaling.yarn_beta_fast"))
                    .unwrap_or(32.0),
                beta_slow: file
                    .get_f64(&k("rope.scaling.yarn_beta_slow"))
                    .unwrap_or(1.0),
                mscale: m,
                mscale_all_dim: m,
                truncate: true,
            }
        }
        Ok("none") | Err(_) => RopeScaling::None,
        Ok(other) => {
            return Err(Error::config(
                &file.path,
                &k("rope.scaling.type"),
                format!("`{other}` is not supported"),
            ))
        }
    };
    let freq_factors = if file.content.tensor_infos.contains_key("rope_freqs.weight") {
        let t = file
            .tensor("rope_freqs.weight", device)?
            .dequantize(&Device::Cpu)?;
        Some(t.flatten_all()?.to_vec1::<f32>()?)
    } else {
        None
    };
    let num_layers = file.get_usize(&k("block_count"))?;
    let mut cfg = ModelConfig {
        arch,
        vocab_size,
        hidden_size,
        intermediate_size: file.get_usize(&k("feed_forward_length"))?,
        num_layers,
        num_heads,
        num_kv_heads,
        head_dim,
        rms_norm_eps: file.get_f64(&k("attention.layer_norm_rms_epsilon"))?,
        rope: RopeConfig {
            theta: file.get_f64(&k("rope.freq_base")).unwrap_or(10000.0),
            // HF's layout, which llama.cpp runs with NeoX (half) rope; architectures whose
            // Q/K rows the converter permutes say so.
            style: RopeStyle::Half,
            scaling,
            freq_factors,
        },
        max_position_embeddings: file.get_usize(&k("context_length"))?,
        tie_word_embeddings: !file.content.tensor_infos.contains_key("output.weight"),
        attention_bias: file.content.tensor_infos.contains_key("blk.0.attn_q.bias"),
        sliding_window: None,
        sliding_layers: None,
        rope_local: None,
        query_pre_attn_scalar: None,
        embed_scale: None,
        hidden_act: Activation::Silu,
        bos_token_id: file
            .get_u64("tokenizer.ggml.bos_token_id")
            .ok()
            .map(|x| x as u32),
        eos_token_ids: file.eos_ids(),
        mla: None,
        moe: None,
        num_labels: None,
    };
    arch.get().gguf_config(file, &mut cfg)?;
    cfg.validate(&file.path)?;
    Ok(cfg)
}
