//! Training control vectors from contrastive prompt pairs (repeng / CAA style).
//!
//! For each pair, both prompts run through the model (BOS first when the model asks for it)
//! and the hidden state of the last token after each block of the range is kept. Per block,
//! with `d_i = h(positive_i) - h(negative_i)`:
//! - `mean` (CAA): the mean of the `d_i`, scaled to unit length;
//! - `pca` (repeng's `pca_diff`): the first principal component of the centred `d_i`
//!   (power iteration in f64), unit length, its sign chosen so that most positives project
//!   above their negatives.
//!
//! The vector of block L is stored as `direction.L` and, as llama.cpp applies it, added to the
//! output of block L: measured where it is applied (repeng's convention, not
//! cvector-generator's one-block shift).

use crate::control::ControlVector;
use crate::error::{Error, Result};
use ethos_model::hooks::Capture;
use ethos_model::Model;
use std::collections::BTreeMap;
use std::ops::RangeInclusive;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Mean,
    Pca,
}

#[derive(Clone, Debug, PartialEq, serde::Deserialize)]
pub struct Pair {
    pub positive: String,
    pub negative: String,
}

/// Last-token hidden states after each block of `layers` for one prompt.
fn last_hidden(
    model: &Model,
    text: &str,
    layers: &RangeInclusive<usize>,
) -> Result<BTreeMap<usize, Vec<f32>>> {
    let ids = model.tokenizer()?.encode_prompt(text)?;
    if ids.is_empty() {
        return Err(Error::Msg("an empty prompt in the pairs".into()));
    }
    let d = &model.decoder;
    let mut cache = d.new_cache(1, ids.len())?;
    let pos: Vec<i32> = (0..ids.len() as i32).collect();
    let mut cap = Capture {
        layers: layers.clone(),
        captured: Vec::new(),
    };
    d.forward_last(
        std::slice::from_ref(&ids),
        &[pos],
        &mut cache,
        Some(&mut cap),
    )?;
    cap.captured
        .into_iter()
        .map(|(l, h)| {
            let last = h.narrow(1, ids.len() - 1, 1)?.flatten_all()?;
            Ok((l, last.to_dtype(ethos_model::DType::F32)?.to_vec1::<f32>()?))
        })
        .collect()
}

fn unit(v: Vec<f64>) -> Vec<f64> {
    let n = v.iter().map(|x| x * x).sum::<f64>().sqrt();
    if n == 0.0 {
        v
    } else {
        v.into_iter().map(|x| x / n).collect()
    }
}

/// The first principal component of the centred rows (power iteration on XᵀX, started from
/// the mean difference so that the result is deterministic).
fn first_component(rows: &[Vec<f64>], start: &[f64]) -> Vec<f64> {
    let d = start.len();
    let mean: Vec<f64> = (0..d)
        .map(|j| rows.iter().map(|r| r[j]).sum::<f64>() / rows.len() as f64)
        .collect();
    let centred: Vec<Vec<f64>> = rows
        .iter()
        .map(|r| r.iter().zip(&mean).map(|(a, m)| a - m).collect())
        .collect();
    // A start orthogonal to every centred row (or all rows equal) has no principal direction:
    // fall back to the mean difference then.
    let mut v = unit(
        start
            .iter()
            .enumerate()
            .map(|(j, x)| x + 1e-3 * ((j % 7) as f64 - 3.0))
            .collect(),
    );
    for _ in 0..500 {
        let proj: Vec<f64> = centred
            .iter()
            .map(|r| r.iter().zip(&v).map(|(a, b)| a * b).sum())
            .collect();
        let next: Vec<f64> = (0..d)
            .map(|j| centred.iter().zip(&proj).map(|(r, p)| r[j] * p).sum())
            .collect();
        let next = unit(next);
        let change: f64 = next.iter().zip(&v).map(|(a, b)| (a - b).abs()).sum();
        v = next;
        if change < 1e-12 {
            break;
        }
    }
    if v.iter().all(|x| x.is_finite()) && v.iter().any(|x| *x != 0.0) {
        v
    } else {
        unit(start.to_vec())
    }
}

/// Trains one direction per block in `layers` (which must start at 1 or later: llama.cpp's
/// format has no `direction.0`).
pub fn train(
    model: &Model,
    pairs: &[Pair],
    layers: RangeInclusive<usize>,
    method: Method,
) -> Result<ControlVector> {
    let n_layers = model.config().num_layers;
    if *layers.start() == 0 || *layers.end() >= n_layers || layers.is_empty() {
        return Err(Error::Msg(format!(
            "--layers {}..{}: blocks must lie in 1..{} (llama.cpp's format has no direction.0)",
            layers.start(),
            layers.end(),
            n_layers - 1
        )));
    }
    if pairs.len() < 2 && method == Method::Pca {
        return Err(Error::Msg("pca needs at least two pairs".into()));
    }
    if pairs.is_empty() {
        return Err(Error::Msg("no pairs".into()));
    }
    let mut diffs: BTreeMap<usize, Vec<Vec<f64>>> = BTreeMap::new();
    for p in pairs {
        let pos = last_hidden(model, &p.positive, &layers)?;
        let neg = last_hidden(model, &p.negative, &layers)?;
        for (l, hp) in pos {
            let hn = &neg[&l];
            diffs.entry(l).or_default().push(
                hp.iter()
                    .zip(hn)
                    .map(|(a, b)| *a as f64 - *b as f64)
                    .collect(),
            );
        }
    }
    let mut directions = BTreeMap::new();
    for (l, rows) in diffs {
        let d = rows[0].len();
        let mean: Vec<f64> = (0..d)
            .map(|j| rows.iter().map(|r| r[j]).sum::<f64>() / rows.len() as f64)
            .collect();
        let mut v = match method {
            Method::Mean => unit(mean.clone()),
            Method::Pca => first_component(&rows, &mean),
        };
        // Sign: most positives above their negatives along v (repeng's rule).
        let above = rows
            .iter()
            .filter(|r| r.iter().zip(&v).map(|(a, b)| a * b).sum::<f64>() > 0.0)
            .count();
        if 2 * above < rows.len() {
            v.iter_mut().for_each(|x| *x = -*x);
        }
        directions.insert(l, v.into_iter().map(|x| x as f32).collect());
    }
    Ok(ControlVector {
        model_hint: Some(model.config().arch.name().to_string()),
        directions,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rows spread mostly along one axis: the component is that axis, up to sign.
    #[test]
    fn first_component_finds_the_axis_of_largest_variance() {
        let rows: Vec<Vec<f64>> = (0..20)
            .map(|i| {
                let t = i as f64 - 9.5;
                vec![3.0 * t, 0.1 * (i % 3) as f64, 1.0]
            })
            .collect();
        let v = first_component(&rows, &[0.0, 0.1, 1.0]);
        assert!((v[0].abs() - 1.0).abs() < 1e-6, "{v:?}");
    }
}
