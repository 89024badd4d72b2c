//! Gemma 3 text (HF `Gemma3ForCausalLM`, GGUF `gemma3`): the Llama skeleton with
//! - four norms per block (before and after attention, before and after the MLP), all of the
//!   form `x / rms(x) * (1 + w)`: HF stores `w`, llama.cpp's converter stores `1 + w`;
//! - RMSNorm over each head of q and k before rotary;
//! - sliding-window layers (5 of every 6) with rotary base 10k, global layers with 1M;
//! - embeddings scaled by sqrt(hidden), scores by 1/sqrt(query_pre_attn_scalar);
//! - a tanh-GELU gated MLP and a head tied to the embeddings.
//!
//! Reference: transformers' `models/gemma3/modeling_gemma3.py`.

use super::{Architecture, Build, Names};
use crate::chat::ChatTemplate;
use crate::config::{Activation, HfConfig, ModelConfig, RopeConfig, RopeScaling, RopeStyle};
use crate::decoder::{Block, Decoder, FeedForward, SelfAttention};
use crate::error::{Error, Result};
use crate::nn::attention::Attention;
use crate::nn::mlp::Mlp;
use crate::nn::norm::RmsNorm;
use crate::nn::rope::Rope;
use crate::weights::gguf::GgufFile;
use crate::weights::TensorSource;
use candle_core::DType;
use std::path::Path;

/// Gemma's turn format, for Gemma GGUF files that carry no template (the 270M ones do not):
/// transformers' Gemma 3 template for text messages. A system message goes into the first
/// user turn, followed by a blank line; the assistant's role is called `model`.
pub const GEMMA_TEMPLATE: &str = r#"{{ bos_token }}
{%- if messages[0]['role'] == 'system' -%}
    {%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}
    {%- set loop_messages = messages[1:] -%}
{%- else -%}
    {%- set first_user_prefix = "" -%}
    {%- set loop_messages = messages -%}
{%- endif -%}
{%- for message in loop_messages -%}
    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}
        {{ raise_exception("Conversation roles must alternate user/assistant/user/assistant/...") }}
    {%- endif -%}
    {%- if message['role'] == 'assistant' -%}
        {%- set role = "model" -%}
    {%- else -%}
        {%- set role = message['role'] -%}
    {%- endif -%}
    {{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else "") }}
    {{- message['content'] | trim }}
    {{- '<end_of_turn>\n' }}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{ '<start_of_turn>model\n' }}
{%- endif -%}
"#;

pub struct Gemma3;

impl Architecture for Gemma3 {
    fn names(&self) -> &'static Names {
        &Names {
            name: "gemma3",
            hf: &["Gemma3ForCausalLM", "gemma3_text"],
            gguf: Some("gemma3"),
        }
    }

    fn hf_config(&self, hf: &HfConfig, cfg: &mut ModelConfig, path: &Path) -> Result<()> {
        let own: Gemma3Fields = hf.fields(path)?;
        if hf.hidden_activation.is_none() && hf.hidden_act.is_none() {
            cfg.hidden_act = Activation::GeluTanh;
        }
        let layers = match &own.layer_types {
            Some(types) => types
                .iter()
                .map(|t| match t.as_str() {
                    "sliding_attention" => Ok(true),
                    "full_attention" => Ok(false),
                    other => Err(Error::config(
                        path,
                        "layer_types",
                        format!("`{other}` (sliding_attention or full_attention)"),
                    )),
                })
                .collect::<Result<Vec<bool>>>()?,
            None => {
                let n = own
                    .sliding_window_pattern
                    .or(own.sliding_window_pattern_private)
                    .unwrap_or(6);
                (0..cfg.num_layers)
                    .map(|i| n == 0 || (i + 1) % n != 0)
                    .collect()
            }
        };
        cfg.sliding_layers = Some(layers);
        cfg.rope_local = Some(RopeConfig {
            theta: local_rope_theta(hf, &own).unwrap_or(10_000.0),
            style: RopeStyle::Half,
            scaling: RopeScaling::None,
            freq_factors: None,
        });
        cfg.tie_word_embeddings = hf.tie_word_embeddings.unwrap_or(true);
        cfg.sliding_window = hf.sliding_window;
        cfg.query_pre_attn_scalar = Some(own.query_pre_attn_scalar.unwrap_or(256.0));
        cfg.embed_scale = Some((cfg.hidden_size as f64).sqrt());
        Ok(())
    }

    /// As llama.cpp reads it: a window only if the key is there; every
    /// `sliding_window_pattern`-th layer (default 6) global; the local rope base from
    /// `rope.freq_base_swa`, else 10000; scores scaled by 1/sqrt(head_dim) (the 62-layer 27B
    /// by 1/sqrt(hidden/heads)), since the converter does not store query_pre_attn_scalar.
    fn gguf_config(&self, file: &GgufFile, cfg: &mut ModelConfig) -> Result<()> {
        let k = |s: &str| format!("gemma3.{s}");
        cfg.sliding_window = file
            .get_usize(&k("attention.sliding_window"))
            .ok()
            .filter(|&w| w > 0);
        if cfg.sliding_window.is_some() {
            let n = file
                .get_usize(&k("attention.sliding_window_pattern"))
                .unwrap_or(6);
            cfg.sliding_layers = Some((0..cfg.num_layers).map(|i| n == 0 || i % n < n - 1).collect());
        }
        cfg.rope_local = Some(RopeConfig {
            theta: file.get_f64(&k("rope.freq_base_swa")).unwrap_or(10_000.0),
            style: RopeStyle::Half,
            scaling: RopeScaling::None,
            freq_factors: None,
        });
        cfg.query_pre_attn_scalar = Some(if cfg.num_layers == 62 {
            (cfg.hidden_size / cfg.num_heads) as f64
        } else {
            cfg.head_dim as f64
        });
        cfg.embed_scale = Some((cfg.hidden_size as f64).sqrt());
        cfg.hidden_act = Activation::GeluTanh;
        Ok(())
    }

    /// HF's `post_attention_layernorm` is a norm after attention here, not the norm before
    /// the MLP (that is `pre_feedforward_layernorm`).
    fn gguf_tensor_name(&self, hf: &str) -> Option<String> {
        crate::weights::names::gguf_name_with(hf, |module| {
            (module == "post_attention_layernorm").then_some("post_attention_norm")
        })
    }

    /// Gemma GGUF files may carry no template: Gemma's turn format is known.
    fn default_chat_template(&self) -> Option<ChatTemplate> {
        Some(ChatTemplate::new(
            GEMMA_TEMPLATE.to_string(),
            "<bos>".into(),
            "<eos>".into(),
        ))
    }

    /// Instruction-tuned Gemma ends its turn with <end_of_turn>, not <eos>.
    fn stop_tokens(&self) -> &'static [&'static str] {
        &["<end_of_turn>"]
    }

    fn load(&self, b: Build<'_>) -> Result<Decoder> {
        load(b.cfg, b.src, b.dtype, b.max_positions)
    }
}

/// The rope base of the sliding layers: `rope_local_base_freq` (transformers 4) or
/// `rope_parameters.sliding_attention.rope_theta` (transformers 5).
fn local_rope_theta(hf: &HfConfig, own: &Gemma3Fields) -> Option<f64> {
    hf.rope_parameters
        .as_ref()
        .and_then(|p| p.get("sliding_attention"))
        .and_then(|p| p.get("rope_theta"))
        .and_then(|v| v.as_f64())
        .or(own.rope_local_base_freq)
}

/// Gemma 3's own fields of `config.json`.
#[derive(serde::Deserialize)]
struct Gemma3Fields {
    /// The attention scale is 1/sqrt(query_pre_attn_scalar).
    query_pre_attn_scalar: Option<f64>,
    /// `sliding_attention` / `full_attention` per layer (transformers 4.5x and 5).
    layer_types: Option<Vec<String>>,
    /// Without `layer_types`: every n-th layer is global.
    sliding_window_pattern: Option<usize>,
    #[serde(rename = "_sliding_window_pattern")]
    sliding_window_pattern_private: Option<usize>,
    /// The rope base of the sliding layers (transformers 4).
    rope_local_base_freq: Option<f64>,
}

/// A Gemma norm of `size`, as the `1 + w` the formula multiplies by.
fn gemma_norm(src: &mut dyn TensorSource, name: &str, size: usize, eps: f64) -> Result<RmsNorm> {
    let w = src.dense(name, &[size], DType::F32)?;
    let w = if src.is_gguf() {
        w
    } else {
        w.affine(1.0, 1.0)?
    };
    Ok(RmsNorm::new(w, eps))
}

fn load(
    cfg: &ModelConfig,
    src: &mut dyn TensorSource,
    dtype: DType,
    max_positions: usize,
) -> Result<Decoder> {
    let (h, i, v, d) = (
        cfg.hidden_size,
        cfg.intermediate_size,
        cfg.vocab_size,
        cfg.head_dim,
    );
    let (q_out, kv_out) = (cfg.num_heads * d, cfg.num_kv_heads * d);
    let eps = cfg.rms_norm_eps;
    let local = cfg.rope_local.as_ref().ok_or_else(|| {
        Error::format(
            src.path(),
            "Gemma 3 config without the local rotary settings",
        )
    })?;
    let embed = src.embedding("model.embed_tokens.weight", [v, h])?;
    let blocks = (0..cfg.num_layers)
        .map(|l| {
            let p = format!("model.layers.{l}");
            let proj = |src: &mut dyn TensorSource, name: &str, out: usize, inp: usize| {
                src.linear(&format!("{p}.{name}.weight"), [out, inp], None)
            };
            let attn = Attention::new(
                proj(src, "self_attn.q_proj", q_out, h)?,
                proj(src, "self_attn.k_proj", kv_out, h)?,
                proj(src, "self_attn.v_proj", kv_out, h)?,
                proj(src, "self_attn.o_proj", h, q_out)?,
                cfg.num_heads,
                cfg.num_kv_heads,
                d,
            )?
            .with_qk_norm(
                gemma_norm(src, &format!("{p}.self_attn.q_norm.weight"), d, eps)?,
                gemma_norm(src, &format!("{p}.self_attn.k_norm.weight"), d, eps)?,
            )
            .with_scale(cfg.attention_scale());
            let mlp = Mlp::new(
                proj(src, "mlp.gate_proj", i, h)?,
                proj(src, "mlp.up_proj", i, h)?,
                proj(src, "mlp.down_proj", h, i)?,
                cfg.hidden_act,
            )?;
            let norm = |src: &mut dyn TensorSource, name: &str| {
                gemma_norm(src, &format!("{p}.{name}.weight"), h, eps)
            };
            Ok(Block {
                attn_norm: norm(src, "input_layernorm")?,
                attn: SelfAttention::Grouped(attn),
                post_attn_norm: Some(norm(src, "post_attention_layernorm")?),
                mlp_norm: norm(src, "pre_feedforward_layernorm")?,
                ffn: FeedForward::Dense(mlp),
                post_ffn_norm: Some(norm(src, "post_feedforward_layernorm")?),
                sliding: cfg.layer_is_sliding(l),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let norm = gemma_norm(src, "model.norm.weight", h, eps)?;
    let head = super::lm_head(cfg, src)?;
    let rope = Rope::new(&cfg.rope, d, max_positions, src.device())?;
    let rope_local = Some(Rope::new(local, d, max_positions, src.device())?);
    let device = src.device().clone();
    Ok(Decoder::new(
        cfg.clone(),
        embed,
        blocks,
        norm,
        head,
        rope,
        rope_local,
        dtype,
        device,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::Message;
    use crate::weights::names::gguf_name;

    fn parse(json: &str) -> Result<ModelConfig> {
        let p = Path::new("config.json");
        HfConfig::from_json(json, p)?.into_config(p)
    }

    const GEMMA_V4: &str = r#"{"architectures":["Gemma3ForCausalLM"],"vocab_size":100,"hidden_size":64,
        "intermediate_size":128,"num_hidden_layers":7,"num_attention_heads":4,"num_key_value_heads":1,
        "head_dim":32,"query_pre_attn_scalar":24,"rope_theta":1000000.0,"rope_local_base_freq":10000.0,
        "sliding_window":512,"_sliding_window_pattern":6,"rope_scaling":null,"final_logit_softcapping":null,
        "hidden_activation":"gelu_pytorch_tanh","max_position_embeddings":256}"#;

    #[test]
    fn reads_both_gemma3_config_shapes() {
        let v5 = GEMMA_V4
            .replace(
                r#""rope_theta":1000000.0,"rope_local_base_freq":10000.0,"#,
                r#""rope_parameters":{"full_attention":{"rope_type":"default","rope_theta":1000000.0},"sliding_attention":{"rope_type":"default","rope_theta":10000.0}},"#,
            )
            .replace(
                r#""_sliding_window_pattern":6"#,
                r#""layer_types":["sliding_attention","sliding_attention","sliding_attention","sliding_attention","sliding_attention","full_attention","sliding_attention"]"#,
            );
        let (a, b) = (parse(GEMMA_V4).unwrap(), parse(&v5).unwrap());
        assert_eq!(a, b);
        assert_eq!(a.arch.name(), "gemma3");
        assert_eq!(a.rope.theta, 1e6);
        assert_eq!(a.rope_local.as_ref().unwrap().theta, 1e4);
        // Every sixth layer is global: layer 5 of 0..7.
        let sliding: Vec<bool> = (0..7).map(|l| a.layer_is_sliding(l)).collect();
        assert_eq!(sliding, [true, true, true, true, true, false, true]);
        assert_eq!(a.attention_scale(), 1.0 / 24f64.sqrt());
        assert_eq!(a.embed_scale, Some(8.0));
        assert_eq!(a.hidden_act, Activation::GeluTanh);
        assert!(a.tie_word_embeddings);
    }

    #[test]
    fn gemma3_bad_fields_are_named() {
        let e = parse(&GEMMA_V4.replace(
            r#""final_logit_softcapping":null"#,
            r#""final_logit_softcapping":30.0"#,
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("final_logit_softcapping"), "{e}");
        let e = parse(&GEMMA_V4.replace("gelu_pytorch_tanh", "relu"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("hidden_activation") && e.contains("relu"), "{e}");
        let e = parse(&GEMMA_V4.replace(
            r#""_sliding_window_pattern":6"#,
            r#""layer_types":["sliding_attention","full_attention"]"#,
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("layer_types") && e.contains("2 entries"), "{e}");
        let e = parse(&GEMMA_V4.replace(
            r#""_sliding_window_pattern":6"#,
            r#""layer_types":["sliding_attention","local","sliding_attention","sliding_attention","sliding_attention","full_attention","sliding_attention"]"#,
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("layer_types") && e.contains("local"), "{e}");
    }


    #[test]
    fn gemma_turn_format() {
        let t = ChatTemplate::new(GEMMA_TEMPLATE.into(), "<bos>".into(), "<eos>".into());
        let out = t
            .render(
                &[
                    Message::new("system", "Be brief."),
                    Message::new("user", " Hi "),
                    Message::new("assistant", "Hello."),
                    Message::new("user", "Bye"),
                ],
                true,
            )
            .unwrap();
        assert_eq!(
            out,
            "<bos><start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\nHello.<end_of_turn>\n<start_of_turn>user\nBye<end_of_turn>\n<start_of_turn>model\n"
        );
        let e = t
            .render(&[Message::new("assistant", "x")], false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("alternate"), "{e}");
    }

    #[test]
    fn names_its_norms() {
        assert_eq!(
            Gemma3
                .gguf_tensor_name("model.layers.1.post_attention_layernorm.weight")
                .unwrap(),
            "blk.1.post_attention_norm.weight"
        );
        assert_eq!(
            Gemma3
                .gguf_tensor_name("model.layers.1.pre_feedforward_layernorm.weight")
                .unwrap(),
            "blk.1.ffn_norm.weight"
        );
        assert_eq!(
            gguf_name("model.layers.1.post_attention_layernorm.weight").unwrap(),
            "blk.1.ffn_norm.weight"
        );
    }
}
