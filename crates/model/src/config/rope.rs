//! Rotary-embedding settings and how `config.json` states them (transformers 4's
//! `rope_theta` + `rope_scaling`, transformers 5's `rope_parameters`).

use super::HfConfig;
use crate::error::{Error, Result};
use std::path::Path;

/// How rotary embeddings pair the dimensions of a head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RopeStyle {
    /// HF's `rotate_half`: dimension i pairs with i + d/2 (NeoX style).
    Half,
    /// Adjacent pairs (2i, 2i+1): the layout llama.cpp's converter gives llama Q/K weights in GGUF.
    Interleaved,
}

#[derive(Clone, Debug, PartialEq)]
pub enum RopeScaling {
    None,
    Linear {
        factor: f64,
    },
    /// Llama 3.1/3.2 frequency-dependent scaling.
    Llama3 {
        factor: f64,
        low_freq_factor: f64,
        high_freq_factor: f64,
        original_max_position_embeddings: usize,
    },
    /// YaRN (DeepSeek-V2/V3): frequencies blended between interpolation and extrapolation by
    /// a ramp over `beta_fast..beta_slow` rotations; cos/sin scaled by
    /// `mscale(factor, mscale) / mscale(factor, mscale_all_dim)`.
    Yarn {
        factor: f64,
        original_max_position_embeddings: usize,
        beta_fast: f64,
        beta_slow: f64,
        mscale: f64,
        mscale_all_dim: f64,
        /// Round the ramp's ends to whole dimensions (transformers' default).
        truncate: bool,
    },
}

/// YaRN's magnitude correction `0.1 * m * ln(scale) + 1` (1 when not extending).
pub fn yarn_mscale(scale: f64, m: f64) -> f64 {
    if scale <= 1.0 {
        1.0
    } else {
        0.1 * m * scale.ln() + 1.0
    }
}

impl RopeScaling {
    /// The factor cos/sin are multiplied by.
    pub fn cos_sin_factor(&self) -> f64 {
        match self {
            RopeScaling::Yarn {
                factor,
                mscale,
                mscale_all_dim,
                ..
            } => {
                if *mscale != 0.0 && *mscale_all_dim != 0.0 {
                    yarn_mscale(*factor, *mscale) / yarn_mscale(*factor, *mscale_all_dim)
                } else {
                    yarn_mscale(*factor, 1.0)
                }
            }
            _ => 1.0,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct RopeConfig {
    pub theta: f64,
    pub style: RopeStyle,
    pub scaling: RopeScaling,
    /// Per-frequency divisors stored in GGUF as `rope_freqs.weight` (llama 3 scaling, baked).
    pub freq_factors: Option<Vec<f32>>,
}

/// Reads rope theta and scaling from either `rope_theta` + `rope_scaling` (transformers 4 and
/// the official checkpoints) or `rope_parameters` (transformers 5).
pub(super) fn parse_rope(cfg: &HfConfig, path: &Path) -> Result<(f64, RopeScaling)> {
    let params = cfg.rope_parameters.as_ref().filter(|v| !v.is_null());
    // transformers 5 writes per-layer-type settings as {"full_attention": {...}, ...}.
    let params = params.map(|p| p.get("full_attention").unwrap_or(p));
    let scaling = cfg
        .rope_scaling
        .as_ref()
        .filter(|v| !v.is_null())
        .or(params);
    let theta = params
        .and_then(|p| p.get("rope_theta"))
        .and_then(|v| v.as_f64())
        .or(cfg.rope_theta)
        .unwrap_or(10000.0);
    let Some(s) = scaling else {
        return Ok((theta, RopeScaling::None));
    };
    let field = if cfg.rope_scaling.is_some() {
        "rope_scaling"
    } else {
        "rope_parameters"
    };
    let kind = s
        .get("rope_type")
        .or_else(|| s.get("type"))
        .and_then(|v| v.as_str())
        .unwrap_or("default");
    let num = |k: &str| -> Result<f64> {
        s.get(k)
            .and_then(|v| v.as_f64())
            .ok_or_else(|| Error::config(path, &format!("{field}.{k}"), "missing or not a number"))
    };
    let scaling = match kind {
        "default" => RopeScaling::None,
        "linear" => RopeScaling::Linear {
            factor: num("factor")?,
        },
        "llama3" => RopeScaling::Llama3 {
            factor: num("factor")?,
            low_freq_factor: num("low_freq_factor")?,
            high_freq_factor: num("high_freq_factor")?,
            original_max_position_embeddings: num("original_max_position_embeddings")? as usize,
        },
        "yarn" => {
            let or = |k: &str, default: f64| -> Result<f64> {
                match s.get(k) {
                    None | Some(serde_json::Value::Null) => Ok(default),
                    Some(_) => num(k),
                }
            };
            RopeScaling::Yarn {
                factor: num("factor")?,
                original_max_position_embeddings: num("original_max_position_embeddings")? as usize,
                beta_fast: or("beta_fast", 32.0)?,
                beta_slow: or("beta_slow", 1.0)?,
                mscale: or("mscale", 0.0)?,
                mscale_all_dim: or("mscale_all_dim", 0.0)?,
                truncate: s.get("truncate").and_then(|v| v.as_bool()).unwrap_or(true),
            }
        }
        other => {
            return Err(Error::config(
                path,
                &format!("{field}.rope_type"),
                format!("`{other}` is not supported (default, linear, llama3, yarn)"),
            ))
        }
    };
    Ok((theta, scaling))
}
