//! GGUF block formats whose values come in runs of 32 as `d * q + m`, with `q` a small
//! integer and `d`, `m` one pair per run: the weights the 16-bit integer GEMM
//! (`int16_gemm`) takes, whichever of these types a file stores them in. K-quant
//! super-blocks (Q4_K) are eight such runs, each with its 6-bit scale and minimum applied to
//! the super-block's `d` and `dmin` (the products are exact in f32).

use candle_core::quantized::GgmlDType;
use half::f16;

/// Values per run.
pub const RUN: usize = 32;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunFormat {
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q4K,
}

fn f16_at(b: &[u8], at: usize) -> f32 {
    f16::from_le_bytes([b[at], b[at + 1]]).to_f32()
}

/// Value `e` of a run whose 32 4-bit values are packed as llama.cpp does: value `e < 16` in
/// the low nibble of byte `e`, value `e + 16` in its high nibble.
fn nibble(qs: &[u8], e: usize) -> i16 {
    (if e < 16 {
        qs[e] & 0x0F
    } else {
        qs[e - 16] >> 4
    }) as i16
}

/// Q4_K's 6-bit scale and minimum of run `j` (llama.cpp's `get_scale_min_k4`).
fn scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

impl RunFormat {
    pub fn of(t: GgmlDType) -> Option<Self> {
        Some(match t {
            GgmlDType::Q4_0 => RunFormat::Q4_0,
            GgmlDType::Q4_1 => RunFormat::Q4_1,
            GgmlDType::Q5_0 => RunFormat::Q5_0,
            GgmlDType::Q5_1 => RunFormat::Q5_1,
            GgmlDType::Q8_0 => RunFormat::Q8_0,
            GgmlDType::Q4K => RunFormat::Q4K,
            _ => return None,
        })
    }

    /// Bytes of one GGUF block.
    pub fn block_bytes(self) -> usize {
        match self {
            RunFormat::Q4_0 => 18,
            RunFormat::Q4_1 => 20,
            RunFormat::Q5_0 => 22,
            RunFormat::Q5_1 => 24,
            RunFormat::Q8_0 => 34,
            RunFormat::Q4K => 144,
        }
    }

    /// Values of one GGUF block.
    pub fn block_values(self) -> usize {
        match self {
            RunFormat::Q4K => 256,
            _ => RUN,
        }
    }

    /// Run `r` of `block` (`r < block_values() / 32`): its integers into `q`, and `(d, m)`.
    pub fn run(self, block: &[u8], r: usize, q: &mut [i16; RUN]) -> (f32, f32) {
        match self {
            RunFormat::Q4_0 => {
                let d = f16_at(block, 0);
                q.iter_mut()
                    .enumerate()
                    .for_each(|(e, v)| *v = nibble(&block[2..], e));
                (d, -8.0 * d)
            }
            RunFormat::Q4_1 => {
                q.iter_mut()
                    .enumerate()
                    .for_each(|(e, v)| *v = nibble(&block[4..], e));
                (f16_at(block, 0), f16_at(block, 2))
            }
            RunFormat::Q5_0 | RunFormat::Q5_1 => {
                let at = if self == RunFormat::Q5_0 { 2 } else { 4 };
                let qh =
                    u32::from_le_bytes([block[at], block[at + 1], block[at + 2], block[at + 3]]);
                for (e, v) in q.iter_mut().enumerate() {
                    *v = nibble(&block[at + 4..], e) | ((((qh >> e) & 1) as i16) << 4);
                }
                let d = f16_at(block, 0);
                match self {
                    RunFormat::Q5_0 => (d, -16.0 * d),
                    _ => (d, f16_at(block, 2)),
                }
            }
            RunFormat::Q8_0 => {
                for (v, &b) in q.iter_mut().zip(&block[2..2 + RUN]) {
                    *v = b as i8 as i16;
                }
                (f16_at(block, 0), 0.0)
            }
            RunFormat::Q4K => {
                let (d, dmin) = (f16_at(block, 0), f16_at(block, 2));
                let (sc, mn) = scale_min_k4(r, &block[4..16]);
                let qs = &block[16 + (r / 2) * RUN..][..RUN];
                let shift = if r.is_multiple_of(2) { 0 } else { 4 };
                for (v, &b) in q.iter_mut().zip(qs) {
                    *v = ((b >> shift) & 0x0F) as i16;
                }
                (d * sc as f32, -(dmin * mn as f32))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::quantized::QTensor;
    use candle_core::{Device, Tensor};

    /// Every format's runs rebuild candle's own dequantization of the same bytes: `d * q + m`
    /// equals candle's value to f32 rounding (exactly for the formats without a minimum).
    #[test]
    fn runs_rebuild_candles_dequantized_values() {
        let (n, k) = (3, 512);
        let w: Vec<f32> = (0..n * k)
            .map(|i| (((i * 7919) % 1999) as f32 / 999.5 - 1.0) * (1.0 + (i % 37) as f32))
            .collect();
        let w = Tensor::from_vec(w, (n, k), &Device::Cpu).unwrap();
        for t in [
            GgmlDType::Q4_0,
            GgmlDType::Q4_1,
            GgmlDType::Q5_0,
            GgmlDType::Q5_1,
            GgmlDType::Q8_0,
            GgmlDType::Q4K,
        ] {
            let f = RunFormat::of(t).unwrap();
            let qt = QTensor::quantize(&w, t).unwrap();
            let bytes = qt.data().unwrap();
            let want: Vec<f32> = qt
                .dequantize(&Device::Cpu)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            let runs = f.block_values() / RUN;
            let mut q = [0i16; RUN];
            for (b, block) in bytes.chunks(f.block_bytes()).enumerate() {
                for r in 0..runs {
                    let (d, m) = f.run(block, r, &mut q);
                    for (e, &v) in q.iter().enumerate() {
                        let got = d * v as f32 + m;
                        let expect = want[b * f.block_values() + r * RUN + e];
                        let ulp = expect.abs().max(f32::MIN_POSITIVE) * f32::EPSILON;
                        assert!(
                            (got - expect).abs() <= ulp,
                            "{t:?} block {b} run {r} value {e}: {got} vs {expect}"
                        );
                    }
                }
            }
        }
    }
}
