//! A task's local documents, typed as `datasets.load_dataset` types them, so that templates
//! see the values lm-eval's see: JSON keeps its own types; CSV columns are inferred as
//! pandas' `read_csv` infers them (integers, floats, booleans, else strings, with pandas'
//! missing-value markers as null); Parquet columns keep their schema's types (lists and
//! structs as lists and mappings).

use super::config::DataFiles;
use crate::data::Source;
use crate::error::{bail, Error, Result};
use serde_json::{Map, Value};

pub type Doc = Map<String, Value>;

/// pandas' default `na_values` (`read_csv` turns these fields into NaN, which `datasets`
/// stores as null).
const NA_VALUES: &[&str] = &[
    "", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
    "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null",
];

/// Every split's documents, in file order, and the column names (`features`).
pub struct Splits {
    pub splits: Vec<(String, Vec<Doc>)>,
    pub features: Vec<String>,
    pub sources: Vec<Source>,
}

impl Splits {
    pub fn load(files: &DataFiles) -> Result<Self> {
        let mut splits = Vec::new();
        let mut sources = Vec::new();
        let mut features: Vec<String> = Vec::new();
        for (split, paths) in &files.splits {
            let mut docs = Vec::new();
            for p in paths {
                let source = Source::read(p)?;
                let mut rows = match files.builder.as_str() {
                    "csv" => csv_rows(&source)?,
                    "parquet" => parquet_rows(&source)?,
                    _ => json_rows(&source, files.field.as_deref())?,
                };
                if rows.is_empty() {
                    bail!(Data, "{}: no rows", source.name);
                }
                for k in rows[0].keys() {
                    if !features.contains(k) {
                        features.push(k.clone());
                    }
                }
                docs.append(&mut rows);
                sources.push(source);
            }
            splits.push((split.clone(), docs));
        }
        Ok(Self {
            splits,
            features,
            sources,
        })
    }

    pub fn get(&self, split: &str) -> &[Doc] {
        self.splits
            .iter()
            .find(|(s, _)| s == split)
            .map(|(_, d)| d.as_slice())
            .unwrap_or_default()
    }
}

/// JSON Lines (one object per line), a JSON array of objects, or an object whose `field`
/// holds the array.
fn json_rows(source: &Source, field: Option<&str>) -> Result<Vec<Doc>> {
    let text = std::str::from_utf8(&source.bytes).map_err(|e| Error::NotUtf8 {
        name: source.name.clone(),
        source: e,
    })?;
    let whole = || -> Result<Value> {
        serde_json::from_str(text).map_err(|err| Error::Json {
            at: source.name.clone(),
            err,
        })
    };
    let rows: Vec<Value> = match field {
        Some(f) => match whole()? {
            Value::Object(mut o) => match o.remove(f) {
                Some(Value::Array(a)) => a,
                _ => bail!(
                    Data,
                    "{}: no list under `{f}` (dataset_kwargs.field)",
                    source.name
                ),
            },
            _ => bail!(
                Data,
                "{}: not a JSON object (dataset_kwargs.field is `{f}`)",
                source.name
            ),
        },
        None if text.trim_start().starts_with('[') => match whole()? {
            Value::Array(a) => a,
            _ => bail!(Data, "{}: not a JSON array", source.name),
        },
        None => {
            let mut rows = Vec::new();
            for (i, line) in text.lines().enumerate() {
                if line.trim().is_empty() {
                    continue;
                }
                rows.push(serde_json::from_str(line).map_err(|err| Error::Json {
                    at: format!("{}:{}", source.name, i + 1),
                    err,
                })?);
            }
            rows
        }
    };
    rows.into_iter()
        .enumerate()
        .map(|(i, r)| match r {
            Value::Object(o) => Ok(o),
            _ => Err(Error::Data(format!(
                "{}: row {}: not an object",
                source.name,
                i + 1
            ))),
        })
        .collect()
}

/// A Parquet file's rows, each as the mapping `datasets` makes of it. The reader is guarded:
/// a malformed file that makes the parquet crate panic is an error naming the file.
fn parquet_rows(source: &Source) -> Result<Vec<Doc>> {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let name = &source.name;
    let bytes = bytes::Bytes::from(source.bytes.clone());
    let read = || -> std::result::Result<Vec<Value>, String> {
        let reader = SerializedFileReader::new(bytes).map_err(|e| e.to_string())?;
        let mut rows = Vec::new();
        for (i, row) in reader
            .get_row_iter(None)
            .map_err(|e| e.to_string())?
            .enumerate()
        {
            let row = row.map_err(|e| format!("row {}: {e}", i + 1))?;
            rows.push(row.to_json_value());
        }
        Ok(rows)
    };
    let rows = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(read)) {
        Ok(Ok(rows)) => rows,
        Ok(Err(e)) => bail!(Data, "{name}: not Parquet data ethos can read: {e}"),
        Err(_) => bail!(
            Data,
            "{name}: not Parquet data ethos can read (malformed file)"
        ),
    };
    rows.into_iter()
        .enumerate()
        .map(|(i, r)| match r {
            Value::Object(o) => Ok(o),
            _ => Err(Error::Data(format!("{name}: row {}: not a record", i + 1))),
        })
        .collect()
}

/// What pandas makes of a column.
#[derive(Clone, Copy, PartialEq)]
enum Column {
    Int,
    Float,
    Bool,
    Text,
}

fn csv_rows(source: &Source) -> Result<Vec<Doc>> {
    let header = crate::data::Table::header(source)?;
    let mut reader = csv::ReaderBuilder::new().from_reader(source.bytes.as_slice());
    let mut records = Vec::new();
    for (i, r) in reader.records().enumerate() {
        let r = r.map_err(|err| Error::CsvRow {
            name: source.name.clone(),
            row: i + 2,
            err,
        })?;
        records.push(r);
    }
    let cells = pandas_typed(&records, header.len());
    Ok(cells
        .into_iter()
        .map(|row| header.iter().cloned().zip(row).collect())
        .collect())
}

/// CSV cells as pandas' `read_csv` types them, column by column: integers, floats (a
/// column with a missing value is float), booleans, else strings; pandas' NA markers are
/// `null`.
pub(crate) fn pandas_typed(records: &[csv::StringRecord], columns: usize) -> Vec<Vec<Value>> {
    let is_na = |s: &str| NA_VALUES.contains(&s);
    let kinds: Vec<Column> = (0..columns)
        .map(|c| {
            let cells = || records.iter().map(move |r| r.get(c).unwrap_or(""));
            let present = || cells().filter(|s| !is_na(s));
            let any_na = cells().any(is_na);
            if present().next().is_none() {
                Column::Float
            } else if !any_na && present().all(|s| s.parse::<i64>().is_ok()) {
                Column::Int
            } else if present().all(|s| s.trim().parse::<f64>().is_ok()) {
                Column::Float
            } else if !any_na
                && present()
                    .all(|s| matches!(s, "True" | "False" | "TRUE" | "FALSE" | "true" | "false"))
            {
                Column::Bool
            } else {
                Column::Text
            }
        })
        .collect();
    records
        .iter()
        .map(|r| {
            (0..columns)
                .map(|c| {
                    let s = r.get(c).unwrap_or("");
                    if is_na(s) {
                        Value::Null
                    } else {
                        match kinds[c] {
                            Column::Int => Value::from(s.parse::<i64>().unwrap_or_default()),
                            Column::Float => {
                                Value::from(s.trim().parse::<f64>().unwrap_or(f64::NAN))
                            }
                            Column::Bool => Value::Bool(s.eq_ignore_ascii_case("true")),
                            Column::Text => Value::String(s.to_string()),
                        }
                    }
                })
                .collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_columns_are_typed_as_pandas_types_them() {
        let src = Source {
            name: "t.csv".into(),
            bytes: b"i,f,b,s,gap,na\n1,1.5,True,x,3,NA\n2,2,False,7,,1\n".to_vec(),
        };
        let rows = csv_rows(&src).unwrap();
        assert_eq!(rows[0]["i"], Value::from(1));
        assert_eq!(rows[1]["f"], Value::from(2.0));
        assert_eq!(rows[0]["b"], Value::Bool(true));
        assert_eq!(rows[1]["s"], Value::from("7"));
        // A missing integer makes the column float, as in pandas.
        assert_eq!(rows[0]["gap"], Value::from(3.0));
        assert_eq!(rows[1]["gap"], Value::Null);
        assert_eq!(rows[0]["na"], Value::Null);
    }

    #[test]
    fn json_lines_arrays_and_fields_are_read() {
        let lines = Source {
            name: "a.jsonl".into(),
            bytes: b"{\"q\": 1}\n\n{\"q\": 2}\n".to_vec(),
        };
        assert_eq!(json_rows(&lines, None).unwrap().len(), 2);
        let array = Source {
            name: "a.json".into(),
            bytes: b"[{\"q\": 1}]".to_vec(),
        };
        assert_eq!(json_rows(&array, None).unwrap()[0]["q"], Value::from(1));
        let nested = Source {
            name: "a.json".into(),
            bytes: b"{\"data\": [{\"q\": 1}]}".to_vec(),
        };
        assert_eq!(json_rows(&nested, Some("data")).unwrap().len(), 1);
        let bad = Source {
            name: "b.jsonl".into(),
            bytes: b"{\"q\": 1}\n{\"q\": \n".to_vec(),
        };
        let e = json_rows(&bad, None).err().unwrap().to_string();
        assert!(e.starts_with("b.jsonl:2: "), "{e}");
    }
}
