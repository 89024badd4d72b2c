//! The run folder: `run.json` says whose items these are, `items.jsonl` holds one line per
//! (item, condition, format), appended and flushed as they are judged, so an interrupted run
//! resumes where it stopped. A folder holding another run's items is refused untouched.

use crate::benchmark::Judgement;
use crate::error::{bail, Error, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

/// Who made the items: a folder is only resumed by the same benchmark, model and data.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct RunIdentity {
    pub benchmark: String,
    pub model: Value,
    pub dataset_sha256: String,
    /// Control vectors (files, SHA-256s, scales, layer range) of a steered run: a steered run
    /// never resumes into an unsteered folder or the other way round.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steering: Option<Value>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ItemRecord {
    pub id: String,
    pub condition: String,
    pub format: String,
    #[serde(flatten)]
    pub judgement: Judgement,
    /// Group kind -> the item's groups of that kind.
    pub groups: BTreeMap<String, Vec<String>>,
}

pub type Key = (String, String, String);

impl ItemRecord {
    /// A judged item with nothing but its keys and whether it is right (for tests).
    #[cfg(test)]
    pub(crate) fn judged(id: &str, condition: &str, format: &str, correct: bool) -> Self {
        ItemRecord {
            id: id.into(),
            condition: condition.into(),
            format: format.into(),
            judgement: crate::benchmark::Judgement {
                prediction: "A".into(),
                gold: "A".into(),
                correct,
                correct_norm: None,
                option_logprobs: serde_json::json!({}),
                generated: None,
                score: None,
            },
            groups: BTreeMap::new(),
        }
    }

    pub fn key(&self) -> Key {
        (self.id.clone(), self.condition.clone(), self.format.clone())
    }
}

impl RunIdentity {
    /// What must match for a run to resume into this folder (see
    /// `backend::comparable_identity`).
    fn comparable(&self) -> RunIdentity {
        RunIdentity {
            model: crate::backend::comparable_identity(&self.model),
            ..self.clone()
        }
    }
}

pub struct RunLog {
    pub dir: PathBuf,
    items_path: PathBuf,
    file: File,
    pub records: HashMap<Key, ItemRecord>,
    /// Lines found at the start (a resumed run).
    pub resumed: usize,
}

impl RunLog {
    pub fn open(dir: &Path, identity: &RunIdentity) -> Result<Self> {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::io(dir, "cannot create the output folder", e))?;
        let run_path = dir.join("run.json");
        let items_path = dir.join("items.jsonl");
        let mut records = HashMap::new();
        let mut resumed = 0;
        if items_path.exists() {
            let found: Option<RunIdentity> = match std::fs::read(&run_path) {
                Ok(b) => serde_json::from_slice(&b).ok(),
                Err(_) => None,
            };
            match found {
                Some(f) if f.comparable() == identity.comparable() => {}
                Some(f) => bail!(
                    RunFolder,
                    "{}: holds the items of another run (benchmark `{}`, model {}, data {}); choose another --output",
                    items_path.display(),
                    f.benchmark,
                    short_model(&f.model),
                    &f.dataset_sha256[..f.dataset_sha256.len().min(12)]
                ),
                None => bail!(
                    RunFolder,
                    "{}: holds items but no readable run.json says whose; choose another --output",
                    items_path.display()
                ),
            }
            let (recs, good_bytes, total_bytes) = read_items(&items_path)?;
            if good_bytes < total_bytes {
                // Only an unfinished last line (the run was killed mid-write) is dropped.
                OpenOptions::new()
                    .write(true)
                    .open(&items_path)
                    .and_then(|f| f.set_len(good_bytes))
                    .map_err(|e| {
                        Error::io(&items_path, "cannot cut the unfinished last line", e)
                    })?;
            }
            resumed = recs.len();
            for r in recs {
                records.insert(r.key(), r);
            }
        } else {
            let text = serde_json::to_string_pretty(identity).map_err(Error::Serialize)?;
            std::fs::write(&run_path, text + "\n")
                .map_err(|e| Error::io(&run_path, "cannot write", e))?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&items_path)
            .map_err(|e| Error::io(&items_path, "cannot open for appending", e))?;
        Ok(Self {
            dir: dir.to_path_buf(),
            items_path,
            file,
            records,
            resumed,
        })
    }

    /// Refuses a resumed folder holding a record that `known` does not recognise (an id the
    /// benchmark does not have: a forged or foreign line), naming the first such id; the
    /// folder is left as it was.
    pub fn refuse_unknown(&self, known: impl Fn(&ItemRecord) -> bool, bench: &str) -> Result<()> {
        let mut unknown: Vec<&ItemRecord> = self.records.values().filter(|r| !known(r)).collect();
        unknown.sort_by_key(|r| r.key());
        if let Some(r) = unknown.first() {
            bail!(
                RunFolder,
                "{}: item `{}` (condition `{}`, format `{}`) is not an item of {bench}; {} such line(s); choose another --output",
                self.items_path.display(),
                r.id,
                r.condition,
                r.format,
                unknown.len()
            );
        }
        Ok(())
    }

    pub fn append(&mut self, records: Vec<ItemRecord>) -> Result<()> {
        let mut buf = String::new();
        for r in &records {
            buf.push_str(&serde_json::to_string(r).map_err(Error::Serialize)?);
            buf.push('\n');
        }
        self.file
            .write_all(buf.as_bytes())
            .and_then(|_| self.file.flush())
            .map_err(|e| Error::io(&self.items_path, "cannot append", e))?;
        for r in records {
            self.records.insert(r.key(), r);
        }
        Ok(())
    }
}

fn short_model(v: &Value) -> String {
    let src = v.get("source").and_then(Value::as_str).unwrap_or("?");
    let sha = v.get("sha256").and_then(Value::as_str).unwrap_or("");
    format!("`{src}` {}", &sha[..sha.len().min(12)])
}

/// The records of `path`, and how many bytes hold whole, valid lines. Only an unfinished
/// last line (no newline: the run was killed mid-write) may be cut; a bad complete line
/// anywhere, or an item recorded twice (a forged or merged file), is an error naming the
/// line (the file is not ours to rewrite).
fn read_items(path: &Path) -> Result<(Vec<ItemRecord>, u64, u64)> {
    let cannot_read = |e| Error::io(path, "cannot read", e);
    let f = File::open(path).map_err(cannot_read)?;
    let total = f.metadata().map_err(cannot_read)?.len();
    let mut reader = BufReader::new(f);
    let mut out = Vec::new();
    let mut good = 0u64;
    let mut line = String::new();
    let mut n = 0;
    let mut first_line: HashMap<Key, usize> = HashMap::new();
    loop {
        line.clear();
        let read = reader.read_line(&mut line).map_err(cannot_read)?;
        if read == 0 {
            break;
        }
        n += 1;
        let complete = line.ends_with('\n');
        match serde_json::from_str::<ItemRecord>(line.trim_end()) {
            Ok(r) if complete => {
                if let Some(first) = first_line.insert(r.key(), n) {
                    bail!(
                        RunFolder,
                        "{}:{n}: item `{}` ({}, {}) is already on line {first}; a run records each item once",
                        path.display(),
                        r.id,
                        r.condition,
                        r.format
                    );
                }
                out.push(r);
                good += read as u64;
            }
            _ if !complete && good + read as u64 == total => break, // unfinished last line
            Err(err) => {
                return Err(Error::ItemRecord {
                    path: path.to_path_buf(),
                    line: n,
                    err,
                })
            }
            // Without a newline a line is the last: the arm above took it.
            Ok(_) => unreachable!("an incomplete line is always the last"),
        }
    }
    Ok((out, good, total))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ident(b: &str) -> RunIdentity {
        RunIdentity {
            steering: None,
            benchmark: b.into(),
            model: json!({"source": "m.gguf", "sha256": "abcdef0123456789"}),
            dataset_sha256: "d".repeat(64),
        }
    }

    fn rec(id: &str) -> ItemRecord {
        ItemRecord {
            id: id.into(),
            condition: "easy".into(),
            format: "harness".into(),
            judgement: Judgement {
                prediction: "A".into(),
                gold: "B".into(),
                correct: false,
                correct_norm: Some(false),
                option_logprobs: json!({"A": -1.0, "B": -2.0}),
                generated: None,
                score: None,
            },
            groups: BTreeMap::from([("country".to_string(), vec!["X".to_string()])]),
        }
    }

    #[test]
    fn resume_keeps_whole_lines_and_drops_an_unfinished_last_one() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = RunLog::open(dir.path(), &ident("culturalbench")).unwrap();
        log.append(vec![rec("0"), rec("1")]).unwrap();
        drop(log);
        let items = dir.path().join("items.jsonl");
        let mut f = OpenOptions::new().append(true).open(&items).unwrap();
        f.write_all(b"{\"id\": \"2\", \"condi").unwrap();
        drop(f);
        let log = RunLog::open(dir.path(), &ident("culturalbench")).unwrap();
        assert_eq!(log.resumed, 2);
        assert!(log
            .records
            .contains_key(&("1".into(), "easy".into(), "harness".into())));
        let text = std::fs::read_to_string(&items).unwrap();
        assert_eq!(text.lines().count(), 2);
        assert!(text.ends_with('\n'));
    }

    #[test]
    fn another_runs_folder_is_refused_and_left_as_it_was() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = RunLog::open(dir.path(), &ident("culturalbench")).unwrap();
        log.append(vec![rec("0")]).unwrap();
        drop(log);
        let before = std::fs::read(dir.path().join("items.jsonl")).unwrap();
        let e = RunLog::open(dir.path(), &ident("normad"))
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("holds the items of another run (benchmark `culturalbench`"),
            "{e}"
        );
        assert_eq!(
            std::fs::read(dir.path().join("items.jsonl")).unwrap(),
            before
        );
        std::fs::remove_file(dir.path().join("run.json")).unwrap();
        let e = RunLog::open(dir.path(), &ident("culturalbench"))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("no readable run.json"), "{e}");
    }

    /// A forged or merged file that records an item twice (flipped answers appended) is
    /// refused naming both lines, and a complete last line that is not an item is an error,
    /// never cut; the file is left as it was.
    #[test]
    fn duplicate_items_and_a_complete_bad_last_line_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = RunLog::open(dir.path(), &ident("culturalbench")).unwrap();
        log.append(vec![rec("0"), rec("1")]).unwrap();
        drop(log);
        let items = dir.path().join("items.jsonl");
        let good = std::fs::read_to_string(&items).unwrap();
        let first = good.lines().next().unwrap().to_string();
        let forged = format!("{good}{first}\n");
        std::fs::write(&items, &forged).unwrap();
        let e = RunLog::open(dir.path(), &ident("culturalbench"))
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("items.jsonl:3: item `0`") && e.contains("already on line 1"),
            "{e}"
        );
        assert_eq!(std::fs::read_to_string(&items).unwrap(), forged);
        let tail = format!("{good}{{\"not\": \"an item\"}}\n");
        std::fs::write(&items, &tail).unwrap();
        let e = RunLog::open(dir.path(), &ident("culturalbench"))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("items.jsonl:3: not an item record"), "{e}");
        assert_eq!(std::fs::read_to_string(&items).unwrap(), tail);
    }

    /// A line whose id the benchmark does not have (forged, or from another data set with the
    /// same hash claim) is refused naming it; the file is left as it was.
    #[test]
    fn records_with_ids_the_benchmark_lacks_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = RunLog::open(dir.path(), &ident("culturalbench")).unwrap();
        log.append(vec![rec("0"), rec("1"), rec("9999")]).unwrap();
        drop(log);
        let before = std::fs::read(dir.path().join("items.jsonl")).unwrap();
        let log = RunLog::open(dir.path(), &ident("culturalbench")).unwrap();
        let known = |r: &ItemRecord| r.id.parse::<usize>().is_ok_and(|i| i < 10);
        let e = log
            .refuse_unknown(known, "culturalbench")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("items.jsonl: item `9999`") && e.contains("not an item of culturalbench"),
            "{e}"
        );
        assert!(!e.contains('\n'));
        assert!(log.refuse_unknown(|r| r.id != "x", "culturalbench").is_ok());
        assert_eq!(
            std::fs::read(dir.path().join("items.jsonl")).unwrap(),
            before
        );
    }

    #[test]
    fn a_corrupt_line_in_the_middle_is_an_error_not_a_cut() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = RunLog::open(dir.path(), &ident("culturalbench")).unwrap();
        log.append(vec![rec("0")]).unwrap();
        drop(log);
        let items = dir.path().join("items.jsonl");
        let mut text = std::fs::read_to_string(&items).unwrap();
        text = format!("garbage\n{text}");
        std::fs::write(&items, &text).unwrap();
        let e = RunLog::open(dir.path(), &ident("culturalbench"))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("items.jsonl:1: not an item record"), "{e}");
        assert_eq!(std::fs::read_to_string(&items).unwrap(), text);
    }
}
