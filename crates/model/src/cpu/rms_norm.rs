//! The residual add at a block boundary and the RMSNorm after it, in one pass on candle's
//! spinning pool, with the bits of candle's CPU ops: the sum `x + delta`, then per row the
//! squares added one after another from the first element (candle's `rms_row`), `m =
//! sqrt(sum / n + eps)` and `y = h / m * alpha`.
//!
//! Why not candle's ops: its `rms_norm` runs on rayon's threads, which compete with the
//! spinning pool our GEMMs use for the two cores, and its sum of squares is one serial chain
//! of additions per row, latency-bound. Here 16 rows are summed at once, one row per lane,
//! so each row keeps its own order of additions and the result its bits.

use std::mem::MaybeUninit;

/// Rows summed side by side.
const LANES: usize = 16;
/// Rows per work item on the pool.
const TASK: usize = 32;

struct Shared(*mut f32, *mut f32);
// SAFETY: each work item writes only its own rows of both outputs.
unsafe impl Sync for Shared {}

/// For rows of `n` values `x`: `(h, y)` with `h = x + delta` (`None` without `delta`) and
/// `y = RMSNorm(h) * alpha`. The outputs are not zero-filled first: every element is
/// written once.
pub fn add_rms_norm(
    x: &[f32],
    delta: Option<&[f32]>,
    alpha: &[f32],
    eps: f32,
    n: usize,
) -> (Option<Vec<f32>>, Vec<f32>) {
    let len = x.len();
    assert!(n > 0 && len.is_multiple_of(n) && alpha.len() == n);
    assert!(delta.is_none_or(|d| d.len() == len));
    let rows = len / n;
    let mut y = Vec::<f32>::with_capacity(len);
    let mut h = delta.map(|_| Vec::<f32>::with_capacity(len));
    let out = Shared(
        h.as_mut().map_or(std::ptr::null_mut(), |h| h.as_mut_ptr()),
        y.as_mut_ptr(),
    );
    let items = |range: std::ops::Range<usize>| {
        let out = &out;
        for t in range {
            let (r0, r1) = (t * TASK, ((t + 1) * TASK).min(rows));
            let span = r0 * n..r1 * n;
            // SAFETY: rows r0..r1 of both outputs lie within their capacity (len) and belong
            // to this item alone; h exists exactly when delta does.
            let y = unsafe { uninit_rows(out.1, &span) };
            let src: &[f32] = match delta {
                Some(d) => {
                    let h = unsafe { uninit_rows(out.0, &span) };
                    for ((h, a), b) in h.iter_mut().zip(&x[span.clone()]).zip(&d[span.clone()]) {
                        h.write(a + b);
                    }
                    // SAFETY: just written in full.
                    unsafe { std::slice::from_raw_parts(out.0.add(span.start), span.len()) }
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
    // SAFETY: every row of y (and of h, when given) was written in full by its item.
    unsafe {
        y.set_len(len);
        if let Some(h) = h.as_mut() {
            h.set_len(len);
        }
    }
    (h, y)
}

/// The elements `span` of the buffer at `base`, not yet written.
///
/// # Safety
/// `span` lies within the buffer's capacity and no other live slice covers it.
unsafe fn uninit_rows<'a>(
    base: *mut f32,
    span: &std::ops::Range<usize>,
) -> &'a mut [MaybeUninit<f32>] {
    // SAFETY: `span` is within the buffer and unaliased (this fn's contract); its elements may
    // be uninitialized, which `MaybeUninit<f32>` (f32's layout) allows.
    unsafe { std::slice::from_raw_parts_mut(base.add(span.start).cast(), span.len()) }
}

/// `y = h / sqrt(mean(h^2) + eps) * alpha` for each row of `h`, written into every element
/// of `y`.
fn norm_rows(h: &[f32], alpha: &[f32], eps: f32, n: usize, y: &mut [MaybeUninit<f32>]) {
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
                y.write(v / m * a);
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
            let (h, y) = add_rms_norm(&x, Some(&d), &alpha, eps, n);
            let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&h.unwrap()), bits(&want_h), "h, {rows} x {n}");
            assert_eq!(bits(&y), bits(&want_y), "y, {rows} x {n}");
            let (none, plain) = add_rms_norm(&x, None, &alpha, eps, n);
            assert!(none.is_none());
            assert_eq!(bits(&plain), bits(&want_plain), "norm alone, {rows} x {n}");
        }
    }
}
