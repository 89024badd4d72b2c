//! The residual add at a block boundary and the RMSNorm after it, in one pass on candle's
//! spinning pool, with the bits of candle's CPU ops: the sum `x + delta`, then per row the
//! squares added one after another from the first element (candle's `rms_row`), `m =
//! sqrt(sum / n + eps)` and `y = h / m * alpha`.
//!
//! Why not candle's ops: its `rms_norm` runs on rayon's threads, which compete with the
//! spinning pool our GEMMs use for the two cores, and its sum of squares is one serial chain
//! of additions per row, latency-bound. Here 16 rows are summed at once, one row per lane,
//! so each row keeps its own order of additions and the result its bits.

/// Rows summed side by side.
const LANES: usize = 16;
/// Rows per work item on the pool.
const TASK: usize = 32;

struct Shared(*mut f32, *mut f32);
// SAFETY: each work item writes only its own rows of both outputs.
unsafe impl Sync for Shared {}

/// For `rows` rows of `n` values: `h = x + delta` (or `x` without `delta`, then `h` is not
/// written) and `y = RMSNorm(h) * alpha`.
pub fn add_rms_norm(
    x: &[f32],
    delta: Option<&[f32]>,
    alpha: &[f32],
    eps: f32,
    n: usize,
    mut h: Option<&mut [f32]>,
    y: &mut [f32],
) {
    let len = y.len();
    assert!(n > 0 && len.is_multiple_of(n) && x.len() == len && alpha.len() == n);
    assert!(delta.is_none_or(|d| d.len() == len));
    assert!(delta.is_none() || h.as_ref().is_some_and(|h| h.len() == len));
    let rows = len / n;
    let out = Shared(
        h.as_deref_mut()
            .map_or(std::ptr::null_mut(), |h| h.as_mut_ptr()),
        y.as_mut_ptr(),
    );
    let items = |range: std::ops::Range<usize>| {
        let out = &out;
        for t in range {
            let (r0, r1) = (t * TASK, ((t + 1) * TASK).min(rows));
            let span = r0 * n..r1 * n;
            // SAFETY: rows r0..r1 of both outputs belong to this item alone and are in
            // bounds (len checked above); h is only read when delta (hence h) is given.
            let y = unsafe { std::slice::from_raw_parts_mut(out.1.add(span.start), span.len()) };
            let src: &[f32] = match delta {
                Some(d) => {
                    let h = unsafe {
                        std::slice::from_raw_parts_mut(out.0.add(span.start), span.len())
                    };
                    for ((h, a), b) in h.iter_mut().zip(&x[span.clone()]).zip(&d[span.clone()]) {
                        *h = a + b;
                    }
                    h
                }
                None => &x[span],
            };
            norm_rows(src, alpha, eps, n, y);
        }
    };
    let tasks = rows.div_ceil(TASK);
    if len < 1 << 15 {
        items(0..tasks);
    } else {
        candle_core::utils::barrier_pool().execute_chunked(tasks, items);
    }
}

/// `y = h / sqrt(mean(h^2) + eps) * alpha` for each row of `h`.
fn norm_rows(h: &[f32], alpha: &[f32], eps: f32, n: usize, y: &mut [f32]) {
    for (hs, ys) in h.chunks(LANES * n).zip(y.chunks_mut(LANES * n)) {
        let rows = hs.len() / n;
        let mut sums = [0f32; LANES];
        if rows == LANES {
            for j in 0..n {
                for (r, s) in sums.iter_mut().enumerate() {
                    let v = hs[r * n + j];
                    *s += v * v;
                }
            }
        } else {
            for (r, s) in sums.iter_mut().take(rows).enumerate() {
                *s = hs[r * n..(r + 1) * n].iter().map(|v| v * v).sum();
            }
        }
        for (r, s) in sums.iter().take(rows).enumerate() {
            let m = (s / n as f32 + eps).sqrt();
            let (hr, yr) = (&hs[r * n..(r + 1) * n], &mut ys[r * n..(r + 1) * n]);
            for ((y, v), a) in yr.iter_mut().zip(hr).zip(alpha) {
                *y = v / m * a;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Tensor};

    fn values(len: usize, salt: usize) -> Vec<f32> {
        (0..len)
            .map(|i| {
                let v = (((i * 7919 + salt * 104_729) % 2003) as f32 / 1001.5 - 1.0) * 3.1;
                if i % 211 == 7 {
                    v * 60.0
                } else {
                    v
                }
            })
            .collect()
    }

    /// Against candle's add and `rms_norm` bit for bit, for row counts on both of candle's
    /// paths (serial up to 32 rows, rayon above), whole and partial groups of 16, and our
    /// serial and pooled paths.
    #[test]
    fn gives_the_bits_of_candles_add_and_rms_norm() {
        let dev = Device::Cpu;
        for &(rows, n) in &[
            (1, 64),
            (7, 576),
            (16, 576),
            (33, 576),
            (100, 576),
            (75, 640),
        ] {
            let (x, d, alpha) = (values(rows * n, 1), values(rows * n, 2), values(n, 3));
            let eps = 1e-5;
            let xt = Tensor::from_vec(x.clone(), (rows, n), &dev).unwrap();
            let dt = Tensor::from_vec(d.clone(), (rows, n), &dev).unwrap();
            let at = Tensor::from_vec(alpha.clone(), n, &dev).unwrap();
            let ht = (&xt + &dt).unwrap();
            let want_h: Vec<f32> = ht.flatten_all().unwrap().to_vec1().unwrap();
            let norm = |t: &Tensor| -> Vec<f32> {
                candle_nn::ops::rms_norm(t, &at, eps)
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .to_vec1()
                    .unwrap()
            };
            let (want_y, want_plain) = (norm(&ht), norm(&xt));
            let (mut h, mut y) = (vec![f32::NAN; rows * n], vec![f32::NAN; rows * n]);
            add_rms_norm(&x, Some(&d), &alpha, eps, n, Some(&mut h), &mut y);
            let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&h), bits(&want_h), "h, {rows} x {n}");
            assert_eq!(bits(&y), bits(&want_y), "y, {rows} x {n}");
            let mut plain = vec![f32::NAN; rows * n];
            add_rms_norm(&x, None, &alpha, eps, n, None, &mut plain);
            assert_eq!(bits(&plain), bits(&want_plain), "norm alone, {rows} x {n}");
        }
    }
}
