//! The table from HF tensor names to llama.cpp's GGUF names that architectures share; an
//! architecture with names of its own extends it (`Architecture::gguf_tensor_name`).

/// GGUF name of an HF tensor name, or `None` when the name has no GGUF counterpart.
pub fn gguf_name(hf: &str) -> Option<String> {
    gguf_name_with(hf, |_| None)
}

/// `gguf_name` with a block module (`self_attn.q_proj`) looked up in `own` first.
pub fn gguf_name_with(hf: &str, own: impl Fn(&str) -> Option<&'static str>) -> Option<String> {
    let fixed = match hf {
        "model.embed_tokens.weight" => Some("token_embd.weight"),
        "model.norm.weight" => Some("output_norm.weight"),
        "lm_head.weight" => Some("output.weight"),
        _ => None,
    };
    if let Some(f) = fixed {
        return Some(f.to_string());
    }
    let rest = hf.strip_prefix("model.layers.")?;
    let (layer, part) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let (module, suffix) = part.rsplit_once('.')?;
    let gguf = match own(module) {
        Some(g) => g,
        None => match module {
            "input_layernorm" => "attn_norm",
            "post_attention_layernorm" => "ffn_norm",
            "pre_feedforward_layernorm" => "ffn_norm",
            "post_feedforward_layernorm" => "post_ffw_norm",
            "self_attn.q_norm" => "attn_q_norm",
            "self_attn.k_norm" => "attn_k_norm",
            "self_attn.q_proj" => "attn_q",
            "self_attn.k_proj" => "attn_k",
            "self_attn.v_proj" => "attn_v",
            "self_attn.o_proj" => "attn_output",
            "mlp.gate_proj" => "ffn_gate",
            "mlp.up_proj" => "ffn_up",
            "mlp.down_proj" => "ffn_down",
            _ => return None,
        },
    };
    Some(format!("blk.{layer}.{gguf}.{suffix}"))
}

/// A routed expert's matrix `model.layers.L.mlp.experts.E.{gate,up,down}_proj.weight` as
/// (the stacked GGUF tensor `blk.L.ffn_{gate,up,down}_exps.weight`, E).
pub fn expert_tensor(hf: &str) -> Option<(String, usize)> {
    let rest = hf.strip_prefix("model.layers.")?;
    let (layer, part) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let part = part.strip_prefix("mlp.experts.")?;
    let (expert, proj) = part.split_once('.')?;
    let expert: usize = expert.parse().ok()?;
    let kind = match proj {
        "gate_proj.weight" => "gate",
        "up_proj.weight" => "up",
        "down_proj.weight" => "down",
        _ => return None,
    };
    Some((format!("blk.{layer}.ffn_{kind}_exps.weight"), expert))
}

#[cfg(test)]
mod tests {
    use super::{expert_tensor, gguf_name};

    #[test]
    fn maps_stacked_experts() {
        assert_eq!(
            expert_tensor("model.layers.3.mlp.experts.17.down_proj.weight").unwrap(),
            ("blk.3.ffn_down_exps.weight".to_string(), 17)
        );
        assert!(expert_tensor("model.layers.3.mlp.shared_experts.down_proj.weight").is_none());
    }

    #[test]
    fn maps_layer_and_global_names() {
        assert_eq!(
            gguf_name("model.layers.12.self_attn.q_proj.weight").unwrap(),
            "blk.12.attn_q.weight"
        );
        assert_eq!(
            gguf_name("model.layers.0.self_attn.k_proj.bias").unwrap(),
            "blk.0.attn_k.bias"
        );
        assert_eq!(
            gguf_name("model.layers.3.mlp.down_proj.weight").unwrap(),
            "blk.3.ffn_down.weight"
        );
        assert_eq!(
            gguf_name("model.embed_tokens.weight").unwrap(),
            "token_embd.weight"
        );
        assert!(gguf_name("model.layers.x.mlp.down_proj.weight").is_none());
        assert_eq!(
            gguf_name("model.layers.1.post_attention_layernorm.weight").unwrap(),
            "blk.1.ffn_norm.weight"
        );
    }
}
