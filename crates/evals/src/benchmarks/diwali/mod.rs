//! DIWALI (Sahoo, Brahma, Desarkar, EMNLP 2025): cultural text adaptation. The model
//! rewrites each GSM8K test problem for an Indian reader, with the authors' system prompt and
//! user template, greedily, answering a JSON list `[{"cultural_adapted_text",
//! "replaced_concepts"}]` between `<output>` tags; the replaced concepts are matched against a
//! list of culture-specific names (`matching`). Without a model, `--adaptations FILE` scores
//! outputs in the authors' format; `--items FILE` swaps the concept list (a Hong Kong list
//! for a Hong Kong adaptation).

pub mod inflect;
pub mod judge;
pub mod matching;
mod report;

use crate::backend::{Backend, LocalBackend};
use crate::benchmark::{Ask, Judgement, Prompt};
use crate::data::Source;
use crate::error::{bail, Error, Result};
use crate::log::{ItemRecord, RunIdentity, RunLog};
use ethos_steer::Session;
use indicatif::{ProgressBar, ProgressStyle};
use matching::{Concepts, MatchTotals};
use serde::Serialize;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::Instant;

const SYSTEM_PROMPT: &str = include_str!("../../../data/diwali/adaptation_system_prompt.txt");
/// The authors' user message; `{text}` is the problem (the vendored file ends in a newline
/// the authors' f-string does not have).
const USER_TEMPLATE: &str = include_str!("../../../data/diwali/adaptation_user_template.txt");
const PACKED_TEXTS: &[u8] = include_bytes!("../../../data/diwali/gsm8k_test.jsonl.zst");
/// The most bytes a packed or given text file may hold once unpacked.
const MAX_TEXT_BYTES: u64 = 64 << 20;
/// Where a run records its adaptations: one format and condition, as the run log keys them.
const CONDITION: &str = "english";
const FORMAT: &str = "adaptation";

/// The texts to adapt: GSM8K's test problems (built in) or the user's JSON lines with a
/// `question` field.
pub struct Texts {
    pub questions: Vec<String>,
    pub source: Source,
}

impl Texts {
    pub fn builtin() -> Result<Self> {
        let source = Source::embedded("diwali gsm8k_test.jsonl.zst", PACKED_TEXTS);
        let text = source.unpacked_text(MAX_TEXT_BYTES)?;
        Self::parse(source, &text)
    }

    /// JSON lines, each an object with a string `question` (GSM8K's `test.jsonl`).
    pub fn read(path: &Path) -> Result<Self> {
        let source = Source::read(path)?;
        let text = std::str::from_utf8(&source.bytes)
            .map_err(|e| Error::NotUtf8 {
                name: source.name.clone(),
                source: e,
            })?
            .to_string();
        Self::parse(source, &text)
    }

    fn parse(source: Source, text: &str) -> Result<Self> {
        let mut questions = Vec::new();
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let v: Value = serde_json::from_str(line).map_err(|err| Error::Json {
                at: format!("{}:{}", source.name, i + 1),
                err,
            })?;
            match v.get("question") {
                Some(Value::String(q)) => questions.push(q.clone()),
                _ => bail!(
                    Data,
                    "{}:{}: no string `question` (the texts to adapt are JSON lines {{\"question\": ...}}, as GSM8K's test.jsonl)",
                    source.name,
                    i + 1
                ),
            }
        }
        if questions.is_empty() {
            bail!(Data, "{}: no texts to adapt", source.name);
        }
        Ok(Texts { questions, source })
    }
}

/// How an adaptation is asked: a system prompt and a user message with `{text}` where the
/// text goes. The default is the authors' (adapt to Indian culture); a team adapting to
/// another culture gives its own (`--system-prompt`, `--user-template`).
#[derive(Clone, Debug)]
pub struct AdaptationPrompts {
    pub system: String,
    pub user_template: String,
}

impl Default for AdaptationPrompts {
    fn default() -> Self {
        AdaptationPrompts {
            system: SYSTEM_PROMPT.to_string(),
            user_template: USER_TEMPLATE
                .strip_suffix('\n')
                .unwrap_or(USER_TEMPLATE)
                .to_string(),
        }
    }
}

impl AdaptationPrompts {
    /// The authors' prompts with a user's system prompt and/or user template (files, read
    /// as written); the template must hold `{text}`.
    pub fn read(system: Option<&Path>, user_template: Option<&Path>) -> Result<Self> {
        let mut p = Self::default();
        let read = |path: &Path| -> Result<String> {
            let s = Source::read(path)?;
            String::from_utf8(s.bytes).map_err(|e| Error::NotUtf8 {
                name: s.name,
                source: e.utf8_error(),
            })
        };
        if let Some(path) = system {
            p.system = read(path)?;
        }
        if let Some(path) = user_template {
            p.user_template = read(path)?;
            if !p.user_template.contains("{text}") {
                bail!(
                    Data,
                    "{}: a user template needs `{{text}}` where the text to adapt goes",
                    path.display()
                );
            }
        }
        Ok(p)
    }

    /// The prompt that asks for one adaptation, through the model's chat template.
    pub fn prompt(&self, text: &str, max_tokens: usize) -> Prompt {
        Prompt {
            system: Some(self.system.clone()),
            body: self.user_template.replace("{text}", text),
            cue: String::new(),
            delimiter: String::new(),
            chat: true,
            history: Vec::new(),
            prefill: None,
            harness_split: false,
            ask: Ask::Generate {
                max_tokens,
                stop: Vec::new(),
            },
        }
    }

    fn is_default(&self) -> bool {
        let d = Self::default();
        self.system == d.system && self.user_template == d.user_template
    }
}

/// The authors' prompt for one adaptation.
pub fn adaptation_prompt(text: &str, max_tokens: usize) -> Prompt {
    AdaptationPrompts::default().prompt(text, max_tokens)
}

#[derive(Clone, Debug)]
pub struct DiwaliOptions {
    pub limit: Option<usize>,
    pub max_tokens: usize,
    pub prompts: AdaptationPrompts,
    pub output: PathBuf,
    pub batch: usize,
    pub progress: bool,
    /// What steers the run (recorded in run.json and results.json; `None`: unsteered).
    pub steering: Option<Value>,
}

#[derive(Serialize, Debug)]
pub struct ConceptList {
    pub source: String,
    pub sha256: String,
    pub names: usize,
    /// Names with capitals or punctuation: the authors' matcher never matches them exactly.
    pub never_exact: usize,
}

#[derive(Serialize, Debug)]
pub struct DiwaliResults {
    pub benchmark: &'static str,
    pub ethos_version: &'static str,
    /// The model that adapted the texts (absent where `--adaptations` gave its outputs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub steering: Option<Value>,
    /// The adaptations file scored (absent where this run made them).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub adaptations: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub texts: Option<Value>,
    pub concepts: ConceptList,
    /// Model outputs read (one per text adapted).
    pub outputs: usize,
    /// Outputs that gave no entry (not JSON, or JSON without an object): the authors skip
    /// them, so they are not sentences.
    pub unparsed_outputs: usize,
    /// Replies that stopped at `max_tokens` (this run's adaptations only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cut_at_max_tokens: Option<usize>,
    /// The authors' totals, under their names.
    pub dataset_statistics: MatchTotals,
    pub wall_seconds: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokens_per_second: Option<f64>,
    /// The LLM judge's scores, where the run was judged (`--judge`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub judge: Option<judge::JudgeResults>,
    /// The outputs scored, in order (for the judge).
    #[serde(skip)]
    pub scored_outputs: Vec<crate::pyjson::PyValue>,
    /// Each entry's matches (for `scores.json` and the page).
    #[serde(skip)]
    pub matched: matching::Matched,
}

/// Loads the concept list `--items` names, or the built-in one.
pub fn load_concepts(items: Option<&Path>) -> Result<Concepts> {
    match items {
        None => Concepts::builtin(),
        Some(p) => Concepts::from_source(Source::read(p)?),
    }
}

fn concept_list(c: &Concepts) -> ConceptList {
    ConceptList {
        source: c.source.name.clone(),
        sha256: c.source.sha256(),
        names: c.names.len(),
        never_exact: c.never_exact,
    }
}

/// Scores outputs in the authors' format (`--adaptations FILE`): no model runs.
pub fn score_adaptations(path: &Path, concepts: &Concepts, output: &Path) -> Result<DiwaliResults> {
    let started = Instant::now();
    let source = Source::read(path)?;
    let outputs = matching::read_adaptations(&source)?;
    let matched = matching::match_outputs(&outputs, concepts);
    let res = DiwaliResults {
        benchmark: "diwali",
        ethos_version: env!("CARGO_PKG_VERSION"),
        model: None,
        steering: None,
        adaptations: Some(json!({"source": source.name, "sha256": source.sha256()})),
        texts: None,
        concepts: concept_list(concepts),
        outputs: outputs.len(),
        unparsed_outputs: matched.unparsed.len(),
        cut_at_max_tokens: None,
        dataset_statistics: matched.totals.clone(),
        wall_seconds: started.elapsed().as_secs_f64(),
        tokens_per_second: None,
        judge: None,
        scored_outputs: outputs,
        matched,
    };
    write_results(output, &res)?;
    Ok(res)
}

/// Adapts the texts with a local session (whose steering acts on every pass).
pub fn run_diwali(
    session: &mut Session<'_>,
    texts: &Texts,
    concepts: &Concepts,
    opts: &DiwaliOptions,
) -> Result<DiwaliResults> {
    run_diwali_on(
        &mut LocalBackend::new(session, opts.batch),
        texts,
        concepts,
        opts,
    )
}

/// `run_diwali` on any backend: a local session or a server.
/// `texts` (the built-in GSM8K test set or `Texts::read`) are adapted; the replacements are
/// matched against `concepts` (`load_concepts`).
pub fn run_diwali_on(
    backend: &mut dyn Backend,
    texts: &Texts,
    concepts: &Concepts,
    opts: &DiwaliOptions,
) -> Result<DiwaliResults> {
    let started = Instant::now();
    if !backend.chat_available() {
        bail!(
            Selection,
            "diwali asks with the authors' system prompt through a chat template, and the model has none"
        );
    }
    let n = opts.limit.unwrap_or(usize::MAX).min(texts.questions.len());
    let identity = RunIdentity {
        steering: opts.steering.clone(),
        benchmark: "diwali".into(),
        model: backend.identity()?,
        // The run's items are the texts and how they are asked.
        dataset_sha256: crate::data::hex(&{
            use sha2::{Digest, Sha256};
            let mut h = Sha256::new();
            h.update(texts.source.sha256().as_bytes());
            h.update(opts.max_tokens.to_le_bytes());
            for part in [&opts.prompts.system, &opts.prompts.user_template] {
                h.update((part.len() as u64).to_le_bytes());
                h.update(part.as_bytes());
            }
            h.finalize()
        }),
    };
    let mut log = RunLog::open(&opts.output, &identity)?;
    log.refuse_unknown(
        |r| {
            r.id.parse::<usize>()
                .is_ok_and(|i| i < texts.questions.len())
        },
        "diwali",
    )?;
    let key = |i: usize| (i.to_string(), CONDITION.to_string(), FORMAT.to_string());
    let pending: Vec<usize> = (0..n)
        .filter(|&i| !log.records.contains_key(&key(i)))
        .collect();
    let bar = if opts.progress {
        let b = ProgressBar::new(n as u64);
        b.set_style(
            ProgressStyle::with_template("{bar:30} {pos}/{len} texts  {per_sec}  ETA {eta}  {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        b.set_position((n - pending.len()) as u64);
        b.reset_eta();
        b
    } else {
        ProgressBar::hidden()
    };
    let mut tokens = 0usize;
    let work_started = Instant::now();
    for part in pending.chunks(opts.batch.max(1)) {
        let prompts: Vec<Prompt> = part
            .iter()
            .map(|&i| opts.prompts.prompt(&texts.questions[i], opts.max_tokens))
            .collect();
        let replies = generate(backend, &prompts, opts.max_tokens, |k| {
            format!("{}: text {}", texts.source.name, part[k] + 1)
        })?;
        let records = part
            .iter()
            .zip(replies)
            .map(|(&i, (reply, prompt_tokens, n_tokens))| {
                tokens += prompt_tokens + n_tokens;
                let cut = if n_tokens >= opts.max_tokens {
                    "cut"
                } else {
                    "done"
                };
                generated_record(i, CONDITION, FORMAT, cut, reply)
            })
            .collect();
        log.append(records)?;
        bar.inc(part.len() as u64);
        if let Some(note) = backend.progress_note() {
            bar.set_message(note);
        }
    }
    bar.finish_and_clear();
    let work_seconds = work_started.elapsed().as_secs_f64();
    let recs: Vec<&ItemRecord> = (0..n).filter_map(|i| log.records.get(&key(i))).collect();
    let outputs: Vec<String> = recs
        .iter()
        .map(|r| matching::extract_output(r.judgement.generated.as_deref().unwrap_or_default()))
        .collect();
    let cut = recs
        .iter()
        .filter(|r| r.judgement.prediction == "cut")
        .count();
    let outputs_py: Vec<crate::pyjson::PyValue> = outputs
        .iter()
        .cloned()
        .map(crate::pyjson::PyValue::Str)
        .collect();
    let matched = matching::match_outputs(&outputs_py, concepts);
    let res = DiwaliResults {
        benchmark: "diwali",
        ethos_version: env!("CARGO_PKG_VERSION"),
        model: Some(identity.model.clone()),
        steering: opts.steering.clone(),
        adaptations: None,
        texts: Some(json!({
            "source": texts.source.name,
            "sha256": texts.source.sha256(),
            "adapted": n,
            "max_tokens": opts.max_tokens,
            "prompts": if opts.prompts.is_default() {
                json!("the authors'")
            } else {
                json!({
                    "system": opts.prompts.system,
                    "user_template": opts.prompts.user_template,
                })
            },
        })),
        concepts: concept_list(concepts),
        outputs: outputs.len(),
        unparsed_outputs: matched.unparsed.len(),
        cut_at_max_tokens: Some(cut),
        dataset_statistics: matched.totals.clone(),
        wall_seconds: started.elapsed().as_secs_f64(),
        tokens_per_second: Some(if work_seconds > 0.0 && !pending.is_empty() {
            tokens as f64 / work_seconds
        } else {
            0.0
        }),
        judge: None,
        scored_outputs: outputs_py,
        matched,
    };
    // The outputs in the authors' format, for their scripts or `--adaptations`.
    let path = log.dir.join("adaptations.json");
    let text = serde_json::to_string_pretty(&outputs).map_err(Error::Serialize)?;
    std::fs::write(&path, text + "\n").map_err(|e| Error::io(&path, "cannot write", e))?;
    write_results(&log.dir, &res)?;
    Ok(res)
}

/// Judges the outputs `res` scored against the texts they adapt (`OUTPUT/judge/`, resumable;
/// `judge.csv` in the authors' columns) and adds the judgement to `OUTPUT/results.json`.
pub fn add_judgement(
    res: &mut DiwaliResults,
    backend: &mut dyn Backend,
    template: &str,
    texts: &Texts,
    output: &Path,
    batch: usize,
    progress: bool,
) -> Result<()> {
    if res.scored_outputs.len() > texts.questions.len() {
        bail!(
            Data,
            "{} outputs but {} texts in {}: the judge pairs output i with text i",
            res.scored_outputs.len(),
            texts.questions.len(),
            texts.source.name
        );
    }
    let j = judge::judge(
        backend,
        template,
        &texts.questions,
        &res.scored_outputs,
        &output.join("judge"),
        batch,
        progress,
    )?;
    res.judge = Some(j);
    write_results(output, res)
}

/// Greedy replies to `prompts`, each up to `max_tokens`, with the prompt's and the reply's
/// length in tokens; `what(k)` names prompt `k` in the error for one too long for the model.
pub(crate) fn generate(
    backend: &mut dyn Backend,
    prompts: &[Prompt],
    max_tokens: usize,
    what: impl Fn(usize) -> String,
) -> Result<Vec<(String, usize, usize)>> {
    let mut jobs = Vec::with_capacity(prompts.len());
    for (k, p) in prompts.iter().enumerate() {
        let enc = backend.encode(p)?;
        if enc.context.len() + max_tokens > backend.max_positions() {
            bail!(
                Limit,
                "{}: {} prompt tokens + {max_tokens} to generate exceed the model's {} positions",
                what(k),
                enc.context.len(),
                backend.max_positions()
            );
        }
        jobs.push(crate::backend::GenerationJob {
            context: enc.context,
            max_tokens,
            stop: Vec::new(),
        });
    }
    let lengths: Vec<usize> = jobs.iter().map(|j| j.context.len()).collect();
    let replies = backend.generate_greedy(&jobs)?;
    if replies.len() != jobs.len() {
        bail!(
            Internal,
            "generation returned {} results for {} requests",
            replies.len(),
            jobs.len()
        );
    }
    Ok(replies
        .into_iter()
        .zip(lengths)
        .map(|((text, n), len)| (text, len, n))
        .collect())
}

/// A generated reply as a run-log line (what is scored is read from it when the run is
/// scored); `prediction` is a short note (`cut` at the token limit, `done`).
pub(crate) fn generated_record(
    i: usize,
    condition: &str,
    format: &str,
    prediction: &str,
    reply: String,
) -> ItemRecord {
    ItemRecord {
        id: i.to_string(),
        condition: condition.into(),
        format: format.into(),
        judgement: Judgement {
            prediction: prediction.into(),
            gold: String::new(),
            correct: false,
            correct_norm: None,
            option_logprobs: json!({}),
            generated: Some(reply),
            score: None,
        },
        groups: Default::default(),
    }
}

/// `results.json`, `scores.json` (each scored entry, with the index of its output) and
/// `report.html`.
fn write_results(dir: &Path, res: &DiwaliResults) -> Result<()> {
    let matched = &res.matched;
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::io(dir, "cannot create the output folder", e))?;
    let path = dir.join("results.json");
    let text = serde_json::to_string_pretty(res).map_err(Error::Serialize)?;
    std::fs::write(&path, text + "\n").map_err(|e| Error::io(&path, "cannot write", e))?;
    let scores: Vec<Value> = matched
        .entries
        .iter()
        .map(|(i, e)| {
            let mut v = serde_json::to_value(e).unwrap_or(Value::Null);
            v["output"] = json!(i);
            v
        })
        .collect();
    let path = dir.join("scores.json");
    let text = serde_json::to_string_pretty(&json!({
        "dataset_statistics": res.dataset_statistics,
        "unparsed_outputs": matched.unparsed,
        "detailed_scores": scores,
    }))
    .map_err(Error::Serialize)?;
    std::fs::write(&path, text + "\n").map_err(|e| Error::io(&path, "cannot write", e))?;
    let path = dir.join("report.html");
    std::fs::write(&path, report::html(res, matched))
        .map_err(|e| Error::io(&path, "cannot write", e))
}

/// The totals as a short table.
pub fn table(r: &DiwaliResults) -> String {
    let s = &r.dataset_statistics;
    let mut out = String::new();
    out.push_str(&format!(
        "DIWALI concept matching: {} outputs, {} did not parse; {} sentences, {} with replacements\n",
        r.outputs, r.unparsed_outputs, s.total_sentences, s.entries_with_replacements
    ));
    if let Some(cut) = r.cut_at_max_tokens.filter(|&c| c > 0) {
        out.push_str(&format!("  {cut} replies stopped at --max-tokens\n"));
    }
    out.push_str(&format!(
        "concepts: {} names from {}\n",
        r.concepts.names, r.concepts.source
    ));
    if r.concepts.never_exact > 0 {
        out.push_str(&format!(
            "  note: {} names hold capitals or punctuation; the authors' matcher compares normalised words with names as written, so these match only fuzzily\n",
            r.concepts.never_exact
        ));
    }
    out.push_str("step            matches  per sentence\n");
    for (name, total, avg) in [
        (
            "strict",
            s.total_strict_matches,
            s.average_strict_match_per_sentence,
        ),
        (
            "singular/plural",
            s.total_singular_plural_matches,
            s.average_singular_plural_match_per_sentence,
        ),
        (
            "fuzzy (>= 80)",
            s.total_fuzzy_matches,
            s.average_fuzzy_match_per_sentence,
        ),
    ] {
        out.push_str(&format!("{name:<15} {total:>7}  {avg:.4}\n"));
    }
    if let Some(j) = &r.judge {
        let skipped = j.skipped_no_text + j.skipped_unreadable;
        match (
            j.cultural_relevance,
            j.language_fluency,
            j.mathematical_integrity,
            j.average,
        ) {
            (Some(cr), Some(lf), Some(mi), Some(avg)) => {
                out.push_str(&format!(
                    "judge (0-5, {} judged, {skipped} skipped): cultural relevance {cr:.2}, language fluency {lf:.2}, mathematical integrity {mi:.2}, average {avg:.2}\n",
                    j.judged
                ));
                out.push_str(&format!(
                    "  scores the judge's reply gave: {} / {} / {} of {} (the rest keep the prompt example's 5, as the authors' parser reads it)\n",
                    j.from_reply[0], j.from_reply[1], j.from_reply[2], j.judged
                ));
            }
            _ => out.push_str(&format!(
                "judge: nothing to judge ({skipped} outputs skipped: no adapted text, or a reply without a readable score)\n"
            )),
        }
    }
    out
}

#[cfg(test)]
mod tests;
