//! A low-rank update `x -> up(down(x))` that a layer adds to its own product: LoRA adapters
//! run unmerged this way beside quantized weights. On the CPU both products take our f32
//! GEMM for many rows and a one-pass kernel with the same sums for few, so the update's bits
//! do not depend on the rows beside a row (the batch-invariance guarantee holds with
//! adapters).

mod few_rows;

use crate::cpu::sgemm;
use crate::error::{Error, Result};
use candle_core::{DType, Tensor};
pub(crate) use few_rows::FewRows;
#[cfg(test)]
use few_rows::Store;
use std::cell::RefCell;

/// Which named adapters (`lora::Adapters::named`, by index) the rows of the products take,
/// and at what scale: every row the same (a prefill), or each its own (a batched decode
/// step, one row per sequence).
#[derive(Clone, Debug, PartialEq)]
pub enum RowAdapters {
    Every(Vec<(usize, f32)>),
    PerRow(Vec<Vec<(usize, f32)>>),
}

thread_local! {
    /// The selection of the forward pass running on this thread (`with_row_adapters`).
    static ROW_ADAPTERS: RefCell<Option<RowAdapters>> = const { RefCell::new(None) };
}

/// Runs `f` (a forward pass, on this thread) with `selection`'s named adapters on its rows.
/// Layers read it as they run; without one, named adapters stay off.
pub fn with_row_adapters<R>(selection: Option<RowAdapters>, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<RowAdapters>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let previous = self.0.take();
            ROW_ADAPTERS.with(|r| *r.borrow_mut() = previous);
        }
    }
    let previous = ROW_ADAPTERS.with(|r| r.replace(selection));
    let _restore = Restore(previous);
    f()
}

/// `y` plus the updates of the named adapters `slots` (index, update) the current selection
/// gives each row of `x`.
pub fn add_selected(slots: &[(usize, LowRank)], x: &Tensor, y: Tensor) -> Result<Tensor> {
    ROW_ADAPTERS.with(|sel| {
        let sel = sel.borrow();
        let Some(sel) = sel.as_ref() else {
            return Ok(y);
        };
        let find = |id: usize| slots.iter().find(|(i, _)| *i == id).map(|(_, l)| l);
        match sel {
            RowAdapters::Every(list) => {
                let mut y = y;
                for &(id, scale) in list {
                    if let Some(l) = find(id) {
                        y = l.add_scaled(x, y, scale)?;
                    }
                }
                Ok(y)
            }
            RowAdapters::PerRow(rows) => {
                let n = x.dims()[0];
                if rows.len() != n {
                    return Err(Error::Msg(format!(
                        "internal error: adapters chosen for {} rows, the product has {n}",
                        rows.len()
                    )));
                }
                let chosen: Vec<&LowRank> = rows
                    .iter()
                    .flatten()
                    .filter_map(|&(id, _)| find(id))
                    .collect();
                if chosen.is_empty() {
                    return Ok(y);
                }
                // Rows one at a time on the few-row kernel, on one copy of the activations.
                if x.dtype() == DType::F32
                    && y.dtype() == DType::F32
                    && chosen.iter().all(|l| l.few.is_some())
                {
                    let xs: Vec<f32> = x.flatten_all()?.to_vec1()?;
                    let mut ys: Vec<f32> = y.flatten_all()?.to_vec1()?;
                    let (inp, out) = (xs.len() / n.max(1), ys.len() / n.max(1));
                    let pairs = xs.chunks_exact(inp).zip(ys.chunks_exact_mut(out));
                    for ((xr, yr), list) in pairs.zip(rows) {
                        for &(id, scale) in list {
                            if let Some(few) = find(id).and_then(|l| l.few.as_ref()) {
                                few.add(xr, yr, 1, scale);
                            }
                        }
                    }
                    return Ok(Tensor::from_vec(ys, y.dims(), y.device())?);
                }
                let mut out = Vec::with_capacity(n);
                for (i, list) in rows.iter().enumerate() {
                    let mut yr = y.narrow(0, i, 1)?;
                    let xr = x.narrow(0, i, 1)?;
                    for &(id, scale) in list {
                        if let Some(l) = find(id) {
                            yr = l.add_scaled(&xr, yr, scale)?;
                        }
                    }
                    out.push(yr);
                }
                Ok(Tensor::cat(&out, 0)?)
            }
        }
    })
}

/// `up (out, r) @ down (r, in)`, the adapter's scale already in `up`. Several adapters on one
/// layer stack along `r`.
pub struct LowRank {
    down: Tensor,
    up: Tensor,
    /// Both factors packed for the f32 GEMM (CPU), made on the first call of many rows.
    packed: std::sync::OnceLock<(sgemm::PackedWeights, sgemm::PackedWeights)>,
    /// For calls of few rows on the CPU (`add_scaled`): each stacked layer's factors apart
    /// (the block-diagonal `up`'s zeros skipped), blocked for the one-pass kernel.
    few: Option<FewRows>,
}

/// Calls of fewer rows take the one-pass kernel (`few_rows`), more the GEMM: the same bits
/// either way, so the threshold is a matter of speed alone.
const FEW_ROWS: usize = 16;

impl LowRank {
    /// `pairs`: each adapter's `(down (r_i, in), up (out, r_i))`, scales folded into `up`.
    pub fn new(pairs: &[(Tensor, Tensor)], dtype: DType) -> Result<Self> {
        let downs: Vec<&Tensor> = pairs.iter().map(|(d, _)| d).collect();
        let ups: Vec<&Tensor> = pairs.iter().map(|(_, u)| u).collect();
        if downs.is_empty() {
            return Err(Error::Msg(
                "a low-rank update needs at least one pair".into(),
            ));
        }
        let down = Tensor::cat(&downs, 0)?.to_dtype(dtype)?;
        let up = Tensor::cat(&ups, 1)?.to_dtype(dtype)?;
        let out = up.dims()[0];
        Self::from_parts(down, up, &[(0, out, 0)])
    }

    /// `blocks`: each stacked layer's (output offset, outputs, rank offset); its update is
    /// `up[offset.., rank offset..] @ down[rank offset..]`, the rest of `up` zeros.
    fn from_parts(down: Tensor, up: Tensor, blocks: &[(usize, usize, usize)]) -> Result<Self> {
        let total_rank = down.dims()[0];
        let few = if sgemm::AVAILABLE && down.device().is_cpu() && down.dtype() == DType::F32 {
            let flat = |t: &Tensor| -> Result<Vec<f32>> { Ok(t.flatten_all()?.to_vec1()?) };
            let inp = down.dims()[1];
            let mut layers = Vec::new();
            for (i, &(offset, out, r0)) in blocks.iter().enumerate() {
                let r1 = blocks.get(i + 1).map_or(total_rank, |b| b.2);
                let r = r1 - r0;
                let d = flat(&down.narrow(0, r0, r)?)?;
                let u = flat(&up.narrow(0, offset, out)?.narrow(1, r0, r)?.contiguous()?)?;
                layers.push((offset, d, u));
            }
            Some(FewRows::new(inp, layers))
        } else {
            None
        };
        Ok(Self {
            packed: std::sync::OnceLock::new(),
            down,
            up,
            few,
        })
    }

    /// The few-row kernel's factors, for a call of `rows` rows that takes it.
    pub(crate) fn few_rows(&self, rows: usize) -> Option<&FewRows> {
        self.few.as_ref().filter(|_| rows < FEW_ROWS)
    }

    /// Both factors packed for the f32 GEMM, on first use: `(down, up)`, whose products have
    /// the bits of the few-row kernel's sums.
    pub(crate) fn packed(&self) -> Result<&(sgemm::PackedWeights, sgemm::PackedWeights)> {
        if let Some(p) = self.packed.get() {
            return Ok(p);
        }
        let (r, inp) = self.down.dims2()?;
        let out = self.up.dims()[0];
        let flat = |t: &Tensor| -> Result<Vec<f32>> {
            Ok(t.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?)
        };
        let pd = sgemm::PackedWeights::pack(&flat(&self.down)?, r, inp);
        let pu = sgemm::PackedWeights::pack(&flat(&self.up)?, out, r);
        Ok(self.packed.get_or_init(|| (pd, pu)))
    }

    pub fn rank(&self) -> usize {
        self.down.dims()[0]
    }

    /// `y + update(x)` for `x (rows, in)` and the layer's product `y (rows, out)`. Calls of
    /// few rows on the CPU take one pass over the blocked factors instead of two products and
    /// an add (at decode the separate ops cost more than the arithmetic); its sums run in the
    /// order of `sgemm`'s, so the bits do not depend on the path.
    pub fn add_to(&self, x: &Tensor, y: Tensor) -> Result<Tensor> {
        self.add_scaled(x, y, 1.0)
    }

    /// `y + scale * update(x)` (`add_to`'s paths; the scale multiplies each finished sum).
    pub fn add_scaled(&self, x: &Tensor, y: Tensor, scale: f32) -> Result<Tensor> {
        let rows = x.dims()[0];
        match &self.few {
            Some(few) if rows < FEW_ROWS && x.dtype() == DType::F32 && y.dtype() == DType::F32 => {
                let xs: Vec<f32> = x.flatten_all()?.to_vec1()?;
                let mut ys: Vec<f32> = y.flatten_all()?.to_vec1()?;
                few.add(&xs, &mut ys, rows, scale);
                Ok(Tensor::from_vec(ys, y.dims(), y.device())?)
            }
            _ if scale == 1.0 => Ok((y + self.forward(x)?)?),
            _ => Ok((y + (self.forward(x)? * scale as f64)?)?),
        }
    }

    /// The update to the weights, `(out, in)` in f32.
    pub fn delta(&self) -> Result<Tensor> {
        Ok(self
            .up
            .to_dtype(DType::F32)?
            .matmul(&self.down.to_dtype(DType::F32)?)?)
    }

    /// `x (rows, in)` to `(rows, out)`: on the CPU two products of our f32 GEMM (on f32
    /// values, rounded back to a half-precision `x`'s dtype, as dense layers compute), whose
    /// sums do not depend on the number of rows; elsewhere candle's.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if !(x.device().is_cpu() && sgemm::AVAILABLE) {
            return Ok(x.matmul(&self.down.t()?)?.matmul(&self.up.t()?)?);
        }
        let (r, inp) = self.down.dims2()?;
        let out = self.up.dims()[0];
        let (pd, pu) = self.packed()?;
        let x32 = x.to_dtype(DType::F32)?.contiguous()?;
        let rows = x32.dim(0)?;
        let mut h = vec![0f32; rows * r];
        {
            let (storage, layout) = x32.storage_and_layout();
            let a = &super::cpu_f32(&storage, layout)?[..rows * inp];
            sgemm::matmul(a, rows, pd, &mut h);
        }
        let mut t = vec![0f32; rows * out];
        sgemm::matmul(&h, rows, pu, &mut t);
        Ok(Tensor::from_vec(t, (rows, out), x.device())?.to_dtype(x.dtype())?)
    }

    /// The updates of layers stacked along their outputs (`Linear::concat`): `parts` gives
    /// each layer's update (if any) and output size. Every rank's down rows stack; the up
    /// matrix is block-diagonal, its zeros adding nothing.
    pub fn concat(parts: &[(Option<&LowRank>, usize)]) -> Result<Option<LowRank>> {
        let present: Vec<&LowRank> = parts.iter().filter_map(|(l, _)| *l).collect();
        let Some(first) = present.first() else {
            return Ok(None);
        };
        let (dtype, device) = (first.up.dtype(), first.up.device().clone());
        let total_rank: usize = present.iter().map(|l| l.rank()).sum();
        let downs: Vec<&Tensor> = present.iter().map(|l| &l.down).collect();
        let down = Tensor::cat(&downs, 0)?;
        let mut rows = Vec::with_capacity(parts.len());
        let mut blocks = Vec::new();
        let mut offset = 0;
        let mut out_offset = 0;
        for (l, out) in parts {
            let row = match l {
                Some(l) => {
                    blocks.push((out_offset, *out, offset));
                    let r = l.rank();
                    let mut pieces = Vec::new();
                    if offset > 0 {
                        pieces.push(Tensor::zeros((*out, offset), dtype, &device)?);
                    }
                    pieces.push(l.up.clone());
                    if offset + r < total_rank {
                        pieces.push(Tensor::zeros(
                            (*out, total_rank - offset - r),
                            dtype,
                            &device,
                        )?);
                    }
                    offset += r;
                    Tensor::cat(&pieces, 1)?
                }
                None => Tensor::zeros((*out, total_rank), dtype, &device)?,
            };
            out_offset += out;
            rows.push(row);
        }
        let up = Tensor::cat(&rows, 0)?;
        Ok(Some(Self::from_parts(down, up, &blocks)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn t(rows: usize, cols: usize, seed: usize) -> Tensor {
        let v: Vec<f32> = (0..rows * cols)
            .map(|i| (((i + seed) * 37 % 23) as f32 - 11.0) / 17.0)
            .collect();
        Tensor::from_vec(v, (rows, cols), &Device::Cpu).unwrap()
    }

    fn flat(x: &Tensor) -> Vec<f32> {
        x.flatten_all().unwrap().to_vec1().unwrap()
    }

    /// Few rows take one pass over the transposed factors, many rows two products: the
    /// same bits for the same row.
    #[test]
    fn few_rows_and_many_rows_give_the_same_bits() {
        let (inp, out, r) = (200, 70, 5);
        let first = LowRank::new(&[(t(r, inp, 1), t(30, r, 2))], DType::F32).unwrap();
        let other = LowRank::new(&[(t(3, inp, 5), t(20, 3, 6))], DType::F32).unwrap();
        // A stacked update (layers of 30, 20 and 20 outputs, the middle one without).
        let stacked = LowRank::concat(&[(Some(&first), 30), (None, 20), (Some(&other), 20)])
            .unwrap()
            .unwrap();
        let single = LowRank::new(&[(t(r, inp, 1), t(out, r, 2))], DType::F32).unwrap();
        for l in [single, stacked] {
            let x = t(40, inp, 3);
            let y = t(40, out, 4);
            let many = flat(&l.add_to(&x, y.clone()).unwrap());
            for start in [0, 7, 39] {
                let n = 3.min(40 - start);
                let few = l
                    .add_to(
                        &x.narrow(0, start, n).unwrap(),
                        y.narrow(0, start, n).unwrap(),
                    )
                    .unwrap();
                assert_eq!(flat(&few), many[start * out..(start + n) * out].to_vec());
            }
        }
    }

    /// Factors that are bf16 values take half the bytes and give the same bits.
    #[test]
    fn bf16_factors_are_stored_in_half_the_bytes_with_the_same_bits() {
        let round = |x: Tensor| {
            x.to_dtype(DType::BF16)
                .unwrap()
                .to_dtype(DType::F32)
                .unwrap()
        };
        let (inp, out, r) = (64, 48, 16);
        let l = LowRank::new(&[(round(t(r, inp, 1)), round(t(out, r, 2)))], DType::F32).unwrap();
        assert!(matches!(
            l.few.as_ref().map(|f| (&f.parts[0].down, &f.parts[0].up)),
            Some((Store::Bf16(_), Store::Bf16(_)))
        ));
        let x = t(20, inp, 3);
        let y = t(20, out, 4);
        let many = flat(&l.add_to(&x, y.clone()).unwrap());
        let few = flat(
            &l.add_to(&x.narrow(0, 2, 3).unwrap(), y.narrow(0, 2, 3).unwrap())
                .unwrap(),
        );
        assert_eq!(few, many[2 * out..5 * out].to_vec());
    }

    /// Stacked adapters add their products; stacked layers keep each update on its own rows.
    #[test]
    fn stacked_updates_equal_their_sums() {
        let x = t(5, 12, 1);
        let (a1, b1, a2, b2) = (t(3, 12, 2), t(8, 3, 3), t(2, 12, 4), t(8, 2, 5));
        let both = LowRank::new(
            &[(a1.clone(), b1.clone()), (a2.clone(), b2.clone())],
            DType::F32,
        )
        .unwrap();
        let want = x
            .matmul(&a1.t().unwrap())
            .unwrap()
            .matmul(&b1.t().unwrap())
            .unwrap()
            .add(
                &x.matmul(&a2.t().unwrap())
                    .unwrap()
                    .matmul(&b2.t().unwrap())
                    .unwrap(),
            )
            .unwrap();
        let got = both.forward(&x).unwrap();
        for (g, w) in flat(&got).iter().zip(flat(&want)) {
            assert!((g - w).abs() < 1e-5, "{g} vs {w}");
        }
        // Layers of 8, 4 (no update) and 8 outputs stacked.
        let one = LowRank::new(&[(a1, b1)], DType::F32).unwrap();
        let two = LowRank::new(&[(a2, b2)], DType::F32).unwrap();
        let stacked = LowRank::concat(&[(Some(&one), 8), (None, 4), (Some(&two), 8)])
            .unwrap()
            .unwrap();
        let y = stacked.forward(&x).unwrap();
        let close = |a: Vec<f32>, b: Vec<f32>| {
            assert_eq!(a.len(), b.len());
            for (p, q) in a.iter().zip(&b) {
                assert!((p - q).abs() < 1e-5, "{p} vs {q}");
            }
        };
        close(
            flat(&y.narrow(1, 0, 8).unwrap()),
            flat(&one.forward(&x).unwrap()),
        );
        assert!(flat(&y.narrow(1, 8, 4).unwrap()).iter().all(|v| *v == 0.0));
        close(
            flat(&y.narrow(1, 12, 8).unwrap()),
            flat(&two.forward(&x).unwrap()),
        );
    }
}
