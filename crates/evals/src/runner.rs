//! The runner: turns (item, condition, format) tasks into prompts, scores them in batches
//! with the context computed once per prompt (ethos-model's prefix-reusing `score`) or
//! generates greedily, judges, and appends every judgement to the run folder as it goes.

use crate::backend::{Backend, GenerationJob, LocalBackend};
use crate::benchmark::{Answer, Ask, Benchmark, Prompt};
use crate::encoding::Encoded;
use crate::error::{bail, Error, Result, ResultExt};
use crate::log::{ItemRecord, RunIdentity, RunLog};
use crate::results::{self, Results};
use ethos_model::scoring::ScoreRequest;
use ethos_steer::Session;
use indicatif::{ProgressBar, ProgressStyle};
use std::path::PathBuf;
use std::time::Instant;

#[derive(Clone, Debug)]
pub struct RunOptions {
    pub conditions: Vec<String>,
    pub formats: Vec<String>,
    /// Only the first N items (in file order).
    pub limit: Option<usize>,
    /// Seeds the bootstrap intervals.
    pub seed: u64,
    pub output: PathBuf,
    /// Prompts whose contexts run in one batch.
    pub batch: usize,
    pub progress: bool,
    /// What steers the run (recorded in run.json and results.json): the session's steering.
    pub steering: Option<serde_json::Value>,
}

struct Task {
    item: usize,
    condition: String,
    format: String,
}

/// Checks the conditions and formats asked for against the benchmark.
pub fn check_selection(bench: &dyn Benchmark, opts: &RunOptions) -> Result<()> {
    for c in &opts.conditions {
        if !bench.conditions().contains(&c.as_str()) {
            bail!(
                Selection,
                "unknown condition `{c}` for {} ({})",
                bench.name(),
                bench.conditions().join(", ")
            );
        }
    }
    for f in &opts.formats {
        bench.check_format(f)?;
    }
    if opts.formats.is_empty() || opts.conditions.is_empty() {
        bail!(
            Selection,
            "nothing to run: no format or no condition selected"
        );
    }
    Ok(())
}

/// Tasks encoded and sorted by prompt length at a time: sorted, a batch's prompts are padded
/// far less than in the selection's order. The window bounds what is held encoded at once.
const SORT_WINDOW: usize = 2048;

/// A task with its prompts and their encodings.
type Prepared<'t> = (&'t Task, Vec<Prompt>, Vec<Encoded>);

/// Encodes every prompt of `window` (checking it fits the context), sorted by condition and
/// format (whose prompts share their instructions, run once per batch), then by length, so
/// that each batch pads its prompts little (stable: ties keep the selection's order).
fn prepare_window<'t>(
    backend: &dyn Backend,
    bench: &dyn Benchmark,
    window: &[&'t Task],
    chat_available: bool,
) -> Result<Vec<Prepared<'t>>> {
    let max_positions = backend.max_positions();
    let mut prepared = Vec::with_capacity(window.len());
    let all: Vec<(&Task, Vec<Prompt>)> = window
        .iter()
        .map(|&t| {
            Ok((
                t,
                bench.prompts(t.item, &t.condition, &t.format, chat_available)?,
            ))
        })
        .collect::<Result<_>>()?;
    let flat: Vec<&Prompt> = all.iter().flat_map(|(_, ps)| ps).collect();
    let mut encoded = backend.encode_many(&flat).into_iter();
    for (t, prompts) in all {
        let id = bench.item_id(t.item);
        let mut e = Vec::with_capacity(prompts.len());
        for _ in &prompts {
            let enc = encoded
                .next()
                .ok_or_else(|| Error::Internal("fewer encodings than prompts".into()))?
                .context(|| {
                    format!("{} item {id} ({}, {})", bench.name(), t.condition, t.format)
                })?;
            let longest = enc.continuations.iter().map(Vec::len).max().unwrap_or(0);
            let need = enc.context.len() + longest.max(enc.max_tokens);
            if need > max_positions {
                bail!(
                    Limit,
                    "{} item {id}: the prompt needs {need} positions, over the context length {max_positions}",
                    bench.name()
                );
            }
            e.push(enc);
        }
        prepared.push((t, prompts, e));
    }
    prepared.sort_by_cached_key(|(t, _, e): &Prepared| {
        let longest = e.iter().map(|x| x.context.len()).max().unwrap_or(0);
        (t.condition.clone(), t.format.clone(), longest)
    });
    Ok(prepared)
}

/// Adds to each option's log-prob before judging: a palette's lambda . r(prompt, option), so
/// that options are ranked by log p_lambda (the prompt's normaliser is the same for all of
/// them).
pub trait OptionTilt {
    fn bonus(&mut self, prompt: &str, options: &[String]) -> Result<Vec<f64>>;
}

/// Runs `bench` through `session` (whose steering, described by `opts.steering`, acts on
/// every forward pass), resuming from `opts.output` when it holds this run's items, and
/// writes `results.json` there. Returns the results.
pub fn run(
    session: &mut Session<'_>,
    bench: &dyn Benchmark,
    dataset_sha256: &str,
    opts: &RunOptions,
) -> Result<Results> {
    run_tilted(session, bench, dataset_sha256, opts, None)
}

/// `run`, with option log-probs tilted by `tilt` (see `OptionTilt`).
pub fn run_tilted(
    session: &mut Session<'_>,
    bench: &dyn Benchmark,
    dataset_sha256: &str,
    opts: &RunOptions,
    tilt: Option<&mut dyn OptionTilt>,
) -> Result<Results> {
    let mut backend = LocalBackend::new(session, opts.batch);
    run_on(&mut backend, bench, dataset_sha256, opts, tilt)
}

/// `run_tilted` on any backend: a local session or a server.
pub fn run_on(
    backend: &mut dyn Backend,
    bench: &dyn Benchmark,
    dataset_sha256: &str,
    opts: &RunOptions,
    mut tilt: Option<&mut dyn OptionTilt>,
) -> Result<Results> {
    check_selection(bench, opts)?;
    let started = Instant::now();
    let identity = RunIdentity {
        steering: opts.steering.clone(),
        benchmark: bench.name().to_string(),
        model: backend.identity()?,
        dataset_sha256: dataset_sha256.to_string(),
    };
    let mut log = RunLog::open(&opts.output, &identity)?;
    let ids: std::collections::HashSet<String> =
        (0..bench.item_count()).map(|i| bench.item_id(i)).collect();
    log.refuse_unknown(|r| ids.contains(&r.id), bench.name())?;
    let n_items = opts.limit.unwrap_or(usize::MAX).min(bench.item_count());
    let mut selected = Vec::new();
    for item in 0..n_items {
        for condition in &opts.conditions {
            for format in &opts.formats {
                if bench.applies(item, condition, format) {
                    selected.push(Task {
                        item,
                        condition: condition.clone(),
                        format: format.clone(),
                    });
                }
            }
        }
    }
    let pending: Vec<&Task> = selected
        .iter()
        .filter(|t| {
            !log.records.contains_key(&(
                bench.item_id(t.item),
                t.condition.clone(),
                t.format.clone(),
            ))
        })
        .collect();
    let bar = if opts.progress {
        let b = ProgressBar::new(selected.len() as u64);
        b.set_style(
            ProgressStyle::with_template("{bar:30} {pos}/{len} items  {per_sec}  ETA {eta}  {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        b.set_position((selected.len() - pending.len()) as u64);
        b.reset_eta();
        b
    } else {
        ProgressBar::hidden()
    };
    let chat_available = backend.chat_available();
    let mut tokens = 0usize;
    let work_started = Instant::now();
    for window in pending.chunks(SORT_WINDOW) {
        let prepared = prepare_window(&*backend, bench, window, chat_available)?;
        for part in prepared.chunks(opts.batch.max(1) * 4) {
            let requests: Vec<ScoreRequest> = part
                .iter()
                .flat_map(|p| &p.2)
                .filter(|e| !e.continuations.is_empty())
                .map(|e| ScoreRequest {
                    context: e.context.clone(),
                    continuations: e.continuations.clone(),
                })
                .collect();
            let generations: Vec<GenerationJob> = part
                .iter()
                .flat_map(|p| p.1.iter().zip(&p.2))
                .filter(|(_, e)| e.continuations.is_empty())
                .map(|(p, e)| GenerationJob {
                    context: e.context.clone(),
                    max_tokens: e.max_tokens,
                    stop: match &p.ask {
                        Ask::Generate { stop, .. } => stop.clone(),
                        Ask::Choose { .. } => Vec::new(),
                    },
                })
                .collect();
            let mut scored = backend.score(&requests)?.into_iter();
            let mut generated = backend.generate_greedy(&generations)?.into_iter();
            let mut records = Vec::with_capacity(part.len());
            for (t, prompts, encs) in part {
                let mut answers = Vec::with_capacity(encs.len());
                for (e, p) in encs.iter().zip(prompts) {
                    tokens += e.context.len();
                    if e.continuations.is_empty() {
                        let (text, n) = generated.next().ok_or_else(|| {
                            Error::Internal(
                                "generation returned fewer results than requests".into(),
                            )
                        })?;
                        tokens += n;
                        answers.push(Answer::Text(text));
                    } else {
                        let s = scored.next().ok_or_else(|| {
                            Error::Internal("scoring returned fewer results than requests".into())
                        })?;
                        tokens += s.iter().map(|c| c.tokens).sum::<usize>();
                        let mut lps: Vec<f64> = s.iter().map(|c| c.logprob).collect();
                        if let (Some(t), Ask::Choose { options }) = (tilt.as_deref_mut(), &p.ask) {
                            for (lp, b) in lps.iter_mut().zip(t.bonus(&p.body, options)?) {
                                *lp += b;
                            }
                        }
                        answers.push(Answer::Options(lps));
                    }
                }
                let judgement = bench.judge(t.item, &t.condition, &t.format, prompts, &answers)?;
                records.push(ItemRecord {
                    id: bench.item_id(t.item),
                    condition: t.condition.clone(),
                    format: t.format.clone(),
                    judgement,
                    groups: bench.groups(t.item).into_iter().fold(
                        std::collections::BTreeMap::new(),
                        |mut m: std::collections::BTreeMap<String, Vec<String>>, (k, v)| {
                            m.entry(k.to_string()).or_default().push(v);
                            m
                        },
                    ),
                });
            }
            log.append(records)?;
            bar.inc(part.len() as u64);
            if let Some(note) = backend.progress_note() {
                bar.set_message(note);
            }
        }
    }
    bar.finish_and_clear();
    let work_seconds = work_started.elapsed().as_secs_f64();
    let run = results::RunFacts {
        identity,
        seed: opts.seed,
        conditions: opts.conditions.clone(),
        formats: opts.formats.clone(),
        items: n_items,
        tasks: selected.len(),
        computed: pending.len(),
        resumed: selected.len() - pending.len(),
        wall_seconds: started.elapsed().as_secs_f64(),
        tokens,
        tokens_per_second: if work_seconds > 0.0 {
            tokens as f64 / work_seconds
        } else {
            0.0
        },
        reference: bench.reference(),
        has_gold: bench.has_gold(),
        paired: bench.paired_conditions(),
        consistency: bench
            .consistency_conditions()
            .iter()
            .filter(|c| opts.conditions.iter().any(|o| o == *c))
            .map(|c| c.to_string())
            .collect(),
        paired_ids: (0..n_items)
            .filter(|&i| bench.paired(i))
            .map(|i| bench.item_id(i))
            .collect(),
        traffic: backend.traffic(),
        macro_f1: bench.macro_f1(),
    };
    let keys: Vec<_> = selected
        .iter()
        .map(|t| (bench.item_id(t.item), t.condition.clone(), t.format.clone()))
        .collect();
    let records: Vec<&ItemRecord> = keys.iter().filter_map(|k| log.records.get(k)).collect();
    let res = results::compute(&run, &records);
    let path = log.dir.join("results.json");
    let json = serde_json::to_string_pretty(&res).map_err(Error::Serialize)?;
    std::fs::write(&path, json + "\n").map_err(|e| Error::io(&path, "cannot write", e))?;
    let page = log.dir.join("report.html");
    std::fs::write(&page, crate::report::html(&res, &records))
        .map_err(|e| Error::io(&page, "cannot write", e))?;
    Ok(res)
}
