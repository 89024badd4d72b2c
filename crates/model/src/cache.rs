//! The KV cache: allocated per layer at its full capacity and written in place (no
//! concatenation per token), with the position of every cached key per batch row so that
//! padding and rows of different lengths mask correctly.
//!
//! A layer is allocated at its first append, and a step that fills the whole capacity at
//! once (a scoring batch's contexts) keeps its keys and values as they are instead: zeroing
//! a cache and copying each layer's keys and values into it were serial passes over tens of
//! megabytes per batch while the other threads waited.

use crate::error::{Error, Result};
use candle_core::{DType, Device, Tensor};

pub struct LayerKv {
    /// `(batch, kv_heads, capacity, head_dim)`; for latent attention `(batch, 1, capacity,
    /// kv_lora_rank + qk_rope_head_dim)`: the compressed kv and the rotary key of each token.
    k: Tensor,
    /// `None` for latent attention, whose values are read from the latent.
    v: Option<Tensor>,
}

pub struct KvCache {
    /// `None` until the layer's first append.
    layers: Vec<Option<LayerKv>>,
    shape: KvShape,
    dtype: DType,
    device: Device,
    /// Position of each cached key per row; -1 marks padding.
    key_positions: Vec<Vec<i32>>,
    len: usize,
    capacity: usize,
}

/// Shape of one layer's cache, as the decoder describes it.
#[derive(Clone, Copy, Debug)]
pub struct KvShape {
    pub layers: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    /// One latent per token (DeepSeek's MLA: `kv_heads` 1, `head_dim` kv_lora_rank +
    /// qk_rope_head_dim) instead of separate keys and values.
    pub latent: bool,
}

impl KvShape {
    /// Bytes the cache holds per token (all layers, one batch row).
    pub fn bytes_per_token(&self, dtype: DType) -> usize {
        let tensors = if self.latent { 1 } else { 2 };
        self.layers * tensors * self.kv_heads * self.head_dim * dtype.size_in_bytes()
    }
}

impl KvCache {
    pub fn new(
        shape: KvShape,
        batch: usize,
        capacity: usize,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        let bytes = (shape.bytes_per_token(dtype) as u128) * batch as u128 * capacity as u128;
        // A cache larger than 64 GiB is a request error, not something to try to allocate.
        if bytes > 64 << 30 {
            return Err(Error::Limit(format!(
                "KV cache of {batch} x {capacity} tokens needs {} GiB",
                bytes >> 30
            )));
        }
        Ok(Self {
            layers: (0..shape.layers).map(|_| None).collect(),
            shape,
            dtype,
            device: device.clone(),
            key_positions: vec![Vec::with_capacity(capacity); batch],
            len: 0,
            capacity,
        })
    }

    pub fn batch(&self) -> usize {
        self.key_positions.len()
    }
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    pub fn capacity(&self) -> usize {
        self.capacity
    }
    /// Bytes the cache's tensors hold once every layer is written (all layers, all rows,
    /// full capacity).
    pub fn bytes(&self) -> usize {
        self.shape.bytes_per_token(self.dtype) * self.batch() * self.capacity
    }

    /// Layer `layer`'s tensors, made on its first append for this step's `(b, heads, t, d)`
    /// keys `k` (and values `v`; `None` for a latent layer): `k` and `v` themselves when the
    /// step fills the whole capacity of a cache not yet written, else zeroed tensors of the
    /// full capacity. Also returns whether the caller still has to copy the step in (false
    /// only when `k` and `v` were kept).
    fn layer_for(
        &mut self,
        layer: usize,
        k: &Tensor,
        v: Option<&Tensor>,
    ) -> Result<(&LayerKv, bool)> {
        let (b, t) = (self.key_positions.len(), k.dim(2)?);
        let (heads, d) = (self.shape.kv_heads, self.shape.head_dim);
        let fits = |x: &Tensor| {
            x.dims() == [b, heads, t, d] && x.dtype() == self.dtype && x.is_contiguous()
        };
        let whole = self.len == 0 && t == self.capacity && fits(k) && v.is_none_or(fits);
        let (capacity, dtype, device) = (self.capacity, self.dtype, &self.device);
        let slot = self
            .layers
            .get_mut(layer)
            .ok_or_else(|| Error::Msg(format!("layer {layer} is outside the cache")))?;
        match slot {
            Some(l) => Ok((l, true)),
            None if whole => Ok((
                slot.insert(LayerKv {
                    k: k.clone(),
                    v: v.cloned(),
                }),
                false,
            )),
            None => {
                let zeros = || Tensor::zeros((b, heads, capacity, d), dtype, device);
                let made = LayerKv {
                    k: zeros()?,
                    v: v.map(|_| zeros()).transpose()?,
                };
                Ok((slot.insert(made), true))
            }
        }
    }

    pub fn key_positions(&self) -> &[Vec<i32>] {
        &self.key_positions
    }

    /// Records the positions of the step about to be written; checks room and batch size.
    pub fn begin_step(&mut self, positions: &[Vec<i32>]) -> Result<()> {
        let t = positions.first().map_or(0, Vec::len);
        if positions.len() != self.batch() {
            return Err(Error::Msg(format!(
                "step has {} rows, cache has {}",
                positions.len(),
                self.batch()
            )));
        }
        if self.len + t > self.capacity {
            return Err(Error::Limit(format!(
                "KV cache capacity {} tokens (have {}, adding {t})",
                self.capacity, self.len
            )));
        }
        for (row, p) in self.key_positions.iter_mut().zip(positions) {
            row.extend_from_slice(p);
        }
        Ok(())
    }

    /// Writes this step's keys/values `(b, kv_heads, t, d)` for `layer` and returns the views
    /// over everything cached so far. `begin_step` must have been called for the step.
    pub fn append(&mut self, layer: usize, k: &Tensor, v: &Tensor) -> Result<(Tensor, Tensor)> {
        if self.shape.latent {
            return Err(Error::Msg("append on a latent cache layer".into()));
        }
        let (t, len) = (k.dim(2)?, self.len);
        let (k, v) = (k.contiguous()?, v.contiguous()?);
        let (l, copy) = self.layer_for(layer, &k, Some(&v))?;
        let Some(lv) = &l.v else {
            return Err(Error::Msg("append on a latent cache layer".into()));
        };
        if copy {
            l.k.slice_set(&k, 2, len)?;
            lv.slice_set(&v, 2, len)?;
        }
        Ok((l.k.narrow(2, 0, len + t)?, lv.narrow(2, 0, len + t)?))
    }

    /// Latent attention: writes this step's latents `(b, 1, t, dim)` for `layer` and returns
    /// the view over every cached latent.
    pub fn append_latent(&mut self, layer: usize, latent: &Tensor) -> Result<Tensor> {
        if !self.shape.latent {
            return Err(Error::Msg(
                "append_latent on a key/value cache layer".into(),
            ));
        }
        let (t, len) = (latent.dim(2)?, self.len);
        let latent = latent.contiguous()?;
        let (l, copy) = self.layer_for(layer, &latent, None)?;
        if copy {
            l.k.slice_set(&latent, 2, len)?;
        }
        Ok(l.k.narrow(2, 0, len + t)?)
    }

    /// Ends the step once every layer has appended `t` tokens.
    pub fn end_step(&mut self, t: usize) {
        self.len += t;
    }

    /// Undoes `begin_step` after a failed forward pass, so the cache stays usable.
    pub fn rollback(&mut self) {
        for row in &mut self.key_positions {
            row.truncate(self.len);
        }
    }

    /// Forgets every token from `len` on (their slots are overwritten by the next steps).
    pub fn truncate(&mut self, len: usize) {
        if len < self.len {
            self.len = len;
            for row in &mut self.key_positions {
                row.truncate(len);
            }
        }
    }

    /// A new cache whose row i is a copy of row `rows[i]` of this one, with room for `extra`
    /// more tokens: the shared-context fork used by scoring and generation.
    pub fn fork_rows(&self, rows: &[usize], extra: usize) -> Result<Self> {
        let device = &self.device;
        let index = Tensor::from_vec(
            rows.iter().map(|&r| r as u32).collect::<Vec<_>>(),
            rows.len(),
            device,
        )?;
        let capacity = self.len + extra;
        let layers = self
            .layers
            .iter()
            .map(|l| {
                // A layer never written forks to one never written.
                let Some(l) = l else { return Ok(None) };
                let (_, h, _, d) = l.k.dims4()?;
                let fork = |src: &Tensor| -> Result<Tensor> {
                    let dst = Tensor::zeros((rows.len(), h, capacity, d), src.dtype(), device)?;
                    if self.len > 0 {
                        // index_select needs contiguous input, which a cache with spare
                        // capacity is not once narrowed to its length.
                        let part = if self.len == self.capacity {
                            src.index_select(&index, 0)?
                        } else {
                            src.narrow(2, 0, self.len)?
                                .contiguous()?
                                .index_select(&index, 0)?
                        };
                        dst.slice_set(&part, 2, 0)?;
                    }
                    Ok(dst)
                };
                Ok(Some(LayerKv {
                    k: fork(&l.k)?,
                    v: l.v.as_ref().map(fork).transpose()?,
                }))
            })
            .collect::<Result<Vec<_>>>()?;
        let key_positions = rows
            .iter()
            .map(|&r| self.key_positions[r].clone())
            .collect();
        Ok(Self {
            layers,
            shape: self.shape,
            dtype: self.dtype,
            device: device.clone(),
            key_positions,
            len: self.len,
            capacity,
        })
    }
}

/// A cache of rows drawn from several caches (`picks`: an index into `sources` and one of
/// its rows), in order: each row's real keys (those with a position) moved to the front of
/// its slots, the rest padding, with room for `extra` more tokens after the longest. The
/// continuous batcher joins a new sequence to the running ones, and drops finished ones,
/// with it; moving keys to the front keeps the shared length at the longest row's instead of
/// growing with every join. The sources are consumed layer by layer, each freed once
/// copied, so that a join holds one layer more than the result, not two whole caches.
pub fn gather_rows(
    mut sources: Vec<KvCache>,
    picks: &[(usize, usize)],
    extra: usize,
) -> Result<KvCache> {
    let Some(first) = sources.first() else {
        return Err(Error::Msg("gather_rows: no caches".into()));
    };
    let (shape, dtype, device) = (first.shape, first.dtype, first.device.clone());
    for &(c, r) in picks {
        let ok = sources.get(c).is_some_and(|src| {
            r < src.batch() && src.shape.latent == shape.latent && src.dtype == dtype
        });
        if !ok {
            return Err(Error::Msg(format!(
                "gather_rows: row {r} of cache {c} is not a row of a cache of this shape"
            )));
        }
    }
    let real: Vec<Vec<u32>> = picks
        .iter()
        .map(|&(c, r)| {
            let src = &sources[c];
            (0..src.len as u32)
                .filter(|&s| src.key_positions[r][s as usize] >= 0)
                .collect()
        })
        .collect();
    let len = real.iter().map(Vec::len).max().unwrap_or(0);
    let capacity = len + extra;
    let (h, d) = (shape.kv_heads, shape.head_dim);
    let gather = |layers: &[Option<LayerKv>], values: bool, layer: usize| -> Result<Tensor> {
        let mut rows = Vec::with_capacity(picks.len());
        for (&(c, r), slots) in picks.iter().zip(&real) {
            let dst = Tensor::zeros((1, h, capacity, d), dtype, &device)?;
            let src = match &layers[c] {
                Some(l) if values => l.v.as_ref(),
                Some(l) => Some(&l.k),
                None => None,
            };
            match src {
                Some(src) if !slots.is_empty() => {
                    let index = Tensor::from_slice(slots, slots.len(), &device)?;
                    let part = src.narrow(0, r, 1)?.contiguous()?.index_select(&index, 2)?;
                    dst.slice_set(&part, 2, 0)?;
                }
                None if !slots.is_empty() => {
                    return Err(Error::Msg(format!(
                        "gather_rows: layer {layer} was never written"
                    )))
                }
                _ => {}
            }
            rows.push(dst);
        }
        Ok(Tensor::cat(&rows, 0)?)
    };
    let mut layers = Vec::with_capacity(shape.layers);
    for layer in 0..shape.layers {
        // This layer of every source, taken out so that it is freed once copied.
        let taken: Vec<Option<LayerKv>> = sources
            .iter_mut()
            .map(|src| src.layers.get_mut(layer).and_then(Option::take))
            .collect();
        let k = gather(&taken, false, layer)?;
        let v = if shape.latent {
            None
        } else {
            Some(gather(&taken, true, layer)?)
        };
        layers.push(Some(LayerKv { k, v }));
    }
    let key_positions = picks
        .iter()
        .zip(&real)
        .map(|(&(c, r), slots)| {
            let src = &sources[c];
            let mut p: Vec<i32> = slots
                .iter()
                .map(|&s| src.key_positions[r][s as usize])
                .collect();
            p.resize(len, -1);
            p.reserve(extra);
            p
        })
        .collect();
    Ok(KvCache {
        layers,
        shape,
        dtype,
        device,
        key_positions,
        len,
        capacity,
    })
}

/// The visibility rule, in one place: a query at position q sees a key at position p when
/// `0 <= p <= q` and, with a sliding window w, `q - p < w`.
#[inline]
pub fn visible(q: i32, p: i32, window: Option<usize>) -> bool {
    p >= 0 && p <= q && window.is_none_or(|w| ((q - p) as usize) < w)
}

/// The additive attention mask of one step, `(b, 1, t, S)`, or `None` when nothing is masked
/// (a single query per row with every cached key visible).
///
/// A query at position q sees a key at position p when `0 <= p <= q` and, with a sliding
/// window w, `q - p < w`. A padding query (position -1) sees only its own slot, so that its
/// (ignored) output stays finite.
pub fn attention_mask(
    query_positions: &[Vec<i32>],
    key_positions: &[Vec<i32>],
    window: Option<usize>,
    device: &Device,
) -> Result<Option<Tensor>> {
    let b = query_positions.len();
    let t = query_positions.first().map_or(0, Vec::len);
    let s = key_positions.first().map_or(0, Vec::len);
    let mut mask = vec![0f32; b * t * s];
    let mut any_masked = false;
    for r in 0..b {
        for (i, &q) in query_positions[r].iter().enumerate() {
            let own = s - t + i;
            for (j, &p) in key_positions[r].iter().enumerate() {
                let ok = if q < 0 {
                    j == own
                } else {
                    visible(q, p, window)
                };
                if !ok {
                    mask[(r * t + i) * s + j] = f32::NEG_INFINITY;
                    any_masked = true;
                }
            }
        }
    }
    if !any_masked {
        return Ok(None);
    }
    Ok(Some(Tensor::from_vec(mask, (b, 1, t, s), device)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mask_rows(q: &[Vec<i32>], k: &[Vec<i32>], w: Option<usize>) -> Vec<Vec<Vec<bool>>> {
        match attention_mask(q, k, w, &Device::Cpu).unwrap() {
            None => q
                .iter()
                .map(|r| r.iter().map(|_| vec![true; k[0].len()]).collect())
                .collect(),
            Some(m) => m
                .squeeze(1)
                .unwrap()
                .to_vec3::<f32>()
                .unwrap()
                .into_iter()
                .map(|r| {
                    r.into_iter()
                        .map(|row| row.into_iter().map(|x| x == 0.0).collect())
                        .collect()
                })
                .collect(),
        }
    }

    /// Square causal mask:
    /// ```text
    /// 1 0 0
    /// 1 1 0
    /// 1 1 1
    /// ```
    #[test]
    fn square_causal() {
        let m = mask_rows(&[vec![0, 1, 2]], &[vec![0, 1, 2]], None);
        assert_eq!(
            m[0],
            vec![
                vec![true, false, false],
                vec![true, true, false],
                vec![true, true, true]
            ]
        );
    }

    /// Two new queries after a cached prefix of two: rectangular, prefix fully visible.
    #[test]
    fn rectangular_with_prefix() {
        let m = mask_rows(&[vec![2, 3]], &[vec![0, 1, 2, 3]], None);
        assert_eq!(
            m[0],
            vec![vec![true, true, true, false], vec![true, true, true, true]]
        );
    }

    /// One query that sees everything needs no mask at all.
    #[test]
    fn single_query_needs_no_mask() {
        assert!(
            attention_mask(&[vec![3]], &[vec![0, 1, 2, 3]], None, &Device::Cpu)
                .unwrap()
                .is_none()
        );
    }

    /// Right padding: row 1 has two real tokens and a pad; the pad key is never visible and
    /// the pad query sees only itself.
    #[test]
    fn padding_rows() {
        let q = vec![vec![0, 1, 2], vec![0, 1, -1]];
        let m = mask_rows(&q, &q, None);
        assert_eq!(
            m[1],
            vec![
                vec![true, false, false],
                vec![true, true, false],
                vec![false, false, true]
            ]
        );
    }

    /// Sliding window of 2: a query sees itself and one key back.
    #[test]
    fn sliding_window() {
        let m = mask_rows(&[vec![0, 1, 2]], &[vec![0, 1, 2]], Some(2));
        assert_eq!(m[0][2], vec![false, true, true]);
    }

    fn kv(b: usize, t: usize, salt: f32) -> Tensor {
        let n = b * 2 * t * 3;
        let xs: Vec<f32> = (0..n).map(|i| i as f32 + salt).collect();
        Tensor::from_vec(xs, (b, 2, t, 3), &Device::Cpu).unwrap()
    }

    fn flat(t: &Tensor) -> Vec<f32> {
        t.flatten_all().unwrap().to_vec1().unwrap()
    }

    /// A step that fills the capacity (kept as it is) and steps that fill it in parts (copied
    /// into a zeroed layer) cache the same keys and values, fork alike, and reject tensors
    /// of the wrong shape.
    #[test]
    fn whole_and_partial_steps_cache_the_same_values() {
        let shape = KvShape {
            layers: 2,
            kv_heads: 2,
            head_dim: 3,
            latent: false,
        };
        let (k, v) = (kv(2, 4, 0.0), kv(2, 4, 0.5));
        let pos = vec![vec![0, 1, 2, 3]; 2];
        let mut whole = KvCache::new(shape, 2, 4, DType::F32, &Device::Cpu).unwrap();
        assert_eq!(whole.bytes(), 2 * 2 * 2 * 2 * 4 * 3 * 4);
        whole.begin_step(&pos).unwrap();
        let (kw, vw) = whole.append(0, &k, &v).unwrap();
        assert_eq!((flat(&kw), flat(&vw)), (flat(&k), flat(&v)));
        // Keys of another head count are refused, as a copy into the layer refuses them.
        assert!(whole
            .append(1, &kv(2, 4, 0.0).narrow(1, 0, 1).unwrap(), &v)
            .is_err());
        whole.append(1, &k, &v).unwrap();
        whole.end_step(4);

        let mut parts = KvCache::new(shape, 2, 4, DType::F32, &Device::Cpu).unwrap();
        for (start, len) in [(0, 3), (3, 1)] {
            let p: Vec<Vec<i32>> = pos.iter().map(|r| r[start..start + len].to_vec()).collect();
            parts.begin_step(&p).unwrap();
            for layer in 0..2 {
                let (ks, vs) = (
                    k.narrow(2, start, len).unwrap(),
                    v.narrow(2, start, len).unwrap(),
                );
                let (ka, va) = parts.append(layer, &ks, &vs).unwrap();
                assert_eq!(ka.dim(2).unwrap(), start + len);
                if start + len == 4 {
                    assert_eq!((flat(&ka), flat(&va)), (flat(&k), flat(&v)));
                }
            }
            parts.end_step(len);
        }
        // Forks (rows swapped) of both take one more token after the same cached values.
        let swapped = |t: &Tensor| {
            Tensor::cat(&[t.narrow(0, 1, 1).unwrap(), t.narrow(0, 0, 1).unwrap()], 0).unwrap()
        };
        let (k1, v1) = (kv(2, 1, 7.0), kv(2, 1, 9.0));
        for cache in [&whole, &parts] {
            let mut fork = cache.fork_rows(&[1, 0], 2).unwrap();
            assert_eq!((fork.len(), fork.capacity()), (4, 6));
            fork.begin_step(&[vec![4], vec![4]]).unwrap();
            let (kf, vf) = fork.append(0, &k1, &v1).unwrap();
            let want = |t: &Tensor, new: &Tensor| {
                flat(&Tensor::cat(&[swapped(t), new.clone()], 2).unwrap())
            };
            assert_eq!((flat(&kf), flat(&vf)), (want(&k, &k1), want(&v, &v1)));
        }
        assert!(whole.append_latent(0, &k).is_err());
    }

    #[test]
    fn cache_capacity_is_enforced_and_rolled_back() {
        let shape = KvShape {
            layers: 1,
            kv_heads: 1,
            head_dim: 2,
            latent: false,
        };
        let mut c = KvCache::new(shape, 1, 2, DType::F32, &Device::Cpu).unwrap();
        assert!(c.begin_step(&[vec![0, 1, 2]]).is_err());
        c.begin_step(&[vec![0, 1]]).unwrap();
        c.rollback();
        assert_eq!(c.key_positions()[0].len(), 0);
    }

    /// Gathering rows moves each row's real keys to the front in order, padding the rest,
    /// and the gathered cache takes the next step after them.
    #[test]
    fn gathered_rows_keep_their_keys_in_order_and_drop_padding() {
        let shape = KvShape {
            layers: 1,
            kv_heads: 2,
            head_dim: 3,
            latent: false,
        };
        let cache = |pos: Vec<Vec<i32>>, base: f32| {
            let (b, t) = (pos.len(), pos[0].len());
            let mut c = KvCache::new(shape, b, t, DType::F32, &Device::Cpu).unwrap();
            c.begin_step(&pos).unwrap();
            c.append(0, &kv(b, t, base), &kv(b, t, base + 0.5)).unwrap();
            c.end_step(t);
            c
        };
        // Row 1 of `a` has a padding slot in the middle; `b` is one row of two tokens.
        let a = cache(vec![vec![0, 1, 2, 3], vec![0, 1, -1, 2]], 0.0);
        let b = cache(vec![vec![0, 1]], 100.0);
        assert!(gather_rows(vec![cache(vec![vec![0, 1]], 0.0)], &[(0, 1)], 0).is_err());
        assert!(gather_rows(vec![cache(vec![vec![0, 1]], 0.0)], &[(1, 0)], 0).is_err());
        let mut g = gather_rows(vec![a, b], &[(1, 0), (0, 1)], 2).unwrap();
        assert_eq!((g.batch(), g.len(), g.capacity()), (2, 3, 5));
        assert_eq!(g.key_positions(), &[vec![0, 1, -1], vec![0, 1, 2]]);
        g.begin_step(&[vec![2], vec![3]]).unwrap();
        let (k, v) = g.append(0, &kv(2, 1, 50.0), &kv(2, 1, 60.0)).unwrap();
        g.end_step(1);
        let slot = |t: &Tensor, row: usize, s: usize| {
            flat(&t.narrow(0, row, 1).unwrap().narrow(2, s, 1).unwrap())
        };
        let (ka, kb) = (kv(2, 4, 0.0), kv(1, 2, 100.0));
        assert_eq!(slot(&k, 0, 0), slot(&kb, 0, 0));
        assert_eq!(slot(&k, 0, 1), slot(&kb, 0, 1));
        assert!(slot(&k, 0, 2).iter().all(|&x| x == 0.0));
        assert_eq!(slot(&k, 1, 2), slot(&ka, 1, 3));
        assert_eq!(slot(&v, 1, 1), slot(&kv(2, 4, 0.5), 1, 1));
        assert_eq!(slot(&k, 1, 3), slot(&kv(2, 1, 50.0), 1, 0));
    }
}
