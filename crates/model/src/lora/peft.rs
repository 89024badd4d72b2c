//! PEFT LoRA folders: `adapter_config.json` (`peft_type`, `r`, `lora_alpha`, `use_rslora`,
//! `rank_pattern`, `alpha_pattern`, ...) and `adapter_model.safetensors` (`base_model.model.
//! <module>.lora_A.weight` `(r, in)` and `lora_B.weight` `(out, r)`). Options PEFT has that
//! change the arithmetic and ethos does not implement are refused by name, never ignored.

use super::{check_finite, Adapter, AdapterFormat, Factors};
use crate::error::{one_line, Error, Result};
use candle_core::{DType, Device};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

pub fn load(folder: &Path) -> Result<Adapter> {
    let config_path = folder.join("adapter_config.json");
    if !config_path.exists() {
        return Err(Error::NotFound(format!(
            "{}: no adapter_config.json (a PEFT adapter folder has one)",
            folder.display()
        )));
    }
    let text = crate::files::read_text(&config_path)?;
    let cfg: Value = serde_json::from_str(&text)
        .map_err(|e| Error::format(&config_path, format!("not valid JSON: {e}")))?;
    let field = |name: &str, msg: &str| Error::config(&config_path, name, msg.to_string());
    match cfg.get("peft_type").and_then(Value::as_str) {
        Some("LORA") => {}
        Some(other) => {
            return Err(field(
                "peft_type",
                &format!("{other} adapters are not supported (only LORA)"),
            ))
        }
        None => return Err(field("peft_type", "missing")),
    }
    let truthy = |name: &str| cfg.get(name).and_then(Value::as_bool).unwrap_or(false);
    if truthy("use_dora") {
        return Err(field(
            "use_dora",
            "DoRA adapters are not supported (only plain LoRA)",
        ));
    }
    for name in ["lora_bias", "use_qalora"] {
        if truthy(name) {
            return Err(field(name, "not supported"));
        }
    }
    match cfg.get("bias").and_then(Value::as_str) {
        None | Some("none") => {}
        Some(b) => {
            return Err(field(
                "bias",
                &format!("\"{b}\" is not supported (only \"none\")"),
            ))
        }
    }
    for name in ["modules_to_save", "target_parameters", "layer_replication"] {
        let set = match cfg.get(name) {
            None | Some(Value::Null) => false,
            Some(Value::Array(a)) => !a.is_empty(),
            Some(_) => true,
        };
        if set {
            return Err(field(
                name,
                "not supported (ethos adapts linear modules only)",
            ));
        }
    }
    let rank = cfg
        .get("r")
        .and_then(Value::as_u64)
        .filter(|r| *r > 0)
        .ok_or_else(|| field("r", "missing or not a positive integer"))? as usize;
    let alpha = cfg
        .get("lora_alpha")
        .and_then(Value::as_f64)
        .filter(|a| a.is_finite())
        .ok_or_else(|| field("lora_alpha", "missing or not a finite number"))?;
    let rslora = truthy("use_rslora");
    let mut alpha_pattern = Vec::new();
    if let Some(Value::Object(m)) = cfg.get("alpha_pattern") {
        for (key, v) in m {
            let a = v
                .as_f64()
                .ok_or_else(|| field("alpha_pattern", &format!("{key}: not a number")))?;
            // PEFT's own matching: the key as a regex ending the module name.
            let re = regex::Regex::new(&format!(r"^(.*\.)?(?:{key})$"))
                .map_err(|e| field("alpha_pattern", &format!("{key}: {}", one_line(&e))))?;
            alpha_pattern.push((re, a));
        }
    }

    let weights_path = folder.join("adapter_model.safetensors");
    if !weights_path.exists() {
        let msg = if folder.join("adapter_model.bin").exists() {
            "no adapter_model.safetensors (adapter_model.bin, a pickle, is not read: save with safe_serialization)"
        } else {
            "no adapter_model.safetensors"
        };
        return Err(Error::NotFound(format!("{}: {msg}", folder.display())));
    }
    let tensors = candle_core::safetensors::load(&weights_path, &Device::Cpu).map_err(|e| {
        Error::format(
            &weights_path,
            format!("not a valid safetensors file: {}", one_line(&e)),
        )
    })?;
    let mut a_of: BTreeMap<String, candle_core::Tensor> = BTreeMap::new();
    let mut b_of: BTreeMap<String, candle_core::Tensor> = BTreeMap::new();
    for (name, t) in tensors {
        let (module, is_a) = split_name(&name).ok_or_else(|| {
            let what = if name.contains("lora_embedding_") {
                "LoRA on token embeddings is not supported"
            } else if name.contains("lora_magnitude_vector") {
                "DoRA magnitude vectors are not supported"
            } else {
                "not a lora_A or lora_B weight"
            };
            Error::format(&weights_path, format!("tensor {name}: {what}"))
        })?;
        if t.rank() != 2 {
            return Err(Error::format(
                &weights_path,
                format!(
                    "tensor {name} has shape {:?}, a matrix was expected",
                    t.dims()
                ),
            ));
        }
        let t = t.to_dtype(DType::F32)?;
        check_finite(&weights_path, &name, &t)?;
        if is_a {
            a_of.insert(module, t);
        } else {
            b_of.insert(module, t);
        }
    }
    let mut modules = BTreeMap::new();
    for (module, a) in a_of {
        let b = b_of.remove(&module).ok_or_else(|| {
            Error::format(
                &weights_path,
                format!("module {module} has lora_A but no lora_B"),
            )
        })?;
        let r = a.dims()[0];
        if b.dims()[1] != r {
            return Err(Error::format(
                &weights_path,
                format!(
                    "module {module}: lora_A {:?} and lora_B {:?} disagree on the rank",
                    a.dims(),
                    b.dims()
                ),
            ));
        }
        let alpha = alpha_pattern
            .iter()
            .find(|(re, _)| re.is_match(&module))
            .map_or(alpha, |(_, a)| *a);
        let factor = if rslora {
            alpha / (r as f64).sqrt()
        } else {
            alpha / r as f64
        };
        modules.insert(module, Factors { a, b, factor });
    }
    if let Some(module) = b_of.keys().next() {
        return Err(Error::format(
            &weights_path,
            format!("module {module} has lora_B but no lora_A"),
        ));
    }
    Ok(Adapter {
        path: folder.to_path_buf(),
        format: AdapterFormat::Peft,
        scale: 1.0,
        rank,
        alpha,
        rslora,
        modules,
        gguf_arch: None,
    })
}

/// `base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight` (or `.lora_A.<adapter>.weight`)
/// as (`model.layers.0.self_attn.q_proj`, true). Multimodal wrappers' text-model prefixes
/// become the plain causal LM's.
fn split_name(name: &str) -> Option<(String, bool)> {
    let rest = name.strip_prefix("base_model.model.").unwrap_or(name);
    let rest = rest.strip_suffix(".weight")?;
    let (module, is_a) = if let Some((m, tail)) = rest.split_once(".lora_A") {
        (m, tail.is_empty() || tail.starts_with('.'))
    } else if let Some((m, tail)) = rest.split_once(".lora_B") {
        if !(tail.is_empty() || tail.starts_with('.')) {
            return None;
        }
        (m, false)
    } else {
        return None;
    };
    let module = if let Some(r) = module.strip_prefix("model.language_model.") {
        format!("model.{r}")
    } else if let Some(r) = module.strip_prefix("language_model.model.") {
        format!("model.{r}")
    } else {
        module.to_string()
    };
    Some((module, is_a))
}

#[cfg(test)]
mod tests {
    use super::split_name;

    #[test]
    fn names_become_the_causal_models() {
        assert_eq!(
            split_name("base_model.model.model.layers.3.mlp.up_proj.lora_B.weight"),
            Some(("model.layers.3.mlp.up_proj".into(), false))
        );
        assert_eq!(
            split_name("base_model.model.model.language_model.layers.0.self_attn.q_proj.lora_A.default.weight"),
            Some(("model.layers.0.self_attn.q_proj".into(), true))
        );
        assert_eq!(
            split_name("base_model.model.lm_head.lora_A.weight"),
            Some(("lm_head".into(), true))
        );
        assert_eq!(
            split_name("base_model.model.model.embed_tokens.lora_embedding_A"),
            None
        );
        assert_eq!(
            split_name("base_model.model.model.layers.0.mlp.up_proj.lora_magnitude_vector.weight"),
            None
        );
    }
}
