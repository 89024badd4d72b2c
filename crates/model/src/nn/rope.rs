//! Rotary position embeddings: cos/sin of each step's positions, with every scaling rule in one
//! place (default, linear, llama3, GGUF `rope_freqs` factors) and both pairings (half, interleaved).
//!
//! The values are computed for the positions a step uses, not tabled for the whole context a
//! file declares: a config claiming 2^24 positions asked for a table of gigabytes at load.

use crate::config::{RopeConfig, RopeScaling, RopeStyle};
use crate::error::Result;
use candle_core::{DType, Device, Tensor};

pub struct Rope {
    /// Inverse frequencies after scaling, one per pair of dimensions.
    inv: Vec<f64>,
    /// The factor cos/sin are multiplied by (YaRN's magnitude correction, else 1).
    scale: f64,
    style: RopeStyle,
    max_positions: usize,
    device: Device,
}

/// Inverse frequencies of a head of `dim` dimensions, after scaling. Computed in f64.
pub fn inverse_frequencies(cfg: &RopeConfig, dim: usize) -> Vec<f64> {
    let mut inv: Vec<f64> = (0..dim / 2)
        .map(|i| 1.0 / cfg.theta.powf((2 * i) as f64 / dim as f64))
        .collect();
    match &cfg.scaling {
        RopeScaling::None => {}
        RopeScaling::Linear { factor } => inv.iter_mut().for_each(|f| *f /= factor),
        RopeScaling::Llama3 {
            factor,
            low_freq_factor,
            high_freq_factor,
            original_max_position_embeddings,
        } => {
            let old = *original_max_position_embeddings as f64;
            let low_wavelen = old / low_freq_factor;
            let high_wavelen = old / high_freq_factor;
            for f in inv.iter_mut() {
                let wavelen = 2.0 * std::f64::consts::PI / *f;
                if wavelen > low_wavelen {
                    *f /= factor;
                } else if wavelen >= high_wavelen {
                    let smooth =
                        (old / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor);
                    *f = (1.0 - smooth) * *f / factor + smooth * *f;
                }
            }
        }
        RopeScaling::Yarn {
            factor,
            original_max_position_embeddings,
            beta_fast,
            beta_slow,
            truncate,
            ..
        } => {
            // The dimension at which a frequency turns `rotations` times over the original
            // context; frequencies below the ramp are interpolated, above it extrapolated.
            let d = dim as f64;
            let correction_dim = |rotations: f64| {
                d * (*original_max_position_embeddings as f64
                    / (rotations * 2.0 * std::f64::consts::PI))
                    .ln()
                    / (2.0 * cfg.theta.ln())
            };
            let (mut low, mut high) = (correction_dim(*beta_fast), correction_dim(*beta_slow));
            if *truncate {
                (low, high) = (low.floor(), high.ceil());
            }
            let (low, mut high) = (low.max(0.0), high.min(d - 1.0));
            if low == high {
                high += 0.001;
            }
            for (i, f) in inv.iter_mut().enumerate() {
                let ramp = ((i as f64 - low) / (high - low)).clamp(0.0, 1.0);
                let extrapolation = 1.0 - ramp;
                *f = *f / factor * (1.0 - extrapolation) + *f * extrapolation;
            }
        }
    }
    if let Some(factors) = &cfg.freq_factors {
        for (f, d) in inv.iter_mut().zip(factors) {
            *f /= *d as f64;
        }
    }
    inv
}

impl Rope {
    pub fn new(
        cfg: &RopeConfig,
        head_dim: usize,
        max_positions: usize,
        device: &Device,
    ) -> Result<Self> {
        Ok(Self {
            inv: inverse_frequencies(cfg, head_dim),
            scale: cfg.scaling.cos_sin_factor(),
            style: cfg.style,
            max_positions,
            device: device.clone(),
        })
    }

    /// cos/sin of `positions`, `(positions.len(), d/2)` each, in f32 (the angle in f64).
    fn rows(&self, positions: impl Iterator<Item = usize>) -> Result<(Tensor, Tensor)> {
        let (mut cos, mut sin) = (Vec::new(), Vec::new());
        let mut n = 0;
        for p in positions {
            for f in &self.inv {
                let a = p as f64 * f;
                cos.push((a.cos() * self.scale) as f32);
                sin.push((a.sin() * self.scale) as f32);
            }
            n += 1;
        }
        let half = self.inv.len();
        Ok((
            Tensor::from_vec(cos, (n, half), &self.device)?,
            Tensor::from_vec(sin, (n, half), &self.device)?,
        ))
    }

    /// How a head's dimensions pair up for rotation.
    pub fn style(&self) -> RopeStyle {
        self.style
    }

    pub fn max_positions(&self) -> usize {
        self.max_positions
    }

    /// cos/sin for the given positions: `(t, d/2)` when every row shares them, else `(b, t, d/2)`.
    pub fn tables(&self, positions: &Positions) -> Result<(Tensor, Tensor)> {
        match positions {
            Positions::Shared { start, len } => self.rows(*start..*start + *len),
            Positions::PerRow { flat, batch, len } => {
                // Rows share most positions: compute the span they cover once, then pick.
                let lo = flat.iter().copied().min().unwrap_or(0);
                let hi = flat.iter().copied().max().unwrap_or(0);
                let (cos, sin) = self.rows(lo as usize..hi as usize + 1)?;
                let pick: Vec<u32> = flat.iter().map(|&p| p - lo).collect();
                let pick = Tensor::from_vec(pick, flat.len(), &self.device)?;
                Ok((
                    cos.index_select(&pick, 0)?.reshape((*batch, *len, ()))?,
                    sin.index_select(&pick, 0)?.reshape((*batch, *len, ()))?,
                ))
            }
        }
    }

    /// Rotates `x` of shape `(b, heads, t, d)`.
    pub fn apply(&self, x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
        let x = x.contiguous()?;
        let (cos, sin) = if x.dtype() == DType::F32 {
            (cos.clone(), sin.clone())
        } else {
            (cos.to_dtype(x.dtype())?, sin.to_dtype(x.dtype())?)
        };
        Ok(match self.style {
            RopeStyle::Half => candle_nn::rotary_emb::rope(&x, &cos, &sin)?,
            RopeStyle::Interleaved => candle_nn::rotary_emb::rope_i(&x, &cos, &sin)?,
        })
    }
}

/// Where each token of a step sits in its sequence.
pub enum Positions {
    /// All rows hold positions `start..start+len` (the common, cheap case).
    Shared { start: usize, len: usize },
    /// Rows differ (padding, continuations after contexts of different lengths).
    PerRow {
        /// Row-major positions, padding at 0.
        flat: Vec<u32>,
        batch: usize,
        len: usize,
    },
}

impl Positions {
    /// `pos[b][t]` is the position of each token, or -1 for padding.
    pub fn new(pos: &[Vec<i32>]) -> Result<Self> {
        let batch = pos.len();
        let len = pos.first().map_or(0, Vec::len);
        if let Some(first) = pos.first() {
            let start = first.first().copied().unwrap_or(0);
            let contiguous =
                |row: &Vec<i32>| row.iter().enumerate().all(|(i, &p)| p == start + i as i32);
            if start >= 0 && pos.iter().all(contiguous) {
                return Ok(Positions::Shared {
                    start: start as usize,
                    len,
                });
            }
        }
        let flat: Vec<u32> = pos.iter().flatten().map(|&p| p.max(0) as u32).collect();
        Ok(Positions::PerRow { flat, batch, len })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(scaling: RopeScaling, style: RopeStyle) -> RopeConfig {
        RopeConfig {
            theta: 10000.0,
            style,
            scaling,
            freq_factors: None,
        }
    }

    #[test]
    fn default_frequencies() {
        let inv = inverse_frequencies(&cfg(RopeScaling::None, RopeStyle::Half), 8);
        assert_eq!(inv.len(), 4);
        assert!((inv[0] - 1.0).abs() < 1e-12);
        assert!((inv[1] - 0.1).abs() < 1e-12); // 10000^(-2/8)
    }

    #[test]
    fn llama3_scaling_keeps_high_and_divides_low_frequencies() {
        let s = RopeScaling::Llama3 {
            factor: 8.0,
            low_freq_factor: 1.0,
            high_freq_factor: 4.0,
            original_max_position_embeddings: 64,
        };
        let base = inverse_frequencies(&cfg(RopeScaling::None, RopeStyle::Half), 16);
        let scaled = inverse_frequencies(&cfg(s, RopeStyle::Half), 16);
        // wavelength 2π < 16: untouched; the lowest frequency (wavelength ≫ 64): divided by 8.
        assert_eq!(scaled[0], base[0]);
        assert!((scaled[7] - base[7] / 8.0).abs() < 1e-15);
        // in between: strictly between the two.
        let mid = (0..8)
            .find(|&i| {
                let w = 2.0 * std::f64::consts::PI / base[i];
                (16.0..=64.0).contains(&w)
            })
            .unwrap();
        assert!(scaled[mid] < base[mid] && scaled[mid] > base[mid] / 8.0);
    }

    /// YaRN as transformers computes it (`_compute_yarn_parameters`, values printed by it for
    /// this config: head 8, base 1e4, factor 4, original context 64, mscale 1 and 0.5).
    #[test]
    fn yarn_frequencies_and_factor_match_transformers() {
        let s = RopeScaling::Yarn {
            factor: 4.0,
            original_max_position_embeddings: 64,
            beta_fast: 32.0,
            beta_slow: 1.0,
            mscale: 1.0,
            mscale_all_dim: 0.5,
            truncate: true,
        };
        let want = [1.0, 0.0625, 0.0024999999441206455, 0.0002500000118743628];
        let got = inverse_frequencies(&cfg(s.clone(), RopeStyle::Interleaved), 8);
        // transformers computes in f32: equal to its precision.
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-6 * w, "{got:?}");
        }
        assert!((s.cos_sin_factor() - 1.0648216253695715).abs() < 1e-12);
    }

    /// Half and interleaved styles are the same rotation on permuted dimensions: permuting the
    /// input as llama.cpp's converter does and rotating interleaved equals rotating half-style
    /// and permuting after.
    #[test]
    fn interleaved_equals_half_on_permuted_dims() -> Result<()> {
        let dev = Device::Cpu;
        let d = 8;
        let half = Rope::new(&cfg(RopeScaling::None, RopeStyle::Half), d, 16, &dev)?;
        let inter = Rope::new(&cfg(RopeScaling::None, RopeStyle::Interleaved), d, 16, &dev)?;
        let x = Tensor::arange(0f32, (2 * 5 * d) as f32, &dev)?
            .reshape((1, 2, 5, d))?
            .sin()?;
        // permutation: interleaved index 2i <- half index i, 2i+1 <- i + d/2
        let perm: Vec<u32> = (0..d / 2)
            .flat_map(|i| [i as u32, (i + d / 2) as u32])
            .collect();
        let perm = Tensor::new(perm.as_slice(), &dev)?;
        let pos = Positions::new(&[vec![3, 4, 5, 6, 7]])?;
        let (c, s) = half.tables(&pos)?;
        let a = half.apply(&x, &c, &s)?.index_select(&perm, 3)?;
        let b = inter.apply(&x.index_select(&perm, 3)?, &c, &s)?;
        let diff = (a - b)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(diff < 1e-6, "{diff}");
        Ok(())
    }

    /// A declared context of 2^40 positions costs nothing at load (the values are computed
    /// for the positions used; a table of them could not even be allocated), and its last
    /// position's values are the formula's.
    #[test]
    fn a_huge_declared_context_allocates_nothing_up_front() -> Result<()> {
        let dev = Device::Cpu;
        let r = Rope::new(&cfg(RopeScaling::None, RopeStyle::Half), 8, 1 << 40, &dev)?;
        assert_eq!(r.max_positions(), 1 << 40);
        // Positions are i32: the largest one.
        let last = i32::MAX;
        let (c, _) = r.tables(&Positions::new(&[vec![last]])?)?;
        let got = c.to_vec2::<f32>()?;
        let inv = inverse_frequencies(&cfg(RopeScaling::None, RopeStyle::Half), 8);
        for (g, f) in got[0].iter().zip(&inv) {
            assert_eq!(*g, (last as f64 * f).cos() as f32);
        }
        Ok(())
    }

    #[test]
    fn per_row_positions_match_shared() -> Result<()> {
        let dev = Device::Cpu;
        let r = Rope::new(&cfg(RopeScaling::None, RopeStyle::Half), 8, 16, &dev)?;
        let shared = r.tables(&Positions::new(&[vec![2, 3, 4]])?)?.0;
        let rows = r
            .tables(&Positions::new(&[vec![0, 1, -1], vec![2, 3, 4]])?)?
            .0;
        let diff = (rows.get(1)? - shared)?
            .abs()?
            .max_all()?
            .to_scalar::<f32>()?;
        assert_eq!(diff, 0.0);
        Ok(())
    }
}
