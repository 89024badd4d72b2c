//! `score(context, continuations)`: the log-probability of each continuation given a shared
//! context. The context runs once per request; its KV cache is copied to one row per
//! continuation and all continuations run as one batch. Requests are batched too, and
//! requests that open with the same tokens (a benchmark's instructions, a judge's template)
//! run that shared prefix once (`Openings` keeps it for later batches and calls): its cache
//! is copied to every row, and only the rest of each context runs in the batch.

use crate::cache::KvCache;
use crate::decoder::Decoder;
use crate::error::{Error, Result};
use crate::hooks::ResidualHook;
use crate::tokenizer::Tokenizer;
use candle_core::D;

#[derive(Clone, Debug)]
pub struct ScoreRequest {
    pub context: Vec<u32>,
    pub continuations: Vec<Vec<u32>>,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ContinuationScore {
    /// Sum of the per-token log-probs.
    pub logprob: f64,
    pub token_logprobs: Vec<f32>,
    pub token_ids: Vec<u32>,
    /// Every token is the argmax of its distribution.
    pub greedy: bool,
}

#[derive(Clone, Debug)]
pub struct ScoreOptions {
    /// Requests whose contexts run together.
    pub batch_requests: usize,
    /// Upper bound on rows x tokens of one continuation batch (memory).
    pub max_batch_tokens: usize,
}

impl Default for ScoreOptions {
    fn default() -> Self {
        Self {
            batch_requests: 16,
            max_batch_tokens: 8192,
        }
    }
}

/// Scores every request; results keep the order of requests and continuations.
pub fn score<'h>(
    decoder: &Decoder,
    requests: &[ScoreRequest],
    opts: &ScoreOptions,
    hook: Option<&mut (dyn ResidualHook + 'h)>,
) -> Result<Vec<Vec<ContinuationScore>>> {
    score_with_openings(decoder, requests, opts, &mut Openings::default(), hook)
}

/// `score`, reusing (and adding to) the openings earlier calls ran: a benchmark run scored a
/// chunk at a time runs its instructions once per condition instead of once per batch.
pub fn score_with_openings<'h>(
    decoder: &Decoder,
    requests: &[ScoreRequest],
    opts: &ScoreOptions,
    openings: &mut Openings,
    mut hook: Option<&mut (dyn ResidualHook + 'h)>,
) -> Result<Vec<Vec<ContinuationScore>>> {
    for (i, r) in requests.iter().enumerate() {
        if r.context.is_empty() {
            return Err(Error::Msg(format!(
                "request {i}: the context is empty (it needs at least one token, e.g. BOS)"
            )));
        }
        let longest = r.continuations.iter().map(Vec::len).max().unwrap_or(0);
        if r.context.len() + longest > decoder.max_positions() {
            return Err(Error::Limit(format!(
                "request {i}: context {} + continuation {longest} tokens exceed the context length {}",
                r.context.len(),
                decoder.max_positions()
            )));
        }
    }
    let mut results: Vec<Vec<ContinuationScore>> = vec![Vec::new(); requests.len()];
    for group in batch_groups(requests, opts.batch_requests.max(1)) {
        let scored = score_group(
            decoder,
            requests,
            &group,
            opts,
            openings,
            hook.as_deref_mut(),
        )?;
        for (&i, s) in group.iter().zip(scored) {
            results[i] = s;
        }
    }
    Ok(results)
}

/// The caches of shared openings already run, so batches that open alike (a benchmark's
/// instructions) run their opening once: the same tokens in the same call shape give the
/// same bits. Neither used nor filled while a residual hook runs, which must see every pass;
/// made for one model (and one set of control vectors).
#[derive(Default)]
pub struct Openings(Vec<(Vec<u32>, KvCache)>);

/// Openings kept at once (each is one row of a few hundred tokens).
const MAX_OPENINGS: usize = 8;

impl Openings {
    /// How many openings are kept.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn get(&self, ids: &[u32]) -> Option<&KvCache> {
        self.0.iter().find(|(k, _)| k == ids).map(|(_, c)| c)
    }

    fn insert(&mut self, ids: &[u32], cache: KvCache) {
        if self.0.len() == MAX_OPENINGS {
            self.0.remove(0);
        }
        self.0.push((ids.to_vec(), cache));
    }
}

/// Shortest common opening worth running once for a whole batch.
const MIN_SHARED_PREFIX: usize = 16;

fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// Tokens every context of a batch shares (each row keeps at least one token of its own,
/// whose logits predict the continuations); 0 when too short to be worth a pass of its own.
fn shared_opening(contexts: &[&[u32]]) -> usize {
    let min_len = contexts.iter().map(|c| c.len()).min().unwrap_or(0);
    let shared = contexts
        .iter()
        .skip(1)
        .fold(min_len.saturating_sub(1), |n, c| {
            n.min(common_prefix(contexts[0], c))
        });
    if contexts.len() > 1 && shared >= MIN_SHARED_PREFIX {
        shared
    } else {
        0
    }
}

/// What a forward call costs beyond its tokens (thread wake-ups, small ops, the output head),
/// in token positions.
const CALL_COST: usize = 64;

/// Token positions a batching computes: per batch its shared opening once, then every row
/// padded to the longest rest, plus `CALL_COST` per forward call.
fn plan_cost(requests: &[ScoreRequest], groups: &[Vec<usize>]) -> usize {
    groups
        .iter()
        .map(|g| {
            let contexts: Vec<&[u32]> = g.iter().map(|&i| requests[i].context.as_slice()).collect();
            let shared = shared_opening(&contexts);
            let longest = contexts.iter().map(|c| c.len()).max().unwrap_or(0);
            let calls = if shared > 0 { 2 } else { 1 };
            calls * CALL_COST + shared + g.len() * (longest - shared)
        })
        .sum()
}

/// Batches of request indices: the cheapest (by `plan_cost`) of three plans. By context
/// length (little padding); in sorted token order (requests that open alike run their
/// opening once per batch); or families (runs of that order whose neighbours share at least
/// `MIN_SHARED_PREFIX` tokens) each batched by length, with the rest batched by length.
fn batch_groups(requests: &[ScoreRequest], batch: usize) -> Vec<Vec<usize>> {
    let by_length = |mut idx: Vec<usize>| -> Vec<Vec<usize>> {
        idx.sort_by_key(|&i| requests[i].context.len());
        idx.chunks(batch).map(<[usize]>::to_vec).collect()
    };
    let mut sorted: Vec<usize> = (0..requests.len()).collect();
    sorted.sort_by(|&a, &b| requests[a].context.cmp(&requests[b].context));
    let by_tokens: Vec<Vec<usize>> = sorted.chunks(batch).map(<[usize]>::to_vec).collect();
    let mut families: Vec<Vec<usize>> = Vec::new();
    let mut rest: Vec<usize> = Vec::new();
    let mut run: Vec<usize> = Vec::new();
    let mut flush = |run: &mut Vec<usize>| {
        if run.len() > 1 {
            families.push(std::mem::take(run));
        } else {
            rest.append(run);
        }
    };
    for &i in &sorted {
        if let Some(&prev) = run.last() {
            if common_prefix(&requests[prev].context, &requests[i].context) < MIN_SHARED_PREFIX {
                flush(&mut run);
            }
        }
        run.push(i);
    }
    flush(&mut run);
    let mut by_family: Vec<Vec<usize>> = families.into_iter().flat_map(by_length).collect();
    by_family.extend(by_length(rest));
    [
        by_length((0..requests.len()).collect()),
        by_tokens,
        by_family,
    ]
    .into_iter()
    .min_by_key(|plan| plan_cost(requests, plan))
    .unwrap_or_default()
}

/// Rows padded on the right to one length (id 0, position -1), positions from each `start`:
/// the `(ids, positions)` of a batched `Decoder::forward`.
pub fn right_pad(rows: &[&[u32]], start: &[usize]) -> (Vec<Vec<u32>>, Vec<Vec<i32>>) {
    let t = rows.iter().map(|r| r.len()).max().unwrap_or(0);
    let ids = rows
        .iter()
        .map(|r| (0..t).map(|j| r.get(j).copied().unwrap_or(0)).collect())
        .collect();
    let pos = rows
        .iter()
        .zip(start)
        .map(|(r, &s)| {
            (0..t)
                .map(|j| if j < r.len() { (s + j) as i32 } else { -1 })
                .collect()
        })
        .collect();
    (ids, pos)
}

fn score_group<'h>(
    decoder: &Decoder,
    requests: &[ScoreRequest],
    group: &[usize],
    opts: &ScoreOptions,
    openings: &mut Openings,
    mut hook: Option<&mut (dyn ResidualHook + 'h)>,
) -> Result<Vec<Vec<ContinuationScore>>> {
    let contexts: Vec<&[u32]> = group
        .iter()
        .map(|&i| requests[i].context.as_slice())
        .collect();
    let ctx_len = contexts.iter().map(|c| c.len()).max().unwrap_or(0);
    // The opening every context shares runs once.
    let shared = shared_opening(&contexts);
    let mut cache = if shared > 0 {
        let opening = &contexts[0][..shared];
        let rows = vec![0; contexts.len()];
        match openings.get(opening) {
            Some(prefix) if hook.is_none() => prefix.fork_rows(&rows, ctx_len - shared)?,
            _ => {
                let mut prefix = decoder.new_cache(1, shared)?;
                decoder.forward_last(
                    &[opening.to_vec()],
                    &[(0..shared as i32).collect()],
                    &mut prefix,
                    hook.as_deref_mut(),
                )?;
                let forked = prefix.fork_rows(&rows, ctx_len - shared)?;
                if hook.is_none() {
                    openings.insert(opening, prefix);
                }
                forked
            }
        }
    } else {
        decoder.new_cache(contexts.len(), ctx_len)?
    };
    let rests: Vec<&[u32]> = contexts.iter().map(|c| &c[shared..]).collect();
    let (ids, pos) = right_pad(&rests, &vec![shared; contexts.len()]);
    // The last context position predicts each continuation's first token (with the head's
    // numbers independent of how many contexts share the batch).
    let last = decoder
        .forward_last(&ids, &pos, &mut cache, hook.as_deref_mut())?
        .log_probs()?;
    let first_lp = last.to_vec2::<f32>()?;
    let first_argmax = last.argmax(D::Minus1)?.to_vec1::<u32>()?;

    // One row per (request, continuation), in chunks that bound the batch size.
    let rows: Vec<(usize, usize)> = group
        .iter()
        .enumerate()
        .flat_map(|(g, &i)| (0..requests[i].continuations.len()).map(move |c| (g, c)))
        .collect();
    let mut out: Vec<Vec<ContinuationScore>> = group
        .iter()
        .map(|&i| Vec::with_capacity(requests[i].continuations.len()))
        .collect();
    let mut start = 0;
    while start < rows.len() {
        let mut end = start;
        let mut longest = 0;
        while end < rows.len() {
            let (g, c) = rows[end];
            let l = requests[group[g]].continuations[c].len().max(longest);
            if end > start && (end - start + 1) * (ctx_len + l) > opts.max_batch_tokens {
                break;
            }
            longest = l;
            end += 1;
        }
        let chunk = &rows[start..end];
        let conts: Vec<&[u32]> = chunk
            .iter()
            .map(|&(g, c)| requests[group[g]].continuations[c].as_slice())
            .collect();
        let scores = score_continuations(
            decoder,
            &cache,
            &contexts,
            chunk,
            &conts,
            &first_lp,
            &first_argmax,
            hook.as_deref_mut(),
        )?;
        for (&(g, _), s) in chunk.iter().zip(scores) {
            out[g].push(s);
        }
        start = end;
    }
    Ok(out)
}

#[allow(clippy::too_many_arguments)]
fn score_continuations<'h>(
    decoder: &Decoder,
    cache: &KvCache,
    contexts: &[&[u32]],
    chunk: &[(usize, usize)],
    conts: &[&[u32]],
    first_lp: &[Vec<f32>],
    first_argmax: &[u32],
    hook: Option<&mut (dyn ResidualHook + 'h)>,
) -> Result<Vec<ContinuationScore>> {
    let mut scores: Vec<ContinuationScore> = chunk
        .iter()
        .zip(conts)
        .map(|(&(g, _), c)| match c.first() {
            Some(&t0) => {
                let lp = *first_lp[g].get(t0 as usize).ok_or_else(|| {
                    Error::Limit(format!("token id {t0} is outside the vocabulary"))
                })?;
                Ok(ContinuationScore {
                    logprob: lp as f64,
                    token_logprobs: vec![lp],
                    token_ids: c.to_vec(),
                    greedy: first_argmax[g] == t0,
                })
            }
            None => Ok(ContinuationScore {
                logprob: 0.0,
                token_logprobs: vec![],
                token_ids: vec![],
                greedy: true,
            }),
        })
        .collect::<Result<_>>()?;
    // Tokens after the first need a forward pass over the continuation (all but its last token).
    let inputs: Vec<&[u32]> = conts
        .iter()
        .map(|c| &c[..c.len().saturating_sub(1)])
        .collect();
    if inputs.iter().all(|c| c.is_empty()) {
        return Ok(scores);
    }
    let starts: Vec<usize> = chunk.iter().map(|&(g, _)| contexts[g].len()).collect();
    let (ids, pos) = right_pad(&inputs, &starts);
    let t = ids[0].len();
    let targets: Vec<Vec<i64>> = conts
        .iter()
        .map(|c| {
            (0..t)
                .map(|j| c.get(j + 1).map_or(-1, |&x| x as i64))
                .collect()
        })
        .collect();
    let rows: Vec<usize> = chunk.iter().map(|&(g, _)| g).collect();
    // The padding after a shorter context leaves a continuation's bits as they are alone:
    // attention's sums take lanes by key position wherever keys sit (`cpu::attention`).
    let mut fork = cache.fork_rows(&rows, t)?;
    let gathered = decoder.forward_gather(&ids, &pos, &mut fork, &targets, hook)?;
    for (s, row) in scores.iter_mut().zip(gathered) {
        for ts in row.into_iter().flatten() {
            s.logprob += ts.logprob as f64;
            s.token_logprobs.push(ts.logprob);
            let target = s.token_ids[s.token_logprobs.len() - 1];
            s.greedy &= ts.argmax == target;
        }
    }
    Ok(scores)
}

/// Per-token log-probs of a whole text (`ids[0]` is the context): the `--text` mode.
pub fn score_text<'h>(
    decoder: &Decoder,
    ids: &[u32],
    hook: Option<&mut (dyn ResidualHook + 'h)>,
) -> Result<ContinuationScore> {
    if ids.len() < 2 {
        return Err(Error::Msg(
            "scoring a text needs at least two tokens".into(),
        ));
    }
    let req = ScoreRequest {
        context: ids[..1].to_vec(),
        continuations: vec![ids[1..].to_vec()],
    };
    let mut out = score(decoder, &[req], &ScoreOptions::default(), hook)?;
    Ok(out.remove(0).remove(0))
}

/// The tokens of `continuation` after `context` (whose tokens are `ctx`), as
/// lm-evaluation-harness takes them: those of the whole text after the context's own, or
/// the continuation alone when the context's tokens are not a prefix of the whole.
/// `with_bos` says whether `ctx` was encoded as a prompt (BOS first when the model asks).
pub fn continuation_tokens(
    tok: &Tokenizer,
    ctx: &[u32],
    context: &str,
    continuation: &str,
    with_bos: bool,
) -> Result<Vec<u32>> {
    continuation_split(
        |text, special| {
            if special {
                tok.encode_prompt(text)
            } else {
                tok.encode(text)
            }
        },
        ctx,
        context,
        continuation,
        with_bos,
    )
}

/// `continuation_tokens` with any tokenizer (a server's, say): `encode(text, true)` encodes
/// as a prompt, `encode(text, false)` without special tokens.
pub fn continuation_split<E>(
    mut encode: impl FnMut(&str, bool) -> std::result::Result<Vec<u32>, E>,
    ctx: &[u32],
    context: &str,
    continuation: &str,
    with_bos: bool,
) -> std::result::Result<Vec<u32>, E> {
    let whole = encode(&format!("{context}{continuation}"), with_bos)?;
    if whole.len() > ctx.len() && whole.starts_with(ctx) {
        return Ok(whole[ctx.len()..].to_vec());
    }
    encode(continuation, false)
}
