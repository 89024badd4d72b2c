//! Benchmark data: the vendored copies compiled into the binary, or a user's own file in the
//! upstream schema. Errors name the file and the column.

use crate::error::{bail, Error, Result};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::Path;

/// The bytes of a data file and the name errors should use for it.
pub struct Source {
    pub name: String,
    pub bytes: Vec<u8>,
}

impl Source {
    pub fn embedded(name: &str, bytes: &[u8]) -> Self {
        Self {
            name: format!("(built-in) {name}"),
            bytes: bytes.to_vec(),
        }
    }

    pub fn read(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, "cannot read", e))?;
        Ok(Self {
            name: path.display().to_string(),
            bytes,
        })
    }

    pub fn sha256(&self) -> String {
        hex(&Sha256::digest(&self.bytes))
    }

    /// The text of a zstd-packed source, refused past `limit` bytes unpacked (a packed file
    /// can claim any size).
    pub fn unpacked_text(&self, limit: u64) -> Result<String> {
        use std::io::Read;
        let mut text = String::new();
        let mut reader = ruzstd::decoding::StreamingDecoder::new(self.bytes.as_slice())
            .map_err(|e| Error::Data(format!("{}: {e}", self.name)))?
            .take(limit + 1);
        reader
            .read_to_string(&mut text)
            .map_err(|e| Error::io(&self.name, "cannot unpack", e))?;
        if text.len() as u64 > limit {
            bail!(Data, "{}: unpacks to more than {limit} bytes", self.name);
        }
        Ok(text)
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The SHA-256 of several sources together (in order, each length-prefixed).
pub fn combined_sha256(sources: &[&Source]) -> String {
    if sources.len() == 1 {
        return sources[0].sha256();
    }
    let mut h = Sha256::new();
    for s in sources {
        h.update((s.bytes.len() as u64).to_le_bytes());
        h.update(&s.bytes);
    }
    hex(&h.finalize())
}

/// A CSV table with named columns; every row has every required column.
#[derive(Debug)]
pub struct Table {
    pub name: String,
    pub rows: Vec<HashMap<String, String>>,
}

impl Table {
    pub fn header(source: &Source) -> Result<Vec<String>> {
        let mut r = csv::ReaderBuilder::new().from_reader(source.bytes.as_slice());
        let h = r.headers().map_err(|e| Error::NotCsv {
            name: source.name.clone(),
            source: e,
        })?;
        Ok(h.iter()
            .map(|s| s.trim_start_matches('\u{feff}').to_string())
            .collect())
    }

    /// Parses `source`, checking that each of `required` is a column and that there is at
    /// least one row.
    pub fn parse(source: &Source, required: &[&str]) -> Result<Self> {
        if source.bytes.iter().all(|b| b.is_ascii_whitespace()) {
            bail!(Data, "{}: the file is empty", source.name);
        }
        let header = Self::header(source)?;
        for col in required {
            if !header.iter().any(|h| h == col) {
                bail!(
                    Data,
                    "{}: missing column `{col}` (the file has: {})",
                    source.name,
                    header.join(", ")
                );
            }
        }
        let mut r = csv::ReaderBuilder::new().from_reader(source.bytes.as_slice());
        let mut rows = Vec::new();
        for (n, rec) in r.records().enumerate() {
            let rec = rec.map_err(|err| Error::CsvRow {
                name: source.name.clone(),
                row: n + 2,
                err,
            })?;
            if rec.len() != header.len() {
                bail!(
                    Data,
                    "{}: row {} has {} fields, the header {}",
                    source.name,
                    n + 2,
                    rec.len(),
                    header.len()
                );
            }
            rows.push(
                header
                    .iter()
                    .cloned()
                    .zip(rec.iter().map(str::to_string))
                    .collect(),
            );
        }
        if rows.is_empty() {
            bail!(Data, "{}: no rows after the header", source.name);
        }
        Ok(Self {
            name: source.name.clone(),
            rows,
        })
    }

    /// Field `col` of row `i` (0-based data row; errors count the header as line 1).
    pub fn get<'a>(&'a self, i: usize, col: &str) -> Result<&'a str> {
        self.rows[i]
            .get(col)
            .map(String::as_str)
            .ok_or_else(|| Error::Data(format!("{}: row {}: no column `{col}`", self.name, i + 2)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src(text: &str) -> Source {
        Source {
            name: "t.csv".into(),
            bytes: text.as_bytes().to_vec(),
        }
    }

    #[test]
    fn missing_column_and_empty_files_are_named() {
        let e = Table::parse(&src("a,b\n1,2\n"), &["a", "c"])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("t.csv") && e.contains("missing column `c`"),
            "{e}"
        );
        let e = Table::parse(&src(""), &["a"]).unwrap_err().to_string();
        assert!(e.contains("t.csv: the file is empty"), "{e}");
        let e = Table::parse(&src("a,b\n"), &["a"]).unwrap_err().to_string();
        assert!(e.contains("no rows"), "{e}");
        let e = Table::parse(&src("a,b\n1,2,3\n"), &["a"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("row 2"), "{e}");
    }

    #[test]
    fn quoted_fields_with_newlines_parse() {
        let t = Table::parse(&src("a,b\n\"x\ny\",\"1,2\"\n"), &["a", "b"]).unwrap();
        assert_eq!(t.get(0, "a").unwrap(), "x\ny");
        assert_eq!(t.get(0, "b").unwrap(), "1,2");
    }
}
