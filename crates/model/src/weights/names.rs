//! The one table from HF tensor names to llama.cpp's GGUF names.

/// GGUF name of an HF tensor name, or `None` when the name has no GGUF counterpart. Gemma 3
/// (`gemma`) names its four block norms differently: HF's `post_attention_layernorm` is a
/// norm after attention there, not the norm before the MLP.
pub fn gguf_name(hf: &str, gemma: bool) -> Option<String> {
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
    if part == "mlp.gate.e_score_correction_bias" {
        return Some(format!("blk.{layer}.exp_probs_b.bias"));
    }
    let (module, suffix) = part.rsplit_once('.')?;
    let gguf = match module {
        "input_layernorm" => "attn_norm",
        "post_attention_layernorm" if gemma => "post_attention_norm",
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
        // DeepSeek (`deepseek2`): latent attention and experts. Routed experts are stored
        // stacked, one 3-D tensor per projection (see `expert_tensor`).
        "self_attn.q_a_proj" => "attn_q_a",
        "self_attn.q_a_layernorm" => "attn_q_a_norm",
        "self_attn.q_b_proj" => "attn_q_b",
        "self_attn.kv_a_proj_with_mqa" => "attn_kv_a_mqa",
        "self_attn.kv_a_layernorm" => "attn_kv_a_norm",
        "self_attn.kv_b_proj" => "attn_kv_b",
        "mlp.gate" => "ffn_gate_inp",
        "mlp.shared_experts.gate_proj" => "ffn_gate_shexp",
        "mlp.shared_experts.up_proj" => "ffn_up_shexp",
        "mlp.shared_experts.down_proj" => "ffn_down_shexp",
        _ => return None,
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
    fn maps_deepseek_names() {
        assert_eq!(
            expert_tensor("model.layers.3.mlp.experts.17.down_proj.weight").unwrap(),
            ("blk.3.ffn_down_exps.weight".to_string(), 17)
        );
        assert!(expert_tensor("model.layers.3.mlp.shared_experts.down_proj.weight").is_none());
        assert_eq!(
            gguf_name("model.layers.2.mlp.gate.e_score_correction_bias", false).unwrap(),
            "blk.2.exp_probs_b.bias"
        );
        assert_eq!(
            gguf_name("model.layers.2.mlp.gate.weight", false).unwrap(),
            "blk.2.ffn_gate_inp.weight"
        );
        assert_eq!(
            gguf_name("model.layers.2.self_attn.kv_a_proj_with_mqa.weight", false).unwrap(),
            "blk.2.attn_kv_a_mqa.weight"
        );
    }

    #[test]
    fn maps_layer_and_global_names() {
        assert_eq!(
            gguf_name("model.layers.12.self_attn.q_proj.weight", false).unwrap(),
            "blk.12.attn_q.weight"
        );
        assert_eq!(
            gguf_name("model.layers.0.self_attn.k_proj.bias", false).unwrap(),
            "blk.0.attn_k.bias"
        );
        assert_eq!(
            gguf_name("model.layers.3.mlp.down_proj.weight", false).unwrap(),
            "blk.3.ffn_down.weight"
        );
        assert_eq!(
            gguf_name("model.embed_tokens.weight", false).unwrap(),
            "token_embd.weight"
        );
        assert!(gguf_name("model.layers.x.mlp.down_proj.weight", false).is_none());
        assert_eq!(
            gguf_name("model.layers.1.post_attention_layernorm.weight", false).unwrap(),
            "blk.1.ffn_norm.weight"
        );
        assert_eq!(
            gguf_name("model.layers.1.post_attention_layernorm.weight", true).unwrap(),
            "blk.1.post_attention_norm.weight"
        );
        assert_eq!(
            gguf_name("model.layers.1.pre_feedforward_layernorm.weight", true).unwrap(),
            "blk.1.ffn_norm.weight"
        );
    }
}
