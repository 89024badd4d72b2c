//! Control vectors in llama.cpp's GGUF format (`direction.N`, F32, one per block), read and
//! written byte for byte as llama.cpp and repeng do, and applied through the residual hook.
//!
//! Layer convention (llama.cpp's): `direction.N` is added to the output of 0-based block N at
//! every position, N >= 1 (llama.cpp rejects a file with `direction.0`). Several files are
//! summed, each times its scale; a layer range keeps only blocks `start..=end`.

use crate::error::{Error, Result};
use candle_core::quantized::{gguf_file, GgmlDType};
use ethos_model::hooks::ResidualHook;
use ethos_model::{Device, Tensor};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// GGUF alignment of tensor data (no `general.alignment` key is written).
const ALIGNMENT: usize = 32;

#[derive(Clone, Debug, PartialEq)]
pub struct ControlVector {
    /// `controlvector.model_hint`: the architecture the vector was made for.
    pub model_hint: Option<String>,
    /// Block index -> direction.
    pub directions: BTreeMap<usize, Vec<f32>>,
}

fn format_err(path: &Path, msg: impl Into<String>) -> Error {
    Error::Input(format!("{}: {}", path.display(), msg.into()))
}

impl ControlVector {
    /// Reads a control-vector GGUF, with llama.cpp's rules: every tensor is `direction.N` with
    /// N >= 1, F32, one-dimensional, all of one length. The metadata is optional.
    pub fn read(path: &Path) -> Result<Self> {
        let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        // What llama.cpp refuses (duplicate keys or tensors, an alignment that is not a power
        // of two; tensors past the end of the file, misaligned or overlapping) is refused
        // before candle reads it.
        let size = f.metadata().map_err(|e| Error::io(path, e))?.len();
        let alignment =
            ethos_model::check_gguf_header(path, &mut std::io::BufReader::new(&mut f), size)?;
        std::io::Seek::rewind(&mut f).map_err(|e| Error::io(path, e))?;
        let content = gguf_file::Content::read(&mut f).map_err(|e| {
            format_err(
                path,
                format!("not a GGUF file: {}", ethos_model::error::one_line(&e)),
            )
        })?;
        ethos_model::check_gguf_tensors(path, &content, size, alignment)?;
        let model_hint = match content.metadata.get("controlvector.model_hint") {
            Some(gguf_file::Value::String(s)) => Some(s.clone()),
            _ => None,
        };
        let mut directions = BTreeMap::new();
        let mut width = None;
        let mut names: Vec<&String> = content.tensor_infos.keys().collect();
        names.sort();
        for name in names {
            let info = &content.tensor_infos[name];
            let layer = name
                .strip_prefix("direction.")
                .and_then(|n| n.parse::<usize>().ok())
                .filter(|&n| n >= 1)
                .ok_or_else(|| {
                    format_err(
                        path,
                        format!("tensor {name}: expected direction.N with N >= 1"),
                    )
                })?;
            let dims = info.shape.dims();
            if info.ggml_dtype != GgmlDType::F32 || dims.len() != 1 {
                return Err(format_err(
                    path,
                    format!(
                        "tensor {name}: must be a 1-D F32 vector (is {:?} {dims:?})",
                        info.ggml_dtype
                    ),
                ));
            }
            if *width.get_or_insert(dims[0]) != dims[0] {
                return Err(format_err(
                    path,
                    format!(
                        "tensor {name}: {} values, the others have {}",
                        dims[0],
                        width.unwrap_or(0)
                    ),
                ));
            }
            let t = content
                .tensor(&mut f, name, &Device::Cpu)
                .and_then(|q| q.dequantize(&Device::Cpu))
                .and_then(|t| t.to_vec1::<f32>())
                .map_err(|e| {
                    format_err(
                        path,
                        format!("tensor {name}: {}", ethos_model::error::one_line(&e)),
                    )
                })?;
            if let Some(i) = t.iter().position(|x| !x.is_finite()) {
                return Err(format_err(
                    path,
                    format!(
                        "tensor {name}: value {i} is {} (directions must be finite)",
                        t[i]
                    ),
                ));
            }
            let slot: &mut Vec<f32> = directions
                .entry(layer)
                .or_insert_with(|| vec![0.0; t.len()]);
            // llama.cpp sums duplicate directions of one file.
            slot.iter_mut().zip(&t).for_each(|(a, b)| *a += b);
        }
        if directions.is_empty() {
            return Err(format_err(path, "no direction.N tensors"));
        }
        Ok(Self {
            model_hint,
            directions,
        })
    }

    /// The width (hidden size) of the directions.
    pub fn width(&self) -> usize {
        self.directions.values().next().map_or(0, Vec::len)
    }

    /// Writes the file exactly as gguf-py's `GGUFWriter` does for repeng's `export_gguf`:
    /// `general.architecture = "controlvector"`, `controlvector.model_hint`,
    /// `controlvector.layer_count` (u32), then `direction.N` tensors in layer order, each
    /// padded to 32 bytes.
    pub fn write(&self, path: &Path) -> Result<()> {
        let mut out = Vec::new();
        let put_str = |out: &mut Vec<u8>, s: &str| {
            out.extend((s.len() as u64).to_le_bytes());
            out.extend(s.as_bytes());
        };
        out.extend(b"GGUF");
        out.extend(3u32.to_le_bytes());
        out.extend((self.directions.len() as u64).to_le_bytes());
        out.extend(3u64.to_le_bytes());
        put_str(&mut out, "general.architecture");
        out.extend(8u32.to_le_bytes());
        put_str(&mut out, "controlvector");
        put_str(&mut out, "controlvector.model_hint");
        out.extend(8u32.to_le_bytes());
        put_str(&mut out, self.model_hint.as_deref().unwrap_or(""));
        put_str(&mut out, "controlvector.layer_count");
        out.extend(4u32.to_le_bytes());
        out.extend((self.directions.len() as u32).to_le_bytes());
        let padded = |n: usize| n.div_ceil(ALIGNMENT) * ALIGNMENT;
        let mut offset = 0usize;
        for (layer, v) in &self.directions {
            put_str(&mut out, &format!("direction.{layer}"));
            out.extend(1u32.to_le_bytes());
            out.extend((v.len() as u64).to_le_bytes());
            out.extend(0u32.to_le_bytes()); // F32
            out.extend((offset as u64).to_le_bytes());
            offset += padded(v.len() * 4);
        }
        out.resize(padded(out.len()), 0);
        for v in self.directions.values() {
            let start = out.len();
            v.iter().for_each(|x| out.extend(x.to_le_bytes()));
            out.resize(start + padded(v.len() * 4), 0);
        }
        let mut f = std::fs::File::create(path).map_err(|e| Error::io(path, e))?;
        f.write_all(&out).map_err(|e| Error::io(path, e))
    }
}

/// Parses `FILE[:SCALE]` (scale 1 when absent).
pub fn parse_spec(spec: &str) -> Result<(PathBuf, f32)> {
    match spec.rsplit_once(':') {
        Some((file, scale)) if !file.is_empty() => match scale.parse::<f32>() {
            Ok(s) if s.is_finite() => Ok((PathBuf::from(file), s)),
            _ => Err(Error::Input(format!(
                "{spec}: scale `{scale}` is not a finite number"
            ))),
        },
        _ => Ok((PathBuf::from(spec), 1.0)),
    }
}

/// The summed, scaled directions of several files for one model, ready to apply.
#[derive(Clone, Debug)]
pub struct ControlSet {
    pub per_layer: BTreeMap<usize, Vec<f32>>,
}

impl ControlSet {
    /// Loads and sums `files` (each times its scale) for a model of `hidden` width and
    /// `layers` blocks, keeping blocks in `range` (inclusive; default all). A file whose width
    /// or layers do not fit the model is an error naming it.
    pub fn load(
        files: &[(PathBuf, f32)],
        range: Option<(usize, usize)>,
        hidden: usize,
        layers: usize,
    ) -> Result<Self> {
        let mut per_layer: BTreeMap<usize, Vec<f32>> = BTreeMap::new();
        for (path, scale) in files {
            if !scale.is_finite() {
                return Err(format_err(
                    path,
                    format!("scale {scale} is not a finite number"),
                ));
            }
            let cv = ControlVector::read(path)?;
            if cv.width() != hidden {
                return Err(format_err(
                    path,
                    format!(
                        "directions have {} values, the model's hidden size is {hidden}",
                        cv.width()
                    ),
                ));
            }
            if let Some((&last, _)) = cv.directions.last_key_value() {
                if last >= layers {
                    return Err(format_err(
                        path,
                        format!(
                            "direction.{last} targets block {last}, the model has blocks 0..{}",
                            layers.saturating_sub(1)
                        ),
                    ));
                }
            }
            for (layer, v) in cv.directions {
                if range.is_some_and(|(a, b)| layer < a || layer > b) {
                    continue;
                }
                let slot = per_layer.entry(layer).or_insert_with(|| vec![0.0; hidden]);
                slot.iter_mut().zip(&v).for_each(|(a, b)| *a += scale * b);
            }
        }
        for (layer, v) in &per_layer {
            if v.iter().any(|x| !x.is_finite()) {
                return Err(Error::Input(format!(
                    "control vectors: block {layer}'s scaled sum overflows f32 (scales too large)"
                )));
            }
        }
        Ok(Self { per_layer })
    }

    /// The residual hook that adds each layer's vector to that block's output.
    pub fn hook(&self, device: &Device) -> Result<ControlHook> {
        let vectors = self
            .per_layer
            .iter()
            .map(|(&l, v)| Ok((l, Tensor::from_slice(v, v.len(), device)?)))
            .collect::<Result<BTreeMap<_, _>>>()?;
        Ok(ControlHook { vectors })
    }

    /// A hook that steers row `r` of every batch it sees by `rows[r]` (none: unsteered), so
    /// that requests with different vectors and scales share one batch. Every set must be of
    /// the model's `hidden` width.
    pub fn rows_hook(
        rows: &[Option<&ControlSet>],
        hidden: usize,
        device: &Device,
    ) -> Result<ControlHook> {
        let layers: std::collections::BTreeSet<usize> = rows
            .iter()
            .flatten()
            .flat_map(|s| s.per_layer.keys().copied())
            .collect();
        let mut vectors = BTreeMap::new();
        for layer in layers {
            let mut v = vec![0f32; rows.len() * hidden];
            for (r, set) in rows.iter().enumerate() {
                if let Some(d) = set.and_then(|s| s.per_layer.get(&layer)) {
                    if d.len() != hidden {
                        return Err(Error::Input(format!(
                            "row {r}: a control vector of {} values for hidden size {hidden}",
                            d.len()
                        )));
                    }
                    v[r * hidden..(r + 1) * hidden].copy_from_slice(d);
                }
            }
            vectors.insert(layer, Tensor::from_vec(v, (rows.len(), 1, hidden), device)?);
        }
        Ok(ControlHook { vectors })
    }
}

/// Adds each layer's vector to that block's output: one vector for every row `(hidden)`, or
/// one per row `(b, 1, hidden)`.
pub struct ControlHook {
    vectors: BTreeMap<usize, Tensor>,
}

impl ResidualHook for ControlHook {
    fn after_block(
        &mut self,
        layer: usize,
        hidden: &Tensor,
    ) -> ethos_model::Result<Option<Tensor>> {
        match self.vectors.get(&layer) {
            Some(v) => Ok(Some(hidden.broadcast_add(&v.to_dtype(hidden.dtype())?)?)),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    fn golden() -> ControlVector {
        ControlVector {
            model_hint: Some("llama".into()),
            directions: BTreeMap::from([
                (1, vec![1.0, 2.0, 3.0, 4.0]),
                (2, vec![-1.0, 0.5, 0.25, 0.0]),
            ]),
        }
    }

    /// Found by the control_vector fuzz target: a vector whose declared length overflows the
    /// byte count (candle multiplied without a check: a panic with overflow checks, a wrapped
    /// size without) is refused naming the file and tensor, before candle reads it.
    #[test]
    fn a_tensor_size_that_overflows_is_refused() {
        let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures/fuzz/control_vector_size_overflows.gguf");
        let e = ControlVector::read(&path).err().unwrap().to_string();
        assert!(
            e.contains("control_vector_size_overflows.gguf: tensor") && !e.contains('\n'),
            "{e}"
        );
    }

    /// Found by the control_vector fuzz target: a direction with no values made candle build
    /// a slice of f32 from an unaligned empty buffer (undefined behaviour, caught by debug
    /// assertions); tensors with no elements are refused with the other layout checks.
    #[test]
    fn an_empty_tensor_is_refused() {
        let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures/fuzz/control_vector_empty_tensor.gguf");
        let e = ControlVector::read(&path).err().unwrap().to_string();
        assert!(e.contains("has no elements") && !e.contains('\n'), "{e}");
    }

    /// The golden file of steering.md §3.5 (gguf-py 0.19.0, as repeng writes it).
    #[test]
    fn writes_the_golden_file_byte_for_byte() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("cv.gguf");
        golden().write(&p).unwrap();
        let bytes = std::fs::read(&p).unwrap();
        assert_eq!(bytes.len(), 320);
        let hex: String = Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(
            hex,
            "b57350c25748e7667ad7c69ba853673f1f132a929217635430a52ad01eb286a0"
        );
        assert_eq!(ControlVector::read(&p).unwrap(), golden());
    }

    #[test]
    fn bad_files_and_specs_are_one_line_errors() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("cv.gguf");
        let mut zero = golden();
        zero.directions.insert(0, vec![0.0; 4]);
        zero.write(&p).unwrap();
        let e = ControlVector::read(&p).unwrap_err().to_string();
        assert!(e.contains("direction.0") && e.contains("cv.gguf"), "{e}");
        golden().write(&p).unwrap();
        let e = ControlSet::load(&[(p.clone(), 1.0)], None, 8, 4)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("4 values") && e.contains("hidden size is 8"),
            "{e}"
        );
        let e = ControlSet::load(&[(p.clone(), 1.0)], None, 4, 2)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("direction.2") && e.contains("blocks 0..1"),
            "{e}"
        );
        // Non-finite values and scales are refused where they enter.
        let mut bad = golden();
        bad.directions.insert(3, vec![0.0, f32::NAN, 1.0, 2.0]);
        bad.write(&p).unwrap();
        let e = ControlVector::read(&p).unwrap_err().to_string();
        assert!(
            e.contains("direction.3") && e.contains("value 1 is NaN") && !e.contains('\n'),
            "{e}"
        );
        bad.directions.insert(3, vec![f32::INFINITY; 4]);
        bad.write(&p).unwrap();
        let e = ControlVector::read(&p).unwrap_err().to_string();
        assert!(e.contains("value 0 is inf"), "{e}");
        golden().write(&p).unwrap();
        let e = ControlSet::load(&[(p.clone(), f32::NAN)], None, 4, 4)
            .unwrap_err()
            .to_string();
        assert!(e.contains("scale NaN") && e.contains("cv.gguf"), "{e}");
        let e = ControlSet::load(&[(p.clone(), 3e38)], None, 4, 4)
            .unwrap_err()
            .to_string();
        assert!(e.contains("block 1") && e.contains("overflows"), "{e}");
        std::fs::write(&p, b"not gguf").unwrap();
        let e = ControlVector::read(&p).unwrap_err().to_string();
        assert!(
            e.contains("not a valid GGUF file") && !e.contains('\n'),
            "{e}"
        );
        assert!(parse_spec("cv.gguf:abc")
            .unwrap_err()
            .to_string()
            .contains("abc"));
        assert_eq!(
            parse_spec("cv.gguf:-1.5").unwrap(),
            (PathBuf::from("cv.gguf"), -1.5)
        );
        assert_eq!(
            parse_spec("cv.gguf").unwrap(),
            (PathBuf::from("cv.gguf"), 1.0)
        );
    }

    /// A row's vectors of the wrong width are refused, naming the row; rows without a set get
    /// zeros, each row its own vector.
    #[test]
    fn rows_hook_places_each_rows_vectors_and_checks_their_width() {
        let set = |v: Vec<f32>| ControlSet {
            per_layer: BTreeMap::from([(1, v)]),
        };
        let (a, b) = (set(vec![1.0, 2.0]), set(vec![3.0, 4.0]));
        let hook = ControlSet::rows_hook(&[Some(&a), None, Some(&b)], 2, &Device::Cpu).unwrap();
        let v = hook.vectors[&1].to_vec3::<f32>().unwrap();
        assert_eq!(
            v,
            vec![
                vec![vec![1.0, 2.0]],
                vec![vec![0.0, 0.0]],
                vec![vec![3.0, 4.0]]
            ]
        );
        let wide = set(vec![0.0; 3]);
        let e = ControlSet::rows_hook(&[None, Some(&wide)], 2, &Device::Cpu)
            .err()
            .unwrap()
            .to_string();
        assert_eq!(e, "row 1: a control vector of 3 values for hidden size 2");
    }

    #[test]
    fn files_sum_with_their_scales_within_the_layer_range() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("cv.gguf");
        golden().write(&p).unwrap();
        let set =
            ControlSet::load(&[(p.clone(), 2.0), (p.clone(), -0.5)], Some((2, 3)), 4, 4).unwrap();
        assert_eq!(set.per_layer.len(), 1);
        assert_eq!(set.per_layer[&2], vec![-1.5, 0.75, 0.375, 0.0]);
    }
}
