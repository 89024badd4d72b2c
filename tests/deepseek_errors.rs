//! DeepSeek configs in both shapes they come in, and bad DeepSeek checkpoints: each fails with
//! one line naming the tensor or field at fault (made by editing copies of the tiny fixtures).

mod common;

use candle_core::{Device, Tensor};
use common::*;
use ethos::model::config::{HfConfig, RopeScaling, RopeStyle};
use ethos::model::loader;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// DeepSeek-V3's config.json as its repository has it (transformers 4 shape).
const V3_OFFICIAL: &str = r#"{"architectures":["DeepseekV3ForCausalLM"],"attention_bias":false,
 "aux_loss_alpha":0.001,"bos_token_id":0,"eos_token_id":1,"ep_size":1,"first_k_dense_replace":3,
 "hidden_act":"silu","hidden_size":7168,"intermediate_size":18432,"kv_lora_rank":512,
 "max_position_embeddings":163840,"model_type":"deepseek_v3","moe_intermediate_size":2048,
 "moe_layer_freq":1,"n_group":8,"n_routed_experts":256,"n_shared_experts":1,"norm_topk_prob":true,
 "num_attention_heads":128,"num_experts_per_tok":8,"num_hidden_layers":61,"num_key_value_heads":128,
 "num_nextn_predict_layers":1,"q_lora_rank":1536,"qk_nope_head_dim":128,"qk_rope_head_dim":64,
 "quantization_config":{"activation_scheme":"dynamic","fmt":"e4m3","quant_method":"fp8","weight_block_size":[128,128]},
 "rms_norm_eps":1e-06,"rope_scaling":{"beta_fast":32,"beta_slow":1,"factor":40,"mscale":1.0,
 "mscale_all_dim":1.0,"original_max_position_embeddings":4096,"type":"yarn"},"rope_theta":10000,
 "routed_scaling_factor":2.5,"scoring_func":"sigmoid","seq_aux":true,"tie_word_embeddings":false,
 "topk_group":4,"topk_method":"noaux_tc","torch_dtype":"bfloat16","v_head_dim":128,"vocab_size":129280}"#;

/// The same model as transformers 5 writes it: `rope_parameters`, `head_dim`, no `topk_method`
/// or `scoring_func`.
const V3_TRANSFORMERS5: &str = r#"{"architectures":["DeepseekV3ForCausalLM"],"attention_bias":false,
 "bos_token_id":0,"eos_token_id":1,"first_k_dense_replace":3,"head_dim":64,"hidden_act":"silu",
 "hidden_size":7168,"intermediate_size":18432,"kv_lora_rank":512,"max_position_embeddings":163840,
 "model_type":"deepseek_v3","moe_intermediate_size":2048,"n_group":8,"n_routed_experts":256,
 "n_shared_experts":1,"norm_topk_prob":true,"num_attention_heads":128,"num_experts_per_tok":8,
 "num_hidden_layers":61,"num_key_value_heads":128,"num_nextn_predict_layers":1,"q_lora_rank":1536,
 "qk_head_dim":192,"qk_nope_head_dim":128,"qk_rope_head_dim":64,"rms_norm_eps":1e-06,
 "rope_interleave":true,"rope_parameters":{"beta_fast":32,"beta_slow":1,"factor":40,"mscale":1.0,
 "mscale_all_dim":1.0,"original_max_position_embeddings":4096,"rope_theta":10000.0,"rope_type":"yarn"},
 "routed_scaling_factor":2.5,"tie_word_embeddings":false,"topk_group":4,"v_head_dim":128,
 "vocab_size":129280}"#;

/// DeepSeek-V2-Lite's config.json as its repository has it.
const V2_LITE_OFFICIAL: &str = r#"{"architectures":["DeepseekV2ForCausalLM"],"aux_loss_alpha":0.001,
 "bos_token_id":100000,"eos_token_id":100001,"first_k_dense_replace":1,"hidden_act":"silu",
 "hidden_size":2048,"intermediate_size":10944,"kv_lora_rank":512,"max_position_embeddings":163840,
 "model_type":"deepseek_v2","moe_intermediate_size":1408,"moe_layer_freq":1,"n_group":1,
 "n_routed_experts":64,"n_shared_experts":2,"norm_topk_prob":false,"num_attention_heads":16,
 "num_experts_per_tok":6,"num_hidden_layers":27,"num_key_value_heads":16,"q_lora_rank":null,
 "qk_nope_head_dim":128,"qk_rope_head_dim":64,"rms_norm_eps":1e-06,"rope_scaling":{"beta_fast":32,
 "beta_slow":1,"factor":40,"mscale":0.707,"mscale_all_dim":0.707,"original_max_position_embeddings":4096,
 "type":"yarn"},"rope_theta":10000,"routed_scaling_factor":1.0,"scoring_func":"softmax","seq_aux":true,
 "tie_word_embeddings":false,"topk_group":1,"topk_method":"greedy","torch_dtype":"bfloat16",
 "v_head_dim":128,"vocab_size":102400}"#;

fn parse(json: &str) -> ethos::model::Result<ethos::model::config::ModelConfig> {
    let p = Path::new("config.json");
    HfConfig::from_json(json, p)?.into_config(p)
}

#[test]
fn both_deepseek_v3_config_shapes_give_one_config() {
    let (a, b) = (
        parse(V3_OFFICIAL).unwrap(),
        parse(V3_TRANSFORMERS5).unwrap(),
    );
    assert_eq!(a, b);
    assert_eq!(a.arch.name(), "deepseek_v3");
    assert_eq!(a.rope.style, RopeStyle::Interleaved);
    assert!(matches!(a.rope.scaling, RopeScaling::Yarn { factor, .. } if factor == 40.0));
    let moe = a.moe.as_ref().unwrap();
    assert_eq!(
        (
            moe.router.n_experts,
            moe.router.top_k,
            moe.first_k_dense_replace
        ),
        (256, 8, 3)
    );
    let mla = a.mla.as_ref().unwrap();
    assert_eq!((mla.q_lora_rank, mla.kv_lora_rank), (Some(1536), 512));
    // 1/sqrt(192) corrected by mscale(40, 1)^2 = (0.1 ln 40 + 1)^2.
    let m = 0.1 * 40f64.ln() + 1.0;
    assert!((a.attention_scale() - m * m / 192f64.sqrt()).abs() < 1e-12);
    // Layers 0-2 dense, 3.. experts; the MTP layer (61) is not a layer of the model.
    assert!(!a.layer_is_moe(2) && a.layer_is_moe(3));
    assert_eq!(a.num_layers, 61);
    // 671B parameters, as DeepSeek reports (37B active), within 1%: the MTP layer excluded.
    let p = a.parameter_count() as f64;
    assert!((p / 671e9 - 1.0).abs() < 0.01, "{p}");
}

#[test]
fn deepseek_v2_lite_config() {
    let c = parse(V2_LITE_OFFICIAL).unwrap();
    assert_eq!(c.arch.name(), "deepseek_v2");
    assert_eq!(c.mla.as_ref().unwrap().q_lora_rank, None);
    let moe = c.moe.as_ref().unwrap();
    assert_eq!(moe.n_shared_experts, 2);
    // 15.7B parameters, as DeepSeek reports, within 1%.
    let p = c.parameter_count() as f64;
    assert!((p / 15.7e9 - 1.0).abs() < 0.01, "{p}");
}

#[test]
fn unknown_routing_names_are_rejected_by_field() {
    let e = parse(&V3_OFFICIAL.replace("noaux_tc", "top_p"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("topk_method") && e.contains("top_p"), "{e}");
    let e = parse(&V3_OFFICIAL.replace(r#""sigmoid""#, r#""sparsemax""#))
        .unwrap_err()
        .to_string();
    assert!(e.contains("scoring_func") && e.contains("sparsemax"), "{e}");
    let e = parse(&V3_OFFICIAL.replace(r#""topk_group":4"#, r#""topk_group":9"#))
        .unwrap_err()
        .to_string();
    assert!(e.contains("topk_group"), "{e}");
}

/// A copy of fixture `name` in a temporary folder, its config edited by `edit` and its
/// tensors by `tensors`.
fn edited_copy(
    name: &str,
    edit: impl Fn(&mut serde_json::Value),
    tensors: impl Fn(&mut HashMap<String, Tensor>),
) -> (tempfile::TempDir, PathBuf) {
    let src = fixtures().join("tiny").join(name);
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = read_json(&src.join("config.json"));
    edit(&mut cfg);
    std::fs::write(dir.path().join("config.json"), cfg.to_string()).unwrap();
    let mut map =
        candle_core::safetensors::load(src.join("model.safetensors"), &Device::Cpu).unwrap();
    tensors(&mut map);
    candle_core::safetensors::save(&map, dir.path().join("model.safetensors")).unwrap();
    let path = dir.path().to_path_buf();
    (dir, path)
}

fn load_err(path: &Path) -> String {
    match loader::load_folder(path, &loader::LoadOptions::default()) {
        Ok(_) => panic!("{} loaded", path.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn config_dimensions_that_disagree_with_the_tensors_name_the_tensor() {
    let (_d, p) = edited_copy("deepseek_v3", |c| c["kv_lora_rank"] = 16.into(), |_| {});
    let e = load_err(&p);
    assert!(
        e.contains("kv_a_proj_with_mqa") && e.contains("shape") && !e.contains('\n'),
        "{e}"
    );
}

#[test]
fn a_missing_expert_tensor_is_named() {
    let gone = "model.layers.2.mlp.experts.5.up_proj.weight";
    let (_d, p) = edited_copy(
        "deepseek_v2_group",
        |_| {},
        |m| {
            m.remove(gone);
        },
    );
    let e = load_err(&p);
    assert!(
        e.contains(gone) && e.contains("missing") && !e.contains('\n'),
        "{e}"
    );
}

#[test]
fn an_fp8_tensor_without_its_scale_is_named() {
    let w = "model.layers.1.self_attn.o_proj.weight";
    let (_d, p) = edited_copy(
        "deepseek_v3_fp8",
        |_| {},
        |m| {
            m.remove(&format!("{w}_scale_inv"));
        },
    );
    let e = load_err(&p);
    assert!(
        e.contains(w) && e.contains("scale") && !e.contains('\n'),
        "{e}"
    );
}

#[test]
fn a_missing_correction_bias_is_named() {
    let gone = "model.layers.1.mlp.gate.e_score_correction_bias";
    let (_d, p) = edited_copy(
        "deepseek_v3",
        |_| {},
        |m| {
            m.remove(gone);
        },
    );
    let e = load_err(&p);
    assert!(e.contains(gone), "{e}");
}
