//! The invariants the decoder relies on, checked once when a configuration is made.

use super::{ModelConfig, RopeScaling};
use crate::error::{Error, Result};
use std::path::Path;

impl ModelConfig {
    /// Checks the invariants the decoder relies on; `source` names the file in errors.
    pub fn validate(&self, source: &Path) -> Result<()> {
        let positive = [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_hidden_layers", self.num_layers),
            ("num_attention_heads", self.num_heads),
            ("num_key_value_heads", self.num_kv_heads),
            ("head_dim", self.head_dim),
            ("max_position_embeddings", self.max_position_embeddings),
        ];
        for (field, v) in positive {
            if v == 0 {
                return Err(Error::config(source, field, "must be greater than 0"));
            }
            // Guards against sizes that would overflow or allocate absurd buffers.
            if v > 1 << 24 {
                return Err(Error::config(
                    source,
                    field,
                    format!("{v} exceeds the limit 2^24"),
                ));
            }
        }
        if !self.num_heads.is_multiple_of(self.num_kv_heads) {
            return Err(Error::config(
                source,
                "num_key_value_heads",
                format!(
                    "{} does not divide num_attention_heads {}",
                    self.num_kv_heads, self.num_heads
                ),
            ));
        }
        if !self.head_dim.is_multiple_of(2) {
            return Err(Error::config(
                source,
                "head_dim",
                format!("{} is odd; rotary needs pairs", self.head_dim),
            ));
        }
        if !(self.rms_norm_eps > 0.0 && self.rms_norm_eps < 1.0) {
            return Err(Error::config(
                source,
                "rms_norm_eps",
                format!("{} is not in (0, 1)", self.rms_norm_eps),
            ));
        }
        if !(self.rope.theta > 0.0 && self.rope.theta.is_finite()) {
            return Err(Error::config(
                source,
                "rope_theta",
                format!("{} is not a positive number", self.rope.theta),
            ));
        }
        if let Some(f) = &self.rope.freq_factors {
            if f.len() != self.head_dim / 2 {
                return Err(Error::config(
                    source,
                    "rope_freqs",
                    format!(
                        "has {} entries, head_dim/2 is {}",
                        f.len(),
                        self.head_dim / 2
                    ),
                ));
            }
        }
        if let Some(v) = &self.sliding_layers {
            if v.len() != self.num_layers {
                return Err(Error::config(
                    source,
                    "layer_types",
                    format!(
                        "has {} entries, num_hidden_layers is {}",
                        v.len(),
                        self.num_layers
                    ),
                ));
            }
        }
        if self.sliding_window == Some(0) {
            return Err(Error::config(
                source,
                "sliding_window",
                "must be at least 1",
            ));
        }
        if let Some(q) = self.query_pre_attn_scalar {
            if !(q > 0.0 && q.is_finite()) {
                return Err(Error::config(
                    source,
                    "query_pre_attn_scalar",
                    format!("{q} is not a positive number"),
                ));
            }
        }
        if let Some(m) = &self.mla {
            let dims = [
                ("kv_lora_rank", m.kv_lora_rank),
                ("qk_nope_head_dim", m.qk_nope_head_dim),
                ("qk_rope_head_dim", m.qk_rope_head_dim),
                ("v_head_dim", m.v_head_dim),
                ("q_lora_rank", m.q_lora_rank.unwrap_or(1)),
            ];
            for (field, v) in dims {
                if v == 0 || v > 1 << 16 {
                    return Err(Error::config(
                        source,
                        field,
                        format!("{v} is not in 1..=65536"),
                    ));
                }
            }
            if m.qk_rope_head_dim % 2 != 0 {
                return Err(Error::config(
                    source,
                    "qk_rope_head_dim",
                    format!("{} is odd; rotary needs pairs", m.qk_rope_head_dim),
                ));
            }
        }
        if let Some(m) = &self.moe {
            m.router
                .validate()
                .map_err(|(field, msg)| Error::config(source, field, msg))?;
            if m.moe_intermediate_size == 0 || m.moe_intermediate_size > 1 << 24 {
                return Err(Error::config(
                    source,
                    "moe_intermediate_size",
                    format!("{} is not in 1..=2^24", m.moe_intermediate_size),
                ));
            }
            if m.router.n_experts > 1 << 16 {
                return Err(Error::config(
                    source,
                    "n_routed_experts",
                    format!("{} exceeds the limit 65536", m.router.n_experts),
                ));
            }
            if m.moe_layer_freq == 0 {
                return Err(Error::config(
                    source,
                    "moe_layer_freq",
                    "must be at least 1",
                ));
            }
        }
        self.validate_rope_scaling(source)?;
        for &e in &self.eos_token_ids {
            if e as usize >= self.vocab_size {
                return Err(Error::config(
                    source,
                    "eos_token_id",
                    format!("{e} is outside the vocabulary ({})", self.vocab_size),
                ));
            }
        }
        Ok(())
    }

    /// Rotary scaling's numbers are finite, factors positive and the ranges non-empty: a zero
    /// or negative factor, or NaN, would make every rotary angle garbage without an error.
    fn validate_rope_scaling(&self, source: &Path) -> Result<()> {
        let bad = |what: &str, v: f64, need: &str| {
            Error::config(
                source,
                &format!("rope_scaling.{what}"),
                format!("{v} is not {need}"),
            )
        };
        let positive = |what: &str, v: f64| {
            if v > 0.0 && v.is_finite() {
                Ok(())
            } else {
                Err(bad(what, v, "a positive number"))
            }
        };
        let finite = |what: &str, v: f64| {
            if v.is_finite() {
                Ok(())
            } else {
                Err(bad(what, v, "a finite number"))
            }
        };
        let context = |v: usize| {
            if v == 0 {
                Err(bad(
                    "original_max_position_embeddings",
                    0.0,
                    "a positive length",
                ))
            } else {
                Ok(())
            }
        };
        match &self.rope.scaling {
            RopeScaling::None => {}
            RopeScaling::Linear { factor } => positive("factor", *factor)?,
            RopeScaling::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max_position_embeddings,
            } => {
                positive("factor", *factor)?;
                positive("low_freq_factor", *low_freq_factor)?;
                positive("high_freq_factor", *high_freq_factor)?;
                context(*original_max_position_embeddings)?;
                if high_freq_factor <= low_freq_factor {
                    return Err(bad(
                        "high_freq_factor",
                        *high_freq_factor,
                        "above low_freq_factor",
                    ));
                }
            }
            RopeScaling::Yarn {
                factor,
                original_max_position_embeddings,
                beta_fast,
                beta_slow,
                mscale,
                mscale_all_dim,
                ..
            } => {
                positive("factor", *factor)?;
                context(*original_max_position_embeddings)?;
                finite("beta_fast", *beta_fast)?;
                finite("beta_slow", *beta_slow)?;
                finite("mscale", *mscale)?;
                finite("mscale_all_dim", *mscale_all_dim)?;
            }
        }
        if let Some(f) = &self.rope.freq_factors {
            if let Some(v) = f.iter().find(|v| !(**v > 0.0 && v.is_finite())) {
                return Err(Error::config(
                    source,
                    "rope_freqs",
                    format!("{v} is not a positive number"),
                ));
            }
        }
        Ok(())
    }
}
