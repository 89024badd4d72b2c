//! The low-rank update of calls of few rows (decode, short texts) on the CPU: one pass over
//! factors blocked so that each sum stays in a register. The down sums come first, on the
//! calling thread; the up sums can be added by a product as it finishes each panel of
//! columns (`up_cols`), on the threads that computed them.
//!
//! Every sum is one chain of fused multiply-adds from zero in depth order, as `sgemm`'s
//! tiles run them, so the bits equal the many-row path's whichever way the columns are
//! split.

use crate::cpu::TileValues;

/// Ranks per block of the down factor (one register of f32 sums).
const DOWN_LANES: usize = 16;
/// Outputs per block of the up factor.
const UP_LANES: usize = 16;

/// Factors as stored for the kernel: in f32, or as the bf16 bits of values that are bf16
/// exactly (a bf16 adapter file), half the bytes to read per token and the same numbers.
pub(super) enum Store {
    F32(Vec<f32>),
    Bf16(Vec<u16>),
}

impl Store {
    fn new(v: Vec<f32>) -> Self {
        if v.iter().all(|x| x.to_bits() & 0xFFFF == 0) {
            Store::Bf16(v.iter().map(|x| (x.to_bits() >> 16) as u16).collect())
        } else {
            Store::F32(v)
        }
    }
}

/// A stored factor value as f32.
trait Lane: Copy {
    fn value(self) -> f32;
}

impl Lane for f32 {
    #[inline(always)]
    fn value(self) -> f32 {
        self
    }
}

impl Lane for u16 {
    #[inline(always)]
    fn value(self) -> f32 {
        f32::from_bits((self as u32) << 16)
    }
}

/// One stacked layer's share of an update: its outputs from `offset`; `down` as blocks of
/// `DOWN_LANES` ranks, each `[in][DOWN_LANES]`; `up` as blocks of `UP_LANES` outputs, each
/// `[r][UP_LANES]` (zero-padded); its ranks' sums at `h_offset` of a row's down sums (the
/// parts' ranks in order, as the stacked down factor has them).
pub(super) struct Part {
    offset: usize,
    out: usize,
    r: usize,
    h_offset: usize,
    pub(super) down: Store,
    pub(super) up: Store,
}

/// The blocked factors of one update.
pub(crate) struct FewRows {
    pub(super) parts: Vec<Part>,
    inp: usize,
    /// Down sums per row: the total rank.
    h_len: usize,
}

impl FewRows {
    /// `layers`: each stacked layer's (output offset, `down (r, in)`, `up (out, r)`), row-major.
    pub(super) fn new(inp: usize, layers: Vec<(usize, Vec<f32>, Vec<f32>)>) -> Self {
        let mut parts = Vec::with_capacity(layers.len());
        let mut h_len = 0;
        for (offset, down, up) in layers {
            let r = down.len() / inp.max(1);
            let out = up.len() / r.max(1);
            let mut d = vec![0f32; r.div_ceil(DOWN_LANES) * inp * DOWN_LANES];
            for j in 0..r {
                let (c, l) = (j / DOWN_LANES, j % DOWN_LANES);
                for k in 0..inp {
                    d[(c * inp + k) * DOWN_LANES + l] = down[j * inp + k];
                }
            }
            let mut u = vec![0f32; out.div_ceil(UP_LANES) * r * UP_LANES];
            for o in 0..out {
                let (c, l) = (o / UP_LANES, o % UP_LANES);
                for j in 0..r {
                    u[(c * r + j) * UP_LANES + l] = up[o * r + j];
                }
            }
            parts.push(Part {
                offset,
                out,
                r,
                h_offset: h_len,
                down: Store::new(d),
                up: Store::new(u),
            });
            h_len += r;
        }
        Self { parts, inp, h_len }
    }

    /// The down sums of `rows` rows `xs` `(rows, in)`: per row the total rank's values, each
    /// part's from its `h_offset` (the layout of the stacked down factor's product).
    pub(crate) fn down(&self, xs: &[f32], rows: usize) -> Vec<f32> {
        assert!(xs.len() >= rows * self.inp);
        let mut h = vec![0f32; rows * self.h_len];
        for (x, hr) in xs
            .chunks_exact(self.inp)
            .zip(h.chunks_exact_mut(self.h_len))
        {
            for part in &self.parts {
                let dst = &mut hr[part.h_offset..][..part.r];
                for (b, sums) in dst.chunks_mut(DOWN_LANES).enumerate() {
                    let n = sums.len();
                    sums.copy_from_slice(
                        &match &part.down {
                            Store::F32(d) => down_block(x, d, b),
                            Store::Bf16(d) => down_block(x, d, b),
                        }[..n],
                    );
                }
            }
        }
        h
    }

    /// `tile += scale * (up h)`: `h` the down sums of the product's rows (`down`, or the
    /// f32 GEMM on the stacked down factor), `rank` values per row from row 0. The products
    /// call this on each tile they store, on the thread that stored it.
    pub(crate) fn up_tile(&self, h: &[f32], tile: &mut TileValues, scale: f32) {
        let cols = tile.cols.clone();
        for part in &self.parts {
            let (start, end) = (
                cols.start.max(part.offset),
                cols.end.min(part.offset + part.out),
            );
            if start >= end {
                continue;
            }
            // Blocks of the part's outputs that meet `start..end`; a block that crosses an
            // edge is summed whole and only its lanes inside are added.
            let (first, last) = (
                (start - part.offset) / UP_LANES,
                (end - part.offset).div_ceil(UP_LANES),
            );
            // The products go through panels in order: fetch the next panel's blocks while
            // this one's sums run (short streams, which the hardware prefetcher misses).
            let next = last..(last + (last - first)).min(part.out.div_ceil(UP_LANES));
            let stride = part.r * UP_LANES;
            match &part.up {
                Store::F32(u) => prefetch(&u[next.start * stride..next.end * stride]),
                Store::Bf16(u) => prefetch(&u[next.start * stride..next.end * stride]),
            }
            let hs = |row: usize| &h[row * self.h_len + part.h_offset..][..part.r];
            let add = |tile: &mut TileValues, row: usize, b: usize, acc: &[f32; UP_LANES]| {
                let o0 = part.offset + b * UP_LANES;
                let y = tile.row_mut(row);
                if o0 >= start && o0 + UP_LANES <= end {
                    // A whole block: one vector add.
                    let y = &mut y[o0 - cols.start..][..UP_LANES];
                    if scale == 1.0 {
                        y.iter_mut().zip(acc).for_each(|(y, a)| *y += a);
                    } else {
                        y.iter_mut().zip(acc).for_each(|(y, a)| *y += a * scale);
                    }
                    return;
                }
                for (l, a) in acc.iter().enumerate() {
                    let o = o0 + l;
                    if o >= start && o < end {
                        y[o - cols.start] += if scale == 1.0 { *a } else { a * scale };
                    }
                }
            };
            // Independent chains in flight: four rows (or one) by two blocks (or one).
            macro_rules! run {
                ($row:expr, $b:expr, $rows:literal, $blocks:literal) => {{
                    let (row, b) = ($row, $b);
                    let hs: [&[f32]; $rows] = std::array::from_fn(|i| hs(row + i));
                    let sums = match &part.up {
                        Store::F32(u) => up_sums::<_, $rows, $blocks>(hs, u, b),
                        Store::Bf16(u) => up_sums::<_, $rows, $blocks>(hs, u, b),
                    };
                    for (i, blocks) in sums.iter().enumerate() {
                        for (k, acc) in blocks.iter().enumerate() {
                            add(tile, row + i, b + k, acc);
                        }
                    }
                }};
            }
            let mut row = tile.rows.start;
            while row < tile.rows.end {
                let four = tile.rows.end - row >= 4;
                let mut b = first;
                while b < last {
                    let two = b + 1 < last;
                    match (four, two) {
                        (true, true) => run!(row, b, 4, 2),
                        (true, false) => run!(row, b, 4, 1),
                        (false, true) => run!(row, b, 1, 2),
                        (false, false) => run!(row, b, 1, 1),
                    }
                    b += if two { 2 } else { 1 };
                }
                row += if four { 4 } else { 1 };
            }
        }
    }

    /// `ys[row] += scale * up (down xs[row])` for `rows` rows (`xs` `(rows, in)`, `ys`
    /// `(rows, out)`).
    pub(super) fn add(&self, xs: &[f32], ys: &mut [f32], rows: usize, scale: f32) {
        let out_len = ys.len() / rows.max(1);
        let h = self.down(xs, rows);
        self.up_tile(&h, &mut TileValues::whole(ys, out_len), scale);
    }
}

/// The sums of down block `b` (`DOWN_LANES` ranks) for one row `x`: per lane one chain of
/// fused multiply-adds from zero over the inputs, in a local array the compiler keeps in a
/// register.
#[inline]
fn down_block<T: Lane>(x: &[f32], down: &[T], b: usize) -> [f32; DOWN_LANES] {
    let inp = x.len();
    let block = &down[b * inp * DOWN_LANES..][..inp * DOWN_LANES];
    let mut acc = [0f32; DOWN_LANES];
    for (&xv, d) in x.iter().zip(block.chunks_exact(DOWN_LANES)) {
        for l in 0..DOWN_LANES {
            acc[l] = xv.mul_add(d[l].value(), acc[l]);
        }
    }
    acc
}

/// Asks for `data`'s cache lines ahead of their use.
#[inline(always)]
fn prefetch<T>(data: &[T]) {
    #[cfg(target_arch = "x86_64")]
    {
        let bytes = std::mem::size_of_val(data);
        let base = data.as_ptr().cast::<i8>();
        for off in (0..bytes).step_by(64) {
            // SAFETY: a prefetch reads nothing and never faults; the address is in `data`.
            unsafe {
                std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(base.add(off))
            };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = data;
}

/// The sums of the `NB` up blocks from `b` (`UP_LANES` outputs each) for `R` rows' down
/// sums `hs`: each a chain from zero over the ranks (the chains interleaved), which the
/// caller adds to the product afterwards, as the many-row path adds its product.
#[inline(always)]
fn up_sums<T: Lane, const R: usize, const NB: usize>(
    hs: [&[f32]; R],
    up: &[T],
    b: usize,
) -> [[[f32; UP_LANES]; NB]; R] {
    let r = hs[0].len();
    let blocks: [&[T]; NB] = std::array::from_fn(|i| &up[(b + i) * r * UP_LANES..][..r * UP_LANES]);
    let mut acc = [[[0f32; UP_LANES]; NB]; R];
    for j in 0..r {
        for (k, block) in blocks.iter().enumerate() {
            let u = &block[j * UP_LANES..][..UP_LANES];
            for (row, h) in acc.iter_mut().zip(&hs) {
                let hv = h[j];
                for l in 0..UP_LANES {
                    row[k][l] = hv.mul_add(u[l].value(), row[k][l]);
                }
            }
        }
    }
    acc
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: usize, seed: usize) -> Vec<f32> {
        (0..n)
            .map(|i| (((i * 7919 + seed * 104_729) % 2003) as f32 / 1001.5 - 1.0) * 0.7)
            .collect()
    }

    /// The up sums added tile by tile (columns cut anywhere, across parts and blocks; any
    /// number of rows) give the bits of the whole rows at once, and those equal the
    /// definition's chains: each output's sum over the ranks from zero, then added.
    #[test]
    fn tiles_give_the_bits_of_whole_rows() {
        let inp = 40;
        // Parts of 37, 20 and 50 outputs (edges off the blocks of 16), ranks 5, 16 and 19.
        let shapes = [(37, 5), (20, 16), (50, 19)];
        let mut layers = Vec::new();
        let mut offset = 0;
        for (i, &(out, r)) in shapes.iter().enumerate() {
            layers.push((offset, values(r * inp, 2 * i), values(out * r, 2 * i + 1)));
            offset += out;
        }
        let total_out = offset;
        let few = FewRows::new(inp, layers.clone());
        for rows in [1, 3, 4, 6, 9] {
            let xs = values(rows * inp, 7);
            let ys = values(rows * total_out, 8);
            let mut whole = ys.clone();
            few.add(&xs, &mut whole, rows, 0.75);
            // The definition, row by row.
            for row in 0..rows {
                let x = &xs[row * inp..][..inp];
                for (offset, down, up) in &layers {
                    let r = down.len() / inp;
                    let h: Vec<f32> = (0..r)
                        .map(|j| (0..inp).fold(0f32, |a, k| x[k].mul_add(down[j * inp + k], a)))
                        .collect();
                    for o in 0..up.len() / r {
                        let sum = (0..r).fold(0f32, |a, j| h[j].mul_add(up[o * r + j], a));
                        let at = row * total_out + offset + o;
                        assert_eq!(whole[at].to_bits(), (ys[at] + sum * 0.75).to_bits());
                    }
                }
            }
            // Tiles of columns cut at 32s and at odd places, rows in any ranges.
            let h = few.down(&xs, rows);
            for cuts in [
                vec![0, 32, 64, 96, total_out],
                vec![0, 5, 17, 56, 57, 100, total_out],
            ] {
                let mut tiled = ys.clone();
                for w in cuts.windows(2) {
                    for first in (0..rows).step_by(5) {
                        let last = (first + 5).min(rows);
                        // SAFETY: rows first..last, columns w[0]..w[1] lie in `tiled`,
                        // borrowed by this tile alone while it lives.
                        let mut tile = unsafe {
                            TileValues::new(tiled.as_mut_ptr(), total_out, first..last, w[0]..w[1])
                        };
                        few.up_tile(&h, &mut tile, 0.75);
                    }
                }
                assert_eq!(tiled, whole, "rows {rows}, cuts {cuts:?}");
            }
        }
    }
}
