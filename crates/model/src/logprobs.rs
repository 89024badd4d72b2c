//! Log-probs from logits, one formula for every path (a continuation's first token and its
//! later ones, gathered targets, a text's tokens, generation), so that they agree bit for
//! bit: `x - (max + ln(sum(e^(x - max))))`, the exponentials by `vexp::exp` and the sum in
//! a fixed order. Each row is computed alone, so a row's numbers do not
//! depend on the rows beside it.

use crate::cpu::vexp;
use crate::error::Result;
use candle_core::{DType, Tensor};
use rayon::prelude::*;

/// `ln(sum(e^x))` of one row of logits. The exponentials are added in f64 (16 lanes, then
/// pairwise): an f32 sum over a vocabulary of tens of thousands drifts by about 1e-5.
pub fn log_sum_exp(row: &[f32]) -> f32 {
    let max = row.iter().fold(f32::NEG_INFINITY, |a, &v| a.max(v));
    if !max.is_finite() {
        return max;
    }
    let mut lanes = [0f64; 16];
    let chunks = row.chunks_exact(16);
    let tail = chunks.remainder();
    for c in chunks {
        for (l, &v) in lanes.iter_mut().zip(c) {
            *l += vexp::exp(v - max) as f64;
        }
    }
    for (l, &v) in lanes.iter_mut().zip(tail) {
        *l += vexp::exp(v - max) as f64;
    }
    let mut width = 16;
    while width > 1 {
        width /= 2;
        for i in 0..width {
            lanes[i] += lanes[i + width];
        }
    }
    (max as f64 + lanes[0].ln()) as f32
}

/// The log-prob of token `id` under one row of logits.
pub fn token_logprob(row: &[f32], id: u32) -> f32 {
    row[id as usize] - log_sum_exp(row)
}

/// The log-softmax of each row of `logits` `(n, vocab)`, as f32 `(n, vocab)`.
pub fn log_softmax_rows(logits: &Tensor) -> Result<Tensor> {
    let (n, vocab) = logits.dims2()?;
    let mut rows = logits
        .to_dtype(DType::F32)?
        .flatten_all()?
        .to_vec1::<f32>()?;
    rows.par_chunks_mut(vocab.max(1)).for_each(|row| {
        let lse = log_sum_exp(row);
        row.iter_mut().for_each(|x| *x -= lse);
    });
    Ok(Tensor::from_vec(rows, (n, vocab), logits.device())?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Against the f64 definition, and independent of the rows beside a row.
    #[test]
    fn log_softmax_matches_f64_and_each_row_stands_alone() {
        let vocab = 1000;
        let rows: Vec<Vec<f32>> = (0..3)
            .map(|r| {
                (0..vocab)
                    .map(|i| ((i * 37 + r * 11) % 101) as f32 / 7.0 - 6.0)
                    .collect()
            })
            .collect();
        let flat: Vec<f32> = rows.concat();
        let t = Tensor::from_vec(flat, (3, vocab), &candle_core::Device::Cpu).unwrap();
        let all = log_softmax_rows(&t).unwrap().to_vec2::<f32>().unwrap();
        for (r, row) in rows.iter().enumerate() {
            let lse = row.iter().map(|&x| (x as f64).exp()).sum::<f64>().ln();
            let alone = log_softmax_rows(&t.narrow(0, r, 1).unwrap())
                .unwrap()
                .to_vec2::<f32>()
                .unwrap();
            for (i, &x) in row.iter().enumerate() {
                assert!((all[r][i] as f64 - (x as f64 - lse)).abs() < 2e-6);
                assert_eq!(all[r][i].to_bits(), alone[0][i].to_bits());
                assert_eq!(all[r][i].to_bits(), token_logprob(row, i as u32).to_bits());
            }
        }
        // Masked logits: -inf everywhere but one.
        let mut masked = vec![f32::NEG_INFINITY; 8];
        masked[3] = 2.0;
        assert_eq!(token_logprob(&masked, 3), 0.0);
        assert_eq!(token_logprob(&masked, 0), f32::NEG_INFINITY);
    }
}
