//! The continuous batcher. One thread owns the model and runs every sequence: between decode
//! steps it takes new jobs from the queue (while the KV budget has room), prefills each
//! alone, and joins its rows to the running batch; each step is one batched forward over
//! every running row; rows that finish, or whose client went away, leave the batch and free
//! their cache slots. Each row keeps its own sampler (its own seed and penalties) and its own
//! control vectors (a per-row residual hook), so a request's tokens do not depend on who else
//! is served, to the batch invariance of the forward pass itself.

use crate::metrics::Metrics;
use ethos_model::hooks::ResidualHook;
use ethos_model::tokenizer::StreamDecoder;
use ethos_model::{gather_rows, KvCache, Model};
use ethos_steer::control::{ControlHook, ControlSet};
use ethos_steer::{FinishReason, GenerateOptions, Sampler, SamplingParams};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc as std_mpsc;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::mpsc;

/// Prompt tokens run per forward pass when their log-probs are asked for: the logits of a
/// chunk (tokens x vocabulary) are held at once.
const PROMPT_CHUNK: usize = 256;

/// The log-prob of one token at one position, its rank there (1 = the most likely) and the
/// most likely tokens with theirs.
#[derive(Clone, Debug, PartialEq)]
pub struct TokenLogprob {
    pub id: u32,
    pub logprob: f32,
    pub rank: usize,
    pub top: Vec<(u32, f32)>,
}

/// What a job reports, in order: its prompt's log-probs (when asked), then each choice's
/// tokens and its end.
#[derive(Debug)]
pub enum Event {
    /// Entry i is prompt token i's log-prob given the tokens before it (`None` for the first).
    Prompt(Vec<Option<TokenLogprob>>),
    /// A generated token, the text it made final (may be empty: text that could still start
    /// a stop string, or half a character, is held back) and its log-prob when asked for.
    Token {
        choice: usize,
        id: u32,
        text: String,
        logprob: Option<TokenLogprob>,
    },
    /// The end of a choice, with the held-back text that remains final.
    Done {
        choice: usize,
        finish: FinishReason,
        text: String,
    },
    /// The job failed; nothing more follows.
    Failed(String),
}

/// One prompt to run: `choices` rows are sampled from it, each with its own parameters.
pub struct Job {
    pub prompt: Vec<u32>,
    pub choices: Vec<SamplingParams>,
    pub limits: GenerateOptions,
    /// Top log-probs to report per generated token (`Some(0)`: the chosen token's alone).
    pub logprobs: Option<usize>,
    /// Top log-probs to report per prompt token.
    pub prompt_logprobs: Option<usize>,
    pub control: Option<Arc<ControlSet>>,
    /// Named adapters (index, scale) on this job's rows.
    pub adapters: Vec<(usize, f32)>,
    pub events: mpsc::UnboundedSender<Event>,
    pub submitted: Instant,
}

/// The job queue is full (`--max-queue`).
#[derive(Debug)]
pub struct QueueFull;

/// Submits jobs to the engine thread. The queue is bounded by `max_queue` waiting jobs.
#[derive(Clone)]
pub struct EngineHandle {
    tx: std_mpsc::Sender<Job>,
    waiting: Arc<AtomicUsize>,
    max_queue: usize,
}

impl EngineHandle {
    pub fn submit(&self, job: Job) -> Result<(), QueueFull> {
        let before = self.waiting.fetch_add(1, Ordering::SeqCst);
        if before >= self.max_queue {
            self.waiting.fetch_sub(1, Ordering::SeqCst);
            return Err(QueueFull);
        }
        self.tx.send(job).map_err(|_| {
            self.waiting.fetch_sub(1, Ordering::SeqCst);
            QueueFull
        })
    }
}

pub struct EngineConfig {
    /// Bytes the running batch's KV cache may hold.
    pub kv_budget: u64,
    pub max_queue: usize,
}

/// Starts the engine thread; it ends when every handle is dropped and its work is done.
pub fn spawn(
    model: Arc<Model>,
    config: EngineConfig,
    metrics: Arc<Metrics>,
) -> std::io::Result<EngineHandle> {
    let (tx, rx) = std_mpsc::channel();
    let waiting = Arc::new(AtomicUsize::new(0));
    let handle = EngineHandle {
        tx,
        waiting: waiting.clone(),
        max_queue: config.max_queue,
    };
    std::thread::Builder::new()
        .name("ethos-engine".into())
        .spawn(move || {
            let mut engine = Engine {
                model: &model,
                kv_budget: config.kv_budget,
                metrics,
                waiting,
                queue: VecDeque::new(),
                rows: Vec::new(),
                cache: None,
                steering: None,
            };
            engine.run(rx);
        })?;
    Ok(handle)
}

/// A sequence being decoded.
struct Row {
    events: mpsc::UnboundedSender<Event>,
    choice: usize,
    sampler: Sampler<'static>,
    /// The prompt and the tokens generated so far.
    context: Vec<u32>,
    generated: usize,
    limits: Arc<GenerateOptions>,
    hold: usize,
    stream: StreamDecoder,
    text: String,
    emitted: usize,
    logprobs: Option<usize>,
    control: Option<Arc<ControlSet>>,
    adapters: Vec<(usize, f32)>,
}

struct Engine<'m> {
    model: &'m Model,
    kv_budget: u64,
    metrics: Arc<Metrics>,
    waiting: Arc<AtomicUsize>,
    queue: VecDeque<Job>,
    /// The running rows, in the order of the cache's rows.
    rows: Vec<Row>,
    cache: Option<KvCache>,
    /// The per-row control vectors of the running rows, built on the first steered step and
    /// kept until the rows change (a join, a leave or a failure).
    steering: Option<ControlHook>,
}

impl Engine<'_> {
    fn run(&mut self, rx: std_mpsc::Receiver<Job>) {
        loop {
            if self.rows.is_empty() && self.queue.is_empty() {
                self.publish_gauges();
                release_freed_memory();
                match rx.recv() {
                    Ok(job) => self.queue.push_back(job),
                    Err(_) => return,
                }
            }
            while let Ok(job) = rx.try_recv() {
                self.queue.push_back(job);
            }
            self.admit();
            self.publish_gauges();
            if !self.rows.is_empty() {
                let t = Instant::now();
                let stepped =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.step()));
                match stepped {
                    Ok(Ok(())) => self
                        .metrics
                        .token_latency
                        .observe(t.elapsed().as_secs_f64()),
                    Ok(Err(e)) => self.fail_all(&e),
                    Err(_) => self.fail_all("internal error: the decode step panicked"),
                }
            }
        }
    }

    fn publish_gauges(&self) {
        self.metrics
            .queue_depth
            .set(self.waiting.load(Ordering::SeqCst) as i64);
        self.metrics.running.set(self.rows.len() as i64);
    }

    /// Bytes per cached token (all layers, one row).
    fn bytes_per_token(&self) -> u64 {
        let d = &self.model.decoder;
        d.kv_shape().bytes_per_token(d.dtype) as u64
    }

    /// The memory the batch would hold with `extra_rows` more rows whose prompts are
    /// `prompt` tokens and that may generate `max_tokens` each: its KV cache twice (a join
    /// or a leave builds the new cache while the old one is freed, and the allocator cannot
    /// always reuse the old one's blocks for the new, larger ones), each row's
    /// vocabulary-wide buffers (its logits, their copies for the sampler and for log-probs)
    /// and, with `prompt_logprobs`, the logits of a prompt chunk.
    fn bytes_with(
        &self,
        extra_rows: usize,
        prompt: usize,
        max_tokens: usize,
        prompt_logprobs: bool,
    ) -> u64 {
        let len = self
            .rows
            .iter()
            .map(|r| r.context.len())
            .chain([prompt])
            .max()
            .unwrap_or(0);
        let remaining = self
            .rows
            .iter()
            .map(|r| r.limits.max_tokens - r.generated)
            .chain([max_tokens])
            .max()
            .unwrap_or(0);
        let rows = (self.rows.len() + extra_rows) as u64;
        let kv = rows
            .saturating_mul((len + remaining) as u64)
            .saturating_mul(self.bytes_per_token());
        let vocab_row = 4 * self.model.config().vocab_size as u64;
        let chunk = if prompt_logprobs {
            2 * prompt.min(PROMPT_CHUNK) as u64 * vocab_row
        } else {
            0
        };
        kv.saturating_mul(2)
            .saturating_add(rows.saturating_mul(4 * vocab_row))
            .saturating_add(chunk)
    }

    /// Prefills queued jobs, in order, while the batch's cache stays within the budget.
    fn admit(&mut self) {
        while let Some(job) = self.queue.front() {
            if job.events.is_closed() {
                self.queue.pop_front();
                self.waiting.fetch_sub(1, Ordering::SeqCst);
                continue;
            }
            let need = self.bytes_with(
                job.choices.len(),
                job.prompt.len(),
                job.limits.max_tokens,
                job.prompt_logprobs.is_some(),
            );
            if need > self.kv_budget {
                if self.rows.is_empty() {
                    // Even alone it does not fit: it never will.
                    let job = self.queue.pop_front().expect("front exists");
                    self.waiting.fetch_sub(1, Ordering::SeqCst);
                    let _ = job.events.send(Event::Failed(format!(
                        "the request needs {} MiB of KV cache and buffers, more than the server's budget of {} MiB (--kv-memory); ask for fewer tokens or choices",
                        need >> 20,
                        self.kv_budget >> 20
                    )));
                    continue;
                }
                return;
            }
            let job = self.queue.pop_front().expect("front exists");
            self.waiting.fetch_sub(1, Ordering::SeqCst);
            let events = job.events.clone();
            let started =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.start(job)));
            match started {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    let _ = events.send(Event::Failed(e));
                }
                Err(_) => {
                    let _ =
                        events.send(Event::Failed("internal error: the prefill panicked".into()));
                }
            }
        }
    }

    /// Prefills `job`, reports its prompt log-probs, samples each choice's first token and
    /// joins the choices that go on to the batch.
    fn start(&mut self, job: Job) -> Result<(), String> {
        // Every row of the prefill is this job's: its adapters on all of them.
        let selection = (!job.adapters.is_empty())
            .then(|| ethos_model::lora::RowAdapters::Every(job.adapters.clone()));
        ethos_model::lora::with_row_adapters(selection, || self.prefill(job))
    }

    fn prefill(&mut self, job: Job) -> Result<(), String> {
        let model = self.model;
        let prompt = &job.prompt;
        let mut cache = model
            .decoder
            .new_cache(1, prompt.len())
            .map_err(|e| e.to_string())?;
        let mut hook = match &job.control {
            Some(set) => Some(set.hook(&model.decoder.device).map_err(|e| e.to_string())?),
            None => None,
        };
        let last = match job.prompt_logprobs {
            None => model
                .decoder
                .forward_last(
                    std::slice::from_ref(prompt),
                    &[(0..prompt.len() as i32).collect()],
                    &mut cache,
                    hook.as_mut().map(|h| h as &mut dyn ResidualHook),
                )
                .and_then(|l| l.rows())
                .map_err(|e| e.to_string())?
                .remove(0),
            Some(top) => {
                let mut entries = vec![None];
                let mut last = Vec::new();
                for start in (0..prompt.len()).step_by(PROMPT_CHUNK) {
                    let end = (start + PROMPT_CHUNK).min(prompt.len());
                    let rows = model
                        .decoder
                        .forward_all(
                            &[prompt[start..end].to_vec()],
                            &[(start as i32..end as i32).collect()],
                            &mut cache,
                            hook.as_mut().map(|h| h as &mut dyn ResidualHook),
                        )
                        .and_then(|l| l.single_row())
                        .map_err(|e| e.to_string())?;
                    for (i, row) in rows.iter().enumerate() {
                        if let Some(&next) = prompt.get(start + i + 1) {
                            entries.push(Some(token_logprob(row, next, top)));
                        }
                    }
                    last = rows.into_iter().last().unwrap_or_default();
                }
                let _ = job.events.send(Event::Prompt(entries));
                last
            }
        };
        self.metrics.prompt_tokens.inc_by(prompt.len() as u64);
        let limits = Arc::new(job.limits);
        if limits.max_tokens == 0 {
            for choice in 0..job.choices.len() {
                let _ = job.events.send(Event::Done {
                    choice,
                    finish: FinishReason::Length,
                    text: String::new(),
                });
            }
            return Ok(());
        }
        let hold = limits.stop.iter().map(String::len).max().unwrap_or(0);
        let mut joining = Vec::new();
        for (choice, params) in job.choices.into_iter().enumerate() {
            let mut row = Row {
                events: job.events.clone(),
                choice,
                sampler: Sampler::new(params),
                context: prompt.clone(),
                generated: 0,
                limits: limits.clone(),
                hold,
                stream: StreamDecoder::new(),
                text: String::new(),
                emitted: 0,
                logprobs: job.logprobs,
                control: job.control.clone(),
                adapters: job.adapters.clone(),
            };
            if !self.advance(&mut row, last.clone())? {
                joining.push(row);
            }
        }
        self.metrics
            .ttft
            .observe(job.submitted.elapsed().as_secs_f64());
        if joining.is_empty() {
            return Ok(());
        }
        let remaining = self
            .rows
            .iter()
            .chain(&joining)
            .map(|r| r.limits.max_tokens - r.generated)
            .max()
            .unwrap_or(0);
        let mut sources = Vec::new();
        let mut picks = Vec::new();
        if let Some(c) = self.cache.take() {
            picks.extend((0..self.rows.len()).map(|i| (0, i)));
            sources.push(c);
        }
        picks.extend(joining.iter().map(|_| (sources.len(), 0)));
        sources.push(cache);
        match gather_rows(sources, &picks, remaining) {
            Ok(joined) => self.cache = Some(joined),
            Err(e) => {
                // The running rows' cache went with the failed join.
                self.fail_all(&format!("internal error: joining the batch failed: {e}"));
                return Err(e.to_string());
            }
        }
        self.rows.extend(joining);
        self.steering = None;
        Ok(())
    }

    /// One batched forward over every running row, then each row's next token.
    fn step(&mut self) -> Result<(), String> {
        let model = self.model;
        let Some(cache) = self.cache.as_mut() else {
            return Err("internal error: running rows without a cache".into());
        };
        let ids: Vec<Vec<u32>> = self
            .rows
            .iter()
            .map(|r| vec![*r.context.last().expect("rows hold their prompt")])
            .collect();
        let positions: Vec<Vec<i32>> = self
            .rows
            .iter()
            .map(|r| vec![r.context.len() as i32 - 1])
            .collect();
        if self.steering.is_none() && self.rows.iter().any(|r| r.control.is_some()) {
            let sets: Vec<Option<&ControlSet>> =
                self.rows.iter().map(|r| r.control.as_deref()).collect();
            let hook =
                ControlSet::rows_hook(&sets, model.config().hidden_size, &model.decoder.device)
                    .map_err(|e| e.to_string())?;
            self.steering = Some(hook);
        }
        // One row per sequence, each with its own request's adapters.
        let selection = self.rows.iter().any(|r| !r.adapters.is_empty()).then(|| {
            ethos_model::lora::RowAdapters::PerRow(
                self.rows.iter().map(|r| r.adapters.clone()).collect(),
            )
        });
        let steering = self.steering.as_mut().map(|h| h as &mut dyn ResidualHook);
        let logits = ethos_model::lora::with_row_adapters(selection, || {
            model
                .decoder
                .forward_last(&ids, &positions, cache, steering)
                .and_then(|l| l.rows())
        })
        .map_err(|e| e.to_string())?;
        let mut keep = Vec::with_capacity(self.rows.len());
        let mut rows = std::mem::take(&mut self.rows);
        for (i, (row, logits)) in rows.iter_mut().zip(logits).enumerate() {
            let cancelled = row.events.is_closed();
            if !cancelled && !self.advance(row, logits)? {
                keep.push(i);
            }
        }
        if keep.len() < rows.len() {
            self.steering = None;
            if keep.is_empty() {
                self.cache = None;
            } else {
                let remaining = keep
                    .iter()
                    .map(|&i| rows[i].limits.max_tokens - rows[i].generated)
                    .max()
                    .unwrap_or(0);
                let Some(cache) = self.cache.take() else {
                    return Err("internal error: no cache".into());
                };
                let picks: Vec<(usize, usize)> = keep.iter().map(|&i| (0, i)).collect();
                self.cache =
                    Some(gather_rows(vec![cache], &picks, remaining).map_err(|e| e.to_string())?);
            }
            let mut i = 0;
            rows.retain(|_| {
                let k = keep.contains(&i);
                i += 1;
                k
            });
        }
        self.rows = rows;
        Ok(())
    }

    /// Samples `row`'s next token from `logits` and reports it; true when the row is done.
    fn advance(&self, row: &mut Row, mut logits: Vec<f32>) -> Result<bool, String> {
        let model = self.model;
        let tokenizer = model.tokenizer().map_err(|e| e.to_string())?;
        // Log-probs are of the model's distribution, before the sampler's processing.
        let raw = row.logprobs.map(|_| logits.clone());
        let tok = row
            .sampler
            .sample(&row.context, &mut logits)
            .map_err(|e| e.to_string())?;
        let limits = row.limits.clone();
        if !limits.ignore_eos && model.eos_ids().contains(&tok) {
            // The end-of-sequence token is a generated token with a log-prob (as vLLM and
            // OpenAI report it; lm-eval drops the last entry of echoed log-probs as the
            // generated one), with no text.
            row.generated += 1;
            self.metrics.generated_tokens.inc();
            let logprob = match (row.logprobs, raw) {
                (Some(top), Some(raw)) => Some(token_logprob(&raw, tok, top)),
                _ => None,
            };
            let _ = row.events.send(Event::Token {
                choice: row.choice,
                id: tok,
                text: String::new(),
                logprob,
            });
            let text = row.text[row.emitted..].to_string();
            let _ = row.events.send(Event::Done {
                choice: row.choice,
                finish: FinishReason::Eos,
                text,
            });
            return Ok(true);
        }
        row.generated += 1;
        row.context.push(tok);
        self.metrics.generated_tokens.inc();
        let piece = row.stream.push(tokenizer, tok).map_err(|e| e.to_string())?;
        row.text.push_str(&piece);
        let logprob = match (row.logprobs, raw) {
            (Some(top), Some(raw)) => Some(token_logprob(&raw, tok, top)),
            _ => None,
        };
        let mut finish = None;
        if let Some(cut) = limits
            .stop
            .iter()
            .filter_map(|s| row.text.find(s.as_str()))
            .min()
        {
            row.text.truncate(cut);
            finish = Some(FinishReason::Stop);
        } else if row.generated >= limits.max_tokens {
            finish = Some(FinishReason::Length);
        }
        let released = if finish.is_some() {
            row.text.len()
        } else {
            floor_char_boundary(
                &row.text,
                row.text.len().saturating_sub(row.hold.saturating_sub(1)),
            )
        };
        let text = row.text[row.emitted..released.max(row.emitted)].to_string();
        row.emitted = released.max(row.emitted);
        let _ = row.events.send(Event::Token {
            choice: row.choice,
            id: tok,
            text,
            logprob,
        });
        if let Some(finish) = finish {
            let _ = row.events.send(Event::Done {
                choice: row.choice,
                finish,
                text: String::new(),
            });
            return Ok(true);
        }
        Ok(false)
    }

    /// A step failed: every running row gets the error and the batch starts afresh.
    fn fail_all(&mut self, msg: &str) {
        for row in self.rows.drain(..) {
            let _ = row.events.send(Event::Failed(msg.to_string()));
        }
        self.cache = None;
        self.steering = None;
    }
}

/// Hands memory freed by the last batch back to the system while the engine is idle: the
/// `ethos` binary keeps freed buffers for speed, and a server's memory should fall back to
/// the model's size between bursts.
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free heap pages to the kernel; no pointer is touched.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Caps glibc's per-thread heaps at the core count: the HTTP, tokenizer and engine threads
/// each took a heap of their own by default and kept what they freed (hundreds of MiB under
/// load).
pub fn limit_heaps() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        // SAFETY: mallopt only sets an allocator parameter; later heaps follow it.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, cores.max(2) as i32);
        }
    }
}

/// `id`'s log-prob under `logits`, its rank and the `top` most likely tokens (ties by id).
pub fn token_logprob(logits: &[f32], id: u32, top: usize) -> TokenLogprob {
    let max = logits.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)) as f64;
    let lse = max
        + logits
            .iter()
            .map(|&x| (x as f64 - max).exp())
            .sum::<f64>()
            .ln();
    let lp = |x: f32| (x as f64 - lse) as f32;
    let x = logits
        .get(id as usize)
        .copied()
        .unwrap_or(f32::NEG_INFINITY);
    let rank = 1 + logits.iter().filter(|&&y| y > x).count();
    let mut best: Vec<(u32, f32)> = Vec::with_capacity(top + 1);
    if top > 0 {
        let mut idx: Vec<u32> = (0..logits.len() as u32).collect();
        let by_logit = |a: &u32, b: &u32| {
            logits[*b as usize]
                .total_cmp(&logits[*a as usize])
                .then(a.cmp(b))
        };
        let k = top.min(idx.len());
        idx.select_nth_unstable_by(k - 1, by_logit);
        idx.truncate(k);
        idx.sort_by(by_logit);
        best = idx.iter().map(|&i| (i, lp(logits[i as usize]))).collect();
    }
    TokenLogprob {
        id,
        logprob: lp(x),
        rank,
        top: best,
    }
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_logprobs_rank_and_top() {
        let logits = [1.0f32, 3.0, 2.0, 3.0];
        let t = token_logprob(&logits, 2, 2);
        let lse = logits.iter().map(|&x| (x as f64).exp()).sum::<f64>().ln();
        assert!((t.logprob as f64 - (2.0 - lse)).abs() < 1e-6);
        assert_eq!(t.rank, 3);
        assert_eq!(t.top.iter().map(|p| p.0).collect::<Vec<_>>(), [1, 3]);
        assert_eq!(token_logprob(&logits, 0, 0).top, []);
        assert_eq!(token_logprob(&logits, 0, 10).top.len(), 4);
    }
}
