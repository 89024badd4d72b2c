//! An lm-evaluation-harness task YAML, read strictly: every key ethos honours is parsed here,
//! the keys that only describe the task are accepted and ignored, and any other key (or a
//! `!function` tag, which lm-eval runs as Python) is an error that names it, so that a task
//! never runs with a silent difference from lm-eval.

use crate::error::{bail, Error, Result};
use serde_yaml_ng::{Mapping, Value};
use std::path::{Path, PathBuf};

/// Keys that name, tag or describe a task without changing its prompts or scores.
const DESCRIPTIVE: &[&str] = &[
    "tag",
    "group",
    "metadata",
    "should_decontaminate",
    "doc_to_decontamination_query",
    "dataset_name",
];

/// What the task asks of the model.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum OutputType {
    MultipleChoice,
    GenerateUntil,
}

/// `doc_to_text`, `doc_to_target` or `doc_to_choice`: a field name or a Jinja template (a
/// string), a literal list, or an index.
#[derive(Clone, Debug, PartialEq)]
pub enum DocTo {
    Text(String),
    List(Vec<Value>),
    Index(i64),
}

/// How few-shot examples are drawn: lm-eval's default sampler (`random.Random(1234)`
/// `sample`, one generator across the documents in order) or `first_n`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Sampler {
    Random,
    FirstN,
}

/// One step of a `filter_list` pipeline.
#[derive(Clone, Debug, PartialEq)]
pub enum FilterStep {
    Regex {
        pattern: String,
        group_select: i64,
        fallback: String,
    },
    TakeFirst,
    Lowercase,
    Uppercase,
    RemoveWhitespace,
}

/// `exact_match`'s options, as lm-eval's `exact_match` metric takes them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ExactMatch {
    pub ignore_case: bool,
    pub ignore_punctuation: bool,
    pub ignore_numbers: bool,
    pub regexes_to_ignore: Vec<String>,
}

/// Where the documents come from: a builder (`json`, `csv`) and its files per split.
#[derive(Clone, Debug, PartialEq)]
pub struct DataFiles {
    pub builder: String,
    /// (split, files), in the YAML's order.
    pub splits: Vec<(String, Vec<PathBuf>)>,
    /// The JSON builder's `field`: the key of an object that holds the rows.
    pub field: Option<String>,
}

#[derive(Clone, Debug)]
pub struct TaskConfig {
    pub path: PathBuf,
    /// The task file and the files it includes, in the order read.
    pub files: Vec<PathBuf>,
    pub task: String,
    pub data: DataFiles,
    pub test_split: Option<String>,
    pub validation_split: Option<String>,
    pub training_split: Option<String>,
    pub fewshot_split: Option<String>,
    pub output_type: OutputType,
    pub doc_to_text: DocTo,
    pub doc_to_target: DocTo,
    pub doc_to_choice: Option<DocTo>,
    pub description: String,
    /// The start of the answer (`gen_prefix`): a field name or a template.
    pub gen_prefix: Option<String>,
    pub target_delimiter: String,
    pub fewshot_delimiter: String,
    pub num_fewshot: usize,
    pub sampler: Sampler,
    pub until: Option<Vec<String>>,
    pub max_gen_toks: usize,
    /// The one filter pipeline of `filter_list` (empty: the answer as generated).
    pub filter: Vec<FilterStep>,
    pub acc: bool,
    pub acc_norm: bool,
    pub exact_match: Option<ExactMatch>,
}

/// lm-eval's default budget of generated tokens (`max_gen_toks`).
const MAX_GEN_TOKS: usize = 256;

impl TaskConfig {
    /// Reads the task at `path`, following `include` (a base YAML beside it, whose keys the
    /// task's own override).
    pub fn read(path: &Path) -> Result<Self> {
        let mut files = Vec::new();
        let map = read_with_includes(path, 0, &mut files)?;
        Self::from_mapping(path, files, map)
    }

    fn from_mapping(path: &Path, files: Vec<PathBuf>, mut map: Mapping) -> Result<Self> {
        let name = path.display().to_string();
        let err = |key: &str, what: String| Error::Data(format!("{name}: `{key}`: {what}"));
        // Tags first: lm-eval calls `!function` values as Python, which ethos cannot.
        for (k, v) in &map {
            if let Value::Tagged(t) = v {
                let key = key_name(k);
                bail!(
                    Data,
                    "{name}: `{key}` is `{} {}`, Python that lm-eval imports; ethos runs tasks \
                     written in YAML and Jinja only (write the field as a template)",
                    t.tag,
                    scalar_text(&t.value)
                );
            }
        }
        let mut take = |key: &str| map.remove(key);
        let string = |key: &str, v: Option<Value>| -> Result<Option<String>> {
            match v {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s)),
                Some(Value::Number(n)) => Ok(Some(n.to_string())),
                Some(Value::Bool(b)) => Ok(Some(if b { "True" } else { "False" }.into())),
                Some(other) => Err(err(key, format!("wants a string, got {}", kind(&other)))),
            }
        };
        let task = string("task", take("task"))?
            .ok_or_else(|| Error::Data(format!("{name}: no `task` name")))?;
        let dataset_path = string("dataset_path", take("dataset_path"))?;
        let dataset_kwargs = take("dataset_kwargs");
        let base = path.parent().unwrap_or(Path::new("."));
        let data = data_files(&name, base, dataset_path, dataset_kwargs)?;
        let output_type = match string("output_type", take("output_type"))?.as_deref() {
            Some("multiple_choice") => OutputType::MultipleChoice,
            Some("generate_until") | None => OutputType::GenerateUntil,
            Some(other) => {
                return Err(err(
                    "output_type",
                    format!("`{other}` is not supported (multiple_choice, generate_until)"),
                ))
            }
        };
        let doc_to = |key: &str, v: Option<Value>| -> Result<Option<DocTo>> {
            match v {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(DocTo::Text(s))),
                Some(Value::Number(n)) if n.is_i64() => {
                    Ok(Some(DocTo::Index(n.as_i64().unwrap_or(0))))
                }
                Some(Value::Sequence(s)) => Ok(Some(DocTo::List(s))),
                Some(Value::Mapping(m)) => {
                    Ok(Some(DocTo::List(m.into_iter().map(|(_, v)| v).collect())))
                }
                Some(other) => Err(err(
                    key,
                    format!(
                        "wants a field name, a template or a list, got {}",
                        kind(&other)
                    ),
                )),
            }
        };
        let doc_to_text = doc_to("doc_to_text", take("doc_to_text"))?
            .ok_or_else(|| Error::Data(format!("{name}: no `doc_to_text`")))?;
        let doc_to_target = doc_to("doc_to_target", take("doc_to_target"))?
            .ok_or_else(|| Error::Data(format!("{name}: no `doc_to_target`")))?;
        let doc_to_choice = doc_to("doc_to_choice", take("doc_to_choice"))?;
        if output_type == OutputType::MultipleChoice && doc_to_choice.is_none() {
            return Err(err(
                "doc_to_choice",
                "a multiple_choice task needs its choices".into(),
            ));
        }
        let description = string("description", take("description"))?.unwrap_or_default();
        let gen_prefix = string("gen_prefix", take("gen_prefix"))?;
        let target_delimiter =
            string("target_delimiter", take("target_delimiter"))?.unwrap_or_else(|| " ".into());
        let fewshot_delimiter = string("fewshot_delimiter", take("fewshot_delimiter"))?
            .unwrap_or_else(|| "\n\n".into());
        let num_fewshot = match take("num_fewshot") {
            None | Some(Value::Null) => 0,
            Some(Value::Number(n)) if n.as_u64().is_some() => n.as_u64().unwrap_or(0) as usize,
            Some(other) => {
                return Err(err(
                    "num_fewshot",
                    format!("wants a count, got {}", kind(&other)),
                ))
            }
        };
        let sampler = match take("fewshot_config") {
            None | Some(Value::Null) => Sampler::Random,
            Some(Value::Mapping(m)) => {
                let mut sampler = Sampler::Random;
                for (k, v) in m {
                    match (key_name(&k).as_str(), &v) {
                        ("sampler", Value::String(s)) if s == "default" => {
                            sampler = Sampler::Random
                        }
                        ("sampler", Value::String(s)) if s == "first_n" => {
                            sampler = Sampler::FirstN
                        }
                        (key, _) => {
                            return Err(err(
                                &format!("fewshot_config.{key}"),
                                format!(
                                    "`{}` is not supported (sampler: default or first_n)",
                                    scalar_text(&v)
                                ),
                            ))
                        }
                    }
                }
                sampler
            }
            Some(other) => {
                return Err(err(
                    "fewshot_config",
                    format!("wants a mapping, got {}", kind(&other)),
                ))
            }
        };
        let (until, max_gen_toks) = generation_kwargs(&name, take("generation_kwargs"))?;
        let filter = filter_list(&name, take("filter_list"))?;
        let (acc, acc_norm, exact_match) = metric_list(&name, take("metric_list"), output_type)?;
        let repeats = take("repeats");
        if !matches!(repeats, None | Some(Value::Null)) && repeats != Some(Value::Number(1.into()))
        {
            return Err(err(
                "repeats",
                "only 1 is supported (ethos generates greedily)".into(),
            ));
        }
        let test_split = string("test_split", take("test_split"))?;
        let validation_split = string("validation_split", take("validation_split"))?;
        let training_split = string("training_split", take("training_split"))?;
        let fewshot_split = string("fewshot_split", take("fewshot_split"))?;
        for key in DESCRIPTIVE {
            take(key);
        }
        if let Some((k, _)) = map.into_iter().next() {
            bail!(
                Data,
                "{name}: key `{}` is not supported by ethos (it would change what lm-eval runs; see the README's \"your own benchmark\")",
                key_name(&k)
            );
        }
        if test_split.is_none() && validation_split.is_none() {
            bail!(
                Data,
                "{name}: neither `test_split` nor `validation_split`: which split holds the items?"
            );
        }
        Ok(Self {
            path: path.to_path_buf(),
            files,
            task,
            data,
            test_split,
            validation_split,
            training_split,
            fewshot_split,
            output_type,
            doc_to_text,
            doc_to_target,
            doc_to_choice,
            description,
            gen_prefix,
            target_delimiter,
            fewshot_delimiter,
            num_fewshot,
            sampler,
            until,
            max_gen_toks,
            filter,
            acc,
            acc_norm,
            exact_match,
        })
    }

    /// An error unless `split` (named by `key`) has data files: only the splits a run reads
    /// need them, as in lm-eval.
    pub fn check_split(&self, key: &str, split: &str) -> Result<()> {
        if self.data.splits.iter().any(|(n, _)| n == split) {
            return Ok(());
        }
        bail!(
            Data,
            "{}: `{key}`: split `{split}` has no data files (dataset_kwargs.data_files names {})",
            self.path.display(),
            self.data
                .splits
                .iter()
                .map(|(n, _)| n.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )
    }

    /// The split whose documents are the items: `test_split`, else `validation_split`.
    pub fn eval_split(&self) -> &str {
        self.test_split
            .as_deref()
            .or(self.validation_split.as_deref())
            .unwrap_or_default()
    }

    /// The key that names `eval_split`.
    pub fn eval_split_key(&self) -> &'static str {
        if self.test_split.is_some() {
            "test_split"
        } else {
            "validation_split"
        }
    }

    /// The key that names `fewshot_source`.
    pub fn fewshot_source_key(&self) -> &'static str {
        match (
            &self.fewshot_split,
            &self.training_split,
            &self.validation_split,
        ) {
            (Some(_), _, _) => "fewshot_split",
            (None, Some(_), _) => "training_split",
            (None, None, Some(_)) => "validation_split",
            _ => "test_split",
        }
    }

    /// The split few-shot examples come from, as lm-eval picks it: `fewshot_split`, else the
    /// training, validation or test split, the first the task has.
    pub fn fewshot_source(&self) -> &str {
        self.fewshot_split
            .as_deref()
            .or(self.training_split.as_deref())
            .or(self.validation_split.as_deref())
            .or(self.test_split.as_deref())
            .unwrap_or_default()
    }
}

/// The YAML at `path` as a mapping, with its `include` (relative to its folder) merged under
/// it; every file read is added to `files`.
fn read_with_includes(path: &Path, depth: usize, files: &mut Vec<PathBuf>) -> Result<Mapping> {
    if depth > 8 {
        bail!(Data, "{}: `include` nests more than 8 deep", path.display());
    }
    let text =
        std::fs::read_to_string(path).map_err(|e| Error::io(path, "cannot read the task", e))?;
    let value: Value = serde_yaml_ng::from_str(&text)
        .map_err(|e| Error::Data(format!("{}: not YAML: {e}", path.display())))?;
    files.push(path.to_path_buf());
    let Value::Mapping(mut map) = value else {
        bail!(Data, "{}: a task is a YAML mapping of keys", path.display());
    };
    let Some(include) = map.remove("include") else {
        return Ok(map);
    };
    let Value::String(include) = include else {
        bail!(Data, "{}: `include` wants a file name", path.display());
    };
    let base_path = path.parent().unwrap_or(Path::new(".")).join(&include);
    let mut merged = read_with_includes(&base_path, depth + 1, files)?;
    for (k, v) in map {
        merged.insert(k, v);
    }
    Ok(merged)
}

/// `dataset_path` (a builder: `json`, `csv`; or a local file) and `dataset_kwargs`
/// (`data_files`: one file, a list, or files per split; `field` for JSON). Relative paths are
/// taken from the task's folder.
fn data_files(
    name: &str,
    base: &Path,
    dataset_path: Option<String>,
    kwargs: Option<Value>,
) -> Result<DataFiles> {
    let Some(dataset_path) = dataset_path else {
        bail!(Data, "{name}: no `dataset_path` (ethos reads local data: `dataset_path: json` or `csv` with `dataset_kwargs: {{data_files: ...}}`)");
    };
    let local = |p: &str| -> PathBuf {
        let p = Path::new(p);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            base.join(p)
        }
    };
    let builder_of = |p: &str| -> Option<&'static str> {
        let lower = p.to_ascii_lowercase();
        if lower.ends_with(".jsonl") || lower.ends_with(".json") {
            Some("json")
        } else if lower.ends_with(".csv") {
            Some("csv")
        } else if lower.ends_with(".parquet") {
            Some("parquet")
        } else {
            None
        }
    };
    let mut kwargs = match kwargs {
        None | Some(Value::Null) => Mapping::new(),
        Some(Value::Mapping(m)) => m,
        Some(other) => bail!(
            Data,
            "{name}: `dataset_kwargs` wants a mapping, got {}",
            kind(&other)
        ),
    };
    let files = |v: &Value| -> Result<Vec<PathBuf>> {
        match v {
            Value::String(s) => Ok(vec![local(s)]),
            Value::Sequence(list) => list
                .iter()
                .map(|x| match x {
                    Value::String(s) => Ok(local(s)),
                    other => Err(Error::Data(format!(
                        "{name}: `dataset_kwargs.data_files` lists {}, not a file name",
                        kind(other)
                    ))),
                })
                .collect(),
            other => Err(Error::Data(format!(
                "{name}: `dataset_kwargs.data_files` wants file names, got {}",
                kind(other)
            ))),
        }
    };
    let (builder, splits) = match (dataset_path.as_str(), kwargs.remove("data_files")) {
        ("json" | "csv" | "parquet", Some(Value::Mapping(per_split))) => {
            let mut splits = Vec::new();
            for (k, v) in &per_split {
                splits.push((key_name(k), files(v)?));
            }
            (dataset_path.clone(), splits)
        }
        // One file or a list: the `train` split, as `datasets.load_dataset` names it.
        ("json" | "csv" | "parquet", Some(v)) => (dataset_path.clone(), vec![("train".to_string(), files(&v)?)]),
        ("json" | "csv" | "parquet", None) => bail!(Data, "{name}: `dataset_path: {dataset_path}` needs `dataset_kwargs.data_files`"),
        ("arrow" | "text" | "pandas", _) => bail!(
            Data,
            "{name}: `dataset_path: {dataset_path}`: ethos reads json (JSON or JSON Lines), csv and parquet data; convert the files to one of those"
        ),
        (p, None) if builder_of(p).is_some() && local(p).is_file() => (
            builder_of(p).unwrap_or_default().to_string(),
            vec![("train".to_string(), vec![local(p)])],
        ),
        (p, _) => bail!(
            Data,
            "{name}: `dataset_path: {p}` is not local data (ethos does not download datasets): use `dataset_path: json`, `csv` or `parquet` with `dataset_kwargs: {{data_files: {{test: FILE}}}}`"
        ),
    };
    let field = match kwargs.remove("field") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s),
        Some(other) => bail!(
            Data,
            "{name}: `dataset_kwargs.field` wants a key, got {}",
            kind(&other)
        ),
    };
    if let Some((k, _)) = kwargs.into_iter().next() {
        bail!(
            Data,
            "{name}: key `dataset_kwargs.{}` is not supported by ethos (data_files, field)",
            key_name(&k)
        );
    }
    Ok(DataFiles {
        builder,
        splits,
        field,
    })
}

fn generation_kwargs(name: &str, v: Option<Value>) -> Result<(Option<Vec<String>>, usize)> {
    let map = match v {
        None | Some(Value::Null) => return Ok((None, MAX_GEN_TOKS)),
        Some(Value::Mapping(m)) => m,
        Some(other) => bail!(
            Data,
            "{name}: `generation_kwargs` wants a mapping, got {}",
            kind(&other)
        ),
    };
    let (mut until, mut max) = (None, MAX_GEN_TOKS);
    for (k, v) in map {
        let key = key_name(&k);
        match (key.as_str(), v) {
            ("until", Value::String(s)) => until = Some(vec![s]),
            ("until", Value::Sequence(list)) => {
                let mut stops = Vec::new();
                for s in list {
                    match s {
                        Value::String(s) => stops.push(s),
                        other => bail!(Data, "{name}: `generation_kwargs.until` lists {}, not a string", kind(&other)),
                    }
                }
                until = Some(stops);
            }
            ("max_gen_toks", Value::Number(n)) if n.as_u64().is_some_and(|n| n > 0) => {
                max = n.as_u64().unwrap_or(1) as usize
            }
            ("do_sample", Value::Bool(false)) => {}
            ("temperature", Value::Number(n)) if n.as_f64() == Some(0.0) => {}
            (key, v) => bail!(
                Data,
                "{name}: `generation_kwargs.{key}: {}` is not supported (ethos generates greedily: until, max_gen_toks, do_sample: false, temperature: 0)",
                scalar_text(&v)
            ),
        }
    }
    Ok((until, max))
}

fn filter_list(name: &str, v: Option<Value>) -> Result<Vec<FilterStep>> {
    let list = match v {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Sequence(l)) => l,
        Some(other) => bail!(
            Data,
            "{name}: `filter_list` wants a list, got {}",
            kind(&other)
        ),
    };
    if list.len() > 1 {
        bail!(
            Data,
            "{name}: `filter_list` has {} pipelines; ethos scores one",
            list.len()
        );
    }
    let Some(Value::Mapping(pipeline)) = list.into_iter().next() else {
        return Ok(Vec::new());
    };
    let mut steps = Vec::new();
    for (k, v) in pipeline {
        match (key_name(&k).as_str(), v) {
            ("name", _) => {}
            ("filter", Value::Sequence(fs)) => {
                for f in fs {
                    let Value::Mapping(mut f) = f else {
                        bail!(
                            Data,
                            "{name}: `filter_list.filter` lists {}, not a mapping",
                            kind(&f)
                        );
                    };
                    let function = match f.remove("function") {
                        Some(Value::String(s)) => s,
                        _ => bail!(
                            Data,
                            "{name}: a `filter_list.filter` step has no `function`"
                        ),
                    };
                    let text = |f: &mut Mapping, key: &str| -> Option<String> {
                        match f.remove(key) {
                            Some(Value::String(s)) => Some(s),
                            _ => None,
                        }
                    };
                    let step = match function.as_str() {
                        "regex" => FilterStep::Regex {
                            pattern: text(&mut f, "regex_pattern")
                                .unwrap_or_else(|| r"#### (\-?[0-9\.\,]+)".into()),
                            group_select: match f.remove("group_select") {
                                Some(Value::Number(n)) => n.as_i64().unwrap_or(0),
                                _ => 0,
                            },
                            fallback: text(&mut f, "fallback").unwrap_or_else(|| "[invalid]".into()),
                        },
                        "take_first" => FilterStep::TakeFirst,
                        "lowercase" => FilterStep::Lowercase,
                        "uppercase" => FilterStep::Uppercase,
                        "remove_whitespace" => FilterStep::RemoveWhitespace,
                        other => bail!(Data, "{name}: filter function `{other}` is not supported (regex, take_first, lowercase, uppercase, remove_whitespace)"),
                    };
                    if let Some((k, _)) = f.into_iter().next() {
                        bail!(
                            Data,
                            "{name}: filter `{function}`: key `{}` is not supported",
                            key_name(&k)
                        );
                    }
                    steps.push(step);
                }
            }
            (key, _) => bail!(
                Data,
                "{name}: key `filter_list.{key}` is not supported (name, filter)"
            ),
        }
    }
    Ok(steps)
}

fn metric_list(
    name: &str,
    v: Option<Value>,
    output: OutputType,
) -> Result<(bool, bool, Option<ExactMatch>)> {
    let list = match v {
        // lm-eval's defaults: acc (and acc_norm) for choices, exact_match for generation.
        None | Some(Value::Null) => {
            return Ok(match output {
                OutputType::MultipleChoice => (true, true, None),
                OutputType::GenerateUntil => (false, false, Some(ExactMatch::default())),
            })
        }
        Some(Value::Sequence(l)) => l,
        Some(other) => bail!(
            Data,
            "{name}: `metric_list` wants a list, got {}",
            kind(&other)
        ),
    };
    let (mut acc, mut acc_norm, mut em) = (false, false, None);
    for m in list {
        let Value::Mapping(mut m) = m else {
            bail!(
                Data,
                "{name}: `metric_list` lists {}, not a mapping",
                kind(&m)
            );
        };
        let metric = match m.remove("metric") {
            Some(Value::String(s)) => s,
            Some(Value::Tagged(_)) => bail!(
                Data,
                "{name}: `metric_list.metric` is a `!function`, Python that lm-eval imports"
            ),
            _ => bail!(Data, "{name}: a `metric_list` entry has no `metric`"),
        };
        let flag = |m: &mut Mapping, key: &str| matches!(m.remove(key), Some(Value::Bool(true)));
        match (metric.as_str(), output) {
            ("acc", OutputType::MultipleChoice) => acc = true,
            ("acc_norm", OutputType::MultipleChoice) => acc_norm = true,
            ("exact_match", OutputType::GenerateUntil) => {
                let mut e = ExactMatch {
                    ignore_case: flag(&mut m, "ignore_case"),
                    ignore_punctuation: flag(&mut m, "ignore_punctuation"),
                    ignore_numbers: flag(&mut m, "ignore_numbers"),
                    regexes_to_ignore: Vec::new(),
                };
                if let Some(Value::Sequence(rs)) = m.remove("regexes_to_ignore") {
                    for r in rs {
                        if let Value::String(s) = r {
                            regex::Regex::new(&s).map_err(|e| {
                                Error::Data(format!("{name}: `regexes_to_ignore`: {s}: {e}"))
                            })?;
                            e.regexes_to_ignore.push(s);
                        }
                    }
                }
                em = Some(e);
            }
            (other, _) => bail!(
                Data,
                "{name}: metric `{other}` is not supported for {} (acc, acc_norm for multiple_choice; exact_match for generate_until)",
                match output {
                    OutputType::MultipleChoice => "multiple_choice",
                    OutputType::GenerateUntil => "generate_until",
                }
            ),
        }
        for (k, v) in m {
            match (key_name(&k).as_str(), &v) {
                ("aggregation", Value::String(s)) if s == "mean" => {}
                ("higher_is_better", Value::Bool(true)) => {}
                (key, _) => bail!(Data, "{name}: metric `{metric}`: `{key}: {}` is not supported (aggregation: mean, higher_is_better: true)", scalar_text(&v)),
            }
        }
    }
    Ok((acc, acc_norm, em))
}

fn key_name(k: &Value) -> String {
    scalar_text(k)
}

fn scalar_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Null => "null".into(),
        Value::Tagged(t) => format!("{} {}", t.tag, scalar_text(&t.value)),
        other => kind(other).to_string(),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}
