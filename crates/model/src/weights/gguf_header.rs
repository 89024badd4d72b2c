//! A first pass over a GGUF header, before candle parses it: refuses what llama.cpp refuses
//! and candle would take in silence or panic on. A duplicate metadata key (candle keeps the
//! last, so a second `block_count` ran 1 of 30 layers), a duplicate tensor name, and a
//! `general.alignment` that is not a power of two (0 divided by zero inside candle).
//!
//! Every length read is checked against what is left of the file before anything is
//! allocated, and arrays nest at most `MAX_DEPTH` deep, so a hostile header costs at most its
//! own size.

use crate::error::{Error, Result};
use std::collections::HashSet;
use std::io::Read;
use std::path::Path;

/// Nesting depth of metadata arrays (llama.cpp's files use one level).
const MAX_DEPTH: usize = 4;
/// Dimensions of a tensor (ggml's `GGML_MAX_DIMS`).
const MAX_DIMS: u32 = 4;

/// The header's alignment (default 32) after checking keys, names and the alignment.
pub fn check(path: &Path, reader: &mut impl Read, file_size: u64) -> Result<u64> {
    let mut r = Bounded {
        inner: reader,
        left: file_size,
        path,
    };
    let magic = r.bytes(4)?;
    if magic != b"GGUF" {
        return Err(r.err("not a valid GGUF file: the magic is not GGUF"));
    }
    let version = r.u32()?;
    if !(2..=3).contains(&version) {
        return Err(r.err(&format!("GGUF version {version} (2 and 3 are read)")));
    }
    let tensors = r.u64()?;
    let keys = r.u64()?;
    let mut seen = HashSet::new();
    let mut alignment = 32u64;
    for _ in 0..keys {
        let key = r.string()?;
        let ty = r.u32()?;
        if key == "general.alignment" {
            if ty != 4 {
                return Err(r.field(&key, "must be a u32"));
            }
            let a = r.u32()? as u64;
            if !a.is_power_of_two() {
                return Err(r.field(&key, &format!("{a} is not a power of two")));
            }
            alignment = a;
        } else {
            r.skip_value(ty, 0)?;
        }
        if !seen.insert(key.clone()) {
            return Err(r.field(&key, "appears twice (llama.cpp refuses such files)"));
        }
    }
    let mut names = HashSet::new();
    for _ in 0..tensors {
        let name = r.string()?;
        let dims = r.u32()?;
        if dims == 0 || dims > MAX_DIMS {
            return Err(r.err(&format!(
                "tensor {name}: {dims} dimensions (1 to {MAX_DIMS})"
            )));
        }
        r.skip(8 * dims as u64 + 4 + 8)?;
        if !names.insert(name.clone()) {
            return Err(r.err(&format!(
                "tensor {name} appears twice (llama.cpp refuses such files)"
            )));
        }
    }
    Ok(alignment)
}

/// A reader that never reads, nor allocates for, more than the file holds.
struct Bounded<'a, R> {
    inner: &'a mut R,
    left: u64,
    path: &'a Path,
}

impl<R: Read> Bounded<'_, R> {
    fn err(&self, msg: &str) -> Error {
        Error::format(self.path, msg.to_string())
    }

    fn field(&self, key: &str, msg: &str) -> Error {
        Error::config(self.path, key, msg.to_string())
    }

    fn take(&mut self, n: u64) -> Result<()> {
        if n > self.left {
            return Err(self.err(&format!(
                "the header claims {n} more bytes, the file has {} (truncated or corrupt)",
                self.left
            )));
        }
        self.left -= n;
        Ok(())
    }

    fn bytes(&mut self, n: u64) -> Result<Vec<u8>> {
        self.take(n)?;
        let mut buf = vec![0u8; n as usize];
        self.inner
            .read_exact(&mut buf)
            .map_err(|e| Error::io(self.path, e))?;
        Ok(buf)
    }

    fn skip(&mut self, n: u64) -> Result<()> {
        self.take(n)?;
        let copied = std::io::copy(&mut (&mut *self.inner).take(n), &mut std::io::sink())
            .map_err(|e| Error::io(self.path, e))?;
        if copied != n {
            return Err(self.err("truncated header"));
        }
        Ok(())
    }

    fn u32(&mut self) -> Result<u32> {
        let b = self.bytes(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64> {
        let b = self.bytes(8)?;
        Ok(u64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
    }

    /// A string as candle will read it: trailing NULs dropped (so `general.alignment\0` is
    /// the alignment key to candle, and must be to these checks too).
    fn string(&mut self) -> Result<String> {
        let n = self.u64()?;
        let mut b = self.bytes(n)?;
        while b.last() == Some(&0) {
            b.pop();
        }
        Ok(String::from_utf8_lossy(&b).into_owned())
    }

    /// Skips one value of GGUF type `ty` (arrays nested `depth` deep so far).
    fn skip_value(&mut self, ty: u32, depth: usize) -> Result<()> {
        if let Some(size) = fixed_size(ty) {
            return self.skip(size);
        }
        match ty {
            8 => {
                let n = self.u64()?;
                self.skip(n)
            }
            9 => {
                if depth >= MAX_DEPTH {
                    return Err(self.err(&format!("metadata arrays nest deeper than {MAX_DEPTH}")));
                }
                let inner = self.u32()?;
                let n = self.u64()?;
                match fixed_size(inner) {
                    Some(size) => self.skip(n.saturating_mul(size)),
                    None => {
                        // Each element takes at least 8 bytes (a length or an array header).
                        if n > self.left / 8 {
                            return Err(self.err(&format!(
                                "an array claims {n} elements, more than the file holds"
                            )));
                        }
                        for _ in 0..n {
                            self.skip_value(inner, depth + 1)?;
                        }
                        Ok(())
                    }
                }
            }
            other => Err(self.err(&format!("metadata value type {other} is unknown"))),
        }
    }
}

/// The size of one value of a fixed-size GGUF type.
fn fixed_size(ty: u32) -> Option<u64> {
    match ty {
        0 | 1 | 7 => Some(1),
        2 | 3 => Some(2),
        4..=6 => Some(4),
        10..=12 => Some(8),
        _ => None,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A GGUF v3 file: metadata `(key, type, value bytes)`, tensors `(name, dims, type,
    /// offset)`, then `data` after padding the header to `align`.
    pub(crate) fn gguf(
        kv: &[(&str, u32, Vec<u8>)],
        tensors: &[(&str, &[u64], u32, u64)],
        align: usize,
        data: &[u8],
    ) -> Vec<u8> {
        let mut b = b"GGUF".to_vec();
        b.extend(3u32.to_le_bytes());
        b.extend((tensors.len() as u64).to_le_bytes());
        b.extend((kv.len() as u64).to_le_bytes());
        let string = |b: &mut Vec<u8>, s: &str| {
            b.extend((s.len() as u64).to_le_bytes());
            b.extend(s.as_bytes());
        };
        for (k, ty, v) in kv {
            string(&mut b, k);
            b.extend(ty.to_le_bytes());
            b.extend(v);
        }
        for (name, dims, ty, offset) in tensors {
            string(&mut b, name);
            b.extend((dims.len() as u32).to_le_bytes());
            for d in *dims {
                b.extend(d.to_le_bytes());
            }
            b.extend(ty.to_le_bytes());
            b.extend(offset.to_le_bytes());
        }
        while !b.len().is_multiple_of(align.max(1)) {
            b.push(0);
        }
        b.extend(data);
        b
    }

    fn run(bytes: &[u8]) -> Result<u64> {
        check(Path::new("m.gguf"), &mut &bytes[..], bytes.len() as u64)
    }

    fn u32v(v: u32) -> Vec<u8> {
        v.to_le_bytes().to_vec()
    }

    #[test]
    fn a_plain_header_passes_with_its_alignment() {
        let f = gguf(
            &[(
                "general.architecture",
                8,
                [&5u64.to_le_bytes()[..], b"llama"].concat(),
            )],
            &[("t", &[4], 0, 0)],
            32,
            &[0; 16],
        );
        assert_eq!(run(&f).unwrap(), 32);
        let f = gguf(&[("general.alignment", 4, u32v(64))], &[], 64, &[]);
        assert_eq!(run(&f).unwrap(), 64);
    }

    /// What llama.cpp refuses (and candle took, or panicked on) is one line naming the key,
    /// the tensor or the limit.
    #[test]
    fn hostile_headers_are_refused_in_one_line() {
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (
                gguf(&[("general.alignment", 4, u32v(0))], &[], 1, &[]),
                "0 is not a power of two",
            ),
            (
                gguf(&[("general.alignment", 4, u32v(48))], &[], 1, &[]),
                "48 is not a power of two",
            ),
            // Found by the gguf_tokenizer fuzz target: candle drops a key's trailing NULs and
            // read this i32 0 as the alignment (a division by zero).
            (
                gguf(&[("general.alignment\0\0\0", 5, u32v(0))], &[], 1, &[]),
                "general.alignment",
            ),
            (
                gguf(
                    &[
                        ("llama.block_count", 4, u32v(30)),
                        ("llama.block_count\0", 4, u32v(1)),
                    ],
                    &[],
                    1,
                    &[],
                ),
                "appears twice",
            ),
            (
                gguf(
                    &[
                        ("llama.block_count", 4, u32v(30)),
                        ("llama.block_count", 4, u32v(1)),
                    ],
                    &[],
                    1,
                    &[],
                ),
                "llama.block_count",
            ),
            (
                gguf(&[], &[("w", &[4], 0, 0), ("w", &[4], 0, 32)], 32, &[0; 64]),
                "tensor w appears twice",
            ),
            (
                gguf(&[], &[("w", &[4, 4, 4, 4, 4], 0, 0)], 32, &[]),
                "5 dimensions",
            ),
            (gguf(&[("k", 99, vec![])], &[], 1, &[]), "value type 99"),
        ];
        for (bytes, want) in cases {
            let e = run(&bytes).unwrap_err().to_string();
            assert!(
                e.contains(want) && e.contains("m.gguf") && !e.contains('\n'),
                "{want}: {e}"
            );
        }
        // A string or array length beyond the file fails before any allocation of that size.
        let mut huge = gguf(&[("k", 8, u64::MAX.to_le_bytes().to_vec())], &[], 1, &[]);
        huge.extend([0; 8]);
        assert!(run(&huge)
            .unwrap_err()
            .to_string()
            .contains("truncated or corrupt"));
        let mut arr = 8u32.to_le_bytes().to_vec();
        arr.extend((1u64 << 60).to_le_bytes());
        let f = gguf(&[("tokenizer.ggml.tokens", 9, arr)], &[], 1, &[]);
        assert!(run(&f)
            .unwrap_err()
            .to_string()
            .contains("more than the file holds"));
        let mut nested = Vec::new();
        for _ in 0..6 {
            nested.extend(9u32.to_le_bytes());
            nested.extend(1u64.to_le_bytes());
        }
        nested.extend(4u32.to_le_bytes());
        nested.extend(0u64.to_le_bytes());
        let f = gguf(&[("k", 9, nested)], &[], 1, &[]);
        assert!(run(&f).unwrap_err().to_string().contains("nest deeper"));
    }
}
